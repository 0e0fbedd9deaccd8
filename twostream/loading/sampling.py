"""Which frames and crop windows a sample takes, before any pixel is read: the test protocol's uniformly spaced
starts and TSN's segments, the crop windows (training's random, corner and multi-scale ones; the paper's centre and
10 test crops), and a training sample's random numbers (SampleDraws, a row of the batch's table)."""
import numpy as np

from twostream.protocol.presets import CROPS, EVAL_CROPS

# TSN multi-scale cropping: crop sides of 1, .875, .75, .66 times the short side (256, 224,
# 192, 168 on 340x256 frames), height and width at most one scale apart, resized to S x S.
MULTISCALE_RATIOS = (1.0, 0.875, 0.75, 0.66)
MAX_SCALE_DISTORTION = 1
CROPS_PER_SAMPLE = {"center": 1, "10": 10}  # eval_windows' crops for each test crop mode (EVAL_CROPS)


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


def eval_windows_for(size, mode):
    """windows_for of the test protocol (see eval_windows): no lighting noise."""
    return lambda shape: [(window, flipped, None) for window, flipped in eval_windows(shape, size, mode)]


# ---------------------------------------------------------------------------- a training sample's draws

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
