"""The two streams' ConvNets, built with keras.ops only (TensorFlow or JAX backend).

Both models take uint8 images and normalise them inside the model, so that the data pipeline,
demo.py and fuse_test.py feed raw frames and flow stacks:

    spatial   InceptionV3 (ImageNet) -> global average pool -> Dense 1024 -> dropout -> softmax; beyond the
              paper, EfficientNetV2-S, ConvNeXt-Tiny or Xception in its place (BACKBONES)
    temporal  CNN-M-2048 (Simonyan & Zisserman 2014, from scratch) on 2L stacked flow channels, or
              InceptionV3 with cross-modality initialisation from ImageNet (Wang et al. 2016, TSN)

Normalisation: the temporal CNN-M-2048 is the paper's, with local response normalisation
(Krizhevsky et al. 2012) after conv1 only: the paper drops the second normalisation layer in the
temporal net. norm="batchnorm" puts BatchNormalization after conv1 and conv2 instead, which
converges in far fewer steps from scratch at 0.9 dropout.

The layers of our own (FlowNormalization, local response normalisation, segment consensus, test crops), the
models that wrap a network and load_model are in twostream/networks/custom_layers.py.
"""
import math
import os
import typing
import warnings

import keras
import numpy as np
from keras import layers, ops

from twostream.datasets.frames import STACK_LENGTH
from twostream.errors import DataError
from twostream.networks.custom_layers import FlowNormalization, LocalResponseNormalization
from twostream.protocol.presets import ARCHS, CROP_SIZE, MIN_IMAGE_SIZE, NORMS, PAPER, PHASE2_LAYERS, SPATIAL_ARCHS  # noqa: F401  (ARCHS, NORMS: the flags' choices, in one place)
from twostream.video.media import FLOW_BOUND

MIN_INCEPTION_SIZE = MIN_IMAGE_SIZE["inception_v3"]  # keras.applications.InceptionV3 without its top
APPLICATIONS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


# ---------------------------------------------------------------------------- backbones

class Backbone(typing.NamedTuple):
    """A spatial network from keras.applications, without its top."""
    application: object  # its constructor
    base_name: str  # the name Keras gives it: the spatial model's layer that holds it
    # "tf": keras.applications' preprocess_input in "tf" mode, x / 127.5 - 1, a layer of the spatial model
    # (inception_preprocessing); "include_preprocessing": the application's own first layers
    preprocessing: str
    last_frozen: str  # the last layer of the base that phase 2 leaves frozen: it trains every layer after it
    weights_url: str  # its ImageNet weights without the top, as keras.applications downloads them
    weights_hash: str


