"""A training run's folder: its layout, writing it, and reading a trained stream back for
fuse_test.py and demo.py.

checkpoints/<dataset>/<stream>/ (--checkpoint-dir):
    last.keras    the model after the latest epoch; when training ends, the fixed schedule's final
                  model, which fuse_test.py and demo.py use by default (MODEL_FILE). This file,
                  best.keras and phase1.keras hold the network alone (network): the optimizer's
                  state is in the backup only; and how far the run had trained when it was saved
                  (TRAINING_RECORD, inside the file: it travels with the model)
    best.keras    only with --val-groups: the best epoch on the groups held out of the training list
    phase1.keras  spatial only: the model after phase 1 (a restart then goes straight to phase 2)
    log.csv       one row per epoch (CSVLogger)       tensorboard/  TensorBoard logs
    backup/       BackupAndRestore state (spatial: backup/phase1, backup/phase2); the same command,
                  started again, continues from the last finished epoch
    classInd.txt  the classes trained on              config.json   what testing and the demo need,
                  as the run started (its data record is never rewritten by a resumed run)
    classInd_<dataset>.txt   multi-task only: the classes of the second dataset's head
    .lock         held by the process training into the folder

Every file here that a later step reads appears only whole: it is written under a temporary name
in the same folder, then renamed over the old one (atomic.replacing), so a kill at any moment
leaves the previous version or the new one, never a part.
"""
import json
import os
import shutil
import typing
import zipfile

from twostream.datasets import ucf101
from twostream.errors import DataError, warn
from twostream.protocol import presets
from twostream.storage import atomic, locks
from twostream.video import media

# The names of a run folder's files and folders (the layout above).
MODEL_FILE = "last.keras"
BEST_FILE = "best.keras"
PHASE1_FILE = "phase1.keras"
LOG_FILE = "log.csv"
CONFIG_FILE = "config.json"
CLASSES_FILE = ucf101.CLASS_FILE  # the run's copy of the class list
LOCK_FILE = ".lock"
TENSORBOARD_DIR = "tensorboard"
BACKUP_DIR = "backup"
PHASE_BACKUP_DIRS = {1: os.path.join(BACKUP_DIR, "phase1"), 2: os.path.join(BACKUP_DIR, "phase2")}  # spatial
# The backup first: a kill during --overwrite then leaves no state to resume from, and a rerun starts afresh.
RUN_FILES = (BACKUP_DIR, BEST_FILE, MODEL_FILE, PHASE1_FILE, LOG_FILE, TENSORBOARD_DIR)
# What a resumed run reads in its folder: BackupAndRestore's state, log.csv (the best epoch so
# far, for best.keras) and the spatial stream's phase 1 model.
RESUME_FILES = (BACKUP_DIR, LOG_FILE, PHASE1_FILE)
# A resumed run must train the same thing: these config.json entries may not change.
MUST_MATCH = ("stream", "arch", "norm", "image_size", "stack_length", "dataset", "split", "num_classes", "multitask",
              "segments")
RECORDED_SINCE = {"segments": 1}  # entries that older runs' config.json lack, and the value those runs trained with
TRAINING_RECORD = "training.json"  # inside a .keras file (a zip archive): steps done and planned, the run's config


def model_path(checkpoints_dir, stream, explicit=None):
    """The model file of a stream: `explicit` if given, else <checkpoints_dir>/<stream>/last.keras."""
    return explicit or os.path.join(presets.run_folder(checkpoints_dir, stream), MODEL_FILE)


