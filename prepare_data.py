"""Prepare UCF-101, HMDB-51 or a generated mini dataset for two-stream training: split lists, RGB
frames, optical flow, and a check that everything a split needs is on disk.

    python prepare_data.py synthetic --out data/synthetic
    python prepare_data.py splits --videos data/ucf101/UCF-101 --out splits
    python prepare_data.py splits --official-zip UCF101TrainTestSplits-RecognitionTask.zip --out splits
    python prepare_data.py frames --videos data/ucf101/UCF-101 --out data/ucf101/jpegs_256
    python prepare_data.py flow --videos data/ucf101/UCF-101 --out data/ucf101/tvl1_flow --flow-method tvl1
    python prepare_data.py flow --videos data/ucf101/UCF-101 --out data/ucf101/tvl1_flow --flow-method tvl1_keras
    python prepare_data.py flow --videos data/ucf101/UCF-101 --out data/ucf101/tvl1_flow --shard 3/8
    python prepare_data.py check --data-dir data/ucf101 --splits-dir splits --split 1
    python prepare_data.py frames --dataset hmdb51    # --videos and --out from presets.py

`frames` and `flow` are resumable and safe to kill at any moment, or to run twice on one --out:
each video is written into a temporary folder of this process (.<video>.<token>.tmp) and renamed
into place when complete, with a record of the frame count its header promised and what was
written (.extraction.json). A rerun keeps complete folders (reading names and records, no JPEG;
--verify also decodes every JPEG, as `check --decode` does, in --workers processes), redoes missing,
incomplete and damaged ones, and deletes the temporary folders of killed processes. A video that
decodes to fewer frames than its header says is reported as damaged (exit 1) and its frames kept.
Each process counts only the videos it published; those another process published first are
"already complete (by another process)".

TV-L1 (the flow of the public downloads and TSN; the paper used Brox et al.'s) runs at about 1 frame
pair/s per core at 320x240: all of UCF-101 takes about 16 CPU-days, so consider --flow-method
tvl1_keras on a GPU (the same algorithm, --batch-size pairs at a time in batches that mix videos,
decoded and written by threads while the device computes), the public ucf101_tvl1_flow download, or
--flow-method dis (~100x faster, approximate).

--shard K/N splits the work between N machines or the N tasks of a cluster job array: task K does
the videos whose name hashes to K (1 + crc32 of the lower-case name, mod N). Parts never overlap,
every machine agrees on them whatever videos it sees, each part resumes on its own, and `check`
verifies the whole once all N are done. `flow` records its method in <out>/flow_info.json.

One folder, one dataset: videos are added to an --out only with the settings of those already there
(frames: their size, as their images show; flow: the method, size and bound of flow_info.json, or
with none the size of its images). Other settings exit 2, naming the way out: the same --size (or
--flow-method), --overwrite to redo every video, or another --out.
"""
import argparse
import contextlib
import errno
import fcntl
import json
import os
import queue
import re
import secrets
import shutil
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from twostream import errors
from twostream.datasets import hmdb51, ucf101
from twostream.errors import DataError
from twostream.protocol import flags, presets
from twostream.video import media

OFFICIAL_LISTS = list(ucf101.LIST_FILES)
# Seconds per frame pair on one core at 320x240 (measured with OpenCV 4.13 on an x86 server core);
# tvl1_keras: per pair on a whole 2-core CPU with JAX (benchmarks/bench_flow.py; TensorFlow's CPU
# compiler is about 4x slower, a GPU far faster).
PAIR_SECONDS = {"tvl1": 1.0, "tvl1_keras": 0.6, "farneback": 0.015, "dis": 0.008}
FRAME_FILE = re.compile(r"^frame(\d{6})\.jpg$")
# Each frame or flow folder holds a record, written last, of the video's header frame count and of
# what was written (write_record); a rerun reads it instead of decoding JPEGs (folder_state).
RECORD_FILE = ".extraction.json"
FRAME_COUNT_SLACK = 0.01  # and at least 2 frames: see is_short
COMPLETE, SHORT, REDO = "complete", "short", "redo"
# Work in progress: .<video>.<token>.tmp folders beside the final ones, of the process holding
# .<token>.lock (process_token).
TEMP_SUFFIX, LOCK_SUFFIX, TOKEN_CHARS = ".tmp", ".lock", 16


@dataclass(frozen=True)
class Job:
    """One video to extract: its file, the output folder name, and the extraction settings."""
    path: str
    name: str  # the video's stem, or its spelling already on disk
    out: str
    size: tuple
    overwrite: bool
    method: str = ""
    batch: int = media.FLOW_BATCH
    verify: bool = False  # folders with truncated or unreadable JPEGs are not complete (damaged_jpegs)


@dataclass(frozen=True)
class Outcome:
    """What became of a Job: written (maybe from a damaged video), done by another process, or failed."""
    path: str
    error: str = ""  # why it failed
    damage: str = ""  # how the video fell short of its header (its frames are kept)
    done_elsewhere: bool = False  # another process finished it first


@dataclass(frozen=True)
class CheckJob:
    name: str
    rgb: str
    u: str
    v: str
    decode: bool


# ---------------------------------------------------------------------------- splits

def run_splits(args):
    if args.layout == "hmdb51":
        if not args.official_dir:
            raise DataError(f"--dataset {args.dataset} needs --official-dir: the {hmdb51.SPLITS_DIR} folder of "
                            "test_train_splits.rar")
        lists = hmdb51.official_lists(args.official_dir, counts=None if args.any_counts else hmdb51.COUNTS,
                                      num_classes=None if args.any_counts else hmdb51.NUM_CLASSES)
    elif args.official_zip:
        lists = read_official_zip(args.official_zip)
    else:
        classes = ucf101.read_classes(args.classes) if args.classes else None
        videos = ucf101.find_videos(args.videos, classes)
        check_known_classes(videos, classes, args.classes)
        lists = ucf101.make_splits(videos, classes)
    write_lists(lists, args.out, args.overwrite)
    return 0


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


