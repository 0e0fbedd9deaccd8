"""generators.py and twostream/loading/ on tiny datasets in the real layout (fakedata), 64x48 frames and 32x32 crops.

Where a test must know exactly which frame, crop and flip a sample came from, the frames are
overwritten with random noise (every crop then differs) and each sample is looked up among all
the crops the test itself computes from the same JPEGs, with its own crop and flip.
"""
import os
import re
import warnings

import cv2
import keras
import numpy as np
import pytest

import fakedata
import generators
from twostream.datasets import ucf101
from twostream.datasets.frames import Stream, as_stream, missing_data, stack_indices
from twostream.errors import DataError, WorkerDied
from twostream.loading import pixels
from twostream.loading.sampling import eval_windows, sample_starts
from twostream.storage.workers import MAX_NICENESS, WORKER_NICENESS
from twostream.video import media

SIZE = 32  # crop side
HEIGHT, WIDTH = 48, 64  # frame size
L = 4  # stack length
CORNERS = [(0, 0), (0, 32), (16, 0), (16, 32), (8, 16)]  # TL, TR, BL, BR, centre of a 32x32 crop
ANYWHERE = [(top, left) for top in range(HEIGHT - SIZE + 1) for left in range(WIDTH - SIZE + 1)]


def make_dataset(root, classes=("Alpha", "Beta", "Gamma"), groups=(1, 8), clips=1, frames=12, noise=False):
    splits = fakedata.write_dataset(str(root), classes=classes, groups=groups, clips=clips, frames=frames)
    train = ucf101.load_index(str(root), splits, 1, "train")
    test = ucf101.load_index(str(root), splits, 1, "test")
    if noise:
        write_noise(str(root), train + test)
    return str(root), train, test


def write_noise(root, videos):
    """Replace every frame and flow image with random noise (same files, same counts). Values
    stay within 64..192 so that the lighting offsets never clip."""
    rng = np.random.default_rng(123)

    def noise(*shape):
        return rng.integers(64, 193, shape, np.uint8)

    for video in videos:
        for j in range(video.frames):
            media.write_image(frame_path(root, video, j), noise(HEIGHT, WIDTH, 3))
        for j in range(video.flow_count):
            for c in "uv":
                media.write_image(flow_path(root, video, c, j), noise(HEIGHT, WIDTH))


def frame_path(root, video, j):
    return ucf101.frame_path(ucf101.rgb_dir(root, video.name), j)


def flow_path(root, video, component, j):
    return ucf101.frame_path(ucf101.flow_dir(root, component, video.flow_folder), j)


def read_frame(root, video, j):
    return media.read_image(frame_path(root, video, j))


def read_stack(root, video, start, length=L):
    """The H x W x 2L stack u1, v1, ..., uL, vL from flow image `start`, looping a short video."""
    indices = [(start + k) % video.flow_count for k in range(length)]
    return np.stack([cv2.imread(flow_path(root, video, c, j), cv2.IMREAD_GRAYSCALE) for j in indices for c in "uv"],
                    axis=-1)


def mirrored(crop, is_flow):
    """The test's own flip: mirror; for flow also u -> 255 - u on the even channels."""
    crop = crop[:, ::-1].copy()
    if is_flow:
        crop[..., 0::2] = 255 - crop[..., 0::2]
    return crop


def exact(sample):
    return np.ascontiguousarray(sample).tobytes()


def relative(sample):
    """The sample less its first pixel, channel by channel: the same for a crop and for that crop
    plus any one colour offset."""
    return (sample.astype(np.int16) - sample[0, 0]).tobytes()


def candidates(root, videos, stream, offsets=CORNERS, key=exact, multiscale=False):
    """key(every possible training sample) -> (video name, start, box, flip, the sample)."""
    is_flow = stream == "temporal"
    table = {}
    for video in videos:
        starts = range(video.frames) if not is_flow else range(max(video.flow_count - L + 1, 1))
        for start in starts:
            image = read_frame(root, video, start) if not is_flow else read_stack(root, video, start)
            for crop, box in (multiscale_crops(image) if multiscale else crops_at(image, offsets)):
                for flip in (False, True):
                    sample = mirrored(crop, is_flow) if flip else np.ascontiguousarray(crop)
                    table[key(sample)] = (video.name, start, box, flip, sample)
    return table


def crops_at(image, offsets):
    return [(image[top:top + SIZE, left:left + SIZE], (top, left)) for top, left in offsets]


