"""models.py: layer shapes and parameter counts, local response normalisation, training phases,
BatchNorm calibration, cross-modality initialisation, the normalisation inside the models, saving
and loading, the spatial backbones beyond InceptionV3 and partial BN. Runs with the TensorFlow or JAX
backend."""
import inspect
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import models
from twostream.errors import DataError
from twostream.networks import custom_layers
from twostream.protocol import presets

pytestmark = pytest.mark.xdist_group("test_models")  # one worker builds its module fixtures and compiles

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = models.MIN_INCEPTION_SIZE  # 75: the smallest InceptionV3 input, fastest to build


# ---------------------------------------------------------------------------- CNN-M-2048

@pytest.mark.slow
def test_cnn_m_2048_shapes_at_224_match_the_paper():
    model = models.temporal_model(101, image_size=224, stack_length=10)
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert model.input_shape == (None, 224, 224, 20)
    assert model.input.dtype == "uint8"
    assert shapes["conv1"] == shapes["norm1"] == (109, 109, 96)
    assert shapes["pool1"] == (54, 54, 96)
    assert shapes["conv2"] == (26, 26, 256)
    assert shapes["pool2"] == (13, 13, 256)
    assert shapes["conv3"] == shapes["conv4"] == shapes["conv5"] == (13, 13, 512)
    assert shapes["pool5"] == (6, 6, 512)
    assert shapes["full6"] == (4096,)
    assert shapes["full7"] == (2048,)
    assert shapes["predictions"] == (101,)
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [0.9, 0.9]

    # The paper's temporal net: LRN after conv1 only, every convolution with a bias.
    assert model.count_params() == 90_707_781
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    names = [layer.name for layer in model.layers]
    assert names.index("conv1") < names.index("norm1") < names.index("pool1")
    assert [type(layer) for layer in model.layers].count(custom_layers.LocalResponseNormalization) == 1
    assert model.get_layer("conv1").activation is keras.activations.relu
    assert model.get_layer("conv2").activation is keras.activations.relu


@pytest.mark.slow
def test_cnn_m_2048_batchnorm_variant():
    model = models.temporal_model(101, image_size=224, stack_length=10, norm="batchnorm")
    assert tuple(model.get_layer("pool5").output.shape[1:]) == (6, 6, 512)
    assert [layer.name for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)] == [
        "conv1_norm", "conv2_norm"]
    assert not any(isinstance(layer, custom_layers.LocalResponseNormalization) for layer in model.layers)

    conv1 = 7 * 7 * 20 * 96 + 4 * 96  # no bias (BatchNorm follows): gamma, beta, moving mean and variance
    conv2 = 5 * 5 * 96 * 256 + 4 * 256
    conv3 = 3 * 3 * 256 * 512 + 512
    conv4 = conv5 = 3 * 3 * 512 * 512 + 512
    full6 = 6 * 6 * 512 * 4096 + 4096
    full7 = 4096 * 2048 + 2048
    softmax = 2048 * 101 + 101
    assert model.count_params() == conv1 + conv2 + conv3 + conv4 + conv5 + full6 + full7 + softmax
    with pytest.raises(ValueError, match="unknown norm 'layernorm'; choose from lrn, batchnorm"):
        models.temporal_model(3, image_size=64, norm="layernorm")


@pytest.mark.parametrize("norm", models.NORMS)
def test_cnn_m_2048_works_at_the_mini_datasets_size(norm):
    model = models.temporal_model(12, image_size=80, stack_length=10, dropout=0.5, norm=norm)
    assert tuple(model.get_layer("pool5").output.shape[1:]) == (2, 2, 512)
    x = np.random.default_rng(3).integers(0, 256, (2, 80, 80, 20)).astype(np.uint8)
    out = model.predict(x, verbose=0)
    assert out.shape == (2, 12)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    assert np.all(np.isfinite(out)) and not np.allclose(out[0], out[1])
    with pytest.raises(ValueError, match="too small"):
        models.temporal_model(3, image_size=40, stack_length=1)