# ---------------------------------------------------------------------------- frames and flow

def run_frames(args):
    return extract("frames", args.videos, args.out, args.size, args.workers, args.overwrite, args.shard, args.verify)


def run_flow(args):
    return extract("flow", args.videos, args.out, args.size, args.workers, args.overwrite, args.shard, args.verify,
                   args.flow_method, args.batch_size)


def extract(task, videos, out, size, workers, overwrite=False, shard=None, verify=False, method="",
            batch=media.FLOW_BATCH):
    """Plan, extract what is not complete in `workers` processes, report -> exit code. Flow if a
    `method` is given (`batch` pairs per device call for the batched methods), else frames."""
    parents = [os.path.join(out, component) for component in "uv"] if method else [out]
    try:
        where, found = existing_settings(out, parents, method)
        wanted = media.flow_info(method, size) if method else {"frame_size": list(size)}
        refuse_other_settings(where, "this flow was computed" if method else "its frames were extracted", found,
                              wanted, overwrite)
        todo, complete, damaged = plan(videos, parents, 1 if method else 0, overwrite, shard, verify, workers)
        if method:
            record_flow_method(out, wanted, where.endswith(media.FLOW_INFO_FILE), complete)
        jobs = [Job(path, name, out, size, overwrite, method, batch, verify) for path, name in todo]
        batched = method in media.BATCHED_FLOW_METHODS  # one process on one device, threads around it
        if method:
            print_flow_estimate(jobs, method, size, 1 if batched else workers)
        if batched:
            outcomes = extract_flow_batched(jobs, workers, f"flow ({method})")
        else:
            outcomes = media.run_parallel(attempt_flow if method else attempt_frames, jobs, workers,
                                          desc=f"flow ({method})" if method else "frames", unit="video")
    finally:
        release_locks()
        for parent in parents:
            remove_stale(parent)  # e.g. the temporary folders of workers stopped by Ctrl-C
    return report(task, outcomes, complete, damaged)


# The one rule of `frames` and `flow`: a folder holds one dataset. Videos are added to it only with the
# settings its videos were made with (existing_settings); --overwrite redoes every video with new ones.
SETTING_FLAGS = {"method": "--flow-method", "frame_size": "--size", "bound": None}  # bound: no flag sets it


def existing_settings(out, parents, method):
    """-> (where they come from, the settings of the videos already in the folder): flow's record
    (<out>/flow_info.json, media.flow_info's keys), or, with none (frames; flow of the public download or
    of older versions), {"frame_size": the size of the images there}; {} if it holds none."""
    recorded = media.read_flow_info(out) if method else None
    if recorded:
        return os.path.join(out, media.FLOW_INFO_FILE), recorded
    size = image_size(parents[0])
    return parents[0], {"frame_size": size} if size else {}


def image_size(parent):
    """[width, height] of the first image of the first video folder in `parent` (by name) that has one
    that decodes; None if none does. One small decode: the size of what is there."""
    for name in sorted(ucf101.folder_names(parent).values()):
        if not name.startswith("."):
            image = media.decode_image(ucf101.frame_path(os.path.join(parent, name), 0), grayscale=True)
            if image is not None:
                return [image.shape[1], image.shape[0]]
    return None


def refuse_other_settings(where, made, found, wanted, overwrite):
    """Raise DataError, naming `where` and the ways out, if a setting of `wanted` differs from the one
    `found` for the folder's videos (existing_settings), unless `overwrite`."""
    differing = [key for key in SETTING_FLAGS if key in found and key in wanted
                 and list_of(found[key]) != list_of(wanted[key])]
    if overwrite or not differing:
        return
    same = " ".join(f"{SETTING_FLAGS[key]} {setting_text(key, found[key])}" for key in differing if SETTING_FLAGS[key])
    new = {key: wanted[key] for key in found if key in wanted}
    raise DataError(f"{where}: {made} {settings_text(found)}, not {settings_text(new)}; "
                    f"{f'pass {same} to add to it, ' if same else ''}--overwrite to redo every video with the new "
                    "settings, or choose another --out")