def multiscale_crops(image):
    sides = [int(HEIGHT * r) for r in (1.0, 0.875, 0.75, 0.66)]  # TSN ratios of the short side
    crops = []
    for i, h in enumerate(sides):
        for j, w in enumerate(sides):
            if abs(i - j) <= 1:
                corners = [(0, 0), (0, WIDTH - w), (HEIGHT - h, 0), (HEIGHT - h, WIDTH - w),
                           ((HEIGHT - h) // 2, (WIDTH - w) // 2)]
                for top, left in corners:
                    resized = cv2.resize(image[top:top + h, left:left + w], (SIZE, SIZE),
                                         interpolation=cv2.INTER_LINEAR)
                    crops.append((resized.reshape(SIZE, SIZE, -1), (top, left, h, w)))
    return crops


def identify(batch_x, table, key=exact):
    """(video name, start, box, flip, candidate) of every sample of the batch."""
    found = [table.get(key(sample)) for sample in batch_x]
    assert None not in found, "a sample is not any crop (inside the image) of any frame/stack"
    return found


def epoch_batches(dataset):
    return [dataset[i] for i in range(len(dataset))]


def draws(dataset, epochs):
    """All batches of `epochs` epochs, moving the epoch on as fit() does."""
    batches = []
    for _ in range(epochs):
        batches += epoch_batches(dataset)
        dataset.on_epoch_end()
    return batches


def v_values(sample, length=L):
    """The flow images a fakedata stack came from: v = 100 + j, uniform."""
    return [int(np.median(sample[..., 2 * k + 1])) - 100 for k in range(length)]


# ---------------------------------------------------------------------------- pure helpers

def test_sample_positions_for_a_29_frame_video():
    frames = sample_starts(29, 25, 1)
    assert frames == [0, 1, 2, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 19, 20, 21, 22, 23, 24, 26, 27, 28]
    stacks = sample_starts(28, 25, 10)  # 29 frames -> 28 flow images
    assert stacks == [0, 1, 1, 2, 3, 4, 4, 5, 6, 7, 7, 8, 9, 10, 11, 11, 12, 13, 14, 14, 15, 16, 17, 17, 18]
    assert all(s + 10 <= 28 for s in stacks)
    assert sample_starts(5, 25, 10) == [0] * 25  # too short for one stack: it loops
    assert stack_indices(0, 10, 5) == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    assert stack_indices(18, 10, 28) == list(range(18, 28))


def test_stream_states_what_a_sample_reads():
    spatial, temporal = Stream("spatial"), Stream("temporal", stack_length=3)
    assert (spatial.is_flow, spatial.span, spatial.channels) == (False, 1, 3)
    assert (temporal.is_flow, temporal.span, temporal.channels) == (True, 3, 6)
    video = ucf101.Video("v_HandstandPushups_g08_c01", 0, frames=9, flow_count=2,
                         flow_name="v_HandStandPushups_g08_c01")
    assert (spatial.count(video), temporal.count(video)) == (9, 2)
    assert spatial.paths("d", video, 4) == [os.path.join("d", "jpegs_256", video.name, "frame000005.jpg")]

    def flow(c, j):
        return os.path.join("d", "tvl1_flow", c, "v_HandStandPushups_g08_c01", f"frame00000{j}.jpg")

    assert temporal.paths("d", video, 1) == [flow("u", 2), flow("v", 2), flow("u", 1), flow("v", 1),
                                             flow("u", 2), flow("v", 2)]  # u1 v1 u2 v2 ..., looping 2 images
    assert temporal.folders("d", video) == [os.path.dirname(flow(c, 1)) for c in "uv"]
    assert as_stream("temporal", 3) == temporal and as_stream(spatial) is spatial
    with pytest.raises(ValueError, match="rgb"):
        Stream("rgb")


def test_eval_windows_are_inside_the_image_and_in_the_papers_order():
    for height, width, size in [(256, 340, 224), (48, 64, 32), (224, 224, 224), (255, 341, 224), (33, 32, 32)]:
        windows = eval_windows((height, width), size, "10")
        assert len(windows) == 10 and [f for _, f in windows] == [False] * 5 + [True] * 5
        assert [w for w, _ in windows[:5]] == [w for w, _ in windows[5:]]
        for top, left, h, w in (w for w, _ in windows):
            assert (h, w) == (size, size) and 0 <= top <= height - size and 0 <= left <= width - size
    assert eval_windows((256, 340, 3), 224, "center") == [((16, 58, 224, 224), False)]
    boxes = [(top, left) for (top, left, _, _), _ in eval_windows((256, 340), 224, "10")[:5]]
    assert boxes == [(0, 0), (0, 116), (32, 0), (32, 116), (16, 58)]
    with pytest.raises(ValueError, match="corners"):
        eval_windows((256, 340), 224, "corners")  # a training mode, not a test one


def test_ten_crop_geometry_frames_and_flow():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), np.uint8)
    crops = pixels.eval_crops(image, SIZE, "10", is_flow=False)
    assert crops.shape == (10, SIZE, SIZE, 3) and crops.dtype == np.uint8
    for i, (top, left) in enumerate(CORNERS):
        np.testing.assert_array_equal(crops[i], image[top:top + SIZE, left:left + SIZE])
        np.testing.assert_array_equal(crops[5 + i], image[top:top + SIZE, left:left + SIZE][:, ::-1])
    np.testing.assert_array_equal(pixels.eval_crops(image, SIZE, "center", False), crops[4:5])

    stack = rng.integers(0, 256, (HEIGHT, WIDTH, 2 * L), np.uint8)
    flow_crops = pixels.eval_crops(stack, SIZE, "10", is_flow=True)
    assert flow_crops.shape == (10, SIZE, SIZE, 2 * L)
    for i, (top, left) in enumerate(CORNERS):
        crop = stack[top:top + SIZE, left:left + SIZE]
        np.testing.assert_array_equal(flow_crops[i], crop)
        np.testing.assert_array_equal(flow_crops[5 + i][..., 0::2], 255 - crop[:, ::-1, 0::2])
        np.testing.assert_array_equal(flow_crops[5 + i][..., 1::2], crop[:, ::-1, 1::2])


def test_short_images_are_resized_up_before_cropping():
    image = np.random.default_rng(1).integers(0, 256, (20, 30, 3), np.uint8)
    crop = pixels.eval_crops(image, 24, "center", is_flow=False)
    expected = cv2.resize(image, (36, 24), interpolation=cv2.INTER_LINEAR)[:, 6:30]
    np.testing.assert_array_equal(crop[0], expected)
    stack = image[..., :2].copy()  # one flow image: each plane is resized alone, values unscaled
    flow = pixels.eval_crops(stack, 24, "center", is_flow=True)
    for c in range(2):
        np.testing.assert_array_equal(flow[0, ..., c], expected[..., c])


def test_flip_mirrors_the_planes_and_inverts_u_only():
    planes = list(np.random.default_rng(2).integers(0, 256, (6, 3, 5), np.uint8))  # u1 v1 u2 v2 u3 v3
    flipped = pixels.flip(planes, is_flow=True)
    for k in range(6):
        mirror = planes[k][:, ::-1]
        np.testing.assert_array_equal(flipped[k], 255 - mirror if k % 2 == 0 else mirror)
    frame = np.random.default_rng(3).integers(0, 256, (3, 5, 3), np.uint8)
    np.testing.assert_array_equal(pixels.flip([frame], is_flow=False)[0], frame[:, ::-1])


@pytest.mark.parametrize("stack_length", [1, 2, 3, 10])
def test_an_assembled_mirrored_stack_has_the_pixels_of_flip_then_merge(stack_length):
    """assemble's mirrored flow (merged with its pairs reversed, then one flip of its pairs) against flip on each
    plane and a merge, for odd and even stack lengths and widths, crops that are views of larger planes."""
    rng = np.random.default_rng(stack_length)
    for height, width in [(4, 7), (9, 16), (32, 33)]:
        planes = [plane[1:, 2:] for plane in rng.integers(0, 256, (2 * stack_length, height + 1, width + 2), np.uint8)]
        out = np.empty((height, width, 2 * stack_length), np.uint8)
        pixels.assemble(planes, True, out, flipped=True)
        np.testing.assert_array_equal(out, cv2.merge(pixels.flip(planes, is_flow=True)).reshape(out.shape))
        pixels.assemble(planes, True, out)
        np.testing.assert_array_equal(out, np.stack(planes, axis=2))


# ---------------------------------------------------------------------------- training

