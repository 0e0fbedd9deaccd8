"""Batches of frames and flow stacks for both streams: training, validation and test-time sampling.

    train = TrainSequence(videos, "data/ucf101", "temporal", batch_size=32, workers=2)
    model.fit(train, ...)                       # fit calls on_epoch_end: next epoch, new shuffle
    x, y = validation_data(val_videos, "data/ucf101", "temporal")
    for x, video_index in TestSequence(test_videos, "data/ucf101", "spatial", crops="10"): ...

A spatial sample is one RGB frame (S x S x 3). A temporal sample is a stack of L consecutive
flow frames with the channels interleaved u1,v1,...,uL,vL (S x S x 2L). Samples stay uint8 from
the JPEG decoder to the model, which normalises them itself: a quarter of the float32 transfer,
and one preprocessing for training, testing and the demo.

Images whose short side is below the crop size S are first resized up (short side = S, aspect
kept); the public 340x256 frames never are. Flow values are not rescaled by any resize (as TSN).

Randomness comes only from np.random.default_rng seeded with (seed, epoch, batch index): Keras
forks worker processes with numpy's global random state copied into each of them, so draws from
np.random would repeat across workers. Batches are therefore the same with any number of
threads or processes, and differ between epochs.

Worker model: threads (use_multiprocessing=False). OpenCV's JPEG decoder releases the GIL, while
a process pool must pickle every 224x224x20 sample (1 MB) back to the trainer;
benchmarks/bench_generators.py measures both.
"""
import math
import multiprocessing
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import cv2
import keras
import numpy as np
from tqdm import tqdm

import media
import ucf101

STREAMS = ("spatial", "temporal")
TEST_CROPS = ("center", "10")
# TSN multi-scale cropping: crop sides of 1, .875, .75, .66 times the short side (256, 224,
# 192, 168 on 340x256 frames), height and width at most one scale apart, resized to S x S.
MULTISCALE_RATIOS = (1.0, 0.875, 0.75, 0.66)
MAX_SCALE_DISTORTION = 1
TRIES_PER_VIDEO = 5  # unreadable draws before a training sample comes from another video
MAX_TRIES = 50  # unreadable draws in a row before the data counts as gone (DataError)


# ---------------------------------------------------------------------------- pure helpers

def sample_starts(num_frames, samples, span=1):
    """`samples` uniformly spaced start indices for frames (span=1) or stacks of `span` frames.

    The starts that leave room for `span` frames (0 .. num_frames - span) are cut into `samples`
    equal segments and each segment's centre is taken, so neither end is favoured. A video too
    short for one stack gets starts of 0 (its stacks loop, see stack_indices); a video with
    fewer starts than samples repeats some.
    """
    room = max(num_frames - span + 1, 1)
    return [(2 * i + 1) * room // (2 * samples) for i in range(samples)]


def stack_indices(start, span, num_frames):
    """Frame indices of the stack of `span` frames from `start`, looping a short video."""
    return [(start + k) % num_frames for k in range(span)]


def corner_offsets(height, width, crop_height, crop_width):
    """(top, left) of the top-left, top-right, bottom-left, bottom-right and centre crops."""
    bottom, right = height - crop_height, width - crop_width
    if bottom < 0 or right < 0:
        raise ValueError(f"a {crop_height}x{crop_width} crop does not fit a {height}x{width} image")
    return [(0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2)]


def crop_boxes(height, width, size, mode):
    """(top, left) of the size x size crops: mode "center" -> [centre]; "corners" or "10" -> the
    four corners and the centre, in that order (10-crop adds their mirror images)."""
    boxes = corner_offsets(height, width, size, size)
    if mode == "center":
        return boxes[4:]
    if mode in ("corners", "10"):
        return boxes
    raise ValueError(f"unknown crop mode {mode!r}; choose center, corners or 10")


def fit_short_side(image, size):
    """Resize up so the short side is at least `size` (aspect kept); larger images pass as is."""
    height, width = image.shape[:2]
    if min(height, width) >= size:
        return image
    scale = size / min(height, width)
    shape = (max(size, round(width * scale)), max(size, round(height * scale)))
    resized = cv2.resize(image, shape, interpolation=cv2.INTER_LINEAR)
    return resized.reshape(resized.shape[:2] + image.shape[2:])  # cv2 drops a 1-channel axis


def flip_flow(stack):
    """Mirror a flow stack (..., H, W, 2L) left-right: u (even channels) -> 255 - u, since the
    horizontal motion changes sign; v is only mirrored."""
    flipped = stack[..., ::-1, :].copy()
    flipped[..., 0::2] = 255 - flipped[..., 0::2]
    return flipped


def test_crops(image, size, mode, is_flow):
    """An H x W x C frame or flow stack -> [1 or 10, size, size, C]: the centre crop, or the four
    corners and the centre followed by their mirror images (flow mirrored with flip_flow)."""
    if mode not in TEST_CROPS:
        raise ValueError(f"unknown test crop mode {mode!r}; choose from {', '.join(TEST_CROPS)}")
    image = fit_short_side(image, size)
    crops = np.stack([image[t:t + size, l:l + size] for t, l in crop_boxes(*image.shape[:2], size, mode)])
    if mode == "10":
        mirrored = flip_flow(crops) if is_flow else crops[:, :, ::-1]
        crops = np.concatenate([crops, mirrored])
    return crops


test_crops.__test__ = False  # a helper, not a test, in any test module that imports it


def check_stream(stream):
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}; choose from {', '.join(STREAMS)}")


