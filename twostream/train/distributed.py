"""Training on several GPUs of one machine or on a cluster of machines, each backend on its own
engine: tf.distribute on TensorFlow, keras.distribution on JAX (--distribute mirrored: the local
devices). The strategy for --distribute, each worker's share of the data and its checkpoint folder,
the workarounds Keras needs on a multi-worker cluster, and how the others stop when a process of a JAX
cluster dies (at once where its collective fails, else after HEARTBEAT_TIMEOUT_S; one line, exit 1).

The one module that uses TensorFlow for tf.distribute, imported inside the functions that need it,
so that training without --distribute runs on any Keras backend (JAX without TensorFlow included).
(tvl1.py also imports TensorFlow, for its own reason: to compile the TV-L1 flow with
tf.function on that backend.)

    strategy = distribution_strategy(args.distribute)              # None for --distribute none
    folder = worker_folder(args.checkpoint_dir, strategy, args.overwrite)
    with scope(strategy):
        model = ...; model.compile(...)
"""
import atexit
import contextlib
import functools
import os
import re
import shutil
import signal
import sys
import threading

import keras
import numpy as np

from twostream import errors
from twostream.errors import DataError
from twostream.train import checkpoints


def distribution_strategy(name):
    """tf.distribute strategy for --distribute (on JAX: keras.distribution's, jax_distribution), or None
    for no distribution."""
    if name == "none":
        return None
    if keras.backend.backend() == "jax":
        return jax_distribution(name)
    if keras.backend.backend() != "tensorflow":
        raise DataError(f"--distribute {name} needs the TensorFlow backend "
                        f"(KERAS_BACKEND=tensorflow), not {keras.backend.backend()}")
    import tensorflow as tf
    if name == "mirrored":
        # All GPUs; without any, the logical CPU devices (2 in the tests), else the one CPU.
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
    else:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    print(f"--distribute {name}: {strategy.num_replicas_in_sync} replicas", flush=True)
    return strategy


def jax_distribution(name):
    """--distribute on JAX: keras.distribution.DataParallel over every device (the variables replicated, each
    batch split over the devices), set for the whole process so that fit splits its batches too. mirrored:
    this process's devices; multiworker: those of every process of the cluster (start_jax_cluster), each
    process loading its own part of every batch (worker_shard), which Keras joins into the global batch
    (auto_shard_dataset=False: Keras 3.15 cannot shard a Python dataset across processes itself)."""
    if name == "multiworker":
        start_jax_cluster()
    devices = keras.distribution.list_devices()
    distribution = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=name != "multiworker")
    keras.distribution.set_distribution(distribution)
    print(f"--distribute {name}: {len(devices)} devices ({', '.join(devices)}), keras.distribution.DataParallel",
          flush=True)
    return distribution


JAX_CLUSTER_VARIABLES = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                         "KERAS_DISTRIBUTION_PROCESS_ID")


def start_jax_cluster():
    """Join this process to its JAX cluster (keras.distribution.initialize, which calls
    jax.distributed.initialize): from the KERAS_DISTRIBUTION_* variables (the first job address is the
    coordinator, process 0), or from what JAX detects itself (SLURM's variables in an srun job)."""
    if not all(os.environ.get(name) for name in JAX_CLUSTER_VARIABLES) and "SLURM_JOB_ID" not in os.environ:
        raise DataError(f"--distribute multiworker on JAX: set {', '.join(JAX_CLUSTER_VARIABLES)} for every process "
                        "(e.g. host1:12345,host2:12345 / 2 / 0 on host1 and 1 on host2), or run it under SLURM's srun")
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes (tests); GPUs use NCCL
    say_why_when_jax_aborts()
    initialize = jax.distributed.initialize  # what keras.distribution.initialize calls, with JAX's default timeout
    jax.distributed.initialize = functools.partial(initialize, heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S)
    try:
        keras.distribution.initialize()
    finally:
        jax.distributed.initialize = initialize


# Seconds without a heartbeat after which JAX's coordination service declares a process dead, and stops the
# others (JAX's default: 100). It matters where a collective waits for a dead process instead of failing.
HEARTBEAT_TIMEOUT_S = 20

JAX_CLUSTER_STOPPED = ("error: a process of the JAX cluster stopped ({}), so this one stops too. Start the same "
                       "command again on every process: training resumes from the last finished epoch")
JAX_ABORTED = ("error: JAX's distributed runtime ended this process (its error above: most often, a process of the "
               "cluster stopped, or process 0, which runs the coordination service). Start the same command again "
               "on every process: training resumes from the last finished epoch")
ABORT_HANDLERS = []  # the C handler below, kept alive


