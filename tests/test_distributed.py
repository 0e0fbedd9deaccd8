"""Multi-worker training for real: two worker processes on localhost ports (CPU), each running
temporal_train.main with its TF_CONFIG, as on two machines that share the checkpoint folder;
and the shards of a global batch that the workers load.

Each worker runs WORKER below: temporal_train.main (with the tiny stand-in networks) with a few records written to a
JSON-lines file (the batches it loaded, the epochs it trained, where it wrote) and its weights saved at the
start and end of every epoch. The cluster tests need the TensorFlow backend (tf.distribute)."""
import contextlib
import csv
import hashlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest

import fakedata
import faults
import generators
from twostream.datasets import ucf101
from twostream.datasets.frames import Stream
from twostream.networks import custom_layers
from twostream.video import media

needs_tensorflow = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                      reason="tf.distribute needs the TensorFlow backend")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("Alpha", "Beta", "Gamma")
BATCH, SIZE, STACK = 4, 64, 2
TIMEOUT = 240  # seconds a cluster run may take before its workers are killed

WORKER = textwrap.dedent("""
    import hashlib, json, os, sys, threading, time
    import keras, numpy as np
    import generators, models, temporal_train
    from twostream.networks import custom_layers
    from twostream import errors
    from twostream.train import training
    keras.config.disable_traceback_filtering()  # whole tracebacks in the logs
    sys.path.insert(0, "tests")
    import faults
    for name, tiny in faults.tiny_nets().items():  # the cluster, not the network, is under test
        setattr(models, name, tiny)

    out, worker = os.environ["TEST_OUT"], os.environ["TEST_WORKER"]
    pause = json.loads(os.environ.get("TEST_PAUSE", "null"))  # [epoch, batch] to stop at until killed
    lock = threading.Lock()

    def record(**entry):
        with lock, open(os.path.join(out, f"records_{worker}.jsonl"), "a") as f:
            f.write(json.dumps(entry) + "\\n")

    load_batch = generators.TrainSequence.__getitem__
    def recorded_batch(self, index):  # runs in tf.data's threads
        x, y = load_batch(self, index)
        positions, videos = self.shard_samples(index)
        record(batch=[self.epoch, index], positions=[int(p) for p in positions], videos=[int(v) for v in videos],
               digests=[hashlib.sha1(sample.tobytes()).hexdigest() for sample in x], labels=y.tolist())
        return x, y
    generators.TrainSequence.__getitem__ = recorded_batch

    class Record(keras.callbacks.Callback):
        def __init__(self, folder):
            super().__init__()
            self.folder, self.epoch = folder, None
        def on_epoch_begin(self, epoch, logs=None):
            record(epoch=epoch)
            if self.epoch is None:  # training starts (after BackupAndRestore's restore)
                np.savez(os.path.join(out, f"start_{worker}.npz"), *self.model.get_weights())
            self.epoch = epoch
        def on_epoch_end(self, epoch, logs=None):
            np.savez(os.path.join(out, f"end_{worker}_{epoch}.npz"), *self.model.get_weights())
        def on_train_batch_begin(self, batch, logs=None):
            if pause == [self.epoch, batch]:
                record(paused=pause)
                time.sleep(600)  # until the test kills this worker
        def on_train_end(self, logs=None):
            record(folder=self.folder, wrote=sorted(os.listdir(self.folder)))

    make_callbacks = training.callbacks
    training.callbacks = lambda folder, *a, **k: make_callbacks(folder, *a, **k) + [Record(folder)]
    sys.exit(errors.run(temporal_train.main, json.loads(sys.argv[1])))
""")


# ---------------------------------------------------------------------------- set-up

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """3 classes x 2 groups x 2 clips: 12 training videos (groups 8 and 9) of 12 frames at 80x64."""
    root = str(tmp_path_factory.mktemp("data"))
    splits = fakedata.write_dataset(root, CLASSES, groups=(1, 8, 9), clips=2, frames=12, size=(80, 64))
    rng = np.random.default_rng(0)  # noise flow: every sample of every video differs
    for video in ucf101.load_index(root, splits, 1, "train"):
        for j in range(video.flow_count):
            for component in "uv":
                path = ucf101.frame_path(ucf101.flow_dir(root, component, video.flow_folder), j)
                media.write_image(path, rng.integers(0, 256, (64, 80), np.uint8))
    return root, splits


