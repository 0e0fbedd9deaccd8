"""What spatial_train.py and temporal_train.py share: flags and presets, the data, the checkpoint
folder, callbacks, and distribution over devices (the only place that uses tf.* directly).

Checkpoint folder (checkpoints/<dataset>/<stream>/ by default):
    best.keras    best validation accuracy so far       last.keras   after the last epoch
    log.csv       one row per epoch (CSVLogger)         tensorboard/ TensorBoard logs
    backup/       BackupAndRestore state (spatial: backup/phase1, backup/phase2); the same command,
                  started again, continues from the last finished epoch
    phase1.keras  spatial only: the model after phase 1 (a restart then goes straight to phase 2)
    classInd.txt  the classes trained on                config.json  what fuse_test.py and demo.py need
"""
import contextlib
import csv
import importlib.util
import json
import os
import shutil
import sys

import keras

import generators
import media
import ucf101

DATA_PRESETS = {
    "ucf101": dict(data_dir="data/ucf101", splits_dir="splits"),
    "synthetic": dict(data_dir="data/synthetic", splits_dir="data/synthetic/splits"),
}
RUN_FILES = ("best.keras", "last.keras", "phase1.keras", "log.csv", "backup", "tensorboard")
# A resumed run must train the same thing: these config.json entries may not change.
MUST_MATCH = ("stream", "arch", "image_size", "stack_length", "dataset", "split")


# ---------------------------------------------------------------------------- flags

def add_common_flags(parser, presets):
    """Flags both scripts share. Flags whose default depends on --dataset take it from `presets`
    (and DATA_PRESETS); a flag given on the command line always wins."""
    def preset(key):
        merged = {name: {**DATA_PRESETS[name], **presets[name]} for name in presets}
        return "; ".join(f"{name}: {values[key]}" for name, values in merged.items())

    parser.add_argument("--dataset", choices=sorted(presets), default="ucf101",
                        help="ucf101, or the generated mini dataset (synthetic) with small, fast settings "
                             "(default: %(default)s)")
    parser.add_argument("--split", type=int, choices=(1, 2, 3), default=1, help="UCF-101 split (default: 1)")
    parser.add_argument("--data-dir", help=f"folder with jpegs_256/ and tvl1_flow/ ({preset('data_dir')})")
    parser.add_argument("--splits-dir", help=f"folder with classInd.txt and the split lists ({preset('splits_dir')})")
    parser.add_argument("--checkpoint-dir", help="where checkpoints and logs go (default: checkpoints/<dataset>/<stream>)")
    parser.add_argument("--class-limit", type=int, help="train on the first N classes only (quick runs)")
    parser.add_argument("--max-videos", type=int, help="train on an evenly spread subset of N videos (quick runs)")
    parser.add_argument("--val-videos", type=int,
                        help=f"validation sample: N test-list videos spread over the classes, 0 = all ({preset('val_videos')})")
    parser.add_argument("--image-size", type=int, help=f"crop side S in pixels ({preset('image_size')})")
    parser.add_argument("--batch-size", type=int, help=f"samples per training step ({preset('batch_size')})")
    parser.add_argument("--multiscale", action="store_true", help="TSN multi-scale random crops instead of fixed-size ones")
    parser.add_argument("--workers", type=int, default=2, help="threads decoding JPEGs for training (default: 2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for weights and sampling (default: 0)")
    parser.add_argument("--distribute", choices=("none", "mirrored", "multiworker"), default="none",
                        help="none; mirrored: all local GPUs (or logical CPUs); multiworker: the cluster in "
                             "TF_CONFIG. TensorFlow backend only (default: none)")
    parser.add_argument("--mixed-precision", action="store_true", help="float16 compute, float32 weights and softmax")
    parser.add_argument("--jit", action="store_true",
                        help="XLA-compile the training step with TensorFlow (off: slower on CPU); JAX always compiles")
    parser.add_argument("--overwrite", action="store_true",
                        help="start again from scratch, deleting the run in --checkpoint-dir")
    return parser


def parse_args(parser, presets, stream, argv=None):
    """Parse with the chosen --dataset's preset as defaults, so explicit flags override it."""
    known, _ = parser.parse_known_args(argv)
    parser.set_defaults(**DATA_PRESETS[known.dataset], **presets[known.dataset])
    args = parser.parse_args(argv)
    if args.checkpoint_dir is None:
        args.checkpoint_dir = os.path.join("checkpoints", args.dataset, stream)
    return args


