"""Prepare UCF-101 (or the generated mini dataset) for two-stream training: split lists, RGB
frames, optical flow, and a check that everything a split needs is on disk.

    python prepare_data.py synthetic --out data/synthetic
    python prepare_data.py splits --videos data/ucf101/UCF-101 --out splits
    python prepare_data.py splits --official-zip UCF101TrainTestSplits-RecognitionTask.zip --out splits
    python prepare_data.py frames --videos data/ucf101/UCF-101 --out data/ucf101/jpegs_256
    python prepare_data.py flow --videos data/ucf101/UCF-101 --out data/ucf101/tvl1_flow --method tvl1
    python prepare_data.py flow --videos data/ucf101/UCF-101 --out data/ucf101/tvl1_flow --method tvl1_keras
    python prepare_data.py flow --videos data/ucf101/UCF-101 --out data/ucf101/tvl1_flow --shard 3/8
    python prepare_data.py check --data-dir data/ucf101 --splits splits --split 1

`frames` and `flow` are resumable: each video is written into a temporary folder (.<video>.tmp)
and renamed into place when complete, so a rerun skips finished videos and redoes the rest.
TV-L1 (the paper's flow) runs at about 1 frame pair/s per core at 320x240: all of UCF-101 takes
about 16 CPU-days, so consider --method tvl1_keras on a GPU (the same algorithm, many pairs at a
time), the public ucf101_tvl1_flow download, or --method dis (~100x faster, approximate).

--shard K/N splits the work between N machines or the N tasks of a cluster job array: task K does
the videos whose name hashes to K (1 + crc32 of the lower-case name, mod N). Parts never overlap,
every machine agrees on them whatever videos it sees, each part resumes on its own, and `check`
verifies the whole once all N are done. `flow` records its method in <out>/flow_info.json.
"""
import argparse
import contextlib
import multiprocessing
import os
import re
import shutil
import sys
import zipfile
import zlib
from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm

import hmdb51
import media
import ucf101

OFFICIAL_LISTS = ["classInd.txt"] + [f"{kind}list{k:02d}.txt" for k in (1, 2, 3) for kind in ("train", "test")]
# Seconds per frame pair on one core at 320x240 (measured with OpenCV 4.13 on an x86 server core);
# tvl1_keras: per pair on a whole 2-core CPU with JAX (benchmarks/bench_flow.py; TensorFlow's CPU
# compiler is about 4x slower, a GPU far faster).
PAIR_SECONDS = {"tvl1": 1.0, "tvl1_keras": 0.6, "farneback": 0.015, "dis": 0.008}
FRAME_FILE = re.compile(r"^frame(\d{6})\.jpg$")
SYNTHETIC_DIRS = {"ucf101": "data/synthetic", "hmdb51": "data/synthetic_hmdb"}


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


@dataclass(frozen=True)
class CheckJob:
    name: str
    rgb: str
    u: str
    v: str
    decode: bool


# ---------------------------------------------------------------------------- splits

