"""fuse_test.py end to end on a tiny fake dataset with untrained models of the tiny stand-in networks: outputs, scores,
SVM fusion on training-list scores, --from-scores, resume after an interruption, cached scores
tied to the model file, class limits and the published figures, the mean over splits, missing data."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import types

import keras
import numpy as np
import pytest

import demo
import fakedata
import faults
import fuse_test
import generators
import models
from twostream import errors
from twostream.datasets import ucf101
from twostream.datasets.frames import Stream
from twostream.errors import DataError
from twostream.networks import custom_layers
from twostream.scoring import evaluation, references, report
from twostream.scoring.scores import chunks_dir, scores_path
from twostream.storage import atomic
from twostream.train import checkpoints, lineage
from twostream.video import media

pytestmark = pytest.mark.xdist_group("test_fuse_test")  # one worker builds its module fixtures and compiles

CLASSES = ("Alpha", "Beta", "Gamma")
SPATIAL_SIZE, TEMPORAL_SIZE, STACK = 75, 64, 2
SAMPLES = 3
TEST_VIDEOS = [f"v_{c}_g01_c01" for c in CLASSES]  # fakedata: group 1 is split 1's test list, group 8 its training list
TRAIN_VIDEOS = [f"v_{c}_g08_c01" for c in CLASSES]
SPATIAL = references.ROW_NAMES["spatial"]
FUSE_TEST = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuse_test.py")


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    """Whatever a run writes to a relative path (results/ by default) lands in the test's own folder."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A fake dataset (3 classes, 1 test and 1 training video each) and tiny checkpoints in the training layout."""
    root = tmp_path_factory.mktemp("fuse")
    data = str(root / "data")
    splits = fakedata.write_dataset(data, CLASSES)
    folder = root / "checkpoints"
    write_checkpoint(folder / "spatial", spatial_model(len(CLASSES)), "spatial", SPATIAL_SIZE, splits)
    write_checkpoint(folder / "temporal", temporal_model(len(CLASSES)), "temporal", TEMPORAL_SIZE, splits)
    return {"root": root, "data": data, "splits": splits, "checkpoints": str(folder)}


def spatial_model(num_classes):
    """An untrained spatial model on the tiny stand-in base (scoring, not the network, is under test), seeded,
    its top sharpened so that its scores differ between videos and crops without saturating."""
    keras.utils.set_random_seed(0)
    with faults.tiny_nets_in_this_process():
        return fakedata.sharpen(models.spatial_model(num_classes, image_size=SPATIAL_SIZE, weights="none"), 100)


def temporal_model(num_classes):
    keras.utils.set_random_seed(0)
    with faults.tiny_nets_in_this_process():
        return fakedata.sharpen(models.temporal_model(num_classes, image_size=TEMPORAL_SIZE, stack_length=STACK), 100)


def write_checkpoint(folder, model, stream, image_size, splits, classes_file=None):
    return fakedata.write_checkpoint(folder, model, stream, image_size, splits, classes_file, stack_length=STACK)


def cli(setup, *extra, results=None, checkpoints_dir=None):
    results = results or str(setup["root"] / "results")
    return ["--dataset", "synthetic", "--data-dir", setup["data"], "--splits-dir", setup["splits"],
            "--checkpoints", checkpoints_dir or setup["checkpoints"], "--results-dir", str(results),
            "--samples", str(SAMPLES), "--workers", "1", *extra]


def run(argv):
    """The exit code the script gives: 0, 2 for a DataError, 130 for Ctrl-C."""
    return errors.run(fuse_test.main, argv)


def table_rows(markdown):
    """{row name: cells} of the first markdown table in `markdown`."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return {row[0]: row[1:] for row in rows[1:]}


def read_text(path):
    with open(path) as f:
        return f.read()


def read_json(path):
    with open(path) as f:
        return json.load(f)


def read_csv(path):
    with open(path) as f:
        return list(csv.reader(f))


def aggregated(folder, subset="test"):
    """{stream: mean softmax video scores [V, C]} of the score files in `folder`."""
    return {s: evaluation.aggregate(evaluation.load_scores(scores_path(folder, s, subset))["scores"])
            for s in ucf101.STREAMS}


@pytest.fixture(scope="module")
def full_run(setup):
    """Both streams, 10 crops, the 3 videos in one batch, SVM fusion: the run the other tests compare with."""
    assert run(cli(setup, "--crops", "10", "--batch-size", str(3 * SAMPLES * 10))) == 0
    return str(setup["root"] / "results" / "synthetic_split1")


# ---------------------------------------------------------------------------- flags

def test_help_loads_neither_scikit_learn_nor_matplotlib_nor_keras():
    """The scoring modules (twostream/scoring) are imported on first use: --help answers at once."""
    code = "import fuse_test\nfuse_test.parse_args(['--help'])"
    check = ("import atexit, sys\natexit.register(lambda: print(sorted(m for m in ('sklearn', 'matplotlib', 'keras') "
             "if m in sys.modules)))\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", check + code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("[]"), done.stdout[-500:] + done.stderr[-2000:]


def test_dataset_presets_and_default_run_names():
    args = fuse_test.parse_args(["--dataset", "synthetic", "--class-limit", "5", "--max-videos", "20"])
    assert fuse_test.run_dir_of(args) == os.path.join("results", "synthetic_split1_classes5_videos20")
    assert (args.data_dir, args.splits_dir, args.checkpoints, args.crops) == (
        "data/synthetic", "data/synthetic/splits", "checkpoints/synthetic", "center")
    args = fuse_test.parse_args(["--split", "2", "--crops", "center", "--data-dir", "elsewhere"])
    assert fuse_test.run_dir_of(args) == os.path.join("results", "ucf101_split2")
    assert (args.data_dir, args.splits_dir, args.crops, args.samples, args.no_svm) == (
        "elsewhere", "splits", "center", 25, False)
    args = fuse_test.parse_args(["--from-scores", "results/old"])
    assert fuse_test.run_dir_of(args) == "results/old" and args.crops == "10"
    args = fuse_test.parse_args(["--from-scores", "results/old", "--run-name", "voted", "--results-dir", "out"])
    assert fuse_test.run_dir_of(args) == os.path.join("out", "voted")
    with pytest.raises(SystemExit):
        fuse_test.parse_args(["--save-every", "0"])


# ---------------------------------------------------------------------------- a whole run

@pytest.mark.slow
def test_end_to_end_writes_the_table_and_its_evidence(setup, full_run):
    for name in ("results.md", "per_class.csv", "confusion.png", "misclassified.csv", "metrics.json",
                 "scores_spatial.npz", "scores_temporal.npz", "scores_spatial_train.npz", "scores_temporal_train.npz"):
        assert os.path.isfile(os.path.join(full_run, name)), name
    assert not [name for name in os.listdir(full_run) if "partial" in name or name.endswith(".tmp")]
    markdown = read_text(os.path.join(full_run, "results.md"))
    rows = table_rows(markdown)
    assert list(rows) == [SPATIAL, "Temporal", "Fusion (averaging)", "Fusion (SVM)"]
    assert rows[SPATIAL][:2] == ["—", "—"]  # references do not apply to the synthetic dataset
    assert "do not apply" in markdown and "mean softmax" in markdown and "10 crops" in markdown

    # The table's numbers are those of the saved scores.
    spatial, temporal = (evaluation.load_scores(scores_path(full_run, s)) for s in ucf101.STREAMS)
    assert spatial["videos"] == TEST_VIDEOS and list(spatial["labels"]) == [0, 1, 2]
    assert spatial["scores"].shape == (3, SAMPLES, 3) and temporal["scores"].shape == (3, SAMPLES, 3)
    np.testing.assert_allclose(spatial["scores"].sum(axis=2), 1.0, rtol=1e-5)
    assert spatial["settings"]["num_classes"] == 3 and spatial["settings"]["samples"] == SAMPLES
    assert spatial["settings"]["fingerprint"] == checkpoints.fingerprint(
        os.path.join(setup["checkpoints"], "spatial", "last.keras"))
    video = aggregated(full_run)
    fused = evaluation.fuse([video["spatial"], video["temporal"]])
    expected = evaluation.metrics(spatial["labels"], fused)
    assert rows["Fusion (averaging)"][2] == report.percent(expected["top1"])
    assert rows["Fusion (averaging)"][4] == report.percent(expected["mean_class"])
    assert read_json(os.path.join(full_run, "metrics.json"))["results"]["fusion"] == pytest.approx(expected,
                                                                                                   nan_ok=True)

    per_class = read_csv(os.path.join(full_run, "per_class.csv"))
    assert [row[:2] for row in per_class[1:]] == [[c, "1"] for c in CLASSES]
    with open(os.path.join(full_run, "confusion.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_the_svm_row_is_fused_from_training_list_scores(setup, full_run):
    """The training list is scored like the test list, and the SVM trained on it fills the table's last row."""
    for stream in ucf101.STREAMS:
        train = evaluation.load_scores(scores_path(full_run, stream, "train"))
        assert train["videos"] == TRAIN_VIDEOS and list(train["labels"]) == [0, 1, 2]
        assert train["scores"].shape == (3, SAMPLES, 3) and train["settings"]["crops"] == "10"
    labels = evaluation.load_scores(scores_path(full_run, "spatial", "train"))["labels"]
    svm = evaluation.svm_fit(aggregated(full_run, "train"), labels)
    expected = evaluation.metrics([0, 1, 2], evaluation.svm_scores(svm, aggregated(full_run)))
    saved = read_json(os.path.join(full_run, "metrics.json"))
    assert saved["final"] == "svm" and saved["results"]["svm"] == pytest.approx(expected, nan_ok=True)
    svm_row = table_rows(read_text(os.path.join(full_run, "results.md")))["Fusion (SVM)"]
    assert svm_row[2] == report.percent(expected["top1"]) and svm_row[2] != "not run"


