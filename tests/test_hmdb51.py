"""HMDB-51's official split files -> UCF-101-format lists, on files written here and on the generated
HMDB-style mini dataset, whose odd clip names must survive decoding and frame folders."""
import os

import numpy as np
import pytest

from twostream.datasets import hmdb51, synthetic, ucf101
from twostream.errors import DataError
from twostream.video import media

pytestmark = pytest.mark.xdist_group("test_hmdb51")  # one worker builds its module fixtures and compiles

# HMDB-51's classes in the order their split files sort in (climb_stairs_... before climb_...).
CLASSES = sorted("""brush_hair cartwheel catch chew clap climb climb_stairs dive draw_sword dribble drink eat
fall_floor fencing flic_flac golf handstand hit hug jump kick kick_ball kiss laugh pick pour pullup punch push
pushup ride_bike ride_horse run shake_hands shoot_ball shoot_bow shoot_gun sit situp smile smoke somersault stand
swing_baseball sword sword_exercise talk throw turn walk wave""".split(), key=lambda c: f"{c}_test_split1.txt")
ODD = ["#20_Rhythm", "(Rad)Schlag_die_Bank!", "Pirates_of_the_Caribbean_&", "Eins,_zwei;_drei",
       "A_Very_Long_Source_Title_That_Goes_On_And_On_For_Quite_A_While_(Director's_Cut)"]
CLIPS = 104  # a class: 70 training, 30 test and 4 unused in each split
MINI_CLASSES = ["cyan_expand", "cyan_saddle"]  # one with LF, one with CRLF split files


def clip_names(cls):
    return [f"{ODD[i % len(ODD)]}_{cls}_u_cm_np1_fr_med_{i}.avi" for i in range(CLIPS)]


def official_id(i, split):
    """Split K tests on clips 30(K-1)..30K-1 and leaves the next 4 unused."""
    place = (i - 30 * (split - 1)) % CLIPS
    return "2" if place < 30 else "0" if place < 34 else "1"


def write_split_file(path, lines, ending="\n", trailing=" ", bom=False):
    with open(path, "wb") as f:
        f.write((b"\xef\xbb\xbf" if bom else b"") + "".join(line + trailing + ending for line in lines).encode())


def write_official(folder, classes=CLASSES, styles=None):
    """Official-format files; styles maps a class to write_split_file's keyword arguments."""
    os.makedirs(folder, exist_ok=True)
    for cls in classes:
        for split in ucf101.SPLITS:
            lines = [f"{name} {official_id(i, split)}" for i, name in enumerate(clip_names(cls))]
            write_split_file(hmdb51.split_file(folder, cls, split), lines, **(styles or {}).get(cls, {}))
    return folder


def expected_lists(classes):
    """What official_lists must return: sorted classes, id-1 clips with 1-based labels, id-2 clips."""
    classes = sorted(classes)
    lists = {"classInd.txt": [f"{i + 1} {c}" for i, c in enumerate(classes)]}
    for split in ucf101.SPLITS:
        lists[f"trainlist{split:02d}.txt"] = [f"{c}/{name} {label + 1}" for label, c in enumerate(classes)
                                              for i, name in enumerate(clip_names(c)) if official_id(i, split) == "1"]
        lists[f"testlist{split:02d}.txt"] = [f"{c}/{name}" for c in classes
                                             for i, name in enumerate(clip_names(c)) if official_id(i, split) == "2"]
    return lists


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """All 51 classes, 70/30/4 per split, with the real files' quirks spread over a few classes."""
    styles = {"brush_hair": dict(ending="\r\n"), "climb": dict(trailing=""), "wave": dict(bom=True),
              "climb_stairs": dict(ending="\r\n", trailing="   ")}
    return write_official(str(tmp_path_factory.mktemp("official") / hmdb51.SPLITS_DIR), styles=styles)


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("hmdb_mini") / "data")
    return root, synthetic.generate_hmdb51(root, classes=MINI_CLASSES, progress=False)


# ---------------------------------------------------------------------------- conversion

