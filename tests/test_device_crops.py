"""Test crops cut on the device (issue 26): fuse_test.predict_videos sends each sample once, whole
(generators.EvalSampleSequence), and custom_layers.EvalCrops cuts and flips the 10 crops there (the centre crop
alone the host still cuts: fewer bytes than the whole sample). EvalCrops' crops are the host's
(generators.EvalSequence's) byte for byte in both crop modes, and predict_videos' scores the host path's within
float32 round-off, for both streams, with videos of different frame sizes in one chunk."""
import os
import types

import keras
import numpy as np
import pytest

import fakedata
import faults
import fuse_test
import generators
import models
from twostream.datasets import ucf101
from twostream.datasets.frames import Stream
from twostream.errors import DataError
from twostream.loading.sampling import CROPS_PER_SAMPLE, eval_windows, sample_starts
from twostream.networks import custom_layers
from twostream.video import media

CLASSES = ("Alpha", "Beta", "Gamma")
SAMPLES = 3
STACK = 2
SIZES = {"spatial": 75, "temporal": 64}  # the tiny nets' crop sides; the 64x48 frames are resized up to them
FITTED = {"spatial": [(75, 100), (75, 120)], "temporal": [(64, 85), (64, 102)]}  # 64x48 and 96x60 fitted (H, W)
# Per-sample scores of the two paths agree to this (float32 softmax; the crops are the same bytes, so only the
# order of the float sums may differ: batches of other sizes, the mean over the crops on the device). Measured on
# these data: 0 on TensorFlow, 3e-8 on JAX (CPU); u left as is on mirrored flow crops: 2e-3.
ATOL = 1e-6


def write_noise(root, videos, size=(64, 48), seed=0):
    """Random frames and flow (every crop and flip then differs), `size` (width, height)."""
    rng = np.random.default_rng(seed)
    width, height = size
    for video in videos:
        for j in range(video.frames):
            media.write_image(ucf101.frame_path(ucf101.rgb_dir(root, video.name), j),
                              rng.integers(0, 256, (height, width, 3), np.uint8))
        for j in range(video.flow_count):
            for c in "uv":
                media.write_image(ucf101.frame_path(ucf101.flow_dir(root, c, video.flow_folder), j),
                                  rng.integers(0, 256, (height, width), np.uint8))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """3 test videos of random frames, the middle one 96x60 (the others 64x48): three runs of one shape."""
    root = str(tmp_path_factory.mktemp("device_crops"))
    splits = fakedata.write_dataset(root, CLASSES)
    test = ucf101.load_index(root, splits, 1, "test")
    write_noise(root, test[::2])
    write_noise(root, test[1:2], size=(96, 60), seed=1)
    return root, test


@pytest.fixture(scope="module")
def networks():
    """Untrained tiny stand-in networks, their tops scaled so that their scores differ between crops without
    saturating on these random frames (spatial 0.31 to 0.37, temporal 0.25 to 0.46)."""
    keras.utils.set_random_seed(0)
    with faults.tiny_nets_in_this_process():
        return {"spatial": fakedata.sharpen(models.spatial_model(len(CLASSES), SIZES["spatial"], weights="none"),
                                            100),
                "temporal": fakedata.sharpen(models.temporal_model(len(CLASSES), SIZES["temporal"], STACK), 0.1)}


def host_scores(model, videos, root, stream, crops):
    """Today's path before issue 26: the host cuts the crops, the model scores them, numpy averages them."""
    per_sample = CROPS_PER_SAMPLE[crops]
    sequence = generators.EvalSequence(videos, root, Stream(stream, STACK), samples=SAMPLES, crops=crops,
                                       image_size=SIZES[stream])
    x = np.concatenate([sequence[k][0] for k in range(len(sequence))])
    return np.asarray(model.predict(x, verbose=0), np.float32).reshape(len(videos), SAMPLES, per_sample, -1).mean(2)