# ---------------------------------------------------------------------------- local response normalisation

def local_response_normalization(x, **kwargs):
    return keras.ops.convert_to_numpy(custom_layers.LocalResponseNormalization(**kwargs)(np.asarray(x, np.float32)))


def test_lrn_by_hand_on_every_backend():
    # Channel c is divided by (2 + 1e-4 * sum of squares of channels c-2..c+2) ** 0.75, zeros past the edges.
    a = np.array([100.0, 0.0, 200.0, -300.0, 50.0, 10.0, 0.0], np.float32)
    squares = a ** 2
    sums = [squares[0] + squares[1] + squares[2],  # channel 0: channels 0..2
            squares[:4].sum(),  # channel 1: 0..3
            squares[:5].sum(),  # channel 2: 0..4
            squares[1:6].sum(),  # channel 3: 1..5
            squares[2:7].sum(),  # channel 4: 2..6
            squares[3:7].sum(),  # channel 5: 3..6
            squares[4:7].sum()]  # channel 6: 4..6
    expected = a / (2 + 1e-4 * np.array(sums)) ** 0.75
    assert expected[3] == pytest.approx(-300 / (2 + 1e-4 * 132_600) ** 0.75)  # 0 + 4e4 + 9e4 + 2500 + 100
    x = np.zeros((2, 3, 2, 7), np.float32)
    x[1, 2, 1] = a  # one pixel of the second sample; the other pixels stay 0 and do not mix in
    out = local_response_normalization(x)
    np.testing.assert_allclose(out[1, 2, 1], expected, rtol=1e-5)
    out[1, 2, 1] = 0
    np.testing.assert_array_equal(out, 0)
    np.testing.assert_allclose(local_response_normalization(a[None], depth_radius=0, bias=1, alpha=1, beta=0.5),
                               [a / np.sqrt(1 + a ** 2)], rtol=1e-5)


def test_lrn_matches_tensorflows():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.nn.local_response_normalization needs the TensorFlow backend")
    import tensorflow as tf

    x = np.random.default_rng(4).normal(0, 100, (2, 5, 6, 96)).astype(np.float32)
    expected = tf.nn.local_response_normalization(x, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75).numpy()
    assert not np.allclose(expected, x / 2 ** 0.75, rtol=1e-2)  # the neighbours' squares matter here
    np.testing.assert_allclose(local_response_normalization(x), expected, rtol=1e-5, atol=1e-6)


def test_lrn_config_round_trips_and_runs_in_float32_under_mixed_precision():
    layer = custom_layers.LocalResponseNormalization(depth_radius=1, bias=1.0, alpha=0.5, beta=0.5, name="lrn")
    clone = custom_layers.LocalResponseNormalization.from_config(layer.get_config())
    assert (clone.depth_radius, clone.bias, clone.alpha, clone.beta, clone.name) == (1, 1.0, 0.5, 0.5, "lrn")
    x = np.full((1, 1, 1, 5), 1000.0, np.float16)  # its squares (1e6) overflow float16
    out = keras.ops.convert_to_numpy(custom_layers.LocalResponseNormalization(dtype="mixed_float16")(x))
    assert out.dtype == np.float16
    square_sums = np.array([3e6, 4e6, 5e6, 4e6, 3e6])  # 3, 4, 5, 4, 3 channels in each window
    np.testing.assert_allclose(out[0, 0, 0], 1000 / (2 + 1e-4 * square_sums) ** 0.75, rtol=2e-3)


# ---------------------------------------------------------------------------- normalisation

def flow_normalization(x, **kwargs):
    return keras.ops.convert_to_numpy(custom_layers.FlowNormalization(**kwargs)(np.asarray(x, np.uint8)))


