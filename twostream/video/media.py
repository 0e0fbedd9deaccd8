"""Frames and flow on disk and in memory: JPEG I/O, video decoding, optical flow and its quantisation.

Flow is stored as the public tvl1_flow download stores it: one grayscale JPEG per component,
value = clip(flow, -BOUND, BOUND) mapped linearly onto 0..255, so 127.5 means no motion. Beside
u/ and v/, flow_info.json records how it was computed (write_flow_info, read_flow_info).
"""
import contextlib
import json
import os

import cv2
import numpy as np

try:
    import simplejpeg  # cv2.imdecode's pixels in less CPU time (decode_image)
except ImportError:
    simplejpeg = None

from twostream.errors import DataError
from twostream.storage import atomic

FLOW_BOUND = 20.0  # pixels; the public download's clipping range
FLOW_LEVELS = 255.0  # -FLOW_BOUND .. FLOW_BOUND maps onto grey levels 0 .. FLOW_LEVELS
FRAME_SIZE = (340, 256)  # (width, height) of the public jpegs_256 frames
JPEG_QUALITY = 95
FLOW_JPEG_QUALITY = 75  # flow: ~1.2x faster to decode than 95, EPE 0.108 vs 0.071 px (README: On one GPU)
# tvl1: OpenCV's TV-L1 on the CPU (the public downloads' flow). tvl1_keras: the same algorithm in keras.ops
# (tvl1.py), many pairs per call on the Keras backend's device (GPU if there is one).
FLOW_METHODS = ("tvl1", "tvl1_keras", "farneback", "dis")
BATCHED_FLOW_METHODS = ("tvl1_keras",)  # estimate_flows runs these FLOW_BATCH pairs per call
FLOW_BATCH = 32
FLOW_INFO_FILE = "flow_info.json"
JPEG_END = b"\xff\xd9"  # the end-of-image marker every complete JPEG ends with
JPEG_TAIL_BYTES = 16
SIMPLEJPEG_MAX_PIXELS = 1 << 24  # larger frames go to OpenCV (see decode_image)


def decode_image(path, grayscale=False):
    """BGR (or grayscale) uint8 image as OpenCV decodes it; None if missing, empty or unreadable.

    The data pipeline crops this before converting colours, so it does not use read_image.
    simplejpeg, where installed, decodes a JPEG to the same pixels (tests/test_media.py) in less CPU
    time; OpenCV decodes what it refuses (not a JPEG, or anything libjpeg warns about: it is strict),
    what carries an APP1 segment (Exif's orientation, which cv2.imdecode applies) and frames over
    SIMPLEJPEG_MAX_PIXELS (a damaged header may claim 65535 x 65535: simplejpeg fills those 12 GB
    before it refuses; OpenCV refuses at once).
    """
    data = read_bytes(path)
    if not data:
        return None  # cv2.imdecode raises on an empty buffer
    shape = simplejpeg_shape(data) if simplejpeg is not None else None
    if shape is not None:
        try:
            image = simplejpeg.decode_jpeg(data, "GRAY" if grayscale else "BGR")
            return image.reshape(shape) if grayscale else image
        except ValueError:
            pass
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR)


