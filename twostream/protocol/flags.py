"""The command-line flags of the five scripts (prepare_data.py and its commands, spatial_train.py,
temporal_train.py, fuse_test.py, demo.py): every flag two or more of them take is defined once
here, under one name, with one help text and one default. A script adds the shared flags it takes
by name (add) and defines only its own (adder); each flag's help ends with its per-dataset
values from presets.py, or its default. Nothing here imports Keras, so every --help is instant.

Scripts are named as presets.py's parts: "spatial", "temporal", "test" (fuse_test.py), "demo", and
prepare_data.py's commands "splits", "frames", "flow", "check", "synthetic".
"""
import argparse
import functools
import re

from twostream.datasets import ucf101
from twostream.protocol import presets
from twostream.video import media


def parser(doc):
    """A script's parser: its docstring as the description, and whole flag names only (argparse would
    otherwise take an unambiguous prefix, so that a renamed flag's old name, e.g. --splits for
    --splits-dir, would still be taken)."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
                                   allow_abbrev=False)


def parse_shard(text):
    """'K/N' -> (K, N) with 1 <= K <= N."""
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise argparse.ArgumentTypeError(f"{text!r}: expected K/N with 1 <= K <= N, e.g. 3/8")
    return int(match[1]), int(match[2])


def positive(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive whole number")
    return int(text)


def non_negative(text):
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number, 0 or more")
    return int(text)


DISTRIBUTIONS = ("none", "mirrored", "multiworker")
ALL_CORES = "every core this process may use"

# Flags with one meaning wherever they appear: the same help text and default in every script.
SHARED = {
    "--dataset": dict(help="ucf101 or hmdb51 with the paper's settings, or a generated mini dataset (synthetic: "
                      "UCF-101's layout; synthetic_hmdb: HMDB-51's) with small, fast ones; it sets the defaults "
                      "listed per dataset below", choices=presets.DATASETS, default="ucf101"),
    "--split": dict(help="which of the three official splits", type=int, choices=ucf101.SPLITS, default=1),
    "--data-dir": dict(help=f"folder holding the extracted frames and flow, {ucf101.RGB_DIR}/ and {ucf101.FLOW_DIR}/"),
    "--splits-dir": dict(help="folder holding classInd.txt and the split lists"),
    "--checkpoints": dict(help="the dataset's checkpoint folder, holding each stream's run folder spatial/ and "
                          "temporal/ (as spatial_train.py and temporal_train.py write them; each with last.keras, "
                          "config.json and classInd.txt)"),
    "--checkpoint-dir": dict(help="this stream's run folder, where its checkpoints, config.json and logs go "
                             "(default: the dataset's checkpoints folder, as fuse_test.py's --checkpoints, and the "
                             "stream: checkpoints/<dataset>/spatial or checkpoints/<dataset>/temporal)"),
    "--spatial": dict(help="spatial model .keras, with config.json and classInd.txt beside it "
                      "(default: <checkpoints>/spatial/last.keras, the fixed schedule's final model)"),
    "--temporal": dict(help="temporal model .keras, with config.json and classInd.txt beside it "
                       "(default: <checkpoints>/temporal/last.keras, the fixed schedule's final model)"),
    "--samples": dict(help="frames / flow stacks per video at uniform spacing (the paper: 25)", type=positive,
                     default=presets.TEST_SAMPLES),
    "--fusion-weights": dict(help="weights of the two streams' video scores in the average (the paper: 1 1; "
                             "TSN: 1 1.5)", type=float, nargs=2, default=(1.0, 1.0), metavar=("SPATIAL", "TEMPORAL")),
    "--flow-method": dict(help="tvl1: OpenCV's TV-L1, the flow of the public downloads and of TSN (the paper used "
                          "Brox et al.'s), slow (about 1 frame pair/s per core at 320x240, 16 CPU-days for UCF-101); "
                          "tvl1_keras: the same algorithm in Keras (tvl1.py), batches of frame pairs on the Keras "
                          "backend's device, made for a GPU (fastest with KERAS_BACKEND=jax); dis: ~100x faster, "
                          "approximate; farneback: ~60x faster", choices=media.FLOW_METHODS, default="tvl1"),
    "--class-limit": dict(help="use the first N classes only (quick runs; recorded, and fuse_test.py compares such a "
                          "run with no published figure)", type=positive),
    "--max-videos": dict(help="use an evenly spread subset of N videos only (quick runs: N training videos in "
                         "training, N test videos in fuse_test.py)", type=positive),
    "--shard": dict(help="do only part K of N (1-based): the videos with 1 + crc32(lower-case video name) mod N = K. "
                    "The N parts never overlap and together are every video, whatever list each machine sees; run "
                    "K = 1..N on N machines or as a job array (e.g. --shard $SLURM_ARRAY_TASK_ID/N), then "
                    "`prepare_data.py check` the whole, or `fuse_test.py --merge` the parts' scores (default: all "
                    "videos)", type=parse_shard, metavar="K/N"),
    "--seed": dict(help="random seed: of the weights and sampling in training, of the videos in prepare_data.py "
                   "synthetic", type=non_negative, default=0),
    "--distribute": dict(help="none; mirrored: all local GPUs (or logical CPUs); multiworker (training only): the "
                         "cluster in TF_CONFIG on TensorFlow (tf.distribute), in KERAS_DISTRIBUTION_JOB_ADDRESSES, "
                         "_NUM_PROCESSES and _PROCESS_ID (or SLURM's) on JAX (keras.distribution). fuse_test.py: "
                         "mirrored only (several machines: --shard K/N, then --merge)", choices=DISTRIBUTIONS,
                         default="none"),
    # Both training scripts.
    "--val-groups": dict(help="hold out the last N groups of the training list for validation and best.keras "
                         "(0: none, the paper's fixed schedule; the test list is never used)", type=non_negative,
                         default=0),
    "--image-size": dict(help="crop side S in pixels", type=positive),
    "--accumulate": dict(help="split each batch into this many smaller ones and accumulate their gradients (when "
                         "batch 256 does not fit the device: the optimizer still steps on the whole batch)",
                         type=positive, default=1),
    "--epoch-steps": dict(help="optimizer steps per epoch (checkpoint, log line and validation after each)",
                          type=positive),
    "--sampling": dict(help="classes: each sample draws a class uniformly, then one of its videos (the paper's); "
                       "videos: each epoch is a shuffled pass over the videos", choices=presets.SAMPLINGS,
                       default="classes"),
    "--crop": dict(help="training crops: 'random' S x S windows anywhere in the frame (the paper's), 'corners' "
                   "(4 corners and centre) or TSN's 'multiscale'", choices=presets.CROPS, default="random"),
    "--momentum": dict(help="SGD momentum", type=float, default=0.9),
    "--weight-decay": dict(help="SGD weight decay as Caffe's, which the paper trained with: added to the gradient "
                           "before the momentum, on the kernels of convolutions and dense layers only (no biases, no "
                           "BatchNorm); 5e-4 is Caffe's ImageNet recipe (Krizhevsky et al. 2012), which the paper "
                           "follows (its text gives no value)",
                           type=float, default=5e-4),
    "--precision": dict(help="compute dtype: float32 (the paper's), or bfloat16 / float16 mixed precision (float32 "
                        "weights, softmax and loss; bfloat16 for current GPUs, float16 for older ones)",
                        choices=presets.PRECISIONS, default="float32"),
    "--jit": dict(help="XLA-compile the training step with TensorFlow (off: slower on CPU); JAX always compiles",
                  action="store_true"),
    "--partial-bn": dict(help="TSN's partial BatchNorm (Wang et al. 2016; not the paper's): while fine-tuning, every "
                         "BatchNormalization layer but the first is frozen, in inference mode with its pretrained "
                         "statistics, scale and shift; the first adapts to the new input. Spatial: phase 2; temporal: "
                         "with --weights or --init (a net from scratch has no statistics to keep)",
                         action=argparse.BooleanOptionalAction, default=False),
    "--segments": dict(help="TSN's segment consensus (Wang et al. 2016; not the paper's): each training sample is K "
                       "snippets (frames or stacks), one drawn inside each of K equal segments of its video, with one "
                       "crop and flip; one network shared by the K, their logits averaged before the softmax, one "
                       "loss. Validation takes each segment's centre; testing is unchanged (25 x 10 crops). 1: the "
                       "paper's single sample", type=positive, default=1),
    "--recipe": dict(help="the settings the other flags default to: paper (Simonyan & Zisserman 2014) or tsn (Wang et "
                     "al. 2016's two-stream recipe, beyond the paper: " + presets.RECIPE_TEXT + "); a flag given "
                     "on the command line still wins", choices=tuple(presets.RECIPES), default="paper"),
}

# Flags whose name is shared but whose meaning depends on the script: the help (and where it differs,
# the type and default) of each script, so that the help says what the flag does there. --workers has
# one default everywhere: every core this process may use (presets.CORES).
TRAINING_WORKERS = "processes decoding JPEGs into training batches (1: in the training process)"
REDO_VIDEOS = ("redo every video, complete or not (default: redo only missing, incomplete and damaged folders, so a "
               "rerun resumes)")
BY_SCRIPT = {
    "--workers": {
        "spatial": TRAINING_WORKERS,
        "temporal": TRAINING_WORKERS,
        "test": "threads reading and cropping frames while the model runs",
        "demo": "threads computing flow (for --flow-method tvl1_keras, the device computes it instead)",
        "frames": "processes decoding videos in parallel",
        "flow": "processes computing the flow of videos in parallel; for --flow-method tvl1_keras, threads decoding "
                "videos and writing JPEGs around the one process using the device",
        "check": "processes checking videos in parallel",
        "synthetic": "processes writing videos",
    },
    "--batch-size": {
        "spatial": dict(help="samples per optimizer step (the paper: 256)", type=positive),
        "temporal": dict(help="samples per optimizer step (the paper: 256)", type=positive),
        "test": dict(help="images per forward pass", type=positive, default=250),
        "flow": dict(help="frame pairs per device call for --flow-method tvl1_keras: larger keeps a GPU busier; "
                     "each new size compiles once", type=positive, default=media.FLOW_BATCH),
    },
    "--overwrite": {
        "spatial": "start again from scratch, deleting the run in --checkpoint-dir",
        "temporal": "start again from scratch, deleting the run in --checkpoint-dir",
        "test": "compute the scores again: removes results/<run>/scores_<stream>.npz and the chunks of an interrupted "
                "run first (resume a killed --overwrite run without it)",
        "demo": "replace --output and --plot files that exist (never the input video)",
        "splits": "replace existing lists that differ",
        "frames": REDO_VIDEOS,
        "flow": REDO_VIDEOS,
        "synthetic": "replace an existing dataset in --out",
    },
    "--arch": {
        "spatial": dict(help="the network: inception_v3 (the paper reproduction's, as the seed's), or beyond the "
                        "paper efficientnet_v2_s, convnext_tiny or xception; each with its own preprocessing inside "
                        "the model, and its last blocks trained in phase 2",
                        choices=presets.SPATIAL_ARCHS, default="inception_v3"),
        "temporal": dict(help="the network: cnn_m_2048 (the paper's) or inception_v3", choices=presets.ARCHS,
                         default="cnn_m_2048"),
    },
    "--weights": {
        "spatial": "imagenet (the Keras download), none, or a local no-top .h5 file of --arch's network (as Keras "
                   "downloads it)",
        "temporal": dict(help="none (from scratch); imagenet or a local InceptionV3 .h5 file for --arch inception_v3 "
                         "(cross-modality initialisation)", default="none"),
    },
    "--dropout": {"spatial": "dropout before the softmax", "temporal": "dropout after full6 and full7"},
}
BY_SCRIPT_KWARGS = {  # what a flag of BY_SCRIPT takes in every script
    "--workers": dict(type=positive, default=presets.CORES),
    "--overwrite": dict(action="store_true"),
    "--dropout": dict(type=float),
}
DATASET_FLAGS = ("--dataset", "--split", "--data-dir", "--splits-dir")
TRAINING_FLAGS = (*DATASET_FLAGS, "--checkpoint-dir", "--class-limit", "--max-videos", "--val-groups", "--image-size",
                  "--batch-size", "--accumulate", "--epoch-steps", "--sampling", "--crop", "--momentum",
                  "--weight-decay", "--workers", "--seed", "--distribute", "--precision", "--jit", "--overwrite",
                  "--segments", "--recipe")


def add(parser, script, *names):
    """Add the shared flags `names` (SHARED or BY_SCRIPT) to the parser of `script`."""
    for name in names:
        if name in SHARED:
            add_flag(parser, script, name, **SHARED[name])
            continue
        kwargs = BY_SCRIPT[name][script]
        kwargs = {**BY_SCRIPT_KWARGS.get(name, {}), **(kwargs if isinstance(kwargs, dict) else dict(help=kwargs))}
        if name == "--workers":
            kwargs["help"] += f" (default: {ALL_CORES}, %(default)s)"
        add_flag(parser, script, name, **kwargs)


def adder(parser, script):
    """flag(name, help, **kwargs): how a script adds a flag of its own (add_flag on its parser)."""
    return functools.partial(add_flag, parser, script)


def add_flag(parser, script, flag, help, **kwargs):
    """parser.add_argument, with the presets' values (or the plain default) appended to the help."""
    key = kwargs.get("dest", flag.lstrip("-").replace("-", "_"))
    preset = presets.describe(script, key)
    if preset:
        help = f"{help} ({preset})"
    elif "default" in kwargs and kwargs.get("action") != "store_true" and "(default:" not in help:
        help = f"{help} (default: %(default)s)"
    return parser.add_argument(flag, help=help, **kwargs)


