"""The two-stream networks' own Keras layers, the models that wrap a stream's network (TSN's segment consensus
for training, the test crops cut on the device for scoring) and load_model, which reads the training scripts'
saved models with these layers registered. models.py builds the networks from them."""
import os
import zipfile

import keras
import numpy as np
from keras import layers, ops

from twostream.errors import DataError
from twostream.networks import optimizers  # noqa: F401  (registers the optimizer that saved models' compile configs name)
from twostream.video.media import FLOW_BOUND, dequantize_flow

SMALLEST_PROBABILITY = float(np.finfo(np.float32).tiny)  # SegmentConsensus's floor

# ---------------------------------------------------------------------------- layers

@keras.saving.register_keras_serializable(package="two_stream")
class FlowNormalization(layers.Layer):
    """Quantised flow (uint8) -> displacement in pixels, minus each channel's mean over the image.

    Subtracting the mean of every u and v channel per sample is the paper's camera-motion
    compensation: a global translation of the frame becomes zero. `scale` maps the result to
    the range a pretrained network expects (1 / FLOW_BOUND gives Inception's [-1, 1]).
    """

    def __init__(self, bound=FLOW_BOUND, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.bound = bound
        self.scale = scale

    def call(self, inputs):
        x = dequantize_flow(ops.cast(inputs, self.compute_dtype), self.bound)
        x = x - ops.mean(x, axis=(1, 2), keepdims=True)
        return x * self.scale

    def get_config(self):
        return {**super().get_config(), "bound": self.bound, "scale": self.scale}


@keras.saving.register_keras_serializable(package="two_stream")
class LocalResponseNormalization(layers.Layer):
    """Cross-channel local response normalisation (Krizhevsky et al. 2012), as in CNN-M-2048:

        b_c = a_c / (bias + alpha * sum_{c' = c - depth_radius}^{c + depth_radius} a_c'^2) ** beta

    with channels beyond the edges counting as zero. The defaults are the paper's (n = 5, k = 2,
    alpha = 1e-4, beta = 0.75); the arguments mean what they mean in
    tf.nn.local_response_normalization, which computes the same thing (on TensorFlow only).
    """

    def __init__(self, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius = depth_radius
        self.bias = bias
        self.alpha = alpha
        self.beta = beta

    def call(self, inputs):
        x = ops.cast(inputs, "float32")  # a^2 overflows float16 above 256
        window = channel_window(x.shape[-1], self.depth_radius)
        # The windowed sum as a matmul with a band matrix: on 109x109x96 maps it measured faster
        # than shifted slices, a cumulative sum or a 1-D convolution, on TensorFlow and JAX.
        square_sum = ops.matmul(ops.square(x), window)
        x = x * ops.power(self.bias + self.alpha * square_sum, -self.beta)
        return ops.cast(x, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "depth_radius": self.depth_radius, "bias": self.bias,
                "alpha": self.alpha, "beta": self.beta}


@keras.saving.register_keras_serializable(package="two_stream")
class SegmentConsensus(layers.Layer):
    """TSN's segment consensus (Wang et al. 2016): the softmax outputs [B * K, N] of a video's K snippets ->
    [B, N], the softmax of the mean of the K snippets' logits.

    A snippet's log-probabilities are its logits minus one number (the log of its softmax's denominator), which a
    softmax over the classes ignores: the mean of the log-probabilities gives the softmax of the mean of the
    logits, from networks that end in a softmax. Probabilities below float32's smallest normal number (logits
    more than 87 apart) count as that number."""

    def __init__(self, segments, **kwargs):
        super().__init__(**kwargs)
        self.segments = segments

    def call(self, probabilities):
        log_probabilities = ops.log(ops.maximum(ops.cast(probabilities, "float32"), SMALLEST_PROBABILITY))
        per_video = ops.reshape(log_probabilities, (-1, self.segments, ops.shape(probabilities)[-1]))
        return ops.softmax(ops.mean(per_video, axis=1), axis=-1)

    def compute_output_shape(self, input_shape):
        batch, classes = input_shape
        return (None if batch is None else batch // self.segments, classes)

    def get_config(self):
        return {**super().get_config(), "segments": self.segments}


def channel_window(channels, radius):
    """[channels, channels] 0/1 matrix: column c sums channels c - radius .. c + radius."""
    index = np.arange(channels)
    return (np.abs(index[:, None] - index[None, :]) <= radius).astype("float32")


# ---------------------------------------------------------------------------- segment consensus

def with_segment_consensus(network, segments):
    """TSN's training model: `network` (a spatial or temporal model) on the K = `segments` snippets of each video
    at once (uint8 [B, K, S, S, C]), one network shared by all, their logits averaged before the softmax
    (SegmentConsensus), one loss. segments=1: `network` itself. Testing uses the network alone
    (snippet_network), on 25 samples x 10 crops as the paper."""
    if segments == 1:
        return network
    inputs = keras.Input((segments, *network.input_shape[1:]), dtype=network.inputs[0].dtype, name="segments")
    snippets = ops.reshape(inputs, (-1, *network.input_shape[1:]))  # [B * K, S, S, C]
    outputs = SegmentConsensus(segments, dtype="float32", name="segment_consensus")(network(snippets))
    return keras.Model(inputs, outputs, name=f"{network.name}_consensus")


def snippet_network(model):
    """The network that a segment-consensus model (with_segment_consensus) shares among its snippets, or `model`."""
    if not any(isinstance(layer, SegmentConsensus) for layer in model.layers):
        return model
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


# ---------------------------------------------------------------------------- test crops on the device

@keras.saving.register_keras_serializable(package="two_stream")
class EvalCrops(layers.Layer):
    """The test protocol's crops, cut on the device: whole samples uint8 [n, H, W, C] -> [n * k, S, S, C], each
    sample's k crops in the order of `windows` (sample-major, as generators.EvalSequence orders its crops).

    `windows`: [((top, left, S, S), flipped)], generators.eval_windows of the samples' (H, W). A flipped crop is
    mirrored left-right and, on flow stacks (flow=True), its u channels (u1, v1, u2, v2, ...: the even indices)
    become 255 - u, as generators.flip: mirrored horizontal motion changes sign. 255 - u on uint8 is u XOR 255."""

    def __init__(self, windows, flow=False, **kwargs):
        super().__init__(**kwargs)
        self.windows = [(tuple(int(n) for n in box), bool(flipped)) for box, flipped in windows]
        self.flow = bool(flow)
        if not self.windows or len({box[2:] for box, _ in self.windows}) != 1 or self.windows[0][0][2] != \
                self.windows[0][0][3]:
            raise ValueError(f"EvalCrops cuts square windows of one size, got {self.windows}")

    def call(self, samples):
        channels = samples.shape[-1]
        u_bytes = np.array([255 if c % 2 == 0 else 0 for c in range(channels)], np.uint8)  # XOR: u -> 255 - u
        crops = []
        for (top, left, height, width), flipped in self.windows:
            crop = samples[:, top:top + height, left:left + width, :]
            if flipped:
                crop = ops.flip(crop, axis=2)
                if self.flow:
                    crop = ops.bitwise_xor(crop, ops.convert_to_tensor(u_bytes, dtype=crop.dtype))
            crops.append(crop)
        size = self.windows[0][0][2]
        return ops.reshape(ops.stack(crops, axis=1), (-1, size, size, channels))  # [n, k, ...] -> [n * k, ...]

    def compute_output_shape(self, input_shape):
        size = self.windows[0][0][2]
        batch = None if input_shape[0] is None else input_shape[0] * len(self.windows)
        return (batch, size, size, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "windows": [[list(box), flipped] for box, flipped in self.windows],
                "flow": self.flow}


def with_eval_crops(network, image_shape, windows, flow=False):
    """`network` (a stream's model, on uint8 S x S crops) on whole samples of one shape, its crops cut on the
    device: uint8 [n, H, W, C] (frames or flow stacks fitted to the short side, uncropped) -> float32 [n, classes],
    each sample's softmax averaged over its crops (EvalCrops of `windows`, generators.eval_windows((H, W), S,
    mode)). The scores of the network on generators.EvalSequence's host-cut crops, averaged per sample, within
    float32 round-off; the host sends each sample once instead of its 10 crops (fuse_test.predict_videos)."""
    height, width = image_shape[:2]
    inputs = keras.Input((height, width, network.input_shape[-1]), dtype=network.inputs[0].dtype, name="samples")
    crops = EvalCrops(windows, flow, name="eval_crops")(inputs)
    scores = ops.cast(network(crops), "float32")
    scores = ops.mean(ops.reshape(scores, (-1, len(windows), scores.shape[-1])), axis=1)
    return keras.Model(inputs, scores, name=f"{network.name}_eval_crops")


# ---------------------------------------------------------------------------- checkpoints

def load_model(path):
    """A model saved by the training scripts (.keras), with this module's layers registered. A file that
    is not one (cut short, damaged, another format) is a DataError naming it: Keras says "File not found"."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such model file. Train it with spatial_train.py or temporal_train.py.")
    try:
        return keras.saving.load_model(path)
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: not a whole Keras model file ({str(error).splitlines()[0][:200]}). Train it "
                        "again (a killed run's same command saves it again from its backup), or name another "
                        "file") from error