def test_shapes_dtypes_and_batches_per_epoch(tmp_path):
    root, train, _ = make_dataset(tmp_path, groups=(8, 9))  # 6 training videos
    for stream, channels in [("spatial", 3), ("temporal", 2 * L)]:
        uniform = generators.TrainSequence(train, root, stream, batch_size=4, image_size=SIZE, stack_length=L, steps=3)
        assert len(uniform) == 3  # class-uniform: `steps` full batches
        for x, y in epoch_batches(uniform):
            assert x.shape == (4, SIZE, SIZE, channels) and x.dtype == np.uint8
            assert y.shape == (4,) and y.dtype == np.int32
        with pytest.raises(IndexError):
            uniform[3]
        passes = generators.TrainSequence(train, root, stream, batch_size=4, image_size=SIZE, stack_length=L,
                                          sampling="videos")
        assert len(passes) == 2  # a pass over 6 videos: 4 + 2
        assert [x.shape[0] for x, _ in epoch_batches(passes)] == [4, 2]
        multiscale = generators.TrainSequence(train, root, stream, batch_size=4, image_size=SIZE,
                                              stack_length=L, crop="multiscale")
        assert multiscale[0][0].shape == (4, SIZE, SIZE, channels)
    by_stream = generators.TrainSequence(train, root, Stream("temporal", L), batch_size=4, image_size=SIZE)
    by_name = generators.TrainSequence(train, root, "temporal", batch_size=4, image_size=SIZE, stack_length=L)
    np.testing.assert_array_equal(by_stream[1][0], by_name[1][0])
    with pytest.raises(ValueError, match="classes"):
        generators.TrainSequence(train, root, "spatial", sampling="frames")


def test_a_videos_epoch_visits_every_training_video_once(tmp_path):
    classes = tuple(f"Class{c}" for c in "ABCDEFG")  # one training video per class: y names it
    root, train, _ = make_dataset(tmp_path, classes=classes, frames=3)
    dataset = generators.TrainSequence(train, root, "spatial", batch_size=3, image_size=SIZE, sampling="videos")
    assert len(dataset) == 3
    orders = []
    for _ in range(3):
        labels = np.concatenate([y for _, y in epoch_batches(dataset)])
        assert sorted(labels) == list(range(7))
        orders.append(tuple(labels))
        dataset.on_epoch_end()
    assert len(set(orders)) > 1, "every epoch must be shuffled afresh"


