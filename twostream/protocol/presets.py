"""Every dataset's settings in one plain table: its folders, and the paper's settings for UCF-101
and HMDB-51, small and fast ones for the generated mini datasets. Each script takes its flag
defaults from its part of the table (data, the prepare_data.py commands splits, frames and flow,
spatial, temporal, test, demo), and flags.py writes the same values into its --help, so the two
never disagree. A flag given on the command line always wins. Nothing here imports Keras, so
every script's --help is instant.

The PAPER values are the paper's (Simonyan & Zisserman 2014, sections 5-6): SGD with momentum
0.9 at batch 256, and weight decay 5e-4 (Caffe's ImageNet recipe, Krizhevsky et al. 2012, which the
paper follows: its text gives no value); from scratch (temporal) learning rate 1e-2, 1e-3 after 50k
iterations, 1e-4 after 70k, stop at 80k (FROM_SCRATCH); fine-tuning (spatial, and a temporal net
started from another, temporal_train.py --init) 1e-2, 1e-3 after 14k, stop at 20k (FINE_TUNING); 25
samples x 10 crops per test video. README "Where this differs from the paper" lists the mini
presets' departures and why.
"""
import os

from twostream.datasets import ucf101
from twostream.datasets.frames import STACK_LENGTH

DATASETS = ("ucf101", "hmdb51", "synthetic", "synthetic_hmdb")
ARCHS = ("cnn_m_2048", "inception_v3")  # temporal networks
# Spatial networks (models.BACKBONES): InceptionV3, the paper reproduction's (the seed's), then beyond the paper.
SPATIAL_ARCHS = ("inception_v3", "efficientnet_v2_s", "convnext_tiny", "xception")
ARCH_NAMES = {"inception_v3": "InceptionV3", "efficientnet_v2_s": "EfficientNetV2-S", "convnext_tiny": "ConvNeXt-Tiny",
              "xception": "Xception", "cnn_m_2048": "CNN-M-2048"}  # as the results tables name them
WITHOUT_BATCHNORM = ("convnext_tiny",)  # LayerNorm only: --partial-bn does not apply
NORMS = ("lrn", "batchnorm")  # cnn_m_2048's normalisation layers
# The smallest crop side each network takes: keras.applications' networks without their top (EfficientNetV2-S
# and ConvNeXt-Tiny downsample 32-fold, to 1 x 1), and CNN-M-2048, whose pool5 needs a 3 x 3 map.
MIN_IMAGE_SIZE = {"inception_v3": 75, "efficientnet_v2_s": 32, "convnext_tiny": 32, "xception": 71, "cnn_m_2048": 64}
PHASE2_LAYERS = ("last_blocks", "all")  # what spatial phase 2 trains beside the top: the base's last blocks, or all
SAMPLINGS = ("classes", "videos")  # class-uniform (the paper's), or each epoch a shuffled pass over the videos
CROPS = ("random", "corners", "multiscale")  # training crop windows; random is the paper's
EVAL_CROPS = ("center", "10")  # test crops: the centre, or 4 corners + centre and their flips (the paper's)
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
PRECISIONS = ("float32", "bfloat16", "float16")  # --precision: float32, or Keras's mixed_<dtype> policy
AGGREGATIONS = ("mean", "vote")  # samples -> video score: mean softmax (the paper's) or votes (the seed's)

# The paper's sizes (sections 5-6), the library functions' defaults too: training and test crops, batch,
# and samples (frames or flow stacks) per test video, each cut 10 ways.
CROP_SIZE = 224
BATCH_SIZE = 256
TEST_SAMPLES = 25
TEST_CROPS = "10"

# The paper's two schedules (section 6): training from scratch, and fine-tuning a pre-trained net.
FROM_SCRATCH = dict(lr=1e-2, lr_drops=[50000, 70000], iterations=80000)
FINE_TUNING = dict(lr=1e-2, lr_drops=[14000], iterations=20000)

