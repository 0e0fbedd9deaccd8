"""Frames and flow on disk and in memory: JPEG I/O, video decoding, optical flow and its quantisation.

Flow is stored as the public tvl1_flow download stores it: one grayscale JPEG per component,
value = clip(flow, -BOUND, BOUND) mapped linearly onto 0..255, so 127.5 means no motion.
"""
import os

import cv2
import numpy as np

FLOW_BOUND = 20.0  # pixels; the public download's clipping range
FRAME_SIZE = (340, 256)  # (width, height) of the public jpegs_256 frames
JPEG_QUALITY = 95
FLOW_METHODS = ("tvl1", "farneback", "dis")


def decode_image(path, grayscale=False):
    """BGR (or grayscale) uint8 image as OpenCV decodes it; None if missing, empty or unreadable.

    One unbuffered read() is about twice as fast as np.fromfile on small JPEGs; the data
    pipeline crops this before converting colours, so it does not use read_image.
    """
    try:
        with open(path, "rb", buffering=0) as file:
            data = file.read()
    except OSError:
        return None
    if not data:
        return None  # cv2.imdecode raises on an empty buffer
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR)


def read_image(path, grayscale=False):
    """uint8 HxWx3 (RGB) or HxW image, or None if the file is missing or unreadable."""
    image = decode_image(path, grayscale)
    if image is None or grayscale:
        return image
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_image(path, image, quality=JPEG_QUALITY):
    """Write an RGB or grayscale uint8 image as JPEG."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f"{path}: could not write the image")


def quantize_flow(flow, bound=FLOW_BOUND):
    """float HxWx2 flow (pixels) -> two uint8 HxW images (u, v)."""
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2 * bound))
    q = np.round(scaled).astype(np.uint8)
    return q[..., 0], q[..., 1]


def dequantize_flow(quantized, bound=FLOW_BOUND):
    """uint8 flow images -> float32 displacement in pixels (same shape)."""
    return quantized.astype(np.float32) * (2 * bound / 255.0) - bound


def read_video(path, size=FRAME_SIZE, max_frames=None):
    """Decode a video with OpenCV -> list of RGB uint8 frames resized to `size` (w, h).

    Returns an empty list if OpenCV cannot open or decode the file.
    """
    return list(iter_video(path, size, max_frames))


def iter_video(path, size=FRAME_SIZE, max_frames=None):
    """read_video one frame at a time, so a long video need not fit in memory."""
    capture = cv2.VideoCapture(path)
    count = 0
    try:
        while capture.isOpened() and (max_frames is None or count < max_frames):
            ok, frame = capture.read()
            if not ok:
                break
            if size and (frame.shape[1], frame.shape[0]) != tuple(size):
                frame = cv2.resize(frame, tuple(size), interpolation=cv2.INTER_AREA)
            count += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def video_fps(path):
    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return fps if fps and fps > 0 else 25.0


def flow_estimator(method="tvl1"):
    """A callable (gray0, gray1) -> float32 HxWx2 flow, by OpenCV method name."""
    if method == "tvl1":
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
        return lambda a, b: tvl1.calc(a, b, None)
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return lambda a, b: dis.calc(a, b, None)
    if method == "farneback":
        return lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    raise ValueError(f"unknown flow method {method!r}; choose from {', '.join(FLOW_METHODS)}")


def to_gray(frame):
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def compute_flow(frames, method="tvl1", pairs=None):
    """Quantised flow between consecutive RGB frames -> {i: (u, v)} for flow image i (frames i, i+1).

    `pairs` limits the work to those indices (the demo needs only the sampled stacks).
    """
    estimate = flow_estimator(method)
    indices = range(len(frames) - 1) if pairs is None else sorted(pairs)
    return {i: quantize_flow(estimate(to_gray(frames[i]), to_gray(frames[i + 1]))) for i in indices}


def remove_if_exists(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