def test_flow_normalization_gives_displacement_minus_the_mean():
    # No motion (128) -> 0; a uniform u shift (camera pan) is removed, the pattern on top of it stays.
    still = np.full((1, 4, 4, 2), 128, np.uint8)
    np.testing.assert_allclose(flow_normalization(still), 0.0, atol=1e-6)

    pattern = np.full((1, 4, 4, 2), 128, np.uint8)
    pattern[0, :, :2, 0] = 100  # u: left half 100, right half 200; v: uniform 60
    pattern[0, :, 2:, 0] = 200
    pattern[0, :, :, 1] = 60
    out = flow_normalization(pattern)
    half = 50 * 40 / 255  # (200 - 100) / 2 quantisation steps of 40/255 pixels
    np.testing.assert_allclose(out[0, :, :2, 0], -half, rtol=1e-5)
    np.testing.assert_allclose(out[0, :, 2:, 0], half, rtol=1e-5)
    np.testing.assert_allclose(out[0, :, :, 1], 0.0, atol=1e-5)

    panned = pattern.copy()
    panned[..., 0] += 30  # the whole frame moves 30 steps (4.7 px) further right
    np.testing.assert_allclose(flow_normalization(panned), out, atol=1e-5)
    # Each sample on its own: a second, still sample does not change the first one's result.
    np.testing.assert_allclose(flow_normalization(np.concatenate([pattern, still]))[:1], out, atol=1e-5)
    np.testing.assert_allclose(flow_normalization(pattern, scale=1 / 20), out / 20, rtol=1e-5)


def test_spatial_model_maps_pixels_to_inceptions_range():
    layer = models.inception_preprocessing()
    out = keras.ops.convert_to_numpy(layer(np.array([[0, 127.5, 255]], np.float32)))
    np.testing.assert_allclose(out, [[-1, 0, 1]], atol=1e-6)


# ---------------------------------------------------------------------------- spatial phases

@pytest.fixture(scope="module")
def spatial():
    return models.spatial_model(5, image_size=SMALL, weights="none")


@pytest.mark.slow
def test_spatial_model_top(spatial):
    assert spatial.input.dtype == "uint8"
    assert spatial.get_layer("fc1024").units == 1024
    assert spatial.get_layer("predictions").units == 5
    assert spatial.get_layer("predictions").dtype_policy.compute_dtype == "float32"


@pytest.mark.slow
def test_phase_1_trains_only_the_new_top(spatial):
    models.set_spatial_phase(spatial, 1)
    base = spatial.get_layer("inception_v3")
    assert not any(layer.trainable for layer in base.layers)
    trainable = {w.path.split("/")[0] for w in spatial.trainable_weights}
    assert trainable == {"fc1024", "predictions"}


@pytest.mark.slow
def test_phase_2_also_trains_mixed9_and_mixed10(spatial):
    models.set_spatial_phase(spatial, 2)
    base = spatial.get_layer("inception_v3")
    names = [layer.name for layer in base.layers]
    after_mixed8 = base.layers[names.index("mixed8") + 1:]
    assert all(layer.trainable for layer in after_mixed8)
    assert not any(layer.trainable for layer in base.layers[:names.index("mixed8") + 1])
    assert base.get_layer("mixed9").trainable and base.get_layer("mixed10").trainable
    assert not base.get_layer("mixed8").trainable and not base.get_layer("mixed7").trainable
    # The top two blocks: their 2 x 9 convolutions (and nothing else's) train, with their BatchNorm.
    trainable_convs = [layer for layer in base.layers if isinstance(layer, keras.layers.Conv2D) and layer.trainable]
    assert len(trainable_convs) == 18
    frozen_norms = [layer for layer in base.layers[:names.index("mixed8")]
                    if isinstance(layer, keras.layers.BatchNormalization)]
    assert frozen_norms and not any(layer.trainable for layer in frozen_norms)
    models.set_spatial_phase(spatial, 1)
    assert not base.get_layer("mixed9").trainable


