"""Score arithmetic and reports for the two-stream test protocol, shared by fuse_test.py and demo.py.

Pure numpy, scikit-learn and matplotlib (Agg): no model, no data loading. Shapes:
    sample scores  [V videos, N samples, C classes]  softmax of each sample, crops averaged
    video scores   [V, C]                            one row per video after aggregation
Accuracies are fractions (0..1) in the code and percentages in the tables.
"""
import csv
import json
import os
import tempfile
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix,  # noqa: E402
                             top_k_accuracy_score)

import ucf101  # noqa: E402

AGGREGATIONS = ("mean", "vote")
VOTE_TIE_BREAK = 1e-3  # weight of the mean softmax in a vote score: below one vote, so it only breaks ties

# Top-1 accuracy (%) on UCF-101 split 1, with the source of each figure.
PAPER = "Simonyan et al. 2014"
SEED = "Seed repository"
REFERENCES = {
    "spatial": {PAPER: 72.7, SEED: 73.1},
    "temporal": {PAPER: 81.0, SEED: 78.8},
    "fusion": {PAPER: 85.6, SEED: 82.0},
    "svm": {PAPER: 87.0},
}
REFERENCE_NOTES = [
    f"{PAPER}: K. Simonyan and A. Zisserman, Two-Stream Convolutional Networks for Action Recognition "
    "in Videos (NIPS 2014), "
    "UCF-101 split 1: spatial 72.7, temporal 81.0, fusion by averaging 85.6, fusion by a linear SVM 87.0.",
    f"{SEED}: its README's own results (it voted over frames where the paper averages softmax scores). "
    "It quoted 85.9 as the paper's fusion figure: that is Feichtenhofer et al. 2016's re-run of averaging "
    "fusion (Convolutional Two-Stream Network Fusion, CVPR 2016), not the paper's 85.6.",
]
ROW_NAMES = {"spatial": "Spatial", "temporal": "Temporal", "fusion": "Fusion (averaging)", "svm": "Fusion (SVM)"}


# ---------------------------------------------------------------------------- score arithmetic

def aggregate(sample_scores, method="mean"):
    """Per-sample softmax [V, N, C] -> video scores [V, C].

    mean: the average softmax over the N samples (the paper).
    vote: each sample votes for its top class; the score is the fraction of votes (the seed).
        Ties are broken by the mean softmax: score = (votes + 1e-3 * mean softmax), divided by
        its sum so that a row still sums to 1. A vote is worth 1 and the mean softmax at most
        1e-3, so it never outweighs a vote; among classes with equally many votes the one with
        the higher mean softmax wins (and, if that ties too, the lower class index, as
        np.argmax does). Classes with no vote are ranked by mean softmax, which makes top-5
        meaningful for voting too.
    """
    scores = np.asarray(sample_scores, np.float64)
    if scores.ndim != 3:
        raise ValueError(f"sample scores must be [videos, samples, classes], got shape {scores.shape}")
    mean = scores.mean(axis=1)
    if method == "mean":
        return mean
    if method != "vote":
        raise ValueError(f"unknown aggregation {method!r}; choose from {', '.join(AGGREGATIONS)}")
    winners = scores.argmax(axis=2)  # [V, N]
    votes = (winners[..., None] == np.arange(scores.shape[2])).sum(axis=1).astype(np.float64)
    tallied = votes + VOTE_TIE_BREAK * mean
    return tallied / tallied.sum(axis=1, keepdims=True)


def fuse(scores, weights=None):
    """Weighted average of score arrays of one shape (video scores [V, C] or one video's [C])."""
    scores = [np.asarray(s, np.float64) for s in scores]
    weights = np.ones(len(scores)) if weights is None else np.asarray(weights, np.float64)
    if len(weights) != len(scores):
        raise ValueError(f"{len(scores)} score arrays but {len(weights)} weights")
    if any(s.shape != scores[0].shape for s in scores):
        raise ValueError(f"score arrays differ in shape: {[s.shape for s in scores]}")
    if weights.sum() <= 0 or (weights < 0).any():
        raise ValueError(f"fusion weights must be non-negative and not all zero, got {list(weights)}")
    return sum(w * s for w, s in zip(weights, scores)) / weights.sum()


# ---------------------------------------------------------------------------- metrics

def top_k(labels, scores, k):
    """Top-k accuracy, or NaN when there are no more than k classes (it would be 100% by construction)."""
    num_classes = scores.shape[1]
    if num_classes <= k:
        return float("nan")
    return float(top_k_accuracy_score(labels, scores, k=k, labels=np.arange(num_classes)))


