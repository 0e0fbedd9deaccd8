"""training.py and the two training scripts on a tiny fake dataset: learning, resuming a killed
run, the spatial phases, checkpoints, presets, errors, and a mirrored run on 2 logical CPUs.
Runs with the TensorFlow or JAX backend (the mirrored test needs TensorFlow)."""
import csv
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import keras
import numpy as np
import pytest

import fakedata
import generators
import models
import spatial_train
import temporal_train
from twostream import errors
from twostream.datasets import ucf101
from twostream.errors import DataError
from twostream.networks import custom_layers
from twostream.protocol import presets
from twostream.train import checkpoints, distributed, lineage, training
from twostream.video import media

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("Alpha", "Beta", "Gamma")


def write_class_flow(root, size=(80, 64)):
    """Overwrite the fake flow so that it tells the classes apart after mean subtraction and
    survives a horizontal flip: Alpha u left/right, Beta u top/bottom, Gamma v top/bottom."""
    width, height = size
    for name, label in fakedata.video_names(CLASSES, groups=(1, 8), clips=4):
        for j in range(11):
            u = np.full((height, width), 128, np.uint8)
            v = np.full((height, width), 128, np.uint8)
            if label == 0:
                u[:, :width // 2], u[:, width // 2:] = 170, 86
            elif label == 1:
                u[:height // 2], u[height // 2:] = 170, 86
            else:
                v[:height // 2], v[height // 2:] = 170, 86
            media.write_image(ucf101.frame_path(ucf101.flow_dir(root, "u", name), j), u)
            media.write_image(ucf101.frame_path(ucf101.flow_dir(root, "v", name), j), v)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """3 classes x 4 clips: 12 training and 12 test videos of 12 frames at 80x64."""
    root = str(tmp_path_factory.mktemp("data"))
    splits = fakedata.write_dataset(root, CLASSES, groups=(1, 8), clips=4, frames=12, size=(80, 64))
    write_class_flow(root)
    return root, splits


def temporal_args(dataset, folder, *extra):
    root, splits = dataset
    return ["--dataset", "synthetic", "--data-dir", root, "--splits-dir", splits, "--checkpoint-dir", str(folder),
            "--image-size", "64", "--stack-length", "2", "--batch-size", "4", "--workers", "1", *extra]


def logged_epochs(folder):
    with open(os.path.join(folder, "log.csv"), newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


# ---------------------------------------------------------------------------- learning

@pytest.mark.slow
def test_a_few_steps_lower_the_loss_and_the_model_reloads(dataset, tmp_path):
    root, splits = dataset
    keras.utils.set_random_seed(0)
    videos = ucf101.load_index(root, splits, 1, "train")
    x, y = generators.validation_data(videos, root, "temporal", image_size=64, stack_length=2)
    train = generators.TrainSequence(videos, root, "temporal", batch_size=4, image_size=64, stack_length=2)
    model = models.temporal_model(3, image_size=64, stack_length=2, dropout=0.5)
    model.compile(keras.optimizers.SGD(1e-2, momentum=0.9), loss="sparse_categorical_crossentropy")
    before = model.evaluate(x, y, verbose=0)
    model.fit(train, epochs=10, verbose=0)  # 30 steps
    after = model.evaluate(x, y, verbose=0)
    assert after < 0.5 * before, (before, after)

    path = str(tmp_path / "model.keras")
    model.save(path)
    np.testing.assert_allclose(custom_layers.load_model(path).predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- resuming

class Killed(Exception):
    pass


class KillAfterFirstEpoch(keras.callbacks.Callback):
    """Stands in for a killed process: stops fit() with an error after epoch 0's callbacks ran."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise Killed


class RecordingSequence(generators.TrainSequence):
    """Records the epoch whose batches each pass draws (the last pass is the training epoch's;
    Keras may take a batch before training starts)."""
    started = []

    def on_epoch_begin(self):
        RecordingSequence.started.append(self.epoch)
        super().on_epoch_begin()


@pytest.mark.slow
def test_a_killed_run_started_again_resumes_at_epoch_2(dataset, tmp_path, monkeypatch, tiny_nets):
    folder = tmp_path / "temporal"
    argv = temporal_args(dataset, folder, "--iterations", "6", "--epoch-steps", "3", "--lr-drops", "4")
    original = training.callbacks
    monkeypatch.setattr(training, "callbacks", lambda *a, **k: original(*a, **k) + [KillAfterFirstEpoch()])
    monkeypatch.setattr(generators, "TrainSequence", RecordingSequence)
    RecordingSequence.started.clear()
    with pytest.raises(Killed):
        temporal_train.main(argv)
    assert logged_epochs(folder) == [0]
    assert RecordingSequence.started[-1] == 0
    with open(folder / "backup" / "training_metadata.json") as f:
        assert json.load(f)["epoch"] == 1
    stopped = checkpoints.read_training_record(folder / "last.keras")  # the model says how far it got
    assert (stopped.steps_done, stopped.steps_planned) == (3, 6) and checkpoints.is_unfinished(stopped)
    assert stopped.config["stream"] == "temporal" and stopped.config["epoch_steps"] == 3

    monkeypatch.setattr(training, "callbacks", original)
    RecordingSequence.started.clear()
    temporal_train.main(argv)
    assert logged_epochs(folder) == [0, 1]  # from scratch it would read 0, 0, 1
    assert RecordingSequence.started[-1] == 1  # the data continue with epoch 1's shuffles and draws
    with open(folder / "log.csv", newline="") as f:
        rates = [float(row["learning_rate"]) for row in csv.DictReader(f)]
    assert rates == pytest.approx([1e-2, 1e-3])  # 3 steps per epoch: the drop after step 4 came in epoch 1
    finished = checkpoints.read_training_record(folder / "last.keras")
    assert (finished.steps_done, finished.steps_planned) == (6, 6) and not checkpoints.is_unfinished(finished)

    # A finished run started again trains nothing and replaces nothing.
    stamp = os.path.getmtime(folder / "last.keras")
    temporal_train.main(argv)
    assert logged_epochs(folder) == [0, 1]
    assert os.path.getmtime(folder / "last.keras") == stamp

    # What fuse_test.py and demo.py read.
    with open(folder / "config.json") as f:
        config = json.load(f)
    assert config["stream"] == "temporal" and config["image_size"] == 64 and config["stack_length"] == 2
    assert config["frame_size"] == [80, 64] and config["split"] == 1 and config["dataset"] == "synthetic"
    assert config["norm"] == "lrn" and config["num_classes"] == 3
    assert (folder / "classInd.txt").read_text().split("\n")[:3] == ["1 Alpha", "2 Beta", "3 Gamma"]
    assert not (folder / "best.keras").exists()  # no validation set, no model selection: the final model only
    final = custom_layers.load_model(str(folder / "last.keras"))
    probabilities = final.predict(np.full((2, 64, 64, 4), 128, np.uint8), verbose=0)
    assert probabilities.shape == (2, 3)

    # Another setting in the same folder is refused; --overwrite starts again.
    with pytest.raises(DataError, match="different image_size"):
        temporal_train.main(temporal_args(dataset, folder, "--iterations", "6", "--image-size", "72"))
    temporal_train.main(temporal_args(dataset, folder, "--iterations", "3", "--epoch-steps", "3", "--image-size", "72",
                                      "--overwrite"))
    assert logged_epochs(folder) == [0]


@pytest.mark.slow
def test_an_epoch_writes_the_training_state_once(dataset, tmp_path):
    """The backup holds the weights and SGD's momentum, which resuming needs; last.keras, written
    every epoch too, holds the network alone, at half the bytes (issue 19: CNN-M-2048's state is
    0.72 GB at 224 px, and each epoch wrote it twice)."""
    folder = tmp_path / "temporal"
    temporal_train.main(temporal_args(dataset, folder, "--iterations", "1", "--epoch-steps", "1"))
    state = os.path.getsize(folder / "backup" / "epoch000001.weights.h5")
    network = os.path.getsize(folder / "last.keras")
    assert network < 0.55 * state, (network, state)
    model = custom_layers.load_model(str(folder / "last.keras"))
    assert model.predict(np.full((1, 64, 64, 4), 128, np.uint8), verbose=0).shape == (1, 3)


@pytest.mark.slow
def test_spatial_phases_and_skipping_a_finished_phase_1(dataset, tmp_path, monkeypatch, capsys, tiny_nets):
    root, splits = dataset
    folder = tmp_path / "spatial"
    argv = ["--dataset", "synthetic", "--data-dir", root, "--splits-dir", splits, "--checkpoint-dir", str(folder),
            "--image-size", "75", "--batch-size", "4", "--max-videos", "4", "--workers", "1", "--epoch-steps", "1",
            "--phase1-iterations", "1", "--phase2-iterations", "1", "--class-limit", "2"]
    spatial_train.main(argv)
    assert logged_epochs(folder) == [0, 1]  # phase 2 numbers its epochs on from phase 1
    assert (folder / "phase1.keras").exists() and (folder / "last.keras").exists()
    steps = {name: checkpoints.read_training_record(folder / name) for name in ("phase1.keras", "last.keras")}
    assert {name: (r.steps_done, r.steps_planned) for name, r in steps.items()} == {
        "phase1.keras": (1, 2), "last.keras": (2, 2)}  # the two phases are one run of 2 steps
    assert (folder / "classInd.txt").read_text() == "1 Alpha\n2 Beta\n"  # --class-limit 2

    def no_phase_1(*args, **kwargs):
        raise AssertionError("phase 1 ran again")

    monkeypatch.setattr(models, "spatial_model", no_phase_1)
    capsys.readouterr()
    spatial_train.main(argv)
    assert "phase 1: done" in capsys.readouterr().out
    assert logged_epochs(folder) == [0, 1]


# ---------------------------------------------------------------------------- flags and errors

def test_explicit_flags_override_the_preset():
    args = temporal_train.parse_args(["--dataset", "synthetic", "--batch-size", "3"])
    assert args.batch_size == 3  # given
    assert args.image_size == 80 and args.iterations == 300  # the synthetic preset
    assert args.data_dir == "data/synthetic" and args.splits_dir == "data/synthetic/splits"
    assert args.checkpoint_dir == os.path.join("checkpoints", "synthetic", "temporal")


def test_the_defaults_are_the_papers():
    paper = temporal_train.parse_args([])
    assert (paper.batch_size, paper.lr, paper.lr_drops, paper.iterations) == (256, 1e-2, [50000, 70000], 80000)
    assert (paper.momentum, paper.weight_decay, paper.sampling, paper.crop) == (0.9, 5e-4, "classes", "random")
    assert (paper.image_size, paper.stack_length, paper.dropout, paper.norm) == (224, 10, 0.9, "lrn")
    assert (paper.arch, paper.val_groups, paper.data_dir) == ("cnn_m_2048", 0, "data/ucf101")
    spatial = spatial_train.parse_args([])
    assert (spatial.weights, spatial.batch_size, spatial.dropout, spatial.lighting) == ("imagenet", 256, 0.5, 0.1)
    assert (spatial.phase1_optimizer, spatial.phase1_lr, spatial.phase1_lr_drops, spatial.phase1_iterations) == (
        "sgd", 1e-2, [14000], 20000)  # the paper's fine-tuning schedule
    assert (spatial.momentum, spatial.weight_decay, spatial.val_groups) == (0.9, 5e-4, 0)


def test_init_fine_tunes_on_the_papers_fine_tuning_schedule_unless_a_flag_says():
    """--init: the paper's fine-tuning schedule (lr 1e-2, / 10 after 14k, stop at 20k), not 80k from scratch;
    each schedule flag given wins; the mini datasets keep their own short schedule."""
    def schedule(*argv):
        args = temporal_train.parse_args(list(argv))
        return args.lr, args.lr_drops, args.iterations

    assert schedule("--init", "x.keras") == (1e-2, [14000], 20000)
    assert schedule() == (1e-2, [50000, 70000], 80000)
    assert schedule("--init", "x.keras", "--iterations", "5000") == (1e-2, [14000], 5000)
    assert schedule("--init=x.keras", "--lr=0.1", "--lr-drops") == (0.1, [], 20000)
    assert schedule("--dataset", "hmdb51", "--init", "x.keras") == (1e-2, [14000], 20000)
    assert schedule("--dataset", "synthetic", "--init", "x.keras") == schedule("--dataset", "synthetic")
    assert presets.FINE_TUNING == dict(lr=1e-2, lr_drops=[14000], iterations=20000)


@pytest.mark.slow
def test_a_net_fine_tuned_from_another_records_what_both_trained_on(dataset, tmp_path, tiny_nets):
    """A split-1 net fine-tuned on split 2 (--init): config.json and the model's training record hold both
    training lists, so split 2's test list (group 8, in split 1's training list) is refused."""
    steps = ("--iterations", "1", "--epoch-steps", "1")
    temporal_train.main(temporal_args(dataset, tmp_path / "split1", *steps))
    temporal_train.main(temporal_args(dataset, tmp_path / "split2", "--split", "2", *steps,
                                      "--init", str(tmp_path / "split1" / "last.keras")))
    lists = {"synthetic": ["trainlist02.txt", "trainlist01.txt"]}
    config = checkpoints.read_json(str(tmp_path / "split2" / "config.json"))
    assert config["trained_on"] == lists
    assert checkpoints.read_training_record(str(tmp_path / "split2" / "last.keras")).config["trained_on"] == lists
    test_videos = [video.name for video in ucf101.load_index(dataset[0], dataset[1], 2, "test")]
    with pytest.raises(DataError, match="trained on trainlist01.txt"):
        lineage.refuse_seen_test_videos("split2/last.keras", config, "temporal", "synthetic", 2, dataset[1],
                                        test_videos)


def test_sgd_has_caffes_weight_decay_and_drops_count_optimizer_steps():
    args = temporal_train.parse_args(["--accumulate", "4"])
    optimizer = training.sgd(training.schedule(1e-2, [10], args.accumulate), args.momentum, args.weight_decay,
                             args.accumulate)  # its update: tests/test_weight_decay.py
    assert optimizer.caffe_weight_decay == 5e-4 and optimizer.gradient_accumulation_steps == 4
    # Keras evaluates a schedule on micro-steps: with 4 of them per update, "after 10 updates" is after 40.
    schedule = optimizer._learning_rate
    assert float(schedule(40)) == pytest.approx(1e-2, rel=1e-6) and float(schedule(41)) == pytest.approx(1e-3, rel=1e-6)


def test_accumulation_needs_a_divisor_of_the_batch():
    with pytest.raises(SystemExit):
        temporal_train.parse_args(["--batch-size", "10", "--accumulate", "4"])


@pytest.mark.parametrize("script", ["spatial_train.py", "temporal_train.py", "fuse_test.py", "demo.py",
                                    "prepare_data.py flow"])
def test_help_explains_every_flag_without_loading_keras(script):
    script, *command = script.split()
    code = textwrap.dedent(f"""
        import runpy, sys
        sys.argv = [{script!r}, *{command!r}, "--help"]
        try:
            runpy.run_path({script!r}, run_name="__main__")
        except SystemExit:
            pass
        print("LOADED" if {{"keras", "tensorflow", "jax", "sklearn", "matplotlib"}} & set(sys.modules) else "LIGHT")
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.rstrip().endswith("LIGHT"), (
        "--help imported Keras, scikit-learn or matplotlib: seconds instead of a blink")
    flags = [line.split()[0] for line in result.stdout.splitlines() if line.strip().startswith("--")]
    assert flags
    for line in result.stdout.split("\n  --")[1:]:
        assert len(line.split()) > 1, f"a flag without help: --{line}"


def test_missing_flow_is_a_clear_error_with_exit_code_2(dataset, tmp_path):
    root, splits = dataset
    empty = tmp_path / "no_flow"
    fakedata.write_dataset(str(empty), CLASSES, frames=3, size=(80, 64))
    for component in "uv":
        for name, _ in fakedata.video_names(CLASSES):
            for file in os.listdir(ucf101.flow_dir(str(empty), component, name)):
                os.remove(os.path.join(ucf101.flow_dir(str(empty), component, name), file))
    argv = ["--dataset", "synthetic", "--data-dir", str(empty), "--splits-dir", str(empty / "splits"),
            "--checkpoint-dir", str(tmp_path / "ck")]
    with pytest.raises(DataError, match="prepare_data.py flow"):
        temporal_train.main(argv)
    assert errors.run(temporal_train.main, argv) == 2


def test_no_distribution_and_a_jax_cluster_without_its_variables(monkeypatch):
    """--distribute none is no strategy; on JAX, multiworker without the KERAS_DISTRIBUTION_* variables (or
    SLURM) is one line naming them, before anything is set for the process."""
    assert distributed.distribution_strategy("none") is None
    if keras.backend.backend() == "jax":
        for name in (*distributed.JAX_CLUSTER_VARIABLES, "SLURM_JOB_ID"):
            monkeypatch.delenv(name, raising=False)
        with pytest.raises(DataError, match="set KERAS_DISTRIBUTION_JOB_ADDRESSES"):
            distributed.distribution_strategy("multiworker")
        assert keras.distribution.distribution() is None


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.distribute needs the TensorFlow backend")
def test_mirrored_run_on_two_logical_cpus(dataset, tmp_path):
    folder = tmp_path / "mirrored"
    script = textwrap.dedent(f"""
        import sys
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        sys.path.insert(0, "tests")
        import faults, temporal_train
        with faults.tiny_nets_in_this_process():
            temporal_train.main({temporal_args(dataset, folder, "--iterations", "3", "--epoch-steps", "3",
                                           "--distribute", "mirrored")!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mirrored: 2 replicas" in result.stdout
    assert logged_epochs(folder) == [0]
    with open(folder / "log.csv", newline="") as f:
        assert np.isfinite(float(next(csv.DictReader(f))["loss"]))


# ---------------------------------------------------------------------------- the test list is for testing only

@pytest.mark.slow
def test_both_scripts_train_to_the_end_without_any_test_list_data(tmp_path, tiny_nets):
    """The test-list videos have no frames and no flow on disk: training never needs them."""
    root = str(tmp_path / "data")
    splits = fakedata.write_dataset(root, CLASSES, groups=(1, 8, 9), clips=2, frames=12, size=(80, 64))
    test_videos = ucf101.load_index(root, splits, 1, "test")
    assert test_videos
    for video in test_videos:
        for folder in [ucf101.rgb_dir(root, video.name)] + [ucf101.flow_dir(root, c, video.name) for c in "uv"]:
            for file in os.listdir(folder):
                os.remove(os.path.join(folder, file))
            os.rmdir(folder)
    common = ["--dataset", "synthetic", "--data-dir", root, "--splits-dir", splits, "--batch-size", "4",
              "--workers", "1", "--epoch-steps", "1"]
    temporal_train.main(common + ["--checkpoint-dir", str(tmp_path / "temporal"), "--image-size", "64",
                                  "--stack-length", "2", "--iterations", "2", "--val-groups", "1"])
    spatial_train.main(common + ["--checkpoint-dir", str(tmp_path / "spatial"), "--image-size", "75",
                                 "--phase1-iterations", "1", "--phase2-iterations", "1"])
    assert (tmp_path / "temporal" / "last.keras").exists() and (tmp_path / "spatial" / "last.keras").exists()
    assert (tmp_path / "temporal" / "best.keras").exists()  # chosen on held-out training group 9


def test_validation_holds_out_whole_groups_of_the_training_list(tmp_path):
    root = str(tmp_path)
    splits = fakedata.write_dataset(root, CLASSES, groups=(1, 8, 9, 10), clips=2, frames=3, size=(80, 64))
    videos = ucf101.load_index(root, splits, 1, "train")
    train, held_out = ucf101.hold_out_groups(videos, 1)
    assert {ucf101.parse_name(v.name)[1] for v in held_out} == {10}
    assert {ucf101.parse_name(v.name)[1] for v in train} == {8, 9}
    assert len(train) + len(held_out) == len(videos) and len(held_out) == 2 * len(CLASSES)
    assert ucf101.hold_out_groups(videos, 0) == (videos, [])
    with pytest.raises(DataError, match="every training group"):
        ucf101.hold_out_groups(videos, 3)


def test_a_models_training_record_cut_short_is_named_and_a_model_without_one_is_unknown(tmp_path):
    path = tmp_path / "last.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(checkpoints.TRAINING_RECORD, '{"steps_done": 3, "steps_pla')
    with pytest.raises(DataError, match=r"last\.keras: its training record \(training\.json\) is damaged"):
        checkpoints.read_training_record(path)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
    assert checkpoints.read_training_record(path) is None
    assert "not recorded" in checkpoints.progress_text(None)
