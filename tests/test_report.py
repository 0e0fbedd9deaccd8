"""The report of report.py and the reference figures of references.py: reference figures, tables, the mean over splits,
per-class files, plots and write_report's files, on hand-made results and scores."""
import csv
import itertools
import json

import numpy as np
import pytest

from twostream.errors import DataError
from twostream.scoring import evaluation, references, report

# ---------------------------------------------------------------------------- tables and reports

def table_results():
    def m(top1, top5, mean_class):
        return {"top1": top1, "top5": top5, "mean_class": mean_class, "videos": 10}

    return {"spatial": m(0.5, 0.9, 0.45), "temporal": m(0.6, float("nan"), 0.55), "fusion": m(0.8, 1.0, 0.789)}


def table_rows(table):
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table.strip().splitlines()]


SPATIAL = references.ROW_NAMES["spatial"]


def test_split1_averaging_reference_is_the_papers_uni_directional_85_9():
    figure, _ = references.row_reference("fusion", "ucf101", "split1", "alone")
    assert figure == ("Fusion by averaging (uni-directional flow)", 85.9, 82.0)
    assert ("Fusion by averaging (bi-directional flow)", 85.6, None) in references.published("ucf101", "split1")
    svm, why = references.row_reference("svm", "ucf101", "split1", "alone")
    assert svm is None and "no ucf101 split1 figure" in why[0]  # the paper's SVM figure is the multi-task net's
    assert references.row_reference("svm", "ucf101", "split1", "multitask")[0] == (
        "Fusion by SVM (multi-task temporal)", 87.0, None)
    notes = " ".join(references.REFERENCE_NOTES.values())
    assert "averaging 85.9 with uni-directional flow" in notes and "85.6 with bi-directional flow" in notes
    assert "80.4 with L = 5, 73.9 with L = 1" in notes
    assert "Feichtenhofer" not in notes and "re-run" not in notes


def test_every_reference_figure_is_the_papers():
    figures = {}
    for (dataset, scope, *_), (name, paper, seed) in references.FIGURES.items():
        figures.setdefault((dataset, scope), {})[name] = (paper, seed)
    for dataset, scope, name, paper in references.NOT_BUILT:
        figures[(dataset, scope)][name] = (paper, None)
    assert {name: paper for name, (paper, _) in figures[("ucf101", "split1")].items()} == {
        "Spatial (pre-trained + last layer)": 72.7,
        "Temporal (L = 10, mean subtraction, uni-directional flow)": 81.0,
        "Temporal (L = 5, mean subtraction)": 80.4, "Temporal (L = 1, mean subtraction)": 73.9,
        "Temporal (multi-task, UCF-101 + HMDB-51)": 81.5, "Fusion by averaging (uni-directional flow)": 85.9,
        "Fusion by averaging (bi-directional flow)": 85.6, "Fusion by averaging (multi-task temporal)": 86.2,
        "Fusion by SVM (multi-task temporal)": 87.0}
    assert sorted(paper for paper, _ in figures[("ucf101", "mean")].values()) == [73.0, 83.7, 86.9, 88.0]
    assert sorted(paper for paper, _ in figures[("hmdb51", "mean")].values()) == [40.5, 54.6, 58.0, 59.4]
    assert sorted(paper for paper, _ in figures[("hmdb51", "split1")].values()) == [46.6, 49.0, 52.8, 55.4]
    assert sorted(seed for _, seed in figures[("ucf101", "split1")].values() if seed) == [73.1, 78.8, 82.0]
    assert all(seed is None for key, rows in figures.items() if key != ("ucf101", "split1")
               for _, seed in rows.values())  # the seed reported UCF-101 split 1 only


# The paper's figure beside each of our rows, for every kind of run at the paper's settings (None: "—").
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
    table = table_rows(report.results_table({row: m for row in expected}, dataset, scope, net))
    ours = {references.ROW_NAMES[row]: row for row in expected}
    shown = {cells[0]: cells[1] for cells in table[2:] if cells[0] in ours}
    assert shown == {name: report.one_decimal(expected[row]) for name, row in ours.items()}
    not_run = [cells[1] for cells in table[2:] if cells[3] == "not run"]
    published = [paper for _, paper, _ in references.published(dataset, scope)]
    assert sorted(not_run + [f for f in shown.values() if f != "—"]) == sorted(map(report.one_decimal, published))