@pytest.mark.slow
def test_frozen_batchnorm_runs_in_inference_mode(spatial):
    models.set_spatial_phase(spatial, 2)
    base = spatial.get_layer("inception_v3")
    frozen_norm = next(layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization))
    names = [layer.name for layer in base.layers]
    open_norm = next(layer for layer in base.layers[names.index("mixed8"):]
                     if isinstance(layer, keras.layers.BatchNormalization))
    frozen_before = keras.ops.convert_to_numpy(frozen_norm.moving_mean).copy()
    open_before = keras.ops.convert_to_numpy(open_norm.moving_mean).copy()
    x = np.random.default_rng(0).integers(0, 256, (4, SMALL, SMALL, 3)).astype(np.uint8)
    spatial(x, training=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(frozen_norm.moving_mean), frozen_before)
    assert not np.allclose(keras.ops.convert_to_numpy(open_norm.moving_mean), open_before)
    # The frozen part gives the same features in training and inference mode.
    features = keras.Model(base.input, base.get_layer("mixed8").output)
    pre = models.inception_preprocessing()(x)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(features(pre, training=True)),
                               keras.ops.convert_to_numpy(features(pre, training=False)), rtol=1e-5, atol=1e-6)
    models.set_spatial_phase(spatial, 1)


@pytest.fixture(scope="module")
def calibrated():
    """A random-weight spatial model, its batch and its features before calibration."""
    model = models.spatial_model(3, image_size=SMALL, weights="none")
    x = np.random.default_rng(1).integers(0, 256, (4, SMALL, SMALL, 3)).astype(np.uint8)
    features = keras.Model(model.input, model.get_layer("avg_pool").output)
    before = features.predict(x, verbose=0)
    models.calibrate_random_batchnorm(model, x)
    return model, x, before


@pytest.mark.slow
def test_random_base_batchnorm_calibration_restores_the_feature_scale(calibrated):
    model, x, before = calibrated
    features = keras.Model(model.input, model.get_layer("avg_pool").output)
    after = features.predict(x, verbose=0)
    assert np.std(before) < 1e-2 < 0.1 < np.std(after) < 10
    norms = [layer for layer in models.all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 94
    assert all(type(layer) is keras.layers.BatchNormalization and layer.momentum == 0.99 for layer in norms)
    assert all(np.all(keras.ops.convert_to_numpy(layer.moving_mean) == 0) for layer in norms)


@pytest.mark.slow
def test_batchnorm_calibration_sets_each_variance_to_its_inputs_mean_square_layer_after_layer(calibrated):
    model, x, _ = calibrated
    base = model.get_layer("inception_v3")
    norms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    pre = models.inception_preprocessing()(x)
    for norm in (norms[0], norms[1], norms[-1]):
        # Its input, computed by the calibrated layers before it in inference mode.
        inputs = keras.ops.convert_to_numpy(keras.Model(base.input, norm.input)(pre, training=False))
        mean_square = np.mean(np.square(inputs), axis=(0, 1, 2))
        np.testing.assert_allclose(keras.ops.convert_to_numpy(norm.moving_variance), mean_square, rtol=1e-4)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(norm.moving_mean), 0)
    # Layer after layer: the second layer's input depends on the first layer's calibration.
    first_variance = keras.ops.convert_to_numpy(norms[0].moving_variance)
    assert np.all(first_variance < 0.5)  # far from its initial 1
    norms[0].moving_variance.assign(np.ones_like(first_variance))
    uncalibrated = keras.ops.convert_to_numpy(keras.Model(base.input, norms[1].input)(pre, training=False))
    norms[0].moving_variance.assign(first_variance)  # the fixture is shared
    assert not np.allclose(np.mean(np.square(uncalibrated), axis=(0, 1, 2)),
                           keras.ops.convert_to_numpy(norms[1].moving_variance), rtol=0.1)


def test_models_py_uses_no_private_keras_attribute():
    source = inspect.getsource(models)
    assert not re.findall(r"\._[a-z]", source)


# ---------------------------------------------------------------------------- cross-modality

