"""The steps spatial_train.py and temporal_train.py share, in the order their main() takes them:
the training videos and the run's folder, the training batches, the paper's optimizer and
learning-rate schedule, the checkpoints and logs of each epoch (callbacks), and fit. Each
function takes the values it uses (the scripts pass their flags); distribution over GPUs or
machines (tf.distribute) is in distributed.py.

The schedule counts iterations, as the paper's: a run of --iterations steps is cut into epochs
of --epoch-steps steps, each ending with a checkpoint, a log line and, with --val-groups, a
validation on groups held out of the training list. The test list is never read here.
"""
import csv
import functools
import importlib.util
import math
import os
import sys

import keras

from twostream import errors
from twostream.datasets import ucf101
from twostream.datasets.frames import missing_data, missing_data_error
from twostream.errors import DataError
from twostream.networks import optimizers
from twostream.storage import atomic
from twostream.train import checkpoints, distributed, keras_internals, lineage

# ---------------------------------------------------------------------------- set-up and data

def set_up(seed, precision, distribute, checkpoint_dir, overwrite):
    """The seed, the precision policy, --distribute's strategy and the folder this process writes its
    checkpoints into -> (strategy or None, folder)."""
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy(precision_policy(precision))
    strategy = distributed.distribution_strategy(distribute)
    return strategy, distributed.worker_folder(checkpoint_dir, strategy, overwrite)


def precision_policy(precision):
    """Keras's dtype policy for --precision: float32, or mixed_bfloat16 / mixed_float16."""
    return "float32" if precision == "float32" else f"mixed_{precision}"


def load_videos(data_dir, splits_dir, split, stream, class_limit=None, max_videos=None, val_groups=0):
    """(training videos, held-out videos for validation, class names) from the split's training
    list only: its last `val_groups` groups are held out (none with 0)."""
    classes = ucf101.class_names(splits_dir, class_limit)
    videos = ucf101.load_index(data_dir, splits_dir, split, "train", class_limit, max_videos)
    check_videos(videos, data_dir, stream, f"split {split}'s training")
    train, held_out = ucf101.hold_out_groups(videos, val_groups)
    return train, held_out, classes


def check_videos(videos, data_dir, stream, what):
    """A clear error for no videos, or for videos without their frames or flow on disk."""
    if not videos:
        raise DataError(f"no {what} videos: check the split lists and --class-limit")
    missing = missing_data(videos, data_dir, stream)
    if missing:
        raise missing_data_error(missing, data_dir, stream, len(videos), f"{what} ", leave_out=None)


def prepare_checkpoint_dir(folder, stream, data_dir, video, classes, overwrite, **config):
    """Lock and prepare the run's folder (checkpoints.prepare) with its config.json: the stream,
    `config` (the script's own entries), and how the data were made, as `video`'s first image and
    flow_info.json tell (the frame size for the demo, the flow method for testing)."""
    record = checkpoints.data_record(data_dir, video)
    if record["frame_size"] is None:
        raise DataError(f"{ucf101.frame_path(ucf101.rgb_dir(data_dir, video.name), 0)}: missing or "
                        "unreadable, and so is its first flow image. Re-extract the frames with prepare_data.py")
    if record["flow"] and stream.is_flow and record["frame_size"] != record["flow"]["frame_size"]:
        errors.warn(f"{data_dir}: its flow was computed at {record['flow']['frame_size']} but its frames are "
                    f"{record['frame_size']}: the two streams' data were extracted at different sizes")
    config = dict(stream=stream.name, stack_length=stream.stack_length, num_classes=len(classes), data_dir=data_dir,
                  frame_size=record["frame_size"], flow=record["flow"], **config)
    config["trained_on"] = lineage.trained_on(config)
    checkpoints.prepare(folder, config, classes, overwrite)


def describe(name, videos, held_out, classes, batch_size, accumulate, iterations, epoch_steps, val_groups):
    validation = (f"validation on {len(held_out)} videos of {val_groups} held-out training groups"
                  if held_out else "no validation (the paper's fixed schedule)")
    print(f"{name}: {len(videos)} training videos, {len(classes)} classes, batch {batch_size}"
          + (f" in {accumulate} parts" if accumulate > 1 else "")
          + f", {iterations} iterations in epochs of {epoch_steps}; {validation}", flush=True)


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


