"""Each network option's cost: parameters and multiply-adds per sample, as a markdown table for the README.

    python benchmarks/model_costs.py                                  # 224x224, 101 classes, every network
    python benchmarks/model_costs.py --image-size 299 --spatial inception_v3,xception --temporal none

Rows: the spatial networks (models.BACKBONES, each with the spatial model's top: Dense 1024 and the softmax)
and the temporal ones (CNN-M-2048 and InceptionV3 on 2L flow channels, for each --stack-lengths L), all built
with random weights (nothing is downloaded). Columns: all parameters (millions; BatchNorm's moving statistics
included, as Keras's count_params counts them), those that train in phase 2 (spatial networks only:
models.set_spatial_phase(model, 2); the temporal networks have no phases and train every layer, but
for every BatchNorm layer after the first under --partial-bn) and GMACs: billions of
multiply-accumulates for one sample, one forward pass. A FLOP count that counts a multiply and an add
apart is twice this; the papers' "FLOPs" below are multiply-adds, as here.

What is counted (count_macs): every Conv1D/2D/3D (kernel h * w * in_channels / groups * filters per output
position, so grouped convolutions such as ConvNeXt's depthwise 7x7 count as such), DepthwiseConv1D/2D,
SeparableConv1D/2D (its depthwise and pointwise parts) and Dense (in * units, times every non-batch axis but
the last: ConvNeXt's pointwise Dense layers on 4-D maps count per position), walking nested models' layers
too (models.all_layers), from each layer's output shape. Left out: biases, BatchNorm, LayerNorm, activations,
pooling, padding, additions and multiplications (residuals, squeeze-and-excitation's scaling, ConvNeXt's layer
scale), preprocessing, FlowNormalization and CNN-M-2048's LRN (as models.py computes it, a 96x96 band matmul
per position, 0.11 G at 224; as a formula, 5 multiply-adds per value). A layer applied more than once (shared
weights) would count once: none of these networks shares a layer. Layers with a 2-D or larger weight that
the counter does not know are named on stderr.

Against published figures (this script at the figure's resolution; its rows carry the spatial model's top,
Dense 1024 and 101 classes, 0.9 to 2.2 M multiply-adds, where the papers' carry ImageNet's 1000-class one,
0.8 to 2.0 M: a difference below the last digit): InceptionV3 at 299: 5.71 GMACs (Szegedy et al. 2016: 5.7 G
multiply-adds); Xception at 299: 8.36 (the 8.4 usually quoted); ConvNeXt-Tiny at 224: 4.46 (Liu et al. 2022:
4.5 GFLOPs, which are MACs); EfficientNetV2-S at 384: 8.37 (google/automl's efficientnetv2 README: 8.4 B FLOPs at
its evaluation size, 384). So within 1% wherever a figure exists. Scaling a figure by the area is not exact:
InceptionV3 at 224 is 2.84, not 5.7 * (224 / 299)^2 = 3.2, since its unpadded stem shrinks the maps more than
in proportion (35x35 at mixed0 from 299, 25x25 from 224); EfficientNetV2-S, padded throughout, scales
(8.37 * (224 / 384)^2 = 2.85, as counted). Parameters: the bases (ours minus our top) plus a 1000-class top give
keras.applications' table to its 0.1 M: InceptionV3 23.9 M, Xception 22.9 M, ConvNeXtTiny 28.6 M, EfficientNetV2S
21.6 M.

Measured on the 2-core development machine (shared): the default table in 12 s after 6 s of imports, at most
2.4 GB of memory (clearing the Keras session after each network; 3.0 GB without).
"""
import argparse
import math
import os
import sys
import time

import keras
from keras import layers

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import models  # noqa: E402

COUNTED = (layers.Conv1D, layers.Conv2D, layers.Conv3D, layers.DepthwiseConv1D, layers.DepthwiseConv2D,
           layers.SeparableConv1D, layers.SeparableConv2D, layers.Dense)
HEADER = ("| network | input | parameters (M) | trainable in phase 2 (M) | GMACs per sample |\n"
          "|---|---|---:|---:|---:|")


def output_positions(layer):
    """The number of positions a layer's kernel is applied at: its output's axes but batch and channels."""
    shape = layer.output.shape
    axes = shape[2:] if getattr(layer, "data_format", None) == "channels_first" else shape[1:-1]
    return math.prod(axes)


