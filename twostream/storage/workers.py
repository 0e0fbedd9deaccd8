"""Work spread over worker processes: run_parallel, the one pool of extraction, its check and the
generated datasets, and the processes' life that the training batches' loader (loading/processes.py) shares:
their environment, priority and signals (start_processes), and errors raised in another thread. A worker that
dies stops the run with errors.WorkerDied; what was finished is kept."""
import contextlib
import ctypes
import functools
import multiprocessing
import os
import signal
import sys

import cv2
from tqdm import tqdm

from twostream.errors import WorkerDied

# The worker processes run at a lower priority than the training process: with a worker on every core, the thread
# that feeds the GPU still runs at once when it has work.
WORKER_NICENESS = 5
MAX_NICENESS = 19  # Linux's lowest priority
# Ctrl-C (SIGINT) and a scheduler's SIGTERM reach every process of the job: the worker processes ignore them, from
# their start, and the training process stops (errors.run) and ends its workers.
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def run_parallel(work, jobs, workers, chunksize=1, **bar):
    """[work(job) for job in jobs] in `workers` processes (this one if 1), in the order they finish,
    with a tqdm progress bar (`bar`: its settings). The processes start from a forkserver, not by
    fork: a child forked from a process whose OpenCV thread pool has run can deadlock. A process that
    dies (killed, out of memory) raises WorkerDied, where the Pool alone would start another and wait
    for the lost job forever."""
    workers = max(1, min(workers, len(jobs)))
    if workers == 1:
        return list(tqdm(map(work, jobs), total=len(jobs), **bar))
    context = multiprocessing.get_context("forkserver")
    started = context.Value("i", 0)  # processes started: more than `workers` once the Pool replaced a dead one
    chunks, finished = [jobs[i:i + chunksize] for i in range(0, len(jobs), chunksize)], []
    with context.Pool(workers, initializer=init_worker, initargs=(started,)) as pool, \
            tqdm(total=len(jobs), **bar) as progress:
        results = pool.imap_unordered(functools.partial(work_on_chunk, work), chunks)  # one chunk a task: next() waits
        while len(finished) < len(jobs):
            try:
                done = results.next(timeout=1.0)
            except multiprocessing.TimeoutError:
                if started.value > workers:
                    raise WorkerDied(f"a worker process of {workers} ended abruptly (killed, or out of memory?)")
                continue
            finished += done
            progress.update(len(done))
    return finished


def work_on_chunk(work, jobs):
    return [work(job) for job in jobs]


def init_worker(started):
    with started.get_lock():
        started.value += 1
    cv2.setNumThreads(1)  # the workers run side by side: OpenCV's own threads would only compete
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the main process, which ends the pool


def ignore_stop_signals():
    """In a worker process started by start_processes: ignore STOP_SIGNALS, then take signals again (one sent
    while they were blocked is dropped)."""
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def start_processes(processes, environment_values):
    """Start `processes` (multiprocessing) with `environment_values` in their environment, ignoring STOP_SIGNALS
    from their start, WORKER_NICENESS below this process's priority."""
    with environment(environment_values), signals_blocked(STOP_SIGNALS):  # until the processes ignore them
        for process in processes:
            process.start()
            os.setpriority(os.PRIO_PROCESS, process.pid, min(os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICENESS,
                                                             MAX_NICENESS))


@contextlib.contextmanager
def signals_blocked(signals):
    """`signals` blocked in this thread, and so in the processes it starts meanwhile (they inherit the mask);
    one sent to this process meanwhile reaches another of its threads."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def raise_in_thread(ident, error):
    """Raise a copy of `error` (its type, its message) in the thread `ident` at its next Python instruction, as
    CPython raises KeyboardInterrupt in the main thread (a call into C returns first). False if no such thread runs."""
    kind = type(error)
    copy = type(kind.__name__, (kind,), {"__init__": lambda self: kind.__init__(self, *error.args),
                                         "__module__": kind.__module__})
    set_async_exception = ctypes.pythonapi.PyThreadState_SetAsyncExc
    set_async_exception.argtypes = [ctypes.c_ulong, ctypes.py_object]
    return set_async_exception(ident, copy) == 1


def handled_exception(ident):
    """The exception that the thread `ident` is handling (in an except or finally block), or None."""
    info = sys._current_exceptions().get(ident)
    return info[1] if isinstance(info, tuple) else info  # (type, value, traceback) before Python 3.12


@contextlib.contextmanager
def environment(values):
    """os.environ with `values` set, while processes are spawned."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