def test_class_uniform_sampling_evens_out_classes_of_1_and_5_videos(tmp_path):
    root, train, _ = make_dataset(tmp_path, classes=("Alpha", "Beta"), groups=(8,), clips=5, frames=2, noise=True)
    train = [v for v in train if v.label == 1 or v.name.endswith("_c01")]  # Alpha's list keeps 1 video of 5
    assert [v.label for v in train] == [0, 1, 1, 1, 1, 1]
    table = candidates(root, train, "spatial")

    def video_counts(sampling, batches, **kwargs):
        dataset = generators.TrainSequence(train, root, "spatial", image_size=SIZE, crop="corners", lighting=0,
                                           sampling=sampling, **kwargs)
        counts = dict.fromkeys((v.name for v in train), 0)
        for x, y in draws(dataset, batches // len(dataset)):
            for (name, *_), label in zip(identify(x, table), y):
                assert ucf101.parse_name(name)[0] == ("Alpha", "Beta")[label]
                counts[name] += 1
        return [counts[v.name] for v in train]

    uniform = video_counts("classes", 20, batch_size=30, steps=20)  # 600 samples
    assert sum(uniform) == 600
    assert abs(uniform[0] - 300) < 45, f"class counts {uniform[0]} : {sum(uniform[1:])}, expected about 300 : 300"
    assert all(abs(n - 60) < 25 for n in uniform[1:]), f"Beta's videos drawn {uniform[1:]} times, expected about 60"
    passes = video_counts("videos", 20, batch_size=4)  # 10 epochs of 2 batches: each video once an epoch
    assert passes == [10] * 6  # classes 10 : 50, as their sizes


def test_same_seed_same_batches_and_resume(tmp_path):
    root, train, _ = make_dataset(tmp_path, groups=(8, 9))

    def make(seed):
        return generators.TrainSequence(train, root, "temporal", batch_size=4, image_size=SIZE,
                                        stack_length=L, seed=seed)

    first, second, other = make(0), make(0), make(1)
    epoch0 = epoch_batches(first)
    for (xa, ya), (xb, yb) in zip(epoch0, epoch_batches(second)):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert any(not np.array_equal(xa, xb) for (xa, _), (xb, _) in zip(epoch0, epoch_batches(other)))
    first.on_epoch_end()
    epoch1 = epoch_batches(first)
    assert any(not np.array_equal(xa, xb) for (xa, _), (xb, _) in zip(epoch0, epoch1))
    resumed = make(0)
    resumed.epoch = 1  # a run resumed at epoch 1 continues the same sequence
    for (xa, _), (xb, _) in zip(epoch1, epoch_batches(resumed)):
        np.testing.assert_array_equal(xa, xb)


def test_random_crops_reach_every_offset_and_only_those(tmp_path):
    root, train, _ = make_dataset(tmp_path, classes=("Alpha",), groups=(8,), frames=2, noise=True)
    table = candidates(root, train, "spatial", offsets=ANYWHERE)
    dataset = generators.TrainSequence(train, root, "spatial", batch_size=100, image_size=SIZE, steps=60, lighting=0)
    seen = [found[1:4] for x, _ in epoch_batches(dataset) for found in identify(x, table)]  # lighting 0: exact crops
    assert {box for _, box, _ in seen} == set(ANYWHERE), "some top-left offsets are never drawn"
    assert {(start, flip) for start, _, flip in seen} == {(s, f) for s in (0, 1) for f in (False, True)}


def test_corner_crops_reach_exactly_the_five_boxes_and_flips(tmp_path):
    root, train, _ = make_dataset(tmp_path, classes=("Alpha",), groups=(8,), frames=2, noise=True)
    table = candidates(root, train, "spatial", offsets=ANYWHERE)
    dataset = generators.TrainSequence(train, root, "spatial", batch_size=10, image_size=SIZE, steps=10,
                                       crop="corners", lighting=0)
    seen = {(box, flip) for x, _ in draws(dataset, 2) for _, _, box, flip, _ in identify(x, table)}
    assert seen == {(box, flip) for box in CORNERS for flip in (False, True)}


def test_lighting_adds_one_pca_colour_offset_per_spatial_sample(tmp_path):
    root, train, _ = make_dataset(tmp_path, classes=("Alpha",), groups=(8,), frames=2, noise=True)
    table = candidates(root, train, "spatial", offsets=ANYWHERE, key=relative)
    dataset = generators.TrainSequence(train, root, "spatial", batch_size=50, image_size=SIZE, steps=4)  # default
    offsets = []
    for x, _ in epoch_batches(dataset):
        for sample, (*_, crop) in zip(x, identify(x, table, key=relative)):
            offset = sample[0, 0].astype(int) - crop[0, 0]
            np.testing.assert_array_equal(sample.astype(int) - crop, np.broadcast_to(offset, sample.shape))
            offsets.append(offset)
    # The offset is 255 * eigenvectors @ (eigenvalues * N(0, 0.1)) made integer (rounded or truncated:
    # within 1 of it in each channel): its component along each eigenvector (RGB) is 255 * eigenvalue
    # * N(0, 0.1), give or take sqrt(3) for the rounding.
    components = np.array(offsets) @ pixels.IMAGENET_EIGENVECTORS
    std = 255 * pixels.IMAGENET_EIGENVALUES * 0.1  # 5.5, 0.48, 0.11 levels
    assert len({tuple(o) for o in offsets}) > 20, "one offset per sample, not one for all"
    assert 0.75 * std[0] < components[:, 0].std() < 1.25 * std[0]
    assert abs(components[:, 0].mean()) < np.sqrt(3) / 2 + 3 * std[0] / np.sqrt(len(offsets))
    assert np.all(np.abs(components[:, 1:]) < np.sqrt(3) + 4 * std[1:]), "offsets off the eigenvalue weighting"


def test_flow_training_samples_are_exact_crops_with_inverted_flips_and_no_lighting(tmp_path):
    root, train, _ = make_dataset(tmp_path, classes=("Alpha", "Beta"), groups=(8,), frames=L + 2, noise=True)
    table = candidates(root, train, "temporal", offsets=ANYWHERE)
    found = []
    for lighting in (None, 0.5):  # flow never gets lighting noise, even when asked for it
        dataset = generators.TrainSequence(train, root, "temporal", batch_size=20, image_size=SIZE, stack_length=L,
                                           steps=5, lighting=lighting)
        for x, y in epoch_batches(dataset):
            batch_draws = identify(x, table)
            assert [ucf101.parse_name(name)[0] for name, *_ in batch_draws] == [("Alpha", "Beta")[c] for c in y]
            found += batch_draws
    assert {flip for *_, flip, _ in found} == {False, True}
    assert {start for _, start, *_ in found} == {0, 1}
    assert len({box for _, _, box, _, _ in found}) > 50


def test_multiscale_crops_are_tsn_crops_resized(tmp_path):
    root, train, _ = make_dataset(tmp_path, groups=(8,), noise=True)
    table = candidates(root, train, "spatial", multiscale=True)
    dataset = generators.TrainSequence(train, root, "spatial", batch_size=10, image_size=SIZE, steps=3,
                                       crop="multiscale", lighting=0)
    sides = {box[2:] for x, _ in epoch_batches(dataset) for _, _, box, _, _ in identify(x, table)}
    assert len(sides) > 3 and any(h != w for h, w in sides)


def test_stack_channel_order_and_stacks_inside_or_looping(tmp_path):
    short = "v_Beta_g08_c01"
    root, train, _ = make_dataset(tmp_path, frames={short: 3}, groups=(1, 8))  # 3 frames: 2 flow images
    dataset = generators.TrainSequence(train, root, "temporal", batch_size=3, image_size=SIZE, stack_length=L)
    starts = set()
    for x, y in draws(dataset, 40):
        for sample, label in zip(x, y):
            v = v_values(sample)
            if label == 1:  # the short video loops over its 2 flow images
                assert v == [0, 1, 0, 1]
            else:  # u1,v1,u2,v2,...: consecutive flow images, inside the 11 of the video
                assert v == [v[0] + k for k in range(L)] and 0 <= v[0] and v[-1] <= 10
                starts.add(v[0])
            # u of flow image j is a ramp + j, so u channels step as v does (negated if flipped: 255 - u)
            du = [int(np.median(sample[..., 2 * k].astype(int) - sample[..., 0])) for k in range(L)]
            steps = [vk - v[0] for vk in v]
            assert du in (steps, [-d for d in steps])
    assert starts == set(range(11 - L + 1)), "every start that leaves room for L flow images is reachable"


def test_training_crops_larger_than_the_frames_resize_them_up(tmp_path):
    root, train, _ = make_dataset(tmp_path)  # 64x48 frames, 56-pixel crops
    for stream, channels in (("spatial", 3), ("temporal", 2 * L)):
        sequence = generators.TrainSequence(train, root, stream, batch_size=3, image_size=56, stack_length=L)
        x, _ = sequence[0]
        assert x.shape == (3, 56, 56, channels)
        assert sequence.missing_files == 0
        if stream == "temporal":  # flow values are not rescaled: v = 100 + j stays
            for sample in x:
                assert v_values(sample) == [v_values(sample)[0] + k for k in range(L)]


@pytest.mark.parametrize("processes", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["threads", "processes"])
def test_two_workers_give_the_same_batches_with_different_draws(tmp_path, processes):
    root, train, _ = make_dataset(tmp_path, groups=(8, 9, 10), noise=True)
    dataset = generators.TrainSequence(train, root, "spatial", batch_size=2, image_size=SIZE, steps=5, seed=7,
                                       workers=2, use_multiprocessing=processes)
    by_epoch = fit_batches(dataset, epochs=2)
    assert len(by_epoch) == 2 and dataset.epoch == max(by_epoch) + 1  # fit moved the epoch on after each
    samples_of = []
    for epoch, batches in by_epoch.items():
        dataset.epoch = epoch
        expected = epoch_batches(dataset)  # the same epoch computed in this process
        assert len(batches) == len(expected) == 5
        for (x, y), (ex, ey) in zip(batches, expected):
            np.testing.assert_array_equal(x, ex)
            np.testing.assert_array_equal(y, ey)
        samples = [exact(sample) for x, _ in batches for sample in x]
        assert len(set(samples)) == len(samples), "workers repeat the same draws"
        samples_of.append(samples)
    assert samples_of[0] != samples_of[1]


def fit_batches(dataset, epochs):
    """{epoch: [(x, y)]}: the batches model.fit trains on, by the dataset's epoch when each arrives.
    The model passes x to the loss, which records it with y (run eagerly)."""
    by_epoch = {}

    def record(y, x):
        by_epoch.setdefault(dataset.epoch, []).append((keras.ops.convert_to_numpy(x).astype(np.uint8),
                                                       keras.ops.convert_to_numpy(y)))
        return keras.ops.mean(x) * 0.0

    inputs = keras.Input(dataset[0][0].shape[1:], dtype="uint8")
    scale = keras.layers.Rescaling(1.0)  # no trainable weight: fit's optimizer then has nothing to update
    model = keras.Model(inputs, scale(inputs))
    model.compile(loss=record, run_eagerly=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The model does not have any trainable weights")
        model.fit(dataset, epochs=epochs, shuffle=False, verbose=0)
    return by_epoch


@pytest.mark.slow  # spawned processes import Keras: a minute on 2 busy cores
def test_worker_processes_give_the_temporal_batches_of_one_process_for_each_shard(tmp_path):
    """The loader's samples are equal with processes and in one process, for a seed; a copy of the
    sequence with another shard (spatial_train's calibration) uses the same processes."""
    import copy
    root, train, _ = make_dataset(tmp_path, groups=(8, 9), noise=True)

    def make(**k):
        return generators.TrainSequence(train, root, "temporal", image_size=SIZE, stack_length=L, steps=2,
                                        seed=3, shard=(1, 2), **{"batch_size": 20, **k})

    processes, alone = make(workers=2, use_multiprocessing=True), make()
    whole = copy.copy(processes)
    whole.shard = (0, 1)
    for index in (0, 1):
        for x, y in zip(processes[index], alone[index]):
            np.testing.assert_array_equal(x, y)
        assert len(whole[index][1]) == 20
    assert processes.processes == 2 and whole.process_loader() is processes.process_loader()
    ours = os.getpriority(os.PRIO_PROCESS, 0)  # the workers yield to the training process
    assert [os.getpriority(os.PRIO_PROCESS, p.pid) for p in processes.process_loader().processes] == \
        [min(ours + WORKER_NICENESS, MAX_NICENESS)] * 2
    passes = make(workers=2, use_multiprocessing=True, sampling="videos", batch_size=4)  # 6 videos: 4, then 2
    alone = make(sampling="videos", batch_size=4)
    for index in (0, 1):
        for x, y in zip(passes[index], alone[index]):
            np.testing.assert_array_equal(x, y)
    assert len(passes[1][1]) == 1  # shard 1 of the last batch's 2 samples


@pytest.mark.slow
def test_worker_processes_raise_the_data_error_and_a_killed_worker(tmp_path):
    import signal
    root, train, _ = make_dataset(tmp_path, frames=4)
    dataset = generators.TrainSequence(train, root, "spatial", batch_size=4, image_size=SIZE, steps=3,
                                       workers=2, use_multiprocessing=True)
    assert dataset[0][0].shape == (4, SIZE, SIZE, 3)
    for video in train:  # every frame gone: each draw fails, MAX_TRIES in a row -> DataError in a worker
        for j in range(video.frames):
            os.remove(frame_path(root, video, j))
    with pytest.raises(DataError, match="re-extract"):  # (the workers warn on their own stderr)
        dataset[1]
    for process in dataset.process_loader().processes:
        os.kill(process.pid, signal.SIGKILL)
    with pytest.raises(WorkerDied, match=r"data loading process [12] of 2 \(pid \d+\) was killed by SIGKILL \(exit"):
        dataset[2]


# A training process's data loading, in a script of its own: its worker processes started, then `{}`.
TRAINER = """
import os, signal, sys, time
import fakedata, generators
from twostream.datasets import ucf101
if __name__ == "__main__":
    splits = fakedata.write_dataset(sys.argv[1], frames=14)
    videos = ucf101.load_index(sys.argv[1], splits, 1, "train")
    dataset = generators.TrainSequence(videos, sys.argv[1], "temporal", batch_size=16, image_size=32, workers=2,
                                       use_multiprocessing=True)
    dataset[0]
    loader = dataset.process_loader()
{}"""
KILLED_TRAINER = TRAINER.format("""
    print(" ".join(b.name for b in loader.blocks), "|", " ".join(str(p.pid) for p in loader.processes), flush=True)
    time.sleep(600)
""")


def trainer_command(tmp_path, script, *args):
    """(argv, env) running `script` with the project's modules and the tests' fakedata importable."""
    import sys
    (tmp_path / "trainer.py").write_text(script)
    tests = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(tests), tests])}
    return [sys.executable, str(tmp_path / "trainer.py"), str(tmp_path / "data"), *args], env