def list_of(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def setting_text(key, value):
    return "x".join(map(str, value)) if key == "frame_size" else str(value)


def settings_text(settings):
    """E.g. "with dis at 340x256 (bound 20.0)", or "at 340x256"."""
    forms = {"method": "with {}", "frame_size": "at {}", "bound": "(bound {})"}
    return " ".join(form.format(setting_text(key, settings[key])) for key, form in forms.items() if key in settings)


def record_flow_method(out, info, recorded, complete):
    """Write <out>/flow_info.json (once refuse_other_settings has passed)."""
    if complete and not recorded:
        print(f"flow: {out} holds flow without a record of its method; recording {info['method']} for all of it")
    media.write_flow_info(out, info)


def plan(videos_dir, parents, offset, overwrite, shard=None, verify=False, workers=1):
    """-> ([(video path, output name)] still to do, number already complete, [(path, damage)] of
    complete folders of damaged videos, kept), of shard (K, N) if given.

    A video is to do unless its folder in every parent is complete (folder_state, with `offset`
    images fewer than frames); `verify` also decodes every JPEG of the complete folders, in `workers`
    processes, and redoes the videos with a damaged one (damaged_jpegs: what `check --decode` reports).
    Names match regardless of case: downloads spell some videos differently. Temporary folders of
    killed processes are deleted first.
    """
    paths = [path for _, path in ucf101.find_videos(videos_dir)]
    if shard:
        total = len(paths)
        paths = [path for path in paths if ucf101.shard_of(ucf101.video_name(path), shard[1]) == shard[0]]
        print(f"shard {shard[0]}/{shard[1]}: {len(paths)} of {total} videos")
    for parent in parents:
        remove_stale(parent)
    on_disk = [ucf101.folder_names(parent) for parent in parents]
    videos = []  # (path, name, its folders, their states)
    for path in paths:
        key = ucf101.video_name(path).lower()
        name = next((names[key] for names in on_disk if key in names), ucf101.video_name(path))
        folders = ([] if overwrite or not all(key in names for names in on_disk) else
                   [os.path.join(parent, names[key]) for parent, names in zip(parents, on_disk)])
        videos.append((path, name, folders, [folder_state(folder, path, offset) for folder in folders]))
    damaged_folders = set()
    if verify:
        jobs = [(folder, offset == 1) for _, _, folders, states in videos if states and REDO not in states
                for folder in folders]
        damaged_folders = {folder for folder, damaged in media.run_parallel(
            verify_folder, jobs, workers, desc="verify", unit="folder") if damaged}
    todo, damaged = [], []
    for path, name, folders, states in videos:
        if not states or REDO in states or damaged_folders.intersection(folders):
            todo.append((path, name))
        elif SHORT in states:
            damage = shortfall(read_record(os.path.join(parents[0], name)))
            damaged.append((path, f"{damage}; its frames are kept in {os.path.join(parents[0], name)}"))
    return todo, len(paths) - len(todo) - len(damaged), damaged


def verify_folder(job):
    """(folder, grayscale) -> (folder, whether a JPEG of it is damaged: damaged_jpegs, decoding every one)."""
    folder, grayscale = job
    return folder, any(damaged_jpegs(folder, whole_count(folder), True, grayscale))


# ---------------------------------------------------------------------------- complete folders

def is_short(header_frames, decoded_frames):
    """True if a video decoded to fewer frames than its container's header says, beyond the slack
    of FRAME_COUNT_SLACK: headers of real AVI files are often off by a frame or two (an index
    counting a frame the decoder drops), and counts FFmpeg estimates from duration x fps by ~1%."""
    return header_frames > 0 and decoded_frames < header_frames - max(2, header_frames * FRAME_COUNT_SLACK)


def shortfall(record):
    """How a damaged video fell short, from a folder's record; "" if it did not (or no record)."""
    if not record or not is_short(record.get("header_frames", 0), record.get("decoded_frames", 0)):
        return ""
    return (f"decoded to {record['decoded_frames']} frames, but its header says {record['header_frames']} "
            "(truncated or damaged?)")


def write_record(folder, video_path, header_frames, decoded_frames, images):
    """The folder's RECORD_FILE, written last: what the container promised and what was written."""
    record = dict(video=os.path.basename(video_path), video_bytes=os.path.getsize(video_path),
                  header_frames=header_frames, decoded_frames=decoded_frames, images=images)
    with open(os.path.join(folder, RECORD_FILE), "w") as file:
        json.dump(record, file)


def read_record(folder):
    """A folder's record as a dict; None if it has none (the public downloads, older versions), {}
    if it is unreadable."""
    try:
        with open(os.path.join(folder, RECORD_FILE)) as file:
            record = json.load(file)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def folder_state(folder, video_path, offset, verify=False):
    """-> COMPLETE, SHORT (complete, but the video decoded short: kept until the video file changes,
    so that a rerun does not decode it again for nothing) or REDO (missing, incomplete, damaged).

    A folder is complete when it holds frame000001.jpg .. frameN.jpg with N as its record says or,
    with no record (the public downloads, older versions), N within the slack of is_short of the
    video's header count less `offset` (1 for flow: one image fewer than frames). One directory
    scan and one small read; the video is opened only for folders without a record; `verify`
    also decodes every JPEG (damaged_jpegs, as `check --decode`; grayscale for flow).
    """
    count = whole_count(folder)
    if not count:
        return REDO
    record = read_record(folder)
    if record is None:
        if is_short(media.video_frame_count(video_path) - offset, count):
            return REDO
    elif record.get("images") != count:
        return REDO
    if verify and any(damaged_jpegs(folder, count, True, grayscale=offset == 1)):
        return REDO
    if shortfall(record):
        return SHORT if record.get("video_bytes") == file_size(video_path) else REDO
    return COMPLETE


def whole_count(folder):
    """N if `folder` holds frame000001.jpg .. frameN.jpg with none missing (and maybe dot files, such
    as its record), else 0. Compares the sorted names with a list made once: a rerun does this for
    every folder, so no name is parsed."""
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    hidden = 0
    while hidden < len(names) and names[hidden].startswith("."):  # "." sorts before digits and letters
        hidden += 1
    count = len(names) - hidden
    return count if names[hidden:] == frame_names(count) else 0


_frame_names = []  # frame000001.jpg, ...: grows to the longest video seen, then is sliced


def frame_names(count):
    _frame_names.extend(ucf101.FRAME_NAME.format(i) for i in range(len(_frame_names) + 1, count + 1))
    return _frame_names[:count]


def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return None


# ---------------------------------------------------------------------------- temporary folders

_locks = {}  # parent folder -> (token, open lock file) of this process
_locks_lock = threading.Lock()  # the flow pipeline's threads start videos at the same time


def process_token(parent):
    """This process's token in `parent`: the name of a lock file (.<token>.lock) that it holds (flock)
    for as long as it lives, and part of the names of its temporary folders, so that others can
    tell its folders from those of a killed process (whose lock the kernel released)."""
    with _locks_lock:
        return _process_token(parent)


def _process_token(parent):
    if parent not in _locks:
        os.makedirs(parent, exist_ok=True)
        while True:
            token = secrets.token_hex(8)
            path = os.path.join(parent, f".{token}{LOCK_SUFFIX}")
            file = open(path, "x")
            with contextlib.suppress(OSError):  # a file system without locks: others leave our folders alone
                fcntl.flock(file, fcntl.LOCK_EX)
            if same_file(file, path):
                break
            file.close()  # remove_stale took it for a dead process's lock before we held it
        _locks[parent] = (token, file)
    return _locks[parent][0]


def same_file(file, path):
    try:
        return os.stat(path).st_ino == os.fstat(file.fileno()).st_ino
    except FileNotFoundError:
        return False


def release_locks():
    for parent, (token, file) in list(_locks.items()):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(parent, f".{token}{LOCK_SUFFIX}"))
        file.close()
        del _locks[parent]