# ---------------------------------------------------------------------------- every kind of run's settings

# Each run setting that matters, the paper's value first, then others. stack_length: 10 is the paper's default,
# 5 and 1 have Table 1's figures (temporal net alone, UCF-101 split 1), 3 none.
RUN_CHOICES = {
    "stack_length": (10, 5, 1, 3),
    "arch": ("cnn_m_2048", "inception_v3"),
    "norm": ("lrn", "batchnorm"),
    "crops": ("10", "center"),
    "samples": (25, 5),
    "aggregate": ("mean", "vote"),
    "fusion_weights": ((1.0, 1.0), (1.0, 1.5)),
    "net": references.TEMPORAL_NETS,
    "dataset_scope": (("ucf101", "split1"), ("ucf101", "mean"), ("hmdb51", "split1"), ("hmdb51", "mean"),
                      ("ucf101", None)),
    # How each network was trained (references.training_kind): as the paper, TSN's recipe, or neither.
    "spatial_training": ("the paper's", "TSN's", "--segments 2"),
    "temporal_training": ("the paper's", "TSN's", "--partial-bn True"),
}
# TSN's figures (Wang et al. 2016, BN-Inception): a --recipe tsn run is compared with these.
TSN_EXPECTED = {("ucf101", "split1"): {"spatial": 85.7, "temporal": 87.9, "fusion": 93.5},
                ("ucf101", "mean"): {"fusion": 94.0}, ("hmdb51", "mean"): {"fusion": 68.5}}
# The figure each row shows at the paper's settings (the test protocol, CNN-M-2048 with LRN, equal fusion
# weights), by (dataset, scope, net, L); None: "—". The spatial row depends on none of the temporal settings.
STACK_FIGURES = {("ucf101", "split1", "alone", 5): {"temporal": 80.4},
                 ("ucf101", "split1", "alone", 1): {"temporal": 73.9}}


def expected_figure(row, choice):
    """The figure `row` must be shown beside under `choice` (one value of each RUN_CHOICES entry), by the rule
    stated independently of references.py: a run with a net of TSN's recipe is compared with TSN's figures
    (tsn_figure); else the protocol for every row, the nets' training as the paper's and the temporal net for all
    but the spatial row, equal weights for averaging fusion, then EXPECTED_FIGURES at L = 10 or STACK_FIGURES."""
    dataset, scope = choice["dataset_scope"]
    protocol = (choice["samples"], choice["crops"], choice["aggregate"]) == (25, "10", "mean")
    if "TSN's" in (choice["spatial_training"], choice["temporal_training"]):
        return tsn_figure(row, choice) if scope and protocol else None
    temporal = (choice["arch"], choice["norm"], choice["temporal_training"]) == ("cnn_m_2048", "lrn", "the paper's")
    spatial = choice["spatial_training"] == "the paper's"
    if not scope or not protocol or (row != "spatial" and not temporal) or (row in ("spatial", "fusion", "svm")
                                                                           and not spatial):
        return None
    if row == "fusion" and choice["fusion_weights"][0] != choice["fusion_weights"][1]:
        return None
    at_paper = EXPECTED_FIGURES[(dataset, scope, choice["net"])].get(row)
    if row == "spatial" or choice["stack_length"] == 10:
        return at_paper
    return STACK_FIGURES.get((dataset, scope, choice["net"], choice["stack_length"]), {}).get(row)


def tsn_figure(row, choice):
    """TSN's figure for `row`: its spatial net for the spatial row; its temporal net (InceptionV3, L = 5, trained
    alone) for the others, with its spatial net and weights 1 : 1.5 for fusion; no SVM."""
    dataset, scope = choice["dataset_scope"]
    spatial = choice["spatial_training"] == "TSN's"
    temporal = (choice["temporal_training"], choice["arch"], choice["stack_length"], choice["net"]) == \
        ("TSN's", "inception_v3", 5, "alone")
    if row == "spatial" and spatial or row == "temporal" and temporal or \
            row == "fusion" and spatial and temporal and choice["fusion_weights"] == (1.0, 1.5):
        return TSN_EXPECTED.get((dataset, scope), {}).get(row)
    return None


