"""HMDB-51 in UCF-101's list format, so that frames, flow, the index and training are shared.

HMDB-51 (Kuehne et al., ICCV 2011) has 6,766 clips of 51 actions. Its downloads:
    hmdb51_org.rar          one <class>.rar per class, each holding <class>/<clip>.avi
    test_train_splits.rar   testTrainMulti_7030_splits/<class>_test_split<K>.txt, K = 1, 2, 3

    mkdir -p data/hmdb51/hmdb51_org && cd data/hmdb51
    unrar e hmdb51_org.rar hmdb51_org/ && (cd hmdb51_org && for f in *.rar; do unrar x "$f"; done)
    unrar x test_train_splits.rar        # -> testTrainMulti_7030_splits/

Each split file lists every clip of its class for that split, "<clip>.avi <id>", id 1 = training
(70 a class), 2 = test (30 a class), 0 = not used in that split. official_lists() turns the 153
files into classInd.txt, trainlist0K.txt and testlist0K.txt as ucf101.py reads them:
"<class>/<clip>.avi <label>" and "<class>/<clip>.avi". Clip names keep their odd characters
('#', '(', '!', '&', ',', ';'), so never pass them through a shell or a glob pattern unquoted.
"""
import os
import re

from twostream.datasets import ucf101
from twostream.errors import DataError

# The paper's settings (Simonyan & Zisserman 2014): 51 classes, three splits of 3,570 training
# and 1,530 test clips, results the mean accuracy over the three splits. Its temporal stream on
# HMDB-51 learns from UCF-101 too (multi-task: one softmax head per dataset, the losses summed).
# Its accuracies are references.py's reference figures.
NUM_CLASSES = 51
TRAIN_PER_CLASS, TEST_PER_CLASS = 70, 30
COUNTS = (TRAIN_PER_CLASS, TEST_PER_CLASS)
NUM_CLIPS = 6766
SPLITS_DIR = "testTrainMulti_7030_splits"
VIDEOS_DIR = "hmdb51_org"
UNUSED, TRAIN, TEST = "0", "1", "2"  # the ids of the split files
SPLIT_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<split>\d+)\.txt$")


def split_file(official_dir, cls, split):
    return os.path.join(official_dir, f"{cls}_test_split{split}.txt")


def find_classes(official_dir):
    """Class names, sorted, from the names of the split files in `official_dir`.

    Sorted by class name, as the usual HMDB-51 classInd.txt files are: climb before climb_stairs,
    although climb_stairs_test_split1.txt sorts before climb_test_split1.txt.
    """
    if not os.path.isdir(official_dir):
        raise DataError(f"{official_dir}: no such folder. Extract test_train_splits.rar and point "
                               f"--official-dir at the {SPLITS_DIR} folder it holds")
    classes = sorted({match["cls"] for file in os.listdir(official_dir) if (match := SPLIT_FILE.match(file))})
    if not classes:
        raise DataError(f"{official_dir}: no <class>_test_split<K>.txt files. Point --official-dir at the "
                               f"{SPLITS_DIR} folder of test_train_splits.rar")
    return classes


def read_split_file(path):
    """One official split file -> [(clip file name, id)] in file order; ids are "0", "1" or "2"."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: missing. HMDB-51 has one split file per class and split (1, 2, 3); "
                               "extract test_train_splits.rar again")
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = ucf101.parse_lines(f.read())  # strips the trailing space and CR of the official files
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not a text file ({error})") from error
    entries, seen = [], set()
    for line in lines:
        parts = line.rsplit(maxsplit=1)  # from the right: a clip name may hold spaces
        if (len(parts) != 2 or parts[1] not in (UNUSED, TRAIN, TEST)
                or not parts[0].lower().endswith(ucf101.VIDEO_EXTENSIONS)):
            raise DataError(f"{path}: malformed line {line!r}; expected '<clip>.avi <id>' with id 0 "
                                   "(unused), 1 (training) or 2 (test)")
        if parts[0] in seen:
            raise DataError(f"{path}: {parts[0]} is listed twice")
        seen.add(parts[0])
        entries.append((parts[0], parts[1]))
    return entries


def check_counts(path, entries, counts):
    train = sum(1 for _, kind in entries if kind == TRAIN)
    test = sum(1 for _, kind in entries if kind == TEST)
    if counts and (train, test) != tuple(counts):
        raise DataError(f"{path}: {train} training (id 1) and {test} test (id 2) clips, expected "
                               f"{counts[0]} and {counts[1]}. Extract test_train_splits.rar again, or accept "
                               "other counts with --any-counts if this is deliberately not all of HMDB-51")


def official_lists(official_dir, counts=COUNTS, num_classes=NUM_CLASSES):
    """The official per-class split files -> {file name: lines} for classInd.txt and the six split lists.

    counts: (training, test) clips that every class must have in every split, and num_classes:
    the classes there must be; None accepts any (a subset of HMDB-51, or a generated dataset).
    Clips with id 0 are left out; within a class, clips keep the order of its split file.
    """
    classes = find_classes(official_dir)
    if num_classes and len(classes) != num_classes:
        raise DataError(f"{official_dir}: split files for {len(classes)} classes, expected {num_classes}. "
                               "Extract test_train_splits.rar again, or accept other numbers with --any-counts "
                               "if this is deliberately not all of HMDB-51")
    lists = {ucf101.CLASS_FILE: ucf101.class_index_lines(classes)}
    class_of = {}  # clip name -> class: frame folders are named by clip alone, so names must be unique
    for split in ucf101.SPLITS:
        train, test = [], []
        for label, cls in enumerate(classes):
            path = split_file(official_dir, cls, split)
            entries = read_split_file(path)
            check_counts(path, entries, counts)
            for clip, kind in entries:
                key = ucf101.video_name(clip).lower()  # folder names match regardless of case (ucf101.folder_names)
                if class_of.setdefault(key, cls) != cls:
                    raise DataError(f"{path}: {clip} is also listed for class {class_of[key]}; the "
                                           f"frames of both would go to one folder, {ucf101.video_name(clip)}")
                if kind == TRAIN:
                    train.append(f"{cls}/{clip} {label + 1}")
                elif kind == TEST:
                    test.append(f"{cls}/{clip}")
        lists.update(zip(ucf101.list_files(split), (train, test)))
    return lists
