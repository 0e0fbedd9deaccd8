"""What spatial_train.py and temporal_train.py share: their common flags, the videos of a run,
the paper's optimizer and schedule, callbacks, and distribution over devices (the only place
that uses tf.* directly).

The schedule counts iterations, as the paper's: a run of --iterations steps is cut into epochs
of --epoch-steps steps, each ending with a checkpoint, a log line and, with --val-groups, a
validation on groups held out of the training list. The test list is never read here.
"""
import contextlib
import importlib.util
import json
import math
import os
import sys
from dataclasses import dataclass

import keras

import checkpoints
import generators
import media
import ucf101
from errors import DataError


# ---------------------------------------------------------------------------- a run

@dataclass
class Run:
    strategy: object  # tf.distribute strategy, or None
    train: list  # training videos
    validation: list  # held-out training videos (--val-groups), or []
    classes: list
    folder: str


def start(args, stream, **config):
    """What every training run does first: seed, precision, distribution strategy, the videos, and
    the checkpoint folder with its config.json (`config` adds the stream's own entries)."""
    keras.utils.set_random_seed(args.seed)
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = distribution_strategy(args.distribute)
    folder = worker_checkpoint_dir(args.checkpoint_dir, args.distribute)
    train, validation, classes = load_videos(args, stream)
    config = dict(stream=stream.name, image_size=args.image_size, stack_length=stream.stack_length,
                  dataset=args.dataset, split=args.split, num_classes=len(classes), data_dir=args.data_dir,
                  splits_dir=args.splits_dir, frame_size=frame_size(args.data_dir, train[0]), **config)
    checkpoints.prepare(folder, config, classes, args.overwrite)
    return Run(strategy, train, validation, classes, folder)


def load_videos(args, stream):
    """(training videos, validation videos, class names), from the split's training list only."""
    classes = ucf101.class_names(args.splits_dir, args.class_limit)
    videos = ucf101.load_index(args.data_dir, args.splits_dir, args.split, "train", args.class_limit, args.max_videos)
    check_videos(videos, args.data_dir, stream, f"split {args.split}'s training")
    train, validation = ucf101.hold_out_groups(videos, args.val_groups)
    return train, validation, classes


def check_videos(videos, data_dir, stream, what):
    """A clear error for no videos, or for videos without their frames or flow on disk."""
    if not videos:
        raise DataError(f"no {what} videos: check the split lists and --class-limit")
    missing = generators.missing_data(videos, data_dir, stream)
    if missing:
        kind = "flow" if stream.is_flow else "frames"
        raise DataError(
            f"{len(missing)} of {len(videos)} {what} videos have no complete {kind} under {data_dir} "
            f"(e.g. {missing[0]}). Extract them first: python prepare_data.py {kind} --out "
            f"{os.path.join(data_dir, ucf101.FLOW_DIR if stream.is_flow else ucf101.RGB_DIR)} ...")


def frame_size(data_dir, video):
    """(width, height) of the frames on disk, so that the demo resizes its videos the same way."""
    path = ucf101.frame_path(ucf101.rgb_dir(data_dir, video.name), 0)
    if not os.path.isfile(path):
        path = ucf101.frame_path(ucf101.flow_dir(data_dir, "u", video.flow_folder), 0)
    image = media.read_image(path)
    if image is None:
        raise DataError(f"{path}: missing or unreadable. Re-extract the frames with prepare_data.py")
    return [image.shape[1], image.shape[0]]


def train_sequence(args, run, stream, lighting=None, videos=None, data_dir=None):
    """The training batches: batch_size / accumulate samples each, epoch_steps optimizer steps an
    epoch. Multi-task runs make one for each dataset (`videos`, `data_dir`), each filling half."""
    parts = args.accumulate * (2 if videos is not None or getattr(args, "multitask", None) else 1)
    return generators.TrainSequence(
        run.train if videos is None else videos, data_dir or args.data_dir, stream, batch_size=args.batch_size // parts,
        image_size=args.image_size, steps=args.epoch_steps * args.accumulate, sampling=args.sampling,
        crop=args.crop, lighting=lighting, seed=args.seed, workers=args.workers)


def validation(args, run, stream):
    """The held-out groups' centre samples, or None without --val-groups."""
    if not run.validation:
        return None
    return generators.validation_data(run.validation, args.data_dir, stream, args.image_size)


def describe(name, args, run, sequence, iterations):
    held_out = (f"validation on {len(run.validation)} videos of {args.val_groups} held-out training groups"
                if run.validation else "no validation (the paper's fixed schedule)")
    print(f"{name}: {len(run.train)} training videos, {len(run.classes)} classes, batch {args.batch_size}"
          + (f" in {args.accumulate} parts" if args.accumulate > 1 else "")
          + f", {iterations} iterations in epochs of {args.epoch_steps}; {held_out}", flush=True)


# ---------------------------------------------------------------------------- optimizer and schedule

def epochs_for(iterations, epoch_steps):
    return math.ceil(iterations / epoch_steps)


