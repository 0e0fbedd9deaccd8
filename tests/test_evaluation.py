"""Score arithmetic, metrics, score files, tables and plots of evaluation.py, on hand-made scores."""
import csv
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import atomic
import evaluation
from errors import DataError


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
    assert "C = 1 (C not cross-validated" in evaluation.svm_text(one_group.choice_)


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
import errors, evaluation
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
sys.exit(errors.run(lambda argv: evaluation.save_scores({str(path)!r}, ["a"] * 500, [0] * 500,
                                                        np.ones((500, 25, 2)) / 2, ["X", "Y"])))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith(f"error: {path}: could not be written")
    assert "Traceback" not in done.stderr
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["scores_spatial.npz"]


# ---------------------------------------------------------------------------- tables and reports

def table_results():
    m = lambda top1, top5, mean_class: {"top1": top1, "top5": top5, "mean_class": mean_class, "videos": 10}
    return {"spatial": m(0.5, 0.9, 0.45), "temporal": m(0.6, float("nan"), 0.55), "fusion": m(0.8, 1.0, 0.789)}


def table_rows(table):
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table.strip().splitlines()]


def test_split1_averaging_reference_is_the_papers_uni_directional_85_9():
    split1 = evaluation.reference_rows("ucf101", "split1", "alone")
    ours = evaluation.reference_for(split1, "fusion")
    assert ours[2] == 85.9 and ours[0] == "Fusion by averaging (uni-directional flow)"
    assert [ref[0] for ref in split1 if ref[2] == 85.6] == ["Fusion by averaging (bi-directional flow)"]
    assert evaluation.reference_for(split1, "svm") is None  # the paper's SVM figure is the multi-task net's
    multitask = evaluation.reference_rows("ucf101", "split1", "multitask")
    assert evaluation.reference_for(multitask, "svm")[:3] == ("Fusion by SVM (multi-task temporal)", ("svm",), 87.0)
    notes = " ".join(evaluation.REFERENCE_NOTES.values())
    assert "averaging 85.9 with uni-directional flow" in notes and "85.6 with bi-directional flow" in notes
    assert "Feichtenhofer" not in notes and "re-run" not in notes


def test_every_reference_figure_is_the_papers():
    figures = {}
    for dataset, scope, _, _, name, paper, seed in evaluation.PAPER_FIGURES:
        figures.setdefault((dataset, scope), {})[name] = (paper, seed)
    assert {name: paper for name, (paper, _) in figures[("ucf101", "split1")].items()} == {
        "Spatial (pre-trained + last layer)": 72.7,
        "Temporal (L = 10, mean subtraction, uni-directional flow)": 81.0,
        "Temporal (multi-task, UCF-101 + HMDB-51)": 81.5, "Fusion by averaging (uni-directional flow)": 85.9,
        "Fusion by averaging (bi-directional flow)": 85.6, "Fusion by averaging (multi-task temporal)": 86.2,
        "Fusion by SVM (multi-task temporal)": 87.0}
    assert [paper for paper, _ in figures[("ucf101", "mean")].values()] == [73.0, 83.7, 86.9, 88.0]
    assert [paper for paper, _ in figures[("hmdb51", "mean")].values()] == [40.5, 54.6, 58.0, 59.4]
    assert [paper for paper, _ in figures[("hmdb51", "split1")].values()] == [46.6, 49.0, 52.8, 55.4]
    assert [seed for _, seed in figures[("ucf101", "split1")].values() if seed] == [73.1, 78.8, 82.0]
    assert all(seed is None for key, rows in figures.items() if key != ("ucf101", "split1")
               for _, seed in rows.values())  # the seed reported UCF-101 split 1 only


