"""Score arithmetic of the two-stream test protocol: aggregation of the samples, fusion (averaging and the
SVM), metrics, and the score files; shared by fuse_test.py and demo.py. report.py turns its numbers into
tables, files and plots.

Pure numpy and scikit-learn: no model, no data loading. Shapes:
    sample scores  [V videos, N samples, C classes]  softmax of each sample, crops averaged
    video scores   [V, C]                            one row per video after aggregation
Accuracies are fractions (0..1).
"""
import json
import warnings
import zipfile

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, top_k_accuracy_score
from sklearn.model_selection import GridSearchCV, GroupKFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler, normalize
from sklearn.svm import LinearSVC
from sklearn.utils import resample

from twostream.datasets import ucf101
from twostream.errors import DataError
from twostream.protocol.presets import AGGREGATIONS
from twostream.storage import atomic

VOTE_TIE_BREAK = 1e-3  # weight of the mean softmax in a vote score: below one vote, so it only breaks ties
# The fusion SVM (the paper does not give its C): C from this grid by cross-validation on the training videos.
SVM_C_GRID = (0.001, 0.01, 0.1, 1.0)  # larger C: slower to converge (minutes per fit at UCF-101's size)
SVM_DEFAULT_C = 1.0  # when the training videos are too few to cross-validate
SVM_FOLDS = 5
SVM_TOLERANCE = 1e-4  # liblinear's stopping tolerance (scikit-learn's default), reached once standardised
# C is cross-validated on at most this many training videos (a sample stratified by class): a fit's time grows
# faster than its video count, and on near-uniform scores (untrained or stand-in nets) one fit of UCF-101's 9,537
# took 6.5 minutes (20 of them in the grid), against 7 s at 2,000. Real nets' scores fit in seconds either way.
SVM_CV_VIDEOS = 2000
# liblinear's Crammer-Singer solver stops after 100,000 iterations whatever max_iter says (scikit-learn does not
# pass it on): max_iter only decides when scikit-learn warns that a fit stopped unconverged.
SVM_MAX_ITER = 100_000


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


# ---------------------------------------------------------------------------- SVM fusion (the paper's last row)

def svm_features(scores):
    """{stream: video scores [V, C]} -> [V, streams * C]: each stream's scores L2-normalised, then concatenated.

    Normalising each stream first gives both the same scale, whatever their confidence.
    """
    arrays = [np.asarray(s, np.float64) for s in scores.values()]
    if not arrays or any(a.ndim != 2 or a.shape != arrays[0].shape for a in arrays):
        raise ValueError(f"SVM fusion needs video scores [videos, classes] of one shape per stream, got "
                         f"{ {name: np.shape(s) for name, s in scores.items()} }")
    return np.concatenate([normalize(a) for a in arrays], axis=1)


def svm_model(C):
    """The paper's fusion SVM: linear, multi-class in Crammer and Singer's formulation, which scikit-learn's
    LinearSVC (liblinear) offers as multi_class="crammer_singer". Its features are standardised first (each
    feature centred and scaled over the training videos): an affine map, so the same linear classifiers, but
    a problem liblinear solves to SVM_TOLERANCE: softmax scores of weak nets are all near 1/C, and without it
    liblinear stopped at max_iter with decision values near 1e-7, which rounding flipped between runs."""
    return make_pipeline(StandardScaler(), LinearSVC(multi_class="crammer_singer", C=C, tol=SVM_TOLERANCE,
                                                     max_iter=SVM_MAX_ITER, random_state=0))


def video_groups(names):
    """UCF-101's group of each video (the gNN of v_Class_gNN_cMM: the clips of one long video), or None
    when some name has none (HMDB-51's clips)."""
    matches = [ucf101.NAME_PATTERN.match(name) for name in names]
    return None if not all(matches) else [int(m["group"]) for m in matches]


def svm_folds(labels, groups):
    """(cross-validation folds over the training videos, how they are made), or (None, why there are none).
    By group where the videos have groups (a group's clips never on both sides of a fold); otherwise
    stratified by class, as many folds as the rarest class allows."""
    if groups is not None:
        count = min(SVM_FOLDS, len(set(groups)))
        if count < 2:
            return None, "the training videos are all of one group"
        return GroupKFold(count), f"{count}-fold cross-validation on the training videos, folds by UCF-101 group"
    count = min(SVM_FOLDS, int(np.bincount(labels)[np.unique(labels)].min()))
    if count < 2:
        return None, "a class has a single training video"
    return (StratifiedKFold(count), f"{count}-fold cross-validation on the training videos, stratified by class "
                                    "(their names give no groups)")


def svm_choose_c(features, labels, groups):
    """{"C", "how", "accuracy": {C: mean validation accuracy}}: the C of SVM_C_GRID with the best mean
    accuracy over folds of the training videos (the smallest C among equals), or SVM_DEFAULT_C when
    they are too few to be cross-validated. Beyond SVM_CV_VIDEOS videos, on a sample of that many."""
    sampled = len(labels) > SVM_CV_VIDEOS
    if sampled:
        sample = np.sort(resample(np.arange(len(labels)), replace=False, n_samples=SVM_CV_VIDEOS, stratify=labels,
                                  random_state=0))
        features, labels = features[sample], labels[sample]
        groups = None if groups is None else [groups[i] for i in sample]
    folds, how = svm_folds(labels, groups)
    if folds is None:
        return {"C": SVM_DEFAULT_C, "how": f"C not cross-validated ({how}): the default", "accuracy": {}}
    how += f" ({SVM_CV_VIDEOS} of them, sampled by class)" if sampled else ""
    search = GridSearchCV(svm_model(SVM_DEFAULT_C), {"linearsvc__C": SVM_C_GRID}, cv=folds, refit=False,
                          n_jobs=-1)  # one fit per core: liblinear uses one
    with warnings.catch_warnings():  # a fold without some class is fine
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        search.fit(features, labels, groups=groups)
    accuracy = search.cv_results_["mean_test_score"]
    return {"C": float(SVM_C_GRID[int(np.argmax(accuracy))]), "how": how,
            "accuracy": {f"{c:g}": float(a) for c, a in zip(SVM_C_GRID, accuracy)}}


