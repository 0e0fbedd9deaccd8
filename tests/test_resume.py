"""Nothing lost: real training processes (tiny networks, a tiny generated dataset) killed with
SIGKILL, SIGTERM or Ctrl-C's SIGINT at chosen moments, inside the writes of the backup and of the
models among them (tests/faults.py), then started again with the same command; a second process
on the same folder; damaged files left by older versions; the data a run started on.
"""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import fakedata
import temporal_train
from twostream import errors
from twostream.networks import custom_layers
from twostream.storage import atomic
from twostream.train import checkpoints, lineage, training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("Alpha", "Beta", "Gamma")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """3 classes x 2 clips of groups 1 (test list), 8 and 9 (training list), 6 frames at 80x64."""
    root = str(tmp_path_factory.mktemp("data"))
    return root, fakedata.write_dataset(root, CLASSES, groups=(1, 8, 9), clips=2, frames=6, size=(80, 64))


def temporal_args(dataset, folder, epochs=3, *extra):
    root, splits = dataset
    return ["--dataset", "synthetic", "--data-dir", root, "--splits-dir", splits, "--checkpoint-dir", str(folder),
            "--image-size", "64", "--stack-length", "2", "--batch-size", "4", "--workers", "1",
            "--epoch-steps", "1", "--iterations", str(epochs), "--val-groups", "1", *extra]


def spatial_args(dataset, folder):
    root, splits = dataset
    return ["--dataset", "synthetic", "--data-dir", root, "--splits-dir", splits, "--checkpoint-dir", str(folder),
            "--image-size", "75", "--batch-size", "4", "--workers", "1", "--epoch-steps", "1",
            "--phase1-iterations", "2", "--phase2-iterations", "2"]


def start(script, argv, fault="", trace=""):
    """The script in its own process, as `python script argv...` with tiny networks and `fault`."""
    env = {**os.environ, "TINY_NETS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "FAULT": fault, "FAULT_TRACE": str(trace)}
    return subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "faults.py"), script, *argv], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(script, argv, fault="", trace=""):
    """-> (exit code, stderr); -9 for a process killed by SIGKILL."""
    process = start(script, argv, fault, trace)
    _, stderr = process.communicate(timeout=300)
    return process.returncode, stderr


def committed_epoch(backup):
    with open(os.path.join(backup, "training_metadata.json")) as f:
        return json.load(f)["epoch"]


