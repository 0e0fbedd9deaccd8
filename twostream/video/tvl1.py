"""TV-L1 optical flow in keras.ops: OpenCV's DualTVL1, batched over frame pairs and compiled for the
device of whichever Keras backend runs it (JAX, TensorFlow; PyTorch runs it eagerly).

    flow = tvl1.estimate_flow(first, second)   # uint8 [B, H, W] grey frames -> float32 [B, H, W, 2]

The algorithm is the duality-based TV-L1 of Zach, Pock and Bischof (2007), step for step as OpenCV's
cv::optflow::DualTVL1OpticalFlow computes it (modules/optflow/src/tvl1flow.cpp), so that its flow can
stand in for OpenCV's in a dataset extracted with OpenCV:
- a pyramid of up to `scales` levels, each `scale_step` the size of the one below (cv::resize,
  bilinear), ending before a level narrower or shorter than 16 pixels. The coarsest level starts
  from zero flow; each finer one from the coarser flow resized (bilinear) and times 1 / scale_step.
- at each level, `warps` times: warp the second image and its centred gradient to the first with
  the current flow (cv::remap: bicubic, a = -0.75, coordinates rounded to 1/32 pixel, zero outside
  the image), then blocks of `inner_iterations` iterations of the thresholding step (lambda x theta),
  the flow update (u = v + theta div p) and the dual step with its projection (tau / theta), each
  block after a median filter of the flow, at most `outer_iterations` blocks.
- the iterations of a warp stop once the squared change of the flow, summed over the level, is at
  most epsilon^2 x the level's area. Each pair of a batch stops on its own (the loop runs while any
  pair still changes; pairs that have stopped keep their flow), so a batch gives every pair exactly
  the flow it would get alone.
OpenCV's gamma (illumination term) is 0 by default and not implemented.

On a GPU, XLA runs a while loop by copying its condition to the host after every trip (a device
sync). So the inner loop makes CHECK_EVERY masked iterations per trip: a pair that stops inside a
trip keeps its flow as it would alone, and the syncs are CHECK_EVERY times fewer. One compiled
program per image size and batch size: feed fixed batches (start_flow for several in flight).
"""
import functools
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

CHECK_EVERY = 5  # inner iterations per while-loop trip (one device sync each on a GPU; see above)
MIN_LEVEL_SIZE = 16  # OpenCV builds no pyramid level narrower or shorter than this
REMAP_STEPS = 32  # cv::remap rounds sampling coordinates to 1/32 pixel (INTER_TAB_SIZE)
CUBIC_A = -0.75  # OpenCV's bicubic kernel parameter


@dataclass(frozen=True)
class Settings:
    """DualTVL1's parameters; the defaults are OpenCV's."""
    tau: float = 0.25  # time step of the dual update
    lambda_: float = 0.15  # weight of the data term: smaller gives smoother flow
    theta: float = 0.3  # coupling of the flow u and its auxiliary variable v
    scales: int = 5
    warps: int = 5
    epsilon: float = 0.01  # stop when the root-mean-square change of the flow is at most this
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    median_size: int = 5  # odd median filter size; 1 for none

    def opencv(self):
        """OpenCV's DualTVL1 with these parameters: the reference this module reproduces."""
        import cv2
        return cv2.optflow.DualTVL1OpticalFlow_create(
            self.tau, self.lambda_, self.theta, self.scales, self.warps, self.epsilon, self.inner_iterations,
            self.outer_iterations, self.scale_step, 0.0, self.median_size, False)


OPENCV_DEFAULTS = Settings()


def estimate_flow(first, second, settings=OPENCV_DEFAULTS):
    """Flow from each image of `first` to the same image of `second`: float32 numpy [B, H, W, 2] (x, y).

    Takes grey images with values 0..255 (uint8 or float), [B, H, W] or a single [H, W] pair. The
    compiled function is cached per settings; each new image size or batch size compiles again.
    """
    first, second = np.asarray(first), np.asarray(second)
    single = first.ndim == 2
    if single:
        first, second = first[None], second[None]
    flow = ops.convert_to_numpy(start_flow(first, second, settings))
    return flow[0] if single else flow


