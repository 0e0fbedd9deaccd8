"""generators.py on tiny datasets in the real layout (fakedata), 64x48 frames and 32x32 crops.

Where a test must know exactly which frame, crop and flip a sample came from, the frames are
overwritten with random noise (every crop then differs) and each sample is looked up among all
the crops the test itself computes from the same JPEGs.
"""
import os

import cv2
import keras
import numpy as np
import pytest
from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

import fakedata
import generators
import media
import ucf101

SIZE = 32  # crop side; frames are 64x48
L = 4  # stack length


def make_dataset(root, classes=("Alpha", "Beta", "Gamma"), groups=(1, 8), frames=12, noise=False):
    splits = fakedata.write_dataset(str(root), classes=classes, groups=groups, frames=frames)
    train = ucf101.load_index(str(root), splits, 1, "train")
    test = ucf101.load_index(str(root), splits, 1, "test")
    if noise:
        write_noise(str(root), train + test)
    return str(root), train, test


def write_noise(root, videos):
    """Replace every frame and flow image with random noise (same files, same counts)."""
    rng = np.random.default_rng(123)
    for video in videos:
        for j in range(video.frames):
            media.write_image(generators.rgb_path(root, video.name, j), rng.integers(0, 256, (48, 64, 3), np.uint8))
        for path in generators.flow_paths(root, video.name, range(video.flows)):
            media.write_image(path, rng.integers(0, 256, (48, 64), np.uint8))


def read_stack(root, video, indices):
    planes = [cv2.imread(p, cv2.IMREAD_GRAYSCALE) for p in generators.flow_paths(root, video.name, indices)]
    return np.stack(planes, axis=-1)


BOXES = [(0, 0), (0, 32), (16, 0), (16, 32), (8, 16)]  # 48x64 frame, 32x32 crops: TL, TR, BL, BR, centre


def mirrored(crop, is_flow):
    """The test's own flip: mirror; for flow also u -> 255 - u on the even channels."""
    crop = crop[:, ::-1].copy()
    if is_flow:
        crop[..., 0::2] = 255 - crop[..., 0::2]
    return crop


def candidates(root, videos, stream, multiscale=False):
    """bytes of every possible training sample -> (video name, start, box, flip)."""
    table = {}
    for video in videos:
        is_flow = stream == "temporal"
        starts = range(video.frames) if not is_flow else range(max(video.flows - L + 1, 1))
        for start in starts:
            image = (media.read_image(generators.rgb_path(root, video.name, start)) if not is_flow else
                     read_stack(root, video, generators.stack_indices(start, L, video.flows)))
            for crop, box in crops_of(image, multiscale):
                for flip in (False, True):
                    sample = mirrored(crop, is_flow) if flip else crop
                    table[np.ascontiguousarray(sample).tobytes()] = (video.name, start, box, flip)
    return table