def train_args(dataset, folder, *extra):
    root, splits = dataset
    return ["--dataset", "synthetic", "--data-dir", root, "--splits-dir", splits, "--checkpoint-dir", str(folder),
            "--image-size", str(SIZE), "--stack-length", str(STACK), "--batch-size", str(BATCH), "--workers", "2",
            "--distribute", "multiworker", *extra]


def free_ports(count):
    """Ports nobody listens on now: bound to port 0, the system picks them."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]


def start_cluster(argvs, out, pause=None):
    """Start a cluster of one process per argv: worker 0 is the chief. `pause`: {worker: [epoch, batch]}."""
    os.makedirs(out, exist_ok=True)
    addresses = [f"localhost:{port}" for port in free_ports(len(argvs))]
    processes = []
    for index, argv in enumerate(argvs):
        env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
               "TF_CONFIG": json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}),
               "TEST_OUT": str(out), "TEST_WORKER": str(index), "TEST_PAUSE": json.dumps((pause or {}).get(index))}
        with open(os.path.join(out, f"log_{index}.txt"), "ab") as log:
            processes.append(subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(argv)], cwd=REPO, env=env,
                                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    return processes


def stop(processes):
    """Kill whatever still runs, and reap it."""
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


def wait_for(processes, out, timeout=TIMEOUT):
    """Wait for the workers to exit; kill them all if they take longer than `timeout` seconds."""
    deadline = time.monotonic() + timeout
    try:
        for process in processes:
            process.wait(max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail(f"the cluster ran past {timeout} s\n{logs(out)}")
    finally:
        stop(processes)
    return [p.returncode for p in processes]


def logs(out):
    return "\n".join(f"--- worker {i}:\n" + open(os.path.join(out, f"log_{i}.txt"), errors="replace").read()[-3000:]
                     for i in range(2) if os.path.exists(os.path.join(out, f"log_{i}.txt")))


def records(out, worker):
    path = os.path.join(out, f"records_{worker}.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


def loaded_batches(out, worker):
    """{(epoch, batch index): record} of the batches a worker loaded; reloads of a batch must be identical."""
    batches = {}
    for entry in records(out, worker):
        if "batch" in entry:
            key = tuple(entry["batch"])
            assert batches.setdefault(key, entry) == entry, f"worker {worker} loaded batch {key} twice, differently"
    return batches


def weights(path):
    with np.load(path) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def logged_epochs(folder):
    with open(os.path.join(folder, "log.csv"), newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def one_worker_batch(dataset, epoch, index, val_groups=0):
    """(videos, sample digests) of a global batch as one worker alone (shard 0 of 1) draws it."""
    root, splits = dataset
    videos, _ = ucf101.hold_out_groups(ucf101.load_index(root, splits, 1, "train"), val_groups)
    sequence = generators.TrainSequence(videos, root, Stream("temporal", STACK), batch_size=BATCH,
                                        image_size=SIZE, steps=index + 1, seed=0)
    sequence.epoch = epoch
    x, _ = sequence[index]
    return [int(v) for v in sequence.shard_samples(index)[1]], [hashlib.sha1(s.tobytes()).hexdigest() for s in x]


# ---------------------------------------------------------------------------- tests

@pytest.mark.parametrize("sampling", ["classes", "videos"])
def test_the_shards_of_a_batch_together_are_the_one_worker_batch(dataset, sampling):
    root, splits = dataset
    videos = ucf101.load_index(root, splits, 1, "train")

    def make(shard):
        return generators.TrainSequence(videos, root, "spatial", batch_size=6, image_size=56, steps=2,
                                        sampling=sampling, seed=3, shard=shard)

    whole, shards = make((0, 1)), [make((k, 3)) for k in range(3)]
    for epoch in (0, 1):
        for sequence in [whole] + shards:
            sequence.epoch = epoch
        for index in range(len(whole)):
            x, y = whole[index]  # random crops, flips and lighting: every sample's own draws
            parts = [shard[index] for shard in shards]
            assert [len(part_y) for _, part_y in parts] == [2, 2, 2]
            np.testing.assert_array_equal(np.concatenate([part_x for part_x, _ in parts]), x)
            np.testing.assert_array_equal(np.concatenate([part_y for _, part_y in parts]), y)
    with pytest.raises(ValueError, match="divides by 4, not 6"):
        make((0, 4))
    with pytest.raises(ValueError, match="from 0 to 2"):
        make((3, 3))


@pytest.mark.slow
@needs_tensorflow
def test_two_workers_train_one_model_on_disjoint_halves_of_every_batch(dataset, tmp_path):
    folder, out = tmp_path / "run", tmp_path / "out"
    argv = train_args(dataset, folder, "--iterations", "4", "--epoch-steps", "2", "--val-groups", "1")
    assert wait_for(start_cluster([argv, argv], out), out) == [0, 0], logs(out)

    # One model: both workers end with the same weights, and training changed them.
    first, second = weights(out / "end_0_1.npz"), weights(out / "end_1_1.npz")
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not all(np.array_equal(a, b) for a, b in zip(first, weights(out / "start_0.npz")))

    # Every global batch of 4: worker 0 loaded its first half, worker 1 its second half, and
    # together they are exactly the batch that one worker alone draws with the same seed.
    halves = [loaded_batches(out, 0), loaded_batches(out, 1)]
    for epoch in (0, 1):
        for index in (0, 1):
            mine, theirs = (halves[w][(epoch, index)] for w in (0, 1))
            assert mine["positions"] == [0, 1] and theirs["positions"] == [2, 3]
            videos, digests = one_worker_batch(dataset, epoch, index, val_groups=1)
            assert mine["videos"] + theirs["videos"] == videos
            assert mine["digests"] + theirs["digests"] == digests
            assert not set(mine["digests"]) & set(theirs["digests"])
    assert [e["epoch"] for e in records(out, 0) if "epoch" in e] == [e["epoch"] for e in records(out, 1)
                                                                      if "epoch" in e] == [0, 1]

    # Only the chief's files are in the run folder: one log row per epoch, not one per worker.
    # Worker 1 wrote the same files into its temporary folder, deleted when it ended.
    assert logged_epochs(folder) == [0, 1]
    with open(folder / "log.csv", newline="") as f:
        assert all(0 <= float(row["val_accuracy"]) <= 1 for row in csv.DictReader(f))  # held-out group 9
    wrote = [next(e for e in records(out, w) if "folder" in e) for w in (0, 1)]
    assert wrote[0]["folder"] == str(folder) and wrote[1]["folder"] == str(folder / "workertemp_1")
    assert {"last.keras", "best.keras", "log.csv", "backup"} <= set(wrote[0]["wrote"]) & set(wrote[1]["wrote"])
    assert not [name for name in os.listdir(folder) if name.startswith("workertemp")]
    assert "worker 1 of 2, not the chief" in open(out / "log_1.txt").read()
    assert "worker 0 of 2, the chief" in open(out / "log_0.txt").read()


@pytest.mark.slow
@needs_tensorflow
def test_a_killed_worker_restarted_with_the_cluster_resumes_from_the_backup(dataset, tmp_path):
    folder, out = tmp_path / "run", tmp_path / "out"
    argv = train_args(dataset, folder, "--iterations", "6", "--epoch-steps", "2")
    processes = start_cluster([argv, argv], out, pause={1: [1, 1]})  # worker 1 stops inside epoch 1, after its step 0
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (os.path.exists(folder / "log.csv") and logged_epochs(folder) == [0]
                   and any("paused" in e for e in records(out, 1))):
            assert time.monotonic() < deadline and all(p.poll() is None for p in processes), logs(out)
            time.sleep(0.5)
        processes[1].kill()  # worker 1 dies in the middle of epoch 1
        processes[1].wait()
        # The chief, stuck in epoch 1's second step without worker 1, stops by itself once worker 1
        # misses its heartbeats (about 10 s), as tf.distribute's fault tolerance documents.
        assert processes[0].wait(60) != 0
        assert "Start every worker again" in open(out / "log_0.txt").read()
    finally:
        stop(processes)
    with open(folder / "backup" / "training_metadata.json") as f:
        assert json.load(f)["epoch"] == 1
    after_epoch_0 = weights(out / "end_0_0.npz")

    os.rename(out, tmp_path / "killed")  # the restarted cluster records afresh
    assert wait_for(start_cluster([argv, argv], out), out) == [0, 0], logs(out)
    for worker in (0, 1):  # both workers start at epoch 1 with the chief's weights after epoch 0
        assert [e["epoch"] for e in records(out, worker) if "epoch" in e] == [1, 2]
        assert all(np.array_equal(a, b) for a, b in zip(weights(out / f"start_{worker}.npz"), after_epoch_0))
    assert logged_epochs(folder) == [0, 1, 2]  # from scratch it would read 0, 0, 1, 2
    final = [weights(out / f"end_{w}_2.npz") for w in (0, 1)]
    assert all(np.array_equal(a, b) for a, b in zip(*final))
    assert not [name for name in os.listdir(folder) if name.startswith("workertemp")]

    # A worker that cannot see the chief's folder starts from scratch: both refuse to train on.
    longer = ["--iterations", "8", "--epoch-steps", "2"]
    elsewhere = train_args(dataset, tmp_path / "not_shared", *longer)
    assert wait_for(start_cluster([train_args(dataset, folder, *longer), elsewhere], tmp_path / "apart"),
                    tmp_path / "apart") == [2, 2]
    assert "the workers start at epochs [3, 0]" in logs(tmp_path / "apart")
    assert logged_epochs(folder) == [0, 1, 2]


# ---------------------------------------------------------------------------- JAX: keras.distribution

def jax_argv(dataset, folder, *extra):
    root, splits = dataset
    argv = ["--dataset", "synthetic", "--data-dir", root, "--splits-dir", splits, "--checkpoint-dir", str(folder),
            "--image-size", str(SIZE), "--stack-length", str(STACK), "--batch-size", str(BATCH), "--workers", "1",
            "--iterations", "4", "--epoch-steps", "2", "--dropout", "0", *extra]
    return [sys.executable, os.path.join(REPO, "tests", "faults.py"), "temporal_train.py", *argv]


def jax_run(dataset, folder, env, *extra):
    """temporal_train.py with the tiny networks in the environment `env` (jax_environment)."""
    return subprocess.run(jax_argv(dataset, folder, *extra), cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)


def jax_environment(tmp_path, devices):
    """JAX without TensorFlow, the tiny networks, and `devices` CPU devices."""
    return {**faults.without_tensorflow(tmp_path), "TINY_NETS": "1",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def keras_weights(path):
    return custom_layers.load_model(str(path)).get_weights()


# temporal_train.py with the tiny networks (as tests/faults.py runs it), stopping at TEST_PAUSE's [epoch, batch] until
# killed, after writing the file TEST_PAUSED.
JAX_WORKER = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, "tests")
    import keras
    import faults, models, temporal_train
    from twostream.networks import custom_layers
    from twostream import errors
    from twostream.train import training
    for name, tiny in faults.tiny_nets().items():
        setattr(models, name, tiny)
    pause = json.loads(os.environ.get("TEST_PAUSE", "null"))

    class Pause(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_train_batch_begin(self, batch, logs=None):
            if pause == [self.epoch, batch]:
                open(os.environ["TEST_PAUSED"], "w").close()
                time.sleep(600)  # until the test kills this process

    make_callbacks = training.callbacks
    training.callbacks = lambda *a, **k: make_callbacks(*a, **k) + [Pause()]
    sys.exit(errors.run(temporal_train.main, sys.argv[1:]))
""")


