"""The worker processes that fill TrainSequence's batches in shared memory (ProcessLoader), the batch plans a
sequence keeps (PlanCache), and the processes' life: their environment, priority and signals, their results and
errors, and a process that died stopping the run (WorkerDied)."""
import contextlib
import math
import multiprocessing
import pickle
import queue
import signal
import threading
import time
import weakref
from multiprocessing import shared_memory

import cv2
import numpy as np

from twostream.errors import WorkerDied
from twostream.storage.workers import handled_exception, ignore_stop_signals, raise_in_thread, start_processes

# Worker processes (ProcessLoader): batches asked for at once by Keras's threads, each in its own
# block of shared memory, and the samples of one task of a process.
BATCHES_IN_FLIGHT = 4
CHUNK = 8  # at least; a batch is cut into TASKS_PER_PROCESS tasks per process where that makes them larger
TASKS_PER_PROCESS = 2  # a process's tasks of one batch: the others' balance the load, fewer cost less to send
# Batch plans (TrainSequence.batch_plan) kept by a sequence, so that each batch's draws are computed once: more than
# the batches Keras's threads load at once.
PLANS_KEPT = 2 * BATCHES_IN_FLIGHT
# A finished batch is lent to Keras straight from its block of shared memory (no copy), the block coming back when
# the batch is no longer referenced: Keras's queue (max_queue_size batches) and LENT_BEYOND_QUEUE more (the batch fit
# trains on, the one before it) stay lent without a copy; beyond that (a caller keeping every batch) batches are
# copied out.
LENT_BEYOND_QUEUE = 3
SHARED_MEMORY_DIR = "/dev/shm"  # where Linux keeps multiprocessing.shared_memory blocks
# The worker processes import generators.py (the sequence's), and so Keras: on the numpy backend and without a GPU,
# so that they neither load TensorFlow nor take GPU memory.
WORKER_ENVIRONMENT = {"KERAS_BACKEND": "numpy", "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
# A worker process that ended stops the run by an error raised in the thread that fits (ProcessLoader.stop_owner),
# asked again after ASK_AGAIN seconds while that thread still asks for batches.
ASK_AGAIN = 1.0


class PlanCache:
    """The PLANS_KEPT latest batch plans of a sequence and its copies, by (epoch, batch, shard); threads share it,
    and a sequence sent to the worker processes arrives with an empty one (they get their plans with each task)."""

    def __init__(self):
        self.plans = {}
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            return self.plans.get(key)

    def put(self, key, plan):
        with self.lock:
            self.plans[key] = plan
            while len(self.plans) > PLANS_KEPT:
                del self.plans[next(iter(self.plans))]  # the oldest (dicts keep their order)

    def __reduce__(self):
        return PlanCache, ()


class LoaderSlot:
    """Where a TrainSequence keeps its ProcessLoader: a copy of the sequence (copy.copy) shares it,
    and the sequence sent to the worker processes arrives with an empty one."""

    def __init__(self):
        self.loader = None
        self.lock = threading.Lock()

    def __reduce__(self):
        return LoaderSlot, ()


class ProcessLoader:
    """`processes` worker processes filling TrainSequence batches in shared memory, started once.

    Keras's own use_multiprocessing forks the training process every epoch (unsafe beside JAX's
    and TensorFlow's threads) and pickles each batch back through a pipe (257 MB for 256 flow
    stacks of 224 x 224 x 20). Here each batch in flight has a block of shared memory; a batch is
    cut into tasks of `chunk` samples (with their rows of the batch plan) that the processes fill in
    place, and x is lent as a view of its block (lend), up to `lendable` batches at once; a block
    is reused once nothing references its batch. `slots` blocks are made at first, more as needed.
    A sample depends only on (seed, epoch, batch, position), so
    the batches are those of the same sequence in one process. The processes are spawned with
    WORKER_ENVIRONMENT, ignore STOP_SIGNALS, end with the training process, and an error in one
    (DataError) is raised by the batch it belongs to. A process that ended (killed, out of memory)
    stops the run: the next batch asked for raises WorkerDied naming it and its exit code, or has
    the thread that fits raise it (stop_owner).
    """

    def __init__(self, sequence, processes, slots, lendable=0):
        context = multiprocessing.get_context("spawn")
        self.shape = (sequence.batch_size, *sequence.sample_shape)
        self.chunk = max(CHUNK, math.ceil(sequence.batch_size / (TASKS_PER_PROCESS * processes)))
        self.x_bytes = math.prod(self.shape)
        self.blocks, self.views = [], []
        self.free = queue.SimpleQueue()
        self.lendable, self.most_blocks = lendable, slots + lendable
        self.tasks, self.results = context.Queue(), context.Queue()
        # At exit, Python waits until a queue's pending items are written; with the workers killed
        # (out of memory, by hand) nobody reads them, and the training process would hang after its error.
        self.tasks.cancel_join_thread()
        self.state = {"lock": threading.Lock(), "pending": {}, "errors": {}, "done": {}, "lent": 0,
                      "stop": threading.Event(),
                      "here": threading.Condition(), "loading here": 0}
        self.asked_at = None  # when the thread that fits was last asked to raise WorkerDied
        for _ in range(slots):
            self.free.put(self.add_block())
        self.processes = [context.Process(target=fill_tasks, daemon=True,
                                          args=(sequence, self.shape, self.tasks, self.results))
                          for _ in range(processes)]
        start_processes(self.processes, WORKER_ENVIRONMENT)
        threading.Thread(target=collect_results, args=(self.results, self.state), daemon=True).start()
        weakref.finalize(self, stop_loader, self.processes, self.tasks, self.state, self.blocks)

    def batch(self, index, epoch, shard, plan):
        """(x, y) of shard `shard` of batch `index` in `epoch` (its batch_plan), filled by the processes."""
        rows = len(plan)
        self.check_processes()
        slot = self.take_slot()
        try:
            done = self.state["done"][slot]
            with self.state["lock"]:
                self.state["pending"][slot] = math.ceil(rows / self.chunk)
                self.state["errors"][slot] = None
                done.clear()
            for start in range(0, rows, self.chunk):
                self.tasks.put((slot, self.blocks[slot].name, index, epoch, start, plan[start:start + self.chunk]))
            while not done.wait(1.0):
                self.check_processes()
            if self.state["errors"][slot] is not None:
                raise self.state["errors"][slot]
        except BaseException:
            self.free.put(slot)
            raise
        return self.lend(slot, rows)

    def add_block(self):
        """A new block of shared memory for one batch; its slot number."""
        block = shared_memory.SharedMemory(create=True, size=self.x_bytes + 4 * self.shape[0])
        with self.state["lock"]:
            slot = len(self.blocks)
            self.blocks.append(block)
            self.views.append(batch_views(block, self.shape, self.x_bytes))
            self.state["pending"][slot], self.state["errors"][slot] = 0, None
            self.state["done"][slot] = threading.Event()
        return slot

    def take_slot(self):
        """A free block, a new one while there are fewer than `slots` + `lendable`, else the next one freed."""
        try:
            return self.free.get_nowait()
        except queue.Empty:
            pass
        if len(self.blocks) < self.most_blocks:
            return self.add_block()
        return self.free.get()

    def lend(self, slot, rows):
        """(x, y) of a filled slot: x a view of its block, back in the pool once nothing references it (y is copied,
        a kilobyte); a copy of x instead, the block freed now, while `lendable` batches are lent already."""
        x, y = self.views[slot]
        y = y[:rows].copy()
        with self.state["lock"]:
            lend = self.state["lent"] < self.lendable
            self.state["lent"] += lend
        if not lend:
            x = x[:rows].copy()
            self.free.put(slot)
            return x, y
        x = x[:rows]
        weakref.finalize(x, give_back_slot, self.state, self.free, slot).atexit = False
        return x, y

    @contextlib.contextmanager
    def loading_here(self, died):
        """Around a batch loaded in this process instead, its workers gone: stop_loader (at exit) waits for those
        begun (OpenCV busy in a thread as the process exits can abort it), and later ones raise `died`."""
        with self.state["here"]:
            if self.state["stop"].is_set():
                raise died
            self.state["loading here"] += 1
        try:
            yield
        finally:
            with self.state["here"]:
                self.state["loading here"] -= 1
                self.state["here"].notify_all()

    def check_processes(self):
        """Raise WorkerDied if a worker process has ended: its task may be lost, and the run stops."""
        for number, process in enumerate(self.processes, 1):
            code = process.exitcode
            if code is not None:
                how = (f"was killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals()
                       else "ended")
                raise WorkerDied(f"data loading process {number} of {len(self.processes)} (pid {process.pid}) {how} "
                                 f"(exit code {code}; out of memory, or killed by hand?)")

    def stop_owner(self, died, owner):
        """Have thread `owner` (fit's) raise `died` as a signal's handler raises in the main thread, at its next
        Python instruction; True: load the batch asked for meanwhile, False (no such thread): raise it here.
        Asked again after ASK_AGAIN seconds while batches are still asked for (C code that calls Python, such as
        numpy's, may catch and drop it), unless `owner` is handling a WorkerDied (leaving fit, or in errors.run)
        or this loader is being stopped (at exit)."""
        with self.state["lock"]:
            now = time.monotonic()
            if self.state["stop"].is_set() or isinstance(handled_exception(owner), WorkerDied):
                return True
            if self.asked_at is None or now - self.asked_at >= ASK_AGAIN:
                if not raise_in_thread(owner, died):
                    return False
                self.asked_at = now
        return True


def give_back_slot(state, free, slot):
    """A lent batch is no longer referenced: its block is free again."""
    with state["lock"]:
        state["lent"] -= 1
    free.put(slot)


def batch_views(block, shape, x_bytes):
    """(x uint8 `shape`, y int32 [shape[0]]) over one block of shared memory."""
    return (np.ndarray(shape, np.uint8, buffer=block.buf),
            np.ndarray(shape[:1], np.int32, buffer=block.buf, offset=x_bytes))


def fill_tasks(sequence, shape, tasks, results):
    """A ProcessLoader's worker: fill (slot, batch, epoch, first row, plan rows) tasks until told to stop
    (None) or until the training process is gone. Started with STOP_SIGNALS blocked, it ignores them
    (one sent meanwhile is dropped)."""
    ignore_stop_signals()
    cv2.setNumThreads(1)
    views = {}  # by block name, opened on first use
    parent = multiprocessing.parent_process()
    while parent is None or parent.is_alive():
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            continue
        if task is None:
            return
        slot, name, index, epoch, start, plan = task
        try:
            if name not in views:
                block = shared_memory.SharedMemory(name=name)
                views[name] = block, batch_views(block, shape, math.prod(shape))
            if sequence.epoch != epoch:
                sequence.epoch = epoch
            sequence.fill_rows(index, *views[name][1], start, plan)
            results.put((slot, None))
        except Exception as error:  # raised in the training process, by the batch it belongs to
            results.put((slot, error if picklable(error) else RuntimeError(f"in a data loading process: {error!r}")))


def picklable(value):
    try:
        pickle.dumps(value)
        return True
    except Exception:
        return False


def collect_results(results, state):
    """Count each slot's finished tasks; its event is set when the last one is done. Stopped by
    state["stop"], not by a message: a worker killed inside results.put leaves the queue's write lock
    taken for good."""
    while not state["stop"].is_set():
        try:
            slot, error = results.get(timeout=1.0)
        except queue.Empty:
            continue
        with state["lock"]:
            if error is not None and state["errors"][slot] is None:
                state["errors"][slot] = error
            state["pending"][slot] -= 1
            if state["pending"][slot] == 0:
                state["done"][slot].set()


def stop_loader(processes, tasks, state, blocks):
    # A process killed inside tasks.get (where idle ones wait) holds the queue's read lock for good: the others
    # would never get their None.
    lost = any(process.exitcode is not None for process in processes)
    with state["here"]:
        state["stop"].set()
        state["here"].wait_for(lambda: state["loading here"] == 0, timeout=60)  # see ProcessLoader.loading_here
    for _ in processes:
        tasks.put(None)
    for process in processes:
        process.join(timeout=0.5 if lost else 5)
        if process.is_alive():
            process.kill()  # (it ignores SIGTERM)
    for block in blocks:
        with contextlib.suppress(BufferError):  # the loader's own views may still be alive
            block.close()
        block.unlink()
