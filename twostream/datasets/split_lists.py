"""`prepare_data.py splits`: classInd.txt and the train and test lists of the three splits, UCF-101's
made from its videos (ucf101.make_splits) or read from the official zip, HMDB-51's converted from its
official split files (hmdb51.official_lists); written only where they differ, and then whole."""
import os
import zipfile

from twostream.datasets import hmdb51, ucf101
from twostream.errors import DataError

OFFICIAL_LISTS = list(ucf101.LIST_FILES)


def hmdb51_lists(dataset, official_dir, any_counts):
    """HMDB-51's lists from the official split files in `official_dir` (of HMDB-51's numbers of classes
    and clips unless any_counts) -> {file name: lines}."""
    if not official_dir:
        raise DataError(f"--dataset {dataset} needs --official-dir: the {hmdb51.SPLITS_DIR} folder of "
                        "test_train_splits.rar")
    return hmdb51.official_lists(official_dir, counts=None if any_counts else hmdb51.COUNTS,
                                 num_classes=None if any_counts else hmdb51.NUM_CLASSES)


def ucf101_lists(videos_dir, classes_path=None):
    """UCF-101's lists made from the videos in `videos_dir`, with the classes of classInd.txt at
    classes_path if given (else the class folders found) -> {file name: lines}."""
    classes = ucf101.read_classes(classes_path) if classes_path else None
    videos = ucf101.find_videos(videos_dir, classes)
    check_known_classes(videos, classes, classes_path)
    return ucf101.make_splits(videos, classes)


def check_known_classes(videos, classes, classes_path):
    unknown = sorted({cls for cls, _ in videos} - set(classes or []))
    if classes and unknown:
        raise DataError(f"{classes_path}: does not list the classes {', '.join(unknown[:5])}"
                        f"{' ...' if len(unknown) > 5 else ''} of the videos found")


def read_official_zip(path):
    """UCF101TrainTestSplits-RecognitionTask.zip -> {file name: lines} (ucfTrainTestlist/*.txt)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = {os.path.basename(name): name for name in archive.namelist()}
            missing = [file for file in OFFICIAL_LISTS if file not in members]
            if missing:
                raise DataError(f"{path}: {', '.join(missing)} not in the zip; expected the official "
                                "UCF101TrainTestSplits-RecognitionTask.zip")
            return {file: ucf101.parse_lines(archive.read(members[file]).decode("utf-8-sig"))
                    for file in OFFICIAL_LISTS}
    except (OSError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: cannot read the zip ({error})") from error


def write_lists(lists, out, overwrite):
    """Write {file: lines}; refuse to replace an existing list that differs unless overwrite."""
    paths = {file: os.path.join(out, file) for file in lists}
    existing = {file for file, path in paths.items() if os.path.exists(path)}
    differing = [file for file in existing if ucf101.read_lines(paths[file]) != lists[file]]
    if differing and not overwrite:
        raise DataError(f"{out}: {', '.join(sorted(differing))} already exist with other contents; "
                        "pass --overwrite to replace them")
    os.makedirs(out, exist_ok=True)
    for file, lines in lists.items():
        if file not in existing or file in differing:
            ucf101.write_lines(paths[file], lines)
    print(f"splits: {out}: {len(lists['classInd.txt'])} classes; split 1: {len(lists['trainlist01.txt'])} train, "
          f"{len(lists['testlist01.txt'])} test videos ({len(differing)} replaced, "
          f"{len(existing) - len(differing)} already up to date)")
