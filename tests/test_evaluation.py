"""Score arithmetic, metrics, score files, tables and plots of evaluation.py, on hand-made scores."""
import csv
import os

import numpy as np
import pytest

import evaluation
import ucf101


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
    with pytest.raises(ucf101.DataError, match="scores_temporal.npz"):
        evaluation.load_scores(str(bad))
    with pytest.raises(ucf101.DataError, match="not found"):
        evaluation.load_scores(str(tmp_path / "missing.npz"))


# ---------------------------------------------------------------------------- tables and reports

def table_results():
    m = lambda top1, top5, mean_class: {"top1": top1, "top5": top5, "mean_class": mean_class, "videos": 10}
    return {"spatial": m(0.5, 0.9, 0.45), "temporal": m(0.6, float("nan"), 0.55), "fusion": m(0.8, 1.0, 0.789)}


def table_rows(table):
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table.strip().splitlines()]


def test_split1_averaging_reference_is_the_papers_uni_directional_85_9():
    split1 = evaluation.REFERENCES[("ucf101", "split1")]
    ours = evaluation.reference_for(split1, "fusion")
    assert ours[2] == 85.9 and ours[0] == "Fusion by averaging (uni-directional flow)"
    assert [ref[0] for ref in split1 if ref[2] == 85.6] == ["Fusion by averaging (bi-directional flow)"]
    assert evaluation.reference_for(split1, "svm")[:3] == ("Fusion by SVM (multi-task temporal)", ("svm",), 87.0)
    notes = " ".join(evaluation.REFERENCE_NOTES)
    assert "averaging 85.9 with uni-directional flow" in notes and "85.6 with bi-directional flow" in notes
    assert "Feichtenhofer" not in notes and "re-run" not in notes


def test_every_reference_figure_is_the_papers():
    figures = {key: {ref[0]: ref[2] for ref in rows} for key, rows in evaluation.REFERENCES.items()}
    assert figures[("ucf101", "split1")] == {
        "Spatial (pre-trained + last layer)": 72.7,
        "Temporal (L = 10, mean subtraction, uni-directional flow)": 81.0,
        "Temporal (multi-task, UCF-101 + HMDB-51)": 81.5, "Fusion by averaging (uni-directional flow)": 85.9,
        "Fusion by averaging (bi-directional flow)": 85.6, "Fusion by averaging (multi-task temporal)": 86.2,
        "Fusion by SVM (multi-task temporal)": 87.0}
    assert list(figures[("ucf101", "mean")].values()) == [73.0, 83.7, 86.9, 88.0]
    assert list(figures[("hmdb51", "mean")].values()) == [40.5, 54.6, 58.0, 59.4]
    assert list(figures[("hmdb51", "split1")].values()) == [46.6, 49.0, 52.8, 55.4]
    seed = {ref[0]: ref[3] for ref in evaluation.REFERENCES[("ucf101", "split1")] if ref[3] is not None}
    assert list(seed.values()) == [73.1, 78.8, 82.0]
    assert all(ref[3] is None for key, rows in evaluation.REFERENCES.items() if key != ("ucf101", "split1")
               for ref in rows)  # the seed reported UCF-101 split 1 only


def test_results_table_compares_each_row_with_its_reference():
    rows = table_rows(evaluation.results_table(table_results(), "ucf101", "split1"))
    assert rows[0][:3] == ["Network", "Simonyan et al. 2014 (top-1)", "Seed repository (top-1)"]
    assert rows[2:] == [["Spatial", "72.7", "73.1", "50.0", "90.0", "45.0"],
                        ["Temporal", "81.0", "78.8", "60.0", "—", "55.0"],
                        ["Fusion (averaging)", "85.9", "82.0", "80.0", "100.0", "78.9"],
                        ["Fusion (SVM)", "87.0", "—", "not run", "—", "—"],
                        # the paper's rows we have no counterpart for
                        ["Temporal (multi-task, UCF-101 + HMDB-51)", "81.5", "—", "not run", "—", "—"],
                        ["Fusion by averaging (bi-directional flow)", "85.6", "—", "not run", "—", "—"],
                        ["Fusion by averaging (multi-task temporal)", "86.2", "—", "not run", "—", "—"]]


def test_results_table_places_svm_and_multitask_rows_beside_their_figures():
    m = table_results()["fusion"]
    results = {"temporal_multitask": m, "svm": m, "temporal": m}
    rows = table_rows(evaluation.results_table(results, "ucf101", "split1"))
    assert [row[:3] for row in rows[2:5]] == [["Temporal", "81.0", "78.8"], ["Temporal (multi-task)", "81.5", "—"],
                                             ["Fusion (SVM)", "87.0", "—"]]  # table order, whatever the dict's
    assert [row[:4] for row in rows[5:]] == [["Spatial (pre-trained + last layer)", "72.7", "73.1", "not run"],
                                             ["Fusion by averaging (uni-directional flow)", "85.9", "82.0", "not run"],
                                             ["Fusion by averaging (bi-directional flow)", "85.6", "—", "not run"],
                                             ["Fusion by averaging (multi-task temporal)", "86.2", "—", "not run"]]
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
