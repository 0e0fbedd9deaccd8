"""A sample's pixels, training and test alike, on one path:

    read (the frame, or the stack's u/v planes) -> fit the short side -> crop -> flip -> jitter -> assemble

each step a function below; load_sample runs the path for one start, one output per crop window, and
load_whole_sample stops after the fit (test samples whose crops the device cuts). eval_crops cuts the same test
crops from an image in memory (demo.py)."""
import cv2
import numpy as np

from twostream.datasets.frames import u_channels
from twostream.errors import DataError
from twostream.loading.sampling import eval_windows, sample_starts
from twostream.protocol.presets import TEST_SAMPLES
from twostream.video import media

# Krizhevsky et al. 2012's PCA lighting noise: ImageNet's RGB eigenvalues and eigenvectors (pixel
# values in 0..1; columns are the eigenvectors), and the standard deviation of the random weights.
IMAGENET_EIGENVALUES = np.array([0.2175, 0.0188, 0.0045])
IMAGENET_EIGENVECTORS = np.array([[-0.5675, 0.7192, 0.4009],
                                  [-0.5808, -0.0045, -0.8140],
                                  [-0.5836, -0.6948, 0.4203]])
LIGHTING_STD = 0.1


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


def pair_rows(stack):
    """An assembled flow stack's (u, v) byte pairs as uint16, one row of them per image row: a view (ValueError
    where it can't be one, rather than a copy that writes would miss)."""
    return np.reshape(stack.view(np.uint16), (stack.shape[0], -1), copy=False)


def invert_u(stack):
    """255 - u on every u plane of an assembled flow stack, in place: one XOR of its (u, v) byte pairs."""
    pairs = pair_rows(stack)
    np.bitwise_xor(pairs, U_BYTES, out=pairs)


def pairs_reversed(planes):
    """Flow planes u1, v1, ..., uL, vL as uL, vL, ..., u1, v1: what mirror_pairs puts back in order."""
    return [plane for k in range(len(planes) - 2, -1, -2) for plane in planes[k:k + 2]]


def mirror_pairs(stack):
    """Mirror an assembled flow stack left-right in place, reversing the order of its (u, v) pairs in each pixel
    too: one cv2.flip of its rows of pairs (uint16), vectorised, where a flip of whole 2L-byte pixels goes byte by
    byte."""
    rows = pair_rows(stack)
    cv2.flip(rows, 1, dst=rows)


def lighting_noise(rng, std=LIGHTING_STD):
    """Krizhevsky's PCA lighting noise for one image: an RGB offset (0..255 scale) along ImageNet's
    colour eigenvectors, weighted by eigenvalue x N(0, std)."""
    return 255.0 * IMAGENET_EIGENVECTORS @ (IMAGENET_EIGENVALUES * rng.normal(0.0, std, 3))


def assemble(planes, is_flow, out, lighting=None, flipped=False):
    """Write the sample into `out` (S x S x C uint8): BGR -> RGB plus the lighting offset, or the
    u/v planes interleaved; mirrored if `flipped`, the same pixels as flip on each plane: a frame by one cv2.flip of
    the whole array (a third of flip's cost), a flow stack merged with its pairs in reverse order then mirrored
    with its pairs put back (mirror_pairs; with the merge, 0.83 of the time of interleaving mirrored views with
    np.stack) and its u planes then 255 - u (invert_u)."""
    if is_flow:
        cv2.merge(pairs_reversed(planes) if flipped else planes, dst=out)
        if flipped:
            mirror_pairs(out)
            invert_u(out)
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


def load_or_fail(data_dir, video, stream, start, size, windows_for, out):
    bad_path = load_sample(data_dir, video, stream, start, size, windows_for, out)
    if bad_path is not None:
        raise unreadable(video, bad_path)


def unreadable(video, bad_path):
    return DataError(f"{video.name}: {bad_path} is missing or unreadable. Re-extract this "
                     f"video's frames/flow, or leave it out (twostream.datasets.frames.missing_data).")


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


def fitted_shape(data_dir, video, stream, size, samples=TEST_SAMPLES):
    """(H, W) of the video's test samples fitted to the short side (fit_short_side), from the first JPEG of its
    first sample (decoded in grey: the same size); DataError naming that file if it is missing or unreadable."""
    path = stream.paths(data_dir, video, sample_starts(stream.count(video), samples, stream.span)[0])[0]
    image = media.decode_image(path, grayscale=True)
    if image is None:
        raise unreadable(video, path)
    return fit_short_side(image, size).shape[:2]
