"""fuse_test.py end to end on a tiny fake dataset with tiny untrained models: outputs, scores,
--from-scores, resume after an interruption, missing data, class checks."""
import csv
import json
import os
import shutil

import numpy as np
import pytest

import evaluation
import fakedata
import fuse_test
import generators
import models
import ucf101

CLASSES = ("Alpha", "Beta", "Gamma")
SPATIAL_SIZE, TEMPORAL_SIZE, STACK = 75, 64, 2
SAMPLES = 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A fake dataset (3 classes, 1 test video each) and tiny checkpoints in the training layout."""
    root = tmp_path_factory.mktemp("fuse")
    data = str(root / "data")
    splits = fakedata.write_dataset(data, CLASSES)
    checkpoints = root / "checkpoints"
    built = {"spatial": (models.spatial_model(len(CLASSES), image_size=SPATIAL_SIZE, weights="none"), SPATIAL_SIZE),
             "temporal": (models.temporal_model(len(CLASSES), image_size=TEMPORAL_SIZE, stack_length=STACK),
                          TEMPORAL_SIZE)}
    for stream, (model, size) in built.items():
        sharpen(model)
        write_checkpoint(checkpoints / stream, model, stream, size, data, splits)
    return {"root": root, "data": data, "splits": splits, "checkpoints": str(checkpoints)}


def sharpen(model, factor=1000.0):
    """Scale the untrained top so that its softmax differs between inputs (it is near uniform otherwise)."""
    top = model.get_layer("predictions")
    kernel, bias = top.get_weights()
    top.set_weights([kernel * factor, bias])


def write_checkpoint(folder, model, stream, image_size, data, splits, classes_file=None):
    os.makedirs(folder, exist_ok=True)
    if model is None:
        open(folder / "best.keras", "w").close()
    else:
        model.save(folder / "best.keras")
    with open(folder / "config.json", "w") as f:
        json.dump({"stream": stream, "image_size": image_size, "stack_length": STACK, "dataset": "synthetic",
                   "split": 1, "data_dir": data, "splits_dir": splits, "frame_size": [64, 48]}, f)
    shutil.copy(classes_file or os.path.join(splits, "classInd.txt"), folder / "classInd.txt")


def cli(setup, *extra, results="results"):
    return ["--dataset", "synthetic", "--data-dir", setup["data"], "--splits-dir", setup["splits"],
            "--checkpoints", setup["checkpoints"], "--results-dir", str(setup["root"] / results),
            "--samples", str(SAMPLES), "--workers", "1", *extra]


def table_rows(markdown):
    """{row name: cells} of the first markdown table in `markdown`."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return {row[0]: row[1:] for row in rows[1:]}


def read_csv(path):
    with open(path) as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def full_run(setup):
    """Both streams, 10 crops: the run the other tests compare with."""
    code = fuse_test.main(cli(setup, "--crops", "10", "--batch-size", "16"))
    assert code == 0
    return str(setup["root"] / "results" / "synthetic_split1")


def test_every_flag_has_help():
    for action in fuse_test.parser._actions:
        assert action.help, f"{action.option_strings} has no help text"


def test_dataset_presets_and_default_run_names():
    args = fuse_test.parser.parse_args(["--dataset", "synthetic", "--class-limit", "5"])
    assert fuse_test.resolve_paths(args) == os.path.join("results", "synthetic_split1_classes5")
    assert (args.data_dir, args.splits_dir, args.checkpoints, args.crops) == (
        "data/synthetic", "data/synthetic/splits", "checkpoints/synthetic", "center")
    args = fuse_test.parser.parse_args(["--split", "2", "--crops", "center", "--data-dir", "elsewhere"])
    assert fuse_test.resolve_paths(args) == os.path.join("results", "ucf101_split2")
    assert (args.data_dir, args.splits_dir, args.crops, args.samples) == ("elsewhere", "splits", "center", 25)
    args = fuse_test.parser.parse_args(["--from-scores", "results/old"])
    assert fuse_test.resolve_paths(args) == "results/old" and args.crops == "10"