# The spatial networks: InceptionV3 (the paper reproduction's, as the seed's) and three stronger ones. Phase 2 of
# each trains about the top half of the base's weights, from a block boundary: InceptionV3 its top two inception
# blocks (mixed9, mixed10: 51% of the base), Xception its exit flow (blocks 13 and 14: 33%), ConvNeXt-Tiny its last
# stage (and the downsampling into it: 56%), EfficientNetV2-S the last ten blocks of its last stage and its top
# convolution (6f to 6o: 51%). Preprocessing, exactly as keras.applications: InceptionV3 and Xception x / 127.5 - 1,
# EfficientNetV2-S x / 128 - 1 (its include_preprocessing), ConvNeXt ImageNet's mean and standard deviation per
# channel (its include_preprocessing).
BACKBONES = {
    "inception_v3": Backbone(
        keras.applications.InceptionV3, "inception_v3", "tf", "mixed8",
        APPLICATIONS_URL + "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "bcbd6486424b2319ff4ef7d526e38f63"),
    "efficientnet_v2_s": Backbone(
        keras.applications.EfficientNetV2S, "efficientnetv2-s", "include_preprocessing", "block6e_add",
        APPLICATIONS_URL + "efficientnet_v2/efficientnetv2-s_notop.h5", "af0682fb74e8c54910f2d4393339c070"),
    "convnext_tiny": Backbone(
        keras.applications.ConvNeXtTiny, "convnext_tiny", "include_preprocessing",
        "convnext_tiny_stage_2_block_8_identity", APPLICATIONS_URL + "convnext/convnext_tiny_notop.h5",
        "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1"),
    "xception": Backbone(
        keras.applications.Xception, "xception", "tf", "block12_sepconv3_bn",
        APPLICATIONS_URL + "xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "b0042744bf5b25fce3cb969f33bebb97"),
}
LAST_FROZEN_BLOCK = BACKBONES["inception_v3"].last_frozen  # mixed8 (tests/faults.py's stand-in has such a layer)


def inception_preprocessing(name="inception_preprocessing"):
    """uint8 0..255 -> [-1, 1], as keras.applications.inception_v3.preprocess_input (and xception's: both are
    the "tf" mode), in float32 whatever the precision policy."""
    return layers.Rescaling(1 / 127.5, offset=-1.0, dtype="float32", name=name)


# ---------------------------------------------------------------------------- InceptionV3 and the other backbones

def imagenet_weights_file(arch="inception_v3"):
    """The ImageNet weights (no top) of `arch` from Keras's cache, downloading them if needed: the same file
    keras.applications downloads, so that an offline machine can be given it as a path."""
    url, file_hash = BACKBONES[arch].weights_url, BACKBONES[arch].weights_hash
    name = os.path.basename(url)
    try:
        return keras.utils.get_file(name, url, cache_subdir="models", file_hash=file_hash)
    except Exception as error:  # keras.utils.get_file raises a bare Exception when offline
        raise DataError(
            f"Could not download the ImageNet {arch} weights ({error}).\n"
            f"Without internet, fetch {url} on another machine and pass its path, e.g.\n"
            f"  --weights /path/to/{name}\n"
            f"(or copy it to ~/.keras/models/), or train from scratch with --weights none.") from error


def weights_file(weights, arch="inception_v3"):
    """'imagenet' | 'none' | None | path -> None or the path of an existing file (`arch`'s for 'imagenet')."""
    if weights in (None, "none", "None"):
        return None
    if weights == "imagenet":
        return imagenet_weights_file(arch)
    if not os.path.isfile(weights):
        raise DataError(f"{weights}: weights file not found. Pass 'imagenet', 'none' or the path of a file.")
    return weights


def backbone(arch, input_shape, weights_path=None):
    """keras.applications' `arch` without its top, random or loaded from a local .h5 file."""
    if min(input_shape[:2]) < MIN_IMAGE_SIZE[arch]:
        raise ValueError(f"image size {input_shape[:2]} is too small for {arch} (minimum {MIN_IMAGE_SIZE[arch]})")
    spec = BACKBONES[arch]
    options = {"include_preprocessing": True} if spec.preprocessing == "include_preprocessing" else {}
    with warnings.catch_warnings():  # "usually expects 1 or 3 input channels": 2L is intended
        warnings.simplefilter("ignore", UserWarning)
        return spec.application(include_top=False, weights=weights_path, input_shape=input_shape, **options)


def inception_v3(input_shape, weights_path=None):
    """keras.applications.InceptionV3 without its top: the network both streams build it with (tests replace
    this function with a tiny stand-in, tests/faults.py)."""
    return backbone("inception_v3", input_shape, weights_path)


def spatial_base(arch, input_shape, weights_path=None):
    """The spatial network's base: InceptionV3 through inception_v3, the others through backbone."""
    if arch == "inception_v3":
        return inception_v3(input_shape, weights_path)
    return backbone(arch, input_shape, weights_path)


def cross_modality_kernel(kernel, channels):
    """First-conv kernel [h, w, 3, out] of an RGB network -> [h, w, channels, out]:
    the mean over the RGB channels, replicated over the flow channels (TSN's initialisation)."""
    mean = np.mean(kernel, axis=2, keepdims=True)
    return np.repeat(mean, channels, axis=2)


def cross_modality_transfer(rgb_model, flow_model):
    """Copy an RGB network's weights into the same network built for 2L flow channels."""
    first_conv = next(layer for layer in rgb_model.layers if isinstance(layer, layers.Conv2D))
    channels = flow_model.input_shape[-1]
    for rgb_layer, flow_layer in zip(rgb_model.layers, flow_model.layers, strict=True):
        weights = rgb_layer.get_weights()
        if rgb_layer is first_conv:
            weights = [cross_modality_kernel(weights[0], channels)] + weights[1:]
        flow_layer.set_weights(weights)


def copy_weights(source, target, skip=("predictions",)):
    """Initialise `target` from `source` layer by layer, matched by name (fine-tuning a temporal net
    trained on another dataset: the paper's Table 2). Layers named in `skip` (the softmax, whose
    classes differ) and layers whose weights differ in shape keep their own -> names copied."""
    copied = []
    for layer in target.layers:
        if layer.name in skip or not layer.weights:
            continue
        try:
            weights = source.get_layer(layer.name).get_weights()
        except ValueError:  # no such layer in source
            continue
        if [w.shape for w in weights] == [tuple(w.shape) for w in layer.weights]:
            layer.set_weights(weights)
            copied.append(layer.name)
    if not copied:
        raise DataError(f"no layer of {source.name} matches {target.name}: is it a model of the same architecture?")
    return copied


# ---------------------------------------------------------------------------- spatial stream

def spatial_model(num_classes, image_size=CROP_SIZE, weights="imagenet", dropout=PAPER["spatial"]["dropout"],
                  arch="inception_v3"):
    """A backbone (BACKBONES: InceptionV3, the paper reproduction's) + a new top, on uint8 RGB crops. weights:
    'imagenet', 'none' or an .h5 path. The preprocessing is a layer of the model, so that a saved model takes
    raw frames wherever it is loaded (fuse_test.py, demo.py)."""
    if arch not in BACKBONES:
        raise ValueError(f"unknown spatial arch {arch!r}; choose from {', '.join(BACKBONES)}")
    inputs = keras.Input((image_size, image_size, 3), dtype="uint8", name="rgb")
    x = inputs
    if BACKBONES[arch].preprocessing == "tf":  # InceptionV3's keeps the name it had before the other backbones
        x = inception_preprocessing("inception_preprocessing" if arch == "inception_v3" else f"{arch}_preprocessing")(x)
    x = spatial_base(arch, (image_size, image_size, 3), weights_file(weights, arch))(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dense(1024, activation="relu", name="fc1024")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="spatial")


def set_spatial_phase(model, phase, phase2_layers="last_blocks"):
    """Phase 1: only the new top trains. Phase 2: also the base's last blocks, after its last_frozen layer
    (InceptionV3: the top two inception blocks, after mixed8; BACKBONES says each network's), or with
    phase2_layers="all" the whole base (TSN's fine-tuning).

    A frozen BatchNormalization layer runs in inference mode in Keras 3, so the frozen part keeps
    its ImageNet statistics. Compile the model again after calling this.
    """
    if phase not in (1, 2):
        raise ValueError(f"phase must be 1 or 2, got {phase}")
    model.trainable = True
    arch, base = spatial_arch(model)
    names = [layer.name for layer in base.layers]
    if phase2_layers not in PHASE2_LAYERS:
        raise ValueError(f"unknown phase2_layers {phase2_layers!r}; choose from {', '.join(PHASE2_LAYERS)}")
    first_trainable = len(names) if phase == 1 else 0 if phase2_layers == "all" else \
        names.index(BACKBONES[arch].last_frozen) + 1
    for index, layer in enumerate(base.layers):  # one by one: model.trainable = True leaves these frozen
        layer.trainable = index >= first_trainable
    return model


def spatial_arch(model):
    """(arch, base) of a spatial model: the backbone whose base_name one of its layers has."""
    names = {layer.name for layer in model.layers}
    arch = next((arch for arch, spec in BACKBONES.items() if spec.base_name in names), None)
    if arch is None:
        raise ValueError(f"{model.name}: no layer is a backbone of {', '.join(BACKBONES)}")
    return arch, model.get_layer(BACKBONES[arch].base_name)


def set_partial_batchnorm(model):
    """TSN's partial BN (Wang et al. 2016): every BatchNormalization layer but the first frozen, in inference
    mode with its pretrained scale, shift and statistics; the first trains, to adapt to the new input (flow
    instead of RGB, another dataset). Fine-tuning on a few thousand videos would otherwise re-estimate every
    layer's statistics from small batches and overfit them. Call after set_spatial_phase (in phase 2: its
    frozen layers stay frozen, but the first BatchNorm trains), then compile again -> the first layer."""
    norms = [layer for layer in all_layers(model) if isinstance(layer, layers.BatchNormalization)]
    if len(norms) < 2:
        raise DataError(f"{model.name} has {len(norms)} BatchNormalization layers: partial BN needs two or more "
                        "(ConvNeXt normalises with LayerNorm, CNN-M-2048 with LRN: use --norm batchnorm)")
    norms[0].trainable = True
    for layer in norms[1:]:
        layer.trainable = False
    return norms[0]


def calibrate_random_batchnorm(model, x):
    """Give a randomly initialised network's BatchNorm layers statistics from the batch `x`.

    For --weights none: with their initial statistics (mean 0, variance 1) the frozen base's
    features shrink ~1e-4-fold by mixed10, too small for the new top to learn from (its ReLUs
    die). One pass sets each layer's variance to the mean square of its input, layer after
    layer, and leaves the means at 0: subtracting means would remove much of the frame's global
    colour (on the mini dataset a linear probe on the features tells its three colours apart in
    96% of test videos this way, in 65% after mean subtraction).
    The pass runs on a copy of the model whose BatchNorm layers are MeanSquareBatchNorm; the
    statistics they record are then copied into the model's own layers, frozen or not.
    """
    twin = keras.models.clone_model(model, clone_function=mean_square_twin, recursive=True)
    pairs = [(layer, copy) for layer, copy in zip(all_layers(model), all_layers(twin), strict=True)
             if not isinstance(layer, keras.Model)]
    for layer, copy in pairs:
        copy.set_weights(layer.get_weights())
    twin(x, training=True)
    for layer, copy in pairs:
        if isinstance(copy, MeanSquareBatchNorm):
            layer.moving_mean.assign(copy.moving_mean)
            layer.moving_variance.assign(copy.moving_variance)


class MeanSquareBatchNorm(layers.BatchNormalization):
    """BatchNormalization that in training mode takes its statistics from this batch alone, with
    mean 0 and the mean square as variance, keeps them as its moving statistics and normalises
    by them. Only calibrate_random_batchnorm uses it."""

    def call(self, inputs, training=None, mask=None):
        if training:
            x = ops.cast(inputs, "float32")
            channel_axis = self.axis % len(x.shape)
            other_axes = [axis for axis in range(len(x.shape)) if axis != channel_axis]
            self.moving_mean.assign(ops.zeros(self.moving_mean.shape))
            self.moving_variance.assign(ops.mean(ops.square(x), axis=other_axes))
        return super().call(inputs, training=False, mask=mask)


def mean_square_twin(layer):
    """clone_model's clone_function: a new copy of `layer`, a MeanSquareBatchNorm for a BatchNorm."""
    if isinstance(layer, layers.BatchNormalization):
        return MeanSquareBatchNorm.from_config(layer.get_config())
    return layer.__class__.from_config(layer.get_config())


def all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


# ---------------------------------------------------------------------------- temporal stream

def temporal_model(num_classes, image_size=CROP_SIZE, stack_length=STACK_LENGTH, arch="cnn_m_2048", weights=None,
                   dropout=PAPER["temporal"]["dropout"], norm="lrn"):
    """The temporal ConvNet on uint8 stacks of L flow pairs (channels u1, v1, ..., uL, vL).

    cnn_m_2048: from scratch (weights None) or a .weights.h5/.keras file of the same model;
    norm is one of NORMS (see cnn_m_2048).
    inception_v3: weights 'imagenet' or an RGB .h5 file -> cross-modality initialisation; it has
    its own BatchNorm layers and ignores norm.
    """
    shape = (image_size, image_size, 2 * stack_length)
    inputs = keras.Input(shape, dtype="uint8", name="flow")
    if arch == "cnn_m_2048":
        if weights == "imagenet":
            raise ValueError("there are no ImageNet weights for cnn_m_2048; use --arch inception_v3 or --weights none")
        x = FlowNormalization(dtype="float32", name="flow_normalization")(inputs)
        model = keras.Model(inputs, cnn_m_2048(x, num_classes, dropout, norm), name="temporal")
        path = weights_file(weights)
        if path:
            model.load_weights(path)
        return model
    if arch == "inception_v3":
        x = FlowNormalization(scale=1 / FLOW_BOUND, dtype="float32", name="flow_normalization")(inputs)
        x = flow_inception_v3(shape, weights_file(weights))(x)
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(dropout, name="dropout")(x)
        outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
        return keras.Model(inputs, outputs, name="temporal")
    raise ValueError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)}")