@pytest.mark.slow
def test_worker_processes_and_their_shared_memory_go_when_the_trainer_is_killed(tmp_path):
    import signal
    import subprocess
    import time
    argv, env = trainer_command(tmp_path, KILLED_TRAINER)
    trainer = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    names, pids = (part.split() for part in trainer.stdout.readline().split("|"))
    assert all(os.path.exists(f"/dev/shm/{name}") for name in names)
    trainer.send_signal(signal.SIGKILL)
    trainer.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in pids):
        time.sleep(0.5)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in pids), "worker processes outlived the trainer"
    while time.monotonic() < deadline and any(os.path.exists(f"/dev/shm/{name}") for name in names):
        time.sleep(0.5)
    assert not any(os.path.exists(f"/dev/shm/{name}") for name in names), "shared memory left behind"


EXITING_TRAINER = TRAINER.format("""
    for process in loader.processes:
        os.kill(process.pid, signal.SIGKILL)
        process.join()
    if sys.argv[2] == "lock":  # as a worker killed inside results.put leaves the queue's write lock
        loader.results._wlock.acquire(False)  # (taken already when a worker was killed inside a put)
    else:  # tasks that no worker will read: more than a pipe holds
        for _ in range(20000):
            loader.tasks.put((0, 0, 0, (0, 1), 0, 16))
    print("exiting", flush=True)
""")


@pytest.mark.slow
@pytest.mark.parametrize("left_by_the_dead_workers", ["lock", "full pipe"])
def test_the_trainer_exits_after_its_worker_processes_were_killed(tmp_path, left_by_the_dead_workers):
    """A worker killed (out of memory, or by hand) may hold a queue's lock or leave tasks unread; the
    training process must still exit (its error shown), not hang at exit waiting on the queues."""
    import select
    import subprocess
    argv, env = trainer_command(tmp_path, EXITING_TRAINER, left_by_the_dead_workers.split()[0])
    with open(tmp_path / "stderr", "w+") as stderr:
        trainer = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        try:
            # Start-up (Keras, the workers) may take long on busy cores: the time limit is for the exit alone.
            ready, _, _ = select.select([trainer.stdout], [], [], 300)
            assert ready and trainer.stdout.readline() == "exiting\n", "the trainer did not get to its exit"
            trainer.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("the training process hung at exit")
        finally:
            trainer.kill()
            trainer.wait()
        stderr.seek(0)
        assert trainer.returncode == 0, stderr.read()[-3000:]


