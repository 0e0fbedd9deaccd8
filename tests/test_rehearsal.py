"""The full-size dress rehearsal (benchmarks/rehearsal.py) at 1% of UCF-101 and HMDB-51: every class,
the official lists thinned, frames at 340x256. Only the temporal stream is trained and tested here
(InceptionV3's first step alone takes minutes on 2 cores); the full run does both and the fusions."""
import os
import subprocess
import sys

import pytest

from twostream.datasets import synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LISTS = os.path.join(ROOT, "..", "shared", "ucf101")


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.skipif(not os.path.isfile(os.path.join(LISTS, "frame_counts.csv")), reason="needs ../shared/ucf101")
def test_rehearsal_at_one_percent(tmp_path):
    work = str(tmp_path / "rehearsal")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "rehearsal.py"), "--work", work, "--lists", LISTS,
         "--fraction", "0.01", "--steps", "generate", "check", "temporal", "score-all", "--streams", "temporal",
         "--iterations", "2", "--batch-size", "8", "--image-size", "80", "--accumulate", "2"],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    settings = synthetic.generated_settings(os.path.join(work, "data"))
    assert settings["fraction"] == 0.01 and settings["hmdb51_clips"] >= 51 * 8
    with open(os.path.join(work, "rehearsal.md")) as f:
        table = f.read()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| step")]
    assert [row.split(" | ")[0][2:] for row in rows] == [
        "generate", "check ucf101", "check hmdb51", "check --decode (sample)", "temporal_train",
        "fuse_test all videos (stand-ins, 1 centre crop)"]
    assert "samples/s" in rows[4] and "videos/s" in rows[-1]
    run = os.path.join(work, "results", "all")
    for name in ("results.md", "per_class.csv", "confusion.png", "scores_temporal.npz"):
        assert os.path.isfile(os.path.join(run, name)), name
    with open(os.path.join(run, "per_class.csv")) as f:
        assert len(f.read().splitlines()) >= 101  # every class has a row
