"""The published figures a two-stream test run is compared with, and how a run is matched to them: our result rows
(ROW_NAMES), the paper's figures (Simonyan et al. 2014, with the seed repository's) and TSN's (Wang et al. 2016),
the settings each was measured with (SOURCES), a run's settings (run_settings, training_kind, temporal_net), the
figure each row is compared with or why none (row_reference), and the notes results.md cites them with. report.py
writes them into its tables.

Published figures are percentages.
"""
from twostream.protocol import presets

# Our result rows, in table order. temporal_multitask: a temporal net trained on UCF-101 and HMDB-51 at once.
# The spatial row is named for what it is: InceptionV3 (as the seed) fine-tuned in two phases (a new top, then
# also the top two inception blocks), which is none of the paper's spatial rows (its net is CNN-M-2048).
ROW_NAMES = {"spatial": "Spatial (InceptionV3, two phases)", "temporal": "Temporal", "temporal_multitask":
             "Temporal (multi-task)", "fusion": "Fusion (averaging)", "svm": "Fusion (SVM)"}

# Which temporal net a run tested: trained on its dataset alone, multi-task (a second dataset's head beside
# its own, temporal_train.py --multitask), or fine-tuned from another dataset's net (--init).
TEMPORAL_NETS = ("alone", "multitask", "init")
NET_TEXT = {"alone": "trained alone", "multitask": "trained multi-task", "init": "fine-tuned from another dataset's"}

PAPER = "Simonyan et al. 2014"
TSN = "Wang et al. 2016 (TSN)"
SEED = "Seed repository"
FULL_CLASSES = {"ucf101": 101, "hmdb51": 51}  # the references are for all of a dataset's classes

# Every published top-1 accuracy (%) we compare with, keyed by the settings of the run it fits: the one place
# that says so. Key: (dataset, scope, our row, temporal net, L). scope: "split1" or "mean" (over splits 1-3, the
# paper's Table 4); temporal net: TEMPORAL_NETS; L: the temporal net's stack length. The spatial row depends on
# neither (None). Value: (what the figure is, Simonyan et al. 2014, the seed repository's).
FIGURES = {
    # UCF-101 split 1: Tables 1-3 (Table 1: optical flow stacking with mean subtraction); the seed's README
    ("ucf101", "split1", "spatial", None, None): ("Spatial (pre-trained + last layer)", 72.7, 73.1),
    ("ucf101", "split1", "temporal", "alone", 10): ("Temporal (L = 10, mean subtraction, uni-directional flow)",
                                                    81.0, 78.8),
    ("ucf101", "split1", "temporal", "alone", 5): ("Temporal (L = 5, mean subtraction)", 80.4, None),
    ("ucf101", "split1", "temporal", "alone", 1): ("Temporal (L = 1, mean subtraction)", 73.9, None),
    ("ucf101", "split1", "temporal_multitask", "multitask", 10): ("Temporal (multi-task, UCF-101 + HMDB-51)", 81.5,
                                                                  None),
    ("ucf101", "split1", "fusion", "alone", 10): ("Fusion by averaging (uni-directional flow)", 85.9, 82.0),
    ("ucf101", "split1", "fusion", "multitask", 10): ("Fusion by averaging (multi-task temporal)", 86.2, None),
    ("ucf101", "split1", "svm", "multitask", 10): ("Fusion by SVM (multi-task temporal)", 87.0, None),
    # UCF-101, mean over the three splits: Table 4, whose temporal net is the multi-task one, as are both fusions'
    ("ucf101", "mean", "spatial", None, None): ("Spatial (pre-trained + last layer)", 73.0, None),
    ("ucf101", "mean", "temporal_multitask", "multitask", 10): ("Temporal (multi-task, UCF-101 + HMDB-51)", 83.7,
                                                                None),
    ("ucf101", "mean", "fusion", "multitask", 10): ("Fusion by averaging (multi-task temporal)", 86.9, None),
    ("ucf101", "mean", "svm", "multitask", 10): ("Fusion by SVM (multi-task temporal)", 88.0, None),
    # HMDB-51 split 1: Table 2, the temporal net only
    ("hmdb51", "split1", "temporal", "alone", 10): ("Temporal (trained on HMDB-51 alone)", 46.6, None),
    ("hmdb51", "split1", "temporal", "init", 10): ("Temporal (fine-tuned from UCF-101)", 49.0, None),
    ("hmdb51", "split1", "temporal_multitask", "multitask", 10): ("Temporal (multi-task, UCF-101 + HMDB-51)", 55.4,
                                                                  None),
    # HMDB-51, mean over the three splits: Table 4 (multi-task temporal net)
    ("hmdb51", "mean", "spatial", None, None): ("Spatial (pre-trained + last layer)", 40.5, None),
    ("hmdb51", "mean", "temporal_multitask", "multitask", 10): ("Temporal (multi-task, UCF-101 + HMDB-51)", 54.6,
                                                                None),
    ("hmdb51", "mean", "fusion", "multitask", 10): ("Fusion by averaging (multi-task temporal)", 58.0, None),
    ("hmdb51", "mean", "svm", "multitask", 10): ("Fusion by SVM (multi-task temporal)", 59.4, None),
}
# Published figures of settings this repository does not build, listed as "not run": (dataset, scope, what, paper).
NOT_BUILT = [("ucf101", "split1", "Fusion by averaging (bi-directional flow)", 85.6),
             ("hmdb51", "split1", "Temporal (78 UCF-101 classes added to the training set)", 52.8)]