# The paper's figure beside each of our rows, for every kind of run (None: "—", the paper has none).
EXPECTED_FIGURES = {
    ("ucf101", "split1", "alone"): {"spatial": 72.7, "temporal": 81.0, "fusion": 85.9, "svm": None},
    ("ucf101", "split1", "multitask"): {"spatial": 72.7, "temporal_multitask": 81.5, "fusion": 86.2, "svm": 87.0},
    ("ucf101", "split1", "init"): {"spatial": 72.7, "temporal": None, "fusion": None, "svm": None},
    ("ucf101", "mean", "alone"): {"spatial": 73.0, "temporal": None, "fusion": None, "svm": None},
    ("ucf101", "mean", "multitask"): {"spatial": 73.0, "temporal_multitask": 83.7, "fusion": 86.9, "svm": 88.0},
    ("ucf101", "mean", "init"): {"spatial": 73.0, "temporal": None, "fusion": None, "svm": None},
    ("hmdb51", "split1", "alone"): {"spatial": None, "temporal": 46.6, "fusion": None, "svm": None},
    ("hmdb51", "split1", "multitask"): {"spatial": None, "temporal_multitask": 55.4, "fusion": None, "svm": None},
    ("hmdb51", "split1", "init"): {"spatial": None, "temporal": 49.0, "fusion": None, "svm": None},
    ("hmdb51", "mean", "alone"): {"spatial": 40.5, "temporal": None, "fusion": None, "svm": None},
    ("hmdb51", "mean", "multitask"): {"spatial": 40.5, "temporal_multitask": 54.6, "fusion": 58.0, "svm": 59.4},
    ("hmdb51", "mean", "init"): {"spatial": 40.5, "temporal": None, "fusion": None, "svm": None},
}


@pytest.mark.parametrize("dataset, scope, net", list(EXPECTED_FIGURES))
def test_each_row_is_compared_with_the_figure_of_its_kind_of_run(dataset, scope, net):
    """Every dataset, one split or the mean of three, and temporal net trained alone, multi-task or fine-tuned
    (--init): each row beside its own figure or "—", and every other figure of the paper's table listed once,
    as "not run"."""
    expected = EXPECTED_FIGURES[(dataset, scope, net)]
    m = table_results()["fusion"]
    table = table_rows(evaluation.results_table({row: m for row in expected}, dataset, scope, net))
    ours = {evaluation.ROW_NAMES[row]: row for row in expected}
    shown = {cells[0]: cells[1] for cells in table[2:] if cells[0] in ours}
    assert shown == {name: evaluation.figure(expected[row]) for name, row in ours.items()}
    not_run = [cells[1] for cells in table[2:] if cells[3] == "not run"]
    published = [paper for d, s, *_, paper, _ in evaluation.PAPER_FIGURES if (d, s) == (dataset, scope)]
    assert sorted(not_run + [f for f in shown.values() if f != "—"]) == sorted(map(evaluation.figure, published))


def test_the_kind_of_temporal_net_comes_from_the_run_settings():
    assert evaluation.temporal_net({}) == "alone"
    assert evaluation.temporal_net({"multitask": {"dataset": "hmdb51", "videos": "all"}, "init": "x.keras"}) == \
        "multitask"
    assert evaluation.temporal_net({"multitask": None, "init": "checkpoints/ucf101/temporal/last.keras"}) == "init"


def test_results_table_compares_each_row_with_its_reference():
    rows = table_rows(evaluation.results_table(table_results(), "ucf101", "split1"))
    assert rows[0][:3] == ["Network", "Simonyan et al. 2014 (top-1)", "Seed repository (top-1)"]
    assert rows[2:] == [["Spatial", "72.7", "73.1", "50.0", "90.0", "45.0"],
                        ["Temporal", "81.0", "78.8", "60.0", "—", "55.0"],
                        ["Fusion (averaging)", "85.9", "82.0", "80.0", "100.0", "78.9"],
                        ["Fusion (SVM)", "—", "—", "not run", "—", "—"],
                        # the paper's rows we have no counterpart for
                        ["Temporal (multi-task, UCF-101 + HMDB-51)", "81.5", "—", "not run", "—", "—"],
                        ["Fusion by averaging (bi-directional flow)", "85.6", "—", "not run", "—", "—"],
                        ["Fusion by averaging (multi-task temporal)", "86.2", "—", "not run", "—", "—"],
                        ["Fusion by SVM (multi-task temporal)", "87.0", "—", "not run", "—", "—"]]


