"""Run a script as a user would, in its own process, with two test-only additions set by the
environment (the files, callbacks and resuming under test are the real ones):

TINY_NETS=1: tiny networks in place of CNN-M-2048 and InceptionV3 (a run takes seconds, not
minutes). The tiny InceptionV3 keeps the layer names that the spatial phases use.

FAULT="<SIGNAL> <n> <kind> [<path part>]": send this process SIGKILL, SIGTERM or SIGINT (KILL, TERM,
INT), kill its whole process group (KILLJOB: a job scheduler's kill, workers included) or the group's
first process alone (KILLMAIN: the main process, as the out-of-memory killer may pick it; its workers
live on), fill the disk (FILL: a file "filler" beside the path grows until the disk is full, and the
process goes on), wait for a signal from outside (WAIT), or stop (STOP: SIGSTOP, until the test sends SIGCONT: the
process then goes on as if nothing happened), at the n-th moment of `kind` in this process whose file
path contains `path part`:

    inside           Keras is writing a model or weights file (model.save, save_weights): half of
                     the file is on disk, as a write cut short leaves it
    before-replace   a whole temporary file, just before os.replace renames it to the path
    after-replace    just after that rename
    image            cv2.imwrite has written the image at the path (a frame or flow JPEG)
    before-rename    a whole temporary folder, just before os.rename publishes it as the path
    after-rename     just after that rename

Every moment is appended to the file FAULT_TRACE, if set, as "<kind> <path>" ("waiting" when it
waits, "stopped" when it stops), so that a test sees where the process was.

    python tests/faults.py temporal_train.py --dataset synthetic ...

The moments of files and folders (image, rename, replace) strike in every process, worker processes
included, when the process runs with fault_environment(): Python then runs tests/fault_site's
sitecustomize.py at its start, which installs them (install_file_faults).
"""
import contextlib
import os
import runpy
import signal
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "INT": signal.SIGINT}
FAULT_SITE = os.path.join(REPO, "tests", "fault_site")
seen = {}


def trace(line):
    if os.environ.get("FAULT_TRACE"):
        with open(os.environ["FAULT_TRACE"], "a") as f:
            f.write(line + "\n")


def moment(kind, path):
    """Where a fault may strike: strike if FAULT names this moment."""
    trace(f"{kind} {path}")
    fault = os.environ.get("FAULT", "").split(maxsplit=3)
    if len(fault) < 3 or fault[2] != kind or (len(fault) == 4 and fault[3] not in str(path)):
        return
    seen[tuple(fault)] = seen.get(tuple(fault), 0) + 1
    if seen[tuple(fault)] != int(fault[1]):
        return
    if fault[0] == "WAIT":
        trace("waiting")
        time.sleep(600)
    elif fault[0] == "STOP":
        trace("stopped")
        os.kill(os.getpid(), signal.SIGSTOP)
    elif fault[0] == "FILL":
        fill_disk(os.path.dirname(str(path)))
    elif fault[0] == "KILLJOB":
        os.killpg(os.getpgid(0), signal.SIGKILL)
    elif fault[0] == "KILLMAIN":
        os.kill(os.getpgid(0), signal.SIGKILL)  # a process started in a new session leads its group
    else:
        os.kill(os.getpid(), SIGNALS[fault[0]])
        time.sleep(5)  # a handled signal (TERM, INT) raises here


def fill_disk(folder):
    """Fill the file system holding `folder` (a file there grows until the disk is full)."""
    trace("full")
    with open(os.path.join(folder, "filler"), "ab", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)


def written_in_halves(save):
    def save_slowly(self, filepath, *args, **kwargs):
        save(self, filepath, *args, **kwargs)
        with open(filepath, "r+b") as f:
            f.truncate(os.path.getsize(filepath) // 2)
        moment("inside", filepath)
        save(self, filepath, *args, **kwargs)
    return save_slowly


def install_faults():
    """The moments of Keras's saves and of os.replace, in this process."""
    import keras
    keras.Model.save = written_in_halves(keras.Model.save)
    keras.Model.save_weights = written_in_halves(keras.Model.save_weights)
    os.replace = watched(os.replace, "replace")


def install_file_faults():
    """The moments of image writes, renames and replaces, in this process (with no Keras to load)."""
    import cv2
    imwrite = cv2.imwrite

    def imwrite_watched(path, *args, **kwargs):
        written = imwrite(path, *args, **kwargs)
        moment("image", path)
        return written

    cv2.imwrite = imwrite_watched
    os.rename = watched(os.rename, "rename")
    os.replace = watched(os.replace, "replace")


def watched(rename, name):
    """os.rename or os.replace with a moment before and after."""
    def rename_watched(source, target, *args, **kwargs):
        moment(f"before-{name}", target)
        rename(source, target, *args, **kwargs)
        moment(f"after-{name}", target)
    return rename_watched


def fault_environment(fault, trace=""):
    """os.environ for a process (and all it starts) in which `fault` strikes at file and folder moments."""
    path = os.pathsep.join(filter(None, [FAULT_SITE, REPO, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "FAULT": fault, "FAULT_TRACE": str(trace), "TF_CPP_MIN_LOG_LEVEL": "2"}


def tiny_nets():
    """{name in models.py: a tiny stand-in}."""
    import keras
    from keras import layers

    import models

    def cnn_m_2048(x, num_classes, dropout, norm="lrn"):
        x = layers.Conv2D(4, 3, strides=4, activation="relu", name="conv1")(x)
        x = layers.GlobalAveragePooling2D(name="pool")(x)
        return layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)

    def inception_v3(input_shape, weights_path=None):
        inputs = keras.Input(input_shape)
        x = layers.Conv2D(4, 3, strides=4, activation="relu", name="conv2d")(inputs)
        x = layers.Conv2D(4, 3, padding="same", activation="relu", name=models.LAST_FROZEN_BLOCK)(x)
        x = layers.Conv2D(8, 3, padding="same", activation="relu", name="mixed9")(x)
        return keras.Model(inputs, x, name="inception_v3")

    return {"cnn_m_2048": cnn_m_2048, "inception_v3": inception_v3}


@contextlib.contextmanager
def tiny_nets_in_this_process():
    """models.py's networks replaced by the tiny ones while the block runs (for fixtures of any scope)."""
    import pytest

    import models
    with pytest.MonkeyPatch.context() as patch:
        for name, function in tiny_nets().items():
            patch.setattr(models, name, function)
        yield


# The path finder, minus TensorFlow: find_spec gives None and import fails, as where it is not installed
# (sys.modules["tensorflow"] = None would also put the name in sys.modules, which Keras reads as loaded).
HIDE_TENSORFLOW = """
import sys
from importlib.machinery import PathFinder


class PathFinderWithoutTensorFlow(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if name.split(".")[0] == "tensorflow" else super().find_spec(name, path, target)


sys.meta_path[:] = [PathFinderWithoutTensorFlow if finder is PathFinder else finder for finder in sys.meta_path]
"""


def without_tensorflow(tmp_path):
    """The environment of a process in which TensorFlow cannot be imported, on the JAX backend."""
    shim = tmp_path / "no_tensorflow"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(HIDE_TENSORFLOW)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), REPO]), "KERAS_BACKEND": "jax",
            "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2"}


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    script, sys.argv = sys.argv[1], sys.argv[1:]
    if os.environ.get("TINY_NETS"):
        import models
        for name, function in tiny_nets().items():
            setattr(models, name, function)
    if os.environ.get("FAULT") or os.environ.get("FAULT_TRACE"):
        install_faults()
    runpy.run_path(os.path.join(REPO, script), run_name="__main__")