# The settings every figure above was measured with, beyond its key: the paper's test protocol (25 samples x 10
# crops, softmax scores averaged), its temporal network (CNN-M-2048 with LRN) and averaging fusion's equal weights.
# A row is compared with a figure only when the settings it depends on (ROW_SETTINGS) are these.
PAPER_SETTINGS = {"samples": presets.TEST_SAMPLES, "crops": presets.TEST_CROPS, "aggregate": "mean",
                  "temporal_network": "cnn_m_2048 with lrn", "fusion_weights": "equal",
                  "spatial_network": "inception_v3", "spatial_training": "the paper's",
                  "temporal_training": "the paper's"}
PAPER_STACK_LENGTH = presets.STACK_LENGTH  # the paper's default L, that of every figure but Table 1's L = 1 and L = 5
PROTOCOL = ("samples", "crops", "aggregate")
SPATIAL_NET, TEMPORAL_NET = ("spatial_network", "spatial_training"), ("temporal_network", "temporal_training")
ROW_SETTINGS = {"spatial": (*PROTOCOL, *SPATIAL_NET), "temporal": (*PROTOCOL, *TEMPORAL_NET),
                "temporal_multitask": (*PROTOCOL, *TEMPORAL_NET),
                "fusion": (*PROTOCOL, *SPATIAL_NET, *TEMPORAL_NET, "fusion_weights"),
                "svm": (*PROTOCOL, *SPATIAL_NET, *TEMPORAL_NET)}
SETTING_FLAGS = {"samples": "--samples", "crops": "--crops", "aggregate": "--aggregate",
                 "temporal_network": "the temporal net", "fusion_weights": "--fusion-weights",
                 "spatial_network": "the spatial net (spatial_train.py --arch)",
                 "spatial_training": "the spatial net's training", "temporal_training": "the temporal net's training"}

