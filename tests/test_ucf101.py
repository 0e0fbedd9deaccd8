"""The split rule against the official lists, list parsing, and the index."""
import os

import pytest

import fakedata
from twostream.datasets import ucf101
from twostream.errors import DataError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OFFICIAL = os.path.join(REPO, "..", "shared", "ucf101")
LISTS = ["classInd.txt"] + [f"{kind}list{k:02d}.txt" for k in (1, 2, 3) for kind in ("train", "test")]


@pytest.fixture(scope="module")
def official():
    """{file: lines} of the official split lists; skipped where ../shared is absent."""
    if not os.path.isdir(OFFICIAL):
        pytest.skip(f"{OFFICIAL}: the official UCF-101 lists are not available")
    return {file: ucf101.read_lines(os.path.join(OFFICIAL, file)) for file in LISTS}


def real_videos(official):
    """The 13,320 (class folder, file) pairs of UCF-101, as the official lists of split 1 name them."""
    relpaths = [line.split()[0] for line in official["trainlist01.txt"] + official["testlist01.txt"]]
    return [tuple(relpath.split("/")) for relpath in relpaths]


def test_the_official_lists_have_the_published_sizes(official):
    assert len(real_videos(official)) == 13320
    assert (len(official["trainlist01.txt"]), len(official["testlist01.txt"])) == (9537, 3783)


def test_make_splits_reproduces_the_official_lists(official):
    assert ucf101.make_splits(real_videos(official)) == official


def test_the_class_folder_layout_reproduces_the_official_lists(official, tmp_path):
    root = tmp_path / "UCF-101"
    for folder, file in real_videos(official):
        os.makedirs(root / folder, exist_ok=True)
        (root / folder / file).touch()
    videos = ucf101.find_videos(str(root))
    assert ("HandstandPushups", str(root / "HandstandPushups" / "v_HandStandPushups_g08_c01.avi")) in videos
    assert ucf101.make_splits(videos) == official


def test_the_flat_unrar_e_layout_reproduces_the_official_lists(official, tmp_path):
    for _, file in real_videos(official):
        (tmp_path / file).touch()
    classes = ucf101.read_classes(os.path.join(OFFICIAL, "classInd.txt"))
    videos = ucf101.find_videos(str(tmp_path), classes)
    assert ucf101.make_splits(videos, classes) == official


def test_split_k_tests_on_groups_7k_minus_6_to_7k():
    assert list(ucf101.test_groups(1)) == [1, 2, 3, 4, 5, 6, 7]
    assert list(ucf101.test_groups(3)) == list(range(15, 22))
    lists = ucf101.make_splits([("A", f"v_A_g{g:02d}_c01.avi") for g in range(1, 26)])
    assert [ucf101.parse_name(ucf101.video_name(p))[1] for p in lists["testlist02.txt"]] == list(range(8, 15))
    assert len(lists["trainlist02.txt"]) == 18
    assert lists["trainlist02.txt"][0] == "A/v_A_g01_c01.avi 1"


def test_crlf_and_bom_lists_parse(tmp_path):
    (tmp_path / "classInd.txt").write_bytes(b"\xef\xbb\xbf1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n\r\n")
    (tmp_path / "trainlist01.txt").write_bytes(b"HandstandPushups/v_HandStandPushups_g08_c01.avi 2\r\n"
                                               b"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n")
    classes = ucf101.read_classes(str(tmp_path / "classInd.txt"))
    assert classes == ["ApplyEyeMakeup", "HandstandPushups"]
    assert ucf101.read_split(str(tmp_path / "trainlist01.txt"), classes) == [
        ("v_HandStandPushups_g08_c01", 1), ("v_ApplyEyeMakeup_g08_c01", 0)]


def test_the_label_comes_from_the_folder_not_the_file_name(tmp_path):
    (tmp_path / "list.txt").write_text("Beta/v_Alpha_g01_c01.avi\n")
    assert ucf101.read_split(str(tmp_path / "list.txt"), ["Alpha", "Beta"]) == [("v_Alpha_g01_c01", 1)]
    lists = ucf101.make_splits([("Beta", "v_Alpha_g08_c01.avi")], ["Alpha", "Beta"])
    assert lists["trainlist01.txt"] == ["Beta/v_Alpha_g08_c01.avi 2"]