def parse(parser, script, argv=None, commands=None):
    """Parse with the chosen --dataset's preset, and --recipe's settings where the script has that flag, as the
    defaults: a flag given on the command line wins. `commands`: prepare_data.py's sub-commands (add_subparsers),
    each of which takes its own part of the preset table (`script` is then the one chosen)."""
    known, _ = parser.parse_known_args(argv)
    target = parser
    if commands is not None:
        script, target = known.command, commands.choices[known.command]
    if "dataset" in known:
        target.set_defaults(**presets.values(known.dataset, script, getattr(known, "recipe", "paper")))
    return parser.parse_args(argv)


def parse_training(parser, script, argv=None):
    """parse, then the training scripts' rules: the default run folder, --accumulate dividing the batch,
    crops the network takes."""
    args = parse(parser, script, argv)
    if args.checkpoint_dir is None:
        args.checkpoint_dir = presets.run_folder(presets.values(args.dataset, script)["checkpoints"], script)
    if args.batch_size % args.accumulate:
        parser.error(f"--accumulate must divide --batch-size ({args.batch_size}) into equal parts")
    arch = getattr(args, "arch", "inception_v3")  # the spatial stream's network is InceptionV3
    if args.image_size < presets.MIN_IMAGE_SIZE[arch]:
        parser.error(f"--image-size {args.image_size}: {arch} takes crops of {presets.MIN_IMAGE_SIZE[arch]} pixels "
                     "or more")
    return args


def refuse(parser, args, flag, value, why):
    """Exit 2 with `error: --flag value: why` if the script cannot do what a shared flag's value asks."""
    if getattr(args, flag.lstrip("-").replace("-", "_")) == value:
        parser.error(f"{flag} {value}: {why}")