def frame_count(video, stream):
    return video.frames if stream == "spatial" else video.flows


def frames_per_sample(stream, stack_length):
    """Frames one sample covers: 1 RGB frame, or a stack of L flow frames."""
    return 1 if stream == "spatial" else stack_length


def channels(stream, stack_length):
    return 3 if stream == "spatial" else 2 * stack_length


# ---------------------------------------------------------------------------- reading JPEGs

def rgb_path(data_dir, name, index):
    return ucf101.frame_path(ucf101.rgb_dir(data_dir, name), index)


def flow_paths(data_dir, name, indices):
    """Paths of u1, v1, ..., uL, vL for the flow frames `indices`."""
    u_dir, v_dir = ucf101.flow_dir(data_dir, "u", name), ucf101.flow_dir(data_dir, "v", name)
    return [ucf101.frame_path(folder, i) for i in indices for folder in (u_dir, v_dir)]


def read_sample(data_dir, video, stream, start, stack_length):
    """The whole RGB frame or interleaved flow stack (H x W x 2L) at `start`, and None; or None
    and the path of the first file that is missing or unreadable."""
    if stream == "spatial":
        path = rgb_path(data_dir, video.name, start)
        image = media.decode_image(path)
        return (None, path) if image is None else (cv2.cvtColor(image, cv2.COLOR_BGR2RGB), None)
    planes, bad_path = read_flow_planes(data_dir, video.name, stack_indices(start, stack_length, video.flows))
    return (None, bad_path) if planes is None else (cv2.merge(planes), None)


def read_flow_planes(data_dir, name, indices):
    """[u1, v1, ..., uL, vL] grayscale planes of the flow frames `indices`, and None; or None and
    the path of the first file that is missing, unreadable or of another size than the first."""
    planes = []
    for path in flow_paths(data_dir, name, indices):
        plane = media.decode_image(path, grayscale=True)
        if plane is None or (planes and plane.shape != planes[0].shape):
            return None, path
        planes.append(plane)
    return planes, None


def missing_data(videos, data_dir, stream):
    """Names of the videos without a complete set of frames (spatial) or of u and v flow
    (temporal): a count of 0 in the index, or a file of 0 .. count-1 gone since indexing.
    One directory scan per folder; fuse_test decides whether to skip them."""
    check_stream(stream)
    missing = []
    for video in videos:
        count = frame_count(video, stream)
        folders = ([ucf101.rgb_dir(data_dir, video.name)] if stream == "spatial" else
                   [ucf101.flow_dir(data_dir, c, video.name) for c in "uv"])
        expected = {ucf101.FRAME_NAME.format(i + 1) for i in range(count)}
        if count == 0 or any(not expected <= file_names(folder) for folder in folders):
            missing.append(video.name)
    return missing


def file_names(folder):
    try:
        with os.scandir(folder) as entries:
            return {e.name for e in entries}
    except OSError:
        return set()


def missing_data_error(names, data_dir, stream):
    what = "frames (jpegs_256)" if stream == "spatial" else "optical flow (tvl1_flow/u and v)"
    listed = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return ucf101.DataError(
        f"{len(names)} video(s) have missing {what} under {data_dir}: {listed}. "
        f"Extract them with prepare_data.py, or leave them out (generators.missing_data lists them).")


# ---------------------------------------------------------------------------- training

