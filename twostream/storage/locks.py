"""Locks that end with their process: flock on a lock file, which the kernel releases when the process
ends, however it ends (SIGKILL included). Two kinds:

    hold(path, ...)          one process at a time: a training run's folder, a part of fuse_test.py's
                             scores. A second process is refused, naming the first's pid, which the
                             lock file holds.
    process_token(parent)    a lock of this process alone, in a folder where many processes work side
                             by side (extraction): its token names the process's temporary folders, so
                             that the others can tell a live process's folders from a killed one's
                             (is_free).
"""
import contextlib
import fcntl
import os
import re
import secrets
import threading

from twostream.errors import DataError, warn

LOCK_SUFFIX = ".lock"  # process_token's lock files: .<token>.lock
TOKEN_CHARS = 16
TOKEN_LOCK = re.compile(rf"\.([0-9a-f]{{{TOKEN_CHARS}}}){re.escape(LOCK_SUFFIX)}")  # process_token's lock files

_held = {}  # lock file -> its open handle, held until the process ends (hold)
_tokens = {}  # parent folder -> (token, open lock file) of this process (process_token)
_tokens_lock = threading.Lock()  # the flow pipeline's threads start videos at the same time


def hold(path, unwritable, busy, unlockable):
    """Hold the lock file `path` for the rest of this process, or stop if another process holds it. The
    caller words each refusal: DataError(unwritable(error)) if the file cannot be opened (a read-only mount,
    a folder of another user), DataError(busy(pid)) if another process holds it (the pid it wrote there),
    and a warning unlockable(error) on a file system without locks. Held by this process already: nothing
    to do."""
    key = os.path.realpath(path)
    if key in _held:
        return
    try:
        handle = open(key, "a+")
    except OSError as error:
        raise DataError(unwritable(error)) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise DataError(busy(holder)) from None
    except OSError as error:  # a file system without locks
        warn(unlockable(error))
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    _held[key] = handle


# ---------------------------------------------------------------------------- a lock of this process in a folder

def process_token(parent):
    """This process's token in `parent`: the name of a lock file (.<token>.lock) that it holds (flock)
    for as long as it lives, and part of the names of its temporary folders, so that others can
    tell its folders from those of a killed process (whose lock the kernel released)."""
    with _tokens_lock:
        return _process_token(parent)


def _process_token(parent):
    if parent not in _tokens:
        os.makedirs(parent, exist_ok=True)
        while True:
            token = secrets.token_hex(TOKEN_CHARS // 2)
            path = token_lock_path(parent, token)
            file = open(path, "x")
            with contextlib.suppress(OSError):  # a file system without locks: others leave our folders alone
                fcntl.flock(file, fcntl.LOCK_EX)
            if same_file(file, path):
                break
            file.close()  # a cleaner took it for a dead process's lock before we held it
        _tokens[parent] = (token, file)
    return _tokens[parent][0]


def token_lock_path(parent, token):
    return os.path.join(parent, f".{token}{LOCK_SUFFIX}")


def own_tokens(parent):
    """The tokens this process holds in `parent` (process_token)."""
    return {token for folder, (token, _) in _tokens.items() if folder == parent}


def same_file(file, path):
    try:
        return os.stat(path).st_ino == os.fstat(file.fileno()).st_ino
    except FileNotFoundError:
        return False


def release_tokens(parent=None):
    """Give up this process's token in `parent` (every one it holds, by default), deleting its lock file."""
    for folder, (token, file) in list(_tokens.items()):
        if parent is None or folder == parent:
            with contextlib.suppress(FileNotFoundError):
                os.remove(token_lock_path(folder, token))
            file.close()
            del _tokens[folder]


@contextlib.contextmanager
def is_free(parent, token):
    """Yield whether no process holds the lock of `token` in `parent` (killed, or an older version's
    folder with no lock file), holding it meanwhile so that nobody takes it; if free, its lock file goes
    when the block ends."""
    lock_path = token_lock_path(parent, token)
    try:
        file = open(lock_path, "a")
    except FileNotFoundError:
        file = None  # an older version's folder, or the lock file is gone: nobody holds it
    with file or contextlib.nullcontext():
        if file:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False  # a running process (or a file system without locks: it may be one)
                return
        yield True
        if file:
            with contextlib.suppress(FileNotFoundError):
                os.remove(lock_path)