def test_results_table_places_svm_and_multitask_rows_beside_their_figures():
    m = table_results()["fusion"]
    results = {"temporal_multitask": m, "svm": m, "fusion": m, "spatial": m}
    rows = table_rows(evaluation.results_table(results, "ucf101", "split1"))
    assert [row[:3] for row in rows[2:6]] == [["Spatial", "72.7", "73.1"], ["Temporal (multi-task)", "81.5", "—"],
                                             ["Fusion (averaging)", "86.2", "—"],
                                             ["Fusion (SVM)", "87.0", "—"]]  # table order, whatever the dict's
    assert [row[:4] for row in rows[6:]] == [
        ["Temporal (L = 10, mean subtraction, uni-directional flow)", "81.0", "78.8", "not run"],
        ["Fusion by averaging (uni-directional flow)", "85.9", "82.0", "not run"],
        ["Fusion by averaging (bi-directional flow)", "85.6", "—", "not run"]]
    hmdb = table_rows(evaluation.results_table({"temporal": m, "spatial": m}, "hmdb51", "split1"))
    assert [row[:4] for row in hmdb[2:]] == [["Spatial", "—", "—", "80.0"], ["Temporal", "46.6", "—", "80.0"],
                                             ["Temporal (fine-tuned from UCF-101)", "49.0", "—", "not run"],
                                             ["Temporal (78 UCF-101 classes added to the training set)", "52.8", "—",
                                              "not run"],
                                             ["Temporal (multi-task, UCF-101 + HMDB-51)", "55.4", "—", "not run"]]


def test_results_table_without_references_shows_dashes():
    for dataset, scope in (("ucf101", None), ("synthetic", "split1"), ("ucf101", "split2")):
        rows = table_rows(evaluation.results_table(table_results(), dataset, scope))
        assert [row[0] for row in rows[2:]] == ["Spatial", "Temporal", "Fusion (averaging)", "Fusion (SVM)"]
        assert [row[1:3] for row in rows[2:]] == [["—", "—"]] * 4
    single = table_rows(evaluation.results_table({"temporal": table_results()["temporal"]}, "ucf101", None))
    assert [row[0] for row in single[2:]] == ["Temporal"]
    with pytest.raises(ValueError, match="unknown result rows"):
        evaluation.results_table({"fused": table_results()["fusion"]})


def test_fusion_gains_rank_classes_against_the_better_stream():
    classes = ["A", "B", "C", "D"]
    per_class = {"spatial": np.array([0.5, 1.0, 0.2, np.nan]), "temporal": np.array([0.6, 0.5, 0.1, np.nan]),
                 "fusion": np.array([0.9, 0.7, 0.2, np.nan])}
    gains, losses = evaluation.fusion_gains(per_class, classes)
    assert [c for c, _ in gains] == ["A"] and gains[0][1] == pytest.approx(0.3)
    assert losses == [("B", pytest.approx(-0.3))]
    many = {"spatial": np.ones(5), "temporal": np.zeros(5), "fusion": np.array([0.2, 0.5, 0.5, 0.9, 1.0])}
    gains, losses = evaluation.fusion_gains(many, list("VWXYZ"), count=3)
    assert gains == [] and [c for c, _ in losses] == ["V", "W", "X"]  # worst first, ties by name


def test_per_class_csv_and_misclassified(tmp_path):
    classes = ["A", "B", "C"]
    labels = np.array([0, 0, 1, 2])
    spatial = np.array([[0.9, 0.1, 0], [0.2, 0.8, 0], [0.1, 0.9, 0], [0.5, 0, 0.5]])
    temporal = np.array([[0.6, 0.4, 0], [0.7, 0.3, 0], [0.7, 0.3, 0], [0, 0.2, 0.8]])
    scores = {"spatial": spatial, "temporal": temporal, "fusion": evaluation.fuse([spatial, temporal])}
    per_class = {name: evaluation.per_class_accuracy(labels, s, 3) for name, s in scores.items()}
    path = tmp_path / "per_class.csv"
    evaluation.write_per_class_csv(path, classes, labels, per_class)
    with open(path) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["class", "videos", "spatial_accuracy", "temporal_accuracy", "fusion_accuracy",
                       "fusion_gain_over_better_stream"]
    # Video 1 (A) is wrong in spatial and fusion; video 2 (B) in temporal; video 3 (C) in spatial,
    # whose 0.5/0.5 tie goes to the lower index, A.
    assert rows[1] == ["A", "2", "50.0", "100.0", "50.0", "-50.0"]
    assert rows[2] == ["B", "1", "100.0", "0.0", "100.0", "0.0"]
    assert rows[3] == ["C", "1", "0.0", "100.0", "100.0", "0.0"]
    videos = ["v0", "v1", "v2", "v3"]
    assert evaluation.misclassified(videos, labels, scores, classes, "fusion") == [["v1", "A", "B", "0.550", "B", "A"]]
    evaluation.write_misclassified_csv(tmp_path / "misclassified.csv", videos, labels, scores, classes, "fusion")
    with open(tmp_path / "misclassified.csv") as f:
        assert list(csv.reader(f)) == [["video", "true_class", "fusion_prediction", "fusion_score",
                                        "spatial_prediction", "temporal_prediction"],
                                       ["v1", "A", "B", "0.550", "B", "A"]]