def run(main):
    """Run a script's main(), turning bad input (ucf101.DataError) into a message and exit code 2."""
    try:
        main()
    except ucf101.DataError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def setup(args):
    keras.utils.set_random_seed(args.seed)
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")


def start(args, stream, arch, stack_length):
    """What every training run does first: seed, precision, distribution strategy, the videos, and
    the checkpoint folder with its config.json -> (strategy, train videos, validation videos,
    classes, checkpoint folder)."""
    setup(args)
    strategy = distribution_strategy(args.distribute)
    args.checkpoint_dir = worker_checkpoint_dir(args.checkpoint_dir, args.distribute)
    train_videos, val_videos, classes = load_videos(args, stream)
    config = dict(stream=stream, arch=arch, image_size=args.image_size, stack_length=stack_length,
                  dataset=args.dataset, split=args.split, data_dir=args.data_dir, splits_dir=args.splits_dir,
                  frame_size=frame_size(args.data_dir, train_videos[0]))
    folder = prepare_checkpoint_dir(args, config, classes)
    return strategy, train_videos, val_videos, classes, folder


# ---------------------------------------------------------------------------- data

def load_videos(args, stream):
    """(training videos, validation videos, class names). Validation is a fixed, evenly spread
    sample of the split's test list, for choosing the best epoch; the final test is fuse_test.py."""
    classes = ucf101.class_names(args.splits_dir, args.class_limit)
    train = ucf101.load_index(args.data_dir, args.splits_dir, args.split, "train", args.class_limit, args.max_videos)
    val = ucf101.load_index(args.data_dir, args.splits_dir, args.split, "test", args.class_limit, args.val_videos or None)
    for subset, videos in (("training", train), ("validation", val)):
        if not videos:
            raise ucf101.DataError(f"no {subset} videos in split {args.split} under {args.splits_dir}")
        missing = generators.missing_data(videos, args.data_dir, stream)
        if missing:
            what = "frames" if stream == "spatial" else "flow"
            raise ucf101.DataError(
                f"{len(missing)} of {len(videos)} {subset} videos have no complete {what} under {args.data_dir} "
                f"(e.g. {missing[0]}). Extract them first: python prepare_data.py {what} --out "
                f"{os.path.join(args.data_dir, ucf101.RGB_DIR if stream == 'spatial' else ucf101.FLOW_DIR)} ...")
    return train, val, classes


def frame_size(data_dir, video):
    """(width, height) of the frames on disk, so that the demo resizes its videos the same way."""
    path = ucf101.frame_path(ucf101.rgb_dir(data_dir, video.name), 0)
    if not os.path.isfile(path):
        path = ucf101.frame_path(ucf101.flow_dir(data_dir, "u", video.name), 0)
    image = media.read_image(path)
    if image is None:
        raise ucf101.DataError(f"{path}: missing or unreadable. Re-extract the frames with prepare_data.py")
    return [image.shape[1], image.shape[0]]


# ---------------------------------------------------------------------------- checkpoint folder

def prepare_checkpoint_dir(args, config, classes):
    """Create the folder, refuse to mix two different runs in it, write classInd.txt and config.json.

    With --overwrite, the previous run's checkpoints, logs and backup are deleted first.
    """
    folder = args.checkpoint_dir
    os.makedirs(folder, exist_ok=True)
    config_path, classes_path = os.path.join(folder, "config.json"), os.path.join(folder, "classInd.txt")
    class_lines = ucf101.class_index_lines(classes)
    if args.overwrite:
        for name in RUN_FILES:
            path = os.path.join(folder, name)
            shutil.rmtree(path) if os.path.isdir(path) else media.remove_if_exists(path)
    elif os.path.isfile(config_path):
        with open(config_path) as f:
            old = json.load(f)
        changed = [key for key in MUST_MATCH if old.get(key) != config.get(key)]
        if os.path.isfile(classes_path) and ucf101.read_lines(classes_path) != class_lines:
            changed.append("classes")
        if changed:
            raise ucf101.DataError(
                f"{folder} holds a run with different {', '.join(changed)} ({config_path}). Pass --overwrite to "
                f"replace it, or another --checkpoint-dir.")
    ucf101.write_lines(classes_path, class_lines)
    with open(config_path, "w") as f:
        json.dump(config, f, indent=2)
    return folder