class TrainSequence(keras.utils.PyDataset):
    """Training batches (x uint8 [B, S, S, 3 or 2L], y int32 [B]); an epoch is one pass over
    `videos` in a fresh shuffled order, the last batch holding the remainder.

    Per video: one frame (spatial) or one stack of L consecutive flow frames (temporal), the
    start uniform over those leaving room for L (short videos loop); one of the four corner or
    the centre S x S crops, or with multiscale=True a TSN multi-scale crop resized to S x S; a
    horizontal flip half of the time (flipped flow inverted, see flip_flow).

    A missing or unreadable JPEG is warned about once (naming the file), counted in
    `missing_files`, reported at the end of the epoch, and replaced by another draw from the same
    video (after TRIES_PER_VIDEO failures, from another video).

    on_epoch_end moves `epoch` on, which seeds the shuffle and the draws. fit() calls it after
    every epoch and once before the first (its epoch_iterator.reset()), so fit's epoch k draws
    with epoch k + 1. A run resumed with fit(initial_epoch=E) continues the same sequence when
    `epoch` is set to E first.
    """

    def __init__(self, videos, data_dir, stream, batch_size=32, image_size=224, stack_length=10,
                 multiscale=False, seed=0, workers=1, use_multiprocessing=False, max_queue_size=10):
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing,
                         max_queue_size=max_queue_size)
        check_stream(stream)
        if not videos:
            raise ucf101.DataError("no training videos: check --data-dir, the split lists and --class-limit")
        empty = [v.name for v in videos if frame_count(v, stream) == 0]
        if empty:
            raise missing_data_error(empty, data_dir, stream)
        self.videos = list(videos)
        self.data_dir = data_dir
        self.stream = stream
        self.batch_size = batch_size
        self.image_size = image_size
        self.stack_length = stack_length
        self.multiscale = multiscale
        self.seed = seed
        self.epoch = 0
        # Shared with worker threads, and with worker processes (which inherit it when forked).
        self._missing = multiprocessing.Value("q", 0)
        self._reported = 0
        self._warned = set()

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
        return math.ceil(len(self.videos) / self.batch_size)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        rng = np.random.default_rng([self.seed, self.epoch, 1, index])
        chosen = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        size = self.image_size
        x = np.empty((len(chosen), size, size, channels(self.stream, self.stack_length)), np.uint8)
        y = np.empty(len(chosen), np.int32)
        for k, v in enumerate(chosen):
            y[k] = self.load(self.videos[v], rng, x[k])
        return x, y

    def on_epoch_end(self):
        missing = self.missing_files - self._reported
        if missing:
            print(f"\n{missing} missing or unreadable JPEG(s) met in this epoch were replaced by other "
                  f"draws (the warnings name them); {self.missing_files} in all", flush=True)
        self._reported += missing
        self.epoch += 1

    def load(self, video, rng, out):
        """Fill `out` with a sample of `video` (or of a substitute) and return its label."""
        for attempt in range(MAX_TRIES):
            if attempt and attempt % TRIES_PER_VIDEO == 0:
                video = self.videos[rng.integers(len(self.videos))]
            bad_path = self.draw_sample(video, rng, out)
            if bad_path is None:
                return video.label
            self.note_missing(bad_path)
        raise ucf101.DataError(f"{MAX_TRIES} draws in a row met missing or unreadable JPEGs under "
                               f"{self.data_dir}: re-extract the frames and flow (prepare_data.py)")

    def draw_sample(self, video, rng, out):
        """Draw start, crop and flip, and write the sample into `out`; None, or the bad path."""
        count = frame_count(video, self.stream)
        length = frames_per_sample(self.stream, self.stack_length)
        start = int(rng.integers(max(count - length + 1, 1)))
        position = int(rng.integers(5))
        flip = bool(rng.random() < 0.5)
        scales = self.draw_scales(rng) if self.multiscale else None
        if self.stream == "spatial":
            path = rgb_path(self.data_dir, video.name, start)
            image = media.decode_image(path)
            if image is None:
                return path
            image = fit_short_side(image, self.image_size)
            crop = self.cut(image, self.crop_window(image.shape, position, scales))
            cv2.cvtColor(cv2.flip(crop, 1) if flip else crop, cv2.COLOR_BGR2RGB, dst=out)
            return None
        planes, bad_path = read_flow_planes(self.data_dir, video.name, stack_indices(start, length, count))
        if planes is None:
            return bad_path
        planes = [fit_short_side(plane, self.image_size) for plane in planes]
        window = self.crop_window(planes[0].shape, position, scales)  # one window for the stack
        crops = [self.cut(plane, window) for plane in planes]
        if flip:
            crops = [cv2.flip(crop, 1) for crop in crops]
            for u in crops[0::2]:  # horizontal motion changes sign
                cv2.bitwise_not(u, dst=u)
        cv2.merge(crops, dst=out)
        return None

    def draw_scales(self, rng):
        """TSN scale indices (height, width) for the crop sides, at most one scale apart."""
        pairs = [(h, w) for h in range(len(MULTISCALE_RATIOS)) for w in range(len(MULTISCALE_RATIOS))
                 if abs(h - w) <= MAX_SCALE_DISTORTION]
        return pairs[rng.integers(len(pairs))]

    def crop_window(self, shape, position, scales):
        """(top, left, height, width) of the image_size crop at corner/centre `position`, or of the
        multi-scale crop there (scale indices `scales`) in an image of `shape`."""
        height, width = shape[:2]
        if scales is None:
            crop_height = crop_width = self.image_size
        else:
            crop_height, crop_width = (int(min(height, width) * MULTISCALE_RATIOS[s]) for s in scales)
        top, left = corner_offsets(height, width, crop_height, crop_width)[position]
        return top, left, crop_height, crop_width

    def cut(self, image, window):
        """The window of `image` (a view), resized to image_size if it is not that size already."""
        top, left, height, width = window
        crop = image[top:top + height, left:left + width]
        if (height, width) == (self.image_size, self.image_size):
            return crop
        return cv2.resize(crop, (self.image_size, self.image_size), interpolation=cv2.INTER_LINEAR)

    def note_missing(self, path):
        with self._missing.get_lock():
            self._missing.value += 1
        if path not in self._warned:
            self._warned.add(path)
            warnings.warn(f"{path}: missing or unreadable JPEG; training on another draw instead",
                          stacklevel=2)


