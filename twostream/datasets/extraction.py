"""Frames and flow of a folder of videos, for `prepare_data.py frames` and `flow` (extract): which
videos are still to do (plan), the one rule of a folder (one dataset: videos are added only with the
settings of those there), the videos done in worker processes (video_extraction) or through one device
(flow_pipeline), and the summary that names every failed and damaged video.

Resumable and safe to kill at any moment, or to run twice on one folder: only complete video folders
are ever under their final name, and each run first deletes what killed processes left
(atomic.remove_leftovers).
"""
import os

import numpy as np

from twostream.datasets import records, ucf101
from twostream.datasets.flow_pipeline import extract_flow_batched
from twostream.datasets.video_extraction import Job, attempt_flow, attempt_frames
from twostream.errors import DataError
from twostream.storage import atomic, locks
from twostream.storage.workers import run_parallel
from twostream.video import media

# Seconds per frame pair on one core at 320x240 (measured with OpenCV 4.13 on an x86 server core);
# tvl1_keras: per pair on a whole 2-core CPU with JAX (benchmarks/bench_flow.py; TensorFlow's CPU
# compiler is about 4x slower, a GPU far faster).
PAIR_SECONDS = {"tvl1": 1.0, "tvl1_keras": 0.6, "farneback": 0.015, "dis": 0.008}


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
            outcomes = run_parallel(attempt_flow if method else attempt_frames, jobs, workers,
                                    desc=f"flow ({method})" if method else "frames", unit="video")
    finally:
        locks.release_tokens()
        for parent in parents:
            atomic.remove_leftovers(parent)  # e.g. the temporary folders of workers stopped by Ctrl-C
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
        atomic.remove_leftovers(parent)
    on_disk = [ucf101.folder_names(parent) for parent in parents]
    videos = []  # (path, name, its folders, their states)
    for path in paths:
        key = ucf101.video_name(path).lower()
        name = next((names[key] for names in on_disk if key in names), ucf101.video_name(path))
        folders = ([] if overwrite or not all(key in names for names in on_disk) else
                   [os.path.join(parent, names[key]) for parent, names in zip(parents, on_disk)])
        videos.append((path, name, folders, [records.folder_state(folder, path, offset) for folder in folders]))
    damaged_folders = set()
    if verify:
        jobs = [(folder, offset == 1) for _, _, folders, states in videos if states and records.REDO not in states
                for folder in folders]
        damaged_folders = {folder for folder, damaged in run_parallel(
            verify_folder, jobs, workers, desc="verify", unit="folder") if damaged}
    todo, damaged = [], []
    for path, name, folders, states in videos:
        if not states or records.REDO in states or damaged_folders.intersection(folders):
            todo.append((path, name))
        elif records.SHORT in states:
            damage = records.shortfall(records.read_record(os.path.join(parents[0], name)))
            damaged.append((path, f"{damage}; its frames are kept in {os.path.join(parents[0], name)}"))
    return todo, len(paths) - len(todo) - len(damaged), damaged


def verify_folder(job):
    """(folder, grayscale) -> (folder, whether a JPEG of it is damaged: damaged_jpegs, decoding every one)."""
    folder, grayscale = job
    return folder, any(records.damaged_jpegs(folder, records.whole_count(folder), True, grayscale))


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