def read_bytes(path):
    """The file's bytes, or None if it cannot be read. One os.read of the size fstat gives, without a
    Python file object: ~2 us less per JPEG than an unbuffered open().read(), itself twice as fast as np.fromfile."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, os.fstat(fd).st_size)
    except OSError:
        return None
    finally:
        os.close(fd)


class CleanHeaders:
    """The last few JPEG headers (SOI up to the end of the first scan's SOS segment) that simplejpeg may decode,
    each with its (height, width). A folder's JPEGs, written by one encoder at one size and quality, share one
    header, so one comparison of bytes replaces walking the segments and reading the header again: the walk
    (scan_start) and simplejpeg's header reading look at no byte past that prefix, so a file that starts with
    it gets the same answer. A tuple replaced whole, so threads may read it while another adds to it."""

    def __init__(self, size=8):
        self.size = size
        self.entries = ()

    def shape(self, data):
        for header, shape in self.entries:
            if data.startswith(header):
                return shape
        return None

    def add(self, header, shape):
        self.entries = ((header, shape),) + self.entries[:self.size - 1]


CLEAN_HEADERS = CleanHeaders()


def simplejpeg_shape(data):
    """(height, width) of the JPEG `data` if simplejpeg may decode it: no APP1 before its first scan, a header
    simplejpeg reads, at most SIMPLEJPEG_MAX_PIXELS; else None (OpenCV decodes it)."""
    shape = CLEAN_HEADERS.shape(data)
    if shape is None:
        shape = read_clean_header(data)
    return shape if shape is not None and shape[0] * shape[1] <= SIMPLEJPEG_MAX_PIXELS else None


def read_clean_header(data):
    """simplejpeg_shape without CLEAN_HEADERS (but adding to it): the segments walked, the header read."""
    scan = scan_start(data)
    if scan is None:
        return None
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    header_end = scan + 2 + int.from_bytes(data[scan + 2:scan + 4], "big")
    if header_end <= len(data):
        CLEAN_HEADERS.add(data[:header_end], (height, width))
    return height, width


def scan_start(data):
    """Where the first scan's SOS marker (FF DA) is in the JPEG `data`; None if an APP1 segment (FF E1) comes
    before it, or headers this does not walk (not a JPEG): cv2.imdecode reads Exif's orientation in the first APP1."""
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        if data[i + 1] in (0xDA, 0xE1):  # start of scan, APP1
            return i if data[i + 1] == 0xDA else None
        i += 1 if data[i + 1] == 0xFF else 2 + int.from_bytes(data[i + 2:i + 4], "big")  # a fill byte, a segment
    return None


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


def jpeg_truncated(path):
    """True if the file is missing, empty or lacks the JPEG end-of-image marker (FF D9) near its end:
    what a write cut short leaves. Reads the last bytes only; a fully decoded check is decode_image.
    A few bytes after the marker are allowed (some encoders pad); entropy-coded data never holds
    FF D9, so the marker cannot appear there by chance."""
    try:
        with open(path, "rb", buffering=0) as file:
            file.seek(max(os.fstat(file.fileno()).st_size - JPEG_TAIL_BYTES, 0))
            return JPEG_END not in file.read()
    except OSError:
        return True


def quantize_flow(flow, bound=FLOW_BOUND):
    """float HxWx2 flow (pixels) -> two uint8 HxW images (u, v)."""
    scaled = (np.clip(flow, -bound, bound) + bound) * (FLOW_LEVELS / (2 * bound))
    q = np.round(scaled).astype(np.uint8)
    return q[..., 0], q[..., 1]


def flow_images(flows, bound=FLOW_BOUND):
    """quantize_flow of float32 flows [B, H, W, 2] in keras.ops, on the device that computed them ->
    uint8 [B, 2, H, W], each pair's u and v images contiguous for the JPEG encoder.

    The same float32 operations in the same order (clip, add, multiply by an exact 6.375), and
    ops.round rounds half to even as np.round does, so the images equal quantize_flow's bit for
    bit (tests/test_media.py) while a quarter of float32's bytes come back from the device."""
    from keras import ops
    scaled = (ops.clip(flows, -bound, bound) + bound) * (FLOW_LEVELS / (2 * bound))
    return ops.transpose(ops.cast(ops.round(scaled), "uint8"), (0, 3, 1, 2))


def write_flow(u_path, v_path, flow):
    """Store one flow field as the public download does: its u and v components quantised
    (quantize_flow) into two grayscale JPEGs at FLOW_JPEG_QUALITY."""
    write_flow_images(u_path, v_path, quantize_flow(flow))


def write_flow_images(u_path, v_path, images):
    """write_flow of flow already quantised: its (u, v) uint8 images (quantize_flow, flow_images)."""
    for path, image in zip((u_path, v_path), images):
        write_image(path, image, FLOW_JPEG_QUALITY)


def dequantize_flow(quantized, bound=FLOW_BOUND):
    """Flow images -> displacement in pixels (same shape): a uint8 numpy array gives float32; a float
    tensor of any Keras backend (custom_layers.FlowNormalization) gives the same arithmetic in its dtype."""
    if isinstance(quantized, np.ndarray):
        quantized = quantized.astype(np.float32)
    return quantized * (2 * bound / FLOW_LEVELS) - bound


def read_video(path, size=FRAME_SIZE, max_frames=None):
    """Decode a video with OpenCV -> list of RGB uint8 frames resized to `size` (w, h).

    Returns an empty list if OpenCV cannot open or decode the file.
    """
    return list(iter_video(path, size, max_frames))


def iter_video(path, size=FRAME_SIZE, max_frames=None, colour=cv2.COLOR_BGR2RGB, decoder_threads=0):
    """read_video one frame at a time, so a long video need not fit in memory. `colour`: the
    conversion from OpenCV's BGR (COLOR_BGR2GRAY: to_gray's grey frames, without the RGB pass).
    `decoder_threads`: FFmpeg's threads for this video (0: OpenCV's default, one per core); the
    frames are the same for any count."""
    capture = cv2.VideoCapture(path, cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, decoder_threads] if decoder_threads else [])
    count = 0
    try:
        while capture.isOpened() and (max_frames is None or count < max_frames):
            ok, frame = capture.read()
            if not ok:
                break
            if size and (frame.shape[1], frame.shape[0]) != tuple(size):
                frame = cv2.resize(frame, tuple(size), interpolation=cv2.INTER_AREA)
            count += 1
            yield cv2.cvtColor(frame, colour)
    finally:
        capture.release()


