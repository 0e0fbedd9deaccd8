"""tvl1.py against OpenCV's DualTVL1: each building block, then the flow on natural photos and on
the mini dataset's frames, at 96x72 (one compiled shape for the whole file: batches of 4)."""

import cv2
import numpy as np
import pytest
from keras import ops
from sklearn.datasets import load_sample_image

from twostream.datasets import synthetic
from twostream.video import media, tvl1

pytestmark = pytest.mark.xdist_group("test_tvl1")  # one worker builds its module fixtures and compiles

SIZE = (96, 72)  # (width, height): five pyramid levels, as at 340x256
rng = np.random.default_rng(0)
# The whole flow at five pyramid levels, on the backend the README recommends for tvl1_keras (CI runs this
# file on JAX too); TensorFlow compiles it for minutes, and runs the building blocks and one level here.


def numpy(x):
    return ops.convert_to_numpy(x)


@pytest.fixture(params=["eager", "compiled"])
def call(request):
    """call(function, *arrays) -> numpy: eagerly, or compiled as the flow is (compilers have bugs:
    JAX 0.10's XLA got an earlier form of warp_bicubic wrong only when compiled)."""
    if request.param == "eager":
        return lambda function, *arrays: numpy(function(*arrays))
    return lambda function, *arrays: numpy(tvl1.compiled(function)(*arrays))


def photo(name, size=SIZE):
    """A grey crop of one of scikit-learn's sample photos (a temple, a flower), textured all over."""
    image = cv2.cvtColor(load_sample_image(name), cv2.COLOR_RGB2GRAY)
    return cv2.resize(image[60:444, 80:590], size, interpolation=cv2.INTER_AREA)


def moved(image, angle=0.0, scale=1.0, shift=(0.0, 0.0)):
    """The image rotated (degrees) and scaled about its centre, then shifted (x, y) pixels."""
    height, width = image.shape
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
    matrix[:, 2] += shift
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def mini_dataset_pair(label):
    """Frames 1 and 2 of a mini dataset clip, grey at SIZE as prepare_data extracts them."""
    frames = synthetic.render(synthetic.make_clip(0, label, 1, 1))[:2]
    return [cv2.resize(media.to_gray(frame), SIZE, interpolation=cv2.INTER_AREA) for frame in frames]


@pytest.fixture(scope="module")
def photo_pairs():
    china, flower = photo("china.jpg"), photo("flower.jpg")
    return [(china, moved(china, shift=(1.6, -0.7))), (china, moved(china, 1.5, 1.03, (0.8, 0.5))),
            (flower, moved(flower, shift=(-1.3, 0.9))), (flower, moved(flower, -2.0, 0.98, (0.4, 0.6)))]


def opencv_flow(pairs, settings=tvl1.OPENCV_DEFAULTS):
    # a fresh instance per pair: OpenCV's keeps a reduced level count after a small image
    return np.array([settings.opencv().calc(a, b, None) for a, b in pairs])


def keras_flow(pairs, settings=tvl1.OPENCV_DEFAULTS):
    first, second = (np.array(images) for images in zip(*pairs))
    return tvl1.estimate_flow(first, second, settings)


def end_point_error(flow, reference):
    return np.sqrt(np.sum(np.square(flow - reference), axis=-1))


def share_within(flow, reference, levels=2):
    """Share of pixels whose quantised flow JPEG values (both components) differ by at most `levels`."""
    ours, theirs = (np.stack(media.quantize_flow(f)).astype(int) for f in (flow, reference))
    return np.mean(np.abs(ours - theirs) <= levels)


# ---------------------------------------------------------------------------- building blocks

def test_pyramid_levels_are_sized_as_opencv_sizes_them():
    assert tvl1.pyramid_sizes(256, 340) == [(256, 340), (205, 272), (164, 218), (131, 174), (105, 139)]
    assert tvl1.pyramid_sizes(72, 96) == [(72, 96), (58, 77), (46, 62), (37, 50), (30, 40)]
    assert tvl1.pyramid_sizes(30, 200) == [(30, 200), (24, 160), (19, 128)]  # next would be 15 rows


