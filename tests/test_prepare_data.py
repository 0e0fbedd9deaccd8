"""prepare_data.py end to end on tiny generated XviD videos (64x48, 8 frames)."""
import fcntl
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import fakedata
import prepare_data
from twostream.datasets import records, split_lists, ucf101
from twostream.video import media

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMES = 8
SHIFT = fakedata.VIDEO_SHIFT
NAMES = ("v_Alpha_g01_c01", "v_Beta_g08_c01")


def run(*argv):
    return prepare_data.main([str(a) for a in argv])


@pytest.fixture
def videos(tmp_path):
    root = tmp_path / "UCF-101"
    for seed, name in enumerate(NAMES):
        fakedata.write_video(root / ucf101.parse_name(name)[0] / f"{name}.avi", seed=seed)
    return root


def frame_files(folder):
    """The files of a frame or flow folder but its extraction record."""
    return sorted(set(os.listdir(folder)) - {records.RECORD_FILE})


def expected_files(count):
    return [ucf101.FRAME_NAME.format(i) for i in range(1, count + 1)]


def mtimes(folder):
    return {f: os.stat(os.path.join(folder, f)).st_mtime_ns for f in os.listdir(folder)}


def temp_leftovers(*folders):
    return [e for folder in folders if os.path.isdir(folder) for e in os.listdir(folder) if e.endswith(".tmp")]