def test_converts_to_ucf_lists_leaving_out_unused_clips(official):
    lists = hmdb51.official_lists(official)
    assert lists == expected_lists(CLASSES)
    assert list(lists) == ["classInd.txt"] + [f"{k}list0{s}.txt" for s in (1, 2, 3) for k in ("train", "test")]
    assert lists["classInd.txt"][5:7] == ["6 climb", "7 climb_stairs"]  # by class name, not by file name
    for split in ucf101.SPLITS:
        train, test = lists[f"trainlist0{split}.txt"], lists[f"testlist0{split}.txt"]
        assert len(train) == 51 * 70 == 3570 and len(test) == 51 * 30 == 1530
        assert not {line.split()[0] for line in train} & set(test)
        unused = {f"wave/{name}" for i, name in enumerate(clip_names("wave")) if official_id(i, split) == "0"}
        assert len(unused) == 4 and not unused & ({line.split()[0] for line in train} | set(test))
    # CRLF, a BOM, no or extra trailing spaces: the same lines as from a plain file
    assert "brush_hair/#20_Rhythm_brush_hair_u_cm_np1_fr_med_0.avi" in lists["testlist01.txt"]
    assert "climb_stairs/(Rad)Schlag_die_Bank!_climb_stairs_u_cm_np1_fr_med_36.avi 7" in lists["trainlist01.txt"]
    assert "wave/Pirates_of_the_Caribbean_&_wave_u_cm_np1_fr_med_102.avi 51" in lists["trainlist01.txt"]
    assert not any("\r" in line or line != line.strip() for lines in lists.values() for line in lines)


def test_written_lists_read_back_with_the_right_classes_and_labels(official, tmp_path):
    splits = str(tmp_path / "splits")
    os.makedirs(splits)
    for file, lines in hmdb51.official_lists(official).items():
        ucf101.write_lines(os.path.join(splits, file), lines)
    classes = ucf101.read_classes(os.path.join(splits, "classInd.txt"))
    assert classes == sorted(CLASSES) and len(classes) == hmdb51.NUM_CLASSES
    train, test = ucf101.split_files(splits, 2)
    entries = ucf101.read_split(train, classes)
    assert ("(Rad)Schlag_die_Bank!_kiss_u_cm_np1_fr_med_1", classes.index("kiss")) in entries
    assert [label for _, label in entries] == sorted(label for _, label in entries)
    assert {name for name, label in entries if label == 0} == {
        name[:-4] for i, name in enumerate(clip_names("brush_hair")) if official_id(i, 2) == "1"}
    index = ucf101.load_index(str(tmp_path), splits, split=3, subset="test")
    assert len(index) == 1530
    assert [(v.name, classes[v.label]) for v in index[:2]] == [
        (name[:-4], "brush_hair") for name in clip_names("brush_hair")[60:62]]


@pytest.mark.parametrize("line, problem", [
    ("#20_Rhythm_x_0.avi 1 extra", "malformed"),
    ("#20_Rhythm_x_0.avi 3", "malformed"),
    ("#20_Rhythm_x_0.avi", "malformed"),
    ("#20_Rhythm_x_0.txt 1", "malformed"),
    ("#20_Rhythm_hug_u_cm_np1_fr_med_0.avi 1", "listed twice"),
])
def test_a_bad_line_names_the_file(tmp_path, line, problem):
    folder = write_official(str(tmp_path / "splits"), ["clap", "hug"])
    path = hmdb51.split_file(folder, "hug", 2)
    with open(path, "a") as f:
        f.write(line + "\n")
    with pytest.raises(DataError, match=problem) as error:
        hmdb51.official_lists(folder, num_classes=2)
    assert path in str(error.value) and (problem != "malformed" or repr(line) in str(error.value))


def test_a_missing_split_file_names_the_file(tmp_path):
    folder = write_official(str(tmp_path / "splits"), ["clap", "hug"])
    os.remove(hmdb51.split_file(folder, "clap", 3))
    with pytest.raises(DataError, match="clap_test_split3.txt: missing"):
        hmdb51.official_lists(folder, num_classes=2)