def test_plots_are_written(tmp_path):
    matrix = np.array([[3, 1], [0, 2]])
    evaluation.plot_confusion(tmp_path / "confusion.png", matrix, ["A", "B"], "fusion")
    evaluation.plot_top_scores(tmp_path / "top.png", {"spatial": np.array([0.7, 0.3]),
                                                      "fusion": np.array([0.4, 0.6])}, ["A", "B"], 2)
    for name in ("confusion.png", "top.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


# ---------------------------------------------------------------------------- the mean over splits

def split_results(top1, classes=101, rows=("spatial", "temporal", "fusion")):
    return {row: {"top1": top1 + i / 10, "top5": 0.9, "mean_class": top1, "videos": 100, "classes": classes}
            for i, row in enumerate(rows)}


def test_mean_over_splits_averages_each_row_and_records_the_splits():
    mean = evaluation.mean_over_splits({1: split_results(0.5), 2: split_results(0.6), 3: split_results(0.7)})
    assert list(mean) == ["spatial", "temporal", "fusion"]
    assert mean["spatial"]["top1"] == pytest.approx(0.6) and mean["fusion"]["top1"] == pytest.approx(0.8)
    assert mean["temporal"]["mean_class"] == pytest.approx(0.6) and mean["temporal"]["top5"] == pytest.approx(0.9)
    assert mean["fusion"]["videos"] == 300 and mean["fusion"]["classes"] == 101
    assert mean["fusion"]["splits"] == [1, 2, 3]
    # Split keys read back from metrics.json are strings; splits present only are averaged.
    two = evaluation.mean_over_splits({"3": split_results(0.7), "1": split_results(0.4)})
    assert two["spatial"]["top1"] == pytest.approx(0.55) and two["spatial"]["splits"] == [1, 3]


def test_mean_over_splits_refuses_to_average_different_things():
    with pytest.raises(DataError, match="same streams"):
        evaluation.mean_over_splits({1: split_results(0.5), 2: split_results(0.5, rows=("spatial", "temporal"))})
    with pytest.raises(DataError, match="same classes"):
        evaluation.mean_over_splits({1: split_results(0.5), 2: split_results(0.5, classes=10)})
    with pytest.raises(DataError, match="not among 1, 2, 3"):
        evaluation.mean_over_splits({1: split_results(0.5), 4: split_results(0.5)})
    with pytest.raises(DataError, match="at least one"):
        evaluation.mean_over_splits({})


def test_mean_table_compares_with_table_4_only_over_all_three_splits():
    multitask = ("spatial", "temporal_multitask", "fusion")
    all_three = {1: split_results(0.5, rows=multitask), 2: split_results(0.6, rows=multitask),
                 3: split_results(0.7, rows=multitask)}
    text = evaluation.mean_table(all_three, "ucf101", nets=("multitask",) * 3)
    rows = table_rows(text.split("\n\n")[0])
    assert rows[2:] == [["Spatial", "73.0", "—", "60.0", "90.0", "60.0"],
                        ["Temporal (multi-task)", "83.7", "—", "70.0", "90.0", "60.0"],
                        ["Fusion (averaging)", "86.9", "—", "80.0", "90.0", "60.0"],
                        ["Fusion (SVM)", "88.0", "—", "not run", "—", "—"]]
    assert "Mean over splits 1, 2, 3 (300 test videos in all)." in text and "does not apply" not in text
    hmdb = table_rows(evaluation.mean_table({s: split_results(0.5, classes=51, rows=multitask) for s in (1, 2, 3)},
                                            "hmdb51", nets=("multitask",) * 3))
    assert [row[1] for row in hmdb[2:6]] == ["40.5", "54.6", "58.0", "59.4"]
    # Table 4 is the multi-task net's: a single-task temporal net and its fusions have no figure there.
    alone = table_rows(evaluation.mean_table({s: split_results(0.5) for s in (1, 2, 3)}, "ucf101"))
    assert [row[:2] for row in alone[2:6]] == [["Spatial", "73.0"], ["Temporal", "—"], ["Fusion (averaging)", "—"],
                                              ["Fusion (SVM)", "—"]]
    mixed = evaluation.mean_table(all_three, "ucf101", nets=("multitask", "alone", "multitask"))
    assert "83.7" not in mixed and "the splits' temporal nets differ (alone, multitask)" in mixed

    missing = evaluation.mean_table({1: split_results(0.5), 3: split_results(0.7)}, "ucf101")
    assert [row[1] for row in table_rows(missing.split("\n\n")[0])[2:]] == ["—"] * 4
    assert "split 2 missing" in missing and "Mean over splits 1, 3" in missing
    assert "splits 2, 3 missing" in evaluation.mean_table({1: split_results(0.5)}, "ucf101")
    ten_classes = evaluation.mean_table({s: split_results(0.5, classes=10) for s in (1, 2, 3)}, "ucf101")
    assert "73.0" not in ten_classes and "10 classes" in ten_classes
    partial = evaluation.mean_table(all_three, "ucf101", full_runs=False)
    assert "73.0" not in partial and "part of its classes or test videos" in partial


# ---------------------------------------------------------------------------- the report

FULL_RUN = {"dataset": "ucf101", "split": 1, "samples": 25, "crops": "10", "class_limit": None, "max_videos": None}


def test_references_apply_to_whole_split_1_runs_only():
    assert evaluation.references_apply({**FULL_RUN, "num_classes": 101})
    assert evaluation.references_apply({**FULL_RUN, "dataset": "hmdb51", "num_classes": 51})
    assert evaluation.references_apply({**FULL_RUN, "num_classes": 101, "class_limit": 101})
    for changed, reason in (({"num_classes": 10}, "10 classes where ucf101 has 101"),
                            ({}, "unknown number of classes"),
                            ({"num_classes": 101, "class_limit": 20}, "first 20 of the 101 classes"),
                            ({"num_classes": 101, "max_videos": 200}, "200 test videos only"),
                            ({"num_classes": 101, "split": 2}, "split 2"),
                            ({"num_classes": 51, "dataset": "synthetic"}, "this is synthetic"),
                            ({"num_classes": 101, "dataset": "hmdb51"}, "101 classes where hmdb51 has 51")):
        settings = {**FULL_RUN, **changed}
        assert not evaluation.references_apply(settings), changed
        assert any(reason in text for text in evaluation.references_missing(settings)), changed


def report_inputs(num_classes, seed=0):
    """12 videos: spatial right on videos 0-8, temporal on 3-11, averaging on all but video 0,
    the SVM on all but videos 0 and 1."""
    rng = np.random.default_rng(seed)
    labels = np.arange(12) % num_classes
    classes = [f"Class{i:03d}" for i in range(num_classes)]
    videos = [f"v_{classes[y]}_g01_c{i:02d}" for i, y in enumerate(labels)]

    def scores(right):
        """0.9 for the true class of the videos in `right`, 0.5 for the next class on the others."""
        s = rng.uniform(0, 0.01, (12, num_classes))
        wrong = np.setdiff1d(np.arange(12), right)
        s[wrong, (labels[wrong] + 1) % num_classes] = 0.5
        s[right, labels[right]] = 0.9
        return s / s.sum(1, keepdims=True)

    spatial, temporal = scores(np.arange(9)), scores(np.arange(3, 12))
    fusion = evaluation.fuse([spatial, temporal])
    fusion[0] = scores([])[0]
    svm = scores(np.arange(2, 12)) * 10 - 3  # decision values, not probabilities
    return videos, labels, classes, {"spatial": spatial, "temporal": temporal, "fusion": fusion, "svm": svm}


def read_report(out_dir):
    with open(out_dir / "results.md") as f:
        markdown = f.read()
    with open(out_dir / "metrics.json") as f:
        saved = json.load(f)
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return markdown, {row[0]: row[1:] for row in table_rows("\n".join(lines))[2:]}, saved


def test_write_report_writes_every_file_with_the_rows_measured(tmp_path):
    videos, labels, classes, scores = report_inputs(101)
    choice = {"C": 0.1, "how": "5-fold cross-validation on the training videos, folds by UCF-101 group",
              "accuracy": {"0.1": 0.8, "1": 0.7}}
    table = evaluation.write_report(tmp_path, videos, labels, classes, scores, {**FULL_RUN, "skipped": []},
                                    "mean", (1.0, 1.0), ["v_Gone_g01_c01"], choice)
    for name in ("results.md", "per_class.csv", "confusion.png", "misclassified.csv", "metrics.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    markdown, rows, saved = read_report(tmp_path)
    assert table in markdown
    assert rows["Spatial"] == ["72.7", "73.1", "75.0", "75.0", "75.0"]  # 9 of 12 right, one video per class
    assert rows["Temporal"] == ["81.0", "78.8", "75.0", "75.0", "75.0"]
    assert rows["Fusion (averaging)"][:3] == ["85.9", "82.0", "91.7"]
    assert rows["Fusion (SVM)"][:3] == ["—", "—", "83.3"]  # 87.0 is the multi-task net's SVM
    assert rows["Fusion by SVM (multi-task temporal)"][:3] == ["87.0", "—", "not run"]
    assert "C = 0.1 (5-fold cross-validation on the training videos, folds by UCF-101 group" in markdown
    assert "80.0% at C = 0.1, 70.0% at C = 1" in markdown
    assert rows["Fusion by averaging (bi-directional flow)"][:3] == ["85.6", "—", "not run"]
    assert 'Fusion (averaging): compared with the paper\'s "Fusion by averaging (uni-directional flow)"' in markdown
    assert "do not apply" not in markdown and "mean softmax" in markdown and "Crammer and Singer" in markdown
    assert "Simonyan et al. 2014: " in markdown and "Seed repository: " in markdown
    assert "1 skipped" in markdown and "- v_Gone_g01_c01" in markdown
    # The final row is the SVM's: the confusion matrix and the misclassified list are about it.
    assert saved["final"] == "svm" and saved["num_classes"] == 101 and saved["settings"]["num_classes"] == 101
    assert saved["references"] == "split1" and saved["skipped"] == ["v_Gone_g01_c01"] and saved["svm"] == choice
    assert saved["settings"]["temporal_net"] == "alone"
    assert saved["results"]["fusion"]["top1"] == pytest.approx(11 / 12) and saved["results"]["svm"]["classes"] == 101
    wrong = read_csv(tmp_path / "misclassified.csv")
    assert wrong[0] == ["video", "true_class", "svm_prediction", "svm_score", "spatial_prediction",
                        "temporal_prediction", "fusion_prediction"]
    assert [row[0] for row in wrong[1:]] == videos[:2] and wrong[1][2] == classes[1]
    per_class = read_csv(tmp_path / "per_class.csv")
    assert per_class[0][2:] == ["spatial_accuracy", "temporal_accuracy", "fusion_accuracy", "svm_accuracy",
                                "fusion_gain_over_better_stream"]
    assert per_class[1] == ["Class000", "1", "100.0", "0.0", "0.0", "0.0", "-100.0"]


def read_csv(path):
    with open(path) as f:
        return list(csv.reader(f))


def test_write_report_never_compares_a_limited_run_with_the_papers_figures(tmp_path):
    videos, labels, classes, scores = report_inputs(10)
    for name, settings in (("ten_classes", FULL_RUN),  # ucf101 split 1 in name, 10 classes in truth
                           ("synthetic", {**FULL_RUN, "dataset": "synthetic"})):
        table = evaluation.write_report(tmp_path / name, videos, labels, classes, scores, settings, "vote",
                                        (1.0, 1.5), [])
        markdown, rows, saved = read_report(tmp_path / name)
        assert list(rows) == ["Spatial", "Temporal", "Fusion (averaging)", "Fusion (SVM)"]
        assert all(row[:2] == ["—", "—"] for row in rows.values())
        assert not any(str(figure) in table for figure in (72.7, 81.0, 85.9, 85.6, 87.0))
        assert "do not apply" in markdown and "voting" in markdown and "1 : 1.5" in markdown
        assert saved["references"] is None and saved["num_classes"] == 10
    assert "10 classes where ucf101 has 101" in read_report(tmp_path / "ten_classes")[0]


def test_write_report_on_one_stream(tmp_path):
    videos, labels, classes, scores = report_inputs(10)
    table = evaluation.write_report(tmp_path, videos, labels, classes, {"temporal": scores["temporal"]},
                                    {**FULL_RUN, "max_videos": 12, "num_classes": 101}, "mean", None, [])
    markdown, rows, saved = read_report(tmp_path)
    assert list(rows) == ["Temporal"] and rows["Temporal"][:3] == ["—", "—", "75.0"]
    assert saved["final"] == "temporal" and "12 test videos only" in markdown and "Classes gaining" not in markdown
    assert "Fusion" not in table
    with pytest.raises(ValueError, match="unknown result rows"):
        evaluation.write_report(tmp_path, videos, labels, classes, {"late": scores["fusion"]}, FULL_RUN, "mean",
                                None, [])
    with pytest.raises(ValueError, match="shape"):
        evaluation.write_report(tmp_path, videos[:5], labels[:5], classes, scores, FULL_RUN, "mean", None, [])


def write_split_metrics(results_dir, split, results, **settings):
    folder = results_dir / f"ucf101_split{split}"
    folder.mkdir(parents=True)
    with open(folder / "metrics.json", "w") as f:
        json.dump({"results": results, "settings": {**FULL_RUN, "num_classes": 101, "split": split, **settings}}, f)


def test_write_splits_mean_averages_the_split_runs_found(tmp_path):
    write_split_metrics(tmp_path, 1, split_results(0.5, rows=("spatial", "temporal", "fusion", "svm")))
    assert evaluation.write_splits_mean(str(tmp_path), "ucf101") is None  # one split: nothing to average
    assert not (tmp_path / "ucf101_mean").exists()
    write_split_metrics(tmp_path, 3, split_results(0.7))
    markdown = evaluation.write_splits_mean(str(tmp_path), "ucf101")
    rows = table_rows("\n".join(line for line in markdown.splitlines() if line.startswith("|")))
    assert [row[:4] for row in rows[2:]] == [["Spatial", "—", "—", "60.0"], ["Temporal", "—", "—", "70.0"],
                                             ["Fusion (averaging)", "—", "—", "80.0"],
                                             ["Fusion (SVM)", "—", "—", "not run"]]
    assert "split 2 missing" in markdown and "Left out, as not every split has them: Fusion (SVM)." in markdown
    with open(tmp_path / "ucf101_mean" / "results.md") as f:
        assert f.read() == markdown

    write_split_metrics(tmp_path, 2, split_results(0.6))
    markdown = evaluation.write_splits_mean(str(tmp_path), "ucf101")
    assert "| Spatial | 73.0 | — | 60.0 |" in markdown and "Simonyan et al. 2014: " in markdown
    assert "| Fusion (averaging) | — | — | 80.0 |" in markdown  # Table 4's 86.9 is with the multi-task net
    assert "Seed repository: " not in markdown  # the seed reported split 1 only
    multitask = tmp_path / "multitask"
    for split in (1, 2, 3):
        write_split_metrics(multitask, split, split_results(0.5, rows=("spatial", "temporal_multitask", "fusion")),
                            temporal_net="multitask")
    together = evaluation.write_splits_mean(str(multitask), "ucf101")
    assert "| Temporal (multi-task) | 83.7 |" in together and "| Fusion (averaging) | 86.9 |" in together
    with open(tmp_path / "ucf101_mean" / "metrics.json") as f:
        saved = json.load(f)
    assert saved["references"] == "mean" and saved["results"]["spatial"]["splits"] == [1, 2, 3]
    assert saved["results"]["spatial"]["top1"] == pytest.approx(0.6)


def test_write_splits_mean_compares_limited_runs_with_nothing_and_names_bad_files(tmp_path):
    for split in (1, 2):
        write_split_metrics(tmp_path, split, split_results(0.5))
    write_split_metrics(tmp_path, 3, split_results(0.5), max_videos=50)
    markdown = evaluation.write_splits_mean(str(tmp_path), "ucf101")
    assert "73.0" not in markdown and "part of its classes or test videos" in markdown
    write_split_metrics(tmp_path / "other", 1, split_results(0.5))
    write_split_metrics(tmp_path / "other", 2, split_results(0.5, classes=10), num_classes=10)
    with pytest.raises(DataError, match=r"ucf101_split2/metrics.json.*same classes"):
        evaluation.write_splits_mean(str(tmp_path / "other"), "ucf101")
    (tmp_path / "ucf101_split2" / "metrics.json").write_text("{")
    with pytest.raises(DataError, match=r"ucf101_split2/metrics.json: not a metrics.json"):
        evaluation.write_splits_mean(str(tmp_path), "ucf101")