def run_of(choice):
    """The run settings write_report would take from fuse_test.py for `choice` (references.run_settings)."""
    temporal = {"stack_length": choice["stack_length"], "arch": choice["arch"],
                "norm": choice["norm"] if choice["arch"] == "cnn_m_2048" else None}
    return references.run_settings({"samples": choice["samples"], "crops": choice["crops"],
                                                "networks": {"spatial": {"stack_length": 1, "arch": "inception_v3",
                                                         "training": choice["spatial_training"]},
                                             "temporal": {**temporal, "training": choice["temporal_training"]}}},
                               choice["aggregate"], choice["fusion_weights"])


def every_choice():
    names = list(RUN_CHOICES)
    return [dict(zip(names, values)) for values in itertools.product(*RUN_CHOICES.values())]


def test_every_combination_of_run_settings_shows_the_figure_of_its_settings_or_a_dash():
    """All 4 x 2 x 2 x 2 x 2 x 2 x 2 x 3 x 5 x 3 x 3 = 34,560 runs: each row of the table beside the figure measured
    with its settings, "—" otherwise, and results.md's notes say why ("—": which setting differs)."""
    checked = 0
    for choice in every_choice():
        dataset, scope = choice["dataset_scope"]
        rows = ("spatial", "temporal_multitask" if choice["net"] == "multitask" else "temporal", "fusion", "svm")
        m = table_results()["fusion"]
        run = run_of(choice)
        table = {cells[0]: cells[1] for cells in table_rows(report.results_table(
            {row: m for row in rows}, dataset, scope, choice["net"], run))[2:]}
        notes = references.reference_notes(dataset, scope, rows, choice["net"], run) if scope else []
        for row in rows:
            expected = expected_figure(row, choice)
            assert table[references.ROW_NAMES[row]] == report.one_decimal(expected), (row, choice)
            if scope:
                note = next(line for line in notes if line.startswith(f"- {references.ROW_NAMES[row]}:"))
                assert ("compared with" in note) == (expected is not None), (note, choice)
            checked += 1
    assert checked == 34560 * 4


@pytest.mark.parametrize("changed, row, reason", [
    ({"samples": 5}, "spatial", "--samples 5 (the paper: 25)"),
    ({"crops": "center"}, "temporal", "--crops center (the paper: 10)"),
    ({"aggregate": "vote"}, "fusion", "--aggregate vote (the paper: mean)"),
    ({"arch": "inception_v3"}, "temporal", "the temporal net inception_v3 (the paper: cnn_m_2048 with lrn)"),
    ({"norm": "batchnorm"}, "svm", "the temporal net cnn_m_2048 with batchnorm (the paper: cnn_m_2048 with lrn)"),
    ({"fusion_weights": (1.0, 1.5)}, "fusion", "--fusion-weights 1 1.5 (the paper: equal)"),
    ({"stack_length": 3}, "temporal", "no ucf101 split1 figure for it with L = 3 and a temporal net trained alone"),
    ({"stack_length": 5}, "fusion", "no ucf101 split1 figure for it with L = 5"),
])
def test_a_dash_says_which_setting_differs(changed, row, reason):
    choice = {**{name: values[0] for name, values in RUN_CHOICES.items()}, **changed}
    notes = references.reference_notes("ucf101", "split1", [row], "alone", run_of(choice))
    assert notes[0].startswith(f"- {references.ROW_NAMES[row]}: \"—\"") and reason in notes[0], notes[0]


def test_equal_fusion_weights_of_any_size_are_averaging_and_unrecorded_networks_compare_with_nothing():
    assert references.run_settings({}, "mean", (2.0, 2.0))["fusion_weights"] == "equal"
    run = references.run_settings({"samples": 25, "crops": "10"})  # scores saved before the networks were recorded
    assert run["temporal_network"] == "not recorded"
    assert references.row_reference("temporal", "ucf101", "split1", "alone", run)[0] is None
    assert references.row_reference("spatial", "ucf101", "split1", "alone", run)[0][1] == 72.7
    note = references.reference_notes("ucf101", "split1", ["spatial"])[0]
    assert note.startswith(f"- {SPATIAL}: compared with the paper's \"Spatial (pre-trained + last layer)\"")
    assert "the seed repository compared its InceptionV3 with" in note and "networks differ" in note


