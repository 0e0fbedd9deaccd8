"""models.py: layer shapes and parameter counts, training phases, cross-modality initialisation,
the normalisation inside the models, saving and loading. Runs with the TensorFlow or JAX backend."""
import keras
import numpy as np
import pytest

import models
import ucf101

SMALL = models.MIN_INCEPTION_SIZE  # 75: the smallest InceptionV3 input, fastest to build


# ---------------------------------------------------------------------------- CNN-M-2048

def test_cnn_m_2048_shapes_at_224_match_the_paper():
    model = models.temporal_model(101, image_size=224, stack_length=10)
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert model.input_shape == (None, 224, 224, 20)
    assert model.input.dtype == "uint8"
    assert shapes["conv1"] == (109, 109, 96)
    assert shapes["pool1"] == (54, 54, 96)
    assert shapes["conv2"] == (26, 26, 256)
    assert shapes["pool2"] == (13, 13, 256)
    assert shapes["conv3"] == shapes["conv4"] == shapes["conv5"] == (13, 13, 512)
    assert shapes["pool5"] == (6, 6, 512)
    assert shapes["full6"] == (4096,)
    assert shapes["full7"] == (2048,)
    assert shapes["predictions"] == (101,)

    conv1 = 7 * 7 * 20 * 96 + 4 * 96  # no bias (BatchNorm follows): gamma, beta, moving mean and variance
    conv2 = 5 * 5 * 96 * 256 + 4 * 256
    conv3 = 3 * 3 * 256 * 512 + 512
    conv4 = conv5 = 3 * 3 * 512 * 512 + 512
    full6 = 6 * 6 * 512 * 4096 + 4096
    full7 = 4096 * 2048 + 2048
    softmax = 2048 * 101 + 101
    assert model.count_params() == conv1 + conv2 + conv3 + conv4 + conv5 + full6 + full7 + softmax
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [0.9, 0.9]


def test_cnn_m_2048_works_at_the_mini_datasets_size():
    model = models.temporal_model(12, image_size=80, stack_length=10, dropout=0.5)
    assert tuple(model.get_layer("pool5").output.shape[1:]) == (2, 2, 512)
    out = model.predict(np.full((2, 80, 80, 20), 128, np.uint8), verbose=0)
    assert out.shape == (2, 12)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="too small"):
        models.temporal_model(3, image_size=40, stack_length=1)


# ---------------------------------------------------------------------------- normalisation

def flow_normalization(x, **kwargs):
    return keras.ops.convert_to_numpy(models.FlowNormalization(**kwargs)(np.asarray(x, np.uint8)))


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


def test_spatial_model_top(spatial):
    assert spatial.input.dtype == "uint8"
    assert spatial.get_layer("fc1024").units == 1024
    assert spatial.get_layer("predictions").units == 5
    assert spatial.get_layer("predictions").dtype_policy.compute_dtype == "float32"


def test_phase_1_trains_only_the_new_top(spatial):
    models.set_spatial_phase(spatial, 1)
    base = spatial.get_layer("inception_v3")
    assert not any(layer.trainable for layer in base.layers)
    trainable = {w.path.split("/")[0] for w in spatial.trainable_weights}
    assert trainable == {"fc1024", "predictions"}


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


def test_random_base_batchnorm_calibration_restores_the_feature_scale():
    model = models.spatial_model(3, image_size=SMALL, weights="none")
    x = np.random.default_rng(1).integers(0, 256, (8, SMALL, SMALL, 3)).astype(np.uint8)
    features = keras.Model(model.input, model.get_layer("avg_pool").output)
    before = np.std(features.predict(x, verbose=0))
    models.calibrate_random_batchnorm(model, x)
    after = np.std(features.predict(x, verbose=0))
    assert before < 1e-2 < 0.1 < after < 10
    norms = [layer for layer in models.all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    assert all("_moments" not in vars(layer) and layer.momentum == 0.99 for layer in norms)
    assert all(np.all(keras.ops.convert_to_numpy(layer.moving_mean) == 0) for layer in norms)


# ---------------------------------------------------------------------------- cross-modality

def test_cross_modality_kernel_is_the_rgb_mean_replicated():
    kernel = np.random.default_rng(0).normal(size=(3, 3, 3, 8)).astype(np.float32)
    flow = models.cross_modality_kernel(kernel, 20)
    assert flow.shape == (3, 3, 20, 8)
    for channel in range(20):
        np.testing.assert_allclose(flow[:, :, channel], kernel.mean(axis=2), rtol=1e-6)


def test_cross_modality_initialisation_of_the_temporal_inception(tmp_path):
    rgb = models.inception_v3((SMALL, SMALL, 3))  # random weights stand in for ImageNet's
    path = str(tmp_path / "rgb.weights.h5")
    rgb.save_weights(path)
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
    with pytest.raises(ucf101.DataError, match="not found"):
        models.weights_file(str(tmp_path / "nothing.h5"))

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(ucf101.DataError, match=r"--weights /path/to/inception_v3_weights_tf_dim_ordering_tf_kernels_notop\.h5"):
        models.spatial_model(3, image_size=SMALL, weights="imagenet")
    with pytest.raises(ValueError, match="no ImageNet weights for cnn_m_2048"):
        models.temporal_model(3, image_size=64, weights="imagenet")
    with pytest.raises(ucf101.DataError, match="no such model file"):
        models.load_model(str(tmp_path / "missing.keras"))


def test_saved_model_reloads_and_predicts_the_same(tmp_path):
    model = models.temporal_model(3, image_size=64, stack_length=2, dropout=0.5)
    x = np.random.default_rng(2).integers(0, 256, (3, 64, 64, 4)).astype(np.uint8)
    model.compile("sgd", loss="sparse_categorical_crossentropy")
    model.fit(x, np.array([0, 1, 2]), epochs=1, verbose=0)  # moves the BatchNorm statistics off their start
    path = str(tmp_path / "temporal.keras")
    model.save(path)
    loaded = models.load_model(path)
    assert isinstance(loaded.get_layer("flow_normalization"), models.FlowNormalization)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_mixed_precision_keeps_softmax_and_normalisation_in_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = models.temporal_model(3, image_size=64, stack_length=1)
        assert model.get_layer("conv1").compute_dtype == "float16"
        assert model.get_layer("flow_normalization").compute_dtype == "float32"
        assert model.output.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")
