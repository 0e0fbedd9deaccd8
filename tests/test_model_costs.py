"""benchmarks/model_costs.py: its multiply-add counter against hand counts on tiny models (strided and padded,
grouped, depthwise and separable convolutions, Dense on a map and on a vector, a nested model), and its table
with faults.py's tiny stand-ins for InceptionV3 and CNN-M-2048 (no keras.applications network is built)."""
import os
import sys

import keras
import pytest
from keras import layers

import faults

sys.path.insert(0, os.path.join(faults.REPO, "benchmarks"))

import model_costs  # noqa: E402 (benchmarks/ is not a package)

# Per layer, MACs = output positions x kernel size, on an 11x11x3 input:
CONV = 6 * 6 * (3 * 3 * 3 * 4)  # Conv2D 4, 3x3, stride 2, "same": 6x6x4
GROUPED = 3 * 3 * (3 * 3 * 2 * 8)  # zero-padded to 8x8, Conv2D 8, 3x3, stride 2, 2 groups (4 / 2 inputs each): 3x3x8
DEPTHWISE = 3 * 3 * (3 * 3 * 8 * 2)  # DepthwiseConv2D 3x3, multiplier 2, "same": 3x3x16
SEPARABLE = 2 * 2 * (3 * 3 * 16 + 16 * 6)  # SeparableConv2D 6, 3x3, stride 2, "same": depthwise + pointwise, 2x2x6
DENSE_ON_MAP = 2 * 2 * (6 * 5)  # Dense 5 on the 2x2x6 map: per position
DENSE = 20 * 3  # Dense 3 on the flattened 2x2x5


def tiny_convnet():
    """The convolutions above, with the layers left out (BatchNorm, activations, padding, pooling, an addition)."""
    inputs = keras.Input((11, 11, 3))
    x = layers.Conv2D(4, 3, strides=2, padding="same")(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.Conv2D(8, 3, strides=2, groups=2)(layers.ZeroPadding2D(1)(x))
    y = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)
    x = layers.Add()([y, layers.Concatenate()([x, x])])
    x = layers.SeparableConv2D(6, 3, strides=2, padding="same")(x)
    x = layers.MaxPooling2D(1)(layers.LayerNormalization()(x))
    return keras.Model(inputs, x, name="tiny_convnet")


def test_each_layer_counts_its_kernel_per_output_position():
    model = tiny_convnet()
    counts = [model_costs.layer_macs(layer) for layer in model.layers if model_costs.layer_macs(layer)]
    assert counts == [CONV, GROUPED, DEPTHWISE, SEPARABLE]
    assert model_costs.count_macs(model) == CONV + GROUPED + DEPTHWISE + SEPARABLE


def test_dense_counts_per_position_and_a_nested_model_once():
    inputs = keras.Input((11, 11, 3))
    x = tiny_convnet()(inputs)
    x = layers.Dense(5)(x)
    outputs = layers.Dense(3)(layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    assert model_costs.count_macs(model) == CONV + GROUPED + DEPTHWISE + SEPARABLE + DENSE_ON_MAP + DENSE


def test_channels_first_positions_are_the_last_axes():
    inputs = keras.Input((3, 10, 10))
    model = keras.Model(inputs, layers.Conv2D(4, 3, data_format="channels_first")(inputs))
    assert model_costs.count_macs(model) == 8 * 8 * (3 * 3 * 3 * 4)


def test_a_layer_with_a_kernel_it_does_not_count_is_named():
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, layers.Conv2DTranspose(2, 3)(layers.Conv2D(2, 1)(inputs)))
    assert model_costs.uncounted(model) == ["Conv2DTranspose"]
    assert model_costs.uncounted(tiny_convnet()) == []


def test_the_table_with_the_tiny_stand_ins(tiny_nets, capsys):
    model_costs.main(["--image-size", "32", "--classes", "7", "--spatial", "inception_v3", "--temporal", "cnn_m_2048",
                      "--stack-lengths", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == model_costs.HEADER.splitlines()
    assert [line.split(" | ")[:2] for line in lines[2:]] == [
        ["| spatial inception_v3", "32x32x3"], ["| temporal cnn_m_2048 (lrn), L=2", "32x32x4"]]


def test_the_spatial_row_counts_phase_2s_trainable_weights(tiny_nets):
    # faults.py's InceptionV3: conv2d 3x3 stride 4 (8x8x4 at 32), mixed8 4 -> 4 and mixed9 4 -> 8, both 3x3 "same"
    model, _ = model_costs.spatial_row("inception_v3", model_costs.parse_args(["--image-size", "32", "--classes", "7"]))
    top = 8 * 1024 + 1024 * 7
    assert model_costs.count_macs(model) == 64 * 9 * (3 * 4 + 4 * 4 + 4 * 8) + top
    assert model_costs.parameters(model.trainable_weights) == (9 * 4 * 8 + 8) + top + 1024 + 7  # mixed9 and the top


def test_unknown_networks_are_refused(capsys):
    with pytest.raises(SystemExit):
        model_costs.parse_args(["--spatial", "resnet50"])
    assert "unknown resnet50; choose from inception_v3" in capsys.readouterr().err
    assert model_costs.parse_args(["--temporal", "none"]).temporal == []
