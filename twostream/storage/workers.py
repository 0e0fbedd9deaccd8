"""Work spread over worker processes: run_parallel, the one pool of extraction, its check and the
generated datasets (the training batches' loader processes are loading/processes.py's). A worker that
dies stops the run with errors.WorkerDied; what was finished is kept."""
import functools
import multiprocessing
import signal

import cv2
from tqdm import tqdm

from twostream.errors import WorkerDied


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
