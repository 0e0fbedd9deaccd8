"""Every dataset's settings in one plain table, and the command-line flags that set them: the
paper's for UCF-101 and HMDB-51, small and fast ones for the generated mini datasets. Each script takes its flag defaults from its part of the table
(data, spatial, temporal, test, demo), and the same values write its --help, so the two never
disagree. A flag given on the command line always wins. Nothing here imports Keras, so every
script's --help is instant.

The PAPER values are the paper's (Simonyan & Zisserman 2014, sections 5-6): SGD with momentum
0.9 and weight decay 5e-4 at batch 256; from scratch (temporal) learning rate 1e-2, 1e-3 after
50k iterations, 1e-4 after 70k, stop at 80k; fine-tuning (spatial) 1e-2, 1e-3 after 14k, stop at
20k; 25 samples x 10 crops per test video. README "Where this differs from the paper" lists the
mini presets' departures and why.
"""
import argparse
import os
import re

import ucf101

DATASETS = ("ucf101", "hmdb51", "synthetic", "synthetic_hmdb")
ARCHS = ("cnn_m_2048", "inception_v3")  # temporal networks
NORMS = ("lrn", "batchnorm")  # cnn_m_2048's normalisation layers
SAMPLINGS = ("classes", "videos")  # class-uniform (the paper's), or each epoch a shuffled pass over the videos
CROPS = ("random", "corners", "multiscale")  # training crop windows; random is the paper's
EVAL_CROPS = ("center", "10")  # test crops: the centre, or 4 corners + centre and their flips (the paper's)
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
PRECISIONS = ("float32", "bfloat16", "float16")  # --precision: float32, or Keras's mixed_<dtype> policy
AGGREGATIONS = ("mean", "vote")  # samples -> video score: mean softmax (the paper's) or votes (the seed's)

# The paper's settings, for UCF-101 and HMDB-51 alike.
PAPER = {
    "spatial": dict(image_size=224, batch_size=256, epoch_steps=1000, weights="imagenet", dropout=0.5,
                    phase1_optimizer="sgd", phase1_lr=1e-2, phase1_lr_drops=[14000], phase1_iterations=20000,
                    phase2_lr=1e-3, phase2_lr_drops=[14000], phase2_iterations=20000),
    "temporal": dict(image_size=224, batch_size=256, epoch_steps=1000, norm="lrn", dropout=0.9,
                     lr=1e-2, lr_drops=[50000, 70000], iterations=80000),
    "test": dict(crops="10"),
}
# The generated mini datasets: ~200 training videos of 6-12 classes at 128x96, trained in minutes on
# 2 CPU cores. No ImageNet weights offline: a random InceptionV3 base
# (models.calibrate_random_batchnorm) whose frozen features the new top learns from faster with
# RMSprop; centre crops only at test time, to keep the run short (README: where this differs).
MINI = {
    "spatial": dict(image_size=80, batch_size=16, epoch_steps=14, weights="none", dropout=0.5,
                    phase1_optimizer="rmsprop", phase1_lr=3e-3, phase1_lr_drops=[], phase1_iterations=420,
                    phase2_lr=1e-4, phase2_lr_drops=[], phase2_iterations=56),
    "temporal": dict(image_size=80, batch_size=16, epoch_steps=15, norm="lrn", dropout=0.5,
                     lr=1e-2, lr_drops=[200, 260], iterations=300),
    "test": dict(crops="center"),
}
PRESETS = {
    "ucf101": {"data": dict(data_dir="data/ucf101", splits_dir="splits", checkpoints="checkpoints/ucf101"), **PAPER},
    "hmdb51": {"data": dict(data_dir="data/hmdb51", splits_dir="data/hmdb51/splits",
                            checkpoints="checkpoints/hmdb51"), **PAPER},
    "synthetic": {"data": dict(data_dir="data/synthetic", splits_dir="data/synthetic/splits",
                               checkpoints="checkpoints/synthetic"), **MINI},
    # HMDB-51's layout, clip names and official split files, with other classes (synthetic.generate_hmdb51).
    "synthetic_hmdb": {"data": dict(data_dir="data/synthetic_hmdb", splits_dir="data/synthetic_hmdb/splits",
                                    checkpoints="checkpoints/synthetic_hmdb"), **MINI},
}


def values(dataset, script):
    """The defaults of `script` ("spatial", "temporal", "test" or "demo") for `dataset`."""
    return {**PRESETS[dataset]["data"], **PRESETS[dataset].get(script, {})}


def describe(script, key):
    """'ucf101, hmdb51: 224; synthetic, synthetic_hmdb: 80', the preset values of one flag, or None."""
    by_value = {}
    for name in DATASETS:
        if key in values(name, script):
            by_value.setdefault(show(values(name, script)[key]), []).append(name)
    return "; ".join(f"{', '.join(names)}: {value}" for value, names in by_value.items()) or None


def show(value):
    return " ".join(map(str, value)) or "none" if isinstance(value, list) else str(value)


