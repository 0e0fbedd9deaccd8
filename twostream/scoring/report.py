"""The report of a two-stream test run: the published figures ours are compared with, the results tables
(one split, and the mean over splits), results.md, per_class.csv, misclassified.csv, metrics.json and the
plots; written by fuse_test.py (demo.py draws plot_top_scores). The numbers come from evaluation.py.

Accuracies are fractions (0..1) in the code, and percentages in the tables and the published figures.
"""
import csv
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from twostream.datasets import ucf101  # noqa: E402
from twostream.errors import DataError  # noqa: E402
from twostream.protocol import presets  # noqa: E402
from twostream.scoring import evaluation  # noqa: E402
from twostream.storage import atomic  # noqa: E402
from twostream.train import checkpoints  # noqa: E402

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
PAPER_SETTINGS = {"samples": 25, "crops": "10", "aggregate": "mean", "temporal_network": "cnn_m_2048 with lrn",
                  "fusion_weights": "equal", "spatial_network": "inception_v3", "spatial_training": "the paper's",
                  "temporal_training": "the paper's"}
PAPER_STACK_LENGTH = 10  # the paper's default L, that of every figure but Table 1's L = 1 and L = 5
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
TSN_SETTINGS = {"samples": 25, "crops": "10", "aggregate": "mean", "temporal_network": "inception_v3",
                "fusion_weights": "1 1.5", "spatial_network": "inception_v3", "spatial_training": "TSN's",
                "temporal_training": "TSN's"}
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


# ---------------------------------------------------------------------------- tables

def percent(fraction):
    """One of our accuracies (a fraction, 0..1) as a percentage with one decimal, "—" when undefined."""
    return "—" if fraction is None or np.isnan(fraction) else f"{100 * fraction:.1f}"


def one_decimal(percentage):
    """A published figure (already a percentage) with one decimal, "—" where there is none."""
    return "—" if percentage is None else f"{percentage:.1f}"


def row_order(results):
    """Our rows in table order; the SVM row is listed as not run when averaging fusion was run without it."""
    unknown = set(results) - set(ROW_NAMES)
    if unknown:
        raise ValueError(f"unknown result rows {sorted(unknown)}; expected some of {list(ROW_NAMES)}")
    return [row for row in ROW_NAMES if row in results or (row == "svm" and "fusion" in results)]