def median_flow(folder, count):
    images = np.array([media.read_image(ucf101.frame_path(folder, i), grayscale=True) for i in range(count)])
    h, w = images.shape[1:]
    return float(np.median(media.dequantize_flow(images[:, h // 6:-h // 6, w // 6:-w // 6])))


def test_frames_have_the_right_count_and_size(videos, tmp_path):
    out = tmp_path / "jpegs_256"
    assert run("frames", "--videos", videos, "--out", out, "--size", "32x24", "--workers", 1) == 0
    assert sorted(os.listdir(out)) == list(NAMES)
    for name in NAMES:
        assert frame_files(out / name) == expected_files(FRAMES)
        image = media.read_image(ucf101.frame_path(out / name, FRAMES - 1))
        assert image.shape == (24, 32, 3)


def test_flow_has_one_image_fewer_with_the_right_size_and_motion(videos, tmp_path):
    out = tmp_path / "tvl1_flow"
    assert run("flow", "--videos", videos, "--out", out, "--flow-method", "dis", "--size", "32x24", "--workers", 2) == 0
    for name in NAMES:
        for component in "uv":
            folder = out / component / name
            assert frame_files(folder) == expected_files(FRAMES - 1)
            assert media.read_image(ucf101.frame_path(folder, 0), grayscale=True).shape == (24, 32)
        # computed on the resized frames: half the size, half the displacement
        assert median_flow(out / "u" / name, FRAMES - 1) == pytest.approx(SHIFT[0] / 2, abs=0.3)
        assert median_flow(out / "v" / name, FRAMES - 1) == pytest.approx(SHIFT[1] / 2, abs=0.3)


def test_tvl1_end_to_end_on_a_short_clip(tmp_path, capsys):
    fakedata.write_video(tmp_path / "UCF-101" / "Alpha" / "v_Alpha_g01_c01.avi", frames=4)
    out = tmp_path / "tvl1_flow"
    assert run("flow", "--videos", tmp_path / "UCF-101", "--out", out, "--size", "64x48", "--workers", 1) == 0
    assert "16 CPU-days" in capsys.readouterr().out  # the slow default says so before it starts
    for component, shift in zip("uv", SHIFT):
        assert frame_files(out / component / "v_Alpha_g01_c01") == expected_files(3)
        assert median_flow(out / component / "v_Alpha_g01_c01", 3) == pytest.approx(shift, abs=0.3)


@pytest.mark.slow
@pytest.mark.whole_tvl1
def test_tvl1_keras_writes_opencvs_tvl1_flow_and_records_its_method(tmp_path):
    fakedata.write_video(tmp_path / "UCF-101" / "Alpha" / "v_Alpha_g01_c01.avi", frames=6)
    flags = ("--videos", tmp_path / "UCF-101", "--size", "96x72", "--workers", 1)
    # 5 pairs in batches of 4 (test_tvl1's compiled shape): the second batch is padded
    assert run("flow", *flags, "--out", tmp_path / "keras", "--flow-method", "tvl1_keras", "--batch-size", 4) == 0
    assert run("flow", *flags, "--out", tmp_path / "opencv", "--flow-method", "tvl1") == 0
    for component, shift in zip("uv", SHIFT):
        ours, theirs = (tmp_path / kind / component / "v_Alpha_g01_c01" for kind in ("keras", "opencv"))
        assert frame_files(ours) == expected_files(5)
        assert median_flow(ours, 5) == pytest.approx(shift * 1.5, abs=0.3)  # 64x48 -> 96x72
        for i in range(5):
            a, b = (media.read_image(ucf101.frame_path(folder, i), grayscale=True).astype(int)
                    for folder in (ours, theirs))
            assert np.mean(np.abs(a - b) <= 2) > 0.95
    info = media.read_flow_info(str(tmp_path / "keras"))
    assert (info["method"], info["frame_size"], info["bound"]) == ("tvl1_keras", [96, 72], media.FLOW_BOUND)
    assert info["keras"] and info["backend"]
    assert media.read_flow_info(str(tmp_path / "opencv"))["method"] == "tvl1"


def test_flow_refuses_to_mix_methods_in_one_folder(videos, tmp_path, capsys):
    out = tmp_path / "tvl1_flow"
    flags = ("flow", "--videos", videos, "--out", out, "--size", "32x24", "--workers", 1)
    assert run(*flags, "--flow-method", "dis") == 0
    assert media.read_flow_info(str(out))["method"] == "dis"
    before = mtimes(out / "u" / NAMES[0])
    assert run(*flags, "--flow-method", "farneback") == 2
    error = capsys.readouterr().err
    assert f"{out / media.FLOW_INFO_FILE}: this flow was computed with dis at 32x24" in error
    assert run(*flags, "--flow-method", "dis", "--size", "40x30") == 2  # another size is another dataset too
    assert mtimes(out / "u" / NAMES[0]) == before
    assert run(*flags, "--flow-method", "farneback", "--overwrite") == 0
    assert media.read_flow_info(str(out))["method"] == "farneback"
    assert mtimes(out / "u" / NAMES[0]) != before


def test_the_shard_rule_is_fixed_balanced_and_ignores_case():
    # machines running different versions must agree: this value must never change
    assert ucf101.shard_of("v_ApplyEyeMakeup_g08_c01", 8) == 8
    assert ucf101.shard_of("V_APPLYEYEMAKEUP_G08_C01", 8) == 8
    names = [f"v_Class{c}_g{g:02d}_c{k:02d}" for c in range(101) for g in range(1, 26) for k in range(1, 6)]
    sizes = np.bincount([ucf101.shard_of(name, 8) for name in names], minlength=9)
    assert sizes[0] == 0 and sizes.sum() == len(names)
    assert np.abs(sizes[1:] / (len(names) / 8) - 1).max() < 0.05
    for bad in ("0/4", "5/4", "3", "a/b", "-1/4"):
        with pytest.raises(SystemExit):
            prepare_data.parse_args(["frames", "--shard", bad])


def test_two_shards_extract_disjoint_parts_whose_union_is_every_video(tmp_path, capsys):
    names = [f"v_{cls}_g{group:02d}_c01" for cls in ("Alpha", "Beta") for group in (1, 8, 9)]
    for seed, name in enumerate(names):
        fakedata.write_video(tmp_path / "UCF-101" / ucf101.parse_name(name)[0] / f"{name}.avi", frames=4, seed=seed)
    parts = {k: {name for name in names if ucf101.shard_of(name, 2) == k} for k in (1, 2)}
    assert parts[1] and parts[2]  # both parts have work, so the test shows the split
    videos, data = tmp_path / "UCF-101", tmp_path / "data"
    for k in (1, 2):  # each part on its own, as on two machines
        out = tmp_path / f"part{k}"
        assert run("frames", "--videos", videos, "--out", out, "--size", "32x24", "--workers", 1,
                   "--shard", f"{k}/2") == 0
        assert set(os.listdir(out)) == parts[k]
    assert not parts[1] & parts[2] and parts[1] | parts[2] == set(names)
    assert run("splits", "--videos", videos, "--out", tmp_path / "splits") == 0
    check = ("check", "--data-dir", data, "--splits-dir", tmp_path / "splits", "--split", 1)
    for k in (1, 2):  # both parts into one dataset, as a job array on a shared disk
        assert run("frames", "--videos", videos, "--out", data / "jpegs_256", "--size", "32x24", "--workers", 1,
                   "--shard", f"{k}/2") == 0
        assert run("flow", "--videos", videos, "--out", data / "tvl1_flow", "--size", "32x24", "--workers", 1,
                   "--flow-method", "dis", "--shard", f"{k}/2") == 0
        done = set().union(*(parts[j] for j in range(1, k + 1)))
        assert set(os.listdir(data / "jpegs_256")) == done
        assert set(os.listdir(data / "tvl1_flow" / "u")) == set(os.listdir(data / "tvl1_flow" / "v")) == done
        capsys.readouterr()
        assert run(*check) == (0 if k == 2 else 1)
        assert f"{len(done)} of 6 videos" in capsys.readouterr().out
    for name in names:
        assert frame_files(data / "tvl1_flow" / "u" / name) == expected_files(3)
    # a rerun of a part resumes: nothing left to do
    assert run("frames", "--videos", videos, "--out", data / "jpegs_256", "--size", "32x24", "--workers", 1,
               "--shard", "1/2") == 0
    assert f"0 videos written, {len(parts[1])} already complete" in capsys.readouterr().out


def test_a_killed_run_resumes_without_redoing_finished_videos(videos, tmp_path, capsys):
    out = tmp_path / "jpegs_256"
    assert run("frames", "--videos", videos, "--out", out, "--size", "32x24", "--workers", 1) == 0
    finished, killed = (out / name for name in NAMES)
    before = mtimes(finished)
    # the state a kill leaves: the video being written is only a half-filled temporary folder
    shutil.rmtree(killed)
    stale = out / f".{NAMES[1]}.tmp"
    stale.mkdir()
    shutil.copy(ucf101.frame_path(finished, 0), ucf101.frame_path(stale, 0))
    (out / f".{NAMES[0]}.tmp").mkdir()  # e.g. from a killed --overwrite run of the finished video
    capsys.readouterr()
    assert run("frames", "--videos", videos, "--out", out, "--size", "32x24", "--workers", 1) == 0
    assert mtimes(finished) == before
    assert frame_files(killed) == expected_files(FRAMES)
    assert temp_leftovers(out) == []
    assert "1 videos written, 1 already complete, 0 failed" in capsys.readouterr().out


def test_flow_resumes_after_a_kill_between_publishing_u_and_v(videos, tmp_path):
    out = tmp_path / "tvl1_flow"
    args = ("flow", "--videos", videos, "--out", out, "--flow-method", "dis", "--size", "32x24", "--workers", 1)
    assert run(*args) == 0
    u_before = mtimes(out / "u" / NAMES[1])
    os.rename(out / "v" / NAMES[1], out / "v" / f".{NAMES[1]}.tmp")  # v still in its temporary folder
    assert run(*args) == 0
    assert mtimes(out / "u" / NAMES[1]) == u_before  # complete u is kept, not overwritten
    assert frame_files(out / "v" / NAMES[1]) == expected_files(FRAMES - 1)
    assert temp_leftovers(out / "u", out / "v") == []


def test_a_corrupt_video_is_reported_and_the_others_are_done(videos, tmp_path, capsys):
    corrupt = videos / "Gamma" / "v_Gamma_g02_c01.avi"
    os.makedirs(corrupt.parent)
    corrupt.write_bytes(np.random.default_rng(0).bytes(4000))
    out = tmp_path / "jpegs_256"
    assert run("frames", "--videos", videos, "--out", out, "--size", "32x24", "--workers", 2) == 1
    summary = capsys.readouterr().out
    assert "2 videos written, 0 already complete, 1 failed" in summary
    assert f"failed: {corrupt}" in summary
    assert sorted(os.listdir(out)) == list(NAMES)  # nothing, not even a temporary folder, for the corrupt one
    for name in NAMES:
        assert frame_files(out / name) == expected_files(FRAMES)
    assert run("flow", "--videos", videos, "--out", tmp_path / "flow", "--flow-method", "dis", "--workers", 1) == 1
    assert f"failed: {corrupt}" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / "flow" / "u")) == list(NAMES)


def test_existing_output_is_overwritten_only_with_overwrite(videos, tmp_path):
    out = tmp_path / "jpegs_256"

    def shape():
        return media.read_image(ucf101.frame_path(out / NAMES[0], 0)).shape

    assert run("frames", "--videos", videos, "--out", out, "--size", "32x24", "--workers", 1) == 0
    assert run("frames", "--videos", videos, "--out", out, "--size", "16x12", "--workers", 1) == 2  # another size
    assert shape() == (24, 32, 3)
    assert run("frames", "--videos", videos, "--out", out, "--size", "16x12", "--workers", 1, "--overwrite") == 0
    assert shape() == (12, 16, 3)
    assert frame_files(out / NAMES[0]) == expected_files(FRAMES)
    assert temp_leftovers(out) == []


def test_check_passes_on_extracted_data_and_finds_a_deleted_flow_frame(videos, tmp_path, capsys):
    data = tmp_path / "data"
    assert run("splits", "--videos", videos, "--out", tmp_path / "splits") == 0
    assert run("frames", "--videos", videos, "--out", data / "jpegs_256", "--size", "32x24", "--workers", 1) == 0
    assert run("flow", "--videos", videos, "--out", data / "tvl1_flow", "--flow-method", "dis", "--size", "32x24",
               "--workers", 1) == 0
    check = ("check", "--data-dir", data, "--splits-dir", tmp_path / "splits", "--split", 1)
    capsys.readouterr()
    assert run(*check, "--decode") == 0
    assert "2 of 2 videos" in capsys.readouterr().out
    os.remove(ucf101.frame_path(ucf101.flow_dir(data, "v", NAMES[1]), 6))
    assert run(*check) == 1
    report = capsys.readouterr().out
    assert f"{NAMES[1]}: " in report and "7 u but 6 v flow frames" in report
    assert f"6 images in {ucf101.flow_dir(data, 'v', NAMES[1])}, but extraction wrote 7" in report
    assert NAMES[0] + ":" not in report


@pytest.fixture
def fake_data(tmp_path):
    splits = fakedata.write_dataset(str(tmp_path), frames=6, size=(16, 12))
    return tmp_path, ("check", "--data-dir", tmp_path, "--splits-dir", splits, "--split", 1)


@pytest.mark.slow
def test_check_finds_gaps_unreadable_files_and_missing_videos(fake_data, capsys):
    root, check = fake_data
    assert run(*check) == 0
    u, v = (ucf101.flow_dir(root, c, "v_Beta_g08_c01") for c in "uv")
    for folder in (u, v):  # counts still agree, but frame000003 is gone
        os.rename(ucf101.frame_path(folder, 2), ucf101.frame_path(folder, 9))
    with open(ucf101.frame_path(ucf101.rgb_dir(root, "v_Gamma_g01_c01"), 0), "wb") as f:
        f.write(b"not a jpeg")
    for c in "uv":  # u and v agree, but one short of frames - 1
        os.remove(ucf101.frame_path(ucf101.flow_dir(root, c, "v_Alpha_g08_c01"), 4))
    assert run(*check) == 1
    report = capsys.readouterr().out
    assert f"v_Beta_g08_c01: flow u: frame000003.jpg missing in {u}" in report
    assert "v_Alpha_g08_c01: 4 flow frames for 6 RGB frames (expected 5)" in report
    assert "v_Gamma_g01_c01: RGB: 1 truncated JPEGs" in report  # no end-of-image marker
    assert "--decode decodes every one" in report
    assert run(*check, "--decode", "--workers", 2) == 1
    assert "v_Gamma_g01_c01: RGB: 1 truncated JPEGs" in capsys.readouterr().out
    os.rename(ucf101.rgb_dir(root, "v_Alpha_g01_c01"), ucf101.rgb_dir(root, "v_Alpha_moved"))
    assert run(*check) == 1
    assert "v_Alpha_g01_c01: RGB: no frames" in capsys.readouterr().out


def test_check_matches_folders_regardless_of_case(fake_data):
    root, check = fake_data
    # the split list says v_Alpha_g01_c01; a download may spell it differently
    for folder in (ucf101.rgb_dir(root, "v_Alpha_g01_c01"), ucf101.flow_dir(root, "u", "v_Alpha_g01_c01"),
                   ucf101.flow_dir(root, "v", "v_Alpha_g01_c01")):
        os.rename(folder, folder.replace("v_Alpha", "v_ALPHA"))
    assert run(*check) == 0


def test_check_reports_a_missing_data_dir(tmp_path, capsys):
    assert run("check", "--data-dir", tmp_path / "nope", "--splits-dir", tmp_path) == 2
    assert "nope: no such folder" in capsys.readouterr().err


def read_lists(folder):
    return {file: ucf101.read_lines(os.path.join(folder, file)) for file in split_lists.OFFICIAL_LISTS}


def test_splits_writes_what_make_splits_gives_and_refuses_to_overwrite(videos, tmp_path, capsys):
    out = tmp_path / "splits"
    assert run("splits", "--videos", videos, "--out", out) == 0
    expected = ucf101.make_splits(ucf101.find_videos(str(videos)))
    assert read_lists(out) == expected
    assert expected["trainlist01.txt"] == ["Beta/v_Beta_g08_c01.avi 2"]
    assert run("splits", "--videos", videos, "--out", out) == 0  # same lists: nothing to refuse
    (out / "trainlist01.txt").write_text("Beta/v_Beta_g08_c01.avi 7\n")
    assert run("splits", "--videos", videos, "--out", out) == 2
    assert "trainlist01.txt already exist" in capsys.readouterr().err
    assert (out / "trainlist01.txt").read_text() == "Beta/v_Beta_g08_c01.avi 7\n"
    assert run("splits", "--videos", videos, "--out", out, "--overwrite") == 0
    assert read_lists(out) == expected


def test_splits_from_the_flat_layout_take_the_class_spelling_from_classind(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("v_HandStandPushups_g01_c01", "v_HandStandPushups_g09_c02", "v_Archery_g10_c01"):
        (flat / f"{name}.avi").write_bytes(b"")
    classes = tmp_path / "classInd.txt"
    classes.write_text("1 Archery\n2 HandstandPushups\n")
    assert run("splits", "--videos", flat, "--out", tmp_path / "splits", "--classes", classes) == 0
    lists = read_lists(tmp_path / "splits")
    assert lists["testlist01.txt"] == ["HandstandPushups/v_HandStandPushups_g01_c01.avi"]
    assert lists["trainlist01.txt"] == ["Archery/v_Archery_g10_c01.avi 1",
                                        "HandstandPushups/v_HandStandPushups_g09_c02.avi 2"]
    classes.write_text("1 Archery\n")
    assert run("splits", "--videos", flat, "--out", tmp_path / "other", "--classes", classes) == 2


def test_splits_from_the_official_zip(tmp_path):
    lists = ucf101.make_splits([("Alpha", "v_Alpha_g01_c01.avi"), ("Beta", "v_Beta_g20_c03.avi")])
    archive = tmp_path / "UCF101TrainTestSplits-RecognitionTask.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for file, lines in lists.items():  # as from the wild: CRLF, and a byte-order mark
            z.writestr(f"ucfTrainTestlist/{file}", "\ufeff" + "\r\n".join(lines) + "\r\n")
    assert run("splits", "--official-zip", archive, "--out", tmp_path / "splits") == 0
    assert read_lists(tmp_path / "splits") == lists
    with zipfile.ZipFile(tmp_path / "partial.zip", "w") as z:
        z.writestr("ucfTrainTestlist/classInd.txt", "1 Alpha\n")
    assert run("splits", "--official-zip", tmp_path / "partial.zip", "--out", tmp_path / "s2") == 2
    assert run("splits", "--official-zip", tmp_path / "missing.zip", "--out", tmp_path / "s3") == 2


def test_a_missing_videos_folder_exits_with_code_2(tmp_path, capsys):
    assert run("flow", "--videos", tmp_path / "nope", "--out", tmp_path / "flow", "--flow-method", "dis") == 2
    assert "nope: no such folder" in capsys.readouterr().err
    result = subprocess.run([sys.executable, os.path.join(REPO, "prepare_data.py"), "frames",
                             "--videos", str(tmp_path / "nope"), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "nope: no such folder" in result.stderr
    assert not (tmp_path / "out").exists()


def test_sizes_are_validated():  # every flag's help: tests/test_flags.py, from --help
    assert prepare_data.frame_size("340x256") == (340, 256)
    with pytest.raises(SystemExit):
        prepare_data.parse_args(["frames", "--size", "340"])


def test_synthetic_passes_its_flags_to_generate(monkeypatch, tmp_path):
    from twostream.datasets import synthetic
    calls = []

    def generate(out, seed=0, overwrite=False, workers=1):
        calls.append((out, seed, overwrite, workers))

    monkeypatch.setattr(synthetic, "generate", generate)
    assert run("synthetic", "--out", tmp_path / "a", "--workers", 1) == 0
    assert run("synthetic", "--out", tmp_path / "b", "--seed", 3, "--overwrite", "--workers", 2) == 0
    assert calls == [(str(tmp_path / "a"), 0, False, 1), (str(tmp_path / "b"), 3, True, 2)]


def test_synthetic_rerun_with_the_same_seed_keeps_the_dataset(monkeypatch, tmp_path, capsys):
    from twostream.datasets import synthetic
    out = tmp_path / "mini"
    out.mkdir()
    (out / synthetic.MARKER).write_text('{"seed": 0}')
    monkeypatch.setattr(synthetic, "generate", lambda *a, **k: pytest.fail("regenerated an existing dataset"))
    assert run("synthetic", "--out", out) == 0
    assert "already there" in capsys.readouterr().out


# ---------------------------------------------------------------------------- nothing lost (issue 16)

def truncate(path, fraction):
    data = open(path, "rb").read()
    with open(path, "wb") as file:
        file.write(data[:int(len(data) * fraction)])


def test_a_truncated_video_is_reported_as_damaged_and_its_frames_kept(videos, tmp_path, capsys):
    damaged = videos / "Gamma" / "v_Gamma_g08_c01.avi"
    fakedata.write_video(damaged, frames=27, seed=5)
    truncate(damaged, 0.6)
    header, decoded = media.video_frame_count(str(damaged)), len(media.read_video(str(damaged), None))
    assert header == 27 and 0 < decoded < 25
    data = tmp_path / "data"
    frames = ("frames", "--videos", videos, "--out", data / "jpegs_256", "--size", "32x24", "--workers", 1)
    assert run(*frames) == 1
    summary = capsys.readouterr().out
    assert "3 videos written, 0 already complete, 0 failed, 1 damaged" in summary
    assert (f"damaged: {damaged}: decoded to {decoded} frames, but its header says 27 (truncated or damaged?); "
            f"its frames are kept in {data / 'jpegs_256' / 'v_Gamma_g08_c01'}") in summary
    assert frame_files(data / "jpegs_256" / "v_Gamma_g08_c01") == expected_files(decoded)
    before = mtimes(data / "jpegs_256" / "v_Gamma_g08_c01")
    assert run(*frames) == 1  # said again, not decoded again
    assert "0 videos written, 2 already complete, 0 failed, 1 damaged" in capsys.readouterr().out
    assert mtimes(data / "jpegs_256" / "v_Gamma_g08_c01") == before
    flow = ("flow", "--videos", videos, "--out", data / "tvl1_flow", "--flow-method", "dis", "--size", "32x24",
            "--workers", 1)
    assert run(*flow) == 1
    assert f"damaged: {damaged}: decoded to {decoded} frames" in capsys.readouterr().out
    assert run("splits", "--videos", videos, "--out", tmp_path / "splits") == 0
    assert run("check", "--data-dir", data, "--splits-dir", tmp_path / "splits", "--workers", 1) == 1
    assert (f"v_Gamma_g08_c01: the video decoded to {decoded} frames, but its header says 27"
            in capsys.readouterr().out)
    fakedata.write_video(damaged, frames=27, seed=5)  # the user replaces the video: a rerun redoes it
    assert run(*frames) == 0
    assert frame_files(data / "jpegs_256" / "v_Gamma_g08_c01") == expected_files(27)


def test_a_rerun_redoes_what_killed_and_racing_processes_left_and_keeps_the_rest(videos, tmp_path, capsys):
    third = videos / "Gamma" / "v_Gamma_g08_c01.avi"
    fakedata.write_video(third, seed=2)
    out = tmp_path / "jpegs_256"
    frames = ("frames", "--videos", videos, "--out", out, "--size", "32x24", "--workers", 1)
    assert run(*frames) == 0
    kept, lost_frame, emptied = (out / name for name in (*NAMES, "v_Gamma_g08_c01"))
    os.remove(ucf101.frame_path(lost_frame, FRAMES - 1))  # its record says 8
    for name in os.listdir(emptied):
        os.remove(emptied / name)
    before = mtimes(kept)
    running = out / f".{NAMES[0]}.{'a' * 16}.tmp"  # another process's work in progress: it holds its lock
    running.mkdir()
    lock = open(out / f".{'a' * 16}.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    killed = out / f".{NAMES[1]}.{'b' * 16}.tmp"  # a killed process's: nobody holds its lock
    killed.mkdir()
    (out / f".{'b' * 16}.lock").touch()
    older = out / f".{NAMES[1]}.tmp"  # an older version's
    older.mkdir()
    capsys.readouterr()
    assert run(*frames) == 0
    assert "2 videos written, 1 already complete" in capsys.readouterr().out
    assert mtimes(kept) == before
    for folder in (lost_frame, emptied):
        assert frame_files(folder) == expected_files(FRAMES)
    assert temp_leftovers(out) == [running.name]
    assert sorted(name for name in os.listdir(out) if name.endswith(".lock")) == [f".{'a' * 16}.lock"]
    lock.close()


def test_folders_without_a_record_are_judged_by_the_video_header(videos, tmp_path, capsys):
    """The public downloads have no record: a whole folder is kept, one cut short (as two processes
    of older versions left them) is redone."""
    out = tmp_path / "jpegs_256"
    frames = ("frames", "--videos", videos, "--out", out, "--size", "32x24", "--workers", 1)
    assert run(*frames) == 0
    whole, cut = (out / name for name in NAMES)
    for folder in (whole, cut):
        os.remove(folder / records.RECORD_FILE)
    for i in range(3, FRAMES):
        os.remove(ucf101.frame_path(cut, i))
    before = mtimes(whole)
    capsys.readouterr()
    assert run(*frames) == 0
    assert "1 videos written, 1 already complete" in capsys.readouterr().out
    assert mtimes(whole) == before
    assert frame_files(cut) == expected_files(FRAMES)


def test_names_with_spaces_work_end_to_end(tmp_path, capsys):
    names = {"Yo Yo": "v_Yo Yo_g01_c01", "Alpha": "v_Alpha_g08_c01"}
    for seed, (cls, name) in enumerate(names.items()):
        fakedata.write_video(tmp_path / "UCF-101" / cls / f"{name}.avi", seed=seed)
    data, splits = tmp_path / "data", tmp_path / "splits"
    assert run("splits", "--videos", tmp_path / "UCF-101", "--out", splits) == 0
    assert run("frames", "--videos", tmp_path / "UCF-101", "--out", data / "jpegs_256", "--size", "32x24",
               "--workers", 1) == 0
    assert run("flow", "--videos", tmp_path / "UCF-101", "--out", data / "tvl1_flow", "--flow-method", "dis",
               "--size", "32x24", "--workers", 1) == 0
    capsys.readouterr()
    assert run("check", "--data-dir", data, "--splits-dir", splits, "--workers", 1) == 0
    assert "2 of 2 videos (train + test) complete" in capsys.readouterr().out
    test_videos = ucf101.load_index(str(data), str(splits), 1, "test")
    assert [(v.name, v.label, v.frames, v.flow_count) for v in test_videos] == [
        ("v_Yo Yo_g01_c01", 1, FRAMES, FRAMES - 1)]


def test_plain_check_finds_a_truncated_jpeg_and_verify_redoes_it(videos, tmp_path, capsys):
    data = tmp_path / "data"
    frames = ("frames", "--videos", videos, "--out", data / "jpegs_256", "--size", "32x24", "--workers", 1)
    assert run(*frames) == 0
    assert run("flow", "--videos", videos, "--out", data / "tvl1_flow", "--flow-method", "dis", "--size", "32x24",
               "--workers", 1) == 0
    assert run("splits", "--videos", videos, "--out", tmp_path / "splits") == 0
    check = ("check", "--data-dir", data, "--splits-dir", tmp_path / "splits", "--workers", 1)
    truncated = ucf101.frame_path(data / "jpegs_256" / NAMES[1], 3)
    truncate(truncated, 0.5)
    capsys.readouterr()
    assert run(*check) == 1
    report = capsys.readouterr().out
    assert f"{NAMES[1]}: RGB: 1 truncated JPEGs, e.g. {truncated}" in report
    assert "--decode decodes every one" in report and "--verify" in report
    assert run(*frames) == 0  # a plain rerun reads no JPEG
    assert media.jpeg_truncated(truncated)
    assert run(*frames, "--verify") == 0
    assert not media.jpeg_truncated(truncated)
    assert run(*check) == 0


def test_decode_finds_what_the_end_marker_test_cannot(tmp_path, capsys):
    splits = fakedata.write_dataset(str(tmp_path), frames=6, size=(16, 12))
    check = ("check", "--data-dir", tmp_path, "--splits-dir", splits, "--workers", 1)
    with open(ucf101.frame_path(ucf101.rgb_dir(tmp_path, "v_Gamma_g01_c01"), 0), "wb") as f:
        f.write(b"not a jpeg\xff\xd9")
    assert run(*check) == 0
    assert run(*check, "--decode") == 1
    assert "v_Gamma_g01_c01: RGB: 1 unreadable JPEGs" in capsys.readouterr().out


# ---------------------------------------------------------------------------- nothing lost, second pass (issue 29)

def test_frames_refuse_videos_of_another_size_than_the_folders(videos, tmp_path, capsys):
    out = tmp_path / "jpegs_256"
    frames = ("frames", "--videos", videos, "--out", out, "--workers", 1)
    assert run(*frames, "--size", "32x24") == 0
    fakedata.write_video(videos / "Gamma" / "v_Gamma_g08_c01.avi", seed=2)  # a new video, to add
    before = mtimes(out / NAMES[0])
    capsys.readouterr()
    assert run(*frames, "--size", "16x12") == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {out}: its frames were extracted at 32x24") and "not at 16x12" in error
    assert "--size 32x24" in error and "--overwrite" in error and "another --out" in error
    assert sorted(os.listdir(out)) == list(NAMES)  # nothing added at 16x12
    assert mtimes(out / NAMES[0]) == before
    assert run(*frames, "--size", "32x24") == 0  # the way out it names
    assert media.read_image(ucf101.frame_path(out / "v_Gamma_g08_c01", 0)).shape == (24, 32, 3)


def test_flow_without_its_record_refuses_another_size_than_its_images(videos, tmp_path, capsys):
    """The same rule as for frames: flow_info.json if there is one, else the size of the images there."""
    out = tmp_path / "tvl1_flow"
    flow = ("flow", "--videos", videos, "--out", out, "--flow-method", "dis", "--workers", 1)
    assert run(*flow, "--size", "32x24") == 0
    os.remove(out / media.FLOW_INFO_FILE)  # as flow of older versions, or the public download, has none
    capsys.readouterr()
    assert run(*flow, "--size", "16x12") == 2
    error = capsys.readouterr().err
    assert f"{out / 'u'}: this flow was computed at 32x24, not at 16x12" in error and "--size 32x24" in error
    assert not (out / media.FLOW_INFO_FILE).exists()
    assert run(*flow, "--size", "32x24") == 0
    assert media.read_flow_info(str(out))["frame_size"] == [32, 24]


def damage_the_middle(path):
    """Zeros over the middle half of a JPEG, its end-of-image marker intact: decoding fails, the end test passes."""
    data = bytearray(open(path, "rb").read())
    data[len(data) // 4:len(data) * 3 // 4] = bytes(len(data) * 3 // 4 - len(data) // 4)
    open(path, "wb").write(data)
    assert not media.jpeg_truncated(path)


def test_verify_redoes_the_jpegs_that_check_decode_finds_damaged_in_the_middle(videos, tmp_path, capsys):
    data = tmp_path / "data"
    frames = ("frames", "--videos", videos, "--out", data / "jpegs_256", "--size", "32x24")
    flow = ("flow", "--videos", videos, "--out", data / "tvl1_flow", "--flow-method", "dis", "--size", "32x24")
    assert run(*frames, "--workers", 1) == 0 and run(*flow, "--workers", 1) == 0
    assert run("splits", "--videos", videos, "--out", tmp_path / "splits") == 0
    check = ("check", "--data-dir", data, "--splits-dir", tmp_path / "splits", "--workers", 1)
    rgb = ucf101.frame_path(data / "jpegs_256" / NAMES[1], 3)
    v = ucf101.frame_path(data / "tvl1_flow" / "v" / NAMES[1], 2)
    for path in (rgb, v):
        damage_the_middle(path)
    kept = mtimes(data / "jpegs_256" / NAMES[0])
    capsys.readouterr()
    assert run(*check) == 0  # the end marker is there
    assert run(*check, "--decode") == 1
    report = capsys.readouterr().out
    assert f"RGB: 1 unreadable JPEGs, e.g. {rgb}" in report and f"flow v: 1 unreadable JPEGs, e.g. {v}" in report
    assert "--verify" in report
    assert run(*frames, "--workers", 2, "--verify") == 0  # verified in the worker processes
    assert "1 videos written, 1 already complete" in capsys.readouterr().out
    assert run(*flow, "--workers", 1, "--verify") == 0
    assert "1 videos written, 1 already complete" in capsys.readouterr().out
    assert media.read_image(rgb) is not None and media.read_image(v, grayscale=True) is not None
    assert mtimes(data / "jpegs_256" / NAMES[0]) == kept  # the whole video is not redone
    assert run(*check, "--decode") == 0