# A training process as the scripts run one (errors.run around training.fit, on the default Keras backend) with 2
# worker processes. After 3 steps it prints "training <the workers' pids>" on stderr and waits for the file named by
# its second argument before it trains on; meanwhile Keras's queue of batches fills and the workers idle.
FITTING_TRAINER = """
import os, sys, time
import keras
import fakedata, generators
from twostream import errors
from twostream.train import training
from twostream.datasets import ucf101


class Started(keras.callbacks.Callback):
    def __init__(self, dataset, go):
        super().__init__()
        self.dataset, self.go, self.said = dataset, go, False

    def on_train_batch_end(self, batch, logs=None):
        if batch == 2 and not self.said:
            self.said = True
            print("training", *(p.pid for p in self.dataset.process_loader().processes), file=sys.stderr, flush=True)
            while not os.path.exists(self.go):
                time.sleep(0.05)


def main(argv):
    splits = fakedata.write_dataset(argv[0], frames=6)
    videos = ucf101.load_index(argv[0], splits, 1, "train")
    dataset = generators.TrainSequence(videos, argv[0], "temporal", batch_size=4, image_size=32, stack_length=2,
                                       steps=20, workers=2, use_multiprocessing=True)
    model = keras.Sequential([keras.Input((32, 32, 4)), keras.layers.Rescaling(1 / 255),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    training.fit(model, dataset, None, 100000, [Started(dataset, argv[1])])


if __name__ == "__main__":
    sys.exit(errors.run(main, sys.argv[1:]))
"""


def start_training(tmp_path):
    """FITTING_TRAINER in a session of its own, as a terminal's job (stdout and stderr to files), once it trains:
    (the process, its workers' pids)."""
    import subprocess
    import time
    argv, env = trainer_command(tmp_path, FITTING_TRAINER, str(tmp_path / "go"))
    with open(tmp_path / "stdout", "w") as stdout, open(tmp_path / "stderr", "w") as stderr:
        trainer = subprocess.Popen(argv, stdout=stdout, stderr=stderr, env=env, start_new_session=True)
    deadline = time.monotonic() + 300  # start-up (TensorFlow, the workers' Keras) may take long on busy cores
    while time.monotonic() < deadline and trainer.poll() is None:
        said = [line.split() for line in (tmp_path / "stderr").read_text().splitlines() if line.startswith("training ")]
        if said:
            return trainer, [int(pid) for pid in said[0][1:]]
        time.sleep(0.1)
    trainer.kill()
    pytest.fail(f"the trainer did not start training: {(tmp_path / 'stderr').read_text()[-3000:]}")


def trainer_end(trainer, tmp_path, limit):
    """(exit code, seconds since the trainer was told to go on, its stderr); its job is killed after `limit` s."""
    import signal
    import subprocess
    import time
    start = time.monotonic()
    (tmp_path / "go").touch()
    try:
        trainer.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(trainer.pid, signal.SIGKILL)
        trainer.wait()
    return trainer.returncode, time.monotonic() - start, (tmp_path / "stderr").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("name, code, said", [("SIGINT", 130, "Ctrl-C"), ("SIGTERM", 143, "SIGTERM")])
def test_ctrl_c_to_the_whole_job_stops_training_with_one_message_and_no_traceback(tmp_path, name, code, said):
    """A terminal's Ctrl-C sends SIGINT to every process of the job, worker processes included (a scheduler may
    send SIGTERM so): the workers leave the stopping to the training process, which prints errors.run's message."""
    import signal
    import threading
    trainer, _ = start_training(tmp_path)
    threading.Timer(0.5, os.killpg, (trainer.pid, getattr(signal, name))).start()  # while it trains on
    returncode, _, stderr = trainer_end(trainer, tmp_path, 60)
    assert returncode == code, stderr[-3000:]
    assert "Traceback" not in stderr and stderr.count("interrupted") == 1, stderr[-3000:]
    assert f"interrupted ({said})" in stderr


@pytest.mark.slow
@pytest.mark.parametrize("killed", [1, 2], ids=["one worker of two", "both workers"])
def test_a_killed_worker_process_stops_training_at_once_with_the_one_line_error(tmp_path, killed):
    """Any worker process killed (out of memory, or by hand) stops the run, the others alive or not: errors.run's
    one line names the process and its exit code, first and alone (no traceback of the backend's)."""
    import signal
    trainer, pids = start_training(tmp_path)
    for pid in pids[:killed]:
        os.kill(pid, signal.SIGKILL)
    returncode, seconds, stderr = trainer_end(trainer, tmp_path, 30)
    assert returncode == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = stderr.splitlines()
    after = [line for line in lines[[line.startswith("training ") for line in lines].index(True) + 1:] if line.strip()]
    named = re.match(r"error: data loading process (\d) of 2 \(pid (\d+)\) was killed by SIGKILL \(exit code -9",
                     after[0])
    assert named and int(named[2]) == pids[int(named[1]) - 1] and int(named[2]) in pids[:killed], after[:5]
    assert sum("data loading process" in line for line in stderr.splitlines()) == 1, stderr[-3000:]
    assert seconds < 10, f"the run stopped {seconds:.1f} s after training went on"


def test_the_thread_that_fits_is_asked_to_raise_until_it_leaves(monkeypatch):
    """ProcessLoader.stop_owner: the thread that fits raises the worker's WorkerDied (same type, same message) at its
    next instruction. It is asked again each ASK_AGAIN seconds while batches are asked for (C code that calls Python,
    as numpy's, may catch and drop it), but not while it handles one (on its way out) nor once the loader stops."""
    import threading
    import time

    from twostream.loading import processes
    loader = processes.ProcessLoader.__new__(processes.ProcessLoader)  # its stopping part alone
    loader.state, loader.asked_at = {"lock": threading.Lock(), "stop": threading.Event()}, None
    asked, raise_in_thread = [], processes.raise_in_thread

    def first_one_dropped(ident, error):
        asked.append(ident)
        return len(asked) == 1 or raise_in_thread(ident, error)

    monkeypatch.setattr(processes, "raise_in_thread", first_one_dropped)
    monkeypatch.setattr(processes, "ASK_AGAIN", 0.2)
    caught, leave = [], threading.Event()

    def fit():
        try:
            while True:
                time.sleep(0.01)
        except WorkerDied as error:
            caught.append(error)
            leave.wait(10)  # errors.run's message

    owner = threading.Thread(target=fit, daemon=True)
    owner.start()
    died = WorkerDied("data loading process 2 of 2 (pid 7) was killed by SIGKILL (exit code -9)")
    assert loader.stop_owner(died, owner.ident) and loader.stop_owner(died, owner.ident)  # load here meanwhile
    assert len(asked) == 1  # (not asked again at once)
    time.sleep(0.3)
    assert loader.stop_owner(died, owner.ident) and len(asked) == 2
    for _ in range(500):
        if caught:
            break
        time.sleep(0.01)
    assert caught and isinstance(caught[0], WorkerDied) and str(caught[0]) == str(died)
    time.sleep(0.3)
    assert loader.stop_owner(died, owner.ident) and len(asked) == 2  # it handles one: not asked again
    leave.set()
    owner.join(5)
    loader.state["stop"].set()
    assert loader.stop_owner(died, owner.ident) and len(asked) == 2  # the loader stops (at exit): never


