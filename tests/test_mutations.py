"""benchmarks/mutations.py stays runnable: every deliberate bug still applies to the code as it is (its
source text occurs exactly once), and its test selection names tests that exist. Running the
mutations themselves takes minutes: `python benchmarks/mutations.py`."""
import os
import subprocess
import sys

import pytest

import faults

sys.path.insert(0, os.path.join(faults.REPO, "benchmarks"))

import mutations  # noqa: E402 (benchmarks/ is not a package)


def test_every_mutation_applies_to_the_code_as_it_is():
    problems = {m.name: mutations.applies(m) for m in mutations.MUTATIONS if mutations.applies(m) != "applies"}
    assert not problems, problems
    assert len({m.name for m in mutations.MUTATIONS}) == len(mutations.MUTATIONS) >= 15


@pytest.mark.slow  # collects in a new process (seconds)
def test_every_selection_names_tests_that_exist():
    selections = sorted({item for m in mutations.MUTATIONS for item in m.selection})
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                             *selections], cwd=faults.REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