def video_frame_count(path):
    """The frame count the video's container states (0 if unknown or unreadable): an estimate that
    decoding may miss by a frame or two (see records.FRAME_COUNT_SLACK)."""
    capture = cv2.VideoCapture(path)
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    capture.release()
    return max(int(count), 0)


def video_fps(path):
    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return fps if fps and fps > 0 else 25.0


def flow_estimator(method="tvl1"):
    """A callable (gray0, gray1) -> float32 HxWx2 flow, by method name (one pair per call)."""
    if method == "tvl1":
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
        return lambda a, b: tvl1.calc(a, b, None)
    if method == "tvl1_keras":
        from twostream.video import tvl1  # Keras and its backend load only for this method
        return tvl1.estimate_flow
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return lambda a, b: dis.calc(a, b, None)
    if method == "farneback":
        return lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    raise ValueError(f"unknown flow method {method!r}; choose from {', '.join(FLOW_METHODS)}")


def estimate_flows(firsts, seconds, method="tvl1", batch_size=FLOW_BATCH):
    """Flow from firsts[i] to seconds[i] (grey uint8 HxW frames) -> float32 [N, H, W, 2].

    The batched methods compute batch_size pairs per call (stream_flows: only a short last batch is
    padded); other methods compute one pair at a time.
    """
    if method not in BATCHED_FLOW_METHODS:
        estimate = flow_estimator(method)
        return np.array([estimate(a, b) for a, b in zip(firsts, seconds)], np.float32)
    flows = [flow for _, batch in stream_flows(zip(range(len(firsts)), firsts, seconds), batch_size)
             for flow in batch]
    return np.array(flows) if flows else np.zeros(np.shape(firsts) + (2,), np.float32)


def stream_flows(pairs, batch_size=FLOW_BATCH, then=None):
    """tvl1_keras flow of a stream of (key, first, second) grey frames, batch_size pairs per call, from
    whatever videos the stream mixes -> (keys, float32 flows [len(keys), H, W, 2]) per batch, in order;
    with then=flow_images, (keys, uint8 images [len(keys), 2, H, W]) quantised on the device.

    Every call has batch_size pairs, so one compiled function serves the whole stream: only the
    stream's last batch is short, padded with copies of its last pair (a copy stops iterating when its
    original does, so the padding costs no extra iterations). The next batch is queued on the device
    before this one is read back (tvl1.start_flow), so the device never waits for the host's copy.
    """
    from keras import ops

    from twostream.video import tvl1
    pending = None
    for batch in batched(pairs, batch_size):
        keys, firsts, seconds = zip(*batch)
        padding = [len(keys) - 1] * (batch_size - len(keys))
        started = tvl1.start_flow(np.stack(firsts)[list(range(len(keys))) + padding],
                                  np.stack(seconds)[list(range(len(keys))) + padding], then=then)
        if pending:
            yield pending[0], ops.convert_to_numpy(pending[1])[:len(pending[0])]
        pending = keys, started
    if pending:
        yield pending[0], ops.convert_to_numpy(pending[1])[:len(pending[0])]