def read_checkpoint(path, stream):
    """config.json and classInd.txt beside a .keras file -> (config, classes), as fuse_test.py and
    demo.py read a checkpoint folder."""
    folder = os.path.dirname(path)
    for needed in (path, os.path.join(folder, "config.json"), os.path.join(folder, "classInd.txt")):
        if not os.path.isfile(needed):
            raise ucf101.DataError(f"{needed}: not found. Train the stream with `python {stream}_train.py`, or "
                                   f"point --checkpoints (or --{stream}) at the folder holding it")
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    for key in ("image_size", "stack_length"):
        if key not in config:
            raise ucf101.DataError(f"{os.path.join(folder, 'config.json')}: has no {key!r}")
    return config, ucf101.read_classes(os.path.join(folder, "classInd.txt"))


def best_logged(log_path, monitor="val_accuracy"):
    """The best `monitor` value in an existing log.csv (None if none), so that a resumed run's
    best.keras is only replaced by a better epoch than any before the interruption."""
    if not os.path.isfile(log_path):
        return None
    with open(log_path, newline="") as f:
        values = [float(row[monitor]) for row in csv.DictReader(f) if row.get(monitor) not in (None, "", "nan")]
    return max(values, default=None)


# ---------------------------------------------------------------------------- callbacks

class SyncEpoch(keras.callbacks.Callback):
    """Tell the TrainSequence which epoch starts, so that a resumed run continues its sequence
    of shuffles and draws. (Counting on_epoch_end calls is not enough: fit() also makes one
    before the first epoch.)"""

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


def callbacks(folder, sequence, backup_name="backup"):
    """Backup/restore first (it sets the starting epoch), then checkpoints and logs.

    The backup is kept when training ends (delete_checkpoint=False): running a finished command
    again restores the final epoch and trains nothing, instead of starting over; with more
    epochs it trains on from there.
    """
    log = os.path.join(folder, "log.csv")
    return [
        keras.callbacks.BackupAndRestore(os.path.join(folder, backup_name), delete_checkpoint=False),
        SyncEpoch(sequence),
        LogLearningRate(),
        keras.callbacks.ModelCheckpoint(os.path.join(folder, "best.keras"), monitor="val_accuracy", mode="max",
                                        save_best_only=True, initial_value_threshold=best_logged(log)),
        keras.callbacks.ModelCheckpoint(os.path.join(folder, "last.keras")),
        keras.callbacks.CSVLogger(log, append=True),
    ] + tensorboard(os.path.join(folder, "tensorboard"))


def tensorboard(log_dir):
    """[TensorBoard callback], or [] when the tensorboard package (which tf.summary needs, and
    which TensorFlow does not install) is missing."""
    if importlib.util.find_spec("tensorboard") is None:
        print("TensorBoard logs off: the tensorboard package is not installed (pip install tensorboard)")
        return []
    return [keras.callbacks.TensorBoard(log_dir, write_graph=False, profile_batch=0)]


def fit(model, sequence, validation, epochs, callback_list, initial_epoch=0):
    """model.fit on the training sequence, validating on the in-memory sample every epoch.
    A progress bar on a terminal, one line per epoch in a log file."""
    x, y = validation
    return model.fit(sequence, validation_data=(x, y), validation_batch_size=sequence.batch_size,
                     epochs=epochs, initial_epoch=initial_epoch, callbacks=callback_list,
                     verbose=1 if sys.stdout.isatty() else 2)


def jit_compile(args):
    """TensorFlow: XLA only with --jit (on the CPU it is slower). JAX: always compiled ("auto")."""
    return args.jit if keras.backend.backend() == "tensorflow" else "auto"


# ---------------------------------------------------------------------------- distribution

def distribution_strategy(name):
    """tf.distribute strategy for --distribute, or None for no distribution."""
    if name == "none":
        return None
    if keras.backend.backend() != "tensorflow":
        raise ucf101.DataError(f"--distribute {name} needs the TensorFlow backend "
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