# TSN (Wang et al. 2016, BN-Inception, ImageNet pre-training only): its two-stream figures, keyed as FIGURES, for
# runs of --recipe tsn (TSN_SETTINGS). UCF-101 split 1: Table 1's last row with segment consensus (Table 3: 85.7 /
# 87.9 / 93.5); means over the three splits: Table 6 (UCF-101 94.0, HMDB-51 68.5, RGB + optical flow).
TSN_FIGURES = {
    ("ucf101", "split1", "spatial", None, None): ("TSN spatial (BN-Inception, segment consensus)", 85.7, None),
    ("ucf101", "split1", "temporal", "alone", 5): ("TSN temporal (BN-Inception, cross-modality, L = 5)", 87.9, None),
    ("ucf101", "split1", "fusion", "alone", 5): ("TSN two streams (weights 1 : 1.5)", 93.5, None),
    ("ucf101", "mean", "fusion", "alone", 5): ("TSN two streams (weights 1 : 1.5)", 94.0, None),
    ("hmdb51", "mean", "fusion", "alone", 5): ("TSN two streams (weights 1 : 1.5)", 68.5, None),
}
TSN_SETTINGS = {"samples": presets.TEST_SAMPLES, "crops": presets.TEST_CROPS, "aggregate": "mean",  # as the paper
                "temporal_network": "inception_v3", "fusion_weights": "1 1.5", "spatial_network": "inception_v3",
                "spatial_training": "TSN's", "temporal_training": "TSN's"}
# Each source of published figures: its settings, its figures, and how the notes name it.
SOURCES = {PAPER: (PAPER_SETTINGS, FIGURES, "the paper"), TSN: (TSN_SETTINGS, TSN_FIGURES, "TSN")}
# How a network was trained beyond its architecture, from its config.json: each setting that tells, its flag, and
# its value in the paper's training (spatial, temporal). Older config.json files lack some: the paper's then.
TRAINING_SETTINGS = {"segments": ("--segments", 1, 1), "crop": ("--crop", "random", "random"),
                     "partial_bn": ("--partial-bn", False, False),
                     "phase2_layers": ("--phase2-layers", "last_blocks", None),
                     "dropout": ("--dropout", presets.PAPER["spatial"]["dropout"],
                                 presets.PAPER["temporal"]["dropout"])}
PAPER_RUN = {**PAPER_SETTINGS, "stack_length": PAPER_STACK_LENGTH}  # a run at the paper's settings (run_settings)

REFERENCE_NOTES = {  # each source, as results.md cites it
    PAPER: f"{PAPER}: K. Simonyan and A. Zisserman, Two-Stream Convolutional Networks for Action Recognition "
    "in Videos (NIPS 2014). UCF-101 split 1 (Tables 1-3): spatial 72.7 (CNN-M-2048 pre-trained on ImageNet, last "
    "layer trained), temporal 81.0 (L = 10, mean subtraction, uni-directional flow; 80.4 with L = 5, 73.9 with "
    "L = 1; 81.5 multi-task), fusion by averaging 85.9 with uni-directional flow (what this repository builds; "
    "85.6 with bi-directional flow, 86.2 with a multi-task temporal net), fusion by a linear SVM 87.0 (multi-task "
    "temporal net; the paper gives no SVM figure with a single-task temporal net). HMDB-51 split 1 (Table 2): "
    "temporal nets only (46.6 trained alone, 49.0 fine-tuned from UCF-101, 52.8 with 78 UCF-101 classes added, "
    "55.4 multi-task). Means over the three splits (Table 4): with the multi-task temporal net only. All: 25 "
    "samples x 10 crops per test video, softmax scores averaged; fusion by averaging with equal weights.",
    SEED: f"{SEED}: its README's own results on UCF-101 split 1 (it voted over frames where the paper averages "
    "softmax scores).",
    TSN: f"{TSN}: L. Wang et al., Temporal Segment Networks: Towards Good Practices for Deep Action Recognition "
    "(ECCV 2016), BN-Inception pre-trained on ImageNet only, RGB and optical flow (L = 5) with 3 segments, "
    "cross-modality initialisation, partial BN with dropout; 25 samples x 10 crops per test video; fusion "
    "weights 1 : 1.5. UCF-101 split 1 (Table 3): 85.7 / 87.9 / 93.5; means over three splits (Table 6): UCF-101 "
    "94.0, HMDB-51 68.5. Its Table 1 steps on split 1: ImageNet pre-training 84.1 / 81.7 / 90.0, + cross-modality "
    "initialisation 84.1 / 86.6 / 91.5, + partial BN with dropout 84.5 / 87.2 / 92.0.",
}
# Why a --recipe tsn run is compared with TSN's figures although the nets differ.
TSN_NOTE = ("TSN's nets are BN-Inception, which keras.applications does not have: ours are InceptionV3, with TSN's "
            "other settings (--recipe tsn)")
