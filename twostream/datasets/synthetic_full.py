"""Datasets of UCF-101's and HMDB-51's full shape, already extracted (hard-linked JPEGs), for rehearsing
every command at full scale (benchmarks/rehearsal.py):

    python prepare_data.py synthetic --full LISTS_DIR --out data/full    # calls generate_full() below

writes UCF-101 and HMDB-51 at their real size:
    <out>/ucf101/splits/            the official classInd.txt and six lists (thinned by `fraction`)
    <out>/ucf101/jpegs_256/<video>/frame000001.jpg ...   each video's real frame count (frame_counts.csv)
    <out>/ucf101/tvl1_flow/{u,v}/<video>/frame000001.jpg ...   frames - 1 images; flow_info.json
    <out>/hmdb51/testTrainMulti_7030_splits/   51 classes x 3 official split files (ids 0/1/2)
    <out>/hmdb51/splits/, jpegs_256/, tvl1_flow/   as for UCF-101, 6,766 clips of drawn lengths
    <out>/pool/<dataset>/<class>/   the only image data: POOL_FRAMES distinct frames of the class
                                  (a colour of its own and one of the mini dataset's motions, at
                                  340x256) and their DIS flow, hard-linked into every folder
Every frame and flow folder has the record extraction writes last (records.py), so `check`
and training accept it as extracted; there are no videos. Disk: the pool (about 100 MB) and the
directory entries (7.4 million, a few hundred MB of file-system metadata).
"""
import functools
import os
from dataclasses import dataclass

import cv2
import numpy as np

from twostream.datasets import hmdb51, records, synthetic, ucf101
from twostream.datasets.synthetic import CLIPS_PER_SOURCE, HMDB_MOTIONS, HMDB_SOURCES, HMDB_TAGS, MOTIONS, TINT
from twostream.errors import DataError
from twostream.video import media

POOL_FRAMES = 12  # distinct frames a class; flow images cycle through POOL_FRAMES - 1 pairs
HMDB51_CLASS_NAMES = (
    "brush_hair", "cartwheel", "catch", "chew", "clap", "climb", "climb_stairs", "dive", "draw_sword", "dribble",
    "drink", "eat", "fall_floor", "fencing", "flic_flac", "golf", "handstand", "hit", "hug", "jump", "kick",
    "kick_ball", "kiss", "laugh", "pick", "pour", "pullup", "punch", "push", "pushup", "ride_bike", "ride_horse",
    "run", "shake_hands", "shoot_ball", "shoot_bow", "shoot_gun", "sit", "situp", "smile", "smoke", "somersault",
    "stand", "swing_baseball", "sword", "sword_exercise", "talk", "throw", "turn", "walk", "wave")
HMDB_CLIP_FRAMES = (90, 0.6, 19, 1000)  # drawn clip lengths: lognormal median, sigma, and the range kept


@dataclass(frozen=True)
class FullVideo:
    name: str  # folder name under jpegs_256/ and tvl1_flow/{u,v}/
    cls: str
    frames: int


def ucf101_full_videos(lists_dir, fraction=1.0):
    """The videos of the official lists in lists_dir with their real frame counts -> ([FullVideo],
    {list file: lines}). Below fraction 1, each class keeps an evenly spread fraction (at least one)
    of its split-1 training and of its test videos; the other lists keep only the videos kept."""
    lists = {file: ucf101.read_lines(os.path.join(lists_dir, file))
             for file in ucf101.LIST_FILES}
    with open(os.path.join(lists_dir, "frame_counts.csv")) as f:
        # name as spelt in frame_counts.csv (the folder name) and its count, by lower-case name: the
        # lists spell v_HandstandPushups_* as v_HandStandPushups_*
        counts = {row[0].lower(): row for line in f.readlines()[1:] if (row := line.strip().rsplit(",", 1))[0]}
    kept = set()
    for file in ("trainlist01.txt", "testlist01.txt"):
        by_class = {}
        for line in lists[file]:
            path = ucf101.list_path(line)
            by_class.setdefault(path.split("/")[0], []).append(path)
        for paths in by_class.values():
            keep = max(1, round(len(paths) * fraction))
            kept.update(paths[int(i * len(paths) / keep)] for i in range(keep))
    lists = {file: lines if file == ucf101.CLASS_FILE else [line for line in lines if ucf101.list_path(line) in kept]
             for file, lines in lists.items()}
    videos = [FullVideo(name, path.split("/")[0], int(frames))
              for path in sorted(kept) for name, frames in [counts[ucf101.video_name(path).lower()]]]
    return videos, lists


