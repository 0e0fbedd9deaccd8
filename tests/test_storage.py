"""twostream/storage: folders that appear only whole, the one cleaner of what killed processes left, and the
locks behind both."""
import fcntl
import os
import subprocess
import sys

import pytest

from twostream.errors import DataError
from twostream.storage import atomic, locks


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_folder_appears_whole_replacing_the_old_one_and_leaves_nothing_beside_it(tmp_path):
    final = tmp_path / "dataset"
    final.mkdir()
    (final / "old").write_text("old")
    with atomic.replacing_folder(str(final)) as temp:
        assert os.path.isdir(temp) and not os.listdir(temp) and os.path.dirname(temp) == str(tmp_path)
        open(os.path.join(temp, "new"), "w").close()
        assert os.listdir(final) == ["old"]  # the old folder stays as it was while the new one is written
    assert os.listdir(final) == ["new"]
    assert os.listdir(tmp_path) == ["dataset"]  # no temporary folder, no lock file


def test_a_folder_written_in_part_leaves_the_old_one_and_nothing_else(tmp_path):
    final = tmp_path / "dataset"
    final.mkdir()
    (final / "old").write_text("old")
    with pytest.raises(DataError), atomic.replacing_folder(str(final)) as temp:
        open(os.path.join(temp, "part"), "w").close()
        raise DataError("stopped half-way")
    assert os.listdir(final) == ["old"]
    assert os.listdir(tmp_path) == ["dataset"]


def test_the_cleaner_deletes_what_killed_processes_left_and_nothing_a_live_one_writes(tmp_path):
    dead, alive = dead_pid(), os.getpid()
    killed_file = tmp_path / f"{atomic.TEMP_PREFIX}{dead}-0123abcd-scores.npz"
    live_file = tmp_path / f"{atomic.TEMP_PREFIX}{alive}-89abcdef-scores.npz"
    killed_folder = tmp_path / f".v_X.{'b' * locks.TOKEN_CHARS}.tmp"  # its process's lock is free
    (tmp_path / f".{'b' * locks.TOKEN_CHARS}{locks.LOCK_SUFFIX}").touch()
    running_folder = tmp_path / f".v_Y.{'a' * locks.TOKEN_CHARS}.tmp"  # another process holds its lock
    held = open(tmp_path / f".{'a' * locks.TOKEN_CHARS}{locks.LOCK_SUFFIX}", "w")
    fcntl.flock(held, fcntl.LOCK_EX)
    older = tmp_path / ".v_Z.tmp"  # an older version's
    own = atomic.temporary_folder(str(tmp_path / "v_W"))  # this process's
    for path in (killed_file, live_file):
        path.touch()
    for path in (killed_folder, running_folder, older, own):
        os.makedirs(path)
    try:
        atomic.remove_leftovers(str(tmp_path))
        assert sorted(os.listdir(tmp_path)) == sorted(
            [live_file.name, running_folder.name, f".{'a' * locks.TOKEN_CHARS}{locks.LOCK_SUFFIX}",
             os.path.basename(own), f".{locks.process_token(str(tmp_path))}{locks.LOCK_SUFFIX}"])
        atomic.remove_leftovers(str(tmp_path), of="scores.npz", held=True)  # the caller's lock: no writer lives
        assert live_file.name not in os.listdir(tmp_path)
    finally:
        held.close()
        locks.release_tokens(str(tmp_path))
    assert f".{'a' * locks.TOKEN_CHARS}{locks.LOCK_SUFFIX}" in os.listdir(tmp_path)  # not ours to delete


def test_a_lock_held_by_another_process_is_refused_in_the_callers_words(tmp_path):
    path = tmp_path / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time\n"
                               f"f = open({str(path)!r}, 'a+'); fcntl.flock(f, fcntl.LOCK_EX); f.write('4321\\n'); "
                               "f.flush(); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DataError, match=r"^busy 4321$"):
            locks.hold(str(path), unwritable=lambda error: f"unwritable {error.strerror}",
                       busy=lambda pid: f"busy {pid}", unlockable=lambda error: "no locks")
    finally:
        holder.kill()
        holder.wait()
    locks.hold(str(path), unwritable=str, busy=str, unlockable=str)  # free now: held, and the pid written
    assert path.read_text() == f"{os.getpid()}\n"
    with pytest.raises(DataError, match="^unwritable"):
        locks.hold(str(tmp_path / "missing" / ".lock"), unwritable=lambda error: f"unwritable {error.strerror}",
                   busy=str, unlockable=str)