def check_folder(folder):
    """A clear error for a --checkpoint-dir that names a file."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise DataError(f"--checkpoint-dir {folder}: is a file, not a folder. Name a folder (it is created if "
                        "missing), e.g. the folder that holds this file")


def prepare(folder, config, classes, overwrite=False):
    """Create the run folder and lock it for this process, refuse to mix two different runs in it,
    write classInd.txt and config.json. A resumed run keeps config.json as its run started (adding
    only entries it lacks) and refuses data made otherwise (check_resumed_data). With overwrite,
    the previous run's checkpoints, logs and backup go first."""
    check_folder(folder)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise DataError(f"--checkpoint-dir {folder}: cannot be created ({error.strerror})") from error
    lock(folder)
    remove_temporaries(folder)  # left by a killed process (the lock says none is running)
    config_path, classes_path = os.path.join(folder, CONFIG_FILE), os.path.join(folder, CLASSES_FILE)
    class_lines = ucf101.class_index_lines(classes)
    old = None
    if overwrite:
        for name in RUN_FILES:
            path = os.path.join(folder, name)
            shutil.rmtree(path) if os.path.isdir(path) else media.remove_if_exists(path)
    elif os.path.isfile(config_path):
        old = read_json(config_path)
        changed = [key for key in MUST_MATCH
                   if old.get(key, RECORDED_SINCE.get(key)) != config.get(key, RECORDED_SINCE.get(key))]
        if os.path.isfile(classes_path) and ucf101.read_lines(classes_path) != class_lines:
            changed.append("classes")
        if changed:
            raise DataError(f"{folder} holds a run with different {', '.join(changed)} ({config_path}). "
                            "Pass --overwrite to replace it, or another --checkpoint-dir.")
        if "epoch_steps" in old and old["epoch_steps"] != config.get("epoch_steps"):  # older runs lack it
            raise DataError(f"{folder}: its backup counts epochs of {old['epoch_steps']} steps ({config_path}): "
                            f"resume with --epoch-steps {old['epoch_steps']}, or pass --overwrite to start again")
        check_resumed_data(config_path, old, config)
    write_lines(classes_path, class_lines)
    kept = {**config, **(old or {})}
    if kept != old:
        write_json(config_path, kept)
    return folder


def check_resumed_data(config_path, old, new):
    """Refuse to train a run on data made otherwise than the data it started on, as its config.json
    records them (data_record): another frame size, or for a flow stream another flow method."""
    differences = []
    if old.get("frame_size") and list(old["frame_size"]) != list(new["frame_size"]):
        differences.append(f"frames of {size_text(new['frame_size'])}, not {size_text(old['frame_size'])}")
    old_flow, new_flow = old.get("flow"), new.get("flow")
    if new.get("stream") == "temporal" and old_flow and new_flow:
        for key, what in (("method", "flow computed with {}"), ("frame_size", "flow computed at {}")):
            if old_flow.get(key) != new_flow.get(key):
                show = size_text if key == "frame_size" else str
                differences.append(f"{what.format(show(new_flow.get(key)))}, not {show(old_flow.get(key))}")
    if differences:
        raise DataError(f"--data-dir {new.get('data_dir')}: {'; '.join(differences)} as the run in "
                        f"{os.path.dirname(config_path)} was started on ({config_path}, from {old.get('data_dir')}). "
                        "A model trained on both would match neither: train on the same data, or start a new run "
                        "(--overwrite, or another --checkpoint-dir)")


def size_text(size):
    return f"{size[0]}x{size[1]}" if size else "an unknown size"


def write_head_classes(folder, dataset, classes):
    """A multi-task run's second head: its classes, beside classInd.txt."""
    write_lines(os.path.join(folder, head_classes_file(dataset)), ucf101.class_index_lines(classes))


def head_classes_file(dataset):
    return f"classInd_{dataset}.txt"


# ---------------------------------------------------------------------------- files that appear only whole

def write_lines(path, lines):
    with atomic.replacing(path) as temp:
        ucf101.write_lines(temp, lines)


def write_json(path, data):
    with atomic.replacing(path) as temp, open(temp, "w") as f:
        json.dump(data, f, indent=2)


