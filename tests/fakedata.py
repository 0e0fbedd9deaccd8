"""Tiny datasets in the real on-disk layouts, written straight as JPEGs (no video decoding); tiny
XviD videos (write_video); checkpoint folders as training leaves them (write_checkpoint).

Frame j (0-based) of every video has R = j and G = label * 10 everywhere, and B = a left-to-right
ramp, so a test can tell which frame of which class it got and whether it was mirrored.
Flow image j has u = 128 + a left-to-right ramp offset by j, v = 100 + j (uniform).
"""
import json
import os
import shutil

import cv2
import numpy as np

from twostream.datasets import ucf101
from twostream.train import checkpoints
from twostream.video import media


def ramp(height, width):
    return np.tile(np.linspace(0, 255, width).astype(np.uint8), (height, 1))


def rgb_frame(label, j, height, width):
    frame = np.empty((height, width, 3), np.uint8)
    frame[..., 0] = j % 256
    frame[..., 1] = (label * 10) % 256
    frame[..., 2] = ramp(height, width)
    return frame


def flow_frames(j, height, width):
    u = np.clip(ramp(height, width).astype(int) // 2 + 64 + j, 0, 255).astype(np.uint8)
    v = np.full((height, width), (100 + j) % 256, np.uint8)
    return u, v


def video_names(classes, groups=(1, 8), clips=1):
    """(name, label) for every class, group and clip: v_<Class>_gXX_cYY."""
    return [(f"v_{cls}_g{g:02d}_c{c:02d}", label)
            for label, cls in enumerate(classes) for g in groups for c in range(1, clips + 1)]


def write_dataset(root, classes=("Alpha", "Beta", "Gamma"), groups=(1, 8), clips=1,
                  frames=12, size=(64, 48)):
    """jpegs_256/, tvl1_flow/{u,v}/ and splits/ under `root` for a tiny dataset.

    `frames` is an int or a {video name: count} dict; flow has count - 1 images.
    Group 1 falls in split 1's test list, group 8 in its train list. Returns the splits dir.
    """
    width, height = size
    entries = video_names(classes, groups, clips)
    for name, label in entries:
        count = frames.get(name, 12) if isinstance(frames, dict) else frames
        rgb = ucf101.rgb_dir(root, name)
        os.makedirs(rgb, exist_ok=True)
        for j in range(count):
            media.write_image(ucf101.frame_path(rgb, j), rgb_frame(label, j, height, width))
        for component in "uv":
            os.makedirs(ucf101.flow_dir(root, component, name), exist_ok=True)
        for j in range(count - 1):
            u, v = flow_frames(j, height, width)
            media.write_image(ucf101.frame_path(ucf101.flow_dir(root, "u", name), j), u)
            media.write_image(ucf101.frame_path(ucf101.flow_dir(root, "v", name), j), v)
    splits = os.path.join(root, "splits")
    os.makedirs(splits, exist_ok=True)
    videos = [(classes[label], f"{name}.avi") for name, label in entries]
    for file, lines in ucf101.make_splits(videos, list(classes)).items():
        ucf101.write_lines(os.path.join(splits, file), lines)
    return splits


VIDEO_SHIFT = (2, 1)  # write_video's texture moves right by 2 px and down by 1 px per frame


def write_video(path, frames=8, size=(64, 48), seed=0):
    """A smooth random texture translating by VIDEO_SHIFT pixels per frame, as XviD."""
    width, height = size
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    texture = cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 1.5), None, 0, 255, cv2.NORM_MINMAX)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"XVID"), 25, size)
    for j in range(frames):
        writer.write(np.roll(texture, (VIDEO_SHIFT[1] * j, VIDEO_SHIFT[0] * j), axis=(0, 1)))
    writer.release()


def sharpen(model, factor=1000.0):
    """Scale an untrained model's top so that its softmax differs between inputs (near uniform otherwise)."""
    top = model.get_layer("predictions")
    kernel, bias = top.get_weights()
    top.set_weights([kernel * factor, bias])
    return model


def write_checkpoint(folder, model, stream, image_size, splits, classes_file=None, stack_length=2):
    """last.keras (an empty file when model is None), config.json and classInd.txt, as training leaves them."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, checkpoints.MODEL_FILE)
    if model is None:
        open(path, "w").close()
    else:
        model.save(path)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"stream": stream, "image_size": image_size, "stack_length": stack_length, "dataset": "synthetic",
                   "split": 1, "frame_size": [64, 48]}, f)
    shutil.copy(classes_file or os.path.join(splits, "classInd.txt"), os.path.join(folder, "classInd.txt"))
    return path
