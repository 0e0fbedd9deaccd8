"""Files and folders that appear only whole. Every file a later step reads (split lists, flow_info.json,
config.json, backups, .keras models, log rows, score files, results) is written under a temporary
name in its own folder, then renamed over the old one (os.replace): a reader, or a rerun after a
kill at any moment, sees the old file or the whole new one, never a part of it (replacing). So is
every folder that appears whole (a video's extracted frames or flow, a generated dataset): written
into a temporary folder beside it, then renamed into place (staging, publish_folder, replacing_folder).

Temporary file names start with TEMP_PREFIX and keep the final name's extension, which Keras,
matplotlib and OpenCV read the format from; they hold the process id and a random token, so that
processes on one machine or several never share one. Temporary folders are .<name>.<token><role>.tmp,
the token that of the process's lock in their folder (locks.process_token), which tells another
process, on this machine or another, whether the process writing it still runs.

What killed processes left, files and folders alike, one cleaner deletes: remove_leftovers.
"""
import contextlib
import errno
import os
import re
import secrets
import shutil

from twostream.errors import DataError
from twostream.storage import locks

TEMP_PREFIX = ".tmp-"  # + pid + token + the final name
TEMP_FILE = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-[0-9a-f]{8}-(.+)", re.DOTALL)  # temporary_path's names
TEMP_SUFFIX = ".tmp"  # of temporary folders: .<name>.<token><role>.tmp


# ---------------------------------------------------------------------------- files

def temporary_path(path):
    folder, name = os.path.split(path)
    return os.path.join(folder, f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{name}")


def is_temporary(name):
    """Whether a file name is one of temporary_path's (left behind by a killed process)."""
    return name.startswith(TEMP_PREFIX)


@contextlib.contextmanager
def replacing(path):
    """Yield a temporary name beside `path` to write; when the block ends, rename what was written
    there to `path` (nothing written: nothing changes). On any error or interruption the temporary
    file goes and `path` keeps its previous contents. A write that fails for want of permission or
    of a file-size limit is a DataError naming `path`; a full disk goes on to errors.run (exit 1)."""
    folder = os.path.dirname(os.path.abspath(path))
    temp = temporary_path(path)
    try:
        os.makedirs(folder, exist_ok=True)
        yield temp
        if os.path.exists(temp):
            os.replace(temp, path)
    except RuntimeError as error:  # h5py (save_weights) reports a failed write so, its errno in the text
        if "errno = 28," not in str(error):
            raise
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path) from None
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise
        raise DataError(f"{path}: could not be written ({error.strerror or error}); free space or fix the "
                        "folder, then run the same command again: what was finished is kept") from error
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)


def write_text(path, text):
    with replacing(path) as temp, open(temp, "w", encoding="utf-8", newline="") as f:
        f.write(text)


# ---------------------------------------------------------------------------- folders

def temporary_folder(final, role=""):
    """This process's temporary folder for `final`: .<name>.<token><role>.tmp beside it."""
    parent, name = os.path.split(final)
    return os.path.join(parent, f".{name}.{locks.process_token(parent or os.curdir)}{role}{TEMP_SUFFIX}")


@contextlib.contextmanager
def staging(finals):
    """This process's temporary folders for `finals`, deleted after the block (published or not)."""
    temps = fresh_folders(finals)
    try:
        yield temps
    finally:
        remove_folders(temps)


def fresh_folders(finals):
    """This process's temporary folders for `finals`, empty."""
    temps = [temporary_folder(final) for final in finals]
    for temp in temps:
        shutil.rmtree(temp, ignore_errors=True)
        os.makedirs(temp)
    return temps


def remove_folders(folders):
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def publish_folder(temp, final, keep_existing, tries=5):
    """Rename the complete folder `temp` to `final`: atomic, so readers and other processes see the
    whole folder or none. An existing `final` is left alone if keep_existing(final) (e.g. another
    process finished the video first) and ours discarded; otherwise it is moved aside and deleted.
    -> True if ours was published, False if the existing one was kept (the other process's rename won)."""
    aside = temporary_folder(final, "-old")
    for _ in range(tries):
        try:
            os.rename(temp, final)
            break
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        if keep_existing(final):
            return False
        shutil.rmtree(aside, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.rename(final, aside)
    else:
        raise OSError(f"{final}: other processes kept replacing it; run again")
    shutil.rmtree(aside, ignore_errors=True)
    return True


@contextlib.contextmanager
def replacing_folder(final):
    """Yield an empty temporary folder beside `final` to write a whole folder into (a generated dataset),
    after deleting what killed processes left there; when the block ends, publish it as `final`, replacing
    whatever is there. On any error or interruption the temporary folder goes and `final` is left as it was.
    For one folder at a time in its parent: this process's lock there ends with the block."""
    parent = os.path.dirname(final) or os.curdir
    remove_leftovers(parent)
    try:
        with staging([final]) as (temp,):
            yield temp
            publish_folder(temp, final, keep_existing=lambda final: False)
    finally:
        locks.release_tokens(parent)


# ---------------------------------------------------------------------------- what killed processes left

def remove_leftovers(folder, of=None, held=False):
    """Delete what killed processes left in `folder` (of the final name `of` only, if given): temporary
    files whose process has ended (every one if `held`: the caller holds the lock of whatever writes
    there, so no live process is writing one), and temporary folders, with their lock files, of processes
    that hold their lock no more (.<name>.tmp folders of older versions too). What a running process is
    writing is left alone."""
    folder = folder or os.curdir
    try:
        with os.scandir(folder) as entries:
            names = [(e.name, e.is_dir()) for e in entries if e.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return
    temps = {}  # token -> its temporary folders
    for name, is_dir in names:
        file, lock = TEMP_FILE.fullmatch(name), locks.TOKEN_LOCK.fullmatch(name)
        if file and not is_dir and of in (None, file[2]):
            if held or not process_exists(int(file[1])):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(folder, name))
        elif lock and not is_dir and of is None:
            temps.setdefault(lock[1], [])
        elif name.endswith(TEMP_SUFFIX) and is_dir:
            final, token = name[:-len(TEMP_SUFFIX)].rsplit(".", 1)
            if of in (None, final[1:]):
                temps.setdefault(token[:locks.TOKEN_CHARS], []).append(name)
    for token, folders in temps.items():
        if token not in locks.own_tokens(folder):
            with locks.is_free(folder, token) as free:
                if free:
                    remove_folders(os.path.join(folder, name) for name in folders)


def remove_temporaries_of(path):
    """Delete the temporary files of `path` that killed processes left beside it. Only for a caller that
    holds the lock of whatever writes `path`: no live process is writing them then."""
    remove_leftovers(os.path.dirname(path), of=os.path.basename(path), held=True)


def remove_abandoned_temporaries_of(path):
    """Delete the temporary files of `path` whose process has ended (killed while writing it), for a
    writer that holds no lock: those of a process still running are its own."""
    remove_leftovers(os.path.dirname(path), of=os.path.basename(path))


def process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True