TSN_SPATIAL_NOTE = "; our spatial net also first trains its new top alone"
# Why our spatial row is compared with the paper's "pre-trained + last layer": the seed repository, whose
# InceptionV3 spatial stream ours follows, compared with it; like it, our first phase trains a new top on frozen
# ImageNet features (dropout 0.5, the dropout of that row). The nets differ (InceptionV3, not CNN-M-2048) and our
# second phase also fine-tunes the top two inception blocks.
SPATIAL_NOTE = ("the paper's CNN-M-2048 pre-trained on ImageNet with only its last layer trained, dropout 0.5, "
                "the row the seed repository compared its InceptionV3 with: our first phase likewise trains a new "
                "top on frozen ImageNet features, but the networks differ and our second phase also fine-tunes the "
                "top two inception blocks")


# ---------------------------------------------------------------------------- references

def temporal_net(settings):
    """Which temporal net a run's scores come from (TEMPORAL_NETS), from its settings: "multitask" when it
    has a second dataset's head, "init" when it was fine-tuned from another net (--init), else "alone"."""
    if settings.get("multitask"):
        return "multitask"
    return "init" if settings.get("init") else "alone"


def training_kind(config, stream):
    """How a network was trained beyond its architecture, from its config.json: "TSN's" (every setting of
    presets.TSN[stream]), "the paper's" (TRAINING_SETTINGS), or the flags in which it departs from the paper's,
    e.g. "--segments 2, --partial-bn True"."""
    if all(config.get(key) == value for key, value in presets.TSN[stream].items()):
        return TSN_SETTINGS[f"{stream}_training"]
    column = 1 if stream == "spatial" else 2
    departures = [f"{setting[0]} {config[key]}" for key, setting in TRAINING_SETTINGS.items()
                  if config.get(key) is not None and setting[column] is not None and config[key] != setting[column]]
    return ", ".join(departures) or PAPER_SETTINGS[f"{stream}_training"]


def source_of(run):
    """The source of the figures a run is compared with: TSN's for a run of --recipe tsn, else the paper's."""
    tsn = TSN_SETTINGS["spatial_training"]
    return TSN if tsn in (run.get("spatial_training"), run.get("temporal_training")) else PAPER


def run_settings(settings, aggregate="mean", fusion_weights=None):
    """The settings of a run that decide which figure each row is compared with (the keys of PAPER_SETTINGS, and
    the temporal net's stack_length), from write_report's settings: the temporal net's come from
    settings["networks"]["temporal"] (stack_length, arch, norm; "not recorded" without them)."""
    weights = tuple(fusion_weights or (1.0, 1.0))
    temporal = (settings.get("networks") or {}).get("temporal") or {}
    spatial = (settings.get("networks") or {}).get("spatial") or {}
    arch, norm = temporal.get("arch"), temporal.get("norm") or "no recorded normalisation"
    network = f"{arch} with {norm}" if arch == "cnn_m_2048" else arch or "not recorded"
    return {"samples": settings.get("samples"), "crops": settings.get("crops"), "aggregate": aggregate,
            "temporal_network": network,
            "fusion_weights": "equal" if weights[0] == weights[1] else f"{weights[0]:g} {weights[1]:g}",
            "stack_length": temporal.get("stack_length"),
            "spatial_network": spatial.get("arch") or "inception_v3",  # the only one before --arch was recorded
            # recorded since --segments; runs before it trained as the paper (but for --partial-bn, unrecorded)
            "spatial_training": spatial.get("training") or PAPER_SETTINGS["spatial_training"],
            "temporal_training": temporal.get("training") or PAPER_SETTINGS["temporal_training"]}


def figure_key(row, dataset, scope, net, stack_length):
    """The FIGURES key our `row` of a run looks up."""
    return (dataset, scope, row, None, None) if row == "spatial" else (dataset, scope, row, net, stack_length)