def metrics(labels, scores):
    """Video scores [V, C] and true labels [V] -> {"top1", "top5", "mean_class", "videos"}.

    mean_class is the mean over the classes present of each class's accuracy (balanced accuracy).
    """
    labels = np.asarray(labels)
    predictions = np.asarray(scores).argmax(axis=1)
    with warnings.catch_warnings():  # predictions of a class absent from the test list are fine
        warnings.simplefilter("ignore")
        mean_class = balanced_accuracy_score(labels, predictions)
    return {"top1": float(accuracy_score(labels, predictions)), "top5": top_k(labels, np.asarray(scores), 5),
            "mean_class": float(mean_class), "videos": int(len(labels))}


def confusion(labels, scores, num_classes):
    """Confusion matrix [C, C] of counts: row = true class, column = predicted class."""
    return confusion_matrix(labels, np.asarray(scores).argmax(axis=1), labels=np.arange(num_classes))


def per_class_accuracy(labels, scores, num_classes):
    """Accuracy of each class [C]; NaN for a class with no test video."""
    matrix = confusion(labels, scores, num_classes)
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / totals, np.nan)


# ---------------------------------------------------------------------------- score files

def save_scores(path, videos, labels, sample_scores, classes, settings=None):
    """Write per-sample scores to an .npz atomically (temp file + rename): no pickle, strings as unicode.

    settings: a JSON-able dict of how the scores were computed (samples, crops, model...).
    """
    sample_scores = np.asarray(sample_scores, np.float32)
    if sample_scores.ndim != 3 or len(sample_scores) != len(videos) or len(labels) != len(videos):
        raise ValueError(f"{len(videos)} videos, {len(labels)} labels, scores of shape {sample_scores.shape}")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=folder, prefix=".scores-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, videos=np.array(list(videos), dtype=str).reshape(-1),
                     labels=np.asarray(labels, np.int32), scores=sample_scores,
                     classes=np.array(list(classes), dtype=str), settings=np.array(json.dumps(settings or {})))
        os.replace(temp, path)
    except BaseException:  # interrupted or failed: leave no temp file behind
        if os.path.exists(temp):
            os.remove(temp)
        raise


def load_scores(path):
    """An .npz written by save_scores -> {"videos", "labels", "scores", "classes", "settings"}."""
    try:
        with np.load(path, allow_pickle=False) as data:
            loaded = {"videos": [str(v) for v in data["videos"]], "labels": data["labels"].astype(np.int64),
                      "scores": data["scores"].astype(np.float32), "classes": [str(c) for c in data["classes"]],
                      "settings": json.loads(str(data["settings"]))}
    except FileNotFoundError:
        raise ucf101.DataError(f"{path}: not found")
    except (KeyError, ValueError, OSError) as error:
        raise ucf101.DataError(f"{path}: not a scores file written by fuse_test.py ({error}); "
                               "delete it or pass --overwrite to compute it again")
    scores = loaded["scores"]
    if scores.ndim != 3 or len(scores) != len(loaded["videos"]) or scores.shape[2] != len(loaded["classes"]):
        raise ucf101.DataError(f"{path}: scores of shape {scores.shape} do not match "
                               f"{len(loaded['videos'])} videos and {len(loaded['classes'])} classes")
    return loaded


# ---------------------------------------------------------------------------- tables

def percent(value):
    return "—" if value is None or np.isnan(value) else f"{100 * value:.1f}"


def results_table(results, references=True):
    """Markdown table in the seed's form (Network | Simonyan et al. 2014 | ... | Ours).

    results: {"spatial" | "temporal" | "fusion": metrics dict}, in row order. references=False
    shows "—" for the reference figures (they are for UCF-101 split 1 only). The SVM fusion
    row is the paper's; it is listed when fusion was evaluated, and not run here.
    """
    lines = [f"| Network | {PAPER} (top-1) | {SEED} (top-1) | Ours top-1 | Ours top-5 | Ours mean class accuracy |",
             "|---|:-:|:-:|:-:|:-:|:-:|"]
    rows = list(results) + (["svm"] if "fusion" in results else [])
    for key in rows:
        refs = REFERENCES[key]
        paper, seed = (f"{refs[source]:.1f}" if references and source in refs else "—" for source in (PAPER, SEED))
        if key in results:
            m = results[key]
            ours = f"{percent(m['top1'])} | {percent(m['top5'])} | {percent(m['mean_class'])}"
        else:
            ours = "not run | — | —"
        lines.append(f"| {ROW_NAMES[key]} | {paper} | {seed} | {ours} |")
    return "\n".join(lines) + "\n"


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
    with open(path, "w", newline="") as f:
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
    with open(path, "w", newline="") as f:
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
    fig.savefig(path, dpi=150)
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
    fig.savefig(path, dpi=120)
    plt.close(fig)
