"""The UCF-101 index: split lists, the split rule, and per-video frame and flow counts.

On-disk layouts (the public downloads'):
    videos    UCF-101/<Class>/v_<Class>_gXX_cYY.avi   (or flat, as `unrar e` leaves them)
    frames    <data_dir>/jpegs_256/<video>/frame000001.jpg
    flow      <data_dir>/tvl1_flow/{u,v}/<video>/frame000001.jpg
    splits    classInd.txt, trainlist0K.txt, testlist0K.txt
where <video> is the file stem, e.g. v_ApplyEyeMakeup_g08_c01.
"""
import os
import re
import zlib
from dataclasses import dataclass

from twostream.errors import DataError
from twostream.storage import atomic

STREAMS = ("spatial", "temporal")  # the spatial stream reads frames (RGB_DIR), the temporal one flow (FLOW_DIR)
RGB_DIR = "jpegs_256"
FLOW_DIR = "tvl1_flow"
SPLITS = (1, 2, 3)  # the official splits, UCF-101's and HMDB-51's alike
CLASS_FILE = "classInd.txt"
FRAME_NAME = "frame{:06d}.jpg"  # 1-based
FRAME_FILE = re.compile(r"^frame(\d{6})\.jpg$")  # FRAME_NAME's names
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg")
GROUPS_PER_SPLIT = 7  # split K tests on groups 7K-6 .. 7K
NAME_PATTERN = re.compile(r"^v_(?P<cls>.+)_g(?P<group>\d+)_c(?P<clip>\d+)$")


@dataclass(frozen=True)
class Video:
    name: str  # file stem: the folder name under jpegs_256/ and tvl1_flow/{u,v}/
    label: int  # 0-based class index
    frames: int = 0  # RGB frames on disk
    flow_count: int = 0  # flow frames on disk (the smaller of the u and v counts)
    flow_name: str = ""  # the folder name under tvl1_flow/{u,v}/ where it is spelt otherwise than `name`

    @property
    def flow_folder(self):
        return self.flow_name or self.name


def rgb_dir(data_dir, name):
    return os.path.join(data_dir, RGB_DIR, name)


def flow_dir(data_dir, component, name):
    return os.path.join(data_dir, FLOW_DIR, component, name)


def frame_path(folder, index):
    """Path of 0-based frame `index` in `folder` (files are 1-based)."""
    return os.path.join(folder, FRAME_NAME.format(index + 1))


# ---------------------------------------------------------------------------- split lists

def list_files(split):
    """The file names of a split's lists: (trainlist0K.txt, testlist0K.txt)."""
    return f"trainlist{split:02d}.txt", f"testlist{split:02d}.txt"


LIST_FILES = (CLASS_FILE,) + tuple(name for split in SPLITS for name in list_files(split))  # all seven