@pytest.mark.parametrize("crops", ["10", "center"])
@pytest.mark.parametrize("stream", ["spatial", "temporal"])
def test_device_crops_are_the_host_crops_byte_for_byte(dataset, stream, crops):
    root, test = dataset
    size, sample_stream = SIZES[stream], Stream(stream, STACK)
    runs = generators.shape_runs(test, root, sample_stream, size, SAMPLES)
    small, large = FITTED[stream]
    assert [(shape, [v.name for v in videos]) for shape, videos in runs] == [
        (small, [test[0].name]), (large, [test[1].name]), (small, [test[2].name])]
    for shape, videos in runs:
        whole, index = generators.EvalSampleSequence(videos, root, sample_stream, shape, samples=SAMPLES,
                                                     image_size=size)[0]
        assert whole.shape == (SAMPLES, *shape, sample_stream.channels) and whole.dtype == np.uint8
        assert list(index) == [0] * SAMPLES
        host, _ = generators.EvalSequence(videos, root, sample_stream, samples=SAMPLES, crops=crops,
                                          image_size=size)[0]
        device = custom_layers.EvalCrops(eval_windows(shape, size, crops), flow=sample_stream.is_flow)(whole)
        np.testing.assert_array_equal(np.asarray(device), host)


@pytest.mark.parametrize("crops", ["10", "center"])
@pytest.mark.parametrize("stream", ["spatial", "temporal"])
def test_predict_videos_gives_the_host_paths_scores(dataset, networks, stream, crops):
    """Three videos in runs of one shape each (the middle one larger), two videos a batch (--batch-size 60 with 10
    crops): the per-sample scores of the host-cut crops, within float32 round-off, in the videos' order. (Centre
    crop: predict_videos cuts it on the host, as before.)"""
    root, test = dataset
    model = networks[stream]
    args = types.SimpleNamespace(crops=crops, samples=SAMPLES, batch_size=2 * SAMPLES * 10, data_dir=root, workers=1)
    device = fuse_test.predict_videos(model, test, args, stream, {"stack_length": STACK, "image_size": SIZES[stream]})
    host = host_scores(model, test, root, stream, crops)
    assert device.shape == host.shape == (len(test), SAMPLES, len(CLASSES)) and device.dtype == np.float32
    np.testing.assert_allclose(device, host, rtol=0, atol=ATOL)
    assert np.ptp(host, axis=(0, 1)).max() > 1e-3  # scores that differ between videos and samples: a real check


def test_flipped_flow_crops_without_u_inverted_give_other_scores(dataset, networks):
    """The comparison above has the power to see a mirrored flow crop whose u is left as is: the same device
    model without the inversion (EvalCrops with flow=False on flow stacks) is far off the host's scores."""
    root, test = dataset
    model, size, stream = networks["temporal"], SIZES["temporal"], Stream("temporal", STACK)
    (shape, videos), *_ = generators.shape_runs(test, root, stream, size, SAMPLES)
    whole, _ = generators.EvalSampleSequence(videos, root, stream, shape, samples=SAMPLES, image_size=size)[0]
    windows = eval_windows(shape, size, "10")
    host = host_scores(model, videos, root, "temporal", "10")[0]
    inverted = custom_layers.with_eval_crops(model, shape, windows, flow=True).predict(whole, verbose=0)
    kept = custom_layers.with_eval_crops(model, shape, windows, flow=False).predict(whole, verbose=0)
    np.testing.assert_allclose(inverted, host, rtol=0, atol=ATOL)
    assert np.abs(kept - host).max() > 100 * ATOL


def test_a_sample_of_another_size_than_the_videos_first_is_a_data_error(tmp_path):
    root = str(tmp_path)
    splits = fakedata.write_dataset(root, CLASSES[:1])
    video = ucf101.load_index(root, splits, 1, "test")[0]
    last = sample_starts(video.frames, SAMPLES)[-1]
    media.write_image(ucf101.frame_path(ucf101.rgb_dir(root, video.name), last), fakedata.rgb_frame(0, 0, 60, 80))
    ((shape, videos),) = generators.shape_runs([video], root, "spatial", 32, SAMPLES)
    with pytest.raises(DataError, match=f"{video.name}: .*{os.path.basename(ucf101.frame_path('', last))} is 60x80.*"
                                         "one size"):
        generators.EvalSampleSequence(videos, root, "spatial", shape, samples=SAMPLES, image_size=32)[0]