def test_the_kind_of_temporal_net_comes_from_the_run_settings():
    assert references.temporal_net({}) == "alone"
    assert references.temporal_net({"multitask": {"dataset": "hmdb51", "videos": "all"}, "init": "x.keras"}) == \
        "multitask"
    assert references.temporal_net({"multitask": None, "init": "checkpoints/ucf101/temporal/last.keras"}) == "init"


def test_results_table_compares_each_row_with_its_reference():
    rows = table_rows(report.results_table(table_results(), "ucf101", "split1"))
    assert rows[0][:3] == ["Network", "Simonyan et al. 2014 (top-1)", "Seed repository (top-1)"]
    assert rows[2:] == [[SPATIAL, "72.7", "73.1", "50.0", "90.0", "45.0"],
                        ["Temporal", "81.0", "78.8", "60.0", "—", "55.0"],
                        ["Fusion (averaging)", "85.9", "82.0", "80.0", "100.0", "78.9"],
                        ["Fusion (SVM)", "—", "—", "not run", "—", "—"],
                        # the paper's rows no row of ours is compared with
                        ["Temporal (L = 5, mean subtraction)", "80.4", "—", "not run", "—", "—"],
                        ["Temporal (L = 1, mean subtraction)", "73.9", "—", "not run", "—", "—"],
                        ["Temporal (multi-task, UCF-101 + HMDB-51)", "81.5", "—", "not run", "—", "—"],
                        ["Fusion by averaging (multi-task temporal)", "86.2", "—", "not run", "—", "—"],
                        ["Fusion by SVM (multi-task temporal)", "87.0", "—", "not run", "—", "—"],
                        ["Fusion by averaging (bi-directional flow)", "85.6", "—", "not run", "—", "—"]]


def test_results_table_places_svm_and_multitask_rows_beside_their_figures():
    m = table_results()["fusion"]
    results = {"temporal_multitask": m, "svm": m, "fusion": m, "spatial": m}
    rows = table_rows(report.results_table(results, "ucf101", "split1"))
    assert [row[:3] for row in rows[2:6]] == [[SPATIAL, "72.7", "73.1"], ["Temporal (multi-task)", "81.5", "—"],
                                             ["Fusion (averaging)", "86.2", "—"],
                                             ["Fusion (SVM)", "87.0", "—"]]  # table order, whatever the dict's
    assert [row[:4] for row in rows[6:]] == [
        ["Temporal (L = 10, mean subtraction, uni-directional flow)", "81.0", "78.8", "not run"],
        ["Temporal (L = 5, mean subtraction)", "80.4", "—", "not run"],
        ["Temporal (L = 1, mean subtraction)", "73.9", "—", "not run"],
        ["Fusion by averaging (uni-directional flow)", "85.9", "82.0", "not run"],
        ["Fusion by averaging (bi-directional flow)", "85.6", "—", "not run"]]
    hmdb = table_rows(report.results_table({"temporal": m, "spatial": m}, "hmdb51", "split1"))
    assert [row[:4] for row in hmdb[2:]] == [[SPATIAL, "—", "—", "80.0"], ["Temporal", "46.6", "—", "80.0"],
                                             ["Temporal (fine-tuned from UCF-101)", "49.0", "—", "not run"],
                                             ["Temporal (multi-task, UCF-101 + HMDB-51)", "55.4", "—", "not run"],
                                             ["Temporal (78 UCF-101 classes added to the training set)", "52.8", "—",
                                              "not run"]]


def test_results_table_without_references_shows_dashes():
    for dataset, scope in (("ucf101", None), ("synthetic", "split1"), ("ucf101", "split2")):
        rows = table_rows(report.results_table(table_results(), dataset, scope))
        assert [row[0] for row in rows[2:]] == [SPATIAL, "Temporal", "Fusion (averaging)", "Fusion (SVM)"]
        assert [row[1:3] for row in rows[2:]] == [["—", "—"]] * 4
    single = table_rows(report.results_table({"temporal": table_results()["temporal"]}, "ucf101", None))
    assert [row[0] for row in single[2:]] == ["Temporal"]
    with pytest.raises(ValueError, match="unknown result rows"):
        report.results_table({"fused": table_results()["fusion"]})