def test_bad_lists_and_names_are_data_errors(tmp_path):
    (tmp_path / "classInd.txt").write_text("1 Alpha\n3 Beta\n")
    with pytest.raises(DataError, match="line 2"):
        ucf101.read_classes(str(tmp_path / "classInd.txt"))
    (tmp_path / "list.txt").write_text("Gamma/v_Gamma_g01_c01.avi\n")
    with pytest.raises(DataError, match="Gamma"):
        ucf101.read_split(str(tmp_path / "list.txt"), ["Alpha"])
    with pytest.raises(DataError, match="not found"):
        ucf101.read_lines(str(tmp_path / "missing.txt"))
    with pytest.raises(DataError, match="not a UCF-101 video name"):
        ucf101.parse_name("clip_01")
    with pytest.raises(DataError, match="no such folder"):
        ucf101.find_videos(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="no video files"):
        ucf101.find_videos(str(tmp_path))


def test_load_index_counts_frames_and_flow(tmp_path):
    counts = {"v_Alpha_g08_c01": 9, "v_Beta_g08_c01": 5}
    splits = fakedata.write_dataset(str(tmp_path), frames=counts, size=(16, 12))
    train = ucf101.load_index(str(tmp_path), splits, 1, "train")
    assert train == [ucf101.Video("v_Alpha_g08_c01", 0, 9, 8), ucf101.Video("v_Beta_g08_c01", 1, 5, 4),
                     ucf101.Video("v_Gamma_g08_c01", 2, 12, 11)]
    test = ucf101.load_index(str(tmp_path), splits, 1, "test")
    assert [(v.name, v.label) for v in test] == [("v_Alpha_g01_c01", 0), ("v_Beta_g01_c01", 1),
                                                 ("v_Gamma_g01_c01", 2)]
    assert [v.name for v in ucf101.load_index(str(tmp_path), splits, 2, "test")] == [
        "v_Alpha_g08_c01", "v_Beta_g08_c01", "v_Gamma_g08_c01"]
    assert [v.label for v in ucf101.load_index(str(tmp_path), splits, 1, "train", class_limit=2)] == [0, 1]
    assert len(ucf101.load_index(str(tmp_path), splits, 1, "train", max_videos=2)) == 2
    os.remove(ucf101.frame_path(ucf101.flow_dir(str(tmp_path), "v", "v_Beta_g08_c01"), 3))
    assert ucf101.load_index(str(tmp_path), splits, 1, "train")[1].flow_count == 3  # the smaller of u and v


def test_load_index_matches_folders_regardless_of_case(tmp_path):
    splits = fakedata.write_dataset(str(tmp_path), classes=("HandstandPushups",), frames=7, size=(16, 12))
    # a download stores v_HandStandPushups_* (the list's spelling here: v_HandstandPushups_*) in other case
    for folder in (ucf101.rgb_dir(str(tmp_path), "v_HandstandPushups_g08_c01"),
                   *(ucf101.flow_dir(str(tmp_path), c, "v_HandstandPushups_g08_c01") for c in "uv")):
        os.rename(folder, folder.replace("v_HandstandPushups", "v_HandStandPushups"))
    [video] = ucf101.load_index(str(tmp_path), splits, 1, "train")
    assert video == ucf101.Video("v_HandStandPushups_g08_c01", 0, 7, 6)


def test_names_with_spaces_are_read_whole_from_the_lists(tmp_path):
    lists = ucf101.make_splits([("Yo Yo", "Yo Yo/v_Yo Yo_g08_c01.avi"),
                                ("Alpha", "Alpha/v_Alpha_g01_c01.avi")])
    for file, lines in lists.items():
        ucf101.write_lines(str(tmp_path / file), lines)
    assert lists["trainlist01.txt"] == ["Yo Yo/v_Yo Yo_g08_c01.avi 2"]
    classes = ucf101.read_classes(str(tmp_path / "classInd.txt"))
    assert classes == ["Alpha", "Yo Yo"]
    train, test = ucf101.split_files(str(tmp_path), 1)
    assert ucf101.read_split(train, classes) == [("v_Yo Yo_g08_c01", 1)]
    assert ucf101.read_split(test, classes) == [("v_Alpha_g01_c01", 0)]
    assert ucf101.list_path("Alpha/v_Alpha_g01_c01 12.avi") == "Alpha/v_Alpha_g01_c01 12.avi"  # test list: no label


def test_a_list_write_that_fails_leaves_the_old_list_whole(tmp_path):
    path = tmp_path / "trainlist01.txt"
    ucf101.write_lines(str(path), ["Alpha/v_Alpha_g08_c01.avi 1"])
    with pytest.raises(UnicodeEncodeError):
        ucf101.write_lines(str(path), ["Alpha/v_Alpha_g09_c01.avi 1", "Alpha/v_\ud800.avi 1"])
    assert path.read_text() == "Alpha/v_Alpha_g08_c01.avi 1\n"
    assert os.listdir(tmp_path) == ["trainlist01.txt"]  # no temporary file left either