# ---------------------------------------------------------------------------- testing

class TestSequence(keras.utils.PyDataset):
    """Test batches (x uint8 [n, S, S, C], video_index int32 [n]) with n = videos_per_batch *
    samples * crops (fewer videos in the last batch). Per video, `samples` frames or stacks at
    uniform spacing (sample_starts), each cropped by test_crops; one video's samples are
    contiguous, ordered (sample, crop). video_index indexes `videos`.

    Raises ucf101.DataError naming the videos with missing frames or flow (missing_data), here
    and in __getitem__ for a file found unreadable.
    """
    __test__ = False  # not a pytest test class

    def __init__(self, videos, data_dir, stream, samples=25, crops="center", image_size=224,
                 stack_length=10, videos_per_batch=1, workers=1, use_multiprocessing=False,
                 max_queue_size=10):
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing,
                         max_queue_size=max_queue_size)
        check_stream(stream)
        if crops not in TEST_CROPS:
            raise ValueError(f"unknown test crop mode {crops!r}; choose from {', '.join(TEST_CROPS)}")
        missing = missing_data(videos, data_dir, stream)
        if missing:
            raise missing_data_error(missing, data_dir, stream)
        self.videos = list(videos)
        self.data_dir = data_dir
        self.stream = stream
        self.samples = samples
        self.crops = crops
        self.crops_per_sample = 1 if crops == "center" else 10
        self.samples_per_video = samples * self.crops_per_sample
        self.image_size = image_size
        self.stack_length = stack_length
        self.videos_per_batch = videos_per_batch

    def __len__(self):
        return math.ceil(len(self.videos) / self.videos_per_batch)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        first = index * self.videos_per_batch
        chosen = range(first, min(first + self.videos_per_batch, len(self.videos)))
        per_video = self.samples_per_video
        size = self.image_size
        x = np.empty((len(chosen) * per_video, size, size, channels(self.stream, self.stack_length)), np.uint8)
        for k, v in enumerate(chosen):
            x[k * per_video:(k + 1) * per_video] = self.video_samples(self.videos[v])
        return x, np.repeat(np.asarray(chosen, np.int32), per_video)

    def video_samples(self, video):
        starts = sample_starts(frame_count(video, self.stream), self.samples,
                               frames_per_sample(self.stream, self.stack_length))
        crops = []
        for start in starts:
            crops.append(test_crops(load_or_fail(self.data_dir, video, self.stream, start, self.stack_length),
                                    self.image_size, self.crops, self.stream == "temporal"))
        return np.concatenate(crops)


def load_or_fail(data_dir, video, stream, start, stack_length):
    sample, bad_path = read_sample(data_dir, video, stream, start, stack_length)
    if sample is None:
        raise ucf101.DataError(f"{video.name}: {bad_path} is missing or unreadable. Re-extract this "
                               f"video's frames/flow, or leave it out (generators.missing_data).")
    return sample


def validation_data(videos, data_dir, stream, image_size=224, stack_length=10):
    """In-memory validation set (x uint8 [N, S, S, C], y int32 [N]): per video the centre frame
    or the centre stack, centre crop. Raises ucf101.DataError naming a video with missing data."""
    check_stream(stream)
    missing = missing_data(videos, data_dir, stream)
    if missing:
        raise missing_data_error(missing, data_dir, stream)
    x = np.empty((len(videos), image_size, image_size, channels(stream, stack_length)), np.uint8)
    y = np.array([v.label for v in videos], np.int32)

    def load(k):  # threads: the JPEG decoder releases the GIL
        video = videos[k]
        start = sample_starts(frame_count(video, stream), 1, frames_per_sample(stream, stack_length))[0]
        x[k] = test_crops(load_or_fail(data_dir, video, stream, start, stack_length), image_size, "center",
                          stream == "temporal")[0]

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(tqdm(pool.map(load, range(len(videos))), total=len(videos), desc=f"{stream} validation data",
                  disable=len(videos) < 100, leave=False))
    return x, y