def logged_epochs(folder):
    with open(os.path.join(folder, "log.csv"), newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def assert_finished(folder, epochs, models_=("last.keras", "best.keras")):
    """Every epoch logged once, whole models, and no temporary file left."""
    assert logged_epochs(folder) == list(range(epochs))
    for name in models_:
        custom_layers.load_model(os.path.join(folder, name))
    left = [name for _, _, files in os.walk(folder) for name in files if atomic.is_temporary(name)]
    assert not left


def weights_of(path):
    return custom_layers.load_model(str(path)).get_weights()


@pytest.mark.slow
def test_temporal_run_killed_at_every_kind_of_moment_resumes_and_ends_as_an_uninterrupted_run(
        dataset, tmp_path, tiny_nets):
    folder, trace = tmp_path / "temporal", tmp_path / "trace"
    argv = temporal_args(dataset, folder)

    # SIGKILL half-way through writing epoch 2's backup: a rerun must not meet a truncated backup.
    assert run("temporal_train.py", argv, "KILL 2 inside backup/", trace)[0] == -signal.SIGKILL
    assert committed_epoch(folder / "backup") == 1
    # Epoch 2's weights renamed into place, its metadata (the commit) not yet.
    assert run("temporal_train.py", argv, "KILL 1 before-replace training_metadata.json", trace)[0] == -9
    assert committed_epoch(folder / "backup") == 1
    # Ctrl-C half-way through writing last.keras: the message says the same command resumes; it does.
    code, stderr = run("temporal_train.py", argv, "INT 1 inside last.keras", trace)
    assert code == 130 and "same command started again resumes" in stderr
    custom_layers.load_model(str(folder / "last.keras"))  # the previous epoch's, whole

    # Epoch 2 committed, the previous epoch's weights not yet removed: the process waits there.
    first = start("temporal_train.py", argv, "WAIT 1 after-replace training_metadata.json", trace)
    deadline = time.time() + 240
    while not trace.read_text().endswith("waiting\n"):
        assert first.poll() is None and time.time() < deadline, first.communicate()[1][-3000:]
        time.sleep(0.2)
    # A second process on the same folder meanwhile: refused, nothing touched.
    code, stderr = run("temporal_train.py", argv)
    assert code == 2 and "another process" in stderr and "Traceback" not in stderr
    first.send_signal(signal.SIGTERM)  # as a cluster's scheduler preempting the job
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM and "interrupted (SIGTERM)" in stderr and "resumes" in stderr
    assert committed_epoch(folder / "backup") == 2

    code, stderr = run("temporal_train.py", argv)
    assert code == 0, stderr[-3000:]
    assert_finished(folder, 3)
    assert sorted(os.listdir(folder / "backup")) == ["epoch000003.weights.h5", "training_metadata.json"]
    assert "inside" in trace.read_text()  # the faults struck where they were meant to

    # Resumed four times, epoch 1 trained four times over: the same model as a run never stopped.
    reference = tmp_path / "reference"
    temporal_train.main(temporal_args(dataset, reference))
    for ours, theirs in zip(weights_of(folder / "last.keras"), weights_of(reference / "last.keras"), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)  # equal but for the order of float sums


@pytest.fixture(scope="module")
def second_dataset(tmp_path_factory):
    """A 2-class dataset for the second head of multi-task runs."""
    root = str(tmp_path_factory.mktemp("second"))
    return root, fakedata.write_dataset(root, ("delta", "epsilon"), groups=(1, 8), clips=2, frames=6, size=(80, 64))


def resumable_run(kind, dataset, second_dataset, folder):
    """(script, argv, the commit after which each killed run is killed) of a run of several steps an epoch
    and 2 loader processes: the temporal stream (3 epochs), the spatial stream (2 epochs a phase: killed
    at the end of phase 1, then after phase 2's first epoch) or a multi-task temporal run."""
    several = ["--epoch-steps", "3", "--workers", "2"]
    if kind == "spatial":
        return "spatial_train.py", spatial_args(dataset, folder) + several + [
            "--phase1-iterations", "6", "--phase2-iterations", "6"], (2, 1)
    argv = temporal_args(dataset, folder, 9, *several)
    if kind == "multitask":
        root, splits = second_dataset
        argv += ["--multitask", "synthetic_hmdb", "--multitask-data-dir", root, "--multitask-splits-dir", splits]
    return "temporal_train.py", argv, (1, 1)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["temporal", "spatial", "multitask"])
def test_a_run_killed_after_each_commit_ends_with_the_weights_of_a_run_never_stopped(
        kind, dataset, second_dataset, tmp_path):
    """Killed after an epoch's commit, started again, killed after the next, then finished: bit for bit the
    weights of the same command run once (batch order and draws come from the seed, the epoch and the
    batch, never from state a restart loses; on JAX, fit no longer takes a batch from Keras's queue to
    build the optimizer, which left the epoch's other batches to be served late). Both backends (CI)."""
    script, argv, kills = resumable_run(kind, dataset, second_dataset, tmp_path / "resumed")
    for fault in [f"KILL {n} after-replace training_metadata.json" for n in kills] + [""]:
        code, stderr = run(script, argv, fault)
        assert code == (-signal.SIGKILL if fault else 0), stderr[-3000:]
    assert logged_epochs(tmp_path / "resumed") == [0, 1, 2] + ([3] if kind == "spatial" else [])
    script, argv, _ = resumable_run(kind, dataset, second_dataset, tmp_path / "once")
    assert run(script, argv)[0] == 0
    resumed, once = (weights_of(tmp_path / name / "last.keras") for name in ("resumed", "once"))
    for ours, theirs in zip(resumed, once, strict=True):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.slow