def test_cross_modality_kernel_is_the_rgb_mean_replicated():
    kernel = np.random.default_rng(0).normal(size=(3, 3, 3, 8)).astype(np.float32)
    flow = models.cross_modality_kernel(kernel, 20)
    assert flow.shape == (3, 3, 20, 8)
    for channel in range(20):
        np.testing.assert_allclose(flow[:, :, channel], kernel.mean(axis=2), rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("file", ["rgb.weights.h5", "rgb.h5"])
def test_cross_modality_initialisation_of_the_temporal_inception(tmp_path, file):
    """TSN's: the first convolution's RGB kernel averaged over its 3 input channels, copied to all 2L flow
    channels; every other layer as the RGB net's. From a Keras 3 weights file, or a legacy .h5 as the ImageNet
    download is (read layer by layer in order, not by name)."""
    rgb = models.inception_v3((SMALL, SMALL, 3))  # random weights stand in for ImageNet's
    path = str(tmp_path / file)
    rgb.save_weights(path) if file.endswith(".weights.h5") else rgb.save(path)
    model = models.temporal_model(4, image_size=SMALL, stack_length=3, arch="inception_v3", weights=path)
    flow = model.get_layer("inception_v3")
    assert flow.input_shape == (None, SMALL, SMALL, 6)
    rgb_layers = [layer for layer in rgb.layers if layer.weights]
    flow_layers = [layer for layer in flow.layers if layer.weights]
    first_rgb, first_flow = rgb_layers[0].get_weights()[0], flow_layers[0].get_weights()[0]
    assert first_flow.shape == (3, 3, 6, 32)
    np.testing.assert_allclose(first_flow, np.repeat(first_rgb.mean(axis=2, keepdims=True), 6, axis=2), rtol=1e-6)
    assert not np.allclose(first_rgb[:, :, 0], first_rgb[:, :, 1])  # the mean is not a trivial one
    for rgb_layer, flow_layer in zip(rgb_layers[1:], flow_layers[1:]):
        for a, b in zip(rgb_layer.get_weights(), flow_layer.get_weights()):
            np.testing.assert_array_equal(a, b)
    assert model.get_layer("flow_normalization").scale == pytest.approx(1 / 20)


# ---------------------------------------------------------------------------- weights and files

def test_missing_weights_file_and_offline_imagenet_give_clear_errors(monkeypatch, tmp_path):
    with pytest.raises(DataError, match="not found"):
        models.weights_file(str(tmp_path / "nothing.h5"))

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(DataError,
                       match=r"--weights /path/to/inception_v3_weights_tf_dim_ordering_tf_kernels_notop\.h5"):
        models.spatial_model(3, image_size=SMALL, weights="imagenet")
    with pytest.raises(ValueError, match="no ImageNet weights for cnn_m_2048"):
        models.temporal_model(3, image_size=64, weights="imagenet")
    with pytest.raises(DataError, match="no such model file"):
        custom_layers.load_model(str(tmp_path / "missing.keras"))


@pytest.mark.slow
@pytest.mark.parametrize("norm", models.NORMS)
def test_saved_model_reloads_and_predicts_the_same(tmp_path, norm):
    model = models.temporal_model(3, image_size=64, stack_length=2, dropout=0.5, norm=norm)
    x = np.random.default_rng(2).integers(0, 256, (3, 64, 64, 4)).astype(np.uint8)
    model.compile("sgd", loss="sparse_categorical_crossentropy")
    model.fit(x, np.array([0, 1, 2]), epochs=1, verbose=0)  # moves the weights (and BatchNorm statistics)
    path = str(tmp_path / "temporal.keras")
    model.save(path)
    loaded = custom_layers.load_model(path)
    assert isinstance(loaded.get_layer("flow_normalization"), custom_layers.FlowNormalization)
    if norm == "lrn":
        assert isinstance(loaded.get_layer("norm1"), custom_layers.LocalResponseNormalization)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_mixed_precision_keeps_softmax_and_normalisation_in_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = models.temporal_model(3, image_size=64, stack_length=1)
        assert model.get_layer("conv1").compute_dtype == "float16"
        assert model.get_layer("norm1").compute_dtype == "float16"  # computed in float32 inside
        assert model.get_layer("flow_normalization").compute_dtype == "float32"
        assert model.output.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


PRECISION_STEP = """
import keras, numpy as np, models, temporal_train
from twostream.networks import custom_layers
from twostream.train import training

for precision in ("float32", "bfloat16", "float16"):
    args = temporal_train.parse_args(["--precision", precision])
    keras.mixed_precision.set_global_policy(training.precision_policy(args.precision))
    model = models.temporal_model(3, image_size=64, stack_length=2, dropout=0.5)
    model.compile(training.sgd(1e-3, args.momentum, args.weight_decay), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 4)).astype(np.uint8)
    loss = model.train_on_batch(x, np.array([0, 2]))
    spatial = models.spatial_model(3, image_size=75, weights="none")  # built only: its step compiles for minutes
    dtype = keras.backend.standardize_dtype
    print(precision, keras.backend.backend(), model.get_layer("full6").compute_dtype,
          spatial.get_layer("fc1024").compute_dtype, dtype(model(x).dtype), dtype(spatial.output.dtype),
          dtype(model.get_layer("full6").kernel.dtype), bool(np.isfinite(loss)))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", [keras.backend.backend()])  # CI runs this file on each backend
def test_precision_flag_trains_a_step_with_softmax_and_loss_in_float32(backend):
    """--precision on both backends: a training step of each stream's model under each policy, the
    hidden layers in the chosen dtype, the softmax (and so the loss) and the weights in float32."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, "-c", PRECISION_STEP], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith(("float", "bfloat"))]
    assert [row[0] for row in rows] == ["float32", "bfloat16", "float16"]
    for precision, used, temporal_hidden, spatial_hidden, temporal_out, spatial_out, weights, finite in rows:
        assert used == backend and finite == "True"
        assert temporal_hidden == spatial_hidden == precision
        assert temporal_out == spatial_out == weights == "float32"


@pytest.mark.parametrize("damage", ["cut short", "garbage"])
def test_a_damaged_model_file_is_one_line_naming_it(tmp_path, damage):
    """Issue 29: Keras answered "File not found" for a file that exists, in a traceback."""
    path = tmp_path / "last.keras"
    if damage == "cut short":
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(path)
        path.write_bytes(path.read_bytes()[:200])
    else:
        path.write_bytes(b"not a model" * 100)
    with pytest.raises(DataError, match="not a whole Keras model file") as error:
        custom_layers.load_model(str(path))
    assert str(path) in str(error.value) and "\n" not in str(error.value)


# ---------------------------------------------------------------------------- spatial backbones beyond InceptionV3

OTHER_BACKBONES = [arch for arch in models.BACKBONES if arch != "inception_v3"]
# Each base's weights (the same at any image size) and the share of them that phase 2 trains.
BASE_PARAMS = {"inception_v3": (21_802_784, 0.51), "efficientnet_v2_s": (20_331_360, 0.51),
               "convnext_tiny": (27_820_128, 0.56), "xception": (20_861_480, 0.33)}
IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
# Each family's preprocessing as keras.applications defines it, written out: uint8 RGB -> the first convolution's input.
PREPROCESSING = {"inception_v3": lambda x: x / 127.5 - 1, "xception": lambda x: x / 127.5 - 1,
                 "efficientnet_v2_s": lambda x: x / 128 - 1,  # include_preprocessing of the V2 (not B*) models
                 "convnext_tiny": lambda x: (x - 255 * IMAGENET_MEAN) / (255 * IMAGENET_STD)}


def backbone_model(arch, num_classes=3):
    return models.spatial_model(num_classes, image_size=presets.MIN_IMAGE_SIZE[arch], weights="none", arch=arch)


def frames(arch, n=2, seed=5):
    size = presets.MIN_IMAGE_SIZE[arch]
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype(np.uint8)


def test_the_backbone_table_and_the_flags_choices_agree():
    assert tuple(models.BACKBONES) == presets.SPATIAL_ARCHS and presets.SPATIAL_ARCHS[0] == "inception_v3"
    assert set(BASE_PARAMS) == set(models.BACKBONES) == set(PREPROCESSING)
    assert all(arch in presets.MIN_IMAGE_SIZE for arch in models.BACKBONES)
    with pytest.raises(ValueError, match="unknown spatial arch 'resnet50'"):
        models.spatial_model(3, image_size=75, weights="none", arch="resnet50")
    with pytest.raises(ValueError, match="too small for xception"):
        models.spatial_model(3, image_size=70, weights="none", arch="xception")


@pytest.mark.slow
@pytest.mark.parametrize("arch", OTHER_BACKBONES)
def test_a_backbone_builds_trains_in_two_phases_predicts_and_reloads(arch, tmp_path):
    model = backbone_model(arch)
    spec = models.BACKBONES[arch]
    assert model.input.dtype == "uint8" and model.output.dtype == "float32"
    assert models.spatial_arch(model)[0] == arch
    base = model.get_layer(spec.base_name)
    params, phase2_share = BASE_PARAMS[arch]
    assert base.count_params() == params
    norms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert (not norms) == (arch in presets.WITHOUT_BATCHNORM)

    models.set_spatial_phase(model, 1)
    assert not any(layer.trainable for layer in base.layers)
    assert {w.path.split("/")[0] for w in model.trainable_weights} == {"fc1024", "predictions"}

    models.set_spatial_phase(model, 2)
    boundary = [layer.name for layer in base.layers].index(spec.last_frozen) + 1
    assert not any(layer.trainable for layer in base.layers[:boundary])
    assert all(layer.trainable for layer in base.layers[boundary:])
    unfrozen = sum(layer.count_params() for layer in base.layers[boundary:])
    assert unfrozen / params == pytest.approx(phase2_share, abs=0.005)
    trainable = {id(w) for w in model.trainable_weights}
    assert {id(w) for layer in base.layers[boundary:] for w in layer.trainable_weights} <= trainable
    assert not {id(w) for layer in base.layers[:boundary] for w in layer.weights} & trainable

    x = frames(arch)
    out = model.predict(x, verbose=0)
    assert out.shape == (2, 3) and np.all(np.isfinite(out))
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    path = str(tmp_path / "spatial.keras")
    model.save(path)
    loaded = custom_layers.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), out, rtol=1e-5, atol=1e-6)
    models.set_spatial_phase(loaded, 2)  # phase 2 starts from phase 1's saved model
    assert models.spatial_arch(loaded)[0] == arch