# The paper's settings, for UCF-101 and HMDB-51 alike. The spatial phases fine-tune (phase 2 at a tenth of
# the rate, the seed's); "temporal_init" is temporal_train.py --init's schedule, where a flag does not say.
PAPER = {
    "spatial": dict(image_size=CROP_SIZE, batch_size=BATCH_SIZE, epoch_steps=1000, weights="imagenet", dropout=0.5,
                    lighting=0.1, phase1_optimizer="sgd", phase1_lr=FINE_TUNING["lr"],
                    phase1_lr_drops=FINE_TUNING["lr_drops"], phase1_iterations=FINE_TUNING["iterations"],
                    phase2_lr=FINE_TUNING["lr"] / 10, phase2_lr_drops=FINE_TUNING["lr_drops"],
                    phase2_iterations=FINE_TUNING["iterations"]),
    "temporal": dict(image_size=CROP_SIZE, batch_size=BATCH_SIZE, epoch_steps=1000, stack_length=STACK_LENGTH,
                     norm="lrn", dropout=0.9, **FROM_SCRATCH),
    "temporal_init": FINE_TUNING,
    "test": dict(crops=TEST_CROPS),
}
# The generated mini datasets: ~200 training videos of 6-12 classes at 128x96, trained in minutes on
# 2 CPU cores. No ImageNet weights offline: a random InceptionV3 base
# (models.calibrate_random_batchnorm) whose frozen features the new top learns from faster with
# RMSprop; centre crops only at test time, to keep the run short (README: where this differs). No
# "temporal_init": --init keeps the mini schedule, already a few hundred steps.
MINI = {
    "spatial": dict(image_size=80, batch_size=16, epoch_steps=14, weights="none", dropout=0.5, lighting=0.1,
                    phase1_optimizer="rmsprop", phase1_lr=3e-3, phase1_lr_drops=[], phase1_iterations=420,
                    phase2_lr=1e-4, phase2_lr_drops=[], phase2_iterations=56),
    "temporal": dict(image_size=80, batch_size=16, epoch_steps=15, stack_length=STACK_LENGTH, norm="lrn", dropout=0.5,
                     lr=1e-2, lr_drops=[200, 260], iterations=300),
    "test": dict(crops="center"),
}
# TSN's two-stream recipe (Wang et al. 2016, section 4.1 and Table 1), beyond the paper: --recipe tsn. Both
# streams: 3 segments with consensus, multi-scale crops, partial BN with more dropout (0.8 spatial, 0.7 temporal);
# the temporal net InceptionV3 initialised from ImageNet (cross-modality) on stacks of L = 5, and phase 2 of the
# spatial net trains every layer. Fusion weights 1 : 1.5. TSN's BN-Inception is not in keras.applications:
# InceptionV3 stands in for it.
TSN = {
    "spatial": dict(segments=3, crop="multiscale", dropout=0.8, partial_bn=True, phase2_layers="all"),
    "temporal": dict(segments=3, crop="multiscale", dropout=0.7, partial_bn=True, arch="inception_v3",
                     weights="imagenet", stack_length=5),
    "test": dict(fusion_weights=[1.0, 1.5]),
}
# Its schedules, for the full datasets (the mini ones keep theirs): spatial lr 1e-3, divided by 10 every 2,000
# iterations, stop at 4,500 (phase 2; our phase 1 first trains the new top alone for 500 at 1e-3: TSN trains all
# layers from the start); temporal 5e-3, divided by 10 after 12,000 and 18,000, stop at 20,000.
TSN_SCHEDULES = {
    "spatial": dict(phase1_optimizer="sgd", phase1_lr=1e-3, phase1_lr_drops=[], phase1_iterations=500,
                    phase2_lr=1e-3, phase2_lr_drops=[2000, 4000], phase2_iterations=4500),
    "temporal": dict(lr=5e-3, lr_drops=[12000, 18000], iterations=20000),
}
# The mini datasets have no ImageNet weights offline: their temporal net starts from scratch, without partial BN.
TSN_WITHOUT_IMAGENET = {"temporal": dict(weights="none", partial_bn=False)}
RECIPES = {"paper": {}, "tsn": TSN}
RECIPE_TEXT = ("3 segments, multi-scale crops, partial BN, dropout 0.8 spatial and 0.7 temporal, a temporal "
               "InceptionV3 from ImageNet on L = 5, phase 2 training every layer, TSN's schedules, fusion weights "
               "1 1.5")


