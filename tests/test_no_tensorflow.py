"""Training, testing and the demo on a machine without TensorFlow (the usual GPU image: JAX only),
simulated by a sitecustomize on PYTHONPATH that hides TensorFlow from every process."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

import fakedata
import faults

ROOT = faults.REPO


def run(script, args, env):
    result = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


@pytest.mark.slow
def test_shim_hides_tensorflow(tmp_path):
    env = faults.without_tensorflow(tmp_path)
    code = ("import importlib.util, sys, keras\ntry:\n    import tensorflow\nexcept ImportError:\n    print('absent')\n"
            "print(importlib.util.find_spec('tensorflow'), 'tensorflow' in sys.modules, keras.backend.backend())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["absent", "None", "False", "jax"], out.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.e2e
def test_trains_tests_and_runs_the_demo_without_tensorflow(tmp_path):
    env = faults.without_tensorflow(tmp_path)
    data, checkpoints = str(tmp_path / "data"), str(tmp_path / "checkpoints")
    splits = fakedata.write_dataset(data, frames=14, size=(96, 72))
    common = ["--dataset", "synthetic", "--data-dir", data, "--splits-dir", splits, "--batch-size", "2",
              "--epoch-steps", "1"]
    out = run("temporal_train.py", common + ["--checkpoint-dir", os.path.join(checkpoints, "temporal"),
                                             "--image-size", "64", "--iterations", "2", "--precision", "bfloat16"],
              env)
    assert out.count("TensorBoard logs off") == 1 and "tensorflow" in out
    out = run("spatial_train.py", common + ["--checkpoint-dir", os.path.join(checkpoints, "spatial"),
                                            "--image-size", "75", "--phase1-iterations", "1",
                                            "--phase2-iterations", "1"], env)
    assert out.count("TensorBoard logs off") == 1  # said once, though each phase makes its callbacks
    for stream in ("spatial", "temporal"):
        assert os.path.isfile(os.path.join(checkpoints, stream, "last.keras"))
        assert not os.path.exists(os.path.join(checkpoints, stream, "tensorboard"))
    results = str(tmp_path / "results")
    run("fuse_test.py", ["--dataset", "synthetic", "--data-dir", data, "--splits-dir", splits, "--checkpoints",
                         checkpoints, "--samples", "2", "--results-dir", results, "--run-name", "check"], env)
    assert os.path.getsize(os.path.join(results, "check", "results.md")) > 0
    video = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 25, (96, 72))
    rng = np.random.default_rng(0)
    for _ in range(12):
        writer.write(rng.integers(0, 255, (72, 96, 3), np.uint8))
    writer.release()
    out = run("demo.py", [video, "--dataset", "synthetic", "--checkpoints", checkpoints, "--samples", "2",
                          "--flow-method", "dis"], env)
    assert "fusion" in out.lower()
