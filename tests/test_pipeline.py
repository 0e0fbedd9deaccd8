"""End to end on the generated mini dataset at tiny sizes: prepare_data, both training scripts,
fuse_test and the demo, run once for the module (about two minutes on 2 CPU cores).

Four classes, two colours x the two motions a wrong flow flip swaps (Expand, Saddle): the
spatial stream alone can only tell the colour and the temporal stream only the motion (each
capped at 50%), so fusion must beat both.
"""
import json
import os

import cv2
import numpy as np
import pytest

import demo
import faults
import fuse_test
import prepare_data
import spatial_train
import temporal_train
from twostream import errors
from twostream.datasets import synthetic, ucf101
from twostream.video import media

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.xdist_group("test_pipeline")]  # minutes, once

CLASSES = ["BlueExpand", "BlueSaddle", "RedExpand", "RedSaddle"]
SIZE = "96x72"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini")
    data, checkpoints, results = str(root / "data"), str(root / "checkpoints"), str(root / "results")
    synthetic.generate(data, classes=CLASSES, progress=False)
    videos = os.path.join(data, "UCF-101")
    assert prepare_data.main(["frames", "--videos", videos, "--out", os.path.join(data, "jpegs_256"),
                              "--size", SIZE, "--workers", "2"]) == 0
    assert prepare_data.main(["flow", "--videos", videos, "--out", os.path.join(data, "tvl1_flow"),
                              "--size", SIZE, "--flow-method", "dis", "--workers", "2"]) == 0
    common = ["--dataset", "synthetic", "--data-dir", data, "--splits-dir", os.path.join(data, "splits")]
    spatial_train.main(common + ["--checkpoint-dir", os.path.join(checkpoints, "spatial"), "--image-size", "75",
                                 "--epoch-steps", "5", "--phase1-iterations", "150",
                                 "--phase2-iterations", "10"])
    temporal_train.main(common + ["--checkpoint-dir", os.path.join(checkpoints, "temporal"), "--image-size", "64",
                                  "--iterations", "150", "--lr-drops", "120"])
    assert errors.run(fuse_test.main, ["--dataset", "synthetic", "--data-dir", data, "--splits-dir",
                                       os.path.join(data, "splits"), "--checkpoints", checkpoints,
                                       "--results-dir", results, "--run-name", "mini"]) == 0
    return dict(data=data, checkpoints=checkpoints, results=os.path.join(results, "mini"))


def top1(run, name):
    with open(os.path.join(run["results"], "metrics.json")) as f:
        return json.load(f)["results"][name]["top1"]


def test_fusion_beats_each_stream(run):
    spatial, temporal, fusion, svm = (top1(run, name) for name in ("spatial", "temporal", "fusion", "svm"))
    print(f"mini run top-1: spatial {spatial:.3f}, temporal {temporal:.3f}, fusion {fusion:.3f}, svm {svm:.3f}")
    assert spatial <= 0.6 and temporal <= 0.6  # each stream sees one factor of two
    assert fusion > max(spatial, temporal) + 0.2
    assert svm > max(spatial, temporal) + 0.2  # trained on the training list's scores, tested on the test list


def test_table_confusion_matrix_and_lists_are_written(run):
    with open(os.path.join(run["results"], "results.md")) as f:
        table = f.read()
    assert "| Spatial" in table and "| Temporal" in table and "| Fusion" in table and "SVM" in table
    image = cv2.imread(os.path.join(run["results"], "confusion.png"))
    assert image is not None and image.shape[0] > 100
    for name in ("per_class.csv", "misclassified.csv", "scores_spatial.npz", "scores_temporal.npz",
                 "scores_spatial_train.npz", "scores_temporal_train.npz"):
        assert os.path.getsize(os.path.join(run["results"], name)) > 0


def test_resumed_training_command_trains_nothing_and_keeps_checkpoints(run):
    best = os.path.join(run["checkpoints"], "temporal", "last.keras")
    before = os.path.getmtime(best)
    temporal_train.main(["--dataset", "synthetic", "--data-dir", run["data"],
                         "--splits-dir", os.path.join(run["data"], "splits"),
                         "--checkpoint-dir", os.path.dirname(best), "--image-size", "64",
                         "--iterations", "150", "--lr-drops", "120"])
    assert os.path.getmtime(best) == before


def test_demo_predicts_the_class_of_a_test_video(run):
    splits = os.path.join(run["data"], "splits")
    test_videos = ucf101.read_split(os.path.join(splits, "testlist01.txt"), CLASSES)
    paths = [os.path.join(run["data"], "UCF-101", CLASSES[label], name + ".avi") for name, label in test_videos]
    right = 0
    for path, (_, label) in zip(paths[::7], test_videos[::7]):  # one per group of 7: every class
        _, classes, scores, _ = demo.classify(path, *model_paths(run), samples=5, flow_method="dis")
        right += classes[int(np.argmax(scores["fusion"]))] == CLASSES[label]
    assert right >= 3 and len(paths[::7]) == 4