class RecordingSequence(generators.TrainSequence):
    def __getitem__(self, index):
        self.calls.append((self.epoch, index))
        return super().__getitem__(index)


@pytest.mark.parametrize("workers", [1, 2])
def test_fit_moves_the_draws_on_every_epoch(tmp_path, workers):
    root, train, _ = make_dataset(tmp_path, groups=(8, 9))
    dataset = RecordingSequence(train, root, "spatial", batch_size=4, image_size=SIZE, steps=2, workers=workers)
    dataset.calls = []
    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(dataset, epochs=3, verbose=0)
    assert dataset.epoch == 4  # fit calls on_epoch_end once before its first epoch, too
    for epoch in (1, 2, 3):  # every batch of every epoch drawn once, with that epoch's numbers
        assert sorted(i for e, i in dataset.calls if e == epoch) == [0, 1]
    assert all(e < 4 for e, _ in dataset.calls)  # (epoch 0: the batches TF looks at before fit)


def test_missing_and_unreadable_jpegs_are_survived_and_counted(tmp_path, capsys):
    root, train, _ = make_dataset(tmp_path, frames=4, noise=True)
    video = train[0]
    table = candidates(root, train, "spatial")
    os.remove(frame_path(root, video, 1))
    with open(frame_path(root, video, 2), "wb") as f:
        f.write(b"not a jpeg")
    open(frame_path(root, video, 3), "wb").close()  # empty file
    dataset = generators.TrainSequence(train, root, "spatial", batch_size=3, image_size=SIZE, steps=2,
                                       crop="corners", lighting=0)
    with pytest.warns(UserWarning, match=video.name) as warned:
        for x, _ in draws(dataset, 10):
            for name, start, *_ in identify(x, table):
                assert name != video.name or start == 0  # the only readable frame
    assert dataset.missing_files >= 3
    named = [str(w.message).split(":")[0] for w in warned if video.name in str(w.message)]
    assert len(named) == len(set(named)) == 3  # each bad file warned about once
    assert "missing or unreadable" in capsys.readouterr().out

    # all frames of a video gone: its samples come from other videos, the epoch completes
    for j in (0, 2, 3):
        os.remove(frame_path(root, video, j))
    with pytest.warns(UserWarning):
        labels = np.concatenate([y for _, y in epoch_batches(dataset)])
    assert len(labels) == 6 and video.label not in labels


def test_missing_flow_frame_is_survived(tmp_path):
    root, train, _ = make_dataset(tmp_path, groups=(8,))
    os.remove(flow_path(root, train[0], "u", 5))
    dataset = generators.TrainSequence(train, root, "temporal", batch_size=3, image_size=SIZE, stack_length=L)
    with pytest.warns(UserWarning, match="frame000006.jpg"):
        for x, y in draws(dataset, 6):
            for sample, label in zip(x, y):
                assert label != train[0].label or 5 not in v_values(sample)
    assert dataset.missing_files > 0


# ---------------------------------------------------------------------------- test time

def test_eval_sequence_positions_for_a_29_frame_video(tmp_path):
    root, _, test = make_dataset(tmp_path, classes=("Alpha",), frames=29)
    video = test[0]
    x, index = generators.EvalSequence(test, root, "spatial", image_size=SIZE)[0]
    assert x.shape == (25, SIZE, SIZE, 3) and list(index) == [0] * 25
    for sample, start in zip(x, sample_starts(29, 25, 1)):
        np.testing.assert_array_equal(sample, read_frame(root, video, start)[8:40, 16:48])
    x, _ = generators.EvalSequence(test, root, "temporal", image_size=SIZE, stack_length=10)[0]
    assert x.shape == (25, SIZE, SIZE, 20)
    for sample, start in zip(x, sample_starts(28, 25, 10)):
        assert v_values(sample, 10) == [start + k for k in range(10)]


def test_eval_sequence_batches_ten_crops_and_video_index(tmp_path):
    root, _, test = make_dataset(tmp_path, noise=True)  # 3 test videos
    sequence = generators.EvalSequence(test, root, "temporal", samples=5, crops="10", image_size=SIZE,
                                       stack_length=L, videos_per_batch=2)
    assert len(sequence) == 2
    x, index = sequence[0]
    assert x.shape == (2 * 5 * 10, SIZE, SIZE, 2 * L) and index.dtype == np.int32
    assert list(index) == [0] * 50 + [1] * 50
    video = test[1]
    for s, start in enumerate(sample_starts(video.flow_count, 5, L)):
        stack = read_stack(root, video, start)
        for c, (top, left) in enumerate(CORNERS):
            crop = stack[top:top + SIZE, left:left + SIZE]
            np.testing.assert_array_equal(x[50 + s * 10 + c], crop)
            np.testing.assert_array_equal(x[50 + s * 10 + 5 + c], mirrored(crop, is_flow=True))
    x, index = sequence[1]
    assert x.shape[0] == 50 and set(index) == {2}


@pytest.mark.parametrize("stream", ["spatial", "temporal"])
def test_eval_sequence_crops_equal_eval_crops_of_the_same_images(tmp_path, stream):
    root, _, test = make_dataset(tmp_path, classes=("Alpha",), noise=True)
    video, is_flow = test[0], stream == "temporal"
    span, count = (L, video.flow_count) if is_flow else (1, video.frames)
    for size in (SIZE, 56):  # 56: the frames are resized up first
        x, _ = generators.EvalSequence(test, root, stream, samples=3, crops="10", image_size=size, stack_length=L)[0]
        for s, start in enumerate(sample_starts(count, 3, span)):
            image = read_stack(root, video, start) if is_flow else read_frame(root, video, start)
            np.testing.assert_array_equal(x[10 * s:10 * s + 10], pixels.eval_crops(image, size, "10", is_flow))


def test_short_test_video_loops(tmp_path):
    root, _, test = make_dataset(tmp_path, classes=("Alpha",), frames=6)  # 5 flow images
    x, _ = generators.EvalSequence(test, root, "temporal", samples=3, image_size=SIZE, stack_length=10)[0]
    for sample in x:
        assert v_values(sample, 10) == [k % 5 for k in range(10)]