def row_reference(row, dataset, scope, net="alone", run=PAPER_RUN):
    """(the figure our `row` is compared with: (what it is, published figure, seed's), or None; why there is none:
    [] when there is one, or when scope is None: references_missing says why then). run: run_settings; its
    source (source_of) says whose figures."""
    if not scope:
        return None, []
    settings, figures, name = SOURCES[source_of(run)]
    differ = [f"{SETTING_FLAGS[key]} {run.get(key)} ({name}: {settings[key]})"
              for key in ROW_SETTINGS[row] if run.get(key) != settings[key]]
    figure = figures.get(figure_key(row, dataset, scope, net, run.get("stack_length")))
    if not differ and not figure:
        differ = [f"{name} gives no {dataset} {scope} figure for it" + (
            "" if row == "spatial" else f" with L = {run.get('stack_length')} and a temporal net {NET_TEXT[net]}")]
    return (None, differ) if differ else (figure, [])


def published(dataset, scope, source=PAPER):
    """Every figure of `source` for (dataset, scope) as (what it is, figure, seed's): its figures, then for the
    paper NOT_BUILT."""
    not_built = NOT_BUILT if source == PAPER else []
    return ([figure for (d, s, *_), figure in SOURCES[source][1].items() if (d, s) == (dataset, scope)]
            + [(name, paper, None) for d, s, name, paper in not_built if (d, s) == (dataset, scope)])


def references_missing(settings):
    """Why the published split-1 figures do not fit this run: [] when they do.

    They are for one whole dataset's split 1: UCF-101 or HMDB-51, all of its classes (the scores'
    class count, settings["num_classes"], and no class limit below it) and all of its test videos.
    """
    dataset, split = settings.get("dataset"), settings.get("split")
    if dataset not in FULL_CLASSES:
        return [f"this is {dataset}"]
    full = FULL_CLASSES[dataset]
    reasons = []
    if split != 1:
        reasons.append(f"split {split}: the paper gives split 1 and the mean over the three splits only")
    if settings.get("num_classes") != full:
        reasons.append(f"{settings.get('num_classes', 'an unknown number of')} classes where {dataset} has {full}")
    elif (settings.get("class_limit") or full) < full:
        reasons.append(f"tested on the first {settings['class_limit']} of the {full} classes")
    if settings.get("max_videos"):
        reasons.append(f"{settings['max_videos']} test videos only")
    return reasons


def references_apply(settings):
    """True when the run is one whole dataset's split 1, the only single split the paper reports."""
    return not references_missing(settings)


def row_name(row, run=PAPER_RUN):
    """Our row's name in the tables: the spatial row says which network it is (spatial_train.py --arch)."""
    if row != "spatial":
        return ROW_NAMES[row]
    arch = run.get("spatial_network") or "inception_v3"
    return ROW_NAMES[row].replace("InceptionV3", presets.ARCH_NAMES.get(arch, arch))


def reference_notes(dataset, scope, rows, net="alone", run=PAPER_RUN):
    """Markdown bullets: the figure each of our rows is compared with, or why it is "—"; then the sources."""
    lines, source = [], source_of(run)
    for row in rows:
        figure, why = row_reference(row, dataset, scope, net, run)
        if figure and source == TSN:
            lines.append(f"- {row_name(row, run)}: compared with TSN's \"{figure[0]}\" ({TSN_NOTE}"
                         + (TSN_SPATIAL_NOTE if row in ("spatial", "fusion") else "") + ").")
        elif figure:
            lines.append(f"- {row_name(row, run)}: compared with the paper's \"{figure[0]}\""
                         + (f" and the seed's {figure[2]:.1f}" if figure[2] is not None else "")
                         + (f" ({SPATIAL_NOTE})" if row == "spatial" else "") + ".")
        else:
            lines.append(f"- {row_name(row, run)}: \"—\", no published figure was measured as this run: "
                         f"{'; '.join(why)}.")
    cited = [source] + ([SEED] if any(figure[2] is not None for figure in published(dataset, scope, source)) else [])
    return lines + [f"- {REFERENCE_NOTES[source]}" for source in cited]