def start_jax_cluster(dataset, folder, env, address, out, pause=None, folders=None, extra=()):
    """Two JAX processes of the same command (JAX_WORKER) on `address`, each logging into out/log_<process>.txt.
    `pause`: {process: [epoch, batch]}; `folders`: {process: its --checkpoint-dir} where not `folder`; `extra`:
    more flags."""
    os.makedirs(out, exist_ok=True)
    processes = []
    for index in range(2):
        own = (folders or {}).get(index, folder)
        argv = jax_argv(dataset, own, "--distribute", "multiworker")[3:] + list(extra)
        with open(os.path.join(out, f"log_{index}.txt"), "ab") as log:
            processes.append(subprocess.Popen(
                [sys.executable, "-c", JAX_WORKER, *argv], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**env, "KERAS_DISTRIBUTION_JOB_ADDRESSES": address, "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
                     "KERAS_DISTRIBUTION_PROCESS_ID": str(index), "TEST_PAUSED": str(out / f"paused_{index}"),
                     "TEST_PAUSE": json.dumps((pause or {}).get(index))}))
    return processes


def run_jax_cluster(*args, **kwargs):
    """start_jax_cluster's two processes, run to their end: their exit codes."""
    processes = start_jax_cluster(*args, **kwargs)
    try:
        return [process.wait(TIMEOUT) for process in processes]
    finally:
        stop(processes)