@pytest.mark.parametrize("shape", [(72, 96), (17, 23)])
def test_resize_matches_cv2_resize_down_and_up(shape, call):
    image = rng.uniform(0, 255, shape).astype(np.float32)
    smaller = cv2.resize(image, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
    ours = call(lambda x: tvl1.resize_bilinear(x, smaller.shape, 1 / 0.8), image[None])[0]
    np.testing.assert_allclose(ours, smaller, atol=1e-3)
    larger = cv2.resize(smaller, shape[::-1], interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(call(lambda x: tvl1.resize_bilinear(x, shape), smaller[None])[0], larger, atol=1e-2)


@pytest.mark.parametrize("size", [3, 5])
def test_median_blur_equals_cv2_median_blur_borders_included(size, call):
    images = rng.normal(size=(2, 23, 31)).astype(np.float32)
    images[1, :, :8] = 1.0  # ties
    ours = call(lambda x: tvl1.median_blur(x, size), images)
    for image, result in zip(images, ours):
        np.testing.assert_array_equal(result, cv2.medianBlur(image, size))


@pytest.mark.parametrize("shape", [(2, 30, 40), (1, 128, 170)])  # JAX 0.10 miscompiled a former version at 128x170
def test_bicubic_warp_equals_cv2_remap_inside_and_outside_the_image(shape, call):
    batch, height, width = shape
    images = rng.uniform(0, 255, shape + (3,)).astype(np.float32)
    u1, u2 = (rng.uniform(-6, 6, shape).astype(np.float32) for _ in range(2))
    u1[0, :4], u2[-1, -4:] = 1e7, -3.5  # far outside; partly outside
    ours = call(tvl1.warp_bicubic, images, u1, u2)
    x, y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    for b in range(batch):
        for c in range(3):
            reference = cv2.remap(images[b, ..., c], x + u1[b], y + u2[b], cv2.INTER_CUBIC)
            np.testing.assert_allclose(ours[b, ..., c], reference, atol=1e-3)


def test_finite_differences_use_opencvs_border_rules():
    image = np.array([[0, 1, 4, 9], [1, 3, 7, 13], [5, 5, 5, 5]], np.float32)[None]
    dx, dy = (numpy(d)[0] for d in tvl1.centred_gradient(image))
    assert dx[0].tolist() == [0.5, 2.0, 4.0, 2.5]  # half the one-sided difference at the ends
    assert dy[:, 0].tolist() == [0.5, 2.5, 2.0]
    fx, fy = (numpy(d)[0] for d in tvl1.forward_gradient(image))
    assert fx[:, -1].tolist() == [0, 0, 0] and fy[-1].tolist() == [0, 0, 0, 0]
    # divergence is minus the adjoint of the forward gradient, <grad u, p> = -<u, div p>, for the p
    # that the dual steps make (p1 zero in the last column, p2 in the last row, as grad u there)
    u, p1, p2 = rng.normal(size=(3, 1, 6, 7)).astype(np.float32)
    p1[..., -1], p2[:, -1] = 0, 0
    ux, uy = (numpy(d) for d in tvl1.forward_gradient(u))
    assert np.sum(ux * p1 + uy * p2) == pytest.approx(-np.sum(u * numpy(tvl1.divergence(p1, p2))), rel=1e-4)


# ---------------------------------------------------------------------------- the flow

@pytest.mark.slow
@pytest.mark.whole_tvl1
def test_flow_matches_opencv_on_natural_photos(photo_pairs):
    ours, reference = keras_flow(photo_pairs), opencv_flow(photo_pairs)
    assert ours.shape == (4, 72, 96, 2) and ours.dtype == np.float32
    for flow, expected in zip(ours, reference):
        assert end_point_error(flow, expected).mean() < 0.1  # measured 0.005-0.03
        assert share_within(flow, expected) > 0.98  # measured 99.7-100%


@pytest.mark.slow
@pytest.mark.whole_tvl1
def test_flow_matches_opencv_on_the_mini_dataset():
    pairs = [mini_dataset_pair(label) for label in (0, 1, 2, 3)]  # Blue: Expand, Rotate, Saddle, Translate
    ours, reference = keras_flow(pairs), opencv_flow(pairs)
    assert np.abs(reference).max() > 0.5  # there is motion to get right
    for flow, expected in zip(ours, reference):
        assert end_point_error(flow, expected).mean() < 0.1  # measured 0.001-0.016
        assert share_within(flow, expected) > 0.98


@pytest.mark.slow
@pytest.mark.whole_tvl1
def test_a_known_translation_is_found(photo_pairs):
    flow = keras_flow(photo_pairs)
    for index, shift in ((0, (1.6, -0.7)), (2, (-1.3, 0.9))):
        interior = flow[index, 8:-8, 8:-8]
        np.testing.assert_allclose(np.median(interior, axis=(0, 1)), shift, atol=0.05)


@pytest.mark.slow
@pytest.mark.whole_tvl1
def test_each_pair_of_a_batch_stops_on_its_own(photo_pairs):
    """A pair's flow must not depend on the pairs beside it (they stop iterating at other times)."""
    alone = keras_flow([photo_pairs[1]] * 4)[0]
    mixed = keras_flow(photo_pairs)[1]
    np.testing.assert_allclose(mixed, alone, atol=1e-5)


def test_images_of_different_shapes_are_refused(photo_pairs):
    first, second = photo_pairs[2]
    with pytest.raises(ValueError, match="one shape"):
        tvl1.estimate_flow(first, second[:-1])


@pytest.mark.slow
def test_testing_convergence_every_few_iterations_gives_the_same_flow(photo_pairs):
    """CHECK_EVERY iterations per loop trip (fewer device syncs): pairs that stop inside a trip, or
    reach inner_iterations (7, not a multiple of 5) there, keep exactly the flow of one check per
    iteration. One level, a quick compile."""
    settings = tvl1.Settings(scales=1, warps=2, inner_iterations=7, outer_iterations=3, epsilon=0.05)
    first, second = (np.array(images, np.float32)[:, :24, :32] for images in zip(*photo_pairs))
    flows = [numpy(tvl1.compiled(lambda a, b: tvl1.tvl1(a, b, settings, check_every))(first, second))
             for check_every in (1, 5)]
    np.testing.assert_array_equal(flows[1], flows[0])


@pytest.mark.slow
def test_uint8_frames_in_and_flow_images_out_equal_the_host_path():
    """prepare_data's pipeline path (uint8 frames cast on the device, flow quantised there by
    media.flow_images) against the path it replaced (float32 frames from the host, float flow back,
    media.quantize_flow on the host): the same JPEG values bit for bit. Textures moved a few pixels,
    one pyramid level: a quick compile on either backend."""
    settings = tvl1.Settings(scales=1, warps=2, inner_iterations=10, outer_iterations=2)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (40, 56), np.uint8), (0, 0), 1.2)
    shifts = [(1, 0), (-2, 1), (3, -2), (0, 0)]
    first = np.stack([texture] * len(shifts))
    second = np.stack([np.roll(texture, (dy, dx), axis=(0, 1)) for dx, dy in shifts])
    images = numpy(tvl1.start_flow(first, second, settings, then=media.flow_images))
    flows = numpy(tvl1.start_flow(first.astype(np.float32), second.astype(np.float32), settings))
    assert images.dtype == np.uint8 and np.ptp(images) > 20  # flow of a few pixels: many grey levels
    for pair_images, flow in zip(images, flows):
        assert all(np.array_equal(a, b) for a, b in zip(pair_images, media.quantize_flow(flow)))