def crops_of(image, multiscale):
    if not multiscale:
        return [(image[t:t + SIZE, l:l + SIZE], (t, l)) for t, l in BOXES]
    sides = [int(48 * r) for r in (1.0, 0.875, 0.75, 0.66)]  # TSN ratios of the short side
    crops = []
    for i, h in enumerate(sides):
        for j, w in enumerate(sides):
            if abs(i - j) <= 1:
                for t, l in [(0, 0), (0, 64 - w), (48 - h, 0), (48 - h, 64 - w), ((48 - h) // 2, (64 - w) // 2)]:
                    resized = cv2.resize(image[t:t + h, l:l + w], (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
                    crops.append((resized.reshape(SIZE, SIZE, -1), (t, l, h, w)))
    return crops


def identify(batch_x, table):
    found = [table.get(np.ascontiguousarray(sample).tobytes()) for sample in batch_x]
    assert None not in found, "a sample is not any crop (inside the image) of any frame/stack"
    return found


def epoch_batches(dataset):
    return [dataset[i] for i in range(len(dataset))]


# ---------------------------------------------------------------------------- pure helpers

def test_sample_positions_for_a_29_frame_video():
    frames = generators.sample_starts(29, 25, 1)
    assert frames == [0, 1, 2, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 19, 20, 21, 22, 23, 24, 26, 27, 28]
    stacks = generators.sample_starts(28, 25, 10)  # 29 frames -> 28 flow images
    assert stacks == [0, 1, 1, 2, 3, 4, 4, 5, 6, 7, 7, 8, 9, 10, 11, 11, 12, 13, 14, 14, 15, 16, 17, 17, 18]
    assert all(s + 10 <= 28 for s in stacks)
    assert generators.sample_starts(5, 25, 10) == [0] * 25  # too short for one stack: it loops
    assert generators.stack_indices(0, 10, 5) == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    assert generators.stack_indices(18, 10, 28) == list(range(18, 28))


def test_crop_boxes_inside_the_image():
    for height, width, size in [(256, 340, 224), (48, 64, 32), (224, 224, 224), (255, 341, 224), (33, 32, 32)]:
        boxes = generators.crop_boxes(height, width, size, "10")
        assert len(set(boxes)) == len(boxes) or height == size or width == size
        for top, left in boxes:
            assert 0 <= top <= height - size and 0 <= left <= width - size
    assert generators.crop_boxes(256, 340, 224, "center") == [(16, 58)]
    assert generators.crop_boxes(256, 340, 224, "10") == [(0, 0), (0, 116), (32, 0), (32, 116), (16, 58)]


def test_ten_crop_geometry_frames_and_flow():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 64, 3), np.uint8)
    crops = generators.test_crops(image, SIZE, "10", is_flow=False)
    assert crops.shape == (10, SIZE, SIZE, 3) and crops.dtype == np.uint8
    for i, (t, l) in enumerate(BOXES):
        np.testing.assert_array_equal(crops[i], image[t:t + SIZE, l:l + SIZE])
        np.testing.assert_array_equal(crops[5 + i], image[t:t + SIZE, l:l + SIZE][:, ::-1])
    np.testing.assert_array_equal(generators.test_crops(image, SIZE, "center", False), crops[4:5])

    stack = rng.integers(0, 256, (48, 64, 2 * L), np.uint8)
    flow_crops = generators.test_crops(stack, SIZE, "10", is_flow=True)
    for i, (t, l) in enumerate(BOXES):
        crop = stack[t:t + SIZE, l:l + SIZE]
        np.testing.assert_array_equal(flow_crops[i], crop)
        np.testing.assert_array_equal(flow_crops[5 + i][..., 0::2], 255 - crop[:, ::-1, 0::2])
        np.testing.assert_array_equal(flow_crops[5 + i][..., 1::2], crop[:, ::-1, 1::2])


def test_short_images_are_resized_up_before_cropping():
    image = np.random.default_rng(1).integers(0, 256, (20, 30, 3), np.uint8)
    crop = generators.test_crops(image, 24, "center", is_flow=False)
    expected = cv2.resize(image, (36, 24), interpolation=cv2.INTER_LINEAR)[:, 6:30]
    np.testing.assert_array_equal(crop[0], expected)


def test_training_crops_larger_than_the_frames_resize_them_up(tmp_path):
    root, train, _ = make_dataset(tmp_path)  # 64x48 frames, 56-pixel crops
    for stream, channels in (("spatial", 3), ("temporal", 2 * L)):
        sequence = generators.TrainSequence(train, root, stream, batch_size=3, image_size=56, stack_length=L)
        x, _ = sequence[0]
        assert x.shape == (3, 56, 56, channels)
        assert sequence.missing_files == 0


def test_flip_flow_inverts_u_and_mirrors_both():
    stack = np.random.default_rng(2).integers(0, 256, (3, 5, 6), np.uint8)
    flipped = generators.flip_flow(stack)
    for y in range(3):
        for x in range(5):
            for k in range(3):
                assert flipped[y, x, 2 * k] == 255 - stack[y, 4 - x, 2 * k]
                assert flipped[y, x, 2 * k + 1] == stack[y, 4 - x, 2 * k + 1]


# ---------------------------------------------------------------------------- training

def test_shapes_dtypes_and_last_partial_batch(tmp_path):
    root, train, _ = make_dataset(tmp_path, groups=(8, 9))  # 6 training videos
    for stream, channels in [("spatial", 3), ("temporal", 2 * L)]:
        dataset = generators.TrainSequence(train, root, stream, batch_size=4, image_size=SIZE, stack_length=L)
        assert len(dataset) == 2
        (x0, y0), (x1, y1) = epoch_batches(dataset)
        assert x0.shape == (4, SIZE, SIZE, channels) and x1.shape == (2, SIZE, SIZE, channels)
        assert x0.dtype == np.uint8 and y0.dtype == np.int32 and y1.shape == (2,)
        with pytest.raises(IndexError):
            dataset[2]
        multiscale = generators.TrainSequence(train, root, stream, batch_size=4, image_size=SIZE,
                                              stack_length=L, multiscale=True)
        assert multiscale[0][0].shape == (4, SIZE, SIZE, channels)


def test_an_epoch_visits_every_training_video_once(tmp_path):
    classes = tuple(f"Class{c}" for c in "ABCDEFG")  # one training video per class: y names it
    root, train, _ = make_dataset(tmp_path, classes=classes, frames=3)
    dataset = generators.TrainSequence(train, root, "spatial", batch_size=3, image_size=SIZE)
    assert len(dataset) == 3
    orders = []
    for _ in range(3):
        labels = np.concatenate([y for _, y in epoch_batches(dataset)])
        assert sorted(labels) == list(range(7))
        orders.append(tuple(labels))
        dataset.on_epoch_end()
    assert len(set(orders)) > 1, "every epoch must be shuffled afresh"


def test_same_seed_same_batches_and_resume(tmp_path):
    root, train, _ = make_dataset(tmp_path, groups=(8, 9))
    make = lambda seed: generators.TrainSequence(train, root, "temporal", batch_size=4, image_size=SIZE,
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


def test_every_crop_position_and_flip_is_reachable_and_exact(tmp_path):
    root, train, _ = make_dataset(tmp_path, groups=(8, 9, 10), noise=True)
    table = candidates(root, train, "spatial")
    dataset = generators.TrainSequence(train, root, "spatial", batch_size=3, image_size=SIZE)
    seen = set()
    for _ in range(8):
        for x, y in epoch_batches(dataset):
            for name, start, box, flip in identify(x, table):
                seen.add((box, flip))
        dataset.on_epoch_end()
    assert seen == {(box, flip) for box in BOXES for flip in (False, True)}


def test_flow_training_samples_are_exact_crops_with_inverted_flips(tmp_path):
    root, train, _ = make_dataset(tmp_path, groups=(8, 9), noise=True)
    table = candidates(root, train, "temporal")
    dataset = generators.TrainSequence(train, root, "temporal", batch_size=3, image_size=SIZE, stack_length=L)
    draws = []
    for _ in range(4):
        for x, y in epoch_batches(dataset):
            found = identify(x, table)
            assert [ucf101.parse_name(name)[0] for name, *_ in found] == [("Alpha", "Beta", "Gamma")[c] for c in y]
            draws += found
        dataset.on_epoch_end()
    assert {flip for *_, flip in draws} == {False, True}
    assert len({start for _, start, _, _ in draws}) > 3


def test_multiscale_crops_are_tsn_crops_resized(tmp_path):
    root, train, _ = make_dataset(tmp_path, groups=(8,), noise=True)
    table = candidates(root, train, "spatial", multiscale=True)
    dataset = generators.TrainSequence(train, root, "spatial", batch_size=3, image_size=SIZE, multiscale=True)
    sides = set()
    for _ in range(10):
        for x, _ in epoch_batches(dataset):
            sides |= {box[2:] for _, _, box, _ in identify(x, table)}
        dataset.on_epoch_end()
    assert len(sides) > 3 and any(h != w for h, w in sides)


def test_stack_channel_order_and_stacks_inside_or_looping(tmp_path):
    short = "v_Beta_g08_c01"
    root, train, _ = make_dataset(tmp_path, frames={short: 3}, groups=(1, 8))  # 3 frames: 2 flow images
    dataset = generators.TrainSequence(train, root, "temporal", batch_size=3, image_size=SIZE, stack_length=L)
    starts = set()
    for _ in range(40):
        x, y = dataset[0]
        for sample, label in zip(x, y):
            v = [int(np.median(sample[..., 2 * k + 1])) for k in range(L)]  # fakedata: v = 100 + j
            du = [int(np.median(sample[..., 2 * k].astype(int) - sample[..., 0])) for k in range(L)]
            if label == 1:  # the short video loops over its 2 flow images
                assert v in ([100, 101, 100, 101],)
            else:  # u1,v1,u2,v2,...: consecutive flow images, inside the 11 of the video
                assert v == [v[0] + k for k in range(L)] and 100 <= v[0] and v[-1] <= 110
                starts.add(v[0] - 100)
            # u of flow image j is a ramp + j, so u channels step as v does (negated if flipped: 255 - u)
            steps = [vk - v[0] for vk in v]
            assert du in (steps, [-d for d in steps])
        dataset.on_epoch_end()
    assert starts == set(range(11 - L + 1)), "every start that leaves room for L flow images is reachable"


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_two_workers_draw_different_crops_and_flips(tmp_path, processes):
    root, train, _ = make_dataset(tmp_path, groups=(8, 9, 10), noise=True)
    table = candidates(root, train, "spatial")
    dataset = generators.TrainSequence(train, root, "spatial", batch_size=2, image_size=SIZE, seed=7,
                                       workers=2, use_multiprocessing=processes)
    adapter = PyDatasetAdapter(dataset, shuffle=False)
    epochs = []
    for epoch in range(2):
        expected = epoch_batches(dataset)  # the same epoch computed in this process
        adapter.on_epoch_begin()
        batches = list(adapter.get_numpy_iterator())
        adapter.on_epoch_end()
        assert len(batches) == len(expected) == 5
        for (x, y), (ex, ey) in zip(batches, expected):
            np.testing.assert_array_equal(x, ex)
            np.testing.assert_array_equal(y, ey)
        draws = [tuple((start, box, flip) for _, start, box, flip in identify(x, table)) for x, _ in batches]
        assert len(set(draws[:4])) == 4, f"full batches repeat the same draws: {draws}"
        epochs.append(draws)
    assert dataset.epoch == 2 and epochs[0] != epochs[1]


class RecordingSequence(generators.TrainSequence):
    def __getitem__(self, index):
        self.calls.append((self.epoch, index))
        return super().__getitem__(index)


@pytest.mark.parametrize("workers", [1, 2])
def test_fit_moves_the_draws_on_every_epoch(tmp_path, workers):
    root, train, _ = make_dataset(tmp_path, groups=(8, 9))  # 6 videos, batches of 4: 2 batches
    dataset = RecordingSequence(train, root, "spatial", batch_size=4, image_size=SIZE, workers=workers)
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
    os.remove(generators.rgb_path(root, video.name, 1))
    with open(generators.rgb_path(root, video.name, 2), "wb") as f:
        f.write(b"not a jpeg")
    open(generators.rgb_path(root, video.name, 3), "wb").close()  # empty file
    dataset = generators.TrainSequence(train, root, "spatial", batch_size=2, image_size=SIZE)
    with pytest.warns(UserWarning, match=video.name) as warned:
        for _ in range(10):
            for x, _ in epoch_batches(dataset):
                for name, start, _, _ in identify(x, table):
                    assert name != video.name or start == 0  # the only readable frame
            dataset.on_epoch_end()
    assert dataset.missing_files >= 3
    named = [str(w.message).split(":")[0] for w in warned if video.name in str(w.message)]
    assert len(named) == len(set(named)) == 3  # each bad file warned about once
    assert "missing or unreadable" in capsys.readouterr().out

    # all frames of a video gone: its samples come from other videos, the epoch completes
    for j in (0, 2, 3):
        os.remove(generators.rgb_path(root, video.name, j))
    with pytest.warns(UserWarning):
        labels = np.concatenate([y for _, y in epoch_batches(dataset)])
    assert len(labels) == len(train) and video.label not in labels


def test_missing_flow_frame_is_survived(tmp_path):
    root, train, _ = make_dataset(tmp_path, groups=(8,))
    os.remove(ucf101.frame_path(ucf101.flow_dir(root, "u", train[0].name), 5))
    dataset = generators.TrainSequence(train, root, "temporal", batch_size=3, image_size=SIZE, stack_length=L)
    with pytest.warns(UserWarning, match="frame000006.jpg"):
        for _ in range(6):
            x, y = dataset[0]
            for sample, label in zip(x, y):
                flow_images = [int(np.median(sample[..., 2 * k + 1])) - 100 for k in range(L)]  # v = 100 + j
                assert label != train[0].label or 5 not in flow_images
            dataset.on_epoch_end()
    assert dataset.missing_files > 0


# ---------------------------------------------------------------------------- test time

def test_test_sequence_positions_for_a_29_frame_video(tmp_path):
    root, _, test = make_dataset(tmp_path, classes=("Alpha",), frames=29)
    video = test[0]
    starts = generators.sample_starts(29, 25, 1)
    x, index = generators.TestSequence(test, root, "spatial", image_size=SIZE)[0]
    assert x.shape == (25, SIZE, SIZE, 3) and list(index) == [0] * 25
    for sample, start in zip(x, starts):
        np.testing.assert_array_equal(sample, media.read_image(generators.rgb_path(root, video.name, start))[8:40, 16:48])
    x, _ = generators.TestSequence(test, root, "temporal", image_size=SIZE, stack_length=10)[0]
    assert x.shape == (25, SIZE, SIZE, 20)
    for sample, start in zip(x, generators.sample_starts(28, 25, 10)):
        assert [int(np.median(sample[..., 2 * k + 1])) for k in range(10)] == [100 + start + k for k in range(10)]


def test_test_sequence_batches_ten_crops_and_video_index(tmp_path):
    root, _, test = make_dataset(tmp_path, noise=True)  # 3 test videos
    sequence = generators.TestSequence(test, root, "temporal", samples=5, crops="10", image_size=SIZE,
                                       stack_length=L, videos_per_batch=2)
    assert len(sequence) == 2
    x, index = sequence[0]
    assert x.shape == (2 * 5 * 10, SIZE, SIZE, 2 * L) and index.dtype == np.int32
    assert list(index) == [0] * 50 + [1] * 50
    video = test[1]
    for s, start in enumerate(generators.sample_starts(video.flows, 5, L)):
        stack = read_stack(root, video, generators.stack_indices(start, L, video.flows))
        for c, (t, l) in enumerate(BOXES):
            crop = stack[t:t + SIZE, l:l + SIZE]
            np.testing.assert_array_equal(x[50 + s * 10 + c], crop)
            np.testing.assert_array_equal(x[50 + s * 10 + 5 + c], mirrored(crop, is_flow=True))
    x, index = sequence[1]
    assert x.shape[0] == 50 and set(index) == {2}


def test_short_test_video_loops(tmp_path):
    root, _, test = make_dataset(tmp_path, classes=("Alpha",), frames=6)  # 5 flow images
    x, _ = generators.TestSequence(test, root, "temporal", samples=3, image_size=SIZE, stack_length=10)[0]
    for sample in x:
        assert [int(np.median(sample[..., 2 * k + 1])) for k in range(10)] == [100 + k % 5 for k in range(10)]


def test_missing_test_data_raises_data_error_naming_the_video(tmp_path):
    root, _, test = make_dataset(tmp_path)
    gone, damaged = test[0].name, test[1].name
    os.rename(ucf101.flow_dir(root, "u", gone), str(tmp_path / "moved"))
    os.remove(ucf101.frame_path(ucf101.flow_dir(root, "v", damaged), 7))
    splits = os.path.join(root, "splits")
    reindexed = ucf101.load_index(root, splits, 1, "test")
    assert generators.missing_data(reindexed, root, "temporal") == [gone, damaged]
    assert generators.missing_data(reindexed, root, "spatial") == []
    with pytest.raises(ucf101.DataError, match=gone):
        generators.TestSequence(reindexed, root, "temporal")
    with pytest.raises(ucf101.DataError, match=damaged):
        generators.TestSequence(test[1:], root, "temporal")  # counts from before the deletion
    with pytest.raises(ucf101.DataError, match=gone):
        generators.validation_data(reindexed, root, "temporal", image_size=SIZE, stack_length=L)
    generators.TestSequence(reindexed, root, "spatial", image_size=SIZE)  # the frames are all there
    with open(generators.rgb_path(root, test[2].name, 6), "wb") as f:
        f.write(b"not a jpeg")
    with pytest.raises(ucf101.DataError, match=test[2].name):
        generators.TestSequence(test[2:], root, "spatial", samples=1, image_size=SIZE)[0]


def test_validation_data_is_the_centre_sample_centre_crop(tmp_path):
    root, _, test = make_dataset(tmp_path, noise=True)
    x, y = generators.validation_data(test, root, "spatial", image_size=SIZE)
    assert x.shape == (3, SIZE, SIZE, 3) and x.dtype == np.uint8 and list(y) == [0, 1, 2] and y.dtype == np.int32
    np.testing.assert_array_equal(x[1], media.read_image(generators.rgb_path(root, test[1].name, 6))[8:40, 16:48])
    x, _ = generators.validation_data(test, root, "temporal", image_size=SIZE, stack_length=L)
    assert x.shape == (3, SIZE, SIZE, 2 * L)
    start = (11 - L + 1) // 2
    np.testing.assert_array_equal(x[2], read_stack(root, test[2], range(start, start + L))[8:40, 16:48])
