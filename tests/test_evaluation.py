"""Score arithmetic, the SVM, metrics and score files of evaluation.py, on hand-made scores (its report:
test_report.py)."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

from twostream.errors import DataError
from twostream.scoring import evaluation, report
from twostream.storage import atomic


def softmax_rows(*rows):
    return np.array(rows, np.float64)


# ---------------------------------------------------------------------------- aggregation

def test_mean_aggregation_averages_samples():
    scores = np.array([[[0.6, 0.4], [0.2, 0.8], [0.4, 0.6]]])  # 1 video, 3 samples, 2 classes
    np.testing.assert_allclose(evaluation.aggregate(scores, "mean"), [[0.4, 0.6]])


def test_vote_counts_each_sample_top_class():
    # Class 0 wins 2 of 3 votes although class 1 has the higher mean softmax (0.6 vs 0.4).
    scores = np.array([[[0.55, 0.45], [0.55, 0.45], [0.1, 0.9]]])
    video = evaluation.aggregate(scores, "vote")
    assert video.argmax() == 0
    np.testing.assert_allclose(video, [[2 / 3, 1 / 3]], atol=1e-3)
    np.testing.assert_allclose(video.sum(axis=1), 1.0)
    assert evaluation.aggregate(scores, "mean").argmax() == 1


def test_vote_tie_goes_to_the_higher_mean_softmax():
    # 2 votes each for classes 0 and 2; class 2 has the higher mean softmax (0.45 vs 0.375).
    scores = np.array([[[0.5, 0.2, 0.3], [0.4, 0.3, 0.3], [0.3, 0.0, 0.7], [0.3, 0.2, 0.5]]])
    video = evaluation.aggregate(scores, "vote")[0]
    assert video.argmax() == 2
    mean = scores.mean(axis=1)[0]
    expected = (np.array([2, 0, 2]) + 1e-3 * mean) / (4 + 1e-3)
    np.testing.assert_allclose(video, expected)
    # The same votes with the softmax mass moved to class 0 flip the winner.
    swapped = scores[..., [2, 1, 0]]
    assert evaluation.aggregate(swapped, "vote")[0].argmax() == 0


def test_vote_full_tie_goes_to_the_lower_class_index():
    scores = np.array([[[0.6, 0.4], [0.4, 0.6]]])
    assert evaluation.aggregate(scores, "vote")[0].argmax() == 0


def test_vote_ranks_unvoted_classes_by_mean_softmax():
    scores = np.array([[[0.5, 0.1, 0.4, 0.0], [0.6, 0.0, 0.1, 0.3]]])
    order = np.argsort(evaluation.aggregate(scores, "vote")[0])[::-1]
    assert list(order) == [0, 2, 3, 1]


def test_aggregate_rejects_bad_input():
    with pytest.raises(ValueError, match="videos, samples, classes"):
        evaluation.aggregate(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="unknown aggregation"):
        evaluation.aggregate(np.zeros((1, 2, 3)), "max")


# ---------------------------------------------------------------------------- fusion

def test_fuse_is_a_weighted_average():
    spatial = softmax_rows([0.8, 0.2], [0.3, 0.7])
    temporal = softmax_rows([0.2, 0.8], [0.1, 0.9])
    np.testing.assert_allclose(evaluation.fuse([spatial, temporal]), [[0.5, 0.5], [0.2, 0.8]])
    # TSN's 1 : 1.5 weighting: (0.8 + 1.5 * 0.2) / 2.5 = 0.44
    np.testing.assert_allclose(evaluation.fuse([spatial, temporal], [1, 1.5]), [[0.44, 0.56], [0.18, 0.82]])
    # One video's scores (demo.py) work as well.
    np.testing.assert_allclose(evaluation.fuse([spatial[0], temporal[0]], (1.0, 3.0)), [0.35, 0.65])


def test_fuse_rejects_mismatches():
    with pytest.raises(ValueError, match="weights"):
        evaluation.fuse([np.zeros((2, 3))] * 2, [1, 1, 1])
    with pytest.raises(ValueError, match="shape"):
        evaluation.fuse([np.zeros((2, 3)), np.zeros((3, 3))])
    with pytest.raises(ValueError, match="non-negative"):
        evaluation.fuse([np.zeros((2, 3))] * 2, [0, 0])


def appearance_and_motion_scores(videos_per_class=20, seed=0):
    """4 classes = 2 colours x 2 motions. The spatial stream sees only the colour, the temporal
    stream only the motion: each hesitates between the two classes it cannot tell apart."""
    rng = np.random.default_rng(seed)
    colour = np.array([0, 0, 1, 1])
    motion = np.array([0, 1, 0, 1])
    labels = np.repeat(np.arange(4), videos_per_class)
    spatial = np.zeros((len(labels), 4))
    temporal = np.zeros((len(labels), 4))
    for i, label in enumerate(labels):
        spatial[i, colour == colour[label]] = 0.45
        temporal[i, motion == motion[label]] = 0.45
    spatial += rng.uniform(0, 0.1, spatial.shape)
    temporal += rng.uniform(0, 0.1, temporal.shape)
    return labels, spatial / spatial.sum(1, keepdims=True), temporal / temporal.sum(1, keepdims=True)


def test_fusion_beats_each_stream_when_they_see_different_cues():
    labels, spatial, temporal = appearance_and_motion_scores()
    spatial_top1 = evaluation.metrics(labels, spatial)["top1"]
    temporal_top1 = evaluation.metrics(labels, temporal)["top1"]
    fusion_top1 = evaluation.metrics(labels, evaluation.fuse([spatial, temporal]))["top1"]
    assert spatial_top1 < 0.75 and temporal_top1 < 0.75  # each stream is a coin flip between two classes
    assert fusion_top1 == 1.0


def top1(labels, scores):
    return evaluation.metrics(labels, scores)["top1"]


@pytest.mark.slow
def test_svm_fusion_learns_from_training_scores_and_beats_each_stream():
    train_labels, train_spatial, train_temporal = appearance_and_motion_scores(seed=0)
    labels, spatial, temporal = appearance_and_motion_scores(seed=1)  # other videos: new noise
    svm = evaluation.svm_fit({"spatial": train_spatial, "temporal": train_temporal}, train_labels)
    scores = evaluation.svm_scores(svm, {"spatial": spatial, "temporal": temporal})
    assert scores.shape == (80, 4)
    assert top1(labels, spatial) < 0.75 and top1(labels, temporal) < 0.75
    assert top1(labels, scores) == 1.0
    assert svm[-1].multi_class == "crammer_singer" and svm.choice_["C"] in evaluation.SVM_C_GRID
    assert "stratified" in svm.choice_["how"]  # no UCF-101 names given: no groups


def weak_net_scores(videos_per_class=10, classes=12, seed=0, strength=0.01):
    """Softmax scores of two weak nets (as on the mini set: 20-35% top-1), all close to 1 / classes."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), videos_per_class)
    streams = {}
    for stream, signal in (("spatial", 1.0), ("temporal", 1.5)):
        logits = strength * (rng.normal(size=(len(labels), classes)) + signal * np.eye(classes)[labels])
        streams[stream] = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return labels, streams