def results_table(results, dataset="ucf101", scope="split1", net=None, run=PAPER_RUN):
    """Markdown table in the seed's form (Network | Simonyan et al. 2014 | Seed | Ours top-1 | top-5 | mean class).

    results: {row: metrics dict}, rows from ROW_NAMES. scope: "split1", "mean" (over splits 1-3) or
    None when the published figures do not apply to the run (its figures are then "—"). Our rows come
    first, each beside the figure measured with its settings (row_reference; "—" where there is none); then
    the paper's figures no row of ours is compared with (e.g. bi-directional flow), with "not run" in our
    columns. net: the temporal net (TEMPORAL_NETS) the rows come from; None: "multitask" with a multi-task
    row, else "alone". run: the run's settings (run_settings); default: the paper's.
    """
    net = net or ("multitask" if "temporal_multitask" in results else "alone")
    rows = row_order(results)
    compared = {row: row_reference(row, dataset, scope, net, run)[0] or (None, None, None) for row in rows}
    source = source_of(run)
    lines = [f"| Network | {source} (top-1) | {SEED} (top-1) | Ours top-1 | Ours top-5 | Ours mean class accuracy |",
             "|---|:-:|:-:|:-:|:-:|:-:|"]
    for row in rows:
        m = results.get(row)
        ours = (f"{percent(m['top1'])} | {percent(m['top5'])} | {percent(m['mean_class'])}" if m
                else "not run | — | —")
        lines.append(f"| {row_name(row, run)} | {one_decimal(compared[row][1])} | {one_decimal(compared[row][2])} | "
                     f"{ours} |")
    for name, paper, seed in (published(dataset, scope, source) if scope else []):
        if (name, paper, seed) not in compared.values():
            lines.append(f"| {name} | {one_decimal(paper)} | {one_decimal(seed)} | not run | — | — |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- the mean over splits


def mean_over_splits(results_by_split):
    """{split: {row: metrics}} -> {row: metrics averaged over the splits 1, 2, 3 present}.

    top1, top5 and mean_class are the means over splits (Table 4's "mean accuracy over three splits");
    videos is the total; classes is the common class count; splits lists the splits averaged.
    Splits must have the same rows and the same class count: a mean over different things is no mean.
    """
    if not results_by_split:
        raise DataError("no split's results to average: test at least one of splits 1, 2, 3")
    by_split = {int(split): results for split, results in results_by_split.items()}
    if set(by_split) - set(ucf101.SPLITS):
        raise DataError(f"splits {sorted(set(by_split) - set(ucf101.SPLITS))} are not among 1, 2, 3")
    splits = sorted(by_split)
    first = by_split[splits[0]]
    for split in splits[1:]:
        if set(by_split[split]) != set(first):
            raise DataError(f"split {split} has the rows {sorted(by_split[split])} but split {splits[0]} has "
                                   f"{sorted(first)}: test the same streams on every split")
        if class_counts(by_split[split]) != class_counts(first):
            raise DataError(f"split {split}'s scores rank {class_counts(by_split[split])} classes but split "
                                   f"{splits[0]}'s {class_counts(first)}: "
                                   "test models of the same classes on every split")
    return {row: {"top1": float(np.mean([by_split[s][row]["top1"] for s in splits])),
                  "top5": float(np.mean([by_split[s][row]["top5"] for s in splits])),
                  "mean_class": float(np.mean([by_split[s][row]["mean_class"] for s in splits])),
                  "videos": int(sum(by_split[s][row]["videos"] for s in splits)),
                  "classes": first[row].get("classes"), "splits": splits}
            for row in first}


def class_counts(results):
    """The class counts of one split's rows, sorted (one count when all its rows agree)."""
    return sorted({m.get("classes") for m in results.values()}, key=str)


def mean_missing(mean, dataset, full_runs=True, nets=("alone",), runs=(PAPER_RUN,)):
    """Why Table 4 (the mean over all three splits of a whole dataset) does not fit `mean`: [] when it does.
    nets: the temporal net of each split's run, runs: their run_settings (each must be of one kind)."""
    splits, classes = next(iter(mean.values()))["splits"], next(iter(mean.values()))["classes"]
    missing = [s for s in ucf101.SPLITS if s not in splits]
    reasons = [f"split{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} missing"] if missing else []
    if dataset not in FULL_CLASSES:
        reasons.append(f"this is {dataset}")
    elif classes != FULL_CLASSES[dataset]:
        reasons.append(f"{classes} classes where {dataset} has {FULL_CLASSES[dataset]}")
    if not full_runs:
        reasons.append("some split was tested on part of its classes or test videos")
    if len(set(nets)) > 1:
        reasons.append(f"the splits' temporal nets differ ({', '.join(sorted(set(nets)))})")
    differ = sorted(key for key in runs[0] if any(run.get(key) != runs[0][key] for run in runs))
    if differ:
        reasons.append(f"the splits were tested with different settings ({', '.join(differ)})")
    return reasons


def mean_table(results_by_split, dataset="ucf101", full_runs=True, nets=("alone",), runs=(PAPER_RUN,)):
    """Markdown: the table of the mean over splits and a note on what it averages.

    It is compared with Table 4 only when all three splits are there, with all of the dataset's
    classes, and full_runs (no split's run was limited to part of its classes or test videos), and the
    same kind of temporal net (nets: each split's, TEMPORAL_NETS) and settings (runs: each split's
    run_settings) on every split; then each row as row_reference says.
    """
    mean = mean_over_splits(results_by_split)
    reasons = mean_missing(mean, dataset, full_runs, nets, runs)
    splits = next(iter(mean.values()))["splits"]
    note = (f"Mean over split{'s' if len(splits) > 1 else ''} {', '.join(map(str, splits))} "
            f"({next(iter(mean.values()))['videos']} test videos in all).")
    if reasons:
        note += (f" {PAPER}'s Table 4 is the mean over all three splits of the whole dataset; it does not apply "
                 f"here ({'; '.join(reasons)}), hence \"—\".")
    return results_table(mean, dataset, None if reasons else "mean", nets[0], runs[0]) + "\n" + note + "\n"


def read_metrics(path):
    """A metrics.json written by write_report -> its dict."""
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as error:
        saved = error
    if not isinstance(saved, dict) or not {"results", "settings"} <= set(saved):
        raise DataError(f"{path}: not a metrics.json written by fuse_test.py; "
                               "run that split's fuse_test.py again, or move its folder away")
    return saved


def write_splits_mean(results_dir, dataset):
    """The mean over the splits tested so far, written to <results_dir>/<dataset>_mean/ (results.md,
    metrics.json); returns the markdown, or None (nothing written) with fewer than two splits.

    Reads the default run folders <results_dir>/<dataset>_split{1,2,3}/metrics.json. Rows that not
    every split has (e.g. an SVM run on one split only) are left out of the mean, and said so.
    """
    paths = {split: os.path.join(results_dir, f"{dataset}_split{split}", "metrics.json") for split in ucf101.SPLITS}
    saved = {split: read_metrics(path) for split, path in paths.items() if os.path.isfile(path)}
    common = [row for row in ROW_NAMES if all(row in s["results"] for s in saved.values())]
    if len(saved) < 2 or not common:
        return None
    # A full run is one the split-1 figures would fit, whatever its split.
    full_runs = all(not references_missing({**s["settings"], "split": 1}) for s in saved.values())
    results_by_split = {split: {row: s["results"][row] for row in common} for split, s in saved.items()}
    nets = [saved_net(s) for s in saved.values()]
    runs = [saved_run(s) for s in saved.values()]
    try:
        mean = mean_over_splits(results_by_split)
        table = mean_table(results_by_split, dataset, full_runs, nets, runs)
    except DataError as error:
        raise DataError(f"{', '.join(paths[s] for s in saved)}: {error}")
    left_out = sorted(set().union(*(s["results"] for s in saved.values())) - set(common))
    lines = [f"# Two-stream results: {dataset}, mean over splits", "", table]
    if left_out:
        lines += [f"Left out, as not every split has them: {', '.join(ROW_NAMES.get(r, r) for r in left_out)}.", ""]
    scope = None if mean_missing(mean, dataset, full_runs, nets, runs) else "mean"
    if scope:
        lines += ["Reference figures (top-1, %) and their sources:", ""]
        lines += reference_notes(dataset, scope, common, nets[0], runs[0])
    out_dir = os.path.join(results_dir, f"{dataset}_mean")
    os.makedirs(out_dir, exist_ok=True)
    markdown = "\n".join(lines) + "\n"
    atomic.write_text(os.path.join(out_dir, "metrics.json"),
               json.dumps({"results": mean, "references": scope, "runs": [paths[s] for s in saved]}, indent=1))
    atomic.write_text(os.path.join(out_dir, "results.md"), markdown)
    return markdown


def saved_net(saved):
    """The temporal net of a metrics.json's run (TEMPORAL_NETS); files written before it was recorded: from
    its rows."""
    return saved["settings"].get("temporal_net") or ("multitask" if "temporal_multitask" in saved["results"]
                                                     else "alone")


def saved_run(saved):
    """The run_settings of a metrics.json's run."""
    return run_settings(saved["settings"], saved.get("aggregate", "mean"), saved.get("fusion_weights"))


# ---------------------------------------------------------------------------- per-class files

def fusion_gains(per_class, classes, count=5):
    """Classes gaining and losing most from fusion -> (gains, losses), each [(class, gain)].

    per_class: {"spatial", "temporal", "fusion": accuracy [C]}. The gain of a class is its fusion
    accuracy minus that of the better stream on that class; classes without test videos are skipped.
    """
    gain = per_class["fusion"] - np.maximum(per_class["spatial"], per_class["temporal"])
    present = [i for i in range(len(classes)) if not np.isnan(gain[i])]
    gains = sorted((i for i in present if gain[i] > 0), key=lambda i: (-gain[i], classes[i]))[:count]
    losses = sorted((i for i in present if gain[i] < 0), key=lambda i: (gain[i], classes[i]))[:count]
    return [(classes[i], float(gain[i])) for i in gains], [(classes[i], float(gain[i])) for i in losses]


def write_per_class_csv(path, classes, labels, per_class):
    """class, test videos, then each stream's accuracy (%) and, with fusion, the gain over the better stream."""
    counts = np.bincount(np.asarray(labels), minlength=len(classes))
    streams = list(per_class)
    header = ["class", "videos"] + [f"{name}_accuracy" for name in streams]
    if "fusion" in per_class and "spatial" in per_class and "temporal" in per_class:
        header.append("fusion_gain_over_better_stream")
    with atomic.replacing(path) as temp, open(temp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i, name in enumerate(classes):
            row = [name, int(counts[i])] + [blank_nan(100 * per_class[s][i]) for s in streams]
            if len(header) > len(streams) + 2:
                better = max(per_class["spatial"][i], per_class["temporal"][i])
                row.append(blank_nan(100 * (per_class["fusion"][i] - better)))
            writer.writerow(row)


def blank_nan(value):
    return "" if np.isnan(value) else f"{value:.1f}"


def misclassified(videos, labels, scores, classes, final):
    """Videos the `final` scores get wrong -> rows [video, true class, predicted, confidence, each stream's prediction].

    scores: {stream name: video scores [V, C]} including `final` (e.g. "fusion").
    """
    predictions = {name: s.argmax(axis=1) for name, s in scores.items()}
    rows = []
    for i, video in enumerate(videos):
        guess = predictions[final][i]
        if guess != labels[i]:
            rows.append([video, classes[labels[i]], classes[guess], f"{scores[final][i, guess]:.3f}"]
                        + [classes[predictions[name][i]] for name in scores if name != final])
    return rows


def write_misclassified_csv(path, videos, labels, scores, classes, final):
    others = [name for name in scores if name != final]
    with atomic.replacing(path) as temp, open(temp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "true_class", f"{final}_prediction", f"{final}_score"]
                        + [f"{name}_prediction" for name in others])
        writer.writerows(misclassified(videos, labels, scores, classes, final))


# ---------------------------------------------------------------------------- plots

def plot_confusion(path, matrix, classes, title):
    """Row-normalised confusion matrix (each true class sums to 1) as a PNG."""
    totals = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, totals, out=np.zeros(matrix.shape, np.float64), where=totals > 0)
    size = min(max(4.0, 0.16 * len(classes) + 2), 24.0)
    fontsize = max(3.0, min(9.0, 400 / max(len(classes), 1)))
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(len(classes)), classes, fontsize=fontsize)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    with atomic.replacing(path) as temp:
        fig.savefig(temp, dpi=150)
    plt.close(fig)