@pytest.mark.parametrize("arch", list(models.BACKBONES))
def test_each_backbone_preprocesses_inside_the_model_as_its_family(arch):
    """The first convolution sees what keras.applications' preprocessing of that family gives: the model takes
    raw uint8 frames, and fuse_test.py and demo.py, which load it, do no preprocessing of their own."""
    model = backbone_model(arch)
    base = model.get_layer(models.BACKBONES[arch].base_name)
    first_conv = next(layer for layer in base.layers if any(w.name == "kernel" for w in layer.weights))
    outside = model.layers[1:model.layers.index(base)]  # the spatial model's own layers before the base, if any
    assert len(outside) == (models.BACKBONES[arch].preprocessing == "tf")
    inside = keras.Model(base.input, first_conv.input)
    x = frames(arch)
    seen = keras.ops.convert_to_numpy(inside(outside[0](x) if outside else x))
    np.testing.assert_allclose(seen, PREPROCESSING[arch](x.astype(np.float64)), rtol=1e-5, atol=1e-5)
    if models.BACKBONES[arch].preprocessing == "tf":  # keras.applications' own function, for these two
        family = getattr(keras.applications, arch)
        np.testing.assert_allclose(seen, family.preprocess_input(x.astype(np.float32)), rtol=1e-6, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(models.BACKBONES))