def temp_dir(final, role=""):
    """This process's temporary folder for `final`: .<video>.<token><role>.tmp beside it."""
    parent, name = os.path.split(final)
    return os.path.join(parent, f".{name}.{process_token(parent)}{role}{TEMP_SUFFIX}")


def remove_stale(parent):
    """Delete the temporary folders and lock files of processes no longer running (killed), and
    .<video>.tmp folders of older versions. Folders of processes still running are left alone."""
    try:
        with os.scandir(parent) as entries:
            names = [(e.name, e.is_dir()) for e in entries if e.name.startswith(".")]
    except FileNotFoundError:
        return
    temps = {}  # token -> its temporary folders
    for name, is_dir in names:
        if name.endswith(LOCK_SUFFIX) and not is_dir:
            temps.setdefault(name[1:-len(LOCK_SUFFIX)], [])
        elif name.endswith(TEMP_SUFFIX) and is_dir:
            temps.setdefault(name[:-len(TEMP_SUFFIX)].rsplit(".", 1)[-1][:TOKEN_CHARS], []).append(name)
    own = {token for folder, (token, _) in _locks.items() if folder == parent}
    for token, folders in temps.items():
        if token not in own:
            remove_if_dead(parent, token, folders)


def remove_if_dead(parent, token, folders):
    """Delete `folders` and the lock file of `token` if no process holds that lock."""
    lock_path = os.path.join(parent, f".{token}{LOCK_SUFFIX}")
    try:
        file = open(lock_path, "a")
    except FileNotFoundError:
        file = None  # an older version's folder, or the lock file is gone: nobody holds it
    with file or contextlib.nullcontext():
        if file:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return  # a running process (or a file system without locks: it may be one)
        for folder in folders:
            shutil.rmtree(os.path.join(parent, folder), ignore_errors=True)
        if file:
            with contextlib.suppress(FileNotFoundError):
                os.remove(lock_path)


@contextlib.contextmanager
def staging(finals):
    """This process's temporary folders for `finals`, deleted after the block (published or not)."""
    temps = fresh_temps(finals)
    try:
        yield temps
    finally:
        remove_folders(temps)


def publish_video(temps, finals, keep_existing):
    """Publish a video's complete folders in order -> True if this process's rename completed the video
    (published its last folder), False if another process's copy was there first and kept. Exactly one
    process completes each video, so the videos each process says it wrote add up to those written."""
    return [publish(temp, final, keep_existing) for temp, final in zip(temps, finals)][-1]


def fresh_temps(finals):
    """This process's temporary folders for `finals`, empty."""
    temps = [temp_dir(final) for final in finals]
    for temp in temps:
        shutil.rmtree(temp, ignore_errors=True)
        os.makedirs(temp)
    return temps