def batched(items, size):
    """Lists of `size` consecutive items of an iterable, the last maybe shorter (itertools.batched
    from Python 3.12)."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def iter_flow(frames, method="tvl1", batch_size=FLOW_BATCH):
    """Flow between consecutive RGB frames of an iterable (e.g. iter_video), one HxWx2 array at a
    time, in order, so a long video need not fit in memory; batch_size pairs per call if batched."""
    pairs = consecutive_pairs(frames)
    if method in BATCHED_FLOW_METHODS:
        for _, flows in stream_flows(pairs, batch_size):
            yield from flows
    else:
        estimate = flow_estimator(method)
        for _, first, second in pairs:
            yield estimate(first, second)


def to_gray(frame):
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def consecutive_pairs(frames, convert=to_gray):
    """(i, frame i, frame i + 1) in grey for consecutive RGB frames of an iterable, each converted once
    (convert=None: frames already grey)."""
    previous = None
    for i, frame in enumerate(frames):
        gray = convert(frame) if convert else frame
        if previous is not None:
            yield i - 1, previous, gray
        previous = gray


def video_pairs(path, size=FRAME_SIZE):
    """consecutive_pairs of a video's frames, decoded straight to grey (the same values) by one FFmpeg
    thread: for callers that decode several videos side by side, to whom FFmpeg's threads for each
    video add CPU time (a third more at 320x240 on 2 cores) and no speed."""
    return consecutive_pairs(iter_video(path, size, colour=cv2.COLOR_BGR2GRAY, decoder_threads=1), convert=None)


def compute_flow(frames, method="tvl1", pairs=None, batch_size=FLOW_BATCH):
    """Quantised flow between consecutive RGB frames -> {i: (u, v)} for flow image i (frames i, i+1).

    `pairs` limits the work to those indices (the demo needs only the sampled stacks). Fewer pairs
    than batch_size make one batch of just those pairs: no padding, but a compile for each new count.
    """
    indices = range(len(frames) - 1) if pairs is None else sorted(pairs)
    grays = {i: to_gray(frames[i]) for i in sorted({j for i in indices for j in (i, i + 1)})}
    flows = estimate_flows([grays[i] for i in indices], [grays[i + 1] for i in indices], method,
                           min(batch_size, max(len(indices), 1)))
    return {i: quantize_flow(flow) for i, flow in zip(indices, flows)}


def flow_info(method, size, bound=FLOW_BOUND):
    """What flow_info.json records: the method, the frame size (w, h) the flow was computed at, the
    quantisation bound, and the versions of what computed it."""
    info = {"method": method, "frame_size": list(size), "bound": bound, "jpeg_quality": FLOW_JPEG_QUALITY,
            "opencv": cv2.__version__}
    if method in BATCHED_FLOW_METHODS:
        import keras
        info.update(keras=keras.__version__, backend=keras.backend.backend())
    return info


def write_flow_info(flow_dir, info):
    """Write flow_info.json into the flow folder (beside u/ and v/), atomically."""
    os.makedirs(flow_dir, exist_ok=True)
    atomic.write_text(os.path.join(flow_dir, FLOW_INFO_FILE), json.dumps(info, indent=2) + "\n")


def read_flow_info(flow_dir):
    """flow_info.json of a flow folder as a dict (keys of flow_info), or None if there is none
    (e.g. the public tvl1_flow download, computed with OpenCV's TV-L1 at 340x256)."""
    path = os.path.join(flow_dir, FLOW_INFO_FILE)
    try:
        with open(path) as file:
            info = json.load(file)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: unreadable ({error}); delete it, or run prepare_data.py flow again "
                               "to rewrite it") from error
    if not isinstance(info, dict) or not {"method", "frame_size", "bound"} <= set(info):
        raise DataError(f"{path}: not a flow record (method, frame_size, bound); delete it, or run "
                               "prepare_data.py flow again to rewrite it")
    return info


def remove_if_exists(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------------------- OpenCV's threads

@contextlib.contextmanager
def opencv_threads(count):
    """OpenCV's own thread pool at `count` threads for a while. Where threads of ours already run
    OpenCV calls side by side (flow_pipeline.FlowPipeline), its pool adds only wake-ups and hand-offs
    to each resize and colour conversion: CPU time, not speed."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)