def recipe_values(recipe, dataset, script):
    """--recipe's defaults of `script` for `dataset`: {} for the paper's (the preset is the paper's)."""
    if recipe == "paper":
        return {}
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    generated = dataset in GENERATED.values()
    return {**TSN.get(script, {}), **(TSN_WITHOUT_IMAGENET if generated else TSN_SCHEDULES).get(script, {})}


def row(data_dir, splits_dir, videos, layout, settings):
    """One dataset's row: its folders (the videos, the extracted frames and flow, the split lists, the
    checkpoints), what each prepare_data.py command reads and writes by default, its layout ("ucf101" or
    "hmdb51": folders, video names and official split files as UCF-101's or HMDB-51's), and `settings`."""
    name = os.path.basename(data_dir)
    return {"data": dict(data_dir=data_dir, splits_dir=splits_dir, checkpoints=os.path.join("checkpoints", name)),
            "splits": dict(videos=videos, out=splits_dir, layout=layout),
            "frames": dict(videos=videos, out=os.path.join(data_dir, ucf101.RGB_DIR)),
            "flow": dict(videos=videos, out=os.path.join(data_dir, ucf101.FLOW_DIR)), **settings}


PRESETS = {
    "ucf101": row("data/ucf101", "splits", "data/ucf101/UCF-101", "ucf101", PAPER),
    "hmdb51": row("data/hmdb51", "data/hmdb51/splits", "data/hmdb51/hmdb51_org", "hmdb51", PAPER),
    "synthetic": row("data/synthetic", "data/synthetic/splits", "data/synthetic/UCF-101", "ucf101", MINI),
    # HMDB-51's layout, clip names and official split files, with other classes (synthetic.generate_hmdb51).
    "synthetic_hmdb": row("data/synthetic_hmdb", "data/synthetic_hmdb/splits", "data/synthetic_hmdb/hmdb51_org",
                          "hmdb51", MINI),
}
LAYOUTS = ("ucf101", "hmdb51")
GENERATED = {"ucf101": "synthetic", "hmdb51": "synthetic_hmdb"}  # layout -> the mini dataset generated in it


def values(dataset, script, recipe="paper"):
    """The defaults of `script` ("spatial", "temporal", "test", "demo", or prepare_data.py's "splits",
    "frames", "flow", "check") for `dataset`, with `recipe`'s settings (RECIPES) over them."""
    return {**PRESETS[dataset]["data"], **PRESETS[dataset].get(script, {}), **recipe_values(recipe, dataset, script)}


def init_schedule(dataset):
    """temporal_train.py --init's defaults for `dataset` (lr, lr_drops, iterations): the paper's fine-tuning
    schedule for UCF-101 and HMDB-51, {} (the preset's own) for the mini datasets. Copies: a run may not
    change the table."""
    return {key: list(value) if isinstance(value, list) else value
            for key, value in PRESETS[dataset].get("temporal_init", {}).items()}


def run_folder(checkpoints, stream):
    """A stream's run folder, <checkpoints>/<stream>: training's default --checkpoint-dir (with the
    dataset's checkpoints folder), and where fuse_test.py and demo.py look under --checkpoints."""
    return os.path.join(checkpoints, stream)


def describe(script, key):
    """'ucf101, hmdb51: 224; synthetic, synthetic_hmdb: 80', the preset values of one flag, or None."""
    by_value = {}
    for name in DATASETS:
        if key in values(name, script):
            by_value.setdefault(show(values(name, script)[key]), []).append(name)
    return "; ".join(f"{', '.join(names)}: {value}" for value, names in by_value.items()) or None


def show(value):
    return " ".join(map(str, value)) or "none" if isinstance(value, list) else str(value)