def remove_folders(folders):
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def publish(temp, final, keep_existing, tries=5):
    """Rename the complete folder `temp` to `final`: atomic, so readers and other processes see the
    whole folder or none. An existing `final` is left alone if keep_existing(final) (e.g. another
    process finished the video first) and ours discarded; otherwise it is moved aside and deleted.
    -> True if ours was published, False if the existing one was kept (the other process's rename won)."""
    aside = temp_dir(final, "-old")
    for _ in range(tries):
        try:
            os.rename(temp, final)
            break
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        if keep_existing(final):
            return False
        shutil.rmtree(aside, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.rename(final, aside)
    else:
        raise OSError(f"{final}: other processes kept replacing it; run again")
    shutil.rmtree(aside, ignore_errors=True)
    return True


# ---------------------------------------------------------------------------- extraction

def finals(job):
    """The output folders of a job: <out>/<video>, or <out>/u/<video> and <out>/v/<video> for flow."""
    if job.method:
        return [os.path.join(job.out, component, job.name) for component in "uv"]
    return [os.path.join(job.out, job.name)]


def keeps(job, offset):
    """keep_existing for publish: a complete folder stays unless --overwrite."""
    return lambda final: not job.overwrite and folder_state(final, job.path, offset, job.verify) != REDO


def extract_frames(job):
    """-> (the video's header frame count, the number of frames it decoded to, whether this process
    published it: publish_video)."""
    header = media.video_frame_count(job.path)
    with staging(finals(job)) as temps:
        count = 0
        for count, frame in enumerate(media.iter_video(job.path, job.size), 1):
            media.write_image(ucf101.frame_path(temps[0], count - 1), frame)
        if count == 0:
            raise DataError("OpenCV decoded no frames (unreadable or not a video)")
        write_record(temps[0], job.path, header, count, count)
        return header, count, publish_video(temps, finals(job), keeps(job, 0))


def extract_flow(job):
    """Flow image i lies between frames i and i+1, computed on the resized frames. -> as extract_frames."""
    header = media.video_frame_count(job.path)
    with staging(finals(job)) as temps:
        temp_u, temp_v = temps
        pairs = 0
        for pairs, flow in enumerate(media.iter_flow(media.iter_video(job.path, job.size), job.method, job.batch), 1):
            media.write_flow(ucf101.frame_path(temp_u, pairs - 1), ucf101.frame_path(temp_v, pairs - 1), flow)
        if pairs == 0:
            raise DataError("OpenCV decoded fewer than 2 frames (unreadable or not a video)")
        for temp in temps:
            write_record(temp, job.path, header, pairs + 1, pairs)
        return header, pairs + 1, publish_video(temps, finals(job), keeps(job, 1))


def attempt(extract_video, job):
    """-> Outcome: one bad video must not stop the others."""
    if done_elsewhere(job):
        return Outcome(job.path, done_elsewhere=True)
    try:
        header, decoded, published = extract_video(job)
    except Exception as error:  # reported in the summary at the end
        return failure(job, error)
    return completed(job, header, decoded, published)


def done_elsewhere(job):
    """True if another process has finished the job's folders since plan()."""
    offset = 1 if job.method else 0
    return not job.overwrite and all(folder_state(final, job.path, offset, job.verify) != REDO
                                     for final in finals(job))


def failure(job, error):
    return Outcome(job.path, error=f"{type(error).__name__}: {error}")


def completed(job, header, decoded, published=True):
    """The Outcome of a job written whole, damaged if its video decoded short of its header; done
    elsewhere unless this process `published` it (another's rename won the race)."""
    damage = shortfall(dict(header_frames=header, decoded_frames=decoded))
    return Outcome(job.path, damage=f"{damage}; its frames are kept in {finals(job)[0]}" if damage else "",
                   done_elsewhere=not published)


def attempt_frames(job):
    return attempt(extract_frames, job)


def attempt_flow(job):
    return attempt(extract_flow, job)


# ---------------------------------------------------------------------------- batched flow across videos
# tvl1_keras computes --batch-size pairs per device call. One process keeps the device busy (more would
# each compile and compete for its memory); threads around it decode videos and encode JPEGs
# (OpenCV releases the GIL in both), so that while the device computes batch k, batch k + 1 is
# decoded and batch k - 1 written. Batches mix videos: a video's pairs follow the previous video's
# in the same batch, so only the run's last batch is short.

@dataclass(eq=False)
class VideoFlow:
    """A video whose flow is in progress: its temporary u and v folders and how far it has got."""
    job: Job
    temps: list = field(default_factory=list)
    header: int = 0  # frames its header promises
    pairs: int = -1  # pairs it decoded to, once decoding has ended
    written: int = 0  # pairs written to temps
    ended: bool = False  # published, failed or done elsewhere: nothing more to do


class FlowPipeline:
    """Flow for many videos through one device: up to DECODE_THREADS decoding threads feed one stream
    of (video, pair) jobs cut into fixed batches (media.stream_flows), `workers` threads write each
    batch's JPEGs into its videos' temporary folders, and a video is published (records written,
    renamed into place) as soon as all its pairs are written. Grey uint8 frames go to the device and
    uint8 flow images (media.flow_images, quantised there) come back: a quarter of float32's bytes
    each way, and no quantisation on the host. Memory holds a few batches: the
    decoders block on a bounded queue, the device takes one batch while it computes another, and
    the writers take at most WRITE_BACKLOG batches."""
    WRITE_BACKLOG = 2  # batches computed but not yet written
    WRITE_CHUNK = 8  # pairs per writing task: a batch is written by several threads
    # With one decoding thread (one FFmpeg thread) and one writer the pipeline ran 800-970 pairs/s at
    # 340x256 on 2 shared cores (330 at load 5), about 2.5x the H200's kernel; more decoders add CPU
    # time and videos in flight, not speed (benchmarks/bench_flow_pipeline.py --host-cpu). Writers
    # stay at `workers`: on a network file system they mostly wait.
    DECODE_THREADS = 4

    def __init__(self, jobs, workers, progress):
        self.videos = [VideoFlow(job) for job in jobs]
        self.workers = max(1, workers)
        self.batch = jobs[0].batch if jobs else media.FLOW_BATCH
        self.pairs = queue.Queue(2 * self.batch)  # (video, index, first, second), or (video, None, ...) at its end
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.outcomes, self.progress = [], progress
        self.backlog = threading.BoundedSemaphore(self.WRITE_BACKLOG * -(-self.batch // self.WRITE_CHUNK))
        self.computed = 0  # pairs

    def run(self):
        """-> [Outcome] of every job."""
        with media.opencv_threads(1):  # our threads run OpenCV side by side
            return self.run_threads()

    def run_threads(self):
        decoders = ThreadPoolExecutor(min(self.workers, self.DECODE_THREADS), thread_name_prefix="decode")
        writers = ThreadPoolExecutor(self.workers, thread_name_prefix="write")
        try:
            for video in self.videos:
                decoders.submit(self.decode, video)
            for keys, images in media.stream_flows(self.stream(), self.batch, then=media.flow_images):
                self.computed += len(keys)
                for start in range(0, len(keys), self.WRITE_CHUNK):
                    self.backlog.acquire()
                    task = writers.submit(self.write, keys[start:start + self.WRITE_CHUNK],
                                          images[start:start + self.WRITE_CHUNK])
                    task.add_done_callback(lambda _: self.backlog.release())
            writers.shutdown()
        finally:
            self.stop.set()  # on an error or Ctrl-C: the threads stop at their next frame or pair
            decoders.shutdown(cancel_futures=True)
            writers.shutdown(cancel_futures=True)
            for video in self.videos:
                remove_folders(video.temps)  # published folders are renamed away: these are unfinished
        for video in self.videos:
            if not video.ended:  # a bug, not the video's fault: say so rather than lose it silently
                self.end(video, Outcome(video.job.path, error="left unfinished; run again"))
        return self.outcomes

    def stream(self):
        """(key, first, second) of every pair of every video, as the decoders deliver them."""
        decoding = len(self.videos)
        while decoding:
            video, index, first, second = self.pairs.get()
            if index is None:
                decoding -= 1
            else:
                yield (video, index), first, second

    def decode(self, video):
        """Decode a video into the pair queue, then mark its end there."""
        try:
            if done_elsewhere(video.job):
                self.end(video, Outcome(video.job.path, done_elsewhere=True))
                return
            video.header = media.video_frame_count(video.job.path)
            video.temps = fresh_temps(finals(video.job))
            count = 0
            for index, first, second in media.video_pairs(video.job.path, video.job.size):
                if not self.put((video, index, first, second)):
                    return
                count = index + 1
            if not count:
                raise DataError("OpenCV decoded fewer than 2 frames (unreadable or not a video)")
            self.advance(video, pairs=count)
        except Exception as error:  # reported in the summary at the end
            self.end(video, failure(video.job, error))
        finally:
            self.put((video, None, None, None))

    def put(self, item):
        """Queue an item, waiting for room unless the run stops -> False if it stopped."""
        while not self.stop.is_set():
            try:
                self.pairs.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def write(self, keys, images):
        """Write the u and v JPEGs of these pairs (media.flow_images) into their videos' temporary folders."""
        for (video, index), pair_images in zip(keys, images):
            if video.ended or self.stop.is_set():
                continue
            try:
                media.write_flow_images(*(ucf101.frame_path(temp, index) for temp in video.temps), pair_images)
            except Exception as error:
                self.end(video, failure(video.job, error))
            else:
                self.advance(video, written=1)

    def advance(self, video, written=0, pairs=None):
        """Count written pairs, or record the pair count once decoding ends; publish when complete."""
        with self.lock:
            video.written += written
            video.pairs = video.pairs if pairs is None else pairs
            complete = video.written == video.pairs and not video.ended
            video.ended |= complete  # this thread publishes it
        if complete:
            try:
                published = self.publish(video)
            except Exception as error:
                self.record(video, failure(video.job, error))
            else:
                self.record(video, completed(video.job, video.header, video.pairs + 1, published))

    def publish(self, video):
        """-> whether this process published the video (publish_video)."""
        job = video.job
        for temp in video.temps:
            write_record(temp, job.path, video.header, video.pairs + 1, video.pairs)
        published = publish_video(video.temps, finals(job), keeps(job, 1))
        remove_folders(video.temps)
        return published

    def end(self, video, outcome):
        """End a video before it is complete (failed, or done elsewhere), unless it has ended."""
        with self.lock:
            if video.ended:
                return
            video.ended = True
        self.record(video, outcome)

    def record(self, video, outcome):
        with self.lock:
            self.outcomes.append(outcome)
            self.progress.update()
        if outcome.error:
            remove_folders(video.temps)


def extract_flow_batched(jobs, workers, desc):
    """[Outcome] of every job, through FlowPipeline, with a progress bar and the pair rate."""
    started = time.monotonic()
    with tqdm(total=len(jobs), desc=desc, unit="video") as progress:
        pipeline = FlowPipeline(jobs, workers, progress)
        outcomes = pipeline.run()
    seconds = time.monotonic() - started
    if pipeline.computed:
        print(f"flow: {pipeline.computed:,} frame pairs in {seconds:.0f} s: {pipeline.computed / seconds:.1f} "
              f"pairs/s in batches of {pipeline.batch} (the first batch compiles)")
    return outcomes


def report(task, outcomes, complete, damaged_before):
    """Print a summary naming every failed and damaged video -> exit code (1 if any)."""
    failed = sorted((o.path, o.error) for o in outcomes if o.error)
    damaged = sorted(damaged_before + [(o.path, o.damage) for o in outcomes if o.damage])
    elsewhere = sum(o.done_elsewhere for o in outcomes)
    written = len(outcomes) - len(failed) - elsewhere
    print(f"{task}: {written} videos written, {complete + elsewhere} already complete"
          f"{f' ({elsewhere} by another process)' if elsewhere else ''}, {len(failed)} failed, "
          f"{len(damaged)} damaged")
    for path, error in failed:
        print(f"  failed: {path}: {error}")
    for path, damage in damaged:
        print(f"  damaged: {path}: {damage}. Replace the video and run again to redo it, or keep them")
    return 1 if failed or damaged else 0


def print_flow_estimate(jobs, method, size, workers):
    """Guess the run time from a sample of frame counts, so nobody starts 16 CPU-days by accident."""
    if not jobs:
        return
    sample = jobs[::max(1, len(jobs) // 20)]
    pairs = len(jobs) * max(np.mean([media.video_frame_count(job.path) for job in sample]) - 1, 0)
    workers = max(1, min(workers, len(jobs)))
    seconds = pairs * PAIR_SECONDS[method] * size[0] * size[1] / (320 * 240) / workers
    speed = (f"{PAIR_SECONDS[method]} s a pair at 320x240 on a 2-core CPU with JAX (far less on a GPU)"
             if method in media.BATCHED_FLOW_METHODS else f"{PAIR_SECONDS[method]} s a pair per core at 320x240")
    print(f"flow: {len(jobs)} videos, about {pairs:,.0f} frame pairs at {size[0]}x{size[1]}; {method} takes about "
          f"{speed}: roughly {duration(seconds)} with {workers} {'process' if workers == 1 else 'workers'}")
    if method == "tvl1":
        print("flow: TV-L1 is slow (all of UCF-101: about 16 CPU-days); --flow-method tvl1_keras on a GPU, the public "
              "ucf101_tvl1_flow download or --flow-method dis is much faster")


def duration(seconds):
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


# ---------------------------------------------------------------------------- check

def run_check(args):
    return check(args.data_dir, args.splits_dir, args.split, args.decode, args.workers)


def check(data_dir, splits_dir, split, decode, workers):
    """Check every video of a split's lists (check_video) in `workers` processes -> exit code."""
    if not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: no such folder. Point --data-dir at the folder holding "
                        f"{ucf101.RGB_DIR}/ and {ucf101.FLOW_DIR}/")
    videos = [video for subset in ("train", "test") for video in ucf101.load_index(data_dir, splits_dir, split, subset)]
    u_names, v_names = (ucf101.folder_names(os.path.join(data_dir, ucf101.FLOW_DIR, c)) for c in "uv")
    jobs = [CheckJob(video.name, ucf101.rgb_dir(data_dir, video.name),
                     ucf101.flow_dir(data_dir, "u", u_names.get(video.name.lower(), video.name)),
                     ucf101.flow_dir(data_dir, "v", v_names.get(video.name.lower(), video.name)),
                     decode) for video in videos]
    results = sorted(media.run_parallel(check_video, jobs, workers, desc="check", unit="video"))
    bad = [(name, problems) for name, problems in results if problems]
    for name, problems in bad:
        print(f"{name}: {'; '.join(problems)}")
    print(f"check: split {split}: {len(jobs) - len(bad)} of {len(jobs)} videos (train + test) complete"
          f"{'' if bad else ', all frames and flow present'}"
          f"{'' if decode else ' (JPEGs tested for truncation only; --decode decodes every one, slow)'}")
    if bad:
        print("check: `prepare_data.py frames` and `flow` run again (same --videos and --out) redo missing and "
              "incomplete folders; add --verify to redo those with truncated or unreadable JPEGs (it decodes "
              "every JPEG, as --decode)")
    return 1 if bad else 0


def check_video(job):
    """-> (video name, [problems]): frames present and numbered 1..n, as many as extraction recorded,
    none truncated (or, with decode, unreadable); u and v counts = frames - 1; the video not short
    of its header's frame count."""
    counts, problems, damage = {}, [], set()
    for kind, folder in (("RGB", job.rgb), ("flow u", job.u), ("flow v", job.v)):
        numbers = frame_numbers(folder)
        counts[kind] = len(numbers)
        if not numbers:
            problems.append(f"{kind}: no frames in {folder}")
        elif numbers != list(range(1, len(numbers) + 1)):
            gap = min(set(range(1, len(numbers) + 1)) - set(numbers))
            problems.append(f"{kind}: {ucf101.FRAME_NAME.format(gap)} missing in {folder} ({len(numbers)} files)")
        else:
            record = read_record(folder)
            if record is not None and record.get("images") != len(numbers):
                problems.append(f"{kind}: {len(numbers)} images in {folder}, but extraction wrote "
                                f"{record.get('images', 'an unreadable record of')} ({RECORD_FILE})")
            damage.add(shortfall(record))
            problems += bad_jpegs(kind, folder, len(numbers), job.decode)
    if counts["flow u"] != counts["flow v"]:
        problems.append(f"{counts['flow u']} u but {counts['flow v']} v flow frames")
    elif counts["RGB"] and counts["flow u"] and counts["flow u"] != counts["RGB"] - 1:
        problems.append(f"{counts['flow u']} flow frames for {counts['RGB']} RGB frames "
                        f"(expected {counts['RGB'] - 1})")
    problems += [f"the video {text}" for text in sorted(damage - {""})]
    return job.name, problems


def frame_numbers(folder):
    """Sorted 1-based numbers of the frameNNNNNN.jpg files in `folder`."""
    try:
        with os.scandir(folder) as entries:
            return sorted(int(m[1]) for e in entries if (m := FRAME_FILE.match(e.name)))
    except (FileNotFoundError, NotADirectoryError):
        return []


def bad_jpegs(kind, folder, count, decode):
    """Problems with the JPEGs themselves (damaged_jpegs)."""
    truncated, unreadable = damaged_jpegs(folder, count, decode, grayscale=kind != "RGB")
    problems = [f"{kind}: {len(truncated)} truncated JPEGs, e.g. {truncated[0]}"] if truncated else []
    problems += [f"{kind}: {len(unreadable)} unreadable JPEGs, e.g. {unreadable[0]}"] if unreadable else []
    return problems


def damaged_jpegs(folder, count, decode, grayscale):
    """([truncated], [unreadable]) of frame000001.jpg .. frame<count>.jpg of `folder`: truncated
    (media.jpeg_truncated: reads each file's end) or, with `decode`, whole but unreadable (decodes each,
    grayscale for flow). The test of both `check --decode` and `frames`/`flow --verify`."""
    paths = [ucf101.frame_path(folder, i) for i in range(count)]
    truncated = [path for path in paths if media.jpeg_truncated(path)]
    cut = set(truncated)
    unreadable = [path for path in paths if decode and path not in cut and media.decode_image(path, grayscale) is None]
    return truncated, unreadable


# ---------------------------------------------------------------------------- synthetic

def run_synthetic(args):
    from twostream.datasets import synthetic  # only this command needs it

    if args.full:
        if not args.out:
            raise DataError("--full needs --out: the folder to write ucf101/, hmdb51/ and pool/ into")
        settings = synthetic.generate_full(args.out, args.full, fraction=args.fraction, seed=args.seed,
                                           overwrite=args.overwrite, workers=args.workers)
        print(f"{args.out}: UCF-101 {settings['ucf101_videos']} videos ({settings['ucf101_frames']:,} frames), "
              f"HMDB-51 {settings['hmdb51_clips']} clips; {settings['linked_files']:,} images hard-linked from pool/")
        return 0
    out = args.out or presets.PRESETS[presets.GENERATED[args.layout]]["data"]["data_dir"]
    settings = synthetic.generated_settings(out)
    if (settings and settings.get("dataset", "ucf101") == args.layout and settings["seed"] == args.seed
            and not args.overwrite):
        print(f"{out}: the {args.layout}-style dataset for seed {args.seed} is already there; nothing to do")
        return 0
    generate = synthetic.generate_hmdb51 if args.layout == "hmdb51" else synthetic.generate
    generate(out, seed=args.seed, overwrite=args.overwrite, workers=args.workers)
    return 0


# ---------------------------------------------------------------------------- command line

def frame_size(text):
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match or 0 in (int(match[1]), int(match[2])):
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 340x256")
    return int(match[1]), int(match[2])


def add_video_flags(parser, command):
    """--dataset, and the videos it reads and the folder it writes by default."""
    flags.add(parser, command, "--dataset")
    flags.add_flag(parser, command, "--videos", "folder of videos: UCF-101/<Class>/<video>.avi, HMDB-51's "
                   "<class>/<clip>.avi, or flat as `unrar e` leaves them")
    flags.add_flag(parser, command, "--out", "output folder")


def add_extraction_flags(parser, command):
    add_video_flags(parser, command)
    flags.add_flag(parser, command, "--size", "resize frames to WIDTHxHEIGHT before saving or computing flow "
                   "(default: 340x256, as jpegs_256)", type=frame_size, default=media.FRAME_SIZE)
    flags.add(parser, command, "--workers", "--overwrite")
    flags.add_flag(parser, command, "--verify", "also decode every JPEG of finished folders (in --workers processes) "
                   "and redo the videos with a truncated or unreadable one, as `check --decode` finds them (slow on "
                   "millions of files)", action="store_true")
    flags.add(parser, command, "--shard")


def add_command(commands, name, summary):
    return commands.add_parser(name, help=summary, description=summary, allow_abbrev=False)


def build_parser():
    parser = flags.parser(__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    splits = add_command(commands, "splits", "write classInd.txt and the train/test lists of splits 1-3: UCF-101's "
                         "from --videos or --official-zip, HMDB-51's converted from --official-dir")
    add_video_flags(splits, "splits")
    splits.add_argument("--official-zip", metavar="PATH",
                        help="extract the lists from UCF101TrainTestSplits-RecognitionTask.zip instead")
    splits.add_argument("--classes", metavar="classInd.txt",
                        help="class list to use (recommended for the flat layout, whose file names spell "
                             "HandstandPushups as HandStandPushups); default: the class folders found")
    splits.add_argument("--official-dir", metavar="DIR",
                        help=f"HMDB-51's layout: the {hmdb51.SPLITS_DIR} folder of test_train_splits.rar")
    splits.add_argument("--any-counts", action="store_true",
                        help="HMDB-51's layout: accept other numbers of classes and of clips per class than HMDB-51's "
                             "51 and 70/30 (a subset of it, or the generated mini dataset)")
    flags.add(splits, "splits", "--overwrite")
    splits.set_defaults(run=run_splits)

    frames = add_command(commands, "frames", "decode videos into resized JPEG frames")
    add_extraction_flags(frames, "frames")
    frames.set_defaults(run=run_frames)

    flow = add_command(commands, "flow", "compute quantised optical flow (u/ and v/ JPEGs) between frames")
    add_extraction_flags(flow, "flow")
    flags.add(flow, "flow", "--flow-method", "--batch-size")
    flow.set_defaults(run=run_flow)

    check = add_command(commands, "check", "report videos of a split with missing or inconsistent data")
    flags.add(check, "check", *flags.DATASET_FLAGS)
    check.add_argument("--decode", action="store_true",
                       help="also decode every JPEG (slow: millions of files); without it, JPEGs are only tested "
                            "for truncation (size, end-of-image marker)")
    flags.add(check, "check", "--workers")
    check.set_defaults(run=run_check)

    synthetic = add_command(commands, "synthetic", "generate a mini dataset (XviD videos and split lists)")
    synthetic.add_argument("--layout", choices=presets.LAYOUTS, default="ucf101",
                           help="ucf101: UCF-101's layout, 12 classes (--dataset synthetic); hmdb51: HMDB-51's layout "
                                "and official split files, 6 other classes (--dataset synthetic_hmdb) "
                                "(default: %(default)s)")
    synthetic.add_argument("--out", help="output folder (default: the generated dataset's folder, "
                                         f"{presets.PRESETS['synthetic']['data']['data_dir']} or "
                                         f"{presets.PRESETS['synthetic_hmdb']['data']['data_dir']})")
    flags.add(synthetic, "synthetic", "--seed", "--overwrite", "--workers")
    synthetic.add_argument("--full", metavar="LISTS_DIR",
                           help="instead, UCF-101 and HMDB-51 at their real shape, already extracted, for "
                                "rehearsing every command at full size (benchmarks/rehearsal.py): every video of "
                                "the official lists in LISTS_DIR (classInd.txt, the six lists, frame_counts.csv) "
                                "with its real frame count at 340x256, and 6,766 HMDB-style clips; a few distinct "
                                "JPEGs per class hard-linked into place, so it takes about 100 MB. Needs --out")
    synthetic.add_argument("--fraction", type=float, default=1.0,
                           help="with --full: keep this fraction of each class's videos, all classes "
                                "(default: %(default)s)")
    synthetic.set_defaults(run=run_synthetic)
    return parser


def parse_args(argv=None):
    """Parse, with the --dataset's folders (presets.py) for those not given."""
    args = build_parser().parse_args(argv)
    if "dataset" in args:
        for key, value in presets.values(args.dataset, args.command).items():
            if getattr(args, key, None) is None:
                setattr(args, key, value)
    return args


def main(argv=None):
    return errors.run(run_command, argv)


def run_command(argv):
    args = parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