def hmdb51_full_clips(seed=0, fraction=1.0):
    """HMDB-51's shape: 51 classes, 6,766 clips (132 or 133 a class), in pairs from one source, with
    HMDB-style names (the odd characters of HMDB_SOURCES) and drawn lengths -> ([FullVideo],
    {class: [(clip, source index)]}, (training, test) clips a class in every split).
    Below fraction 1 each class keeps a fraction of its clips and of the 70/30 (at least a source each).
    The last source of a class with an odd count has one clip: it is never on either side."""
    test_sources = max(1, round(hmdb51.TEST_PER_CLASS / CLIPS_PER_SOURCE * fraction))
    train_sources = max(1, round(hmdb51.TRAIN_PER_CLASS / CLIPS_PER_SOURCE * fraction))
    rng = np.random.default_rng((seed, hmdb51.NUM_CLIPS))
    videos, by_class = [], {}
    base, extra = divmod(hmdb51.NUM_CLIPS, len(HMDB51_CLASS_NAMES))
    for label, cls in enumerate(HMDB51_CLASS_NAMES):
        full = base + (label < extra)
        count = max(round(full * fraction),
                    CLIPS_PER_SOURCE * (max(3 * test_sources, test_sources + train_sources) + 1))
        clips = []
        for i in range(count):
            source, n = divmod(i, CLIPS_PER_SOURCE)
            title = f"{HMDB_SOURCES[source % len(HMDB_SOURCES)]}{source // len(HMDB_SOURCES) or ''}"
            tags = "_".join(str(rng.choice(choices)) for choices in HMDB_TAGS)
            median, sigma, low, high = HMDB_CLIP_FRAMES
            frames = int(np.clip(rng.lognormal(np.log(median), sigma), low, high))
            name = f"{title}_{cls}_{tags}_{n}"
            clips.append((name, source))
            videos.append(FullVideo(name, cls, frames))
        by_class[cls] = clips
    return videos, by_class, (test_sources, train_sources)


def hmdb51_full_id(source, split, sources):
    """The official id of a clip from `source` in `split`, sources = (test, training) sources a class:
    split K tests on sources T(K-1) .. TK - 1 and trains on the first `training` of the others."""
    test, train = sources
    first = test * (split - 1)
    if first <= source < first + test:
        return hmdb51.TEST
    rank = source - test if source >= first + test else source  # among the sources not tested on
    return hmdb51.TRAIN if rank < train else hmdb51.UNUSED


@functools.lru_cache(maxsize=None)
def pool_motion(motion, seed):
    """POOL_FRAMES grey frames of `motion` at media.FRAME_SIZE and their quantised DIS flow, which every
    class of that motion shares (flow cannot see colour). Rendered at FRAME_SIZE and resized: only
    the shape of the data matters here, and rendering at 340x256 takes minutes on 2 cores."""
    clip = synthetic.draw_clip("pool", 0, ("pool", "Red", motion), np.random.default_rng(seed))
    grey = synthetic.render(synthetic.Clip(**{**clip.__dict__, "frames": POOL_FRAMES, "tint": (0.0, 0.0)}))
    frames = [cv2.resize(frame, media.FRAME_SIZE, interpolation=cv2.INTER_LINEAR) for frame in grey]
    return frames, media.compute_flow(frames, "dis")


def render_pool(job):
    """Write a class's pool: POOL_FRAMES frames of its motion in its own hue, and the motion's flow."""
    folder, hue, motion, seed = job
    frames, flow = pool_motion(motion, seed)
    tint = np.mean(TINT) * np.array([np.cos(np.radians(hue)), np.sin(np.radians(hue))])
    os.makedirs(folder, exist_ok=True)
    for i, frame in enumerate(frames):
        media.write_image(os.path.join(folder, f"rgb{i}.jpg"),
                          np.clip(frame + synthetic.chroma_offset(tint), 0, 255).astype(np.uint8))
    for i, (u, v) in flow.items():
        media.write_image(os.path.join(folder, f"u{i}.jpg"), u)
        media.write_image(os.path.join(folder, f"v{i}.jpg"), v)


def link_frames(pool, folder, count, prefix, record_name):
    """`count` frames hard-linked from the pool, frame i from the pool's (i mod size), and the record
    extraction writes last (records.write_record's fields; there is no video file)."""
    size = POOL_FRAMES - (prefix != "rgb")
    os.makedirs(folder)
    for i in range(count):
        os.link(os.path.join(pool, f"{prefix}{i % size}.jpg"), ucf101.frame_path(folder, i))
    frames = count + (prefix != "rgb")
    records.save_record(folder, dict(video=record_name, video_bytes=0, header_frames=frames, decoded_frames=frames,
                                     images=count))