def read_json(path):
    """A run folder's JSON file, which holds an object: anything else is a DataError naming it."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as error:
        data = error
    if not isinstance(data, dict):
        what = (f"unreadable ({data})" if isinstance(data, Exception) else
                f"not a JSON object but a {type(data).__name__}")
        raise DataError(f"{path}: {what}. Pass --overwrite to start the run again, or another --checkpoint-dir")
    return data


def network(model):
    """`model` without its training state: the same layers and weights (not a copy), uncompiled, so
    that saving it leaves out the optimizer's state (SGD's momentum: as many bytes as the weights).
    What testing, the demo, --init and phase 2 read; resuming reads the backup, which keeps it. A segment-consensus
    model (TSN's) saves the network its snippets share, which tests one sample at a time."""
    import keras

    from twostream.networks import custom_layers
    model = custom_layers.snippet_network(model)
    return keras.Model(model.input, model.output, name=model.name)


def save_model(model, path, record):
    """The network of `model` (network) saved as `path` with its training record, appearing only whole."""
    with atomic.replacing(path) as temp:
        network(model).save(temp)
        add_training_record(temp, record)


class TrainingRecord(typing.NamedTuple):
    """How far a saved model trained, inside its .keras file (TRAINING_RECORD): optimizer steps done and
    planned, and its run's config.json (None where a model of an older version lacks it)."""
    steps_done: int
    steps_planned: int
    config: dict | None


def training_record(folder, epochs_done, epochs):
    """How far the run in `folder` has trained, for the models it saves (add_training_record): optimizer
    steps done and planned (epochs of its config.json's epoch_steps), and that config."""
    config = read_json(os.path.join(folder, CONFIG_FILE))
    return TrainingRecord(epochs_done * config["epoch_steps"], epochs * config["epoch_steps"], config)


def add_training_record(path, record):
    """Put `record` (training_record) into the .keras file `path`, beside Keras's own entries (which
    Keras's loader ignores): a model copied anywhere still says how far it trained."""
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(TRAINING_RECORD, json.dumps(record._asdict(), indent=1))


def read_training_record(path):
    """The training record of a .keras file, or None for a model saved without one (an older version,
    or another program) and for a file that is no model at all (loading it says so: custom_layers.load_model)."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open(TRAINING_RECORD) as f:
            text = f.read()
    except (KeyError, OSError, zipfile.BadZipFile):
        return None
    try:
        record = json.loads(text)
        return TrainingRecord(int(record["steps_done"]), int(record["steps_planned"]), record.get("config"))
    except (TypeError, KeyError, ValueError, AttributeError) as error:
        raise DataError(f"{path}: its training record ({TRAINING_RECORD}) is damaged ({error}): train again, or "
                        "save the model anew") from error


def is_unfinished(record):
    """Whether a model's training record (read_training_record), or the steps a score file recorded from one
    ({steps_done, steps_planned}), says its run had steps left."""
    if record is None:
        return False
    done, planned = steps_of(record)
    return done < planned


def steps_of(record):
    """(steps done, steps planned) of a TrainingRecord, or of the {steps_done, steps_planned} a score file holds."""
    if isinstance(record, TrainingRecord):
        return record.steps_done, record.steps_planned
    return record["steps_done"], record["steps_planned"]


def progress_text(record):
    """'trained 300 of 300 steps', '... (unfinished)', or what a model without a record gives."""
    if record is None:
        return "how far it trained is not recorded (saved by an older version)"
    unfinished = " (unfinished: its run stopped before the end, or it is an earlier epoch's best)"
    done, planned = steps_of(record)
    return f"trained {done} of {planned} steps" + (unfinished if done < planned else "")


def is_complete_model(path):
    """Whether `path` is a whole .keras file: a zip archive with its closing directory (written last,
    so a file cut short has none) and the entries Keras writes. Not whether it is the right model."""
    try:
        with zipfile.ZipFile(path) as archive:
            return {"config.json", "model.weights.h5"} <= set(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def remove_temporaries(folder):
    """Temporary files of killed processes in a run folder and its backup (not in the folders of a
    cluster's other workers, which are theirs)."""
    for parent, _, files in [next(os.walk(folder)), *os.walk(os.path.join(folder, BACKUP_DIR))]:
        for name in files:
            if atomic.is_temporary(name):
                media.remove_if_exists(os.path.join(parent, name))


def lock(folder, name=LOCK_FILE, doing="training into it", instead="use another --checkpoint-dir"):
    """Hold `folder`'s lock file `name` for the rest of this process, or stop if another process holds it:
    two runs writing one folder would interleave their checkpoints and logs (fuse_test.py: their scores;
    `doing` and `instead` word the refusal). The kernel releases the lock when the process ends, however it
    ends (locks.hold)."""
    locks.hold(os.path.join(folder, name),
               unwritable=lambda error: f"{folder}: cannot be written ({error.strerror}): make it writable, or "
                                        f"{instead}",
               busy=lambda holder: f"{folder}: another process (pid {holder}) is {doing}. Wait for it to end, or "
                                   f"stop it (the same command then resumes), or {instead}",
               unlockable=lambda error: f"{folder}: cannot be locked ({error.strerror}); make sure no other process "
                                        f"is {doing}")


def read(path, stream, dataset=None):
    """config.json and classInd.txt beside a .keras file -> (config, classes). For a multi-task
    model tested on its second dataset (`dataset`), the classes of that head."""
    folder = os.path.dirname(path)
    for needed in (path, os.path.join(folder, CONFIG_FILE), os.path.join(folder, CLASSES_FILE)):
        if not os.path.isfile(needed):
            raise DataError(f"{needed}: not found. Train the stream with `python {stream}_train.py`, or point "
                            f"--checkpoints (or --{stream}) at the folder holding it")
    config = read_json(os.path.join(folder, CONFIG_FILE))
    for key in ("image_size", "stack_length"):
        if key not in config:
            raise DataError(f"{os.path.join(folder, CONFIG_FILE)}: has no {key!r}")
    return config, ucf101.read_classes(os.path.join(folder, classes_file(config, dataset)))


def head(config, dataset=None):
    """The dataset whose softmax head answers: `dataset` if the model has a head for it, else its own."""
    second = (config.get("multitask") or {}).get("dataset")
    return dataset if dataset is not None and dataset == second else config.get("dataset")


def classes_file(config, dataset=None):
    own = head(config, dataset) == config.get("dataset")
    return CLASSES_FILE if own else head_classes_file(head(config, dataset))


def load(path, stream, dataset=None):
    """(model, config, classes) of a trained stream, for testing and the demo: a multi-task model
    comes with the head of `dataset` (default: the dataset it was trained for) as its one output."""
    from twostream.networks import custom_layers
    from twostream.train import multitask
    config, classes = read(path, stream, dataset)
    return multitask.one_head(custom_layers.load_model(path), head(config, dataset)), config, classes


def fingerprint(path):
    """Size and modification time of a model file: cached scores computed with another file are stale."""
    stat = os.stat(path)
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


# ---------------------------------------------------------------------------- where the data came from

def data_record(data_dir, video):
    """How a dataset's frames and flow were made, as far as the disk tells: the frame size (w, h) of
    `video`'s first frame (or flow image), and the flow method and size from flow_info.json (None
    when the flow has no record, e.g. the public TV-L1 download)."""
    record = {"frame_size": None, "flow": media.read_flow_info(os.path.join(data_dir, ucf101.FLOW_DIR))}
    for path in (ucf101.frame_path(ucf101.rgb_dir(data_dir, video.name), 0),
                 ucf101.frame_path(ucf101.flow_dir(data_dir, "u", video.flow_folder), 0)):
        image = media.decode_image(path, grayscale=True)
        if image is not None:
            record["frame_size"] = [image.shape[1], image.shape[0]]
            break
    return record


def check_data(trained, record, stream, what):
    """Warn when data (`record`, see data_record) were made otherwise than the model was trained on
    (`trained`, its config.json): another frame size, or for the temporal stream another flow method."""
    if trained.get("frame_size") and record["frame_size"] and list(trained["frame_size"]) != record["frame_size"]:
        warn(f"{what}: frames of {record['frame_size'][0]}x{record['frame_size'][1]}, but the {stream} model was "
             f"trained on {trained['frame_size'][0]}x{trained['frame_size'][1]}; extract them at its size "
             "(prepare_data.py --size)")
    flow, trained_flow = record["flow"], trained.get("flow")
    if stream == "temporal" and flow and trained_flow and flow["method"] != trained_flow["method"]:
        warn(f"{what}: flow computed with {flow['method']}, but the temporal model was trained on "
             f"{trained_flow['method']} flow; its scores will suffer")
