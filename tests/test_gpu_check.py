"""benchmarks/gpu_check.sh --tiny: every section of the GPU check at tiny sizes on the CPU, as on the
GPU machine with JAX and no TensorFlow (made unimportable here), so that the check cannot rot
between the rare runs on a GPU."""
import os
import subprocess
import sys

import pytest

import faults


@pytest.mark.slow
@pytest.mark.e2e
def test_gpu_check_runs_every_section_at_tiny_sizes_without_tensorflow(tmp_path):
    reference = str(tmp_path / "reference.npz")  # OpenCV's flow at 64x48 (contrib build here)
    subprocess.run([sys.executable, os.path.join(faults.REPO, "benchmarks", "bench_flow.py"), "--size", "64x48",
                    "--rounds", "1", "--save-reference", reference], check=True, capture_output=True, timeout=600)
    out = str(tmp_path / "out")
    env = {**faults.without_tensorflow(tmp_path), "PYTHON": sys.executable}
    result = subprocess.run(["bash", os.path.join(faults.REPO, "benchmarks", "gpu_check.sh"), "--tiny", "--out", out,
                             "--reference", reference], env=env, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(out, "gpu_check.md")) as f:
        report = f.read()
    assert "failed" not in report and "skipped" not in report, report
    assert "TensorFlow: not installed" in report
    for heading in ("## Device", "## tvl1_keras", "## Flow extraction", "## Training: temporal", "## Training: spatial",
                    "## Testing"):
        assert heading in report
    assert "accuracy against OpenCV on 2 pairs" in report
    assert "| end to end, pairs/s | end to end / kernel |" in report  # tvl1_keras extraction against its kernel
    assert "## Several devices: 2" in report and "| 2 | " in report  # --tiny: 2 CPU devices stand in for GPUs
    # Each stream's loader in its steady state: against one worker process, the CPU per sample of both sides.
    assert report.count("one worker process's") == 2 and report.count("CPU per sample: the training process") == 2
    assert report.count("| float32 |") == 2 and report.count("| bfloat16 |") == 1  # tiny: bfloat16 on temporal only
    assert "fuse_test.py end to end" in report and "exit code 0" in report