def sgd(learning_rate, momentum, weight_decay, accumulate=1):
    """The paper's optimizer: SGD with momentum and Caffe's weight decay, on kernels only
    (optimizers.SGD). `learning_rate`: a number or a schedule; each step on the gradients of
    `accumulate` parts of the batch."""
    return optimizers.SGD(learning_rate, momentum=momentum, weight_decay=weight_decay or None,
                          gradient_accumulation_steps=accumulation_steps(accumulate))


def accumulation_steps(accumulate):
    """Keras's gradient_accumulation_steps for --accumulate: None for 1 (Keras takes 2 or more)."""
    return accumulate if accumulate > 1 else None


def jit_compile(jit):
    """model.compile's jit_compile for --jit: XLA on TensorFlow only when asked; JAX compiles every
    step anyway ("auto")."""
    return jit if keras.backend.backend() == "tensorflow" else "auto"


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


def callbacks(folder, sequence, validated, epochs, backup_dir=checkpoints.BACKUP_DIR, monitor="val_accuracy",
              initial_epoch=0):
    """The checkpoints and logs of each epoch, then the backup, whose save is the epoch's commit.
    The backup holds the training state (weights and the optimizer's); best.keras and last.keras
    the network alone.

    At the end of an epoch, best.keras, last.keras and the log row are written first, each whole;
    the backup last: a kill before it is committed makes the rerun train that epoch again (its log
    row, dropped at the start, is written again), one after leaves every file of the epoch written.
    The backup is kept when training ends (delete_checkpoint=False): running a finished command
    again restores the final epoch and trains nothing, instead of starting over; with more
    iterations it trains on from there. best.keras only when there is a validation set.
    `epochs`: the run's last epoch, which each model records how far it is from (its training record);
    `initial_epoch`: where fit starts without a backup (the spatial stream's phase 2).
    """
    log = os.path.join(folder, checkpoints.LOG_FILE)
    backup = keras_internals.AtomicBackupAndRestore(os.path.join(folder, backup_dir))
    committed = backup.committed()
    if committed is None:
        refuse_a_lost_backup(log, backup.metadata_path, initial_epoch)
    logged = logged_rows(log, before_epoch=(committed and committed["epoch"]) or initial_epoch,
                         committed_row=committed and committed["log_row"])
    record = functools.partial(checkpoints.training_record, folder, epochs=epochs)
    best = [keras_internals.AtomicModelCheckpoint(
        os.path.join(folder, checkpoints.BEST_FILE), record, monitor=monitor, mode="max", save_best_only=True,
        initial_value_threshold=best_logged(logged, monitor))] if validated else []
    return [
        SyncEpoch(sequence),
        distributed.SameStartOnEveryWorker(),
        LogLearningRate(),
        *best,
        keras_internals.AtomicModelCheckpoint(os.path.join(folder, checkpoints.MODEL_FILE), record),
        keras.callbacks.CSVLogger(log, append=True),  # a row goes out in one write (one flush)
    ] + tensorboard(os.path.join(folder, checkpoints.TENSORBOARD_DIR)) + [backup]


def save_final_model(model, folder, chief_folder, epochs):
    """Save last.keras, trained all its `epochs`, unless it is whole: a finished run started again trains
    nothing, and an older version killed while saving it left a truncated file. Every worker of a cluster
    decides on the chief's file (`chief_folder`), so that all of them save or none."""
    if not checkpoints.is_complete_model(os.path.join(chief_folder, checkpoints.MODEL_FILE)):
        checkpoints.save_model(model, os.path.join(folder, checkpoints.MODEL_FILE),
                               checkpoints.training_record(folder, epochs, epochs))


