"""Generated videos in the real on-disk layout, with JPEGs like real ones, for the benchmarks:
textured RGB frames drifting a few pixels per frame, and flow that is still (128) but for smooth
moving regions, like TV-L1 flow of a person in front of a static background. Frames at media's
JPEG_QUALITY, flow at its FLOW_JPEG_QUALITY. (tests/fakedata.py's flat ramps decode several times
faster than real frames: fine for tests, not for timings.)
"""
import multiprocessing
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from twostream.datasets import ucf101  # noqa: E402
from twostream.video import media  # noqa: E402


def smooth_noise(rng, height, width, sigma):
    noise = rng.standard_normal((height + 64, width + 64)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), sigma)
    return noise / noise.std()


def write_video(data_dir, name, frames, rng, size=media.FRAME_SIZE, quality=media.FLOW_JPEG_QUALITY):
    """`frames` RGB frames and `frames` u/v flow images (at `quality`) of video `name` (size: width, height)."""
    width, height = size
    detail = smooth_noise(rng, height, width, 3.0)[..., None]
    colour = np.stack([smooth_noise(rng, height, width, 40.0) for _ in range(3)], axis=-1)
    texture = np.clip(128 + 30 * detail + 40 * colour, 0, 255).astype(np.uint8)
    motion = smooth_noise(rng, height, width, 12.0)
    rgb = ucf101.rgb_dir(data_dir, name)
    folders = {c: ucf101.flow_dir(data_dir, c, name) for c in "uv"}
    for folder in (rgb, *folders.values()):
        os.makedirs(folder, exist_ok=True)
    for j in range(frames):
        dx, dy = (2 * j) % 64, j % 64
        media.write_image(ucf101.frame_path(rgb, j), texture[dy:dy + height, dx:dx + width])
        moving = np.clip(motion[dy:dy + height, dx:dx + width] - 0.5, 0, None)
        for k, c in enumerate("uv"):
            flow = np.clip(128 + (30 - 20 * k) * moving, 0, 255).astype(np.uint8)
            media.write_image(ucf101.frame_path(folders[c], j), flow, quality)


def write_one(job):
    data_dir, name, frames, seed, size = job
    write_video(data_dir, name, frames, np.random.default_rng(seed), size)


def write_dataset(data_dir, classes=10, videos_per_class=4, frames=40, size=media.FRAME_SIZE, workers=None):
    """A dataset of classes x videos_per_class videos (half in split 1's training list, half in its
    test list) with frames/ and flow/ and splits/, written by `workers` processes. Returns the splits dir."""
    names = [f"Bench{c:03d}" for c in range(classes)]
    entries = [(f"v_{cls}_g{(1, 8)[k % 2]:02d}_c{k // 2 + 1:02d}", cls)
               for cls in names for k in range(videos_per_class)]
    jobs = [(data_dir, name, frames, seed, size) for seed, (name, _) in enumerate(entries)]
    with multiprocessing.get_context("spawn").Pool(workers or os.cpu_count()) as pool:
        pool.map(write_one, jobs, chunksize=1)
    splits = os.path.join(data_dir, "splits")
    os.makedirs(splits, exist_ok=True)
    for file, lines in ucf101.make_splits([(cls, f"{name}.avi") for name, cls in entries], names).items():
        ucf101.write_lines(os.path.join(splits, file), lines)
    return splits