def test_no_svm_scores_no_training_list(setup, tmp_path, monkeypatch):
    """--no-svm: the SVM row says "not run" and not one training video is scored (models faked: only the flow
    matters)."""
    scored = []

    def fake_predict(model, videos, args, stream, config, devices=1):
        scored.extend(v.name for v in videos)
        return np.full((len(videos), args.samples, len(CLASSES)), 1 / len(CLASSES), np.float32)

    model = types.SimpleNamespace(output_shape=(None, len(CLASSES)))  # all check_outputs reads of it
    monkeypatch.setattr(checkpoints, "load", lambda path, stream, dataset=None: (model, None, None))
    monkeypatch.setattr(fuse_test, "predict_videos", fake_predict)
    assert run(cli(setup, "--no-svm", results=tmp_path)) == 0
    folder = tmp_path / "synthetic_split1"
    assert sorted(scored) == sorted(TEST_VIDEOS * 2)
    assert not list(folder.glob("*_train*"))
    assert table_rows(read_text(folder / "results.md"))["Fusion (SVM)"][2] == "not run"

    scored.clear()  # the same faked run without --no-svm scores the training list, for both streams
    assert run(cli(setup, "--run-name", "with_svm", results=tmp_path)) == 0
    assert sorted(scored) == sorted((TEST_VIDEOS + TRAIN_VIDEOS) * 2)


@pytest.mark.slow
def test_saved_scores_are_the_models_softmax_with_crops_averaged(setup, full_run):
    """Video 2's spatial scores (test and training list) equal the model's softmax of its 3 frames x 10 crops,
    averaged over crops. The fake videos differ by class colour, their frames slightly: the check would see
    another video's scores, or the samples of each crop averaged instead of the crops of each sample."""
    model = checkpoints.load(os.path.join(setup["checkpoints"], "spatial", "last.keras"), "spatial")[0]
    for subset in ("test", "train"):
        videos = ucf101.load_index(setup["data"], setup["splits"], 1, subset)
        sequence = generators.EvalSequence(videos, setup["data"], Stream("spatial", STACK),
                                           samples=SAMPLES, crops="10", image_size=SPATIAL_SIZE)
        x, index = sequence[2]
        assert x.shape == (SAMPLES * 10, SPATIAL_SIZE, SPATIAL_SIZE, 3) and set(index) == {2}
        expected = np.asarray(model.predict_on_batch(x)).reshape(SAMPLES, 10, -1).mean(axis=1)
        saved = evaluation.load_scores(scores_path(full_run, "spatial", subset))
        assert saved["videos"][2] == videos[2].name
        np.testing.assert_allclose(saved["scores"][2], expected, atol=1e-5)
        assert np.ptp(expected, axis=0).max() > 1e-4 and np.abs(saved["scores"][1] - expected).max() > 1e-4