def layer_macs(layer):
    """Multiply-adds of one call of `layer` on one sample: its kernels' sizes per output position (0 for the
    layers left out). A kernel's size is the MACs per position: h * w * in / groups * out for a convolution,
    in * out for Dense, h * w * in * multiplier for a depthwise kernel."""
    if not isinstance(layer, COUNTED):
        return 0
    kernels = [w for w in layer.weights if "kernel" in w.name]  # kernel; depthwise_kernel, pointwise_kernel
    return output_positions(layer) * sum(math.prod(k.shape) for k in kernels)


def count_macs(model):
    """Multiply-adds per sample of a model, nested models' layers included (each layer once)."""
    return sum(layer_macs(layer) for layer in models.all_layers(model))


def uncounted(model):
    """Class names of layers with a matrix-like weight that count_macs does not count."""
    return sorted({type(layer).__name__ for layer in models.all_layers(model)
                   if not isinstance(layer, (keras.Model, *COUNTED)) and any(len(w.shape) >= 2 for w in layer.weights)})


def parameters(weights):
    return sum(math.prod(w.shape) for w in weights)


def row(name, model, trainable=None):
    """A table row: name, input shape, parameters (M), trainable (M or '-'), GMACs."""
    shape = "x".join(str(n) for n in model.input_shape[1:])
    trainable = "-" if trainable is None else f"{trainable / 1e6:.2f}"
    return f"| {name} | {shape} | {parameters(model.weights) / 1e6:.2f} | {trainable} | {count_macs(model) / 1e9:.2f} |"


def spatial_row(arch, args):
    model = models.spatial_model(args.classes, args.image_size, weights="none", arch=arch)
    models.set_spatial_phase(model, 2)
    return model, row(f"spatial {arch}", model, parameters(model.trainable_weights))


def temporal_row(arch, stack_length, args):
    model = models.temporal_model(args.classes, args.image_size, stack_length, arch, weights=None, norm=args.norm)
    norm = f" ({args.norm})" if arch == "cnn_m_2048" else ""
    return model, row(f"temporal {arch}{norm}, L={stack_length}", model)


def networks(args):
    """(builder, arguments) of each row, in the table's order."""
    spatial = [(spatial_row, (arch, args)) for arch in args.spatial]
    return spatial + [(temporal_row, (arch, length, args)) for arch in args.temporal for length in args.stack_lengths]


def names(choices):
    """argparse type: a comma-separated subset of `choices`; 'none' for no network."""
    def parse(text):
        chosen = [] if text == "none" else text.split(",")
        unknown = [name for name in chosen if name not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; choose from {', '.join(choices)}")
        return chosen
    return parse


def lengths(text):
    """argparse type: comma-separated stack lengths."""
    return [int(n) for n in text.split(",")]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=224, help="side of the square input, every network "
                        "(default 224, the training crop)")
    parser.add_argument("--classes", type=int, default=101, help="classes of the softmax (default 101, UCF-101)")
    parser.add_argument("--spatial", type=names(tuple(models.BACKBONES)), default=list(models.BACKBONES),
                        help="spatial networks, comma-separated, or none (default all: "
                             f"{','.join(models.BACKBONES)})")
    parser.add_argument("--temporal", type=names(models.ARCHS), default=list(models.ARCHS),
                        help=f"temporal networks, comma-separated, or none (default all: {','.join(models.ARCHS)})")
    parser.add_argument("--stack-lengths", type=lengths, default=[10, 5],
                        help="flow stack lengths L of the temporal networks (2L input channels; default 10,5)")
    parser.add_argument("--norm", choices=models.NORMS, default="lrn",
                        help="CNN-M-2048's normalisation (default lrn, the paper's; batchnorm has the same MACs)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    print(HEADER, flush=True)
    for build, arguments in networks(args):
        model, line = build(*arguments)
        print(line, flush=True)
        if uncounted(model):
            print(f"{model.name}: not counted: {', '.join(uncounted(model))}", file=sys.stderr)
        keras.backend.clear_session()
    print(f"{args.image_size}x{args.image_size}, {args.classes} classes: {time.perf_counter() - start:.0f} s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