def test_each_backbone_is_tested_on_25_samples_x_10_crops(arch, tmp_path):
    """The paper's test protocol on every backbone: fuse_test.py's scores of a video (25 frames x 10 crops cut on
    the device, each backbone's preprocessing inside its model) equal its predictions on the host-cut crops,
    averaged over each frame's 10 crops."""
    import types

    import fakedata
    import fuse_test
    import generators
    from twostream.datasets import ucf101
    root = str(tmp_path)
    splits = fakedata.write_dataset(root, groups=(1,), frames=30)
    video = ucf101.load_index(root, splits, 1, "test")[:1]
    size = presets.MIN_IMAGE_SIZE[arch]
    model = backbone_model(arch)
    args = types.SimpleNamespace(samples=25, crops="10", batch_size=250, data_dir=root, workers=1)
    scores = fuse_test.predict_videos(model, video, args, "spatial", {"image_size": size, "stack_length": 1})
    x, _ = generators.EvalSequence(video, root, "spatial", samples=25, crops="10", image_size=size)[0]
    host = model.predict(x, verbose=0).reshape(25, 10, -1).mean(axis=1)
    assert scores.shape == (1, 25, 3)
    np.testing.assert_allclose(scores[0], host, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- partial BN (TSN)

def batchnorm_state(layer):
    return [keras.ops.convert_to_numpy(w).copy() for w in (layer.gamma, layer.beta, layer.moving_mean,
                                                            layer.moving_variance)]


def train_steps(model, x, steps=2):
    model.compile(keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    for _ in range(steps):
        model.train_on_batch(x, np.arange(len(x)) % model.output_shape[-1])


def assert_only_the_first_batchnorm_changed(norms, before):
    first, *others = zip(norms, before, strict=True)
    for after, was in zip(batchnorm_state(first[0]), first[1]):
        assert not np.array_equal(after, was), f"{first[0].name} did not train"
    for layer, was in others:
        for after, old in zip(batchnorm_state(layer), was):
            np.testing.assert_array_equal(after, old, err_msg=layer.name)


def test_partial_batchnorm_trains_the_first_batchnorm_only():
    model = models.temporal_model(3, image_size=64, stack_length=2, dropout=0.5, norm="batchnorm")
    assert models.set_partial_batchnorm(model).name == "conv1_norm"
    norms = [model.get_layer("conv1_norm"), model.get_layer("conv2_norm")]
    before = [batchnorm_state(layer) for layer in norms]
    conv2 = keras.ops.convert_to_numpy(model.get_layer("conv2").kernel).copy()
    train_steps(model, np.random.default_rng(6).integers(0, 256, (4, 64, 64, 4)).astype(np.uint8))
    assert_only_the_first_batchnorm_changed(norms, before)
    assert not np.allclose(keras.ops.convert_to_numpy(model.get_layer("conv2").kernel), conv2)  # the rest trains
    with pytest.raises(DataError, match="has 0 BatchNormalization layers"):
        models.set_partial_batchnorm(models.temporal_model(3, image_size=64, stack_length=1))  # LRN


@pytest.mark.slow
def test_partial_batchnorm_in_phase_2_of_a_real_backbone():
    """Xception's phase 2 with partial BN: its exit flow trains, but of its 40 BatchNorm layers only the
    first (in the frozen entry flow) changes; the frozen convolutions stay as they were."""
    model = backbone_model("xception")
    models.set_spatial_phase(model, 2)
    first = models.set_partial_batchnorm(model)
    base = model.get_layer("xception")
    norms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 40 and first is norms[0] and first.name == "block1_conv1_bn"
    before = [batchnorm_state(layer) for layer in norms]
    kernels = {name: keras.ops.convert_to_numpy(base.get_layer(name).weights[0]).copy()
               for name in ("block1_conv1", "block14_sepconv2")}
    train_steps(model, frames("xception", n=4))
    assert_only_the_first_batchnorm_changed(norms, before)
    after = {name: keras.ops.convert_to_numpy(base.get_layer(name).weights[0]) for name in kernels}
    np.testing.assert_array_equal(after["block1_conv1"], kernels["block1_conv1"])  # frozen in phase 2
    assert not np.allclose(after["block14_sepconv2"], kernels["block14_sepconv2"])  # the exit flow trains