def say_why_when_jax_aborts():
    """JAX's distributed client ends its process with abort() (SIGABRT, exit -6, after its own fatal log line
    and C++ stack) when the coordination service reports a failed process, and at once when the service
    itself is gone (process 0 stopped). jaxlib 0.10's missed_heartbeat_callback, which would replace that,
    cannot be used: calling it fails (std::bad_cast) and aborts as well. So SIGABRT gets a C handler (ctypes,
    as Python's own handlers run only after abort() has ended the process) that adds this repository's line
    after JAX's and ends with exit 1."""
    import ctypes
    handler = ctypes.CFUNCTYPE(None, ctypes.c_int)(lambda signum: leave_jax_cluster(JAX_ABORTED))
    libc = ctypes.CDLL(None)
    libc.signal.argtypes, libc.signal.restype = [ctypes.c_int, type(handler)], ctypes.c_void_p
    libc.signal(signal.SIGABRT, handler)
    ABORT_HANDLERS.append(handler)


LEAVING = threading.Lock()  # held by the one thread that ends the process, never released
TEMPORARY_FOLDERS = []  # start_worker_folder's, removed by leave_jax_cluster too


def leave_jax_cluster(message):
    """`message` on stderr, this process's temporary worker folder removed, and exit 1 at once, without the
    shutdown that jax.distributed registers at exit, which waits for every process (the dead one too) until
    the heartbeat timeout, then aborts. Once: a collective's failure and JAX's abort may come together, from
    two threads."""
    LEAVING.acquire()
    print(f"\n{message}", file=sys.stderr)
    for folder in TEMPORARY_FOLDERS:
        shutil.rmtree(folder, ignore_errors=True)
    errors.leave_now(1)


def is_jax_cluster(strategy):
    """Whether `strategy` is keras.distribution's, over several processes."""
    return strategy is not None and in_jax_cluster()


def replicas(strategy):
    """How many devices split each global batch, where it must split evenly: every device of keras.distribution
    (JAX) and of a tf.distribute cluster; 1 without distribution and for tf.distribute on one machine, which
    splits an uneven batch itself."""
    if keras.backend.backend() == "jax":
        return strategy.device_mesh.devices.size if strategy else 1
    return strategy.num_replicas_in_sync if is_multiworker(strategy) else 1


def scoring_strategy(name):
    """distribution_strategy for fuse_test.py (on one machine): on TensorFlow, tf.distribute's, which spreads each
    batch over the GPUs; on JAX, keras.distribution.DataParallel over this process's devices, whose batches must
    split evenly (DevicePadded pads them)."""
    return distribution_strategy(name)


class DevicePadded(keras.utils.PyDataset):
    """The test batches of `sequence` (x, video index) as (x,), x padded to a multiple of `devices` rows (its last
    row repeated), as keras.distribution on JAX splits a batch only evenly; unpadded(outputs) drops the padding's
    outputs."""

    def __init__(self, sequence, devices):
        super().__init__(workers=sequence.workers, use_multiprocessing=sequence.use_multiprocessing,
                         max_queue_size=sequence.max_queue_size)
        self.sequence, self.devices = sequence, devices
        self.rows = {}  # batch -> its rows before padding

    def __len__(self):
        return len(self.sequence)

    def __getitem__(self, index):
        x = self.sequence[index][0]
        self.rows[index] = len(x)
        padding = -len(x) % self.devices
        return (np.concatenate([x, np.repeat(x[-1:], padding, axis=0)]) if padding else x),

    def unpadded(self, outputs):
        """predict's outputs of every batch, in order, without those of the padding rows."""
        keep, start = [], 0
        for index in range(len(self)):
            rows = self.rows[index]
            keep.append(outputs[start:start + rows])
            start += rows + -rows % self.devices
        return np.concatenate(keep)


def device_count(strategy):
    """How many devices split each scoring batch: keras.distribution's on JAX (DevicePadded pads for them), 1 else
    (tf.distribute splits an uneven batch itself)."""
    return replicas(strategy) if keras.backend.backend() == "jax" else 1


def scope(strategy):
    """Build and compile the model in here: the strategy's scope, or nothing."""
    return strategy.scope() if strategy else contextlib.nullcontext()


def is_multiworker(strategy):
    """Whether `strategy` is tf.distribute's MultiWorkerMirroredStrategy (with one worker or more)."""
    if strategy is None or keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def worker_shard(strategy):
    """(this worker's index, number of workers) in a multi-worker cluster, numbered as tf.distribute
    numbers its input pipelines (a "chief" task first, then the "worker" tasks), or as JAX numbers its
    processes; (0, 1) otherwise."""
    if is_jax_cluster(strategy):
        import jax
        return jax.process_index(), jax.process_count()
    resolver = strategy.cluster_resolver if is_multiworker(strategy) else None
    jobs = resolver.cluster_spec().as_dict() if resolver else {}
    chiefs, workers = len(jobs.get("chief", [])), len(jobs.get("worker", []))
    if chiefs + workers <= 1:
        return 0, 1
    return (0 if resolver.task_type == "chief" else chiefs + resolver.task_id), chiefs + workers