def test_counts_other_than_70_30_are_an_error_unless_allowed(tmp_path):
    folder = write_official(str(tmp_path / "splits"), ["clap", "hug"])
    path = hmdb51.split_file(folder, "hug", 2)
    with open(path) as f:
        lines = f.read().splitlines()
    first_train = next(i for i, line in enumerate(lines) if line.split()[1] == "1")
    lines[first_train] = lines[first_train].replace(" 1", " 2")
    write_split_file(path, lines, trailing="")
    with pytest.raises(DataError, match="69 training .* and 31 test") as error:
        hmdb51.official_lists(folder, num_classes=2)
    assert path in str(error.value)
    lists = hmdb51.official_lists(folder, counts=None, num_classes=2)
    assert len(lists["trainlist02.txt"]) == 139 and len(lists["testlist02.txt"]) == 61
    assert len(lists["trainlist01.txt"]) == 140


def test_fewer_classes_than_51_are_an_error_unless_allowed(tmp_path):
    folder = write_official(str(tmp_path / "splits"), CLASSES[:50])
    with pytest.raises(DataError, match="50 classes, expected 51"):
        hmdb51.official_lists(folder)
    assert len(hmdb51.official_lists(folder, num_classes=None)["classInd.txt"]) == 50


def test_a_clip_in_two_classes_is_an_error(tmp_path):
    folder = write_official(str(tmp_path / "splits"), ["clap", "hug"])
    path = hmdb51.split_file(folder, "hug", 1)
    with open(path, "a") as f:
        f.write("#20_RHYTHM_clap_u_cm_np1_fr_med_0.avi 0 \n")  # its frame folder would be clap's
    with pytest.raises(DataError, match="also listed for class clap") as error:
        hmdb51.official_lists(folder, counts=None, num_classes=None)
    assert path in str(error.value)


def test_a_wrong_folder_says_where_to_point(tmp_path):
    with pytest.raises(DataError, match="no such folder.*testTrainMulti_7030_splits"):
        hmdb51.official_lists(str(tmp_path / "nowhere"))
    (tmp_path / "readme.txt").write_text("not a split file")
    with pytest.raises(DataError, match="no <class>_test_split<K>.txt files"):
        hmdb51.official_lists(str(tmp_path))


# ---------------------------------------------------------------------------- the generated mini dataset

@pytest.mark.slow
def test_mini_dataset_layout_and_official_format(mini):
    root, videos = mini
    assert sorted(os.listdir(root)) == ["hmdb51_org", "splits", "synthetic.json", "testTrainMulti_7030_splits"]
    assert ucf101.find_videos(os.path.join(root, "hmdb51_org")) == videos
    assert len(videos) == len(MINI_CLASSES) * len(synthetic.HMDB_SOURCES) * synthetic.CLIPS_PER_SOURCE == 48
    official = os.path.join(root, hmdb51.SPLITS_DIR)
    assert sorted(os.listdir(official)) == [f"{c}_test_split{k}.txt" for c in MINI_CLASSES for k in (1, 2, 3)]
    source_of = {clip.name + ".avi": source for clip, source in synthetic.make_hmdb51_clips(classes=MINI_CLASSES)}
    for cls, ending in zip(MINI_CLASSES, (b" \n", b" \r\n")):
        tests = []
        for split in ucf101.SPLITS:
            with open(hmdb51.split_file(official, cls, split), "rb") as f:
                raw = f.read().splitlines(keepends=True)
            assert all(line.endswith(ending) and line.count(b" ") == 2 for line in raw)
            ids = {line.split()[0].decode(): line.split()[1].decode() for line in raw}
            assert len(ids) == 24 and all(f"{cls}_" in name for name in ids)
            assert list(ids.values()).count("1") == 14 and list(ids.values()).count("2") == 6
            by_source = {}
            for name, kind in ids.items():
                by_source.setdefault(source_of[name], set()).add(kind)
            assert all(len(kinds) == 1 for kinds in by_source.values())  # a source's clips stay together
            tests.append({name for name, kind in ids.items() if kind == "2"})
        assert not tests[0] & tests[1] and not tests[0] & tests[2] and not tests[1] & tests[2]