def start_flow(first, second, settings=OPENCV_DEFAULTS, then=None):
    """estimate_flow of [B, H, W] batches, as a backend tensor: with JAX (asynchronous dispatch) it
    returns while the device still computes, so the caller can queue the next batch before it
    reads this one (ops.convert_to_numpy waits for it).

    uint8 images go to the device as they are and are cast there: a quarter of float32's bytes to
    copy. `then`, a keras.ops function of the flow, runs on the device in the same compiled program
    (media.flow_images quantises the flow there, so a quarter of the bytes come back too)."""
    first, second = (np.asarray(images) for images in (first, second))
    if first.dtype != np.uint8 or second.dtype != np.uint8:
        first, second = first.astype(np.float32), second.astype(np.float32)
    if first.shape != second.shape or first.ndim != 3:
        raise ValueError(f"expected two [B, H, W] or [H, W] grey images of one shape, got {first.shape} "
                         f"and {second.shape}")
    return compiled_tvl1(settings, then=then)(first, second)


@functools.cache
def compiled_tvl1(settings=OPENCV_DEFAULTS, check_every=CHECK_EVERY, then=None):
    """tvl1() for these settings, followed by `then` (if given), compiled (see compiled)."""
    def flow(first, second):
        result = tvl1(first, second, settings, check_every)
        return then(result) if then else result
    return compiled(flow)