def worker_checkpoint_dir(folder, strategy):
    """The folder this process writes its checkpoints and logs into: `folder`, except on a worker of
    a multi-worker cluster that is not the chief: folder/workertemp_<task id>.

    This is Keras's rule for multi-worker training (the multi-worker guide, and tf.keras's
    distributed_file_utils, whose folder name this is): every worker saves the same files at the
    same moments, since saving may read variables that need all the workers, but only the chief's
    copies are kept; the others go to a temporary folder, deleted when the process ends.
    """
    if is_chief(strategy):
        return folder
    return os.path.join(folder, f"workertemp_{worker_shard(strategy)[0]}")


def is_chief(strategy):
    """Whether this process keeps the run's files: the one process without a cluster, tf.distribute's
    chief, JAX's process 0."""
    if is_jax_cluster(strategy):
        return worker_shard(strategy)[0] == 0
    return not is_multiworker(strategy) or strategy.extended.should_checkpoint


def worker_folder(checkpoint_dir, strategy, overwrite):
    """The folder this process writes its checkpoints and logs into (worker_checkpoint_dir): on a
    worker that is not the chief, started afresh with copies of the chief's files
    (start_worker_folder). Says which worker this is."""
    checkpoints.check_folder(checkpoint_dir)
    folder = worker_checkpoint_dir(checkpoint_dir, strategy)
    if folder != checkpoint_dir:
        start_worker_folder(checkpoint_dir, folder, overwrite)
    describe_worker(strategy, folder)
    return folder


def start_worker_folder(chief_folder, folder, overwrite):
    """A fresh temporary folder for a worker that is not the chief, starting with copies of the
    chief's checkpoints.RESUME_FILES (none with --overwrite): every worker then resumes from the chief's
    backup and makes the same saving decisions. The chief's folder must be one that every worker
    sees (a shared file system), as Keras asks of BackupAndRestore's folder."""
    shutil.rmtree(folder, ignore_errors=True)  # left by a killed worker
    os.makedirs(folder)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    TEMPORARY_FOLDERS.append(folder)
    for name in () if overwrite else checkpoints.RESUME_FILES:
        source, copy = os.path.join(chief_folder, name), os.path.join(folder, name)
        if os.path.isdir(source):
            shutil.copytree(source, copy)
        elif os.path.isfile(source):
            shutil.copy2(source, copy)


def describe_worker(strategy, folder):
    index, count = worker_shard(strategy)
    if count > 1:
        role = ("the chief" if is_chief(strategy)
                else f"not the chief: its copies of the chief's files go to {folder}, deleted at exit")
        print(f"--distribute multiworker: worker {index} of {count}, {role}", flush=True)


class SameStartOnEveryWorker(keras.callbacks.Callback):
    """On a multi-worker cluster, stop at once unless every worker starts at the same epoch with the
    same weights. A worker that restored another backup than the chief's (a --checkpoint-dir that
    the workers do not share), or that changed its model from its own data, would otherwise train
    on in step with the others from other weights, and nothing would fail before the end."""

    def __init__(self):
        super().__init__()
        self.checked = False

    def on_epoch_begin(self, epoch, logs=None):
        strategy = getattr(self.model, "distribute_strategy", None)  # TensorFlow's trainer only
        if self.checked or not (is_multiworker(strategy) or in_jax_cluster()):
            return
        self.checked = True
        weights = self.model.get_weights()
        state = [epoch, sum(w.sum(dtype=np.float64) for w in weights), sum(np.abs(w).sum(dtype=np.float64)
                                                                           for w in weights)]
        starts = every_workers(state, strategy)
        refuse_different_epochs(starts[:, 0].astype(int).tolist())
        if (starts != starts[0]).any():
            raise DataError(f"the workers start epoch {epoch} with different weights: each changed its model on its "
                            "own before training (from data that differ between workers?), or their backups "
                            "differ. Every worker must build the same model.")


def refuse_different_epochs(epochs):
    """Stop unless the workers (`epochs`: each one's) start at the same epoch."""
    if len(set(epochs)) > 1:
        raise DataError(f"the workers start at epochs {epochs}: they did not all restore the chief's backup. Give "
                        "every worker the same --checkpoint-dir, on a file system that they all see (as "
                        "BackupAndRestore needs), and start them all again.")