def logged_rows(log_path, before_epoch, committed_row=None):
    """The rows of log.csv for the epochs before `before_epoch`, and log.csv rewritten (whole) with
    only those: a resumed run logs the following epochs again. Rows cut short are dropped too, and the
    last committed epoch's row, if it is one of them, is written again from the backup (`committed_row`)."""
    fields, rows, total = read_log(log_path)
    kept = [row for row in rows if int(row["epoch"]) < before_epoch]
    restore = committed_row and int(committed_row["epoch"]) == before_epoch - 1 and not any(
        int(row["epoch"]) == before_epoch - 1 for row in kept)
    if restore:
        kept.append(committed_row)
        fields = fields if fields and "epoch" in fields else list(committed_row)
    if restore or len(kept) < total:
        with atomic.replacing(log_path) as temp, open(temp, "w", newline="") as f:
            writer = csv.DictWriter(f, fields, restval="", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)
    return kept


def read_log(log_path):
    """-> (column names, the whole rows, the number of rows with those cut short) of log.csv."""
    if not os.path.isfile(log_path):
        return None, [], 0
    try:
        with open(log_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as error:
        raise DataError(damaged_log(log_path, error)) from None
    if rows and "epoch" not in reader.fieldnames:
        raise DataError(damaged_log(log_path, f"its first line is not the header: {','.join(reader.fieldnames)}"))
    whole = [row for row in rows if None not in row and None not in row.values() and row["epoch"].isdigit()]
    return reader.fieldnames, whole, len(rows)


def damaged_log(log_path, error):
    return (f"{log_path}: damaged ({error}). Move it aside (the run resumes, logging from there on), or pass "
            "--overwrite to start the run again")


def refuse_a_lost_backup(log_path, metadata_path, initial_epoch):
    """Stop when the backup's metadata is gone but log.csv shows that this stage trained past its first
    epoch (which starts only after a commit): starting again would silently retrain the run from the
    beginning over its models and log."""
    trained = [int(row["epoch"]) for row in read_log(log_path)[1] if int(row["epoch"]) > initial_epoch]
    if trained:
        raise DataError(f"{metadata_path}: missing, yet {log_path} logs epochs up to {max(trained)}: this run trained, "
                        "and would start again from its beginning over what it made. Put the backup folder back "
                        "to resume, or pass --overwrite to train from the start")


def best_logged(rows, monitor):
    """The best `monitor` value in log.csv's `rows` (None if none), so that a resumed run's
    best.keras is only replaced by a better epoch than any before the interruption."""
    values = [float(row[monitor]) for row in rows if row.get(monitor) not in (None, "", "nan", "NA")]
    return max(values, default=None)


def tensorboard(log_dir):
    """[TensorBoard callback], or [] where it cannot work: Keras's callback writes with tf.summary,
    so it needs TensorFlow (on any backend) and the tensorboard package (which TensorFlow does not
    install). Said once a process."""
    missing = [name for name in ("tensorflow", "tensorboard") if importlib.util.find_spec(name) is None]
    if missing:
        say_once(f"TensorBoard logs off: Keras's TensorBoard callback needs {' and '.join(missing)}, not installed "
                 "here (log.csv has the same figures per epoch)")
        return []
    return [keras.callbacks.TensorBoard(log_dir, write_graph=False, profile_batch=0)]


@functools.cache
def say_once(message):
    print(message, flush=True)


def fit(model, sequence, validation_set, epochs, callback_list, initial_epoch=0):
    """model.fit on the training sequence, validating on the held-out sample if there is one.
    A progress bar on a terminal, one line per epoch in a log file."""
    strategy = getattr(model, "distribute_strategy", None)  # TensorFlow's trainer only
    data = sequence
    if keras.backend.backend() == "jax":
        keras_internals.build_before_fit(model, sequence)
    if distributed.is_multiworker(strategy):
        first = sequence[0]
        data = distributed.cluster_dataset(sequence, strategy, first)
        keras_internals.work_around_keras_multiworker_bugs(model, first)
    with distributed.hint_on_cluster_failure(strategy):
        # No shuffle: each batch is drawn from the seed, the epoch and its index already, while Keras would
        # shuffle their order with Python's `random`, which a resumed run does not restore.
        return model.fit(data, shuffle=False,
                         validation_data=validation_set, validation_batch_size=sequence.batch_size,
                         epochs=epochs, initial_epoch=initial_epoch, callbacks=callback_list,
                         verbose=1 if sys.stdout.isatty() else 2)
