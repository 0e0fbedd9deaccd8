"""The generated mini dataset: layout, determinism, and that its labels need both streams."""
import os

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from twostream.datasets import hmdb51, synthetic, synthetic_full, ucf101
from twostream.errors import DataError
from twostream.video import media

pytestmark = pytest.mark.xdist_group("test_synthetic")  # one worker builds its module fixtures and compiles

GROUPS = 8  # groups 1-7 are split 1's test list, group 8 its train list
WORK_SIZE = (128, 96)  # the size the synthetic preset extracts frames and flow at


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synthetic") / "data")
    videos = synthetic.generate(root, seed=0, groups=GROUPS, progress=False)
    return root, videos


@pytest.fixture(scope="module")
def decoded(dataset):
    """Per video: class, frames at the working size, and DIS flow of two pairs, plain and mirrored."""
    rows = []
    for cls, path in dataset[1]:
        frames = media.read_video(path, size=WORK_SIZE)
        pairs = [len(frames) // 3, 2 * len(frames) // 3]
        mirrored = [frame[:, ::-1] for frame in frames]
        rows.append(dict(cls=cls, frames=frames,
                         flow=list(media.compute_flow(frames, "dis", pairs).values()),
                         mirrored_flow=list(media.compute_flow(mirrored, "dis", pairs).values())))
    return rows


def factors(rows):
    by_name = {name: (colour, motion) for name, colour, motion in synthetic.CLASSES}
    return (np.array([by_name[r["cls"]][0] for r in rows]), np.array([by_name[r["cls"]][1] for r in rows]))


def affine_flow(u, v):
    """Least-squares u = a0 + a1 x + a2 y, v = b0 + b1 x + b2 y about the centre -> (a, b)."""
    h, w = u.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    design = np.stack([np.ones(h * w), x.ravel() - (w - 1) / 2, y.ravel() - (h - 1) / 2], 1)
    return tuple(np.linalg.lstsq(design, values.ravel(), rcond=None)[0] for values in (u, v))


def flow_stats(quantized_u, quantized_v):
    """[divergence, curl, a1 - b2 (the saddle's shear), |mean u|, |mean v|, mean speed] in px/frame."""
    u, v = media.dequantize_flow(quantized_u), media.dequantize_flow(quantized_v)
    a, b = affine_flow(u, v)
    return np.array([a[1] + b[2], abs(b[1] - a[2]), a[1] - b[2], abs(a[0]), abs(b[0]), np.hypot(u, v).mean()])


def video_flow_stats(flows, flip=None):
    """Mean flow stats over a video's pairs; flip mirrors the flow images first, 'right' or 'wrong'ly."""
    stats = []
    for u, v in flows:
        if flip:
            u, v = u[:, ::-1], v[:, ::-1]
            u = 255 - u if flip == "right" else u  # the right flip also negates u (255 - q is -flow)
        stats.append(flow_stats(u, v))
    return np.mean(stats, 0)


def frame_stats(frame):
    """What a still frame can show: mean colour and texture statistics (contrast, gradients)."""
    grey = media.to_gray(frame).astype(np.float64)
    gx, gy = np.diff(grey, axis=1), np.diff(grey, axis=0)
    return np.array([*frame.reshape(-1, 3).mean(0), grey.mean(), grey.std(), np.mean(gx**2), np.mean(gy**2),
                     np.log(np.mean(gx**2) / np.mean(gy**2)), np.mean(np.abs(gx)), np.mean(np.abs(gy))])


def accuracy(features, labels):
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return cross_val_score(model, features, labels, cv=4).mean()


def read_frames(path):
    return np.array(media.read_video(path, size=None))


# ---------------------------------------------------------------------------- classes and layout

def test_classes_cross_every_colour_with_every_motion():
    assert len(synthetic.CLASSES) == len(synthetic.COLOURS) * len(synthetic.MOTIONS) == 12
    pairs = {(c, m) for c in synthetic.COLOURS for m in synthetic.MOTIONS}
    assert {(c, m) for _, c, m in synthetic.CLASSES} == pairs
    for name, colour, motion in synthetic.CLASSES:
        assert name == colour + motion and "_" not in name and name[0].isupper()
    assert synthetic.CLASS_NAMES == sorted(synthetic.CLASS_NAMES, key=str.lower)


@pytest.mark.slow
def test_layout_and_split_lists(dataset):
    root, videos = dataset
    assert sorted(os.listdir(root)) == ["UCF-101", "splits", "synthetic.json"]
    assert not os.path.exists(root + ".partial")
    assert len(videos) == 12 * GROUPS
    found = ucf101.find_videos(os.path.join(root, "UCF-101"))
    assert found == sorted(videos, key=lambda v: (v[0].lower(), v[1]))
    expected = {os.path.join(root, "UCF-101", cls, f"v_{cls}_g{g:02d}_c01.avi")
                for cls in synthetic.CLASS_NAMES for g in range(1, GROUPS + 1)}
    assert {path for _, path in videos} == expected and all(os.path.isfile(path) for path in expected)
    splits = os.path.join(root, "splits")
    assert ucf101.read_classes(os.path.join(splits, "classInd.txt")) == synthetic.CLASS_NAMES
    train = ucf101.read_split(os.path.join(splits, "trainlist01.txt"), synthetic.CLASS_NAMES)
    test = ucf101.read_split(os.path.join(splits, "testlist01.txt"), synthetic.CLASS_NAMES)
    assert len(train) == 12 and len(test) == 12 * 7
    assert all(ucf101.parse_name(name)[1] == 8 for name, _ in train)
    assert all(synthetic.CLASS_NAMES[label] == ucf101.parse_name(name)[0] for name, label in train + test)
    index = ucf101.load_index(root, splits, split=1, subset="test")
    assert [v.label for v in index] == [label for _, label in test]
    assert synthetic.generated_settings(root)["dataset"] == "ucf101"


@pytest.mark.slow
def test_videos_decode_at_their_length(dataset):
    root, videos = dataset
    clips = {clip.name: clip for clip in synthetic.make_clips(seed=0, groups=GROUPS)}
    lengths = []
    for _, path in videos:
        frames = read_frames(path)
        assert frames.shape[1:] == (120, 160, 3), path
        assert len(frames) == clips[ucf101.video_name(path)].frames
        lengths.append(len(frames))
    assert media.video_fps(videos[0][1]) == pytest.approx(25)
    assert min(lengths) >= 20 and max(lengths) <= 70
    assert any(n < 35 for n in lengths) and sum(n >= 40 for n in lengths) > len(lengths) / 2


@pytest.mark.slow
def test_same_seed_same_videos_other_seed_other(dataset, tmp_path):
    first_videos = dataset[1]
    again = synthetic.generate(str(tmp_path / "again"), seed=0, groups=1, progress=False)
    other = synthetic.generate(str(tmp_path / "other"), seed=1, groups=1, progress=False)
    first = dict((os.path.basename(path), path) for _, path in first_videos)
    for (_, path), (_, other_path) in zip(again[:3], other[:3]):
        assert np.array_equal(read_frames(path), read_frames(first[os.path.basename(path)]))
        a, b = read_frames(path), read_frames(other_path)
        assert a.shape[1:] == b.shape[1:] and not np.array_equal(a[:20], b[:20])


@pytest.mark.slow
def test_refuses_to_overwrite(tmp_path):
    out = str(tmp_path / "data")
    synthetic.generate(out, seed=0, groups=1, progress=False)
    with pytest.raises(DataError, match="--overwrite"):
        synthetic.generate(out, seed=1, groups=1, progress=False)
    os.makedirs(os.path.join(out, "jpegs_256"))  # extracted from the old videos: stale after overwrite
    synthetic.generate(out, seed=1, groups=1, overwrite=True, progress=False)
    assert sorted(os.listdir(out)) == ["UCF-101", "splits", "synthetic.json"]
    foreign = tmp_path / "real"
    (foreign / "UCF-101").mkdir(parents=True)
    with pytest.raises(DataError, match="did not generate"):
        synthetic.generate(str(foreign), overwrite=True, progress=False)
    assert os.listdir(foreign) == ["UCF-101"]


# ---------------------------------------------------------------------------- what each stream can see

@pytest.mark.slow
def test_a_frame_shows_the_colour_but_not_the_motion(decoded):
    colours, motions = factors(decoded)
    stills = np.array([frame_stats(r["frames"][len(r["frames"]) // 2]) for r in decoded])
    assert accuracy(stills[:, :3], colours) == 1.0
    assert accuracy(stills, motions) < 0.45  # chance is 0.25
    assert accuracy(stills[:, 3:], colours) < 0.6  # the grey image that flow sees: chance is 0.33


@pytest.mark.slow
def test_flow_shows_the_motion_but_not_the_colour(decoded):
    colours, motions = factors(decoded)
    stats = np.array([video_flow_stats(r["flow"]) for r in decoded])
    divergence, curl, shear, mean_u, _, speed = stats.T
    assert np.all(divergence[motions == "Expand"] > 0.03)
    assert np.all(np.abs(divergence[motions != "Expand"]) < 0.015)
    assert np.all(shear[motions == "Saddle"] < -0.03) and np.all(np.abs(shear[motions != "Saddle"]) < 0.015)
    assert np.all(curl[motions == "Rotate"] > 0.03) and np.all(curl[motions != "Rotate"] < 0.015)
    assert np.all(mean_u[motions == "Translate"] > 1.0)
    assert np.all((speed > 0.8) & (speed < 3.5))  # px/frame at 128x96, well inside the bound of 20
    assert accuracy(stats, motions) == 1.0
    assert accuracy(stats, colours) < 0.6  # chance is 0.33


@pytest.mark.slow
def test_mirroring_keeps_every_class_and_a_wrong_flow_flip_swaps_expand_and_saddle(decoded):
    _, motions = factors(decoded)
    plain = np.array([video_flow_stats(r["flow"]) for r in decoded])
    mirrored = np.array([video_flow_stats(r["mirrored_flow"]) for r in decoded])
    right = np.array([video_flow_stats(r["flow"], flip="right") for r in decoded])
    wrong = np.array([video_flow_stats(r["flow"], flip="wrong") for r in decoded])
    centroids = {m: plain[motions == m, :3].mean(0) for m in synthetic.MOTIONS}

    def nearest(stats):
        return np.array([min(centroids, key=lambda m: np.sum((s[:3] - centroids[m]) ** 2)) for s in stats])

    assert np.array_equal(nearest(plain), motions)
    assert np.array_equal(nearest(mirrored), motions)  # a mirrored video is still its class
    assert np.array_equal(nearest(right), motions)  # and so is its rightly flipped flow
    np.testing.assert_allclose(right[:, :3], mirrored[:, :3], atol=0.01)
    swapped = nearest(wrong)
    assert np.all(swapped[motions == "Expand"] == "Saddle")
    assert np.all(swapped[motions == "Saddle"] == "Expand")
    assert np.all(swapped[motions == "Translate"] == "Translate")


# ---------------------------------------------------------------------------- the HMDB-style dataset

def hue(frames):
    """Mean hue in degrees, in the (Cb, Cr) plane that COLOURS measures hues in (BT.601)."""
    r, g, b = np.asarray(frames, np.float64).reshape(-1, 3).mean(0)
    cb, cr = -0.168736 * r - 0.331264 * g + 0.5 * b, 0.5 * r - 0.418688 * g - 0.081312 * b
    return np.degrees(np.arctan2(cr, cb)) % 360


def angle(a, b):
    return abs((a - b + 180) % 360 - 180)


def test_hmdb_style_classes_differ_from_the_ucf_style_ones():
    assert synthetic.HMDB_CLASS_NAMES == sorted(synthetic.HMDB_CLASS_NAMES) and len(synthetic.HMDB_CLASSES) == 6
    assert not set(synthetic.HMDB_CLASS_NAMES) & set(synthetic.CLASS_NAMES)
    for name, colour, motion in synthetic.HMDB_CLASSES:
        assert name == f"{colour}_{motion}".lower() and colour in synthetic.HMDB_COLOURS
    for colour, hmdb_hue in synthetic.HMDB_COLOURS.items():  # +-15 degrees of jitter never reaches another colour
        assert min(angle(hmdb_hue, h) for c, h in synthetic.HUES.items() if c != colour) >= 3 * synthetic.TINT_JITTER
    clips = synthetic.make_hmdb51_clips()
    assert len(clips) == 144  # about half the UCF-style 300, as HMDB-51 is about half of UCF-101
    ids = [[synthetic.hmdb51_split_id(source, split) for _, source in clips] for split in ucf101.SPLITS]
    assert all((k.count("1"), k.count("2"), k.count("0")) == (84, 36, 24) for k in ids)


@pytest.mark.slow
def test_hmdb_style_clips_show_their_colour_and_motion():
    clips = [clip for clip, source in synthetic.make_hmdb51_clips() if source == 6]  # one a class
    assert [clip.label for clip in clips] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    for clip in clips[::2]:
        name, colour, motion = synthetic.HMDB_CLASSES[clip.label]
        assert clip.name.startswith(synthetic.HMDB_SOURCES[6]) and f"_{name}_" in clip.name and len(clip.name) > 100
        frames = synthetic.render(clip)
        assert angle(hue(frames), synthetic.HMDB_COLOURS[colour]) < synthetic.TINT_JITTER + 3, clip.name
        assert min(angle(hue(frames), h) for h in synthetic.COLOURS.values()) > 40
        a, b, c, d = clip.step
        assert b == c == 0 and d > 1.02 and (a == d if motion == "Expand" else a * d == pytest.approx(1))


@pytest.mark.slow
def test_hmdb_style_generation_is_deterministic_and_guarded(tmp_path):
    out = str(tmp_path / "hmdb")
    videos = synthetic.generate_hmdb51(out, classes=["magenta_saddle"], progress=False)
    settings = synthetic.generated_settings(out)
    assert settings["dataset"] == "hmdb51" and settings["counts"] == [14, 6] and settings["fps"] == 30
    assert [c["name"] for c in settings["classes"]] == ["magenta_saddle"]
    again = {clip.name: clip for clip, _ in synthetic.make_hmdb51_clips(seed=0, classes=["magenta_saddle"])}
    other = [clip for clip, _ in synthetic.make_hmdb51_clips(seed=1, classes=["magenta_saddle"])]
    assert sorted(ucf101.video_name(path) for _, path in videos) == sorted(again)
    assert sum(clip.name in again for clip in other) < len(other) / 2  # other seed, other tags
    frames = read_frames(videos[0][1])
    assert len(frames) == again[ucf101.video_name(videos[0][1])].frames
    with pytest.raises(DataError, match="--overwrite"):
        synthetic.generate_hmdb51(out, classes=["magenta_saddle"], progress=False)
    with pytest.raises(DataError, match="unknown HMDB-style classes"):
        synthetic.generate_hmdb51(str(tmp_path / "x"), classes=["MagentaSaddle"], progress=False)
    foreign = tmp_path / "real"
    (foreign / "hmdb51_org").mkdir(parents=True)
    with pytest.raises(DataError, match="did not generate"):
        synthetic.generate_hmdb51(str(foreign), overwrite=True, progress=False)


# ---------------------------------------------------------------------------- full-size shapes

UCF_LISTS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "ucf101")


@pytest.fixture(scope="module")
def tiny_lists(tmp_path_factory):
    """Official-style lists of 3 classes x 25 groups x 2 clips, and frame_counts.csv (one video spelt
    otherwise than in the lists, as UCF-101's HandstandPushups)."""
    folder = tmp_path_factory.mktemp("lists")
    classes = ["Archery", "HandstandPushups", "YoYo"]
    videos = [(cls, f"{cls}/v_{'HandStandPushups' if cls == 'HandstandPushups' else cls}_g{g:02d}_c{c:02d}.avi")
              for cls in classes for g in range(1, 26) for c in (1, 2)]
    for file, lines in ucf101.make_splits(videos, classes).items():
        ucf101.write_lines(str(folder / file), lines)
    counts = [f"{ucf101.video_name(path).replace('HandStand', 'Handstand')},{30 + i % 17}"
              for i, (_, path) in enumerate(videos)]
    (folder / "frame_counts.csv").write_text("video,frames\n" + "\n".join(counts) + "\n")
    return str(folder), dict(line.split(",") for line in counts)


@pytest.fixture(scope="module")
def full(tiny_lists, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("full") / "data")
    return out, synthetic_full.generate_full(out, tiny_lists[0], fraction=0.1, workers=1, progress=False)


@pytest.mark.slow
def test_full_shape_has_every_listed_class_with_real_frame_counts(full, tiny_lists):
    out, settings = full
    root = os.path.join(out, "ucf101")
    classes = ucf101.read_classes(os.path.join(root, "splits", "classInd.txt"))
    assert classes == ["Archery", "HandstandPushups", "YoYo"]
    for subset in ("train", "test"):
        videos = ucf101.load_index(root, os.path.join(root, "splits"), 1, subset)
        assert {v.label for v in videos} == {0, 1, 2}  # every class keeps videos on both sides
        for video in videos:
            assert video.frames == int(tiny_lists[1][video.name]) and video.flow_count == video.frames - 1
    assert settings["ucf101_videos"] == 3 * (4 + 1)  # a tenth of 36 training and 14 test videos a class, rounded
    assert os.path.isdir(ucf101.rgb_dir(root, "v_HandstandPushups_g01_c01"))  # spelt as frame_counts.csv
    assert media.read_flow_info(os.path.join(root, ucf101.FLOW_DIR))["frame_size"] == [340, 256]


@pytest.mark.slow
def test_full_shape_frames_are_linked_distinct_jpegs_at_340x256(full):
    out, _ = full
    root = os.path.join(out, "ucf101")
    video = ucf101.load_index(root, os.path.join(root, "splits"), 1, "test")[0]
    first = ucf101.frame_path(ucf101.rgb_dir(root, video.name), 0)
    assert media.read_image(first).shape == (256, 340, 3)
    assert media.read_image(ucf101.frame_path(ucf101.flow_dir(root, "u", video.name), 0), True).shape == (256, 340)
    assert os.stat(first).st_nlink > 1
    frames = [media.read_image(ucf101.frame_path(ucf101.rgb_dir(root, video.name), i)) for i in range(3)]
    assert not np.array_equal(frames[0], frames[1]) and not np.array_equal(frames[1], frames[2])


@pytest.mark.slow
def test_full_shape_passes_check(full):
    out, _ = full
    for dataset in ("ucf101", "hmdb51"):
        root = os.path.join(out, dataset)
        import prepare_data
        assert prepare_data.main(["check", "--data-dir", root, "--splits-dir", os.path.join(root, "splits"),
                                  "--workers", "1"]) == 0


@pytest.mark.slow
def test_full_shape_hmdb51_has_its_classes_clips_and_official_split_files(full):
    out, settings = full
    official = os.path.join(out, "hmdb51", hmdb51.SPLITS_DIR)
    assert (hmdb51.find_classes(official) == sorted(synthetic_full.HMDB51_CLASS_NAMES)
            and len(synthetic_full.HMDB51_CLASS_NAMES) == 51)
    tested = {}
    for cls in synthetic_full.HMDB51_CLASS_NAMES:
        for split in ucf101.SPLITS:
            entries = hmdb51.read_split_file(hmdb51.split_file(official, cls, split))
            ids = [kind for _, kind in entries]
            assert (ids.count(hmdb51.TRAIN), ids.count(hmdb51.TEST)) == tuple(settings["hmdb51_counts"])
            tested.setdefault(cls, []).append({clip for clip, kind in entries if kind == hmdb51.TEST})
    assert all(not (a & b) for sets in tested.values() for a, b in [(sets[0], sets[1]), (sets[1], sets[2])])
    names = [clip for clip, _ in hmdb51.read_split_file(hmdb51.split_file(official, "brush_hair", 1))]
    assert any("#" in name for name in names) and any("(" in name for name in names)


@pytest.mark.slow
def test_full_shape_hmdb51_at_full_size_has_6766_clips_of_70_30():
    videos, by_class, sources = synthetic_full.hmdb51_full_clips()
    assert len(videos) == hmdb51.NUM_CLIPS and len(by_class) == 51
    for clips in by_class.values():
        for split in ucf101.SPLITS:
            ids = [synthetic_full.hmdb51_full_id(source, split, sources) for _, source in clips]
            assert (ids.count(hmdb51.TRAIN), ids.count(hmdb51.TEST)) == hmdb51.COUNTS
    assert len({v.name.lower() for v in videos}) == len(videos)


@pytest.mark.skipif(not os.path.isfile(os.path.join(UCF_LISTS, "frame_counts.csv")), reason="needs ../shared/ucf101")
def test_full_shape_ucf101_lists_are_the_official_ones():
    videos, lists = synthetic_full.ucf101_full_videos(UCF_LISTS)
    assert len(videos) == 13320 and sum(v.frames for v in videos) == 2469975
    assert len(lists["trainlist01.txt"]) == 9537 and len(lists["testlist01.txt"]) == 3783
    thinned, _ = synthetic_full.ucf101_full_videos(UCF_LISTS, fraction=0.01)
    assert len({v.cls for v in thinned}) == 101 and 150 < len(thinned) < 300


def write_parent_pid(path):
    with open(path, "w") as f:
        f.write(str(os.getppid()))


@pytest.mark.slow
def test_rendering_processes_are_not_forked_from_this_one(tmp_path):
    # A child forked from a process whose OpenCV thread pool has run can deadlock: the workers must
    # come from a forkserver (their parent), as prepare_data.py's do.
    paths = [str(tmp_path / f"job{k}") for k in range(4)]
    synthetic.run_jobs(write_parent_pid, paths, workers=2, progress=False, desc="test")
    parents = {int(open(path).read()) for path in paths}
    assert len(parents) == 1 and os.getpid() not in parents
