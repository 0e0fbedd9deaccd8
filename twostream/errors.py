"""Bad input and how the scripts report it: DataError, the main() wrapper that turns it into a
message and exit code 2, Ctrl-C and SIGTERM, and warnings. Nothing here imports Keras."""
import errno
import os
import signal
import sys
import threading


class DataError(Exception):
    """Bad or missing input data; scripts print the message and exit with code 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a cluster's scheduler preempting the job), raised as Ctrl-C's KeyboardInterrupt
    is: the script stops where it is, and every file it writes is whole or untouched."""


class WorkerDied(Exception):
    """A worker process ended without a word (SIGKILL, the kernel's out-of-memory killer): its job is
    lost, so the run stops; what was finished is kept."""


def warn(message):
    """A problem worth knowing that need not stop the run, on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def leave_now(code):
    """End the process with `code` at once, its output flushed: h5py's finalisers would flush files whose
    write failed on a full disk again at exit, printing tracebacks and at times crashing (exit 139). What
    was finished is on disk, and nothing else needs a clean shutdown (worker processes end with it)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def raise_terminated(signum, frame):
    raise Terminated


def run(main, argv=None):
    """Run a script's main(argv): DataError -> the message on stderr and exit code 2; Ctrl-C -> 130,
    SIGTERM -> 143 (128 + the signal's number, as the shell reports a process it ended), a full
    disk or a worker process killed -> 1, each with a word that the same command resumes. main's own
    return value (None or an int) is the exit code otherwise."""
    in_main_thread = threading.current_thread() is threading.main_thread()  # where signals can be caught
    previous = signal.signal(signal.SIGTERM, raise_terminated) if in_main_thread else None
    try:
        return main(argv) or 0
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        what = "SIGTERM" if isinstance(interrupt, Terminated) else "Ctrl-C"
        print(f"\ninterrupted ({what}): what was finished is kept, and the same command started again resumes "
              "where this one stopped", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT)
    except WorkerDied as error:
        print(f"error: {error}: what was finished is kept; fewer --workers use less memory, and the same "
              "command started again resumes", file=sys.stderr)
        return 1
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        print(f"error: no space left on the device{f' for {error.filename}' if error.filename else ''}: what was "
              "finished is kept; free some space, and the same command started again resumes", file=sys.stderr)
        if main.__module__ == "__main__":  # a script's own process: end it before h5py's finalisers run
            leave_now(1)
        return 1
    finally:
        if previous is not None:  # None: a handler set outside Python, which cannot be put back
            signal.signal(signal.SIGTERM, previous)