def flow_inception_v3(input_shape, rgb_weights_path=None):
    flow = inception_v3(input_shape)
    if rgb_weights_path:
        rgb = inception_v3(input_shape[:2] + (3,), rgb_weights_path)
        cross_modality_transfer(rgb, flow)
    return flow


def cnn_m_2048(x, num_classes, dropout, norm="lrn"):
    """CNN-M-2048 (Chatfield et al. 2014) as the two-stream paper's temporal net; Caffe's ceil-mode
    pooling gives its feature maps: 224 -> conv1 109 -> 54 -> conv2 26 -> 13 -> conv3-5 13 -> 6.

    norm="lrn" (the paper's): conv1 -> ReLU -> LRN -> pool1, conv2 -> ReLU -> pool2.
    norm="batchnorm": conv1 and conv2 without bias -> BatchNorm -> ReLU, then pooling.
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose from {', '.join(NORMS)}")
    if norm == "lrn":
        x = layers.Conv2D(96, 7, strides=2, activation="relu", name="conv1")(x)
        x = LocalResponseNormalization(name="norm1")(x)
    else:
        x = conv_batchnorm_relu(x, 96, 7, 2, "conv1")
    x = caffe_max_pool(x, "pool1")
    x = layers.ZeroPadding2D(1, name="conv2_pad")(x)
    if norm == "lrn":
        x = layers.Conv2D(256, 5, strides=2, activation="relu", name="conv2")(x)
    else:
        x = conv_batchnorm_relu(x, 256, 5, 2, "conv2")
    x = caffe_max_pool(x, "pool2")
    for i in (3, 4, 5):
        x = layers.Conv2D(512, 3, padding="same", activation="relu", name=f"conv{i}")(x)
    x = caffe_max_pool(x, "pool5")
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(4096, activation="relu", name="full6")(x)
    x = layers.Dropout(dropout, name="drop6")(x)
    x = layers.Dense(2048, activation="relu", name="full7")(x)
    x = layers.Dropout(dropout, name="drop7")(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)


def conv_batchnorm_relu(x, filters, size, stride, name):
    x = layers.Conv2D(filters, size, strides=stride, use_bias=False, name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_norm")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def caffe_max_pool(x, name):
    """3x3 stride 2 max pooling with Caffe's output size ceil((n - 3) / 2) + 1. The extra
    bottom/right padding is zeros, which cannot win a max after a ReLU."""
    n = x.shape[1]
    if n < 3:
        raise ValueError(f"{name}: feature map {n}x{n} is too small; use an image size of "
                         f"{MIN_IMAGE_SIZE['cnn_m_2048']} or more for cnn_m_2048")
    pad = 2 * math.ceil((n - 3) / 2) + 3 - n
    if pad:
        x = layers.ZeroPadding2D(((0, pad), (0, pad)), name=f"{name}_pad")(x)
    return layers.MaxPooling2D(3, strides=2, name=name)(x)