@pytest.mark.slow
def test_mirrored_on_jax_splits_each_batch_over_two_devices_and_trains_the_weights_of_one(dataset, tmp_path):
    """--distribute mirrored on JAX (keras.distribution.DataParallel, no TensorFlow installed): the same
    arithmetic as one device, each batch's mean gradient summed from two halves, so the same weights within
    float32 round-off (a few ulps of summation order over 4 steps: atol 1e-5). A batch that does not split
    over the devices is one line, exit 2. Scoring on the 2 devices gives the scores of one (a forward pass has no
    sum across devices: atol 1e-6)."""
    env = jax_environment(tmp_path, 2)
    one = jax_run(dataset, tmp_path / "one", env)  # two devices present, no distribution: one used
    assert one.returncode == 0, one.stderr[-3000:]
    two = jax_run(dataset, tmp_path / "two", env, "--distribute", "mirrored")
    assert two.returncode == 0, two.stderr[-3000:]
    assert "--distribute mirrored: 2 devices" in two.stdout
    for ours, theirs in zip(keras_weights(tmp_path / "two" / "last.keras"),
                            keras_weights(tmp_path / "one" / "last.keras"), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    odd = jax_run(dataset, tmp_path / "odd", env, "--distribute", "mirrored", "--batch-size", "5")
    assert odd.returncode == 2 and "does not split evenly over the 2 devices" in odd.stderr

    # Scoring (fuse_test.py --distribute mirrored): each batch split over the 2 devices, padded to an even count of
    # rows (3 samples a video: 9 rows a centre-crop batch, 3 whole samples a 10-crop one), the same scores.
    root, splits = dataset
    for crops in ("center", "10"):
        scores = {}
        for name, extra in (("one", []), ("two", ["--distribute", "mirrored"])):
            argv = ["--dataset", "synthetic", "--data-dir", root, "--splits-dir", splits, "--streams", "temporal",
                    "--temporal", str(tmp_path / "one" / "last.keras"), "--samples", "3", "--crops", crops,
                    "--batch-size", "9", "--workers", "1", "--results-dir", str(tmp_path / "results"),
                    "--run-name", f"{name}_{crops}", *extra]
            scored = subprocess.run([sys.executable, os.path.join(REPO, "tests", "faults.py"), "fuse_test.py", *argv],
                                    cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT)
            assert scored.returncode == 0, scored.stderr[-3000:]
            assert ("--distribute mirrored: 2 devices" in scored.stdout) == bool(extra)
            with np.load(tmp_path / "results" / f"{name}_{crops}" / "scores_temporal.npz") as saved:
                scores[name] = saved["scores"]
        assert scores["one"].shape == (6, 3, len(CLASSES))
        np.testing.assert_allclose(scores["two"], scores["one"], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_mirrored_on_jax_keeps_accumulation_mixed_precision_and_multitask(dataset, tmp_path):
    """What one device's run promises holds on 2 JAX devices: --accumulate 2 gives the weights of one device with
    --accumulate 2 (atol 1e-5, as above), and --precision bfloat16 and --multitask (its second dataset here the same
    videos under HMDB-51's preset name, half of every batch split over the devices) train and save."""
    env = jax_environment(tmp_path, 2)
    one = jax_run(dataset, tmp_path / "one", env, "--accumulate", "2")
    assert one.returncode == 0, one.stderr[-3000:]
    two = jax_run(dataset, tmp_path / "two", env, "--accumulate", "2", "--distribute", "mirrored")
    assert two.returncode == 0, two.stderr[-3000:]
    for ours, theirs in zip(keras_weights(tmp_path / "two" / "last.keras"),
                            keras_weights(tmp_path / "one" / "last.keras"), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    root, splits = dataset
    for name, extra in (("bfloat16", ["--precision", "bfloat16"]),
                        ("multitask", ["--multitask", "synthetic_hmdb", "--multitask-data-dir", root,
                                       "--multitask-splits-dir", splits])):
        run = jax_run(dataset, tmp_path / name, env, "--distribute", "mirrored", *extra)
        assert run.returncode == 0 and "--distribute mirrored: 2 devices" in run.stdout, run.stderr[-3000:]
        assert all(np.isfinite(w).all() for w in keras_weights(tmp_path / name / "last.keras"))


@pytest.mark.slow
def test_two_jax_processes_train_the_weights_of_one_on_their_halves_of_every_batch(dataset, tmp_path):
    """--distribute multiworker on JAX: two processes on localhost (keras.distribution.initialize, CPU
    collectives), each loading its own half of every global batch of 4, one device each, no TensorFlow:
    the weights of one process training on whole batches, within float32 round-off (atol 1e-5). Process 0
    keeps the run's files; process 1 writes into workertemp_1, removed at its exit."""
    env = jax_environment(tmp_path, 1)
    one = jax_run(dataset, tmp_path / "one", env)
    assert one.returncode == 0, one.stderr[-3000:]
    address = f"localhost:{free_ports(1)[0]}"
    processes = [subprocess.Popen(jax_argv(dataset, tmp_path / "two", "--distribute", "multiworker"), cwd=REPO,
                                  env={**env, "KERAS_DISTRIBUTION_JOB_ADDRESSES": address,
                                       "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
                                       "KERAS_DISTRIBUTION_PROCESS_ID": str(index)},
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
                 for index in range(2)]
    try:
        outputs = [process.communicate(timeout=TIMEOUT)[0] for process in processes]
    finally:
        stop(processes)
    assert [process.returncode for process in processes] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    assert "--distribute multiworker: worker 1 of 2, not the chief" in outputs[1]
    assert sorted(os.listdir(tmp_path / "two")) == sorted(os.listdir(tmp_path / "one"))  # no workertemp_1 left
    for ours, theirs in zip(keras_weights(tmp_path / "two" / "last.keras"),
                            keras_weights(tmp_path / "one" / "last.keras"), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_a_killed_jax_process_stops_the_other_at_once_and_the_cluster_started_again_resumes(dataset, tmp_path):
    """--distribute multiworker on JAX: process 1 killed (SIGKILL) in the middle of epoch 1 of 2. Process 0, waiting
    for it in a step's all-reduce, stops within seconds (gloo's connection closed: at once; JAX alone waited for its
    100 s heartbeat timeout, then aborted with exit -6 and a C++ stack), with one line and exit 1. Both started again
    with the same command resume from process 0's backup of epoch 0 and end with the weights of one process never
    stopped, within float32 round-off (atol 1e-5: two processes sum each batch's gradient from two halves, in
    another order than one; the resumed run restores the weights and optimizer state exactly). A process with a
    folder of its own (no shared --checkpoint-dir) starts at epoch 0: both refuse to train (SameStartOnEveryWorker)."""
    env = jax_environment(tmp_path, 1)
    one = jax_run(dataset, tmp_path / "one", env)
    assert one.returncode == 0, one.stderr[-3000:]
    folder, out, address = tmp_path / "two", tmp_path / "out", f"localhost:{free_ports(1)[0]}"
    processes = start_jax_cluster(dataset, folder, env, address, out, pause={1: [1, 1]})  # after epoch 1's step 0
    try:
        deadline = time.monotonic() + TIMEOUT
        while not os.path.exists(out / "paused_1"):
            assert time.monotonic() < deadline and all(p.poll() is None for p in processes), logs(out)
            time.sleep(0.2)
        processes[1].kill()
        processes[1].wait()
        killed = time.monotonic()
        try:
            code = processes[0].wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"process 0 still runs 30 s after process 1 was killed\n{logs(out)}")
        print(f"process 0 stopped {time.monotonic() - killed:.2f} s after process 1 was killed")
    finally:
        stop(processes)
    survivor = open(out / "log_0.txt", errors="replace").read()
    assert code == 1, survivor[-3000:]
    assert "error: a process of the JAX cluster stopped (a collective failed" in survivor, survivor[-3000:]
    assert "Start the same command again on every process" in survivor and "Check failure" not in survivor
    with open(folder / "backup" / "training_metadata.json") as f:
        assert json.load(f)["epoch"] == 1

    again = tmp_path / "again"
    assert run_jax_cluster(dataset, folder, env, address, again) == [0, 0], logs(again)  # the same commands
    for index in range(2):  # both start at epoch 1 (Keras counts from 1): nothing of epoch 0 again
        log = open(again / f"log_{index}.txt").read()
        assert "Epoch 2/2" in log and "Epoch 1/2" not in log, log[-3000:]
    assert logged_epochs(folder) == [0, 1]
    assert not [name for name in os.listdir(folder) if name.startswith("workertemp")]
    for ours, theirs in zip(keras_weights(folder / "last.keras"), keras_weights(tmp_path / "one" / "last.keras"),
                            strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)

    # A process that cannot see process 0's folder starts from scratch: both refuse to train on (exit 2).
    apart = tmp_path / "apart"
    assert run_jax_cluster(dataset, folder, env, address, apart, folders={1: tmp_path / "not_shared"},
                           extra=["--iterations", "8"]) == [2, 2], logs(apart)
    assert "the workers start at epochs [2, 0]" in logs(apart)
    assert logged_epochs(folder) == [0, 1]