def model_paths(run):
    return [os.path.join(run["checkpoints"], stream, "last.keras") for stream in ucf101.STREAMS]


def demo_args(run):
    spatial, temporal = model_paths(run)
    return ["--spatial", spatial, "--temporal", temporal, "--flow-method", "dis", "--samples", "5"]


def test_demo_writes_annotated_video_and_plot_for_a_10_frame_clip(run, tmp_path, capsys):
    source = os.path.join(run["data"], "UCF-101", "RedSaddle", "v_RedSaddle_g01_c01.avi")
    clip = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(clip, cv2.VideoWriter_fourcc(*"XVID"), 25, (160, 120))
    for frame in media.read_video(source, size=None)[:10]:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    out, plot = str(tmp_path / "out.mp4"), str(tmp_path / "scores.png")
    assert errors.run(demo.main, [clip, *demo_args(run), "--output", out, "--plot", plot, "--top", "3"]) == 0
    printed = capsys.readouterr().out
    assert "fusion:" in printed and "time: decode" in printed
    assert len(media.read_video(out, size=None)) == 10
    assert cv2.imread(plot) is not None


def test_demo_fails_cleanly_on_a_file_that_is_not_a_video(run, tmp_path, capsys):
    junk = tmp_path / "notes.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    assert errors.run(demo.main, [str(junk), *demo_args(run)]) == 2
    error = capsys.readouterr().err
    assert "notes.mp4" in error and "{path}" not in error


# ---------------------------------------------------------------------------- multi-task on the two mini datasets

@pytest.fixture(scope="module")
def multitask_run(run, tmp_path_factory):
    """The HMDB-style mini dataset (odd clip names, official split files) as the target, the
    UCF-style one's training list as the second task: one temporal net (the tiny stand-in: the heads
    and names are under test, not what it learns), two heads, each tested."""
    with faults.tiny_nets_in_this_process():
        return train_and_test_multitask(run, tmp_path_factory)


def train_and_test_multitask(run, tmp_path_factory):
    root = tmp_path_factory.mktemp("hmdb")
    data, checkpoint, results = str(root / "data"), str(root / "temporal"), str(root / "results")
    synthetic.generate_hmdb51(data, progress=False)
    assert prepare_data.main(["flow", "--videos", os.path.join(data, "hmdb51_org"), "--out",
                              os.path.join(data, "tvl1_flow"), "--size", SIZE, "--flow-method", "dis",
                              "--workers", "2"]) == 0
    hmdb = ["--data-dir", data, "--splits-dir", os.path.join(data, "splits")]
    temporal_train.main(["--dataset", "synthetic_hmdb", *hmdb, "--multitask", "synthetic",
                         "--multitask-data-dir", run["data"], "--multitask-splits-dir",
                         os.path.join(run["data"], "splits"), "--multitask-videos", "train",
                         "--checkpoint-dir", checkpoint, "--image-size", "64", "--iterations", "60",
                         "--lr-drops", "50"])
    model = os.path.join(checkpoint, "last.keras")
    for dataset, folders in (("synthetic_hmdb", hmdb),
                             ("synthetic", ["--data-dir", run["data"],
                                            "--splits-dir", os.path.join(run["data"], "splits")])):
        assert errors.run(fuse_test.main, ["--dataset", dataset, *folders, "--streams", "temporal", "--temporal", model,
                                           "--results-dir", results, "--run-name", dataset]) == 0
    return dict(data=data, results=results)


def test_multitask_heads_are_tested_on_their_own_datasets_with_odd_names_intact(multitask_run):
    from twostream.scoring import evaluation
    rows = {}
    for dataset in ("synthetic_hmdb", "synthetic"):
        with open(os.path.join(multitask_run["results"], dataset, "metrics.json")) as f:
            metrics = json.load(f)
        rows[dataset] = metrics["results"]
        assert metrics["settings"]["multitask"]["dataset"] == "synthetic"
    assert (set(rows["synthetic_hmdb"]) == {"temporal_multitask"}
            and rows["synthetic_hmdb"]["temporal_multitask"]["classes"] == 6)
    assert rows["synthetic"]["temporal_multitask"]["classes"] == len(CLASSES)
    scores = evaluation.load_scores(os.path.join(multitask_run["results"], "synthetic_hmdb", "scores_temporal.npz"))
    listed = [ucf101.video_name(line) for line in
              ucf101.read_lines(os.path.join(multitask_run["data"], "splits", "testlist01.txt"))]
    assert scores["videos"] == listed and any(set("#()!&") & set(name) for name in listed)
