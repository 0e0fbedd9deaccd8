"""A training run's folder: its layout, writing it, and reading a trained stream back for
fuse_test.py and demo.py.

checkpoints/<dataset>/<stream>/ (--checkpoint-dir):
    last.keras    the model after the latest epoch; when training ends, the fixed schedule's final
                  model, which fuse_test.py and demo.py use by default (MODEL_FILE)
    best.keras    only with --val-groups: the best epoch on the groups held out of the training list
    phase1.keras  spatial only: the model after phase 1 (a restart then goes straight to phase 2)
    log.csv       one row per epoch (CSVLogger)       tensorboard/  TensorBoard logs
    backup/       BackupAndRestore state (spatial: backup/phase1, backup/phase2); the same command,
                  started again, continues from the last finished epoch
    classInd.txt  the classes trained on              config.json   what testing and the demo need
    classInd_<dataset>.txt   multi-task only: the classes of the second dataset's head
"""
import json
import os
import shutil

import media
import ucf101
from errors import DataError, warn

MODEL_FILE = "last.keras"
RUN_FILES = ("best.keras", "last.keras", "phase1.keras", "log.csv", "backup", "tensorboard")
# A resumed run must train the same thing: these config.json entries may not change.
MUST_MATCH = ("stream", "arch", "norm", "image_size", "stack_length", "dataset", "split", "num_classes")


def model_path(checkpoints_dir, stream, explicit=None):
    """The model file of a stream: `explicit` if given, else <checkpoints_dir>/<stream>/last.keras."""
    return explicit or os.path.join(checkpoints_dir, stream, MODEL_FILE)


def prepare(folder, config, classes, overwrite=False):
    """Create the run folder, refuse to mix two different runs in it, write classInd.txt and
    config.json. With overwrite, the previous run's checkpoints, logs and backup go first."""
    os.makedirs(folder, exist_ok=True)
    config_path, classes_path = os.path.join(folder, "config.json"), os.path.join(folder, "classInd.txt")
    class_lines = ucf101.class_index_lines(classes)
    if overwrite:
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
            raise DataError(f"{folder} holds a run with different {', '.join(changed)} ({config_path}). "
                            "Pass --overwrite to replace it, or another --checkpoint-dir.")
    ucf101.write_lines(classes_path, class_lines)
    with open(config_path, "w") as f:
        json.dump(config, f, indent=2)
    return folder


def write_head_classes(folder, dataset, classes):
    """A multi-task run's second head: its classes, beside classInd.txt."""
    ucf101.write_lines(os.path.join(folder, f"classInd_{dataset}.txt"), ucf101.class_index_lines(classes))


def read(path, stream, dataset=None):
    """config.json and classInd.txt beside a .keras file -> (config, classes). For a multi-task
    model tested on its second dataset (`dataset`), the classes of that head."""
    folder = os.path.dirname(path)
    for needed in (path, os.path.join(folder, "config.json"), os.path.join(folder, "classInd.txt")):
        if not os.path.isfile(needed):
            raise DataError(f"{needed}: not found. Train the stream with `python {stream}_train.py`, or point "
                            f"--checkpoints (or --{stream}) at the folder holding it")
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    for key in ("image_size", "stack_length"):
        if key not in config:
            raise DataError(f"{os.path.join(folder, 'config.json')}: has no {key!r}")
    return config, ucf101.read_classes(os.path.join(folder, classes_file(config, dataset)))


def head(config, dataset=None):
    """The dataset whose softmax head answers: `dataset` if the model has a head for it, else its own."""
    second = (config.get("multitask") or {}).get("dataset")
    return dataset if dataset is not None and dataset == second else config.get("dataset")


def classes_file(config, dataset=None):
    own = head(config, dataset) == config.get("dataset")
    return "classInd.txt" if own else f"classInd_{head(config, dataset)}.txt"


def load(path, stream, dataset=None):
    """(model, config, classes) of a trained stream, for testing and the demo: a multi-task model
    comes with the head of `dataset` (default: the dataset it was trained for) as its one output."""
    import keras
    import models  # noqa: F401  (registers the custom layers the file refers to)
    import multitask
    config, classes = read(path, stream, dataset)
    return multitask.one_head(keras.saving.load_model(path), head(config, dataset)), config, classes


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