def test_missing_test_data_raises_data_error_naming_the_video(tmp_path):
    root, _, test = make_dataset(tmp_path)
    gone, damaged = test[0].name, test[1].name
    os.rename(ucf101.flow_dir(root, "u", gone), str(tmp_path / "moved"))
    os.remove(flow_path(root, test[1], "v", 7))
    splits = os.path.join(root, "splits")
    reindexed = ucf101.load_index(root, splits, 1, "test")
    assert missing_data(reindexed, root, "temporal") == [gone, damaged]
    assert missing_data(reindexed, root, "spatial") == []
    with pytest.raises(DataError, match=gone):
        generators.EvalSequence(reindexed, root, "temporal")
    with pytest.raises(DataError, match=damaged):
        generators.EvalSequence(test[1:], root, "temporal")  # counts from before the deletion
    with pytest.raises(DataError, match=gone):
        generators.validation_data(reindexed, root, "temporal", image_size=SIZE, stack_length=L)
    generators.EvalSequence(reindexed, root, "spatial", image_size=SIZE)  # the frames are all there
    with open(frame_path(root, test[2], 6), "wb") as f:
        f.write(b"not a jpeg")
    with pytest.raises(DataError, match=test[2].name):
        generators.EvalSequence(test[2:], root, "spatial", samples=1, image_size=SIZE)[0]


def test_validation_data_is_the_centre_sample_centre_crop(tmp_path):
    root, _, test = make_dataset(tmp_path, noise=True)
    x, y = generators.validation_data(test, root, "spatial", image_size=SIZE)
    assert x.shape == (3, SIZE, SIZE, 3) and x.dtype == np.uint8 and list(y) == [0, 1, 2] and y.dtype == np.int32
    np.testing.assert_array_equal(x[1], read_frame(root, test[1], 6)[8:40, 16:48])
    x, _ = generators.validation_data(test, root, "temporal", image_size=SIZE, stack_length=L)
    assert x.shape == (3, SIZE, SIZE, 2 * L)
    np.testing.assert_array_equal(x[2], read_stack(root, test[2], (11 - L + 1) // 2)[8:40, 16:48])


def test_flow_folders_spelt_otherwise_than_the_frame_folders_are_read(tmp_path):
    """UCF-101's lists and flow say v_HandStandPushups_*, its jpegs_256 v_HandstandPushups_*."""
    root, _, _ = make_dataset(tmp_path, classes=("Alpha", "HandstandPushups"))
    splits = os.path.join(root, "splits")
    for group in (1, 8):
        name = f"v_HandstandPushups_g{group:02d}_c01"
        for c in "uv":
            os.rename(ucf101.flow_dir(root, c, name), ucf101.flow_dir(root, c, name.replace("Handstand", "HandStand")))
    for file in ("trainlist01.txt", "testlist01.txt"):
        path = os.path.join(splits, file)
        with open(path) as f:
            text = f.read()
        ucf101.write_lines(path, ucf101.parse_lines(text.replace("/v_Handstand", "/v_HandStand")))
    train = ucf101.load_index(root, splits, 1, "train")
    test = ucf101.load_index(root, splits, 1, "test")
    video = train[1]
    assert (video.name, video.flow_folder) == ("v_HandstandPushups_g08_c01", "v_HandStandPushups_g08_c01")
    assert (video.frames, video.flow_count, test[1].flow_count) == (12, 11, 11)
    assert missing_data(train + test, root, "temporal") == []

    x, y = generators.TrainSequence(train, root, "temporal", batch_size=8, image_size=SIZE, stack_length=L)[0]
    assert 1 in y
    for sample in x:
        assert v_values(sample) == [v_values(sample)[0] + k for k in range(L)]
    x, index = generators.EvalSequence(test, root, "temporal", samples=2, image_size=SIZE, stack_length=L)[1]
    assert list(index) == [1, 1]
    assert [v_values(sample) for sample in x] == [[start + k for k in range(L)] for start in (2, 6)]
    x, _ = generators.validation_data(test, root, "temporal", image_size=SIZE, stack_length=L)
    assert v_values(x[1]) == [4, 5, 6, 7]


# ---------------------------------------------------------------------------- same pixels as before (issue 26)
# sha256 of the batches (x and y) of two epochs of both streams, random crops, flips and (spatial) lighting, as the
# loader gave them before its draws were computed once per batch, its batches lent from shared memory and its flow
# stacks flipped whole: a change of any pixel shows here.
BATCH_DIGESTS = {"spatial": "b6c38dd98e1712383b25ad441f7ed76930d73a0d13654ff837e805299a4675b8",
                 "temporal": "c0349fc6d5689e011a55b85070a898b8e21979560519808d462065fa1aa84b83",
                 "spatial multiscale": "1f3851fee5dcc2ce969a490bd96e681961aa61b1f7479b1f45e8650ad33d0bdc"}


def digest_dataset(root, train, key, **keywords):
    stream, *crop = key.split()
    return generators.TrainSequence(train, root, stream, batch_size=6, image_size=SIZE, stack_length=L, steps=3,
                                    seed=11, crop=crop[0] if crop else "random", **keywords)


def batches_digest(batches):
    import hashlib
    digest = hashlib.sha256()
    for x, y in batches:
        digest.update(np.ascontiguousarray(x).tobytes())
        digest.update(np.ascontiguousarray(y).tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("key", list(BATCH_DIGESTS))
def test_batches_keep_their_pixels_in_one_process(tmp_path, key):
    root, train, _ = make_dataset(tmp_path, groups=(8, 9), noise=True)
    assert batches_digest(draws(digest_dataset(root, train, key), epochs=2)) == BATCH_DIGESTS[key]


@pytest.mark.slow  # spawned processes import Keras
def test_worker_processes_keep_the_pixels_and_never_overwrite_a_batch_still_held(tmp_path):
    """Iterated as fit() iterates, with few batches in Keras's queue, every batch is kept to the end: each must
    still hold what it held on arrival, and all of them the pixels of BATCH_DIGESTS."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter
    root, train, _ = make_dataset(tmp_path, groups=(8, 9), noise=True)
    for key in ("spatial", "temporal"):
        dataset = digest_dataset(root, train, key, workers=2, use_multiprocessing=True, max_queue_size=1)
        adapter = PyDatasetAdapter(dataset, shuffle=False)
        held, on_arrival = [], []
        for _ in range(2):
            adapter.on_epoch_begin()
            for batch in adapter.get_numpy_iterator():
                held.append(batch)
                on_arrival.append(batches_digest([batch]))
            adapter.on_epoch_end()
        assert [batches_digest([batch]) for batch in held] == on_arrival
        assert batches_digest(held) == BATCH_DIGESTS[key]
        assert any(x.base is not None for x, _ in held), "no batch was lent from shared memory"
        loader = dataset.process_loader()
        held.clear()  # the blocks come back, and are reused: the same epochs keep their pixels
        dataset.epoch, recent, again = 0, [], []
        for _ in range(2):
            adapter.on_epoch_begin()
            for batch in adapter.get_numpy_iterator():
                recent = (recent + [(batch, batches_digest([batch]))])[-2:]
                again.append(recent[-1][1])
                assert all(batches_digest([b]) == digest for b, digest in recent)
            adapter.on_epoch_end()
        assert again == on_arrival and len(loader.blocks) <= 2 + loader.lendable