def svm_fit(train_scores, train_labels, C=None, groups=None):
    """A linear multi-class SVM (svm_model) on the training videos' scores -> a fitted scikit-learn pipeline.

    train_scores: {stream: softmax video scores [V, C]}; train_labels: [V] class indices. C: None chooses it
    by cross-validation on these videos (svm_choose_c; groups: each video's group, see video_groups).
    The choice is kept on the SVM (`choice_`: {"C", "how", "accuracy"}), and the stream names (`streams_`)
    so that svm_scores can check it gets the same.
    """
    features = svm_features(train_scores)
    labels = np.asarray(train_labels)
    if len(labels) != len(features):
        raise ValueError(f"{len(features)} training videos' scores but {len(labels)} labels")
    choice = {"C": float(C), "how": "C given", "accuracy": {}} if C is not None else svm_choose_c(features, labels,
                                                                                                   groups)
    svm = svm_model(choice["C"]).fit(features, labels)
    svm.streams_, svm.choice_ = tuple(train_scores), choice
    return svm


def svm_scores(svm, test_scores):
    """The SVM's decision values [V, C] on the test videos' scores: metrics() ranks them like softmax scores.

    test_scores: {stream: video scores [V, C]}, the streams svm_fit was given, in the same order.
    A class absent from the training labels gets a score below every other class.
    """
    if tuple(test_scores) != svm.streams_:
        raise ValueError(f"the SVM was trained on the streams {list(svm.streams_)}, got {list(test_scores)}")
    decision = svm.decision_function(svm_features(test_scores))
    if decision.ndim == 1:  # two classes: scikit-learn returns the margin of the second class only
        decision = np.stack([-decision, decision], axis=1)
    num_classes = next(iter(test_scores.values())).shape[1]
    scores = np.full((len(decision), num_classes), decision.min() - 1.0)
    scores[:, svm.classes_] = decision
    return scores


# ---------------------------------------------------------------------------- metrics

def top_k(labels, scores, k):
    """Top-k accuracy, or NaN when there are no more than k classes (it would be 100% by construction)."""
    num_classes = scores.shape[1]
    if num_classes <= k:
        return float("nan")
    return float(top_k_accuracy_score(labels, scores, k=k, labels=np.arange(num_classes)))


def metrics(labels, scores):
    """Video scores [V, C] and true labels [V] -> {"top1", "top5", "mean_class", "videos", "classes"}.

    mean_class is the mean over the classes present of each class's accuracy (balanced accuracy);
    classes is C, the number of classes the scores rank.
    """
    labels = np.asarray(labels)
    predictions = np.asarray(scores).argmax(axis=1)
    with warnings.catch_warnings():  # predictions of a class absent from the test list are fine
        warnings.simplefilter("ignore")
        mean_class = balanced_accuracy_score(labels, predictions)
    return {"top1": float(accuracy_score(labels, predictions)), "top5": top_k(labels, np.asarray(scores), 5),
            "mean_class": float(mean_class), "videos": int(len(labels)), "classes": int(np.shape(scores)[1])}


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
    """Write per-sample scores to an .npz atomically (atomic.replacing): no pickle, strings as unicode.

    settings: a JSON-able dict of how the scores were computed (samples, crops, model...).
    """
    sample_scores = np.asarray(sample_scores, np.float32)
    if sample_scores.ndim != 3 or len(sample_scores) != len(videos) or len(labels) != len(videos):
        raise ValueError(f"{len(videos)} videos, {len(labels)} labels, scores of shape {sample_scores.shape}")
    with atomic.replacing(path) as temp, open(temp, "wb") as f:
        np.savez(f, videos=np.array(list(videos), dtype=str).reshape(-1),
                 labels=np.asarray(labels, np.int32), scores=sample_scores,
                 classes=np.array(list(classes), dtype=str), settings=np.array(json.dumps(settings or {})))


def load_scores(path, redo="run fuse_test.py again with --overwrite"):
    """An .npz written by save_scores -> {"videos", "labels", "scores", "classes", "settings"}; a missing,
    damaged (e.g. truncated) or foreign file is a DataError naming it and `redo`, what computes it again."""
    try:
        with np.load(path, allow_pickle=False) as data:
            loaded = {"videos": [str(v) for v in data["videos"]], "labels": data["labels"].astype(np.int64),
                      "scores": data["scores"].astype(np.float32), "classes": [str(c) for c in data["classes"]],
                      "settings": json.loads(str(data["settings"]))}
    except FileNotFoundError:
        raise DataError(f"{path}: not found")
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: damaged, or not a scores file written by fuse_test.py ({error}). "
                               f"To compute it again, {redo}")
    scores = loaded["scores"]
    if scores.ndim != 3 or len(scores) != len(loaded["videos"]) or scores.shape[2] != len(loaded["classes"]):
        raise DataError(f"{path}: scores of shape {scores.shape} do not match "
                               f"{len(loaded['videos'])} videos and {len(loaded['classes'])} classes")
    return loaded
