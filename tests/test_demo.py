"""demo.py's outputs and refusals, with tiny untrained models (the tiny stand-in networks) on a 12-frame clip:
it never writes over its input or an existing file without --overwrite, names a flag whose extension
it cannot write, refuses a video its models trained on, says how far each model trained, and removes
the temporary files of a killed demo."""
import json
import os
import shutil
import subprocess

import cv2
import pytest

import demo
import fakedata
import faults
import models
from twostream import errors
from twostream.storage import atomic
from twostream.train import checkpoints

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_demo")]  # the demo on models: a second or more

CLASSES = ("Alpha", "Beta", "Gamma")


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    with faults.tiny_nets_in_this_process():
        return write_models(tmp_path_factory.mktemp("demo"))


def write_models(root):
    splits = fakedata.write_dataset(str(root / "data"), CLASSES)
    spatial = fakedata.sharpen(models.spatial_model(3, image_size=75, weights="none"))
    temporal = fakedata.sharpen(models.temporal_model(3, image_size=64, stack_length=2))
    paths = {"spatial": fakedata.write_checkpoint(root / "spatial", spatial, "spatial", 75, splits),
             "temporal": fakedata.write_checkpoint(root / "temporal", temporal, "temporal", 64, splits)}
    for stream, path in paths.items():  # the run's splits folder, as training writes it
        config_path = os.path.join(os.path.dirname(path), "config.json")
        with open(config_path) as f:
            config = json.load(f)
        with open(config_path, "w") as f:
            json.dump({**config, "splits_dir": splits}, f)
    return paths


def write_clip(path, frames=12):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 48))
    for j in range(frames):
        writer.write(cv2.cvtColor(fakedata.rgb_frame(1, j * 10, 48, 64), cv2.COLOR_RGB2BGR))
    writer.release()
    return str(path)


def demo_run(model_files, video, *extra):
    return errors.run(demo.main, [video, "--dataset", "synthetic", "--spatial", model_files["spatial"], "--temporal",
                                  model_files["temporal"], "--flow-method", "dis", "--samples", "2", "--workers", "1",
                                  *extra])


def test_the_input_video_is_never_written_over(model_files, tmp_path, capsys):
    clip = write_clip(tmp_path / "clip.mp4")
    before = open(clip, "rb").read()
    for extra in ((), ("--overwrite",)):
        assert demo_run(model_files, clip, "--output", clip, *extra) == 2
        assert "--output" in capsys.readouterr().err
        assert open(clip, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == ["clip.mp4"]


def test_existing_outputs_are_replaced_only_with_overwrite(model_files, tmp_path, capsys):
    clip = write_clip(tmp_path / "clip.mp4")
    out, plot = tmp_path / "out.mp4", tmp_path / "scores.png"
    out.write_bytes(b"keep me")
    assert demo_run(model_files, clip, "--output", str(out), "--plot", str(plot)) == 2
    error = capsys.readouterr().err
    assert "--output" in error and "--overwrite" in error and "Traceback" not in error
    assert out.read_bytes() == b"keep me" and not plot.exists()  # refused before any work

    assert demo_run(model_files, clip, "--output", str(out), "--plot", str(plot), "--overwrite") == 0
    assert cv2.VideoCapture(str(out)).read()[0] and cv2.imread(str(plot)) is not None
    assert sorted(os.listdir(tmp_path)) == ["clip.mp4", "out.mp4", "scores.png"]  # no temporary file left


@pytest.mark.parametrize("flag, name", [("--plot", "x.mp4"), ("--output", "x.png"), ("--plot", "noextension")])
def test_an_output_of_unknown_extension_names_its_flag(model_files, tmp_path, capsys, flag, name):
    clip = write_clip(tmp_path / "clip.mp4")
    assert demo_run(model_files, clip, flag, str(tmp_path / name)) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {flag} ") and "extension" in error and "Traceback" not in error
    assert sorted(os.listdir(tmp_path)) == ["clip.mp4"]


def test_a_video_the_models_trained_on_is_refused(model_files, tmp_path, capsys):
    """v_Beta_g08_c01 is in the synthetic split 1 training list the models trained on; g01 is a test video."""
    trained = write_clip(tmp_path / "v_Beta_g08_c01.mp4")
    assert demo_run(model_files, trained) == 2
    error = capsys.readouterr().err
    assert "v_Beta_g08_c01" in error and "trainlist01.txt" in error and "trained on" in error
    assert demo_run(model_files, write_clip(tmp_path / "v_Beta_g01_c01.mp4")) == 0
    assert "fusion:" in capsys.readouterr().out


def test_a_killed_demos_temporary_files_go_at_its_next_start_and_it_says_how_far_each_model_trained(
        model_files, tmp_path, capsys):
    clip, out = write_clip(tmp_path / "clip.mp4"), tmp_path / "out.mp4"
    ended = subprocess.Popen(["true"])
    ended.wait()
    killed = tmp_path / f"{atomic.TEMP_PREFIX}{ended.pid}-0123abcd-out.mp4"  # a killed demo's, as atomic names it
    running = tmp_path / f"{atomic.TEMP_PREFIX}{os.getpid()}-89abcdef-out.mp4"  # a live process's: its own
    for path in (killed, running):
        path.write_bytes(b"half a video")
    temporal = shutil.copytree(os.path.dirname(model_files["temporal"]), tmp_path / "temporal")
    checkpoints.add_training_record(temporal / "last.keras", checkpoints.TrainingRecord(3, 6, {}))
    assert errors.run(demo.main, [clip, "--dataset", "synthetic", "--spatial", model_files["spatial"],
                                  "--temporal", str(temporal / "last.keras"), "--flow-method", "dis", "--samples", "2",
                                  "--workers", "1", "--output", str(out)]) == 0
    assert sorted(os.listdir(tmp_path)) == sorted(["clip.mp4", "out.mp4", "temporal", running.name])
    printed = capsys.readouterr().out
    assert f"temporal: {temporal / 'last.keras'}, trained 3 of 6 steps (unfinished" in printed
    assert f"spatial: {model_files['spatial']}, how far it trained is not recorded" in printed