def test_fusion_gains_rank_classes_against_the_better_stream():
    classes = ["A", "B", "C", "D"]
    per_class = {"spatial": np.array([0.5, 1.0, 0.2, np.nan]), "temporal": np.array([0.6, 0.5, 0.1, np.nan]),
                 "fusion": np.array([0.9, 0.7, 0.2, np.nan])}
    gains, losses = report.fusion_gains(per_class, classes)
    assert [c for c, _ in gains] == ["A"] and gains[0][1] == pytest.approx(0.3)
    assert losses == [("B", pytest.approx(-0.3))]
    many = {"spatial": np.ones(5), "temporal": np.zeros(5), "fusion": np.array([0.2, 0.5, 0.5, 0.9, 1.0])}
    gains, losses = report.fusion_gains(many, list("VWXYZ"), count=3)
    assert gains == [] and [c for c, _ in losses] == ["V", "W", "X"]  # worst first, ties by name


def test_per_class_csv_and_misclassified(tmp_path):
    classes = ["A", "B", "C"]
    labels = np.array([0, 0, 1, 2])
    spatial = np.array([[0.9, 0.1, 0], [0.2, 0.8, 0], [0.1, 0.9, 0], [0.5, 0, 0.5]])
    temporal = np.array([[0.6, 0.4, 0], [0.7, 0.3, 0], [0.7, 0.3, 0], [0, 0.2, 0.8]])
    scores = {"spatial": spatial, "temporal": temporal, "fusion": evaluation.fuse([spatial, temporal])}
    per_class = {name: evaluation.per_class_accuracy(labels, s, 3) for name, s in scores.items()}
    path = tmp_path / "per_class.csv"
    report.write_per_class_csv(path, classes, labels, per_class)
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
    assert report.misclassified(videos, labels, scores, classes, "fusion") == [["v1", "A", "B", "0.550", "B", "A"]]
    report.write_misclassified_csv(tmp_path / "misclassified.csv", videos, labels, scores, classes, "fusion")
    with open(tmp_path / "misclassified.csv") as f:
        assert list(csv.reader(f)) == [["video", "true_class", "fusion_prediction", "fusion_score",
                                        "spatial_prediction", "temporal_prediction"],
                                       ["v1", "A", "B", "0.550", "B", "A"]]