def plot_top_scores(path, scores, classes, k=5):
    """Bar charts of the top-k classes of one video, one panel per stream. scores: {name: [C]}."""
    fig, axes = plt.subplots(1, len(scores), figsize=(4 * len(scores), 0.5 * k + 1.5), squeeze=False)
    for ax, (name, stream_scores) in zip(axes[0], scores.items()):
        top = np.argsort(stream_scores)[::-1][:k][::-1]
        ax.barh(range(len(top)), np.asarray(stream_scores)[top], color="tab:blue")
        ax.set_yticks(range(len(top)), [classes[i] for i in top])
        ax.set_xlim(0, 1)
        ax.set_title(name)
        ax.set_xlabel("softmax score")
    fig.tight_layout()
    with atomic.replacing(path) as temp:
        fig.savefig(temp, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------- the report

def aggregation_text(method):
    return ("samples aggregated by mean softmax (the paper)" if method == "mean" else
            "samples aggregated by voting (the seed; ties go to the higher mean softmax)")


def final_row(video_scores):
    """The row the confusion matrix and the misclassified list are about: SVM, else averaging, else the stream."""
    return next((row for row in ("svm", "fusion") if row in video_scores), list(video_scores)[-1])


def write_report(out_dir, videos, labels, classes, video_scores, settings, aggregate, fusion_weights, skipped,
                 svm_choice=None):
    """Measure each row of video scores; write results.md, per_class.csv, confusion.png, misclassified.csv
    and metrics.json to out_dir; return the results table (markdown).

    video_scores: {"spatial", "temporal", "fusion", "svm" (each optional): [V, C]}, rows of `videos`.
    settings: how the scores were computed (dataset, split, samples, crops, class_limit, max_videos...);
    the class count is taken from the scores. aggregate: "mean" or "vote"; fusion_weights: the averaging
    weights (spatial, temporal), None for equal; skipped: names of test videos left out for missing
    frames or flow; svm_choice: the SVM's C and how it was chosen (evaluation.svm_fit's choice_). The published
    figures are shown only when references_apply(settings), for the temporal net settings["temporal_net"]
    (TEMPORAL_NETS; default: temporal_net(settings)), each beside the row measured with its settings
    (row_reference: the protocol, aggregate, fusion_weights and settings["networks"]["temporal"]'s stack_length,
    arch and norm). Every file is written atomically.
    """
    labels = np.asarray(labels)
    row_order(video_scores)  # refuses unknown rows
    video_scores = {row: np.asarray(video_scores[row]) for row in ROW_NAMES if row in video_scores}
    fusion_weights = (1.0, 1.0) if fusion_weights is None else tuple(fusion_weights)  # evaluation.fuse's default
    for row, scores in video_scores.items():
        if scores.shape != (len(videos), len(classes)) or len(labels) != len(videos):
            raise ValueError(f"{row}: scores of shape {scores.shape} for {len(videos)} videos, {len(labels)} labels "
                             f"and {len(classes)} classes")
    settings = {**settings, "num_classes": len(classes),
                "temporal_net": settings.get("temporal_net") or temporal_net(settings)}
    scope = "split1" if references_apply(settings) else None
    run = run_settings(settings, aggregate, fusion_weights)
    final = final_row(video_scores)
    results = {row: evaluation.metrics(labels, s) for row, s in video_scores.items()}
    per_class = {row: evaluation.per_class_accuracy(labels, s, len(classes)) for row, s in video_scores.items()}
    table = results_table(results, settings.get("dataset"), scope, settings["temporal_net"], run)

    os.makedirs(out_dir, exist_ok=True)
    write_per_class_csv(os.path.join(out_dir, "per_class.csv"), classes, labels, per_class)
    matrix = evaluation.confusion(labels, video_scores[final], len(classes))
    plot_confusion(os.path.join(out_dir, "confusion.png"), matrix,
                   classes, f"{final}: {settings.get('dataset', '')} split {settings.get('split', '')}, "
                            f"top-1 {percent(results[final]['top1'])}%")
    write_misclassified_csv(os.path.join(out_dir, "misclassified.csv"), videos, labels, video_scores, classes, final)
    atomic.write_text(os.path.join(out_dir, "metrics.json"), json.dumps(
        {"results": results, "final": final, "num_classes": len(classes), "references": scope, "aggregate": aggregate,
         "fusion_weights": list(fusion_weights), "svm": svm_choice, "skipped": list(skipped), "settings": settings},
        indent=1))
    atomic.write_text(os.path.join(out_dir, "results.md"), results_markdown(
        table, results, per_class, classes, skipped, settings, run, fusion_weights, svm_choice))
    return table


def results_markdown(table, results, per_class, classes, skipped, settings, run, fusion_weights, svm_choice=None):
    """results.md: the table, how the scores were made (run: run_settings), the figure each row is compared
    with or why none, where the figures come from, and the classes fusion helps and hurts most."""
    dataset = settings.get("dataset", "?")
    crops = "10 crops (4 corners + centre, and their flips)" if settings.get("crops") == "10" else "centre crop"
    lines = [f"# Two-stream results: {dataset}, split {settings.get('split', '?')}", "", table,
             f"Test videos: {next(iter(results.values()))['videos']}"
             + (f" ({len(skipped)} skipped for missing frames or flow, listed below)" if skipped else "") + ". "
             f"{settings.get('samples', '?')} samples per video, {crops}; {aggregation_text(run['aggregate'])}."
             + (f" Temporal net: {run['temporal_network']}, L = {run['stack_length']}." if run["stack_length"]
                else ""), ""]
    if settings.get("models"):
        lines += ["Models: " + "; ".join(f"{stream}: {model['model']}, {checkpoints.progress_text(model['trained'])}"
                                         for stream, model in settings["models"].items()) + ".", ""]
    if "fusion" in results:
        lines += [f"Fusion (averaging): weighted average of the two streams' video scores, spatial : temporal = "
                  f"{fusion_weights[0]:g} : {fusion_weights[1]:g}.", ""]
    if "svm" in results:
        lines += ["Fusion (SVM): a linear multi-class SVM (Crammer and Singer) trained on the training videos' "
                  "scores, each stream's softmax L2-normalised, the streams concatenated and each feature "
                  f"standardised; {svm_text(svm_choice)}.", ""]
    if references_apply(settings):
        lines += ["Reference figures (top-1, %) and their sources:", ""]
        lines += reference_notes(dataset, "split1", row_order(results), settings.get("temporal_net", "alone"), run)
    else:
        lines += [f"The reference figures are for all of UCF-101 or HMDB-51, split 1 (or the mean over its three "
                  f"splits); they do not apply to this run ({'; '.join(references_missing(settings))}), "
                  "hence \"—\"."]
    if len(classes) <= 5:
        lines += ["", f"Top-5 is \"—\": with {len(classes)} classes it would be 100% by construction."]
    if {"spatial", "temporal", "fusion"} <= set(per_class):
        gains, losses = fusion_gains(per_class, classes)
        for title, rows in (("Classes gaining most from fusion", gains), ("Classes losing most from fusion", losses)):
            lines += ["", f"## {title}", "", "(averaging fusion's accuracy minus that of the better stream on the "
                                             "class)", ""]
            lines += [f"- {name}: {100 * gain:+.1f}" for name, gain in rows] or ["- none"]
    if skipped:
        lines += ["", "## Skipped videos (missing frames or flow)", ""] + [f"- {name}" for name in skipped]
    return "\n".join(lines) + "\n"


def svm_text(choice):
    """The SVM's C and how it was chosen, for results.md."""
    if not choice:
        return "C unknown"
    accuracy = ", ".join(f"{100 * a:.1f}% at C = {c}" for c, a in choice["accuracy"].items())
    return (f"C = {choice['C']:g} ({choice['how']}"
            + (f"; mean validation accuracy {accuracy}" if accuracy else "") + ")")


def side_by_side(results_dir, pairs):
    """Markdown: temporal top-1 of nets trained alone and multi-task, from the metrics.json of
    fuse_test runs in results_dir. pairs: {row title: (run alone, run multi-task)}."""
    lines = ["| Temporal net tested on | trained alone | multi-task | difference |", "|---|:-:|:-:|:-:|"]
    for title, runs in pairs.items():
        alone, together = (temporal_top1(read_metrics(os.path.join(results_dir, run, "metrics.json"))) for run in runs)
        lines.append(f"| {title} | {percent(alone)} | {percent(together)} | {100 * (together - alone):+.1f} |")
    return "\n".join(lines) + "\n"


def temporal_top1(saved):
    """The temporal row's top-1 in a metrics.json, multi-task or not."""
    results = saved["results"]
    return results["temporal" if "temporal" in results else "temporal_multitask"]["top1"]
