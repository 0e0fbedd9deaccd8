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

each step a function of twostream/loading/pixels.py; training draws the start, the crop window and the flip at random,
testing takes them from the paper's protocol (25 uniform starts, 10 crops). The streams differ
in what they read (Stream) and in one detail of the flip: mirrored flow's u changes sign.
fuse_test.py's test samples stop after the fit (EvalSampleSequence): the device cuts and flips
their 10 crops the same way (custom_layers.EvalCrops), from each sample sent once.

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
import math
import multiprocessing
import shutil
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
from tqdm import tqdm

from twostream.datasets.frames import STACK_LENGTH, as_stream, check_complete, missing_data_error
from twostream.errors import DataError, WorkerDied
from twostream.loading.pixels import (
    LIGHTING_STD,
    fitted_shape,
    lighting_noise,
    load_or_fail,
    load_sample,
    load_whole_sample,
)
from twostream.loading.processes import (
    BATCHES_IN_FLIGHT,
    LENT_BEYOND_QUEUE,
    SHARED_MEMORY_DIR,
    LoaderSlot,
    PlanCache,
    ProcessLoader,
)
from twostream.loading.sampling import (
    CROPS_PER_SAMPLE,
    SampleDraws,
    eval_windows_for,
    random_window,
    sample_starts,
    segment_starts,
)
from twostream.protocol.presets import BATCH_SIZE, CORES, CROP_SIZE, EVAL_CROPS, SAMPLINGS, TEST_SAMPLES
from twostream.train import distributed

TRIES_PER_VIDEO = 5  # unreadable draws before a training sample comes from another video
MAX_TRIES = 50  # unreadable draws in a row before the data counts as gone (DataError)


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

    workers: threads of Keras's, or with use_multiprocessing that many worker processes of its
    own (ProcessLoader; Keras's threads then only wait for their batches). Threads hold
    the GIL a fifth of each sample's time and stop scaling near 5 cores; processes do not.
    """

    def __init__(self, videos, data_dir, stream, batch_size=BATCH_SIZE, image_size=CROP_SIZE, stack_length=STACK_LENGTH,
                 steps=None, sampling="classes", crop="random", lighting=None, seed=0, workers=1,
                 use_multiprocessing=False, max_queue_size=10, shard=(0, 1), segments=1):
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


def train_sequence(videos, data_dir, stream, strategy, *, batch_size, accumulate, epoch_steps, image_size,
                   sampling, crop, seed, workers, lighting=None, datasets=1, segments=1):
    """The training batches of `videos`: each --batch-size batch comes in `accumulate` parts, each
    part filled equally from `datasets` datasets (2 in multi-task runs, one sequence each);
    epoch_steps optimizer steps an epoch. On a multi-worker cluster (`strategy`, tf.distribute's or JAX's),
    each worker's sequence loads its own part of every batch."""
    parts = accumulate * datasets
    batch, shard = batch_size // parts, distributed.worker_shard(strategy)
    replicas = distributed.replicas(strategy)
    if batch % replicas:
        each = " from each dataset" if datasets > 1 else ""
        raise DataError(f"--batch-size {batch_size} does not split evenly over the {replicas} devices ({batch} samples "
                        f"a step{each}): choose a multiple of {replicas * parts}")
    return TrainSequence(
        videos, data_dir, stream, batch_size=batch, image_size=image_size, steps=epoch_steps * accumulate,
        sampling=sampling, crop=crop, lighting=lighting, seed=seed, workers=workers, use_multiprocessing=True,
        shard=shard, segments=segments)


# ---------------------------------------------------------------------------- testing

class EvalSequence(keras.utils.PyDataset):
    """Test batches (x uint8 [n, S, S, C], video_index int32 [n]) with n = videos_per_batch *
    samples * crops (fewer videos in the last batch). Per video, `samples` frames or stacks at
    uniform spacing (sample_starts), each cut into eval_windows' crops; one video's samples are
    contiguous, ordered (sample, crop). video_index indexes `videos`.

    Raises DataError naming the videos with missing frames or flow (missing_data), here
    and in __getitem__ for a file found unreadable.
    """

    def __init__(self, videos, data_dir, stream, samples=TEST_SAMPLES, crops="center", image_size=CROP_SIZE,
                 stack_length=STACK_LENGTH, videos_per_batch=1, workers=1, use_multiprocessing=False,
                 max_queue_size=10):
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


def validation_data(videos, data_dir, stream, image_size=CROP_SIZE, stack_length=STACK_LENGTH, segments=1):
    """In-memory validation set (x uint8 [N, S, S, C], or [N, K, S, S, C] with K segments, y int32 [N]): per
    video the centre frame or stack of the video (of each of its K segments), centre crop; None without videos
    (no --val-groups). Raises DataError naming a video with missing data."""
    if not videos:
        return None
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
    """Test batches of whole samples, for crops cut on the device (custom_layers.with_eval_crops): (x uint8
    [n, H, W, C], video_index int32 [n]) with n = videos_per_batch * samples (fewer videos in the last batch).
    Per video, EvalSequence's `samples` frames or stacks (sample_starts), each read once and fitted to the short
    side (fit_short_side), not cropped: 25 images of 256 x 340 a UCF-101 video instead of 250 crops of 224 x 224,
    and no crop, flip or copy per crop on the host. `shape` (H, W): every video's fitted sample shape (shape_runs
    groups videos by it); a sample of another shape is a DataError, as a missing or unreadable file is (here,
    for missing_data, and in __getitem__)."""

    def __init__(self, videos, data_dir, stream, shape, samples=TEST_SAMPLES, image_size=CROP_SIZE,
                 stack_length=STACK_LENGTH, videos_per_batch=1, workers=1, use_multiprocessing=False,
                 max_queue_size=10):
        super().__init__(videos, data_dir, stream, samples, "center", image_size, stack_length, videos_per_batch,
                         workers, use_multiprocessing, max_queue_size)
        self.samples_per_video = samples  # one whole image a sample: the crops are cut later
        self.image_shape = tuple(shape[:2])

    def video_samples(self, video, out):
        """Fill `out` [samples, H, W, C] with the video's whole samples."""
        for k, start in enumerate(sample_starts(self.stream.count(video), self.samples, self.stream.span)):
            load_whole_sample(self.data_dir, video, self.stream, start, self.image_size, out[k])


def shape_runs(videos, data_dir, stream, size, samples=TEST_SAMPLES, stack_length=STACK_LENGTH):
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
