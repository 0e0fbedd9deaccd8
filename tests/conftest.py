"""The test suite, in layers: each proves something the one below cannot, at a cost the one below avoids.

1. Unit tests (most files; no mark): pure functions on small arrays, with no network compiled:
   sampling, crops, flips, quantisation, the learning-rate decay, reference rows, split lists,
   metrics, flags. `python -m pytest -m "not slow"` runs them and the cheap component tests in
   under a minute.
2. Component tests: the real scripts (`temporal_train.main`, `fuse_test.main`, `demo.main`,
   `prepare_data.main`) on data the tests generate (fakedata.py), with the tiny stand-in networks of
   faults.py (the `tiny_nets` fixture) wherever the network is not the subject. Fixtures that only
   are read are built once (module or session scope) and shared.
3. Architecture tests (test_models.py, test_weight_decay.py): the exact CNN-M-2048 and InceptionV3
   builds, their weight counts, saving and loading, mixed precision; real networks only here.
4. Fault tests (marked slow): real SIGKILL, SIGTERM, Ctrl-C and second processes, struck at named
   moments (faults.py's FAULT hooks, a file or folder appearing) rather than after timed sleeps
   where the code offers such a moment.
5. End to end (marked e2e): the README's pipeline once per backend (test_pipeline.py on
   TensorFlow, test_no_tensorflow.py on JAX without TensorFlow), gpu_check.sh --tiny, and the 1%
   rehearsal at full frame size.

.ci/run runs them as stages (fast; component and fault; end to end; the JAX backend), each with a
time limit, in two pytest-xdist workers.
"""
import os
import sys

import pytest

# Tests import the project's flat modules from the repository root, and the helpers beside them.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import faults  # noqa: E402 (needs the path above)


def pytest_collection_modifyitems(config, items):
    """Tests marked whole_tvl1 compute whole TV-L1 flows (tvl1_keras): they run on JAX only (CI's JAX stage),
    as TensorFlow computes the same flows about 4x slower on a CPU; the blocks of TV-L1 are tested on both."""
    marked = [item for item in items if item.get_closest_marker("whole_tvl1")]
    if marked:
        import keras
        if keras.backend.backend() != "jax":
            for item in marked:
                item.add_marker(pytest.mark.skip(reason="whole TV-L1 flows are checked on JAX"))


@pytest.fixture
def tiny_nets():
    """The tiny networks of tests/faults.py in place of CNN-M-2048 and InceptionV3, in this process."""
    with faults.tiny_nets_in_this_process():
        yield