@pytest.mark.slow
def test_mini_split_files_convert_to_its_lists(mini):
    root = mini[0]
    official = os.path.join(root, hmdb51.SPLITS_DIR)
    lists = hmdb51.official_lists(official, synthetic.HMDB_COUNTS, len(MINI_CLASSES))
    assert lists == {file: ucf101.read_lines(os.path.join(root, "splits", file)) for file in lists}
    assert lists["classInd.txt"] == ["1 cyan_expand", "2 cyan_saddle"]
    assert len(lists["trainlist01.txt"]) == 28 and len(lists["testlist03.txt"]) == 12
    with pytest.raises(DataError, match="14 training .* and 6 test .* expected 70 and 30"):
        hmdb51.official_lists(official, num_classes=None)  # the mini dataset is not HMDB-51's size
    index = ucf101.load_index(root, os.path.join(root, "splits"), split=2, subset="train")
    clips = {clip.name: clip for clip, _ in synthetic.make_hmdb51_clips(classes=MINI_CLASSES)}
    assert [(v.name, v.label) for v in index] == [
        (line.split()[0].split("/")[1][:-4], int(line.split()[1]) - 1) for line in lists["trainlist02.txt"]]
    assert all(clips[v.name].label == v.label for v in index)  # cyan_* are HMDB_CLASSES 0 and 1


@pytest.mark.slow
def test_odd_clip_names_decode_and_survive_a_frame_folder(mini, tmp_path):
    root, videos = mini
    chosen = [(cls, path) for cls, path in videos if cls == "cyan_expand" and path.endswith("_0.avi")]  # one a source
    names = [ucf101.video_name(path) for _, path in chosen]
    assert len(names) == len(synthetic.HMDB_SOURCES) and max(len(n) for n in names) > 100
    for character in "#()!&,;.":
        assert any(character in n for n in names), character
    clips = {clip.name: clip for clip, _ in synthetic.make_hmdb51_clips(classes=MINI_CLASSES)}
    data = str(tmp_path)
    for _, path in chosen:
        name = ucf101.video_name(path)
        frames = media.read_video(path, size=None)
        assert len(frames) == clips[name].frames and frames[0].shape == (120, 160, 3), path
        folder = os.path.join(data, ucf101.RGB_DIR, name)
        os.makedirs(folder)
        media.write_image(ucf101.frame_path(folder, 0), frames[0])
        media.write_image(ucf101.frame_path(folder, 1), frames[-1])
        back = media.read_image(os.path.join(data, ucf101.RGB_DIR, name, "frame000002.jpg"))
        assert back is not None and np.abs(back.astype(int) - frames[-1]).mean() < 3, name
    assert sorted(os.listdir(os.path.join(data, ucf101.RGB_DIR))) == sorted(names)
    splits = os.path.join(root, "splits")
    index = [v for subset in ("train", "test") for v in ucf101.load_index(data, splits, 1, subset)]
    assert {v.name: v.frames for v in index if v.frames} == {n: 2 for n in names if n in {v.name for v in index}}
    assert len([v for v in index if v.frames]) >= 8  # at most two sources are unused in split 1
    assert media.video_fps(chosen[0][1]) == pytest.approx(synthetic.HMDB_FPS)


def test_prepare_data_splits_converts_hmdb51_and_says_what_is_missing(official, tmp_path, capsys):
    import prepare_data
    out = str(tmp_path / "splits")
    assert prepare_data.main(["splits", "--dataset", "hmdb51", "--official-dir", official, "--out", out]) == 0
    for file, lines in expected_lists(CLASSES).items():
        assert ucf101.read_lines(os.path.join(out, file)) == lines, file
    assert prepare_data.main(["splits", "--dataset", "hmdb51", "--out", str(tmp_path / "other")]) == 2
    assert "--official-dir" in capsys.readouterr().err
