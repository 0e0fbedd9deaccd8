"""Batches of frames and flow stacks for both streams, for training, validation and testing.

    stream = Stream("temporal", stack_length=10)
    train = TrainSequence(videos, "data/ucf101", stream, batch_size=256, steps=1000, workers=16,
                          use_multiprocessing=True)  # 16 worker processes (ProcessLoader)
    model.fit(train, ...)                    # fit calls on_epoch_end: next epoch, new draws
    x, y = validation_data(held_out, "data/ucf101", stream)
    for x, video_index in EvalSequence(test_videos, "data/ucf101", stream, crops="10"): ...
    for shape, run in shape_runs(test_videos, "data/ucf101", stream, 224):   # fuse_test.py: whole samples,
        EvalSampleSequence(run, "data/ucf101", stream, shape)                # the device cuts the 10 crops

Every sample, training and test alike, goes through one path:

    read (the frame, or the stack's u/v planes) -> fit the short side -> crop -> flip -> jitter -> assemble

each step a function below; training draws the start, the crop window and the flip at random,
testing takes them from the paper's protocol (25 uniform starts, 10 crops). The streams differ
in what they read (Stream) and in one detail of the flip: mirrored flow's u changes sign.
fuse_test.py's test samples stop after the fit (EvalSampleSequence): the device cuts and flips
their 10 crops the same way (models.EvalCrops), from each sample sent once.

A spatial sample is one RGB frame (S x S x 3), a temporal one a stack of L consecutive flow
frames with the channels interleaved u1, v1, ..., uL, vL (S x S x 2L). Samples stay uint8 from
the JPEG decoder to the model, which normalises them itself: a quarter of the float32 transfer,
and one preprocessing for training, testing and the demo. Steps work on the planes one at a
time with OpenCV (crop views, cv2.flip, cv2.merge into the batch), which keeps a 224x224x20
stack at JPEG-decoder speed (benchmarks/bench_generators.py).

Training follows the paper: each sample picks a class uniformly, then one of its videos, then a
start, a 224 x 224 window at a uniformly random position and a flip; spatial samples get
Krizhevsky's PCA lighting noise. Randomness comes only from np.random.default_rng seeded with
(seed, epoch, batch index): one generator for the batch's videos, one for a table of every
sample's start, window, flip and lighting numbers (SampleDraws), never numpy's global state,
which worker processes would repeat. Batches are therefore the same with any number of threads
or processes (each fills its part of a batch from the same table), and differ
between epochs; and a worker of a multi-worker cluster can draw its own part of a global batch
(TrainSequence's shard) without drawing the rest.
"""
import contextlib
import ctypes
import math
import multiprocessing
import os
import pickle
import queue
import shutil
import signal
import sys
import threading
import time
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import shared_memory

import cv2
import keras
import numpy as np
from tqdm import tqdm

from twostream.datasets import ucf101
from twostream.errors import DataError, WorkerDied
from twostream.protocol.presets import CORES, CROPS, EVAL_CROPS, SAMPLINGS
from twostream.video import media

# TSN multi-scale cropping: crop sides of 1, .875, .75, .66 times the short side (256, 224,
# 192, 168 on 340x256 frames), height and width at most one scale apart, resized to S x S.
MULTISCALE_RATIOS = (1.0, 0.875, 0.75, 0.66)
MAX_SCALE_DISTORTION = 1
# Krizhevsky et al. 2012's PCA lighting noise: ImageNet's RGB eigenvalues and eigenvectors (pixel
# values in 0..1; columns are the eigenvectors), and the standard deviation of the random weights.
IMAGENET_EIGENVALUES = np.array([0.2175, 0.0188, 0.0045])
IMAGENET_EIGENVECTORS = np.array([[-0.5675, 0.7192, 0.4009],
                                  [-0.5808, -0.0045, -0.8140],
                                  [-0.5836, -0.6948, 0.4203]])
