"""Files that appear only whole. Every file a later step reads (split lists, flow_info.json,
config.json, backups, .keras models, log rows, score files, results) is written under a temporary
name in its own folder, then renamed over the old one (os.replace): a reader, or a rerun after a
kill at any moment, sees the old file or the whole new one, never a part of it.

Temporary names start with TEMP_PREFIX and keep the final name's extension, which Keras,
matplotlib and OpenCV read the format from; they hold the process id and a random token, so that
processes on one machine or several never share one.
"""
import contextlib
import errno
import os
import re
import secrets

from twostream.errors import DataError

TEMP_PREFIX = ".tmp-"  # + pid + token + the final name


def temporary_path(path):
    folder, name = os.path.split(path)
    return os.path.join(folder, f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{name}")


def is_temporary(name):
    """Whether a file name is one of temporary_path's (left behind by a killed process)."""
    return name.startswith(TEMP_PREFIX)


def remove_temporaries_of(path):
    """Delete the temporary files of `path` that killed processes left beside it. Only for a caller that
    holds the lock of whatever writes `path`: no live process is writing them then."""
    for temp, _ in temporaries_of(path):
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)


def remove_abandoned_temporaries_of(path):
    """Delete the temporary files of `path` whose process has ended (killed while writing it), for a
    writer that holds no lock: those of a process still running are its own."""
    for temp, pid in temporaries_of(path):
        if not process_exists(pid):
            with contextlib.suppress(FileNotFoundError):
                os.remove(temp)


def temporaries_of(path):
    """(path, writer's pid) of each temporary file of `path` beside it (temporary_path's names)."""
    folder, name = os.path.split(path)
    left = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-[0-9a-f]{8}-" + re.escape(name))
    for entry in os.listdir(folder or ".") if os.path.isdir(folder or ".") else []:
        match = left.fullmatch(entry)
        if match:
            yield os.path.join(folder, entry), int(match[1])


def process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


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