def read_lines(path):
    """Non-empty, stripped lines; tolerates CRLF endings and a UTF-8 byte-order mark."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: not found. Run `python prepare_data.py splits` to write the split lists.")
    with open(path, encoding="utf-8-sig") as f:
        return parse_lines(f.read())


def parse_lines(text):
    return [line.strip() for line in text.splitlines() if line.strip()]


def write_lines(path, lines):
    """A list file as the official ones are: one entry a line, LF endings; written atomically."""
    atomic.write_text(path, "\n".join(lines) + "\n")


def class_index_lines(classes):
    """Class names -> the lines of classInd.txt ("1 ApplyEyeMakeup")."""
    return [f"{i + 1} {name}" for i, name in enumerate(classes)]


def read_classes(path):
    """classInd.txt ("1 ApplyEyeMakeup") -> class names, position = 0-based label."""
    classes = []
    for number, line in enumerate(read_lines(path), 1):
        parts = line.split(maxsplit=1)  # class names may hold spaces
        if len(parts) != 2 or parts[0] != str(number):
            raise DataError(f"{path}, line {number}: expected '{number} ClassName', got {line!r}")
        classes.append(parts[1])
    return classes


def read_split(path, classes):
    """A train or test list -> [(video name, 0-based label)]. The label comes from the folder."""
    label_of = {name: i for i, name in enumerate(classes)}
    entries = []
    for number, line in enumerate(read_lines(path), 1):
        relpath = list_path(line)
        folder = relpath.replace("\\", "/").split("/")[0]
        if folder not in label_of:
            raise DataError(f"{path}, line {number}: class folder {folder!r} is not in classInd.txt")
        entries.append((video_name(relpath), label_of[folder]))
    return entries


def list_path(line):
    """The video of a list line: "Class/v_X.avi 12" (training) or "Class/v_X.avi" (test). Parsed from
    the right, so that a name with spaces stays whole: "Class/v_X y.avi 12" -> "Class/v_X y.avi"."""
    match = re.fullmatch(r"(.*\S)\s+\d+", line)
    return match[1] if match else line


def video_name(path):
    return os.path.splitext(os.path.basename(path))[0]


def parse_name(name):
    """v_<Class>_gXX_cYY -> (class as spelt in the file name, group, clip)."""
    match = NAME_PATTERN.match(name)
    if not match:
        raise DataError(f"{name}: not a UCF-101 video name (v_<Class>_gXX_cYY)")
    return match["cls"], int(match["group"]), int(match["clip"])


def test_groups(split):
    return range(GROUPS_PER_SPLIT * split - 6, GROUPS_PER_SPLIT * split + 1)


def find_videos(videos_dir, classes=None):
    """Videos under `videos_dir` -> sorted [(class folder name, path)].

    Accepts UCF-101/<Class>/<video>.avi and the flat layout of `unrar e`. In the flat layout
    the class comes from the file name, matched to `classes` (classInd.txt) regardless of case,
    since the dataset spells HandstandPushups as HandStandPushups in file names.
    """
    if not os.path.isdir(videos_dir):
        raise DataError(f"{videos_dir}: no such folder. Point --videos at the extracted UCF-101 folder.")
    by_lower = {c.lower(): c for c in classes or []}
    found = []
    for root, _, files in os.walk(videos_dir):
        for file in files:
            if not file.lower().endswith(VIDEO_EXTENSIONS):
                continue
            path = os.path.join(root, file)
            if os.path.samefile(root, videos_dir):
                spelt = parse_name(video_name(file))[0]
                found.append((by_lower.get(spelt.lower(), spelt), path))
            else:
                found.append((os.path.basename(root), path))
    if not found:
        raise DataError(f"{videos_dir}: no video files ({', '.join(VIDEO_EXTENSIONS)}) found")
    return sorted(found, key=lambda item: (item[0].lower(), video_name(item[1]).lower()))


def make_splits(videos, classes=None):
    """[(class folder, path)] -> {file name: lines} for classInd.txt and the six split lists.

    Reproduces the official lists line for line: classes in case-insensitive order, videos
    sorted within each class, split K testing on groups 7K-6..7K.
    """
    if classes is None:
        classes = sorted({cls for cls, _ in videos}, key=str.lower)
    label_of = {name: i for i, name in enumerate(classes)}
    lists = {CLASS_FILE: class_index_lines(classes)}
    ordered = sorted(videos, key=lambda v: (label_of[v[0]], video_name(v[1]).lower()))
    for split in SPLITS:
        train, test = [], []
        for cls, path in ordered:
            relpath = f"{cls}/{os.path.basename(path)}"
            if parse_name(video_name(path))[1] in test_groups(split):
                test.append(relpath)
            else:
                train.append(f"{relpath} {label_of[cls] + 1}")
        lists.update(zip(list_files(split), (train, test)))
    return lists


def split_files(splits_dir, split):
    return tuple(os.path.join(splits_dir, name) for name in list_files(split))


# ---------------------------------------------------------------------------- the index

def frame_numbers(folder, whole=False):
    """Which frames `folder` holds: the sorted 1-based numbers of its frameNNNNNN.jpg files ([] if there
    is no such folder). whole=True: [] unless they are frame000001.jpg .. frameN.jpg with nothing beside
    them but dot files (such as the extraction record), as a complete folder holds them.

    One directory listing. The usual folder, frame000001.jpg .. frameN.jpg, is recognised by comparing
    its sorted names with a list made once: the index and a rerun of extraction do this for every
    folder, so no name is parsed."""
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    hidden = 0
    while hidden < len(names) and names[hidden].startswith("."):  # "." sorts before digits and letters
        hidden += 1
    count = len(names) - hidden
    if names[hidden:] == frame_names(count):
        return list(range(1, count + 1))
    return [] if whole else sorted(int(m[1]) for name in names[hidden:] if (m := FRAME_FILE.match(name)))


_frame_names = []  # frame000001.jpg, ...: grows to the longest video seen, then is sliced


def frame_names(count):
    _frame_names.extend(FRAME_NAME.format(i) for i in range(len(_frame_names) + 1, count + 1))
    return _frame_names[:count]


def count_frames(folder):
    """Number of frames in `folder` (0 if it does not exist), one directory listing."""
    return len(frame_numbers(folder))


def count_video(data_dir, name, label, flow_name=""):
    flow_name = flow_name if flow_name not in ("", name) else ""
    folder = flow_name or name
    flow_count = min(count_frames(flow_dir(data_dir, "u", folder)), count_frames(flow_dir(data_dir, "v", folder)))
    return Video(name, label, count_frames(rgb_dir(data_dir, name)), flow_count, flow_name)


def load_index(data_dir, splits_dir, split=1, subset="train", class_limit=None, max_videos=None):
    """The videos of one split's train or test list, with their frame and flow counts.

    class_limit keeps the first N classes of classInd.txt; max_videos keeps an evenly spread
    subset of N videos (for quick runs). Folders are scanned once, here, not every epoch.
    """
    classes = read_classes(os.path.join(splits_dir, CLASS_FILE))
    train_path, test_path = split_files(splits_dir, split)
    entries = read_split(train_path if subset == "train" else test_path, classes)
    if class_limit:
        entries = [(name, label) for name, label in entries if label < class_limit]
    if max_videos and len(entries) > max_videos:
        step = len(entries) / max_videos
        entries = [entries[int(i * step)] for i in range(max_videos)]
    rgb_names = folder_names(os.path.join(data_dir, RGB_DIR))
    flow_names = folder_names(os.path.join(data_dir, FLOW_DIR, "u"))
    videos = []
    for name, label in entries:
        spelt = rgb_names.get(name.lower()) or flow_names.get(name.lower(), name)
        videos.append(count_video(data_dir, spelt, label, flow_names.get(name.lower(), "")))
    return videos


def hold_out_groups(videos, groups):
    """Split training videos into (train, validation): validation takes the videos of the last
    `groups` groups present (the clips of a group come from one long video, so a group never
    straddles the two). Needs UCF-101's v_<Class>_gXX_cYY names."""
    if not groups:
        return list(videos), []
    group_of = {v.name: parse_name(v.name)[1] for v in videos}
    held = set(sorted(set(group_of.values()))[-groups:])
    if len(held) == len(set(group_of.values())):
        raise DataError(f"--val-groups {groups} would hold out every training group; use fewer")
    return ([v for v in videos if group_of[v.name] not in held],
            [v for v in videos if group_of[v.name] in held])


def folder_names(parent):
    """lower-case name -> name as on disk. Downloads differ in case from the split lists
    (frames of v_HandStandPushups_* are stored as v_HandstandPushups_* in the public download)."""
    try:
        with os.scandir(parent) as entries:
            return {e.name.lower(): e.name for e in entries}
    except FileNotFoundError:
        return {}


def class_names(splits_dir, class_limit=None):
    classes = read_classes(os.path.join(splits_dir, CLASS_FILE))
    return classes[:class_limit] if class_limit else classes


def shard_of(name, count):
    """The 1-based shard (of `count`) that video `name` belongs to: 1 + crc32(lower-case name) mod count.

    It depends on the name alone, so machines that see different copies of the video list agree.
    """
    return zlib.crc32(name.lower().encode("utf-8")) % count + 1