def test_end_to_end_writes_the_table_and_its_evidence(setup, full_run, capsys):
    for name in ("results.md", "per_class.csv", "confusion.png", "misclassified.csv", "metrics.json",
                 "scores_spatial.npz", "scores_temporal.npz"):
        assert os.path.isfile(os.path.join(full_run, name)), name
    assert not os.path.exists(os.path.join(full_run, "scores_spatial.partial.npz"))
    with open(os.path.join(full_run, "results.md")) as f:
        markdown = f.read()
    rows = table_rows(markdown)
    assert list(rows) == ["Spatial", "Temporal", "Fusion (averaging)", "Fusion (SVM)"]
    assert rows["Spatial"][:2] == ["—", "—"]  # references do not apply to the synthetic dataset
    assert "do not apply" in markdown and "mean softmax" in markdown

    # The table's numbers are those of the saved scores.
    spatial, temporal = (evaluation.load_scores(os.path.join(full_run, f"scores_{s}.npz"))
                         for s in ("spatial", "temporal"))
    assert spatial["videos"] == [f"v_{c}_g01_c01" for c in CLASSES] and list(spatial["labels"]) == [0, 1, 2]
    assert spatial["scores"].shape == (3, SAMPLES, 3) and temporal["scores"].shape == (3, SAMPLES, 3)
    np.testing.assert_allclose(spatial["scores"].sum(axis=2), 1.0, rtol=1e-5)
    fused = evaluation.fuse([evaluation.aggregate(spatial["scores"]), evaluation.aggregate(temporal["scores"])])
    expected = evaluation.metrics(spatial["labels"], fused)
    assert rows["Fusion (averaging)"][2] == evaluation.percent(expected["top1"])
    assert rows["Fusion (averaging)"][4] == evaluation.percent(expected["mean_class"])

    per_class = read_csv(os.path.join(full_run, "per_class.csv"))
    assert [row[:2] for row in per_class[1:]] == [[c, "1"] for c in CLASSES]
    wrong = [row[0] for row in read_csv(os.path.join(full_run, "misclassified.csv"))[1:]]
    assert wrong == [v for v, y, s in zip(spatial["videos"], spatial["labels"], fused) if s.argmax() != y]
    with open(os.path.join(full_run, "confusion.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_saved_scores_are_the_models_softmax_with_crops_averaged(setup, full_run):
    """Video 2's spatial scores equal the model's softmax of its 3 samples x 10 crops, averaged over crops."""
    videos = ucf101.load_index(setup["data"], setup["splits"], 1, "test")
    sequence = generators.TestSequence(videos, setup["data"], "spatial", samples=SAMPLES, crops="10",
                                       image_size=SPATIAL_SIZE)
    x, index = sequence[2]
    assert x.shape == (SAMPLES * 10, SPATIAL_SIZE, SPATIAL_SIZE, 3) and set(index) == {2}
    model = models.load_model(os.path.join(setup["checkpoints"], "spatial", "best.keras"))
    expected = np.asarray(model.predict_on_batch(x)).reshape(SAMPLES, 10, -1).mean(axis=1)
    saved = evaluation.load_scores(os.path.join(full_run, "scores_spatial.npz"))["scores"][2]
    np.testing.assert_allclose(saved, expected, atol=1e-5)


def test_from_scores_reproduces_the_table_without_models(setup, full_run, monkeypatch):
    def no_model(path):
        raise AssertionError("--from-scores must not load a model")

    monkeypatch.setattr(models, "load_model", no_model)
    with open(os.path.join(full_run, "results.md")) as f:
        original = f.read()
    assert fuse_test.main(cli(setup, "--from-scores", full_run, "--run-name", "again")) == 0
    with open(setup["root"] / "results" / "again" / "results.md") as f:
        assert f.read() == original
    assert fuse_test.main(cli(setup, "--from-scores", full_run, "--run-name", "voted", "--aggregate", "vote",
                              "--fusion-weights", "1", "1.5")) == 0
    with open(setup["root"] / "results" / "voted" / "results.md") as f:
        voted = f.read()
    assert "voting" in voted and "1 : 1.5" in voted


def test_fusion_beats_each_stream_on_appearance_and_motion_scores(setup, tmp_path):
    """Hand-made scores: spatial sees only the colour, temporal only the motion (2 x 2 classes)."""
    classes = ["RedLeft", "RedRight", "BlueLeft", "BlueRight"]
    colour, motion = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    labels = np.repeat(np.arange(4), 5)
    rng = np.random.default_rng(0)
    for stream, cue in (("spatial", colour), ("temporal", motion)):
        scores = (cue[None, None, :] == cue[labels][:, None, None]) * 0.45 + rng.uniform(0, 0.1, (20, 5, 4))
        evaluation.save_scores(str(tmp_path / f"scores_{stream}.npz"), [f"v{i}" for i in range(20)], labels,
                               scores / scores.sum(axis=2, keepdims=True), classes,
                               {"dataset": "synthetic", "split": 1, "samples": 5, "crops": "center"})
    assert fuse_test.main(["--from-scores", str(tmp_path)]) == 0
    with open(tmp_path / "results.md") as f:
        rows = table_rows(f.read())
    top1 = {name: float(cells[2]) for name, cells in rows.items() if name != "Fusion (SVM)"}
    assert top1["Fusion (averaging)"] == 100.0
    assert top1["Spatial"] < 75 and top1["Temporal"] < 75


class Interrupted(Exception):
    pass


def test_an_interrupted_evaluation_resumes_where_it_stopped(setup, full_run, monkeypatch):
    real_predict = fuse_test.predict
    calls = []

    def predict(model, images, batch_size, fail_at=None):
        calls.append(len(images))
        if len(calls) == fail_at:
            raise Interrupted
        return real_predict(model, images, batch_size)

    # One video per predict call (samples x crops = batch size); saved after every video.
    args = cli(setup, "--streams", "temporal", "--crops", "10", "--batch-size", str(SAMPLES * 10),
               "--save-every", "1", "--run-name", "resumed")
    monkeypatch.setattr(fuse_test, "predict", lambda *a: predict(*a, fail_at=3))
    with pytest.raises(Interrupted):
        fuse_test.main(args)
    run = setup["root"] / "results" / "resumed"
    partial = evaluation.load_scores(str(run / "scores_temporal.partial.npz"))
    assert partial["videos"] == ["v_Alpha_g01_c01", "v_Beta_g01_c01"]
    assert not (run / "scores_temporal.npz").exists()

    calls.clear()
    monkeypatch.setattr(fuse_test, "predict", lambda *a: predict(*a))
    assert fuse_test.main(args) == 0
    assert calls == [SAMPLES * 10]  # only the third video was computed
    assert not (run / "scores_temporal.partial.npz").exists()
    resumed = evaluation.load_scores(str(run / "scores_temporal.npz"))
    complete = evaluation.load_scores(os.path.join(full_run, "scores_temporal.npz"))
    assert resumed["videos"] == complete["videos"]
    np.testing.assert_allclose(resumed["scores"], complete["scores"], atol=1e-5)

    calls.clear()
    mtime = os.path.getmtime(run / "scores_temporal.npz")
    assert fuse_test.main(args) == 0  # final scores exist: reused, not recomputed nor rewritten
    assert calls == [] and os.path.getmtime(run / "scores_temporal.npz") == mtime


def test_ctrl_c_saves_the_videos_done_so_far(setup, monkeypatch, capsys):
    real_predict = fuse_test.predict
    calls = []

    def predict(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_predict(*args)

    monkeypatch.setattr(fuse_test, "predict", predict)
    args = cli(setup, "--streams", "temporal", "--crops", "center", "--batch-size", str(SAMPLES),
               "--run-name", "ctrl_c")  # one video per call, --save-every 50: only Ctrl-C saves
    assert fuse_test.main(args) == 130
    assert "the same command resumes" in capsys.readouterr().err
    partial = setup["root"] / "results" / "ctrl_c" / "scores_temporal.partial.npz"
    assert evaluation.load_scores(str(partial))["videos"] == ["v_Alpha_g01_c01"]


def test_saved_scores_computed_differently_are_not_reused(setup, full_run, capsys):
    assert fuse_test.main(cli(setup, "--crops", "center")) == 2
    error = capsys.readouterr().err
    assert "scores_spatial.npz" in error and "crops" in error and "--overwrite" in error


def test_a_missing_video_is_reported_and_can_be_skipped(setup, tmp_path, capsys):
    data = str(tmp_path / "data")
    splits = fakedata.write_dataset(data, CLASSES)
    os.remove(ucf101.frame_path(ucf101.flow_dir(data, "v", "v_Beta_g01_c01"), 4))
    args = ["--dataset", "synthetic", "--data-dir", data, "--splits-dir", splits, "--checkpoints",
            setup["checkpoints"], "--results-dir", str(tmp_path / "results"), "--samples", "2",
            "--crops", "center", "--workers", "1"]
    assert fuse_test.main(args) == 2
    error = capsys.readouterr().err
    assert "v_Beta_g01_c01" in error and "--skip-missing" in error
    assert "v_Alpha_g01_c01" not in error

    assert fuse_test.main(args + ["--streams", "temporal", "--skip-missing"]) == 0
    run = tmp_path / "results" / "synthetic_split1"
    assert evaluation.load_scores(str(run / "scores_temporal.npz"))["videos"] == ["v_Alpha_g01_c01",
                                                                                 "v_Gamma_g01_c01"]
    with open(run / "results.md") as f:
        markdown = f.read()
    assert "1 skipped for missing frames or flow" in markdown and "- v_Beta_g01_c01" in markdown
    assert list(table_rows(markdown)) == ["Temporal"]


def test_streams_trained_on_different_classes_are_refused(setup, tmp_path, capsys):
    other = tmp_path / "classInd.txt"
    other.write_text("1 Alpha\n2 Beta\n3 Delta\n")
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(os.path.join(setup["checkpoints"], "spatial"), checkpoints / "spatial")
    write_checkpoint(checkpoints / "temporal", None, "temporal", TEMPORAL_SIZE, setup["data"], setup["splits"],
                     classes_file=other)
    code = fuse_test.main(["--dataset", "synthetic", "--data-dir", setup["data"], "--splits-dir", setup["splits"],
                           "--checkpoints", str(checkpoints), "--results-dir", str(tmp_path / "results")])
    assert code == 2
    error = capsys.readouterr().err
    assert "different classes" in error and "'Gamma' vs 'Delta'" in error


def test_a_missing_checkpoint_is_named(setup, tmp_path, capsys):
    code = fuse_test.main(["--dataset", "synthetic", "--data-dir", setup["data"], "--splits-dir", setup["splits"],
                           "--checkpoints", str(tmp_path / "nowhere"), "--results-dir", str(tmp_path)])
    assert code == 2
    assert os.path.join("nowhere", "spatial", "best.keras") in capsys.readouterr().err