def test_the_svm_converges_on_weak_nets_scores_and_rounding_does_not_change_it():
    """Scores near 1 / C: liblinear stopped unconverged at decision values near 1e-7 (issue 16), so that
    scores rounded otherwise (merged shards, another batch size) gave another SVM row."""
    labels, train = weak_net_scores(seed=0)
    test = weak_net_scores(seed=1)[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        svm = evaluation.svm_fit(train, labels, C=1.0)
    rng = np.random.default_rng(2)
    rounded = {s: (v * (1 + 1e-6 * rng.standard_normal(v.shape))).astype(np.float32) for s, v in train.items()}
    again = evaluation.svm_fit(rounded, labels, C=1.0)
    first, second = (evaluation.svm_scores(m, test).argmax(axis=1) for m in (svm, again))
    assert (first == second).all()
    assert np.abs(evaluation.svm_scores(svm, test)).max() > 1e-3


def test_svm_c_is_cross_validated_on_folds_by_group():
    """UCF-101 names: folds by group (gNN), never splitting a group; the chosen C is one of the grid's, with the
    validation accuracy of each; too few groups keep the default C and say why."""
    labels, train = weak_net_scores(videos_per_class=6, seed=3, strength=3.0)
    names = [f"v_C{label}_g{8 + i % 6:02d}_c01" for i, label in enumerate(labels)]
    groups = evaluation.video_groups(names)
    assert groups[:7] == [8, 9, 10, 11, 12, 13, 8]
    assert evaluation.video_groups(names + ["April_09_brush_hair_u_nm_np1_ba_goo_0"]) is None  # HMDB-51: none
    folds, how = evaluation.svm_folds(labels, groups)
    assert "5-fold" in how and "group" in how
    for fit, validate in folds.split(np.zeros(len(labels)), labels, groups):
        assert not {groups[i] for i in fit} & {groups[i] for i in validate}
    svm = evaluation.svm_fit(train, labels, groups=groups)
    assert svm.choice_["C"] in evaluation.SVM_C_GRID and set(svm.choice_["accuracy"]) == {
        f"{c:g}" for c in evaluation.SVM_C_GRID}
    best = max(svm.choice_["accuracy"].values())
    assert svm.choice_["accuracy"][f"{svm.choice_['C']:g}"] == best
    assert svm[-1].C == svm.choice_["C"]
    one_group = evaluation.svm_fit(train, labels, groups=[8] * len(labels))
    assert one_group.choice_["C"] == evaluation.SVM_DEFAULT_C and "not cross-validated" in one_group.choice_["how"]
    assert "C = 1 (C not cross-validated" in report.svm_text(one_group.choice_)


def test_svm_c_is_cross_validated_on_at_most_svm_cv_videos(monkeypatch):
    """Issue 19: on near-uniform scores a fit's time grows faster than its video count (6.5 min for one fit of
    UCF-101's 9,537 training videos, 20 in the grid): C is chosen on a sample by class of SVM_CV_VIDEOS videos.
    Fewer videos than that: all of them, the choice unchanged; the final fit always on all."""
    labels, train = weak_net_scores(videos_per_class=12, seed=3, strength=3.0)
    groups = [8 + i % 6 for i in range(len(labels))]
    features = evaluation.svm_features(train)
    search = GridSearchCV(evaluation.svm_model(1.0), {"linearsvc__C": evaluation.SVM_C_GRID},
                          cv=evaluation.svm_folds(labels, groups)[0]).fit(features, labels, groups=groups)
    whole = evaluation.svm_fit(train, labels, groups=groups)
    assert whole.choice_["C"] == search.best_params_["linearsvc__C"] and "sampled" not in whole.choice_["how"]
    monkeypatch.setattr(evaluation, "SVM_CV_VIDEOS", 60)
    sampled = evaluation.svm_fit(train, labels, groups=groups)
    assert "(60 of them, sampled by class)" in sampled.choice_["how"]
    assert sampled.choice_["C"] in evaluation.SVM_C_GRID and sampled[-1].n_features_in_ == features.shape[1]
    np.testing.assert_allclose(sampled[0].mean_, features.mean(axis=0))  # the final fit saw every video


def test_svm_fusion_wins_where_averaging_cannot():
    """The temporal stream's classes come in another order (0<->1, 2<->3): averaging adds the scores
    of different classes and gets every video wrong; the SVM learns which column goes with which class."""
    swap = [1, 0, 3, 2]
    train_labels, train_spatial, train_temporal = appearance_and_motion_scores(seed=2)
    labels, spatial, temporal = appearance_and_motion_scores(seed=3)
    svm = evaluation.svm_fit({"spatial": train_spatial, "temporal": train_temporal[:, swap]}, train_labels)
    test = {"spatial": spatial, "temporal": temporal[:, swap]}
    assert top1(labels, evaluation.fuse(list(test.values()))) == 0.0
    assert top1(labels, evaluation.svm_scores(svm, test)) == 1.0


def test_svm_features_are_each_stream_l2_normalised_then_concatenated():
    features = evaluation.svm_features({"spatial": np.array([[3.0, 4.0]]), "temporal": np.array([[0.5, 0.5]])})
    np.testing.assert_allclose(features, [[0.6, 0.8, np.sqrt(0.5), np.sqrt(0.5)]])


def test_svm_scores_cover_every_class_and_check_the_streams():
    labels = np.array([0, 0, 2, 2, 3, 3])  # class 1 has no training video
    train = {"spatial": np.eye(5)[labels] * 0.8 + 0.04}
    svm = evaluation.svm_fit(train, labels)
    scores = evaluation.svm_scores(svm, {"spatial": np.eye(5)[[3, 2, 0]] * 0.8 + 0.04})
    assert scores.shape == (3, 5) and list(scores.argmax(axis=1)) == [3, 2, 0]
    assert (scores[:, [1, 4]] < np.delete(scores, [1, 4], axis=1).min(axis=1, keepdims=True)).all()
    two = evaluation.svm_fit({"spatial": np.eye(2)[[0, 1, 0, 1]] * 0.9 + 0.05}, [0, 1, 0, 1])
    binary = evaluation.svm_scores(two, {"spatial": np.eye(2)[[1, 0]] * 0.9 + 0.05})
    assert binary.shape == (2, 2) and list(binary.argmax(axis=1)) == [1, 0]
    with pytest.raises(ValueError, match="streams"):
        evaluation.svm_scores(svm, {"temporal": np.eye(5)})
    with pytest.raises(ValueError, match="one shape"):
        evaluation.svm_fit({"spatial": np.eye(5), "temporal": np.eye(4)}, range(5))


# ---------------------------------------------------------------------------- metrics

def hand_made_predictions():
    """5 videos, 7 classes; the true class ranks 1, 1, 2, 1, 6 in its video's scores."""
    labels = np.array([0, 0, 0, 1, 2])
    scores = np.full((5, 7), 0.01)
    scores[0, 0] = 0.9
    scores[1, 0] = 0.8
    scores[2, [1, 0]] = [0.6, 0.3]  # wrong, true class second
    scores[3, 1] = 0.7
    scores[4, [0, 3, 4, 5, 6, 2]] = [0.5, 0.4, 0.3, 0.2, 0.15, 0.1]  # wrong, true class sixth
    return labels, scores / scores.sum(1, keepdims=True)


def test_metrics_match_hand_computed_values():
    labels, scores = hand_made_predictions()
    m = evaluation.metrics(labels, scores)
    assert m["top1"] == pytest.approx(3 / 5)
    assert m["top5"] == pytest.approx(4 / 5)
    assert m["mean_class"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m["videos"] == 5


def test_top5_is_undefined_with_five_classes_or_fewer():
    labels = np.array([0, 1])
    assert np.isnan(evaluation.metrics(labels, np.eye(2))["top5"])
    assert evaluation.metrics(labels, np.eye(2))["top1"] == 1.0


def test_confusion_and_per_class_accuracy():
    labels, scores = hand_made_predictions()
    matrix = evaluation.confusion(labels, scores, 7)
    assert matrix.shape == (7, 7)
    assert matrix[0, 0] == 2 and matrix[0, 1] == 1 and matrix[1, 1] == 1 and matrix[2, 0] == 1
    assert matrix.sum() == 5
    accuracy = evaluation.per_class_accuracy(labels, scores, 7)
    np.testing.assert_allclose(accuracy[:3], [2 / 3, 1, 0])
    assert np.isnan(accuracy[3:]).all()  # no test videos


# ---------------------------------------------------------------------------- score files

def test_scores_round_trip_without_pickle(tmp_path):
    path = str(tmp_path / "scores_spatial.npz")
    scores = np.random.default_rng(1).dirichlet(np.ones(3), size=(2, 4))
    evaluation.save_scores(path, ["v_Alpha_g01_c01", "v_Beta_g01_c01"], [0, 1], scores, ["Alpha", "Beta", "Gamma"],
                           {"samples": 4, "crops": "center"})
    loaded = evaluation.load_scores(path)
    assert loaded["videos"] == ["v_Alpha_g01_c01", "v_Beta_g01_c01"]
    assert loaded["classes"] == ["Alpha", "Beta", "Gamma"]
    assert list(loaded["labels"]) == [0, 1]
    np.testing.assert_allclose(loaded["scores"], scores, rtol=1e-6)
    assert loaded["settings"] == {"samples": 4, "crops": "center"}
    with np.load(path, allow_pickle=False) as data:
        assert data["videos"].dtype.kind == "U" and data["classes"].dtype.kind == "U"
    assert os.listdir(tmp_path) == ["scores_spatial.npz"]  # no temp file left behind


def test_save_scores_replaces_atomically_and_checks_shapes(tmp_path):
    path = str(tmp_path / "scores.npz")
    evaluation.save_scores(path, ["a"], [0], np.ones((1, 2, 2)) / 2, ["X", "Y"])
    evaluation.save_scores(path, ["a", "b"], [0, 1], np.ones((2, 2, 2)) / 2, ["X", "Y"])
    assert evaluation.load_scores(path)["videos"] == ["a", "b"]
    with pytest.raises(ValueError):
        evaluation.save_scores(path, ["a", "b"], [0], np.ones((2, 2, 2)), ["X", "Y"])
    assert evaluation.load_scores(path)["videos"] == ["a", "b"]


def test_load_scores_names_a_bad_file(tmp_path):
    bad = tmp_path / "scores_temporal.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(DataError, match="scores_temporal.npz"):
        evaluation.load_scores(str(bad))
    with pytest.raises(DataError, match="not found"):
        evaluation.load_scores(str(tmp_path / "missing.npz"))


def test_a_truncated_scores_file_is_named_with_what_computes_it_again(tmp_path):
    path = tmp_path / "scores_spatial.npz"
    evaluation.save_scores(str(path), ["a", "b"], [0, 1], np.ones((2, 3, 2)) / 2, ["X", "Y"], {"samples": 3})
    whole = path.read_bytes()
    for size in (len(whole) // 2, len(whole) - 30, 100, 0):
        path.write_bytes(whole[:size])  # what a copy cut short, or a disk that filled up, leaves
        with pytest.raises(DataError, match=r"scores_spatial.npz: damaged.*To compute it again, pass --redo"):
            evaluation.load_scores(str(path), "pass --redo")


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "results.md"
    atomic.write_text(str(path), "old")
    with pytest.raises(ZeroDivisionError):
        with atomic.replacing(str(path)) as temp:
            assert temp.endswith(".md") and os.path.dirname(temp) == str(tmp_path)
            with open(temp, "w") as f:
                f.write("half of the new")
            1 / 0
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["results.md"]


@pytest.mark.slow
def test_a_failed_write_leaves_the_old_scores_and_names_the_file(tmp_path):
    """A real write failure, the process's file size limit (RLIMIT_FSIZE: EFBIG; a full disk's ENOSPC goes
    on to errors.run, exit 1): the old file stays whole, no temporary file is left, one line names the file."""
    path = tmp_path / "scores_spatial.npz"
    evaluation.save_scores(str(path), ["a"], [0], np.ones((1, 2, 2)) / 2, ["X", "Y"])
    before = path.read_bytes()
    script = f"""
import resource, signal, sys
import numpy as np
sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r})
from twostream import errors
from twostream.scoring import evaluation
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
sys.exit(errors.run(lambda argv: evaluation.save_scores({str(path)!r}, ["a"] * 500, [0] * 500,
                                                        np.ones((500, 25, 2)) / 2, ["X", "Y"])))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith(f"error: {path}: could not be written")
    assert "Traceback" not in done.stderr
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["scores_spatial.npz"]