def check_same_backup(epochs_done):
    """On a JAX cluster, before a backup is restored: stop unless every process restores the same epoch
    (`epochs_done`: this one's, 0 without a backup). Loading weights there is collective: processes that restore
    different backups, or only some of them, would fail in gloo or NCCL instead."""
    if in_jax_cluster():
        refuse_different_epochs(every_workers([epochs_done], None)[:, 0].astype(int).tolist())


def every_workers(state, strategy):
    """`state` (a few numbers) of every worker of a cluster, one row each, gathered by the backend's own engine:
    JAX's multihost_utils, or tf.distribute's MultiWorkerMirroredStrategy (`strategy`)."""
    if in_jax_cluster():
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(np.asarray(state))).reshape(-1, len(state))
    import tensorflow as tf
    return strategy.gather(tf.constant([state], tf.float64), axis=0).numpy()


def in_jax_cluster():
    """Whether this process is one of a JAX cluster's (--distribute multiworker on JAX)."""
    if keras.backend.backend() != "jax":
        return False
    import jax
    return jax.process_count() > 1


COLLECTIVE_FAILURES = ("gloo", "nccl", "closed by peer", "reset by peer")  # in JaxRuntimeError's message


@contextlib.contextmanager
def hint_on_cluster_failure(strategy):
    """Say what to do when another worker stops (TensorFlow stops the others about 10 s later). On a JAX
    cluster (keras.distribution's, as `strategy` is None there), a collective that fails because a process
    is gone (gloo's "Connection closed by peer", at once; NCCL's, where it reports one) stops this process with
    JAX_CLUSTER_STOPPED's line and exit 1; a collective that waits instead ends when the coordination
    service misses the dead process's heartbeats (HEARTBEAT_TIMEOUT_S; say_why_when_jax_aborts)."""
    if in_jax_cluster():
        import jax
        try:
            yield
        except jax.errors.JaxRuntimeError as error:
            reason = str(error).splitlines()[0] if str(error) else ""
            if not any(word in reason.lower() for word in COLLECTIVE_FAILURES):
                raise
            reason = re.sub(r"^(\w+: )?(Error dispatching computation: )*", "", reason)
            leave_jax_cluster(JAX_CLUSTER_STOPPED.format(f"a collective failed: {reason}"))
        return
    if not is_multiworker(strategy):
        yield
        return
    import tensorflow as tf
    try:
        yield
    except tf.errors.UnavailableError:
        print("\nA worker of the cluster stopped, so this one stops too. Start every worker again with its same "
              "command: training resumes from the chief's backup of the last finished epoch.", file=sys.stderr)
        raise


def cluster_dataset(sequence, strategy, first):
    """The training sequence as each worker's own tf.data pipeline (tf.distribute's
    distribute_datasets_from_function): worker k's batches are its sequence's shard of every
    global batch, split further between its replicas if it has several (GPUs).

    Handed the sequence itself, Keras would let tf.distribute treat every worker's batches as
    whole global batches, split them between all the cluster's replicas and keep this worker's
    part: every worker would load every sample. A dataset from a function is neither sharded
    nor rebatched by tf.distribute. Keras makes a new iterator every epoch, after the callbacks'
    on_epoch_begin, so SyncEpoch's epoch seeds the draws as without distribution. `first`:
    sequence[0], for the batches' structure, dtypes and shapes.
    """
    import tensorflow as tf

    def worker_dataset(context):
        shard = getattr(sequence, "shard", None)
        if shard is not None and shard != (context.input_pipeline_id, context.num_input_pipelines):
            raise RuntimeError(f"the sequence holds shard {shard}, tf.distribute asks for "
                               f"{(context.input_pipeline_id, context.num_input_pipelines)}")
        specs = tf.nest.map_structure(lambda a: tf.TensorSpec((None,) + a.shape[1:], a.dtype), first)
        flat_specs = tf.nest.flatten(specs)

        def load(index):
            arrays = tf.numpy_function(lambda i: tf.nest.flatten(sequence[int(i)]), [index],
                                       [spec.dtype for spec in flat_specs])
            for array, spec in zip(arrays, flat_specs):
                array.set_shape(spec.shape)
            return tf.nest.pack_sequence_as(specs, arrays)

        dataset = tf.data.Dataset.range(len(sequence)).map(load, num_parallel_calls=max(1, sequence.workers),
                                                          deterministic=True)
        replicas = context.num_replicas_in_sync // context.num_input_pipelines
        if replicas > 1:
            per_replica = len(tf.nest.flatten(first)[0]) // replicas
            dataset = dataset.rebatch(per_replica).apply(
                tf.data.experimental.assert_cardinality(len(sequence) * replicas))
        return dataset.prefetch(1)

    return strategy.distribute_datasets_from_function(worker_dataset)