LIGHTING_STD = 0.1
CROPS_PER_SAMPLE = {"center": 1, "10": 10}  # eval_windows' crops for each test crop mode (EVAL_CROPS)
TRIES_PER_VIDEO = 5  # unreadable draws before a training sample comes from another video
MAX_TRIES = 50  # unreadable draws in a row before the data counts as gone (DataError)
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
# The worker processes import this module, and so Keras: on the numpy backend and without a GPU,
# so that they neither load TensorFlow nor take GPU memory.
WORKER_ENVIRONMENT = {"KERAS_BACKEND": "numpy", "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
# The worker processes run at a lower priority than the training process: with a worker on every core, the thread
# that feeds the GPU still runs at once when it has work.
WORKER_NICENESS = 5
MAX_NICENESS = 19  # Linux's lowest priority
# Ctrl-C (SIGINT) and a scheduler's SIGTERM reach every process of the job: the worker processes ignore them, from
# their start, and the training process stops (errors.run) and ends its workers.
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
# A worker process that ended stops the run by an error raised in the thread that fits (ProcessLoader.stop_owner),
# asked again after ASK_AGAIN seconds while that thread still asks for batches.
ASK_AGAIN = 1.0


# ---------------------------------------------------------------------------- what a stream reads

@dataclass(frozen=True)
class Stream:
    """What a sample of a stream is: one RGB frame, or a stack of `stack_length` flow frames."""
    name: str
    stack_length: int = 10

    def __post_init__(self):
        if self.name not in ucf101.STREAMS:
            raise ValueError(f"unknown stream {self.name!r}; choose from {', '.join(ucf101.STREAMS)}")

    @property
    def is_flow(self):
        return self.name == "temporal"

    @property
    def span(self):
        """Consecutive frames one sample covers."""
        return self.stack_length if self.is_flow else 1

    @property
    def channels(self):
        return 2 * self.stack_length if self.is_flow else 3

    @property
    def data(self):
        """What the stream reads, as prepare_data.py's command that extracts it names it."""
        return "flow" if self.is_flow else "frames"

    @property
    def data_folder(self):
        """The folder under a data directory that holds it."""
        return ucf101.FLOW_DIR if self.is_flow else ucf101.RGB_DIR

    def count(self, video):
        """Frames (spatial) or flow frames (temporal) the video has on disk."""
        return video.flow_count if self.is_flow else video.frames

    def folders(self, data_dir, video):
        if self.is_flow:
            return [ucf101.flow_dir(data_dir, c, video.flow_folder) for c in "uv"]
        return [ucf101.rgb_dir(data_dir, video.name)]

    def paths(self, data_dir, video, start):
        """The JPEGs of the sample at `start`: [frame], or [u1, v1, ..., uL, vL] (a short video loops)."""
        if not self.is_flow:
            return [rgb_path(data_dir, video.name, start)]
        return flow_paths(data_dir, video.flow_folder, stack_indices(start, self.span, video.flow_count))


def as_stream(stream, stack_length=10):
    """A Stream, from a Stream or a stream name."""
    return stream if isinstance(stream, Stream) else Stream(stream, stack_length)


def rgb_path(data_dir, name, index):
    return ucf101.frame_path(ucf101.rgb_dir(data_dir, name), index)


def flow_paths(data_dir, name, indices):
    """Paths of u1, v1, ..., uL, vL for the flow frames `indices`."""
    u_dir, v_dir = ucf101.flow_dir(data_dir, "u", name), ucf101.flow_dir(data_dir, "v", name)
    return stack_channels((ucf101.frame_path(u_dir, i), ucf101.frame_path(v_dir, i)) for i in indices)


def stack_channels(pairs):
    """A flow stack's channel order: [(u1, v1), ..., (uL, vL)] -> [u1, v1, ..., uL, vL]."""
    return [plane for pair in pairs for plane in pair]


def u_channels(planes):
    """The u planes of a stack in stack_channels' order (every other one, from the first)."""
    return planes[0::2]


# ---------------------------------------------------------------------------- where samples start

def sample_starts(num_frames, samples, span=1):
    """`samples` uniformly spaced start indices for frames (span=1) or stacks of `span` frames.

    The starts that leave room for `span` frames (0 .. num_frames - span) are cut into `samples`
    equal segments and each segment's centre is taken, so neither end is favoured. A video too
    short for one stack gets starts of 0 (its stacks loop, see stack_indices); a video with
    fewer starts than samples repeats some.
    """
    room = max(num_frames - span + 1, 1)
    return [(2 * i + 1) * room // (2 * samples) for i in range(samples)]


def segment_starts(rng, num_frames, segments, span=1):
    """TSN's sparse sampling: the starts leaving room for `span` frames cut into `segments` equal parts, and one
    start drawn uniformly inside each (segments=1: one start anywhere). A part too short to hold a start of its own
    (a video with fewer starts than segments) gives its first one."""
    room = max(num_frames - span + 1, 1)
    bounds = [(k * room // segments, (k + 1) * room // segments) for k in range(segments)]
    return [first + int(rng.integers(max(last - first, 1))) for first, last in bounds]


def stack_indices(start, span, num_frames):
    """Frame indices of the stack of `span` frames from `start`, looping a short video."""
    return [(start + k) % num_frames for k in range(span)]


# ---------------------------------------------------------------------------- crop windows
# A window is (top, left, height, width) in the image after fit_short_side.

def corner_offsets(height, width, crop_height, crop_width):
    """(top, left) of the top-left, top-right, bottom-left, bottom-right and centre crops."""
    bottom, right = height - crop_height, width - crop_width
    if bottom < 0 or right < 0:
        raise ValueError(f"a {crop_height}x{crop_width} crop does not fit a {height}x{width} image")
    return [(0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2)]


def random_window(rng, shape, size, mode="random"):
    """A training window: size x size anywhere (random, the paper's), at a corner or the centre
    (corners), or TSN's multi-scale crop at a corner or the centre (multiscale; resized later)."""
    height, width = shape[:2]
    if mode == "random":
        return int(rng.integers(height - size + 1)), int(rng.integers(width - size + 1)), size, size
    if mode == "corners":
        crop_height = crop_width = size
    elif mode == "multiscale":
        pairs = [(h, w) for h in range(len(MULTISCALE_RATIOS)) for w in range(len(MULTISCALE_RATIOS))
                 if abs(h - w) <= MAX_SCALE_DISTORTION]
        h, w = pairs[rng.integers(len(pairs))]
        crop_height, crop_width = (int(min(height, width) * MULTISCALE_RATIOS[s]) for s in (h, w))
    else:
        raise ValueError(f"unknown crop mode {mode!r}; choose from {', '.join(CROPS)}")
    top, left = corner_offsets(height, width, crop_height, crop_width)[rng.integers(5)]
    return top, left, crop_height, crop_width


def eval_windows(shape, size, mode):
    """The paper's test crops as [(window, flip)]: the centre (center), or the four corners and
    the centre followed by the same five flipped (10)."""
    if mode not in EVAL_CROPS:
        raise ValueError(f"unknown test crop mode {mode!r}; choose from {', '.join(EVAL_CROPS)}")
    boxes = corner_offsets(*shape[:2], size, size)
    windows = [(top, left, size, size) for top, left in boxes]
    if mode == "center":
        return [(windows[4], False)]
    return [(w, False) for w in windows] + [(w, True) for w in windows]


# ---------------------------------------------------------------------------- the sample path

def read_planes(paths, is_flow):
    """The decoded JPEGs (BGR frame, or grayscale u/v planes of one size), and None; or None and
    the path of the first file that is missing, unreadable or of another size than the first."""
    planes = []
    for path in paths:
        plane = media.decode_image(path, grayscale=is_flow)
        if plane is None or (planes and plane.shape != planes[0].shape):
            return None, path
        planes.append(plane)
    return planes, None


def fit_short_side(image, size):
    """Resize up so the short side is at least `size` (aspect kept); larger images pass as is.
    Flow values are not rescaled (as TSN)."""
    height, width = image.shape[:2]
    if min(height, width) >= size:
        return image
    scale = size / min(height, width)
    shape = (max(size, round(width * scale)), max(size, round(height * scale)))
    resized = cv2.resize(image, shape, interpolation=cv2.INTER_LINEAR)
    return resized.reshape(resized.shape[:2] + image.shape[2:])  # cv2 drops a 1-channel axis


def crop(plane, window, size):
    """The window of `plane` (a view), resized to size x size if it is not that size already."""
    top, left, height, width = window
    cut = plane[top:top + height, left:left + width]
    if (height, width) == (size, size):
        return cut
    return cv2.resize(cut, (size, size), interpolation=cv2.INTER_LINEAR).reshape((size, size) + plane.shape[2:])


def flip(planes, is_flow):
    """Mirror the planes left-right. Mirrored flow's horizontal motion changes sign: u -> 255 - u."""
    flipped = [cv2.flip(plane, 1) for plane in planes]
    if is_flow:
        for u in u_channels(flipped):
            cv2.bitwise_not(u, dst=u)  # 255 - u on uint8
    return flipped


# 255 - u on every u of an assembled flow stack in one operation: its (u, v) byte pairs read as uint16, XORed with
# this (0xFF on u's byte, whatever the byte order).
U_BYTES = np.array([255, 0], np.uint8).view(np.uint16)[0]


def invert_u(stack):
    """255 - u on every u plane of an assembled flow stack, in place: one XOR of its (u, v) byte pairs."""
    pairs = stack.view(np.uint16)
    np.bitwise_xor(pairs, U_BYTES, out=pairs)


def lighting_noise(rng, std=LIGHTING_STD):
    """Krizhevsky's PCA lighting noise for one image: an RGB offset (0..255 scale) along ImageNet's
    colour eigenvectors, weighted by eigenvalue x N(0, std)."""
    return 255.0 * IMAGENET_EIGENVECTORS @ (IMAGENET_EIGENVALUES * rng.normal(0.0, std, 3))


def assemble(planes, is_flow, out, lighting=None, flipped=False):
    """Write the sample into `out` (S x S x C uint8): BGR -> RGB plus the lighting offset, or the
    u/v planes interleaved; mirrored if `flipped`, the same pixels as flip on each plane: a frame by one cv2.flip of
    the whole array (a third of flip's cost), a flow stack interleaved from mirrored views of its planes (one pass
    instead of a merge and a flip) and its u planes then 255 - u (invert_u)."""
    if is_flow and flipped:
        np.stack([plane[:, ::-1] for plane in planes], axis=2, out=out)
        invert_u(out)
    elif is_flow:
        cv2.merge(planes, dst=out)
    else:
        cv2.cvtColor(planes[0], cv2.COLOR_BGR2RGB, dst=out)
        if lighting is not None:
            cv2.add(out, (*lighting, 0.0), dst=out)  # saturating, rounded: 30x faster than a float round trip
        if flipped:  # every step before is pixel by pixel: flipping last gives the same sample
            cv2.flip(out, 1, dst=out)


def load_sample(data_dir, video, stream, start, size, windows_for, out):
    """The whole path for one start: read and fit the planes, then crop, flip and assemble one
    output per (window, flip, lighting) of windows_for(fitted shape). Returns None, or the path
    of a bad JPEG."""
    planes, bad_path = read_planes(stream.paths(data_dir, video, start), stream.is_flow)
    if planes is None:
        return bad_path
    planes = [fit_short_side(plane, size) for plane in planes]
    for k, (window, flipped, lighting) in enumerate(windows_for(planes[0].shape)):
        assemble([crop(plane, window, size) for plane in planes], stream.is_flow, out[k], lighting, flipped)
    return None


def eval_windows_for(size, mode):
    """windows_for of the test protocol (see eval_windows): no lighting noise."""
    return lambda shape: [(window, flipped, None) for window, flipped in eval_windows(shape, size, mode)]


# ---------------------------------------------------------------------------- missing data

def missing_data(videos, data_dir, stream):
    """Names of the videos without a complete set of frames (spatial) or of u and v flow
    (temporal): a count of 0 in the index, or a file of 0 .. count-1 gone since indexing.
    One directory scan per folder."""
    stream = as_stream(stream)
    missing = []
    for video in videos:
        count = stream.count(video)
        expected = {ucf101.FRAME_NAME.format(i + 1) for i in range(count)}
        if count == 0 or any(not expected <= file_names(f) for f in stream.folders(data_dir, video)):
            missing.append(video.name)
    return missing


def file_names(folder):
    try:
        with os.scandir(folder) as entries:
            return {e.name for e in entries}
    except OSError:
        return set()


def missing_data_error(names, data_dir, streams, total=None, what="",
                       leave_out="leave them out (generators.missing_data lists them)"):
    """The one error for videos without a complete set of frames or flow (missing_data's `names`, of
    `total` `what` videos): the first ten names and the prepare_data.py commands that extract them.
    `streams`: a stream, a stream name or a list of them; `leave_out`: how to go on without them, or None."""
    streams = [as_stream(s) for s in (streams if isinstance(streams, (list, tuple)) else [streams])]
    count = f"{len(names)} of {total}" if total is not None else str(len(names))
    data = " or ".join(s.data for s in streams)
    listed = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    commands = "; ".join(f"python prepare_data.py {s.data} --out {os.path.join(data_dir, s.data_folder)} ..."
                         for s in streams)
    return DataError(f"{count} {what}videos have no complete {data} under {data_dir}: {listed}. Extract them "
                     f"first ({commands}; `prepare_data.py check` lists what is missing)"
                     + (f", or {leave_out}" if leave_out else ""))


def check_complete(videos, data_dir, stream):
    missing = missing_data(videos, data_dir, stream)
    if missing:
        raise missing_data_error(missing, data_dir, stream)


# ---------------------------------------------------------------------------- training

class TrainSequence(keras.utils.PyDataset):
    """Training batches (x uint8 [B, S, S, C], y int32 [B]); `steps` batches an epoch.

    Each sample draws a class uniformly and then one of its videos (sampling="classes", the
    paper's), or an epoch is one shuffled pass over `videos` (sampling="videos"; steps then
    follows from the number of videos). Then a start, a crop window (see random_window), a flip
    half of the time and, for RGB, lighting noise of standard deviation `lighting` (0: none).

    A missing or unreadable JPEG is warned about once (naming the file), counted in
    `missing_files`, reported at the end of the epoch, and replaced by another draw from the same
    video (after TRIES_PER_VIDEO failures, from another video).

    on_epoch_end moves `epoch` on, which seeds the draws. fit() calls it after every epoch and
    once before the first, so set `epoch` at each epoch's start (training.SyncEpoch does) to
    make a resumed run continue the same sequence.

    segments=K (TSN's segment consensus, Wang et al. 2016): each sample is K snippets of its video, one start
    drawn inside each of K equal segments (segment_starts) and one window, flip and lighting for them all; x is
    then uint8 [B, K, S, S, C].

    shard=(k, n): the k-th of n equal parts of every global batch of `batch_size` samples, for
    worker k of a cluster of n. Every worker draws the same global batch and loads only its own
    samples, so the n shards of a batch are together exactly the batch of shard=(0, 1).

    workers: threads of Keras's, or with use_multiprocessing that many worker processes of this
    module's own (ProcessLoader; Keras's threads then only wait for their batches). Threads hold
    the GIL a fifth of each sample's time and stop scaling near 5 cores; processes do not.
    """

    def __init__(self, videos, data_dir, stream, batch_size=256, image_size=224, stack_length=10, steps=None,
                 sampling="classes", crop="random", lighting=None, seed=0, workers=1, use_multiprocessing=False,
                 max_queue_size=10, shard=(0, 1), segments=1):
        self.processes = workers if use_multiprocessing and workers > 1 else 0
        threads = min(workers, BATCHES_IN_FLIGHT) if self.processes else workers
        super().__init__(workers=threads, use_multiprocessing=False, max_queue_size=max_queue_size)
        self._loader = LoaderSlot()  # the ProcessLoader once started, shared with copies of this sequence
        self._plans = PlanCache()
        self.stream = as_stream(stream, stack_length)
        if not videos:
            raise DataError("no training videos: check --data-dir, the split lists and --class-limit")
        part, parts = shard
        if not 0 <= part < parts or batch_size % parts:
            raise ValueError(f"shard {part} of {parts}: needs an index from 0 to {parts - 1} and a batch size "
                             f"that divides by {parts}, not {batch_size}")
        empty = [v.name for v in videos if self.stream.count(v) == 0]
        if empty:
            raise missing_data_error(empty, data_dir, self.stream)
        if sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {sampling!r}; choose from {', '.join(SAMPLINGS)}")
        self.videos = list(videos)
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.image_size = image_size
        self.segments = segments
        self.sampling = sampling
        self.steps = steps or math.ceil(len(self.videos) / batch_size)
        self.crop = crop
        self.lighting = 0.0 if self.stream.is_flow else LIGHTING_STD if lighting is None else lighting  # RGB only
        self.seed = seed
        self.shard = tuple(shard)
        # The videos of each class, one after another (class_videos), where each class's begin (class_starts).
        labels = np.array([video.label for video in self.videos])
        self.class_videos = np.argsort(labels, kind="stable")
        _, self.class_starts, self.class_sizes = np.unique(labels[self.class_videos], return_index=True,
                                                           return_counts=True)
        self.epoch = 0
        # Shared with worker threads, and with the worker processes (ProcessLoader spawns them).
        self._missing = multiprocessing.get_context("spawn").Value("q", 0)
        self._reported = 0
        self._warned = set()
        self._owner = threading.get_ident()  # the thread that made the sequence, and so (scripts) runs fit

    @property
    def epoch(self):
        return self._epoch

    @epoch.setter
    def epoch(self, value):
        self._epoch = value
        self.order = np.random.default_rng([self.seed, value, 0]).permutation(len(self.videos))

    @property
    def missing_files(self):
        """Missing or unreadable JPEGs met so far (all epochs, all workers)."""
        return self._missing.value

    def __len__(self):
        return self.steps

    @property
    def sample_shape(self):
        """A sample's shape: S x S x C, or K x S x S x C with K segments (one snippet each)."""
        snippet = (self.image_size, self.image_size, self.stream.channels)
        return snippet if self.segments == 1 else (self.segments, *snippet)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        if self.processes and self._loader.loader is None and self.shared_memory_short():
            warnings.warn(self.shared_memory_short(), stacklevel=2)
            self.processes = 0
        plan = self.batch_plan(index)
        rows = len(plan)  # fewer in the last batch of sampling="videos"
        if self.processes:
            loader = self.process_loader()
            try:
                return loader.batch(index, self.epoch, self.shard, plan)
            except WorkerDied as died:
                if threading.get_ident() == self._owner or not loader.stop_owner(died, self._owner):
                    raise
                # Keras's thread here, fit in the owner thread: TensorFlow would turn an error raised here into
                # tracebacks of its own. fit raises it instead, after the step that this batch, loaded here, ends.
                with loader.loading_here(died):
                    return self.load_here(index, rows)
        return self.load_here(index, rows)

    def load_here(self, index, rows):
        x = np.empty((rows, *self.sample_shape), np.uint8)
        y = np.empty(rows, np.int32)
        self.fill(index, x, y, 0, rows)
        return x, y

    def fill(self, index, x, y, start, stop):
        """Samples start .. stop - 1 of this shard's part of batch `index`, into x and y at those rows."""
        self.fill_rows(index, x, y, start, self.batch_plan(index)[start:stop])

    def fill_rows(self, index, x, y, start, plan):
        """The samples of `plan` (rows of batch_plan(index)) into x and y from row `start`."""
        for k, (position, video, uniforms, normals) in enumerate(plan, start):
            rng = SampleDraws(uniforms, normals, [self.seed, self.epoch, 3, index, position])
            y[k] = self.load(self.videos[video], rng, x[k:k + 1])

    def batch_plan(self, index):
        """This shard's samples of batch `index` in this epoch, one row (position in the global batch, index into
        `videos`, its uniforms, its normals) each, in plain Python numbers (cheap to send to a worker process).
        Computed once per batch (PlanCache): drawing the whole table costs a spatial sample's time."""
        key = (self.epoch, index, self.shard)
        plan = self._plans.get(key)
        if plan is None:
            positions, chosen = self.shard_samples(index)
            uniforms, normals = self.batch_draws(index)
            plan = list(zip(positions.tolist(), chosen.tolist(), uniforms[positions].tolist(),
                            normals[positions].tolist()))
            self._plans.put(key, plan)
        return plan

    def process_loader(self):
        """The ProcessLoader of this sequence (and its copies), started on first use."""
        with self._loader.lock:
            if self._loader.loader is None:
                self._loader.loader = ProcessLoader(self, self.processes, self.workers, self.lendable())
            return self._loader.loader

    def batch_bytes(self):
        return self.batch_size * (math.prod(self.sample_shape) + 4)

    def lendable(self):
        """Batches the ProcessLoader may lend at once without a copy: Keras's queue and LENT_BEYOND_QUEUE more, as
        far as SHARED_MEMORY_DIR has room beside the blocks being filled."""
        try:
            room = int(shutil.disk_usage(SHARED_MEMORY_DIR).free / 1.2 / self.batch_bytes()) - self.workers
        except OSError:
            room = self.max_queue_size + LENT_BEYOND_QUEUE
        return max(0, min(self.max_queue_size + LENT_BEYOND_QUEUE, room))

    def shared_memory_short(self):
        """Why the worker processes cannot have their shared memory (a container's small /dev/shm), or None."""
        needed = self.workers * self.batch_bytes()
        try:
            free = shutil.disk_usage(SHARED_MEMORY_DIR).free
        except OSError:
            return None  # no such folder: not Linux, shared memory lives elsewhere
        if free < 1.2 * needed:
            return (f"{SHARED_MEMORY_DIR} has {free / 2 ** 20:.0f} MiB free and the {self.processes} data loading "
                    f"processes need {needed / 2 ** 20:.0f} MiB there: loading in threads instead (slower; give a "
                    "container more, e.g. docker run --shm-size 8g)")
        return None

    def batch_draws(self, index):
        """The random numbers of every sample of global batch `index`: uniforms [B, K + 3] (K segments' starts,
        flip, crop window) and standard normals [B, 3] (lighting). One generator for the whole batch, so
        that every worker's shard draws the same table cheaply (one generator per sample cost 10%
        of a spatial sample)."""
        rng = np.random.default_rng([self.seed, self.epoch, 2, index])
        return rng.random((self.batch_size, self.segments + 3)), rng.standard_normal((self.batch_size, 3))

    def shard_samples(self, index):
        """(positions in global batch `index`, indices into `videos`) of the samples this shard loads."""
        chosen = self.choose_videos(np.random.default_rng([self.seed, self.epoch, 1, index]), index)
        k, n = self.shard
        positions = np.arange(k * len(chosen) // n, (k + 1) * len(chosen) // n)
        return positions, chosen[positions]

    def choose_videos(self, rng, index):
        """Indices into `videos` of batch `index`'s samples (an int array): each a class drawn uniformly, then one
        of its videos (sampling="classes"), or the epoch's next videos (sampling="videos")."""
        if self.sampling == "videos":
            return self.order[index * self.batch_size:(index + 1) * self.batch_size]
        classes = rng.integers(len(self.class_sizes), size=self.batch_size)
        return self.class_videos[self.class_starts[classes] + rng.integers(self.class_sizes[classes])]

    def on_epoch_end(self):
        missing = self.missing_files - self._reported
        if missing:
            print(f"\n{missing} missing or unreadable JPEG(s) met in this epoch were replaced by other "
                  f"draws (the warnings name them); {self.missing_files} in all", flush=True)
        self._reported += missing
        self.epoch += 1

    def load(self, video, rng, out):
        """Fill `out` [1, S, S, C] with a sample of `video` (or of a substitute) and return its label."""
        for attempt in range(MAX_TRIES):
            if attempt and attempt % TRIES_PER_VIDEO == 0:
                video = self.videos[rng.integers(len(self.videos))]
            bad_path = self.draw(video, rng, out)
            if bad_path is None:
                return video.label
            self.note_missing(bad_path)
        raise DataError(f"{MAX_TRIES} draws in a row met missing or unreadable JPEGs under "
                               f"{self.data_dir}: re-extract the frames and flow (prepare_data.py)")

    def draw(self, video, rng, out):
        """Draw a start in each segment, then one window, flip and lighting for all of the sample's snippets (as
        TSN), and run the sample path for each start into `out` [1, *sample_shape]."""
        starts = segment_starts(rng, self.stream.count(video), self.segments, self.stream.span)
        flipped = bool(rng.random() < 0.5)
        lighting = lighting_noise(rng, self.lighting) if self.lighting else None
        windows = []

        def window_for(shape):  # drawn once the first snippet's size is known
            if not windows:
                windows.append(random_window(rng, shape, self.image_size, self.crop))
            return [(windows[0], flipped, lighting)]

        snippets = out.reshape(-1, self.image_size, self.image_size, self.stream.channels)
        for k, start in enumerate(starts):
            bad_path = load_sample(self.data_dir, video, self.stream, start, self.image_size, window_for,
                                   snippets[k:k + 1])
            if bad_path is not None:
                return bad_path
        return None

    def note_missing(self, path):
        with self._missing.get_lock():
            self._missing.value += 1
        if path not in self._warned:
            self._warned.add(path)
            warnings.warn(f"{path}: missing or unreadable JPEG; training on another draw instead", stacklevel=2)


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
        with environment(WORKER_ENVIRONMENT), signals_blocked(STOP_SIGNALS):  # until the processes ignore them
            for process in self.processes:
                process.start()
                os.setpriority(os.PRIO_PROCESS, process.pid, min(os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICENESS,
                                                                 MAX_NICENESS))
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
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
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


class SampleDraws:
    """One training sample's random numbers, served like a numpy Generator (integers, random,
    normal) from its row of TrainSequence.batch_draws. Draws beyond the row (a retry after an
    unreadable JPEG) come from a generator of its own, seeded with `spare_seed`, made only then."""

    def __init__(self, uniforms, normals, spare_seed):
        self.uniforms, self.normals = list(uniforms), list(normals)
        self.spare_seed, self.spare = spare_seed, None

    def generator(self):
        if self.spare is None:
            self.spare = np.random.default_rng(self.spare_seed)
        return self.spare

    def random(self):
        return self.uniforms.pop(0) if self.uniforms else self.generator().random()

    def integers(self, high):
        return min(int(self.random() * high), high - 1)

    def normal(self, loc, scale, size):
        if len(self.normals) >= size:
            taken, self.normals = self.normals[:size], self.normals[size:]
            return loc + scale * np.array(taken)
        return self.generator().normal(loc, scale, size)


# ---------------------------------------------------------------------------- testing

class EvalSequence(keras.utils.PyDataset):
    """Test batches (x uint8 [n, S, S, C], video_index int32 [n]) with n = videos_per_batch *
    samples * crops (fewer videos in the last batch). Per video, `samples` frames or stacks at
    uniform spacing (sample_starts), each cut into eval_windows' crops; one video's samples are
    contiguous, ordered (sample, crop). video_index indexes `videos`.

    Raises DataError naming the videos with missing frames or flow (missing_data), here
    and in __getitem__ for a file found unreadable.
    """

    def __init__(self, videos, data_dir, stream, samples=25, crops="center", image_size=224, stack_length=10,
                 videos_per_batch=1, workers=1, use_multiprocessing=False, max_queue_size=10):
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
        self.stream = as_stream(stream, stack_length)
        if crops not in EVAL_CROPS:
            raise ValueError(f"unknown test crop mode {crops!r}; choose from {', '.join(EVAL_CROPS)}")
        check_complete(videos, data_dir, self.stream)
        self.videos = list(videos)
        self.data_dir = data_dir
        self.samples = samples
        self.crops = crops
        self.crops_per_sample = CROPS_PER_SAMPLE[crops]
        self.samples_per_video = samples * self.crops_per_sample  # images of a video in a batch
        self.image_size = image_size
        self.image_shape = (image_size, image_size)
        self.videos_per_batch = videos_per_batch

    def __len__(self):
        return math.ceil(len(self.videos) / self.videos_per_batch)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        first = index * self.videos_per_batch
        chosen = range(first, min(first + self.videos_per_batch, len(self.videos)))
        per_video = self.samples_per_video
        x = np.empty((len(chosen) * per_video, *self.image_shape, self.stream.channels), np.uint8)
        for k, v in enumerate(chosen):
            self.video_samples(self.videos[v], x[k * per_video:(k + 1) * per_video])
        return x, np.repeat(np.asarray(chosen, np.int32), per_video)

    def video_samples(self, video, out):
        """Fill `out` [samples * crops, S, S, C] with the video's test crops."""
        windows_for = eval_windows_for(self.image_size, self.crops)
        per_sample = self.crops_per_sample
        starts = sample_starts(self.stream.count(video), self.samples, self.stream.span)
        for k, start in enumerate(starts):
            load_or_fail(self.data_dir, video, self.stream, start, self.image_size, windows_for,
                         out[k * per_sample:(k + 1) * per_sample])


def load_or_fail(data_dir, video, stream, start, size, windows_for, out):
    bad_path = load_sample(data_dir, video, stream, start, size, windows_for, out)
    if bad_path is not None:
        raise unreadable(video, bad_path)


def unreadable(video, bad_path):
    return DataError(f"{video.name}: {bad_path} is missing or unreadable. Re-extract this "
                     f"video's frames/flow, or leave it out (generators.missing_data).")


def eval_crops(image, size, mode, is_flow):
    """An in-memory H x W x C frame or flow stack -> [1 or 10, size, size, C], the same crops as
    EvalSequence (demo.py's videos are in memory, not JPEGs)."""
    planes = [image] if not is_flow else [np.ascontiguousarray(image[..., c]) for c in range(image.shape[-1])]
    planes = [fit_short_side(plane, size) for plane in planes]
    windows = eval_windows(planes[0].shape, size, mode)
    out = np.empty((len(windows), size, size, image.shape[-1]), np.uint8)
    for k, (window, flipped) in enumerate(windows):
        crops = [crop(plane, window, size) for plane in planes]
        crops = flip(crops, is_flow) if flipped else crops
        out[k] = crops[0] if not is_flow else cv2.merge(crops)
    return out


def validation_data(videos, data_dir, stream, image_size=224, stack_length=10, segments=1):
    """In-memory validation set (x uint8 [N, S, S, C], or [N, K, S, S, C] with K segments, y int32 [N]): per
    video the centre frame or stack of the video (of each of its K segments), centre crop. Raises DataError
    naming a video with missing data."""
    stream = as_stream(stream, stack_length)
    check_complete(videos, data_dir, stream)
    x = np.empty((len(videos), segments, image_size, image_size, stream.channels), np.uint8)
    y = np.array([v.label for v in videos], np.int32)

    def load(k):  # threads: the JPEG decoder releases the GIL
        video = videos[k]
        for j, start in enumerate(sample_starts(stream.count(video), segments, stream.span)):
            load_or_fail(data_dir, video, stream, start, image_size, eval_windows_for(image_size, "center"),
                         x[k, j:j + 1])

    with ThreadPoolExecutor(CORES) as pool:
        list(tqdm(pool.map(load, range(len(videos))), total=len(videos), desc=f"{stream.name} validation data",
                  disable=len(videos) < 100, leave=False))
    return (x[:, 0] if segments == 1 else x), y


# ---------------------------------------------------------------------------- testing, crops cut on the device

class EvalSampleSequence(EvalSequence):
    """Test batches of whole samples, for crops cut on the device (models.with_eval_crops): (x uint8
    [n, H, W, C], video_index int32 [n]) with n = videos_per_batch * samples (fewer videos in the last batch).
    Per video, EvalSequence's `samples` frames or stacks (sample_starts), each read once and fitted to the short
    side (fit_short_side), not cropped: 25 images of 256 x 340 a UCF-101 video instead of 250 crops of 224 x 224,
    and no crop, flip or copy per crop on the host. `shape` (H, W): every video's fitted sample shape (shape_runs
    groups videos by it); a sample of another shape is a DataError, as a missing or unreadable file is (here,
    for missing_data, and in __getitem__)."""

    def __init__(self, videos, data_dir, stream, shape, samples=25, image_size=224, stack_length=10,
                 videos_per_batch=1, workers=1, use_multiprocessing=False, max_queue_size=10):
        super().__init__(videos, data_dir, stream, samples, "center", image_size, stack_length, videos_per_batch,
                         workers, use_multiprocessing, max_queue_size)
        self.samples_per_video = samples  # one whole image a sample: the crops are cut later
        self.image_shape = tuple(shape[:2])

    def video_samples(self, video, out):
        """Fill `out` [samples, H, W, C] with the video's whole samples."""
        for k, start in enumerate(sample_starts(self.stream.count(video), self.samples, self.stream.span)):
            load_whole_sample(self.data_dir, video, self.stream, start, self.image_size, out[k])


def load_whole_sample(data_dir, video, stream, start, size, out):
    """The sample at `start` read, fitted to the short side and assembled (RGB, or u1, v1, ..., uL, vL) into `out`
    (H x W x C uint8), uncropped; DataError for a missing or unreadable file, or a sample of another shape."""
    paths = stream.paths(data_dir, video, start)
    planes, bad_path = read_planes(paths, stream.is_flow)
    if planes is None:
        raise unreadable(video, bad_path)
    planes = [fit_short_side(plane, size) for plane in planes]
    if planes[0].shape[:2] != out.shape[:2]:
        raise DataError(f"{video.name}: {paths[0]} is {planes[0].shape[0]}x{planes[0].shape[1]} once fitted to "
                        f"{size}, its first test sample {out.shape[0]}x{out.shape[1]}: a video's frames and flow "
                        "must all be of one size. Re-extract this video's frames/flow, or leave it out")
    assemble(planes, stream.is_flow, out)


def fitted_shape(data_dir, video, stream, size, samples=25):
    """(H, W) of the video's test samples fitted to the short side (fit_short_side), from the first JPEG of its
    first sample (decoded in grey: the same size); DataError naming that file if it is missing or unreadable."""
    path = stream.paths(data_dir, video, sample_starts(stream.count(video), samples, stream.span)[0])[0]
    image = media.decode_image(path, grayscale=True)
    if image is None:
        raise unreadable(video, path)
    return fit_short_side(image, size).shape[:2]


def shape_runs(videos, data_dir, stream, size, samples=25, stack_length=10):
    """[(shape, videos)]: `videos` in order, cut where the fitted shape of their samples (fitted_shape) changes.
    One EvalSampleSequence and one device-crop model per run: a batch holds one shape, and the crops' offsets
    follow from it (UCF-101's and HMDB-51's frames are all 340 x 256: one run)."""
    stream = as_stream(stream, stack_length)
    runs = []
    for video in videos:
        shape = fitted_shape(data_dir, video, stream, size, samples)
        if runs and runs[-1][0] == shape:
            runs[-1][1].append(video)
        else:
            runs.append((shape, [video]))
    return runs