def schedule(lr, drops, accumulate=1):
    """lr, divided by 10 after each iteration in `drops`. Keras evaluates a schedule on the
    optimizer's micro-steps, so with gradient accumulation the drops are counted in those."""
    drops = sorted(drops or [])
    if not drops:
        return lr
    return keras.optimizers.schedules.PiecewiseConstantDecay([d * accumulate for d in drops],
                                                             [lr / 10 ** k for k in range(len(drops) + 1)])


def sgd(args, lr, drops):
    """The paper's optimizer: SGD with momentum and weight decay (not on biases)."""
    optimizer = keras.optimizers.SGD(schedule(lr, drops, args.accumulate), momentum=args.momentum,
                                     weight_decay=args.weight_decay or None,
                                     gradient_accumulation_steps=args.accumulate if args.accumulate > 1 else None)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    return optimizer


def compile_model(model, optimizer, args, loss="sparse_categorical_crossentropy", metrics=("accuracy",)):
    model.compile(optimizer, loss=loss, metrics=metrics if isinstance(metrics, dict) else list(metrics),
                  jit_compile=args.jit if keras.backend.backend() == "tensorflow" else "auto")


# ---------------------------------------------------------------------------- callbacks and fit

class SyncEpoch(keras.callbacks.Callback):
    """Tell the TrainSequence which epoch starts, so that a resumed run continues its sequence
    of draws. (Counting on_epoch_end calls is not enough: fit() also makes one before the first
    epoch.)"""

    def __init__(self, sequence):
        super().__init__()
        self.sequence = sequence

    def on_epoch_begin(self, epoch, logs=None):
        self.sequence.epoch = epoch


class LogLearningRate(keras.callbacks.Callback):
    """Add the learning rate at the end of each epoch to the logs (log.csv), schedules included."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def callbacks(folder, sequence, validated, backup_name="backup", monitor="val_accuracy"):
    """Backup/restore first (it sets the starting epoch), then checkpoints and logs.

    The backup is kept when training ends (delete_checkpoint=False): running a finished command
    again restores the final epoch and trains nothing, instead of starting over; with more
    iterations it trains on from there. best.keras only when there is a validation set.
    """
    log = os.path.join(folder, "log.csv")
    best = [keras.callbacks.ModelCheckpoint(os.path.join(folder, "best.keras"), monitor=monitor, mode="max",
                                            save_best_only=True, initial_value_threshold=best_logged(log, monitor))
            ] if validated else []
    return [
        keras.callbacks.BackupAndRestore(os.path.join(folder, backup_name), delete_checkpoint=False),
        SyncEpoch(sequence),
        LogLearningRate(),
        *best,
        keras.callbacks.ModelCheckpoint(os.path.join(folder, checkpoints.MODEL_FILE)),
        keras.callbacks.CSVLogger(log, append=True),
    ] + tensorboard(os.path.join(folder, "tensorboard"))


def best_logged(log_path, monitor):
    """The best `monitor` value in an existing log.csv (None if none), so that a resumed run's
    best.keras is only replaced by a better epoch than any before the interruption."""
    import csv
    if not os.path.isfile(log_path):
        return None
    with open(log_path, newline="") as f:
        values = [float(row[monitor]) for row in csv.DictReader(f) if row.get(monitor) not in (None, "", "nan", "NA")]
    return max(values, default=None)


def tensorboard(log_dir):
    """[TensorBoard callback], or [] when the tensorboard package (which tf.summary needs, and
    which TensorFlow does not install) is missing."""
    if importlib.util.find_spec("tensorboard") is None:
        print("TensorBoard logs off: the tensorboard package is not installed (pip install tensorboard)")
        return []
    return [keras.callbacks.TensorBoard(log_dir, write_graph=False, profile_batch=0)]


def fit(model, sequence, validation_set, epochs, callback_list, initial_epoch=0):
    """model.fit on the training sequence, validating on the held-out sample if there is one.
    A progress bar on a terminal, one line per epoch in a log file."""
    return model.fit(sequence, validation_data=validation_set, validation_batch_size=sequence.batch_size,
                     epochs=epochs, initial_epoch=initial_epoch, callbacks=callback_list,
                     verbose=1 if sys.stdout.isatty() else 2)


# ---------------------------------------------------------------------------- distribution

def distribution_strategy(name):
    """tf.distribute strategy for --distribute, or None for no distribution."""
    if name == "none":
        return None
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


def scope(strategy):
    """Build and compile the model in here: the strategy's scope, or nothing."""
    return strategy.scope() if strategy else contextlib.nullcontext()


def worker_checkpoint_dir(folder, name):
    """With --distribute multiworker every worker runs the callbacks; all but the chief write
    into their own subfolder, so that they never overwrite the chief's files."""
    if name != "multiworker":
        return folder
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task, cluster = tf_config.get("task", {}), tf_config.get("cluster", {})
    task_type, index = task.get("type", "chief"), task.get("index", 0)
    chief = task_type == "chief" or (task_type == "worker" and index == 0 and "chief" not in cluster)
    return folder if chief else os.path.join(folder, "workers", f"{task_type}_{index}")