def test_plots_are_written(tmp_path):
    matrix = np.array([[3, 1], [0, 2]])
    report.plot_confusion(tmp_path / "confusion.png", matrix, ["A", "B"], "fusion")
    report.plot_top_scores(tmp_path / "top.png", {"spatial": np.array([0.7, 0.3]),
                                                      "fusion": np.array([0.4, 0.6])}, ["A", "B"], 2)
    for name in ("confusion.png", "top.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


# ---------------------------------------------------------------------------- the mean over splits

def split_results(top1, classes=101, rows=("spatial", "temporal", "fusion")):
    return {row: {"top1": top1 + i / 10, "top5": 0.9, "mean_class": top1, "videos": 100, "classes": classes}
            for i, row in enumerate(rows)}


def test_mean_over_splits_averages_each_row_and_records_the_splits():
    mean = report.mean_over_splits({1: split_results(0.5), 2: split_results(0.6), 3: split_results(0.7)})
    assert list(mean) == ["spatial", "temporal", "fusion"]
    assert mean["spatial"]["top1"] == pytest.approx(0.6) and mean["fusion"]["top1"] == pytest.approx(0.8)
    assert mean["temporal"]["mean_class"] == pytest.approx(0.6) and mean["temporal"]["top5"] == pytest.approx(0.9)
    assert mean["fusion"]["videos"] == 300 and mean["fusion"]["classes"] == 101
    assert mean["fusion"]["splits"] == [1, 2, 3]
    # Split keys read back from metrics.json are strings; splits present only are averaged.
    two = report.mean_over_splits({"3": split_results(0.7), "1": split_results(0.4)})
    assert two["spatial"]["top1"] == pytest.approx(0.55) and two["spatial"]["splits"] == [1, 3]


def test_mean_over_splits_refuses_to_average_different_things():
    with pytest.raises(DataError, match="same streams"):
        report.mean_over_splits({1: split_results(0.5), 2: split_results(0.5, rows=("spatial", "temporal"))})
    with pytest.raises(DataError, match="same classes"):
        report.mean_over_splits({1: split_results(0.5), 2: split_results(0.5, classes=10)})
    with pytest.raises(DataError, match="not among 1, 2, 3"):
        report.mean_over_splits({1: split_results(0.5), 4: split_results(0.5)})
    with pytest.raises(DataError, match="at least one"):
        report.mean_over_splits({})


def test_mean_table_compares_with_table_4_only_over_all_three_splits():
    multitask = ("spatial", "temporal_multitask", "fusion")
    all_three = {1: split_results(0.5, rows=multitask), 2: split_results(0.6, rows=multitask),
                 3: split_results(0.7, rows=multitask)}
    text = report.mean_table(all_three, "ucf101", nets=("multitask",) * 3)
    rows = table_rows(text.split("\n\n")[0])
    assert rows[2:] == [[SPATIAL, "73.0", "—", "60.0", "90.0", "60.0"],
                        ["Temporal (multi-task)", "83.7", "—", "70.0", "90.0", "60.0"],
                        ["Fusion (averaging)", "86.9", "—", "80.0", "90.0", "60.0"],
                        ["Fusion (SVM)", "88.0", "—", "not run", "—", "—"]]
    assert "Mean over splits 1, 2, 3 (300 test videos in all)." in text and "does not apply" not in text
    hmdb = table_rows(report.mean_table({s: split_results(0.5, classes=51, rows=multitask) for s in (1, 2, 3)},
                                            "hmdb51", nets=("multitask",) * 3))
    assert [row[1] for row in hmdb[2:6]] == ["40.5", "54.6", "58.0", "59.4"]
    # Table 4 is the multi-task net's: a single-task temporal net and its fusions have no figure there.
    alone = table_rows(report.mean_table({s: split_results(0.5) for s in (1, 2, 3)}, "ucf101"))
    assert [row[:2] for row in alone[2:6]] == [[SPATIAL, "73.0"], ["Temporal", "—"], ["Fusion (averaging)", "—"],
                                              ["Fusion (SVM)", "—"]]
    mixed = report.mean_table(all_three, "ucf101", nets=("multitask", "alone", "multitask"))
    assert "83.7" not in mixed and "the splits' temporal nets differ (alone, multitask)" in mixed

    missing = report.mean_table({1: split_results(0.5), 3: split_results(0.7)}, "ucf101")
    assert [row[1] for row in table_rows(missing.split("\n\n")[0])[2:]] == ["—"] * 4
    assert "split 2 missing" in missing and "Mean over splits 1, 3" in missing
    assert "splits 2, 3 missing" in report.mean_table({1: split_results(0.5)}, "ucf101")
    ten_classes = report.mean_table({s: split_results(0.5, classes=10) for s in (1, 2, 3)}, "ucf101")
    assert "73.0" not in ten_classes and "10 classes" in ten_classes
    partial = report.mean_table(all_three, "ucf101", full_runs=False)
    assert "73.0" not in partial and "part of its classes or test videos" in partial


# ---------------------------------------------------------------------------- the report

PAPER_NETWORKS = {"spatial": {"stack_length": 1, "arch": "inception_v3", "norm": None},
                  "temporal": {"stack_length": 10, "arch": "cnn_m_2048", "norm": "lrn"}}
FULL_RUN = {"dataset": "ucf101", "split": 1, "samples": 25, "crops": "10", "class_limit": None, "max_videos": None,
            "networks": PAPER_NETWORKS}


def test_references_apply_to_whole_split_1_runs_only():
    assert references.references_apply({**FULL_RUN, "num_classes": 101})
    assert references.references_apply({**FULL_RUN, "dataset": "hmdb51", "num_classes": 51})
    assert references.references_apply({**FULL_RUN, "num_classes": 101, "class_limit": 101})
    for changed, reason in (({"num_classes": 10}, "10 classes where ucf101 has 101"),
                            ({}, "unknown number of classes"),
                            ({"num_classes": 101, "class_limit": 20}, "first 20 of the 101 classes"),
                            ({"num_classes": 101, "max_videos": 200}, "200 test videos only"),
                            ({"num_classes": 101, "split": 2}, "split 2"),
                            ({"num_classes": 51, "dataset": "synthetic"}, "this is synthetic"),
                            ({"num_classes": 101, "dataset": "hmdb51"}, "101 classes where hmdb51 has 51")):
        settings = {**FULL_RUN, **changed}
        assert not references.references_apply(settings), changed
        assert any(reason in text for text in references.references_missing(settings)), changed


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


@pytest.mark.slow
def test_write_report_writes_every_file_with_the_rows_measured(tmp_path):
    videos, labels, classes, scores = report_inputs(101)
    choice = {"C": 0.1, "how": "5-fold cross-validation on the training videos, folds by UCF-101 group",
              "accuracy": {"0.1": 0.8, "1": 0.7}}
    table = report.write_report(tmp_path, videos, labels, classes, scores, {**FULL_RUN, "skipped": []},
                                    "mean", (1.0, 1.0), ["v_Gone_g01_c01"], choice)
    for name in ("results.md", "per_class.csv", "confusion.png", "misclassified.csv", "metrics.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    markdown, rows, saved = read_report(tmp_path)
    assert table in markdown
    assert rows[SPATIAL] == ["72.7", "73.1", "75.0", "75.0", "75.0"]  # 9 of 12 right, one video per class
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
        table = report.write_report(tmp_path / name, videos, labels, classes, scores, settings, "vote",
                                        (1.0, 1.5), [])
        markdown, rows, saved = read_report(tmp_path / name)
        assert list(rows) == [SPATIAL, "Temporal", "Fusion (averaging)", "Fusion (SVM)"]
        assert all(row[:2] == ["—", "—"] for row in rows.values())
        assert not any(str(figure) in table for figure in (72.7, 81.0, 85.9, 85.6, 87.0))
        assert "do not apply" in markdown and "voting" in markdown and "1 : 1.5" in markdown
        assert saved["references"] is None and saved["num_classes"] == 10
    assert "10 classes where ucf101 has 101" in read_report(tmp_path / "ten_classes")[0]


def test_write_report_on_one_stream(tmp_path):
    videos, labels, classes, scores = report_inputs(10)
    table = report.write_report(tmp_path, videos, labels, classes, {"temporal": scores["temporal"]},
                                    {**FULL_RUN, "max_videos": 12, "num_classes": 101}, "mean", None, [])
    markdown, rows, saved = read_report(tmp_path)
    assert list(rows) == ["Temporal"] and rows["Temporal"][:3] == ["—", "—", "75.0"]
    assert saved["final"] == "temporal" and "12 test videos only" in markdown and "Classes gaining" not in markdown
    assert "Fusion" not in table
    with pytest.raises(ValueError, match="unknown result rows"):
        report.write_report(tmp_path, videos, labels, classes, {"late": scores["fusion"]}, FULL_RUN, "mean",
                                None, [])
    with pytest.raises(ValueError, match="shape"):
        report.write_report(tmp_path, videos[:5], labels[:5], classes, scores, FULL_RUN, "mean", None, [])


def write_split_metrics(results_dir, split, results, **settings):
    folder = results_dir / f"ucf101_split{split}"
    folder.mkdir(parents=True)
    with open(folder / "metrics.json", "w") as f:
        json.dump({"results": results, "settings": {**FULL_RUN, "num_classes": 101, "split": split, **settings}}, f)


def test_write_splits_mean_averages_the_split_runs_found(tmp_path):
    write_split_metrics(tmp_path, 1, split_results(0.5, rows=("spatial", "temporal", "fusion", "svm")))
    assert report.write_splits_mean(str(tmp_path), "ucf101") is None  # one split: nothing to average
    assert not (tmp_path / "ucf101_mean").exists()
    write_split_metrics(tmp_path, 3, split_results(0.7))
    markdown = report.write_splits_mean(str(tmp_path), "ucf101")
    rows = table_rows("\n".join(line for line in markdown.splitlines() if line.startswith("|")))
    assert [row[:4] for row in rows[2:]] == [[SPATIAL, "—", "—", "60.0"], ["Temporal", "—", "—", "70.0"],
                                             ["Fusion (averaging)", "—", "—", "80.0"],
                                             ["Fusion (SVM)", "—", "—", "not run"]]
    assert "split 2 missing" in markdown and "Left out, as not every split has them: Fusion (SVM)." in markdown
    with open(tmp_path / "ucf101_mean" / "results.md") as f:
        assert f.read() == markdown

    write_split_metrics(tmp_path, 2, split_results(0.6))
    markdown = report.write_splits_mean(str(tmp_path), "ucf101")
    assert f"| {SPATIAL} | 73.0 | — | 60.0 |" in markdown and "Simonyan et al. 2014: " in markdown
    assert "| Fusion (averaging) | — | — | 80.0 |" in markdown  # Table 4's 86.9 is with the multi-task net
    assert "Seed repository: " not in markdown  # the seed reported split 1 only
    multitask = tmp_path / "multitask"
    for split in (1, 2, 3):
        write_split_metrics(multitask, split, split_results(0.5, rows=("spatial", "temporal_multitask", "fusion")),
                            temporal_net="multitask")
    together = report.write_splits_mean(str(multitask), "ucf101")
    assert "| Temporal (multi-task) | 83.7 |" in together and "| Fusion (averaging) | 86.9 |" in together
    with open(tmp_path / "ucf101_mean" / "metrics.json") as f:
        saved = json.load(f)
    assert saved["references"] == "mean" and saved["results"]["spatial"]["splits"] == [1, 2, 3]
    assert saved["results"]["spatial"]["top1"] == pytest.approx(0.6)


def test_write_splits_mean_compares_limited_runs_with_nothing_and_names_bad_files(tmp_path):
    for split in (1, 2):
        write_split_metrics(tmp_path, split, split_results(0.5))
    write_split_metrics(tmp_path, 3, split_results(0.5), max_videos=50)
    markdown = report.write_splits_mean(str(tmp_path), "ucf101")
    assert "73.0" not in markdown and "part of its classes or test videos" in markdown
    write_split_metrics(tmp_path / "other", 1, split_results(0.5))
    write_split_metrics(tmp_path / "other", 2, split_results(0.5, classes=10), num_classes=10)
    with pytest.raises(DataError, match=r"ucf101_split2/metrics.json.*same classes"):
        report.write_splits_mean(str(tmp_path / "other"), "ucf101")
    (tmp_path / "ucf101_split2" / "metrics.json").write_text("{")
    with pytest.raises(DataError, match=r"ucf101_split2/metrics.json: not a metrics.json"):
        report.write_splits_mean(str(tmp_path), "ucf101")


def test_another_spatial_backbone_is_compared_with_nothing_and_says_why():
    """spatial_train.py --arch: the spatial row, and the fusions built on it, have no published figure; the
    temporal row keeps its own. Runs recorded before --arch count as InceptionV3 (the only one then)."""
    run = references.run_settings({"samples": 25, "crops": "10", "networks": {
        "spatial": {"arch": "convnext_tiny"}, "temporal": {"arch": "cnn_m_2048", "norm": "lrn", "stack_length": 10}}})
    for row in ("spatial", "fusion", "svm"):
        figure, why = references.row_reference(row, "ucf101", "split1", "alone" if row != "svm" else "multitask", run)
        assert figure is None and any("convnext_tiny" in reason and "--arch" in reason for reason in why), (row, why)
    assert references.row_reference("temporal", "ucf101", "split1", "alone", run)[0][1] == 81.0
    older = references.run_settings({"samples": 25, "crops": "10", "networks": {
        "temporal": {"arch": "cnn_m_2048", "norm": "lrn", "stack_length": 10}}})
    assert references.row_reference("spatial", "ucf101", "split1", "alone", older)[0][1] == 72.7


def test_a_nets_training_is_read_from_its_config():
    """references.training_kind: TSN's recipe, the paper's (also for a config.json from before the settings were
    recorded), or the flags in which it departs from the paper's."""
    from twostream.protocol import presets
    assert references.training_kind({}, "spatial") == references.training_kind({}, "temporal") == "the paper's"
    paper = {"segments": 1, "crop": "random", "partial_bn": False, "phase2_layers": "last_blocks", "dropout": 0.5}
    assert references.training_kind(paper, "spatial") == "the paper's"
    assert references.training_kind(dict(presets.TSN["spatial"]), "spatial") == "TSN's"
    assert references.training_kind({**presets.TSN["temporal"], "arch": "cnn_m_2048"}, "temporal") == \
        "--segments 3, --crop multiscale, --partial-bn True, --dropout 0.7"
    assert references.training_kind({**paper, "dropout": 0.9, "segments": 2}, "temporal") == "--segments 2"