def test_spatial_run_killed_around_the_phase_boundary_resumes(dataset, tmp_path):
    folder = tmp_path / "spatial"
    argv = spatial_args(dataset, folder)
    # Phase 1 done (its backup committed), half of phase1.keras written: a rerun must not take it
    # for a finished phase 1.
    code, stderr = run("spatial_train.py", argv, "KILL 1 inside phase1.keras")
    assert code == -9, stderr[-3000:]
    assert committed_epoch(folder / "backup" / "phase1") == 2
    # The rerun saves phase1.keras from phase 1's backup, starts phase 2: killed in its first backup.
    assert run("spatial_train.py", argv, "KILL 1 inside backup/phase2/")[0] == -9
    assert not (folder / "backup" / "phase2" / "training_metadata.json").exists()

    code, stderr = run("spatial_train.py", argv)
    assert code == 0, stderr[-3000:]
    assert_finished(folder, 4, ("last.keras", "phase1.keras"))
    assert committed_epoch(folder / "backup" / "phase2") == 4


# ---------------------------------------------------------------------------- files left by older versions

@pytest.mark.slow
def test_a_truncated_last_keras_is_not_a_finished_run(dataset, tmp_path, tiny_nets):
    folder = tmp_path / "temporal"
    argv = temporal_args(dataset, folder, 1)
    temporal_train.main(argv)
    whole = weights_of(folder / "last.keras")
    with open(folder / "last.keras", "r+b") as f:  # as a kill during the final save left it
        f.truncate(8192)
    temporal_train.main(argv)  # trains nothing, saves the model of the backup
    for ours, theirs in zip(weights_of(folder / "last.keras"), whole, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    stamp = os.path.getmtime(folder / "last.keras")
    temporal_train.main(argv)  # whole now: left alone
    assert os.path.getmtime(folder / "last.keras") == stamp


@pytest.mark.slow
def test_a_truncated_backup_is_a_clear_error(dataset, tmp_path, tiny_nets, capsys):
    folder = tmp_path / "temporal"
    argv = temporal_args(dataset, folder, 1)
    temporal_train.main(argv)
    # What keras.callbacks.BackupAndRestore, killed while writing, left in older versions.
    backup = folder / "backup"
    for name in os.listdir(backup):
        os.remove(backup / name)
    (backup / "latest.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(792))
    (backup / "training_metadata.json").write_text('{"epoch": 1, "batch": 0}')
    capsys.readouterr()
    assert errors.run(temporal_train.main, temporal_args(dataset, folder, 2)) == 2
    message = capsys.readouterr().err
    assert "latest.weights.h5: damaged" in message and "mv " in message and "Traceback" not in message


@pytest.mark.slow
def test_a_trained_run_whose_backup_metadata_is_lost_is_not_trained_again(dataset, tmp_path, tiny_nets, capsys):
    """Issue 29, defect 3: it retrained from scratch without a word, over last.keras and log.csv."""
    folder = tmp_path / "temporal"
    temporal_train.main(temporal_args(dataset, folder, 2))
    (folder / "backup" / "training_metadata.json").unlink()
    model, log = (folder / "last.keras").read_bytes(), (folder / "log.csv").read_text()
    capsys.readouterr()
    assert errors.run(temporal_train.main, temporal_args(dataset, folder, 2)) == 2
    message = capsys.readouterr().err
    assert "training_metadata.json: missing" in message and "--overwrite" in message and message.count("\n") == 1
    assert (folder / "last.keras").read_bytes() == model and (folder / "log.csv").read_text() == log


# ---------------------------------------------------------------------------- the run's folder and config.json

@pytest.mark.slow
def test_a_resumed_run_never_rewrites_its_data_record(dataset, tmp_path, tiny_nets, capsys):
    folder = tmp_path / "temporal"
    temporal_train.main(temporal_args(dataset, folder, 1))
    with open(folder / "config.json") as f:
        config = json.load(f)
    assert config["frame_size"] == [80, 64]

    other = str(tmp_path / "other")  # the same videos extracted at another size
    splits = fakedata.write_dataset(other, CLASSES, groups=(1, 8, 9), clips=2, frames=6, size=(96, 72))
    argv = temporal_args(dataset, folder, 1)
    argv[argv.index("--data-dir") + 1], argv[argv.index("--splits-dir") + 1] = other, splits
    capsys.readouterr()
    assert errors.run(temporal_train.main, argv) == 2
    message = capsys.readouterr().err
    assert "frames of 96x72, not 80x64" in message and message.count("\n") == 1
    with open(folder / "config.json") as f:
        assert json.load(f) == config
    assert config["trained_on"] == {"synthetic": ["trainlist01.txt"]}


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB file system of its own (tmpfs), for a disk that fills up; skipped where it cannot be mounted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


@pytest.mark.slow
def test_a_disk_filling_up_while_the_backup_is_written_is_one_line_and_exit_1(dataset, small_disk):
    """h5py reports the failed write of the backup's weights as a RuntimeError, and its finalisers wrote
    again at exit: tracebacks, at times a segfault (exit 139). Now one line, exit 1, and the same command
    resumes once there is space."""
    folder = small_disk / "temporal"
    argv = temporal_args(dataset, folder)
    code, stderr = run("temporal_train.py", argv, "FILL 2 inside backup/")
    assert code == 1 and "error: no space left on the device" in stderr, stderr[-3000:]
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert committed_epoch(folder / "backup") == 1
    os.remove(folder / "backup" / "filler")
    code, stderr = run("temporal_train.py", argv)
    assert code == 0, stderr[-3000:]
    assert_finished(folder, 3)


@pytest.mark.slow
def test_the_last_log_row_cut_short_is_written_again_from_the_backup(dataset, tmp_path, tiny_nets):
    """A finished run whose log.csv lost half its last row (a crash as it was written, a full disk): started
    again, it trains nothing and the row is back, where it used to leave a gap (issue 29)."""
    folder = tmp_path / "temporal"
    argv = temporal_args(dataset, folder, 2)
    assert errors.run(temporal_train.main, argv) == 0
    whole = (folder / "log.csv").read_text()
    (folder / "log.csv").write_text(whole[:len(whole) - len(whole.splitlines()[-1]) // 2 - 1])
    assert errors.run(temporal_train.main, argv) == 0
    assert logged_epochs(folder) == [0, 1]
    assert (folder / "log.csv").read_text() == whole


def test_damaged_run_files_are_one_line_naming_the_file(tmp_path):
    """log.csv of binary bytes or without its header, config.json of the wrong shape (issue 29, defects 10, 11)."""
    folder, classes = str(tmp_path / "run"), ["Alpha", "Beta"]
    config = {"stream": "temporal", "image_size": 64, "stack_length": 2, "dataset": "synthetic", "split": 1,
              "frame_size": [80, 64], "epoch_steps": 3}
    checkpoints.prepare(folder, config, classes)
    log = os.path.join(folder, "log.csv")
    for damage in (b"\x89PNG\r\n\x1a\n\xff\xfe", b"0,0.5,1.2\n1,0.6,1.1\n"):
        with open(log, "wb") as f:
            f.write(damage)
        with pytest.raises(errors.DataError, match=r"log\.csv: .*--overwrite") as raised:
            training.read_log(log)
        assert "\n" not in str(raised.value)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump([config], f)
    with pytest.raises(errors.DataError, match=r"config\.json: not a JSON object"):
        checkpoints.prepare(folder, config, classes)


def test_a_run_folder_that_cannot_be_written_is_one_line(dataset, tmp_path, capsys):
    """An existing run folder on a read-only mount (here: no write permission, or a read-only bind mount as
    root): one line naming it (issue 29, defect 12)."""
    folder = tmp_path / "temporal"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True)
    if mounted.returncode:  # not root: a folder without write permission
        os.chmod(folder, 0o555)
    try:
        assert errors.run(temporal_train.main, temporal_args(dataset, folder)) == 2
    finally:
        if mounted.returncode:
            os.chmod(folder, 0o755)
        else:
            subprocess.run(["umount", str(folder)], check=True)
    message = capsys.readouterr().err
    assert message.startswith(f"error: {folder}: cannot be written") and "--checkpoint-dir" in message
    assert message.count("\n") == 1


def test_a_resumed_run_keeps_config_json_as_the_run_started(tmp_path):
    """Resuming from other folders (a copy of the same data) adds what config.json lacks and changes nothing
    it holds: it says where the run started, for fuse_test.py, the demo and the lineage of --init."""
    folder, classes = str(tmp_path / "run"), ["Alpha", "Beta"]
    config = {"stream": "temporal", "image_size": 64, "stack_length": 2, "dataset": "synthetic", "split": 1,
              "frame_size": [80, 64], "data_dir": "data/first", "splits_dir": "data/first/splits"}
    checkpoints.prepare(folder, config, classes)
    resumed = {**config, "data_dir": "copy", "splits_dir": "copy/splits", "seed": 7}
    checkpoints.prepare(folder, resumed, classes)
    with open(os.path.join(folder, "config.json")) as f:
        assert json.load(f) == {**config, "seed": 7}


def test_resuming_with_other_epoch_steps_is_refused(tmp_path):
    """The backup counts epochs: a resumed run with epochs of 6 steps where the run has done epochs of 3 would
    train another number of iterations than --iterations says (issue 29, defect 2)."""
    folder, classes = str(tmp_path / "run"), ["Alpha", "Beta"]
    config = {"stream": "temporal", "image_size": 64, "stack_length": 2, "dataset": "synthetic", "split": 1,
              "frame_size": [80, 64], "epoch_steps": 3}
    checkpoints.prepare(folder, config, classes)
    with pytest.raises(errors.DataError, match="epochs of 3 steps.*--epoch-steps 3"):
        checkpoints.prepare(folder, {**config, "epoch_steps": 6}, classes)
    checkpoints.prepare(folder, config, classes)  # the same steps: resumes
    older = {key: value for key, value in config.items() if key != "epoch_steps"}  # a run from before the record
    checkpoints.write_json(os.path.join(folder, "config.json"), older)
    checkpoints.prepare(folder, {**config, "epoch_steps": 6}, classes)


def test_checkpoint_dir_naming_a_file_is_a_one_line_error(dataset, tmp_path, capsys):
    file = tmp_path / "model.keras"
    file.write_text("not a folder")
    assert errors.run(temporal_train.main, temporal_args(dataset, file)) == 2
    message = capsys.readouterr().err
    assert message.startswith("error: --checkpoint-dir") and "is a file" in message and message.count("\n") == 1
    assert file.read_text() == "not a folder"


def test_trained_on_names_the_lists_of_every_head():
    single = {"dataset": "ucf101", "split": 2, "multitask": None}
    assert lineage.trained_on(single) == {"ucf101": ["trainlist02.txt"]}
    every = {"dataset": "ucf101", "split": 1, "multitask": {"dataset": "hmdb51", "videos": "all"}}
    assert lineage.trained_on(every) == {"ucf101": ["trainlist01.txt"],
                                            "hmdb51": ["trainlist01.txt", "testlist01.txt"]}
    train = {"dataset": "ucf101", "split": 3, "multitask": {"dataset": "hmdb51", "videos": "train"}}
    assert lineage.trained_on(train) == {"ucf101": ["trainlist03.txt"], "hmdb51": ["trainlist01.txt"]}
    assert lineage.trained_on({**train, "trained_on": {"x": ["y"]}}) == {"x": ["y"]}  # recorded: as recorded


def test_sigterm_is_handled_as_ctrl_c():
    code = ("import os, signal, sys, time\nfrom twostream import errors\n"
            "def main(argv):\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    time.sleep(5)\n"
            "code = errors.run(main)\n"
            "assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back\n"
            "sys.exit(code)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 128 + signal.SIGTERM and "interrupted (SIGTERM)" in result.stderr