def compiled(function):
    """`function` (of tensors, in keras.ops) compiled by the Keras backend's compiler.

    keras.ops has no jit of its own: this is the one place that names a backend. JAX and
    TensorFlow compile the whole pyramid, loops included, into one XLA program; PyTorch and NumPy
    run eagerly (torch.compile cannot trace data-dependent while loops without graph breaks).
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        return jax.jit(function)
    if backend == "tensorflow":
        import tensorflow as tf
        return tf.function(function, jit_compile=True)
    return function


# ---------------------------------------------------------------------------- the pyramid

def tvl1(first, second, settings=OPENCV_DEFAULTS, check_every=CHECK_EVERY):
    """TV-L1 flow [B, H, W, 2] from [B, H, W] images (0..255, uint8 or float), in keras.ops (traceable)."""
    first, second = ops.convert_to_tensor(first, "float32"), ops.convert_to_tensor(second, "float32")
    batch, height, width = first.shape
    sizes = pyramid_sizes(height, width, settings)
    firsts, seconds = [first], [second]
    for size in sizes[1:]:
        firsts.append(resize_bilinear(firsts[-1], size, 1 / settings.scale_step))
        seconds.append(resize_bilinear(seconds[-1], size, 1 / settings.scale_step))
    u1 = u2 = ops.zeros((batch,) + sizes[-1], "float32")
    for level in reversed(range(len(sizes))):
        if level < len(sizes) - 1:
            u1, u2 = (resize_bilinear(u, sizes[level]) * (1 / settings.scale_step) for u in (u1, u2))
        u1, u2 = solve_level(firsts[level], seconds[level], u1, u2, settings, check_every)
    return ops.stack([u1, u2], axis=-1)


def pyramid_sizes(height, width, settings=OPENCV_DEFAULTS):
    """[(h, w)] of the pyramid levels, finest first, as OpenCV sizes them (rounded to nearest)."""
    sizes = [(height, width)]
    while len(sizes) < settings.scales:
        size = tuple(round(n * settings.scale_step) for n in sizes[-1])
        if min(size) < MIN_LEVEL_SIZE:
            break
        sizes.append(size)
    return sizes


def linear_taps(source, target, scale):
    """cv::resize's bilinear taps along one axis: (lower index, upper index, upper weight) per output.

    Output i samples source position (i + 0.5) x scale - 0.5, clamped to the edge pixels.
    """
    position = ((np.arange(target) + 0.5) * scale - 0.5).astype(np.float32)
    lower = np.floor(position)
    weight = position - lower
    lower = lower.astype(np.int32)
    weight[(lower < 0) | (lower >= source - 1)] = 0
    lower = np.clip(lower, 0, source - 1)
    return lower, np.minimum(lower + 1, source - 1), weight


def resize_bilinear(images, size, scale=None):
    """[B, h, w] -> [B, *size] as cv2.resize(INTER_LINEAR): along rows first, then along columns.

    `scale` (source pixels per output pixel) defaults to the ratio of the sizes; cv2.resize with
    fx = fy = scale_step uses 1 / scale_step instead, which the pyramid passes.
    """
    for axis, target in ((2, size[1]), (1, size[0])):
        source = images.shape[axis]
        lower, upper, weight = linear_taps(source, target, scale or 1.0 / (target / source))
        shape = (1, -1, 1) if axis == 1 else (1, 1, -1)
        weight = ops.reshape(ops.convert_to_tensor(weight), shape)
        images = ops.take(images, lower, axis=axis) * (1 - weight) + ops.take(images, upper, axis=axis) * weight
    return images


# ---------------------------------------------------------------------------- one level

def solve_level(first, second, u1, u2, settings, check_every=CHECK_EVERY):
    """Refine the flow (u1, u2) [B, h, w] at one pyramid level: `warps` warps, each iterated."""
    gradient_x, gradient_y = centred_gradient(second)
    images = ops.stack([second, gradient_x, gradient_y], axis=-1)
    duals = tuple(ops.zeros_like(u1) for _ in range(4))  # p11, p12, p21, p22: reset at every level

    def warp_and_iterate(_, state):
        u1, u2, duals = state
        warped, warped_x, warped_y = ops.unstack(warp_bicubic(images, u1, u2), axis=-1)
        data = (warped_x, warped_y, ops.square(warped_x) + ops.square(warped_y),
                warped - warped_x * u1 - warped_y * u2 - first)
        return iterate(u1, u2, duals, data, settings, check_every)

    u1, u2, _ = ops.fori_loop(0, settings.warps, warp_and_iterate, (u1, u2, duals))
    return u1, u2


def iterate(u1, u2, duals, data, settings, check_every=CHECK_EVERY):
    """OpenCV's outer and inner iterations of one warp, each pair stopping on its own.

    `error` is each pair's last flow change (summed squares), infinite until the first iteration;
    a pair whose error is at most epsilon^2 x area is done: no more median filters or updates.
    The inner loop tests whether any pair still moves every `check_every` iterations; in between,
    each iteration updates only the pairs still moving, as the loop would one at a time.
    """
    height, width = u1.shape[1:]
    tolerance = settings.epsilon ** 2 * height * width
    error = ops.full((u1.shape[0],), np.inf, "float32")

    def moving(error):
        return ops.any(error > tolerance)

    def step(n, u1, u2, duals, error):
        moves = (error > tolerance) & (n < settings.inner_iterations)
        active = ops.reshape(moves, (-1, 1, 1))
        new_u1, new_u2, new_duals = primal_dual_step(u1, u2, duals, data, settings)
        new_error = ops.sum(ops.square(new_u1 - u1) + ops.square(new_u2 - u2), axis=(1, 2))

        def keep(new, old):
            return ops.where(active, new, old)

        return (n + 1, keep(new_u1, u1), keep(new_u2, u2), tuple(map(keep, new_duals, duals)),
                ops.where(moves, new_error, error))

    def inner(*state):
        for _ in range(check_every):  # unrolled: one loop trip, one condition
            state = step(*state)
        return state

    def outer(n, u1, u2, duals, error):
        if settings.median_size > 1:
            active = ops.reshape(error > tolerance, (-1, 1, 1))
            filtered = median_blur(ops.concatenate([u1, u2]), settings.median_size)
            u1 = ops.where(active, filtered[:u1.shape[0]], u1)
            u2 = ops.where(active, filtered[u1.shape[0]:], u2)
        _, u1, u2, duals, error = ops.while_loop(
            lambda n, u1, u2, duals, error: (n < settings.inner_iterations) & moving(error),
            inner, (0, u1, u2, duals, error))
        return n + 1, u1, u2, duals, error

    _, u1, u2, duals, _ = ops.while_loop(
        lambda n, u1, u2, duals, error: (n < settings.outer_iterations) & moving(error),
        outer, (0, u1, u2, duals, error))
    return u1, u2, duals


def primal_dual_step(u1, u2, duals, data, settings):
    """One iteration: thresholding step (v), flow update (u = v + theta div p), dual step on p."""
    warped_x, warped_y, gradient_norm, rho_constant = data
    lambda_theta = settings.lambda_ * settings.theta
    rho = rho_constant + (warped_x * u1 + warped_y * u2)  # the linearised residual I1(x + u) - I0(x)
    # v = u + d, the minimiser of the data term near u: a step of lambda_theta against the
    # gradient, or exactly onto rho = 0 where that is closer (OpenCV's estimateV).
    small = gradient_norm > np.finfo(np.float32).eps
    onto_zero = -rho / ops.where(small, gradient_norm, 1.0)
    step = ops.where(rho < -lambda_theta * gradient_norm, lambda_theta,
                     ops.where(rho > lambda_theta * gradient_norm, -lambda_theta,
                               ops.where(small, onto_zero, 0.0)))
    p11, p12, p21, p22 = duals
    u1 = u1 + step * warped_x + settings.theta * divergence(p11, p12)
    u2 = u2 + step * warped_y + settings.theta * divergence(p21, p22)
    tau_theta = settings.tau / settings.theta
    p11, p12 = dual_step(u1, p11, p12, tau_theta)
    p21, p22 = dual_step(u2, p21, p22, tau_theta)
    return u1, u2, (p11, p12, p21, p22)


def dual_step(u, p1, p2, tau_theta):
    """Gradient ascent on the dual variable of u's total variation, projected back (OpenCV's)."""
    ux, uy = forward_gradient(u)
    norm = 1.0 + tau_theta * ops.sqrt(ops.square(ux) + ops.square(uy))
    return (p1 + tau_theta * ux) / norm, (p2 + tau_theta * uy) / norm


# ---------------------------------------------------------------------------- finite differences

def centred_gradient(image):
    """Half the central difference in x and y; at the border half the one-sided one (OpenCV's)."""
    padded = ops.concatenate([image[:, :, :1], image, image[:, :, -1:]], axis=2)
    gradient_x = 0.5 * (padded[:, :, 2:] - padded[:, :, :-2])
    padded = ops.concatenate([image[:, :1], image, image[:, -1:]], axis=1)
    gradient_y = 0.5 * (padded[:, 2:] - padded[:, :-2])
    return gradient_x, gradient_y


def forward_gradient(u):
    """Forward differences in x and y, zero in the last column (x) and the last row (y)."""
    gradient_x = ops.concatenate([u[:, :, 1:] - u[:, :, :-1], ops.zeros_like(u[:, :, :1])], axis=2)
    gradient_y = ops.concatenate([u[:, 1:] - u[:, :-1], ops.zeros_like(u[:, :1])], axis=1)
    return gradient_x, gradient_y


def divergence(p1, p2):
    """Backward-difference divergence, p taken as zero left of and above the image (OpenCV's)."""
    left = ops.concatenate([ops.zeros_like(p1[:, :, :1]), p1[:, :, :-1]], axis=2)
    above = ops.concatenate([ops.zeros_like(p2[:, :1]), p2[:, :-1]], axis=1)
    return (p1 - left) + (p2 - above)


# ---------------------------------------------------------------------------- filters

def median_blur(images, size):
    """cv2.medianBlur of float [B, H, W] images: the median of each size x size window, edges replicated.

    A selection network of min/max operations rather than a sort: elementwise, it fuses into one
    pass over the image on every backend (XLA's sort on the CPU is a hundred times slower).
    """
    height, width = images.shape[1:]
    radius = size // 2
    padded = ops.concatenate([images[:, :1]] * radius + [images] + [images[:, -1:]] * radius, axis=1)
    padded = ops.concatenate([padded[:, :, :1]] * radius + [padded] + [padded[:, :, -1:]] * radius, axis=2)
    wires = [padded[:, i:i + height, j:j + width] for i in range(size) for j in range(size)]
    for low, high, need_min, need_max in median_network(size * size):
        wires[low], wires[high] = (ops.minimum(wires[low], wires[high]) if need_min else None,
                                   ops.maximum(wires[low], wires[high]) if need_max else None)
    return wires[size * size // 2]


@functools.cache
def median_network(count):
    """[(low wire, high wire, min needed, max needed)]: the compare-exchanges of Batcher's odd-even
    merge sort of `count` values that the middle output depends on, in order.

    Batcher's network for the next power of two, without the exchanges that touch wires past
    `count` (think of those as +inf: such an exchange changes nothing), then, walking backwards,
    without those whose outputs the middle wire never reads.
    """
    size = 1 << (count - 1).bit_length()
    exchanges = []
    block = 1
    while block < size:
        step = block
        while step >= 1:
            for start in range(step % block, size - step, 2 * step):
                for i in range(min(step, size - start - step)):
                    low, high = start + i, start + i + step
                    if low // (2 * block) == high // (2 * block) and high < count:
                        exchanges.append((low, high))
            step //= 2
        block *= 2
    needed, kept = {count // 2}, []
    for low, high in reversed(exchanges):
        if low in needed or high in needed:
            kept.append((low, high, low in needed, high in needed))
            needed |= {low, high}
    return kept[::-1]


def cubic_weights(t):
    """OpenCV's four bicubic weights (a = -0.75) for taps at -1, 0, 1, 2 around fraction t."""
    a = CUBIC_A
    w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
    return w0, w1, w2, 1 - w0 - w1 - w2


def warp_bicubic(images, u1, u2):
    """images [B, H, W, C] sampled at (x + u1, y + u2): cv2.remap(INTER_CUBIC, BORDER_CONSTANT 0).

    Like OpenCV, round the coordinates to 1/32 pixel and take taps outside the image as zero.
    Each pixel reads a 4 x 4 block: one gather per block row, of the four columns side by side.
    """
    batch, height, width, channels = images.shape
    x = ops.reshape(ops.arange(width, dtype="float32"), (1, 1, -1)) + u1
    y = ops.reshape(ops.arange(height, dtype="float32"), (1, -1, 1)) + u2
    x, y = (ops.round(c * REMAP_STEPS) for c in (x, y))
    x0, y0 = ops.floor(x / REMAP_STEPS), ops.floor(y / REMAP_STEPS)
    weights_x = cubic_weights((x - x0 * REMAP_STEPS) / REMAP_STEPS)
    weights_y = cubic_weights((y - y0 * REMAP_STEPS) / REMAP_STEPS)
    # Columns x0 - 1 .. x0 + 2 for x0 in -2 .. width, from the image with 3 zero columns each side;
    # further out all four taps are zero. Clip before the integer cast: flow may diverge.
    zeros = ops.zeros((batch, height, 3, channels), images.dtype)
    padded = ops.concatenate([zeros, images, zeros], axis=2)
    quads = ops.concatenate([padded[:, :, k:k + width + 3] for k in range(4)], axis=-1)
    columns_inside = (x0 >= -2) & (x0 <= width)
    column = ops.cast(ops.clip(x0, -2, width), "int32") + 2
    y0 = ops.cast(ops.clip(y0, -4, height + 4), "int32")
    quads = ops.reshape(quads, (-1, 4 * channels))
    first_quad = ops.reshape(ops.arange(batch, dtype="int32") * (height * (width + 3)), (-1, 1, 1))
    result = 0.0
    for i, weight_y in enumerate(weights_y):
        row = y0 + (i - 1)
        inside = columns_inside & (row >= 0) & (row < height)
        taps = ops.take(quads, first_quad + ops.clip(row, 0, height - 1) * (width + 3) + column, axis=0)
        # explicit slices, not a reshape to [..., 4, C] and a sum: XLA's CPU compiler in JAX 0.10
        # gets that one wrong (and slow)
        line = sum(taps[..., j * channels:(j + 1) * channels] * ops.expand_dims(weight_x, -1)
                   for j, weight_x in enumerate(weights_x))
        result = result + ops.expand_dims(ops.where(inside, weight_y, 0.0), -1) * line
    return result