@pytest.mark.slow
def test_from_scores_reproduces_the_table_without_models(setup, full_run, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("--from-scores must not load a model")

    monkeypatch.setattr(checkpoints, "load", no_model)
    monkeypatch.setattr(custom_layers, "load_model", no_model)
    results = setup["root"] / "results"
    assert run(cli(setup, "--from-scores", full_run, "--run-name", "again")) == 0
    assert read_text(results / "again" / "results.md") == read_text(os.path.join(full_run, "results.md"))
    assert "svm" in read_json(results / "again" / "metrics.json")["results"]  # from the _train files
    assert run(cli(setup, "--from-scores", full_run, "--run-name", "voted", "--aggregate", "vote",
                   "--fusion-weights", "1", "1.5")) == 0
    voted = read_text(results / "voted" / "results.md")
    assert "voting" in voted and "1 : 1.5" in voted


@pytest.mark.slow
def test_sharded_scoring_and_merge_give_the_unsharded_table(setup, full_run, tmp_path, monkeypatch):
    results, flags = tmp_path / "sharded", ["--crops", "10", "--batch-size", str(3 * SAMPLES * 10)]
    folder = results / "synthetic_split1"
    assert run(cli(setup, *flags, "--shard", "1/2", results=results)) == 0  # 1 + crc32 % 2: Alpha and Beta
    assert not (folder / "results.md").exists()  # a part is not fused
    with pytest.raises(DataError, match=r"of 1 of the 3 test-list videos: v_Gamma_g01_c01\. .* = 2/2"):
        fuse_test.main(cli(setup, *flags, "--merge", results=results))
    assert run(cli(setup, *flags, "--shard", "2/2", results=results)) == 0
    parts = [evaluation.load_scores(scores_path(folder, "temporal", shard=(k, 2)))["videos"] for k in (1, 2)]
    assert parts == [TEST_VIDEOS[:2], TEST_VIDEOS[2:]]  # disjoint parts, each scored on its own machine

    def no_model(*args, **kwargs):
        raise AssertionError("--merge must not load a model")

    monkeypatch.setattr(checkpoints, "load", no_model)
    assert run(cli(setup, *flags, "--merge", results=results)) == 0
    assert read_text(folder / "results.md") == read_text(os.path.join(full_run, "results.md"))
    assert "svm" in read_json(folder / "metrics.json")["results"]  # the training list was sharded too
    for subset in ("test", "train"):
        for stream in ucf101.STREAMS:
            merged, whole = (evaluation.load_scores(scores_path(f, stream, subset))
                             for f in (folder, full_run))
            assert merged["videos"] == whole["videos"] and merged["labels"].tolist() == whole["labels"].tolist()
            np.testing.assert_allclose(merged["scores"], whole["scores"], rtol=1e-5, atol=1e-6)

    # Parts of another split into N, or scored otherwise, are refused.
    os.rename(scores_path(folder, "spatial", shard=(2, 2)),
              scores_path(folder, "spatial", shard=(2, 3)))
    with pytest.raises(DataError, match="parts of 2 and 3 shards"):
        fuse_test.main(cli(setup, *flags, "--merge", results=results))


def write_cue_scores(folder, subset, seed, relabel=0, **settings):
    """Hand-made scores of 20 videos of 2 x 2 classes: spatial sees only the colour, temporal only the motion.
    relabel: saved labels are the true class + relabel (mod 4), scores stay those of the true class.
    settings: more of how the scores were made (e.g. how far the model trained)."""
    classes = ["RedLeft", "RedRight", "BlueLeft", "BlueRight"]
    colour, motion = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    labels = np.repeat(np.arange(4), 5)
    rng = np.random.default_rng(seed)
    for stream, cue in (("spatial", colour), ("temporal", motion)):
        scores = (cue[None, None, :] == cue[labels][:, None, None]) * 0.45 + rng.uniform(0, 0.1, (20, 5, 4))
        evaluation.save_scores(scores_path(str(folder), stream, subset),
                               [f"v{subset}{i}" for i in range(20)], (labels + relabel) % 4,
                               scores / scores.sum(axis=2, keepdims=True), classes,
                               {"dataset": "synthetic", "split": 1, "samples": 5, "crops": "center", **settings})


def test_fusion_beats_each_stream_on_appearance_and_motion_scores(tmp_path):
    write_cue_scores(tmp_path, "test", seed=0)
    write_cue_scores(tmp_path, "train", seed=1)
    assert run(["--from-scores", str(tmp_path), "--results-dir", str(tmp_path)]) == 0
    rows = table_rows(read_text(tmp_path / "results.md"))
    top1 = {name: float(cells[2]) for name, cells in rows.items()}
    assert top1["Fusion (averaging)"] == 100.0 and top1["Fusion (SVM)"] == 100.0
    assert top1[SPATIAL] < 75 and top1["Temporal"] < 75


def test_the_svm_learns_from_the_training_list_not_the_test_list(tmp_path):
    """Training videos labelled one class on: an SVM fitted on them is wrong on every test video
    (one fitted on the test list would be right on all)."""
    write_cue_scores(tmp_path, "test", seed=0)
    write_cue_scores(tmp_path, "train", seed=1, relabel=1)
    assert run(["--from-scores", str(tmp_path), "--results-dir", str(tmp_path)]) == 0
    rows = table_rows(read_text(tmp_path / "results.md"))
    assert rows["Fusion (averaging)"][2] == "100.0" and rows["Fusion (SVM)"][2] == "0.0"


# ---------------------------------------------------------------------------- cached, resumed and stale scores

class Interrupted(Exception):
    pass


def counting_predict(monkeypatch, fail_at=None, error=Interrupted):
    """Patch fuse_test.predict_videos to record the videos of each call and raise `error` at call `fail_at`."""
    real_predict, calls = fuse_test.predict_videos, []

    def predict(model, videos, *args):
        calls.append([v.name for v in videos])
        if len(calls) == fail_at:
            raise error
        return real_predict(model, videos, *args)

    monkeypatch.setattr(fuse_test, "predict_videos", predict)
    return calls


def chunk_videos(folder, stream="temporal"):
    """The videos of each chunk file an interrupted run left, in list order."""
    chunks = chunks_dir(scores_path(str(folder), stream))
    return [evaluation.load_scores(os.path.join(chunks, name))["videos"] for name in sorted(os.listdir(chunks))]


@pytest.mark.slow
def test_an_interrupted_evaluation_resumes_where_it_stopped(setup, full_run, monkeypatch):
    args = cli(setup, "--streams", "temporal", "--crops", "10", "--save-every", "1", "--run-name", "resumed")
    folder = setup["root"] / "results" / "resumed"
    counting_predict(monkeypatch, fail_at=3)
    with pytest.raises(Interrupted):
        fuse_test.main(args)
    assert chunk_videos(folder) == [TEST_VIDEOS[:1], TEST_VIDEOS[1:2]]
    assert not (folder / "scores_temporal.npz").exists()

    calls = counting_predict(monkeypatch)
    assert run(args) == 0
    assert calls == [TEST_VIDEOS[2:]]  # only the third video was computed
    # chunks joined and removed
    assert sorted(os.listdir(folder)) == [".lock", "confusion.png", "metrics.json", "misclassified.csv",
                                          "per_class.csv", "results.md", "scores_temporal.npz"]
    resumed = evaluation.load_scores(str(folder / "scores_temporal.npz"))
    complete = evaluation.load_scores(scores_path(full_run, "temporal"))
    assert resumed["videos"] == complete["videos"]
    np.testing.assert_allclose(resumed["scores"], complete["scores"], atol=1e-5)

    calls.clear()
    mtime = os.path.getmtime(folder / "scores_temporal.npz")
    assert run(args) == 0  # final scores exist: reused, not recomputed nor rewritten
    assert calls == [] and os.path.getmtime(folder / "scores_temporal.npz") == mtime


def test_ctrl_c_keeps_the_chunks_done_so_far(setup, monkeypatch, capsys):
    counting_predict(monkeypatch, fail_at=2, error=KeyboardInterrupt)
    args = cli(setup, "--streams", "temporal", "--crops", "center", "--save-every", "2", "--run-name", "ctrl_c")
    assert run(args) == 130
    assert "resumes where this one stopped" in capsys.readouterr().err
    folder = setup["root"] / "results" / "ctrl_c"
    assert chunk_videos(folder) == [TEST_VIDEOS[:2]]
    assert not (folder / "scores_temporal.npz").exists()


def test_ctrl_c_in_the_first_chunk_is_reported_as_ctrl_c(setup, monkeypatch, capsys):
    """It surfaced as `ValueError: 0 videos` from the save of the scores so far (issue 16)."""
    counting_predict(monkeypatch, fail_at=1, error=KeyboardInterrupt)
    args = cli(setup, "--streams", "temporal", "--crops", "center", "--run-name", "ctrl_c_first")
    assert run(args) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not (setup["root"] / "results" / "ctrl_c_first" / "scores_temporal.npz").exists()


def test_a_corrupt_jpeg_in_the_first_chunk_is_the_error_reported(setup, tmp_path, capsys):
    data = str(tmp_path / "data")
    splits = fakedata.write_dataset(data, CLASSES)
    for j in range(11):  # every flow image of the first test video: whichever the samples read
        with open(ucf101.frame_path(ucf101.flow_dir(data, "u", TEST_VIDEOS[0]), j), "r+b") as f:
            f.truncate(40)
    args = cli(setup, "--data-dir", data, "--splits-dir", splits, "--streams", "temporal", "--crops", "center",
               results=tmp_path / "results")
    assert run(args) == 2
    error = capsys.readouterr().err
    assert TEST_VIDEOS[0] in error and "unreadable" in error and "0 videos" not in error


def test_scores_are_written_once_not_again_with_every_chunk(setup, monkeypatch, tmp_path):
    """Linear I/O: each video's scores are written twice in all (its chunk, then the joined file), however many
    chunks; the earlier single partial file was rewritten whole every --save-every videos (quadratic)."""
    written = []
    real_save = evaluation.save_scores
    monkeypatch.setattr(evaluation, "save_scores", lambda path, videos, *a, **k: written.append(len(videos)) or
                        real_save(path, videos, *a, **k))
    args = cli(setup, "--streams", "temporal", "--crops", "center", "--save-every", "1", results=tmp_path)
    assert run(args) == 0
    assert written == [1, 1, 1, 3]


def killed_scoring(argv, fault):
    """Run fuse_test.py with a FAULT (faults.py) that SIGKILLs it at a moment of its score files."""
    process = subprocess.run([sys.executable, FUSE_TEST, *argv], env=faults.fault_environment(fault),
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == -signal.SIGKILL, (fault, process.stderr[-3000:])


@pytest.mark.slow
def test_kill_9_at_any_moment_then_the_same_command_finishes_with_the_same_scores(setup, full_run, tmp_path):
    """Real SIGKILLs of the scoring process at each moment of its score files, one run after the other: every
    file left is whole (loads), and the same command then finishes with the scores of an uninterrupted run."""
    folder = tmp_path / "synthetic_split1"
    argv = cli(setup, "--streams", "temporal", "--crops", "10", "--save-every", "1", results=tmp_path)
    for fault in ("KILL 1 before-replace chunk",  # the first chunk whole, not yet under its name
                  "KILL 1 after-replace chunk",  # one chunk saved
                  "KILL 1 after-replace chunk",  # the next
                  "KILL 1 before-replace scores_temporal.npz",  # every chunk saved, the joined file not yet
                  "KILL 1 after-replace scores_temporal.npz"):  # the joined file saved, its chunks not yet removed
        killed_scoring(argv, fault)
        for path in folder.rglob("*.npz") if folder.exists() else []:
            if not atomic.is_temporary(path.name):  # a killed write's temporary file: never read, deleted by the rerun
                evaluation.load_scores(str(path))  # whole, or not there at all
    assert run(argv) == 0
    resumed = evaluation.load_scores(scores_path(str(folder), "temporal"))
    complete = evaluation.load_scores(scores_path(full_run, "temporal"))
    assert resumed["videos"] == complete["videos"]
    np.testing.assert_allclose(resumed["scores"], complete["scores"], atol=1e-5)
    assert not [p for p in folder.rglob("*") if "chunk" in p.name or ".tmp-" in p.name]


@pytest.mark.slow
def test_a_truncated_scores_file_is_named_with_the_flag_that_redoes_it(setup, full_run, tmp_path, capsys):
    folder = tmp_path / "synthetic_split1"
    shutil.copytree(full_run, folder)
    path = scores_path(str(folder), "spatial")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    assert run(cli(setup, "--crops", "10", results=tmp_path)) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {path}: damaged") and "--overwrite" in error and "Traceback" not in error
    assert run(["--from-scores", str(folder)]) == 2
    assert path in capsys.readouterr().err


@pytest.mark.slow
def test_saved_scores_computed_differently_are_not_reused(setup, full_run, capsys):
    assert run(cli(setup, "--crops", "center")) == 2
    error = capsys.readouterr().err
    assert "scores_spatial.npz" in error and "crops" in error and "--overwrite" in error


@pytest.mark.slow
def test_scores_of_a_changed_model_file_are_computed_again_only_with_overwrite(setup, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "checkpoints" / "temporal"
    shutil.copytree(os.path.join(setup["checkpoints"], "temporal"), folder)
    args = cli(setup, "--streams", "temporal", "--crops", "center", results=tmp_path / "results",
               checkpoints_dir=str(tmp_path / "checkpoints"))
    scores_file = str(tmp_path / "results" / "synthetic_split1" / "scores_temporal.npz")
    assert run(args) == 0
    before = evaluation.load_scores(scores_file)

    model = checkpoints.load(str(folder / "last.keras"), "temporal")[0]
    top = model.get_layer("predictions")
    top.set_weights([-w for w in top.get_weights()])  # another model: other scores
    model.save(folder / "last.keras")
    capsys.readouterr()
    assert run(args) == 2
    error = capsys.readouterr().err
    assert scores_file in error and str(folder / "last.keras") in error and "changed" in error
    assert "--overwrite" in error
    assert evaluation.load_scores(scores_file)["settings"] == before["settings"]  # left as it was

    calls = counting_predict(monkeypatch)
    assert run(args + ["--overwrite"]) == 0
    assert calls == [TEST_VIDEOS]
    after = evaluation.load_scores(scores_file)
    assert after["settings"]["fingerprint"] == checkpoints.fingerprint(str(folder / "last.keras"))
    assert np.abs(after["scores"] - before["scores"]).max() > 1e-3


# ---------------------------------------------------------------------------- classes and the published figures

def test_a_model_of_the_first_classes_is_tested_on_those_and_not_compared_with_the_paper(setup, tmp_path, capsys):
    """A class-limited model (classInd.txt: Alpha, Beta) tested without --class-limit, under the name ucf101."""
    two = tmp_path / "classInd.txt"
    two.write_text("1 Alpha\n2 Beta\n")
    write_checkpoint(tmp_path / "checkpoints" / "temporal", temporal_model(2), "temporal", TEMPORAL_SIZE,
                     setup["splits"], classes_file=two)
    argv = cli(setup, "--dataset", "ucf101", "--streams", "temporal", "--crops", "center", "--samples", "2",
               results=tmp_path / "results", checkpoints_dir=str(tmp_path / "checkpoints"))
    assert run(argv) == 0
    assert "the models know the first 2 of 3 classes" in capsys.readouterr().out
    folder = tmp_path / "results" / "ucf101_split1"
    scores = evaluation.load_scores(str(folder / "scores_temporal.npz"))
    assert scores["classes"] == ["Alpha", "Beta"] and scores["videos"] == TEST_VIDEOS[:2]
    assert scores["scores"].shape == (2, 2, 2) and scores["settings"]["num_classes"] == 2
    saved = read_json(folder / "metrics.json")
    assert saved["references"] is None and saved["num_classes"] == 2
    markdown = read_text(folder / "results.md")
    assert "2 classes where ucf101 has 101" in markdown
    assert "72.7" not in markdown and "81.0" not in markdown and "Simonyan" not in markdown.split("|---")[1]
    assert table_rows(markdown)["Temporal"][:2] == ["—", "—"]


# Each stream's network as fuse_test.py records it in its score files (NETWORK_SETTINGS), at the paper's settings.
PAPER_NETWORKS = {"spatial": {"stack_length": 1, "arch": "inception_v3", "norm": None},
                  "temporal": {"stack_length": 10, "arch": "cnn_m_2048", "norm": "lrn"}}


def write_ucf101_scores(folder, split, seed=0, num_classes=101):
    """Fake scores of one video per class of the whole UCF-101, as a full run of both streams would save."""
    rng = np.random.default_rng(seed)
    labels = np.arange(num_classes)
    for stream in ucf101.STREAMS:
        scores = rng.dirichlet(np.ones(num_classes), (num_classes, 2)) + 0.5 * np.eye(num_classes)[labels, None]
        settings = {"stream": stream, "dataset": "ucf101", "split": split, "samples": 25, "crops": "10",
                    "num_classes": num_classes, "class_limit": None, "max_videos": None, **PAPER_NETWORKS[stream]}
        evaluation.save_scores(scores_path(str(folder), stream), [f"v_{i}" for i in labels], labels,
                               scores / scores.sum(axis=2, keepdims=True), [f"Class{i}" for i in labels], settings)


@pytest.mark.slow
def test_a_whole_ucf101_split_1_is_compared_with_the_paper(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "load", lambda *a: pytest.fail("--from-scores must not load a model"))
    folder = tmp_path / "ucf101_split1"
    write_ucf101_scores(folder, split=1)
    assert run(["--from-scores", str(folder), "--results-dir", str(tmp_path)]) == 0
    saved = read_json(folder / "metrics.json")
    assert saved["references"] == "split1" and saved["num_classes"] == 101
    rows = table_rows(read_text(folder / "results.md"))
    assert rows[SPATIAL][:2] == ["72.7", "73.1"] and rows["Temporal"][:2] == ["81.0", "78.8"]
    assert rows["Fusion (averaging)"][0] == "85.9" and rows["Fusion (SVM)"][2] == "not run"


def test_testing_a_second_split_writes_the_mean_over_both(tmp_path):
    results = tmp_path / "results"
    for split in (1, 2):
        write_ucf101_scores(results / f"ucf101_split{split}", split, seed=split, num_classes=12)
        assert run(["--from-scores", str(results / f"ucf101_split{split}"), "--results-dir", str(results)]) == 0
        assert (results / "ucf101_mean").exists() == (split == 2)  # a mean needs two splits
    mean = read_json(results / "ucf101_mean" / "metrics.json")
    assert mean["runs"] == [str(results / f"ucf101_split{s}" / "metrics.json") for s in (1, 2)]
    per_split = [read_json(results / f"ucf101_split{s}" / "metrics.json")["results"] for s in (1, 2)]
    for row in ("spatial", "temporal", "fusion"):
        assert mean["results"][row]["splits"] == [1, 2]
        assert mean["results"][row]["top1"] == pytest.approx(np.mean([r[row]["top1"] for r in per_split]))
    markdown = read_text(results / "ucf101_mean" / "results.md")
    assert "Mean over splits 1, 2" in markdown and "12 classes where ucf101 has 101" in markdown


# ---------------------------------------------------------------------------- bad input

def test_a_missing_video_is_reported_and_can_be_skipped(setup, tmp_path, capsys):
    data = str(tmp_path / "data")
    splits = fakedata.write_dataset(data, CLASSES)
    os.remove(ucf101.frame_path(ucf101.flow_dir(data, "v", "v_Beta_g01_c01"), 4))
    args = ["--dataset", "synthetic", "--data-dir", data, "--splits-dir", splits, "--checkpoints",
            setup["checkpoints"], "--results-dir", str(tmp_path / "results"), "--samples", "2",
            "--crops", "center", "--workers", "1"]
    assert run(args) == 2
    error = capsys.readouterr().err
    assert "v_Beta_g01_c01" in error and "--skip-missing" in error
    assert "v_Alpha_g01_c01" not in error

    assert run(args + ["--streams", "temporal", "--skip-missing"]) == 0
    folder = tmp_path / "results" / "synthetic_split1"
    assert evaluation.load_scores(str(folder / "scores_temporal.npz"))["videos"] == [TEST_VIDEOS[0], TEST_VIDEOS[2]]
    markdown = read_text(folder / "results.md")
    assert "1 skipped for missing frames or flow" in markdown and "- v_Beta_g01_c01" in markdown
    assert list(table_rows(markdown)) == ["Temporal"]


def test_streams_trained_on_different_classes_are_refused(setup, tmp_path, capsys):
    other = tmp_path / "classInd.txt"
    other.write_text("1 Alpha\n2 Beta\n3 Delta\n")
    folder = tmp_path / "checkpoints"
    shutil.copytree(os.path.join(setup["checkpoints"], "spatial"), folder / "spatial")
    temporal = write_checkpoint(folder / "temporal", None, "temporal", TEMPORAL_SIZE, setup["splits"],
                                classes_file=other)
    assert run(cli(setup, results=tmp_path / "results", checkpoints_dir=str(folder))) == 2
    error = capsys.readouterr().err
    assert temporal in error and "other classes than the spatial stream" in error
    assert not (tmp_path / "results").exists()


def test_a_missing_checkpoint_is_named(setup, tmp_path, capsys):
    assert run(cli(setup, results=tmp_path, checkpoints_dir=str(tmp_path / "nowhere"))) == 2
    assert os.path.join("nowhere", "spatial", "last.keras") in capsys.readouterr().err
def test_data_made_otherwise_than_the_model_is_warned_about(tmp_path, capsys):
    root = str(tmp_path)
    splits = fakedata.write_dataset(root, ("Alpha", "Beta"), size=(64, 48))
    video = ucf101.load_index(root, splits, 1, "test")[0]
    record = checkpoints.data_record(root, video)
    assert record == {"frame_size": [64, 48], "flow": None}
    media.write_flow_info(f"{root}/tvl1_flow", media.flow_info("dis", (64, 48)))
    record = checkpoints.data_record(root, video)
    assert record["flow"]["method"] == "dis"
    checkpoints.check_data({"frame_size": [64, 48], "flow": {"method": "dis"}}, record, "temporal", "here")
    assert capsys.readouterr().err == ""
    checkpoints.check_data({"frame_size": [340, 256], "flow": {"method": "tvl1"}}, record, "temporal", "here")
    err = capsys.readouterr().err
    assert "64x48" in err and "340x256" in err and "dis" in err and "tvl1" in err
    checkpoints.check_data({"frame_size": [64, 48], "flow": {"method": "tvl1"}}, record, "spatial", "here")
    assert capsys.readouterr().err == ""  # the spatial stream does not read flow


def test_a_model_of_the_other_stream_is_refused_from_its_config(setup, tmp_path, capsys):
    spatial = os.path.join(setup["checkpoints"], "spatial", "last.keras")
    assert run(cli(setup, "--streams", "temporal", "--temporal", spatial, results=tmp_path)) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {spatial}: is a spatial model") and "--temporal" in error
    assert "Traceback" not in error and not list(tmp_path.iterdir())


def test_a_config_of_another_class_count_is_refused(setup, tmp_path, capsys):
    folder = tmp_path / "checkpoints" / "temporal"
    shutil.copytree(os.path.join(setup["checkpoints"], "temporal"), folder)
    config = read_json(folder / "config.json")
    (folder / "config.json").write_text(json.dumps({**config, "num_classes": 5}))
    assert run(cli(setup, "--streams", "temporal", results=tmp_path / "results",
                   checkpoints_dir=str(tmp_path / "checkpoints"))) == 2
    error = capsys.readouterr().err
    assert "config.json: says 5 classes but the classInd.txt beside it lists 3" in error


def test_from_scores_names_a_missing_training_list_file(tmp_path, capsys):
    write_cue_scores(tmp_path, "test", seed=0)
    write_cue_scores(tmp_path, "train", seed=1)
    os.remove(scores_path(str(tmp_path), "temporal", "train"))
    assert run(["--from-scores", str(tmp_path), "--results-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "scores_temporal_train.npz: not found" in error and "--no-svm" in error
    assert not (tmp_path / "results.md").exists()
    assert run(["--from-scores", str(tmp_path), "--no-svm"]) == 0  # the table without the SVM row, as asked
    assert table_rows(read_text(tmp_path / "results.md"))["Fusion (SVM)"][2] == "not run"


# ---------------------------------------------------------------------------- unfinished models, fewer rows

def test_from_scores_refuses_a_missing_stream_and_never_writes_fewer_rows_over_more(tmp_path, capsys):
    write_cue_scores(tmp_path, "test", seed=0)
    write_cue_scores(tmp_path, "train", seed=1)
    assert run(["--from-scores", str(tmp_path)]) == 0
    full = read_text(tmp_path / "results.md")
    os.remove(scores_path(str(tmp_path), "temporal"))
    assert run(["--from-scores", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "scores_temporal.npz: not found, but" in error and "--streams spatial" in error
    assert run(["--from-scores", str(tmp_path), "--streams", "spatial"]) == 2  # asked for, but over the full table
    error = capsys.readouterr().err
    assert "metrics.json: its table has the rows fusion, spatial, svm, temporal, this one would lose fusion, svm, " \
           "temporal" in error and "--run-name" in error
    assert read_text(tmp_path / "results.md") == full
    assert run(["--from-scores", str(tmp_path), "--streams", "spatial", "--run-name", "alone"]) == 0  # elsewhere
    assert list(read_json(tmp_path / "results" / "alone" / "metrics.json")["results"]) == ["spatial"]


def test_scores_of_an_unfinished_model_are_refused_unless_meant_and_the_report_says_so(tmp_path, capsys):
    trained = {"steps_done": 200, "steps_planned": 1000}
    for subset, seed in (("test", 0), ("train", 1)):
        write_cue_scores(tmp_path, subset, seed, model="/runs/temporal/last.keras", trained=trained)
    assert run(["--from-scores", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "scores of /runs/temporal/last.keras: trained 200 of its run's 1000 steps" in error
    assert "--unfinished" in error and not (tmp_path / "results.md").exists()
    assert run(["--from-scores", str(tmp_path), "--unfinished"]) == 0
    assert "/runs/temporal/last.keras, trained 200 of 1000 steps (unfinished" in read_text(tmp_path / "results.md")
    assert read_json(tmp_path / "metrics.json")["settings"]["models"]["temporal"]["trained"] == trained


def test_an_unfinished_model_is_refused_before_scoring_unless_meant(setup, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "checkpoints" / "temporal"
    shutil.copytree(os.path.join(setup["checkpoints"], "temporal"), folder)
    checkpoints.add_training_record(folder / "last.keras", checkpoints.TrainingRecord(3, 6, {}))
    argv = cli(setup, "--streams", "temporal", "--crops", "center", results=tmp_path / "results",
               checkpoints_dir=str(tmp_path / "checkpoints"))
    calls = counting_predict(monkeypatch)
    assert run(argv) == 2
    assert f"{folder / 'last.keras'}: trained 3 of its run's 6 steps" in capsys.readouterr().err
    assert calls == []  # refused before anything was scored
    assert run(argv + ["--unfinished"]) == 0 and calls
    assert "temporal: " in capsys.readouterr().out
    results = read_text(tmp_path / "results" / "synthetic_split1" / "results.md")
    assert "last.keras, trained 3 of 6 steps (unfinished" in results


def write_weak_scores(folder, names, labels, seed, shard=None, noise=0.0):
    """Scores of two weak nets (as the mini set's: 20-35% top-1), close to uniform, for the synthetic dataset;
    noise: a relative change like that of scoring the videos in other batches."""
    rng, rounding = np.random.default_rng(seed), np.random.default_rng(shard)
    for stream, strength in (("spatial", 1.0), ("temporal", 1.5)):
        logits = 0.01 * (rng.normal(size=(len(names), 2, 12)) + strength * np.eye(12)[labels][:, None])
        scores = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
        settings = {"stream": stream, "dataset": "synthetic", "split": 1, "samples": 2, "crops": "center",
                    "num_classes": 12, "class_limit": None, "max_videos": None, "skipped": [], "shard": shard}
        for subset, keep in (("test", [g == 1 for g in groups_of(names)]),
                             ("train", [g != 1 for g in groups_of(names)])):
            rows = [i for i, k in enumerate(keep) if k and (not shard or ucf101.shard_of(names[i], 2) == shard[0])]
            noisy = scores[rows] * (1 + noise * rounding.standard_normal(scores[rows].shape))
            evaluation.save_scores(scores_path(str(folder), stream, subset, shard=shard),
                                   [names[i] for i in rows], labels[rows], noisy, [f"C{k:02d}" for k in range(12)],
                                   settings)


def groups_of(names):
    return [ucf101.parse_name(name)[1] for name in names]


@pytest.mark.slow
def test_a_second_process_on_one_shard_stops_naming_the_first_and_other_shards_score_alongside(setup, tmp_path,
                                                                                                capsys):
    """Two processes scoring one part of one run folder: the second would join and remove the chunks under the
    first. It stops (exit 2) naming the first's pid; another part, or the unsharded run (--merge), goes ahead."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run_dir = tmp_path / "results" / "shared"
    lock = "from twostream.scoring.scores import lock_run\nlock_run"
    hold = f"import time\n{lock}({str(run_dir)!r}, (1, 2))\nprint('locked', flush=True)\n"
    holder = subprocess.Popen([sys.executable, "-c", hold + "time.sleep(120)"], cwd=root, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        flags = cli(setup, "--streams", "temporal", "--shard", "1/2", "--run-name", "shared",
                    results=tmp_path / "results")
        assert run(flags) == 2 and not list(run_dir.glob("*.npz")) and not list(run_dir.glob("*.chunks"))
        assert f"another process (pid {holder.pid}) is scoring part 1/2 of this run into it" in capsys.readouterr().err
        for shard in ("(2, 2)", "None"):  # the other part, and the unsharded run (--merge), lock their own files
            other = subprocess.run([sys.executable, "-c", f"{lock}({str(run_dir)!r}, {shard})"], cwd=root,
                                   capture_output=True, text=True, timeout=120)
            assert other.returncode == 0, other.stderr[-2000:]
    finally:
        holder.kill()
        holder.wait()
    assert run(flags) == 0  # the lock went with the process
    assert (run_dir / "scores_temporal.shard1of2.npz").exists()


@pytest.mark.slow
def test_merged_shards_give_the_unsharded_table_svm_row_included(tmp_path):
    """Weak nets' scores, near 1 / C: an unconverged SVM's row moved with rounding (42.9% vs 50.0% after
    --merge on the mini set, issue 16). Parts scored in other batches differ in the last bits."""
    classes = [f"C{k:02d}" for k in range(12)]
    videos = [(cls, f"v_{cls}_g{g:02d}_c{c:02d}.avi") for cls in classes for g in (1, 8, 9, 10, 11, 12, 13, 14)
              for c in (1, 2)]
    splits = tmp_path / "splits"
    splits.mkdir()
    for file, lines in ucf101.make_splits(videos, classes).items():
        ucf101.write_lines(str(splits / file), lines)
    names = [ucf101.video_name(path) for _, path in videos]
    labels = np.array([classes.index(cls) for cls, _ in videos])
    whole, sharded = tmp_path / "whole", tmp_path / "sharded" / "synthetic_split1"
    write_weak_scores(whole, names, labels, seed=0)
    for k in (1, 2):
        write_weak_scores(sharded, names, labels, seed=0, shard=(k, 2), noise=1e-7)
    flags = ["--dataset", "synthetic", "--splits-dir", str(splits), "--data-dir", str(tmp_path / "data")]
    assert run(flags + ["--from-scores", str(whole)]) == 0
    assert run(flags + ["--merge", "--results-dir", str(tmp_path / "sharded")]) == 0
    merged, unsharded = (table_rows(read_text(folder / "results.md")) for folder in (sharded, whole))
    assert merged["Fusion (SVM)"][2] != "not run" and merged == unsharded
    svm = read_json(sharded / "metrics.json")["svm"]
    assert svm == read_json(whole / "metrics.json")["svm"] and "folds by UCF-101 group" in svm["how"]
    assert f"C = {svm['C']:g} (" in read_text(sharded / "results.md")


def write_full_scores(folder, dataset, num_classes, **settings):
    """Fake scores of one video per class of a whole dataset's split 1 (no training list: no SVM)."""
    rng = np.random.default_rng(0)
    labels = np.arange(num_classes)
    for stream in ucf101.STREAMS:
        scores = rng.dirichlet(np.ones(num_classes), (num_classes, 2)) + 0.5 * np.eye(num_classes)[labels, None]
        evaluation.save_scores(scores_path(str(folder), stream), [f"v_{i}" for i in labels], labels,
                               scores / scores.sum(axis=2, keepdims=True), [f"Class{i}" for i in labels],
                               {"stream": stream, "dataset": dataset, "split": 1, "samples": 25, "crops": "10",
                                "num_classes": num_classes, "class_limit": None, "max_videos": None,
                                **PAPER_NETWORKS[stream], **(settings if stream == "temporal" else {})})


@pytest.mark.parametrize("dataset, classes, settings, rows", [
    ("ucf101", 101, {}, {"Temporal": "81.0", "Fusion (averaging)": "85.9"}),
    ("ucf101", 101, {"multitask": {"dataset": "hmdb51", "videos": "all"}},
     {"Temporal (multi-task)": "81.5", "Fusion (averaging)": "86.2",
      "Fusion by averaging (multi-task temporal)": None}),
    ("hmdb51", 51, {"init": "checkpoints/ucf101/temporal/last.keras"},
     {"Temporal": "49.0", "Temporal (trained on HMDB-51 alone)": "46.6"}),
    ("ucf101", 101, {"stack_length": 5}, {"Temporal": "80.4", "Fusion (averaging)": "—", SPATIAL: "72.7",
                                          "Temporal (L = 10, mean subtraction, uni-directional flow)": "81.0"}),
    ("ucf101", 101, {"arch": "inception_v3", "norm": None}, {"Temporal": "—", "Fusion (averaging)": "—"}),
])
@pytest.mark.slow
def test_the_temporal_net_of_the_scores_picks_the_papers_figures(tmp_path, dataset, classes, settings, rows):
    """The kind of temporal net (alone, multi-task, fine-tuned with --init) comes from its score file's settings:
    a multi-task run's averaging is compared with 86.2, an --init HMDB-51 net with 49.0 (46.6 "not run")."""
    folder = tmp_path / f"{dataset}_split1"
    write_full_scores(folder, dataset, classes, **settings)
    assert run(["--from-scores", str(folder), "--results-dir", str(tmp_path)]) == 0
    table = table_rows(read_text(folder / "results.md"))
    for row, figure in rows.items():
        assert (row in table) == (figure is not None), row
        if figure:
            assert table[row][0] == figure, row


def test_a_head_is_not_tested_on_videos_it_trained_on(setup, tmp_path, capsys):
    """A head trained on split 2's training list (groups 1-7 and 15-25) holds split 1's test videos (group 1);
    one that recorded split 1's test list among its training lists (a multi-task head, --multitask-videos all)
    too. Both are refused, naming the overlap and a clean head's command."""
    for name, entries in (("split2", {"split": 2}),
                          ("all", {"trained_on": {"synthetic": ["trainlist01.txt", "testlist01.txt"]}})):
        folder = tmp_path / name / "temporal"
        shutil.copytree(os.path.join(setup["checkpoints"], "temporal"), folder)
        config = read_json(folder / "config.json")
        (folder / "config.json").write_text(json.dumps({**config, **entries}))
        assert run(cli(setup, "--streams", "temporal", results=tmp_path / "results",
                       checkpoints_dir=str(tmp_path / name))) == 2
        error = capsys.readouterr().err
        listed = "trainlist02.txt" if name == "split2" else "testlist01.txt"
        assert f"trained on {listed}" in error and "3 of the 3 split 1 test videos" in error, error
        assert "v_Alpha_g01_c01" in error and "temporal_train.py --dataset synthetic --split 1" in error
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_a_run_off_the_papers_protocol_is_compared_with_nothing_and_says_why(tmp_path):
    """Voting and unequal fusion weights (--from-scores): no published figure was measured so."""
    folder = tmp_path / "ucf101_split1"
    write_full_scores(folder, "ucf101", 101)
    assert run(["--from-scores", str(folder), "--results-dir", str(tmp_path), "--aggregate", "vote",
                "--fusion-weights", "1", "1.5"]) == 0
    markdown = read_text(folder / "results.md")
    table = table_rows(markdown)
    assert [table[row][0] for row in (SPATIAL, "Temporal", "Fusion (averaging)")] == ["—"] * 3
    assert table["Fusion by averaging (uni-directional flow)"][:3] == ["85.9", "82.0", "not run"]
    assert "--aggregate vote (the paper: mean)" in markdown and "--fusion-weights 1 1.5 (the paper: equal)" in markdown


def fine_tuned_run(tmp_path, setup, name, init, record=True, **entries):
    """A temporal run folder fine-tuned (--init) from the model `init`, on split 2 unless `entries` say, its
    config.json's trained_on as training records it (lineage.trained_on before the run starts); its
    last.keras carries the training record with that config when `record`."""
    folder = tmp_path / name / "temporal"
    shutil.copytree(os.path.join(setup["checkpoints"], "temporal"), folder)
    config = {**read_json(folder / "config.json"), "split": 2, "splits_dir": setup["splits"], "init": str(init),
              **entries}
    config = {**config, "trained_on": lineage.trained_on(config)}
    (folder / "config.json").write_text(json.dumps(config))
    if record:
        checkpoints.add_training_record(str(folder / "last.keras"), checkpoints.TrainingRecord(1, 1, config))
    return folder


def test_a_net_fine_tuned_from_a_split_1_net_is_refused_on_split_1_training_videos(setup, tmp_path, capsys):
    """A split-1 net (trained on group 8) fine-tuned on split 2 (--init) records both training lists, and
    fuse_test.py refuses split 2's test list (group 8: split 1's training videos), naming the --init net; the
    demo refuses such a video too. Its grandchild, fine-tuned on split 3 from it, still holds split 1's lists."""
    parent = os.path.join(setup["checkpoints"], "temporal", "last.keras")  # trained on split 1 (config.json)
    child = fine_tuned_run(tmp_path, setup, "child", parent)
    assert read_json(child / "config.json")["trained_on"] == {"synthetic": ["trainlist02.txt", "trainlist01.txt"]}
    assert run(cli(setup, "--streams", "temporal", "--split", "2", results=tmp_path / "results",
                   checkpoints_dir=str(tmp_path / "child"))) == 2
    error = capsys.readouterr().err
    assert "trained on trainlist01.txt" in error and "3 of the 3 split 2 test videos" in error, error
    assert f"--init {parent}" in error and "v_Alpha_g08_c01" in error
    assert not (tmp_path / "results").exists()
    with pytest.raises(DataError, match=r"v_Beta_g08_c01 of synthetic's trainlist01.txt.*--init"):
        demo.check_not_trained_on("elsewhere/v_Beta_g08_c01.avi", {"temporal": str(child / "last.keras")},
                                  "synthetic")
    # The lineage is transitive, and travels inside the model: the grandchild's --init is the child's model alone,
    # copied away from its config.json.
    alone = tmp_path / "copied" / "child.keras"
    alone.parent.mkdir()
    shutil.copy(child / "last.keras", alone)
    grandchild = fine_tuned_run(tmp_path, setup, "grandchild", alone, split=3)
    assert read_json(grandchild / "config.json")["trained_on"] == {
        "synthetic": ["trainlist03.txt", "trainlist02.txt", "trainlist01.txt"]}


def test_an_init_run_recorded_without_its_lineage_still_gets_it_from_the_init_model(setup, tmp_path, capsys):
    """Runs fine-tuned before the lineage was recorded: trained_on is their own list only, and the --init
    model beside its config.json still says what it trained on."""
    parent = os.path.join(setup["checkpoints"], "temporal", "last.keras")
    config = {"dataset": "synthetic", "split": 2, "init": parent, "trained_on": {"synthetic": ["trainlist02.txt"]}}
    assert lineage.trained_on(config) == {"synthetic": ["trainlist02.txt", "trainlist01.txt"]}
    assert lineage.trained_on({**config, "init": str(tmp_path / "gone.keras")}) == config["trained_on"]
    assert capsys.readouterr().err == ""  # its lineage was recorded when it started, or it is an old run: no noise
    lineage.trained_on({"dataset": "synthetic", "split": 2, "init": str(tmp_path / "gone.keras")})
    assert "cannot refuse the videos it learnt" in capsys.readouterr().err  # a run starting from an unknown net


def test_the_lists_a_head_trained_on_are_derived_for_runs_without_a_record():
    assert lineage.trained_on({"dataset": "ucf101", "split": 2}) == {"ucf101": ["trainlist02.txt"]}
    assert lineage.trained_on({"dataset": "ucf101", "split": 1, "multitask": {"dataset": "hmdb51",
                                                                                "videos": "all"}}) == {
        "ucf101": ["trainlist01.txt"], "hmdb51": ["trainlist01.txt", "testlist01.txt"]}
    assert lineage.trained_on({"dataset": "hmdb51", "split": 3, "multitask": {"dataset": "ucf101",
                                                                                "videos": "train"}}) == {
        "hmdb51": ["trainlist03.txt"], "ucf101": ["trainlist01.txt"]}
    recorded = {"ucf101": ["trainlist01.txt"]}
    assert lineage.trained_on({"dataset": "ucf101", "split": 2, "trained_on": recorded}) == recorded