def link_video(job):
    """A video's frame folder and its u and v flow folders."""
    root, pool, video = job
    link_frames(pool, ucf101.rgb_dir(root, video.name), video.frames, "rgb", video.name + ".avi")
    for component in "uv":
        link_frames(pool, ucf101.flow_dir(root, component, video.name), video.frames - 1, component,
                    video.name + ".avi")


def link_dataset(root, pool_dir, videos, workers, progress, desc):
    """jpegs_256/, tvl1_flow/{u,v}/ and flow_info.json of `videos` -> the number of images linked."""
    for component in "uv":
        os.makedirs(os.path.join(root, ucf101.FLOW_DIR, component))
    synthetic.run_jobs(link_video, [(root, os.path.join(pool_dir, video.cls), video) for video in videos], workers,
                       progress, desc)
    media.write_flow_info(os.path.join(root, ucf101.FLOW_DIR), media.flow_info("dis", media.FRAME_SIZE))
    return sum(3 * video.frames - 2 for video in videos)


def generate_full(out_dir, lists_dir, fraction=1.0, seed=0, overwrite=False, workers=1, progress=True):
    """Write UCF-101 (the official lists in lists_dir, with frame_counts.csv) and HMDB-51 at their real
    shape under out_dir, extracted (see above) -> the settings, also written to its MARKER.
    Written to a temporary folder and renamed into place when complete, as synthetic.generate()."""
    if not 0 < fraction <= 1:
        raise DataError(f"--fraction {fraction}: expected a number in (0, 1]")
    with synthetic.writing_dataset(out_dir, overwrite) as (out_dir, partial):
        settings = write_full(partial, lists_dir, fraction, seed, workers, progress)
        synthetic.write_marker(partial, settings)
    return settings


def write_full(partial, lists_dir, fraction, seed, workers, progress):
    """generate_full's datasets, written into `partial` -> their settings."""
    ucf_videos, ucf_lists = ucf101_full_videos(lists_dir, fraction)
    hmdb_videos, hmdb_clips, sources = hmdb51_full_clips(seed, fraction)
    ucf_classes = ucf101.read_classes(os.path.join(lists_dir, ucf101.CLASS_FILE))
    jobs = [(os.path.join(partial, "pool", "ucf101", cls), 360 * i / len(ucf_classes), MOTIONS[i % 4], seed)
            for i, cls in enumerate(ucf_classes)]
    jobs += [(os.path.join(partial, "pool", "hmdb51", cls), 360 * i / len(HMDB51_CLASS_NAMES) + 3,
              HMDB_MOTIONS[i % 2], seed) for i, cls in enumerate(HMDB51_CLASS_NAMES)]
    synthetic.run_jobs(render_pool, jobs, workers, progress, "pool frames")

    ucf = os.path.join(partial, "ucf101")
    os.makedirs(os.path.join(ucf, "splits"))
    for file, lines in ucf_lists.items():
        ucf101.write_lines(os.path.join(ucf, "splits", file), lines)
    hmdb = os.path.join(partial, "hmdb51")
    official = os.path.join(hmdb, hmdb51.SPLITS_DIR)
    os.makedirs(official)
    for cls, clips in hmdb_clips.items():
        for split in ucf101.SPLITS:
            lines = sorted(f"{name}.avi {hmdb51_full_id(source, split, sources)} " for name, source in clips)
            with open(hmdb51.split_file(official, cls, split), "w") as f:
                f.write("\n".join(lines) + "\n")
    counts = (CLIPS_PER_SOURCE * sources[1], CLIPS_PER_SOURCE * sources[0])
    os.makedirs(os.path.join(hmdb, "splits"))
    for file, lines in hmdb51.official_lists(official, counts, len(HMDB51_CLASS_NAMES)).items():
        ucf101.write_lines(os.path.join(hmdb, "splits", file), lines)

    files = link_dataset(ucf, os.path.join(partial, "pool", "ucf101"), ucf_videos, workers, progress, "UCF-101 folders")
    files += link_dataset(hmdb, os.path.join(partial, "pool", "hmdb51"), hmdb_videos, workers, progress,
                          "HMDB-51 folders")
    return {"dataset": "full", "seed": seed, "fraction": fraction, "size": list(media.FRAME_SIZE),
            "pool_frames": POOL_FRAMES, "ucf101_videos": len(ucf_videos),
            "ucf101_frames": sum(v.frames for v in ucf_videos), "hmdb51_clips": len(hmdb_videos),
            "hmdb51_frames": sum(v.frames for v in hmdb_videos), "hmdb51_counts": list(counts),
            "linked_files": files}