def parse_shard(text):
    """'K/N' -> (K, N) with 1 <= K <= N."""
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise argparse.ArgumentTypeError(f"{text!r}: expected K/N with 1 <= K <= N, e.g. 3/8")
    return int(match[1]), int(match[2])


def add_flag(parser, script, flag, help, **kwargs):
    """parser.add_argument, with the presets' values (or the plain default) appended to the help."""
    key = kwargs.get("dest", flag.lstrip("-").replace("-", "_"))
    preset = describe(script, key)
    if preset:
        help = f"{help} ({preset})"
    elif "default" in kwargs and kwargs.get("action") not in ("store_true", "store_false"):
        help = f"{help} (default: %(default)s)"
    return parser.add_argument(flag, help=help, **kwargs)


def add_dataset_flags(parser, script):
    """--dataset, --split and the folders, which every script shares."""
    add_flag(parser, script, "--dataset", "ucf101 or hmdb51 with the paper's settings, or a generated mini dataset "
             "(synthetic: UCF-101's layout; synthetic_hmdb: HMDB-51's) with small, fast ones; it sets the "
             "defaults listed per dataset below", choices=DATASETS, default="ucf101")
    add_flag(parser, script, "--split", "which of the three official splits", type=int, choices=ucf101.SPLITS, default=1)
    add_flag(parser, script, "--data-dir", "folder holding jpegs_256/ and tvl1_flow/")
    add_flag(parser, script, "--splits-dir", "folder holding classInd.txt and the split lists")


def parse(parser, script, argv=None):
    """Parse with the chosen --dataset's preset as the defaults."""
    known, _ = parser.parse_known_args(argv)
    parser.set_defaults(**values(known.dataset, script))
    return parser.parse_args(argv)


def add_training_flags(parser, script):
    """The flags both training scripts share."""
    flag = lambda *a, **k: add_flag(parser, script, *a, **k)
    add_dataset_flags(parser, script)
    flag("--checkpoint-dir", "where checkpoints and logs go (default: checkpoints/<dataset>/<stream>)")
    flag("--class-limit", "train on the first N classes only (quick runs; recorded, and fuse_test.py "
         "compares such a run with no published figure)", type=int)
    flag("--max-videos", "train on an evenly spread subset of N videos (quick runs)", type=int)
    flag("--val-groups", "hold out the last N groups of the training list for validation and best.keras "
         "(0: none, the paper's fixed schedule; the test list is never used)", type=int, default=0)
    flag("--image-size", "crop side S in pixels", type=int)
    flag("--batch-size", "samples per optimizer step (the paper: 256)", type=int)
    flag("--accumulate", "split each batch into this many smaller ones and accumulate their gradients "
         "(when batch 256 does not fit the device: the optimizer still steps on the whole batch)",
         type=int, default=1)
    flag("--epoch-steps", "optimizer steps per epoch (checkpoint, log line and validation after each)", type=int)
    flag("--sampling", "classes: each sample draws a class uniformly, then one of its videos (the paper's); "
         "videos: each epoch is a shuffled pass over the videos", choices=SAMPLINGS, default="classes")
    flag("--crop", "training crops: 'random' S x S windows anywhere in the frame (the paper's), 'corners' "
         "(4 corners and centre) or TSN's 'multiscale'", choices=CROPS, default="random")
    flag("--momentum", "SGD momentum", type=float, default=0.9)
    flag("--weight-decay", "SGD weight decay as Caffe's (the paper's): added to the gradient before the "
         "momentum, on the kernels of convolutions and dense layers only (no biases, no BatchNorm)",
         type=float, default=5e-4)
    flag("--workers", "processes decoding JPEGs into training batches (1: in the training process); the default is "
         "every core this process may use", type=int, default=CORES)
    flag("--seed", "random seed for weights and sampling", type=int, default=0)
    flag("--distribute", "none; mirrored: all local GPUs (or logical CPUs); multiworker: the cluster in "
         "TF_CONFIG. TensorFlow backend only", choices=("none", "mirrored", "multiworker"), default="none")
    flag("--precision", "compute dtype: float32 (the paper's), or bfloat16 / float16 mixed precision (float32 "
         "weights, softmax and loss; bfloat16 for current GPUs, float16 for older ones)", choices=PRECISIONS,
         default="float32")
    flag("--jit", "XLA-compile the training step with TensorFlow (off: slower on CPU); JAX always compiles",
         action="store_true")
    flag("--overwrite", "start again from scratch, deleting the run in --checkpoint-dir", action="store_true")
    return parser


def parse_training(parser, script, argv=None):
    args = parse(parser, script, argv)
    if args.checkpoint_dir is None:
        args.checkpoint_dir = os.path.join("checkpoints", args.dataset, script)
    if args.accumulate < 1 or args.batch_size % args.accumulate:
        parser.error(f"--accumulate must divide --batch-size ({args.batch_size}) into equal parts")
    return args