def run_splits(args):
    if args.dataset == "hmdb51":
        if not args.official_dir:
            raise ucf101.DataError(f"--dataset hmdb51 needs --official-dir: the {hmdb51.SPLITS_DIR} folder of "
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
        raise ucf101.DataError(f"{classes_path}: does not list the classes {', '.join(unknown[:5])}"
                               f"{' ...' if len(unknown) > 5 else ''} of the videos found")


def read_official_zip(path):
    """UCF101TrainTestSplits-RecognitionTask.zip -> {file name: lines} (ucfTrainTestlist/*.txt)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = {os.path.basename(name): name for name in archive.namelist()}
            missing = [file for file in OFFICIAL_LISTS if file not in members]
            if missing:
                raise ucf101.DataError(f"{path}: {', '.join(missing)} not in the zip; expected the official "
                                       "UCF101TrainTestSplits-RecognitionTask.zip")
            return {file: ucf101.parse_lines(archive.read(members[file]).decode("utf-8-sig"))
                    for file in OFFICIAL_LISTS}
    except (OSError, zipfile.BadZipFile) as error:
        raise ucf101.DataError(f"{path}: cannot read the zip ({error})") from error


def write_lists(lists, out, overwrite):
    """Write {file: lines}; refuse to replace an existing list that differs unless overwrite."""
    paths = {file: os.path.join(out, file) for file in lists}
    existing = {file for file, path in paths.items() if os.path.exists(path)}
    differing = [file for file in existing if ucf101.read_lines(paths[file]) != lists[file]]
    if differing and not overwrite:
        raise ucf101.DataError(f"{out}: {', '.join(sorted(differing))} already exist with other contents; "
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
    todo, complete = plan(args.videos, [args.out], args.overwrite, args.shard)
    jobs = [Job(path, name, args.out, args.size, args.overwrite) for path, name in todo]
    results = run_parallel(attempt_frames, jobs, args.workers, "frames")
    return report("frames", results, complete)


def run_flow(args):
    out_dirs = [os.path.join(args.out, component) for component in "uv"]
    todo, complete = plan(args.videos, out_dirs, args.overwrite, args.shard)
    record_flow_method(args.out, args.method, args.size, args.overwrite, complete)
    jobs = [Job(path, name, args.out, args.size, args.overwrite, args.method, args.batch) for path, name in todo]
    # A batched method keeps the device busy from this one process; more would each compile and
    # compete for the same device (and its memory).
    workers = 1 if args.method in media.BATCHED_FLOW_METHODS else args.workers
    print_flow_estimate(jobs, args.method, args.size, workers)
    results = run_parallel(attempt_flow, jobs, workers, f"flow ({args.method})")
    return report("flow", results, complete)


def record_flow_method(out, method, size, overwrite, complete):
    """Write <out>/flow_info.json; refuse to add flow of another method, size or bound to a folder
    that records one, unless --overwrite (which redoes every video)."""
    info, recorded = media.flow_info(method, size), media.read_flow_info(out)
    if recorded and not overwrite and any(recorded[key] != info[key] for key in ("method", "frame_size", "bound")):
        raise ucf101.DataError(
            f"{os.path.join(out, media.FLOW_INFO_FILE)}: this flow was computed with {recorded['method']} at "
            f"{'x'.join(map(str, recorded['frame_size']))} (bound {recorded['bound']}), not {method} at "
            f"{size[0]}x{size[1]}; pass --overwrite to recompute every video, or choose another --out")
    if complete and not recorded:
        print(f"flow: {out} holds flow without a record of its method; recording {method} for all of it")
    media.write_flow_info(out, info)


def shard_of(name, count):
    """The 1-based shard (of `count`) that video `name` belongs to: 1 + crc32(lower-case name) mod count.

    It depends on the name alone, so machines that see different copies of the video list agree.
    """
    return zlib.crc32(name.lower().encode("utf-8")) % count + 1


def plan(videos_dir, out_dirs, overwrite, shard=None):
    """-> ([(video path, output name)] still to do, number already complete), of shard (K, N) if given.

    A video is complete when its folder exists in every out dir (folders are renamed into place
    only when complete). Names match regardless of case: downloads spell some videos differently.
    """
    paths = [path for _, path in ucf101.find_videos(videos_dir)]
    if shard:
        total = len(paths)
        paths = [path for path in paths if shard_of(ucf101.video_name(path), shard[1]) == shard[0]]
        print(f"shard {shard[0]}/{shard[1]}: {len(paths)} of {total} videos")
    for folder in out_dirs:
        remove_temp_dirs(folder)
    on_disk = [ucf101.folder_names(folder) for folder in out_dirs]
    todo = []
    for path in paths:
        key = ucf101.video_name(path).lower()
        if overwrite or not all(key in names for names in on_disk):
            todo.append((path, next((names[key] for names in on_disk if key in names), ucf101.video_name(path))))
    return todo, len(paths) - len(todo)


def remove_temp_dirs(folder):
    """Delete .<video>.tmp folders left by a killed run."""
    if os.path.isdir(folder):
        for entry in os.scandir(folder):
            if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_dir():
                shutil.rmtree(entry.path)


@contextlib.contextmanager
def staging(finals, overwrite):
    """Temporary sibling folders for `finals`, renamed into place only if the block completes."""
    temps = [os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.tmp") for final in finals]
    for temp in temps:
        shutil.rmtree(temp, ignore_errors=True)
        os.makedirs(temp)
    try:
        yield temps
        for temp, final in zip(temps, finals):
            publish(temp, final, overwrite)
    finally:
        for temp in temps:
            shutil.rmtree(temp, ignore_errors=True)


def publish(temp, final, overwrite):
    if os.path.exists(final):
        if not overwrite:
            return  # e.g. u was renamed into place, then the run was killed before v
        shutil.rmtree(final)
    os.rename(temp, final)


def extract_frames(job):
    with staging([os.path.join(job.out, job.name)], job.overwrite) as (temp,):
        count = 0
        for count, frame in enumerate(media.iter_video(job.path, job.size), 1):
            media.write_image(ucf101.frame_path(temp, count - 1), frame)
        if count == 0:
            raise ucf101.DataError("OpenCV decoded no frames (unreadable or not a video)")


def extract_flow(job):
    """Flow image i lies between frames i and i+1, computed on the resized frames."""
    finals = [os.path.join(job.out, component, job.name) for component in "uv"]
    with staging(finals, job.overwrite) as (temp_u, temp_v):
        pairs = 0
        for pairs, flow in enumerate(media.iter_flow(media.iter_video(job.path, job.size), job.method, job.batch), 1):
            u, v = media.quantize_flow(flow)
            media.write_image(ucf101.frame_path(temp_u, pairs - 1), u)
            media.write_image(ucf101.frame_path(temp_v, pairs - 1), v)
        if pairs == 0:
            raise ucf101.DataError("OpenCV decoded fewer than 2 frames (unreadable or not a video)")


def attempt(extract, job):
    """-> (job, None) or (job, error message): one bad video must not stop the others."""
    try:
        extract(job)
        return job, None
    except Exception as error:  # reported in the summary at the end
        return job, f"{type(error).__name__}: {error}"


def attempt_frames(job):
    return attempt(extract_frames, job)


def attempt_flow(job):
    return attempt(extract_flow, job)


def run_parallel(work, jobs, workers, desc):
    """[work(job) for job in jobs] in `workers` processes (this one if 1), with a progress bar."""
    workers = max(1, min(workers, len(jobs)))
    # forkserver, not fork: a child forked from a process whose OpenCV thread pool has run can deadlock.
    context = multiprocessing.get_context("forkserver")
    pool = context.Pool(workers, initializer=cv2.setNumThreads, initargs=(1,)) if workers > 1 else None
    with pool or contextlib.nullcontext():
        results = pool.imap_unordered(work, jobs) if pool else map(work, jobs)
        return list(tqdm(results, total=len(jobs), desc=desc, unit="video"))


def report(task, results, complete):
    """Print a summary naming every failed video -> exit code (1 if any failed)."""
    failed = sorted((job.path, error) for job, error in results if error)
    print(f"{task}: {len(results) - len(failed)} videos written, {complete} already complete, {len(failed)} failed")
    for path, error in failed:
        print(f"  failed: {path}: {error}")
    return 1 if failed else 0


def print_flow_estimate(jobs, method, size, workers):
    """Guess the run time from a sample of frame counts, so nobody starts 16 CPU-days by accident."""
    if not jobs:
        return
    sample = jobs[::max(1, len(jobs) // 20)]
    pairs = len(jobs) * max(np.mean([frame_count(job.path) for job in sample]) - 1, 0)
    workers = max(1, min(workers, len(jobs)))
    seconds = pairs * PAIR_SECONDS[method] * size[0] * size[1] / (320 * 240) / workers
    speed = (f"{PAIR_SECONDS[method]} s a pair at 320x240 on a 2-core CPU with JAX (far less on a GPU)"
             if method in media.BATCHED_FLOW_METHODS else f"{PAIR_SECONDS[method]} s a pair per core at 320x240")
    print(f"flow: {len(jobs)} videos, about {pairs:,.0f} frame pairs at {size[0]}x{size[1]}; {method} takes about "
          f"{speed}: roughly {duration(seconds)} with {workers} {'process' if workers == 1 else 'workers'}")
    if method == "tvl1":
        print("flow: TV-L1 is slow (all of UCF-101: about 16 CPU-days); --method tvl1_keras on a GPU, the public "
              "ucf101_tvl1_flow download or --method dis is much faster")


def frame_count(path):
    capture = cv2.VideoCapture(path)
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    capture.release()
    return max(count, 0)


def duration(seconds):
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


# ---------------------------------------------------------------------------- check

def run_check(args):
    if not os.path.isdir(args.data_dir):
        raise ucf101.DataError(f"{args.data_dir}: no such folder. Point --data-dir at the folder holding "
                               f"{ucf101.RGB_DIR}/ and {ucf101.FLOW_DIR}/")
    videos = [video for subset in ("train", "test")
              for video in ucf101.load_index(args.data_dir, args.splits, args.split, subset)]
    u_names, v_names = (ucf101.folder_names(os.path.join(args.data_dir, ucf101.FLOW_DIR, c)) for c in "uv")
    jobs = [CheckJob(video.name, ucf101.rgb_dir(args.data_dir, video.name),
                     ucf101.flow_dir(args.data_dir, "u", u_names.get(video.name.lower(), video.name)),
                     ucf101.flow_dir(args.data_dir, "v", v_names.get(video.name.lower(), video.name)),
                     args.decode) for video in videos]
    # Without --decode each check is a few directory scans: processes would only add overhead.
    results = sorted(run_parallel(check_video, jobs, args.workers if args.decode else 1, "check"))
    bad = [(name, problems) for name, problems in results if problems]
    for name, problems in bad:
        print(f"{name}: {'; '.join(problems)}")
    print(f"check: split {args.split}: {len(jobs) - len(bad)} of {len(jobs)} videos (train + test) complete"
          f"{'' if bad else ', all frames and flow present'}")
    return 1 if bad else 0


def check_video(job):
    """-> (video name, [problems]): frames present and numbered 1..n, u and v counts = frames - 1."""
    counts, problems = {}, []
    for kind, folder in (("RGB", job.rgb), ("flow u", job.u), ("flow v", job.v)):
        numbers = frame_numbers(folder)
        counts[kind] = len(numbers)
        if not numbers:
            problems.append(f"{kind}: no frames in {folder}")
        elif numbers != list(range(1, len(numbers) + 1)):
            gap = min(set(range(1, len(numbers) + 1)) - set(numbers))
            problems.append(f"{kind}: {ucf101.FRAME_NAME.format(gap)} missing in {folder} ({len(numbers)} files)")
        elif job.decode:
            problems += unreadable(kind, folder, len(numbers))
    if counts["flow u"] != counts["flow v"]:
        problems.append(f"{counts['flow u']} u but {counts['flow v']} v flow frames")
    elif counts["RGB"] and counts["flow u"] and counts["flow u"] != counts["RGB"] - 1:
        problems.append(f"{counts['flow u']} flow frames for {counts['RGB']} RGB frames "
                        f"(expected {counts['RGB'] - 1})")
    return job.name, problems


def frame_numbers(folder):
    """Sorted 1-based numbers of the frameNNNNNN.jpg files in `folder`."""
    try:
        with os.scandir(folder) as entries:
            return sorted(int(m[1]) for e in entries if (m := FRAME_FILE.match(e.name)))
    except (FileNotFoundError, NotADirectoryError):
        return []


def unreadable(kind, folder, count):
    bad = [ucf101.frame_path(folder, i) for i in range(count)
           if media.read_image(ucf101.frame_path(folder, i), grayscale=kind != "RGB") is None]
    return [f"{kind}: {len(bad)} unreadable JPEGs, e.g. {bad[0]}"] if bad else []


# ---------------------------------------------------------------------------- synthetic

def run_synthetic(args):
    import synthetic  # only this command needs it

    out = args.out or SYNTHETIC_DIRS[args.dataset]
    settings = synthetic.generated_settings(out)
    if (settings and settings.get("dataset", "ucf101") == args.dataset and settings["seed"] == args.seed
            and not args.overwrite):
        print(f"{out}: the {args.dataset}-style dataset for seed {args.seed} is already there; nothing to do")
        return 0
    generate = synthetic.generate_hmdb51 if args.dataset == "hmdb51" else synthetic.generate
    generate(out, seed=args.seed, overwrite=args.overwrite, workers=args.workers)
    return 0


# ---------------------------------------------------------------------------- command line

def frame_size(text):
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match or 0 in (int(match[1]), int(match[2])):
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 340x256")
    return int(match[1]), int(match[2])


def positive(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive whole number")
    return int(text)


def parse_shard(text):
    """'K/N' -> (K, N) with 1 <= K <= N."""
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise argparse.ArgumentTypeError(f"{text!r}: expected K/N with 1 <= K <= N, e.g. 3/8")
    return int(match[1]), int(match[2])


def add_extraction_flags(parser, out):
    parser.add_argument("--videos", default="data/ucf101/UCF-101",
                        help="folder of videos: UCF-101/<Class>/<video>.avi, or flat as `unrar e` leaves them")
    parser.add_argument("--out", default=out, help="output folder (default: %(default)s)")
    parser.add_argument("--size", type=frame_size, default=media.FRAME_SIZE,
                        help="resize frames to WIDTHxHEIGHT before saving or computing flow "
                             "(default: 340x256, as jpegs_256)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes working on videos in parallel (default: all %(default)s cores)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo videos whose output already exists (default: skip them, so a rerun resumes)")
    parser.add_argument("--shard", type=parse_shard, metavar="K/N",
                        help="do only part K of N (1-based): the videos with 1 + crc32(lower-case video name) "
                             "mod N = K. The N parts never overlap and together are every video, whatever "
                             "list each machine sees; run K = 1..N on N machines or as a job array (e.g. "
                             "--shard $SLURM_ARRAY_TASK_ID/N), then `check` the whole (default: all videos)")


def add_command(commands, name, summary):
    return commands.add_parser(name, help=summary, description=summary)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    splits = add_command(commands, "splits", "write classInd.txt and the train/test lists of splits 1-3")
    splits.add_argument("--videos", default="data/ucf101/UCF-101",
                        help="folder of videos whose names give the lists (UCF-101/<Class>/<video>.avi or flat)")
    splits.add_argument("--out", default="splits", help="folder for the seven list files (default: %(default)s)")
    splits.add_argument("--official-zip", metavar="PATH",
                        help="extract the lists from UCF101TrainTestSplits-RecognitionTask.zip instead")
    splits.add_argument("--classes", metavar="classInd.txt",
                        help="class list to use (recommended for the flat layout, whose file names spell "
                             "HandstandPushups as HandStandPushups); default: the class folders found")
    splits.add_argument("--dataset", choices=("ucf101", "hmdb51"), default="ucf101",
                        help="ucf101: lists from --videos or --official-zip; hmdb51: converted from --official-dir "
                             "(default: %(default)s)")
    splits.add_argument("--official-dir", metavar="DIR",
                        help=f"hmdb51: the {hmdb51.SPLITS_DIR} folder of test_train_splits.rar")
    splits.add_argument("--any-counts", action="store_true",
                        help="hmdb51: accept other numbers of classes and of clips per class than HMDB-51's 51 "
                             "and 70/30 (a subset of it, or the generated mini dataset)")
    splits.add_argument("--overwrite", action="store_true", help="replace existing lists that differ")
    splits.set_defaults(run=run_splits)

    frames = add_command(commands, "frames", "decode videos into resized JPEG frames")
    add_extraction_flags(frames, "data/ucf101/jpegs_256")
    frames.set_defaults(run=run_frames)

    flow = add_command(commands, "flow", "compute quantised optical flow (u/ and v/ JPEGs) between frames")
    add_extraction_flags(flow, "data/ucf101/tvl1_flow")
    flow.add_argument("--method", choices=media.FLOW_METHODS, default="tvl1",
                      help="tvl1: the paper's flow, OpenCV's TV-L1, slow (about 1 frame pair/s per core at "
                           "320x240, 16 CPU-days for UCF-101); tvl1_keras: the same algorithm in Keras (tvl1.py), "
                           "--batch pairs at a time in this one process on the Keras backend's device, made for "
                           "a GPU (fastest with KERAS_BACKEND=jax); dis: ~100x faster; farneback: ~60x faster "
                           "(default: %(default)s)")
    flow.add_argument("--batch", type=positive, default=media.FLOW_BATCH,
                      help="frame pairs per call for tvl1_keras: larger keeps a GPU busier; each new size "
                           "compiles once (default: %(default)s)")
    flow.set_defaults(run=run_flow)

    check = add_command(commands, "check", "report videos of a split with missing or inconsistent data")
    check.add_argument("--data-dir", default="data/ucf101",
                       help=f"folder holding {ucf101.RGB_DIR}/ and {ucf101.FLOW_DIR}/ (default: %(default)s)")
    check.add_argument("--splits", default="splits", help="folder of classInd.txt and the lists (default: %(default)s)")
    check.add_argument("--split", type=int, choices=(1, 2, 3), default=1, help="which split's lists (default: 1)")
    check.add_argument("--decode", action="store_true", help="also decode every JPEG (slow: millions of files)")
    check.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                       help="processes decoding in parallel with --decode (default: %(default)s)")
    check.set_defaults(run=run_check)

    synthetic = add_command(commands, "synthetic", "generate the mini dataset (XviD videos and split lists)")
    synthetic.add_argument("--dataset", choices=("ucf101", "hmdb51"), default="ucf101",
                           help="ucf101: UCF-101's layout, 12 classes; hmdb51: HMDB-51's layout and official "
                                "split files, 6 other classes (default: %(default)s)")
    synthetic.add_argument("--out", help="output folder (default: data/synthetic, or data/synthetic_hmdb "
                                         "with --dataset hmdb51)")
    synthetic.add_argument("--seed", type=int, default=0, help="random seed; same seed, same dataset")
    synthetic.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    synthetic.add_argument("--workers", type=int, default=os.cpu_count(), help="processes writing videos")
    synthetic.set_defaults(run=run_synthetic)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ucf101.DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
