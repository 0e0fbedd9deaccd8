"""Generated mini datasets whose labels need both streams: colour (in a frame) x motion (in the flow).

    python prepare_data.py synthetic --out data/synthetic      # calls generate() below

writes, deterministically from --seed, in the raw-video layout of UCF-101:
    data/synthetic/UCF-101/<Class>/v_<Class>_gXX_cYY.avi   XviD, 25 fps, 160x120
    data/synthetic/splits/{classInd.txt,trainlist0K.txt,testlist0K.txt}
    data/synthetic/synthetic.json                          how it was generated

Every class is a colour and a motion, e.g. RedExpand or BlueRotate (3 x 4 = 12 classes; classInd.txt
lists them colour by colour, so --class-limit 8 keeps two colours with all four motions):
- Colour is a tint added to a grey texture along a direction of zero luminance, so the grey image
  that flow is computed on is the same for every colour: a still frame shows the colour, flow
  cannot. A spatial stream alone is capped at 1/4 (it cannot tell the motions apart).
- Motion is an affine flow about the frame centre: Expand (u = kx, v = ky), Saddle (u = -kx,
  v = ky), Rotate (either direction) and Translate (horizontal, either direction). A still frame
  cannot show it, so a temporal stream alone is capped at 1/3. Averaging the two can reach 100%.
- Every class is unchanged by a horizontal mirror (rotation and translation take either direction
  as one class), so flip augmentation is label-safe. Expand and Saddle are the pair that a wrong
  flip of flow swaps: mirroring the u image without negating its values turns u = kx into u = -kx.
- The texture is a dense field of soft dots that each move with the flow and fade in and out over
  a short life, so no frame shows zoom blur, stretching or borders: every frame of every class has
  the same texture statistics.
- About a quarter of the videos are shorter than 35 frames (stacks of 10 must loop), and about a
  third have a camera pan (a constant drift, smaller than the class motion) on top.

generate_hmdb51() writes a second, HMDB-51-style mini dataset with other classes, so that a
multi-task model sees two different label sets (6 classes here, 12 above):
    <out>/hmdb51_org/<class>/<clip>.avi                     XviD, 30 fps, 160x120, 24 clips a class
    <out>/testTrainMulti_7030_splits/<class>_test_split<K>.txt   the official per-class format
    <out>/splits/                                           those converted by hmdb51.official_lists
    <out>/synthetic.json
Its classes are the three hues halfway between red, green and blue (yellow, cyan, magenta) with
Expand or Saddle, named in HMDB's lower_case style (cyan_expand): a spatial stream alone is capped
at 1/2, a temporal one at 1/3. Clip names are HMDB's "<source>_<class>_<tags>_<n>" with sources as
awkward as the real ones ('#', '(', ')', '!', '&', ',', ';', '.', a double '_', 100+ characters).
In each split a class has 14 training and 6 test clips (HMDB-51's 70/30 at a fifth) and 4 unused;
the two clips of a source are always on the same side, and the three test sets are disjoint.

generate_full() (prepare_data.py synthetic --full) writes UCF-101 and HMDB-51 at their real shape and
size, already extracted, for the full-size rehearsal (benchmarks/rehearsal.py): see its section below.
"""
import functools
import json
import os
import shutil
from dataclasses import dataclass

import cv2
import numpy as np

import prepare_data
from twostream.datasets import hmdb51, ucf101
from twostream.errors import DataError
from twostream.video import media

# Tint directions in the (Cb, Cr) chroma plane (BT.601): the hue angles of pure red, green, blue.
COLOURS = {"Red": 108.7, "Green": 231.7, "Blue": 350.8}
MOTIONS = ("Expand", "Rotate", "Saddle", "Translate")
CLASSES = sorted(((c + m, c, m) for c in COLOURS for m in MOTIONS), key=lambda cls: cls[0].lower())
CLASS_NAMES = [name for name, _, _ in CLASSES]  # the order of classInd.txt

# The HMDB-style dataset: hues halfway between the UCF-style ones, 57-62 degrees from each (jitter is +-15).
HMDB_COLOURS = {"Yellow": 170.8, "Cyan": 288.7, "Magenta": 51.7}
HMDB_MOTIONS = ("Expand", "Saddle")  # the pair that a wrong flip of flow swaps
HMDB_CLASSES = sorted((f"{c}_{m}".lower(), c, m) for c in HMDB_COLOURS for m in HMDB_MOTIONS)
HMDB_CLASS_NAMES = [name for name, _, _ in HMDB_CLASSES]
HUES = {**COLOURS, **HMDB_COLOURS}

FRAME_SIZE = (160, 120)  # (width, height) of the raw videos; prepare_data resizes later
FPS = 25
GROUPS = 25  # as UCF-101: split K tests on groups 7K-6..7K
MARKER = "synthetic.json"
HMDB_FPS = 30  # HMDB-51's clips are 30 fps

# Source videos of the HMDB-style clips, with the characters that break naive code (shell, glob,
# splitext, CSV): each gives two clips to every class.
HMDB_SOURCES = (
    "#20_Rhythm",
    "(Rad)Schlag_die_Bank!",
    "Pirates_of_the_Caribbean_&",
    "Faster,_Higher;_Stronger",
    "#122_Am_Strand__Teil_2",
    "Vol._2_(Live)",
    "A_Very_Long_Title_of_a_Home_Video_by_Somebody_Who_Never_Stops_Typing_Part_(3_of_12)_Final_Cut",
    "Tag&Nacht!!",
    "Cheers,_Mate",
    "(1)_Intro",
    "HMDB_STYLE_HOME_VIDEO",
    "plain_home_video",
)
CLIPS_PER_SOURCE = 2
HMDB_COUNTS = (14, 6)  # training and test clips a class in every split: HMDB-51's 70/30 at a fifth
HMDB_ROTATION = 4  # split K's sources are those of split 1 moved on by 4(K - 1): disjoint test sets
HMDB_TAGS = (("a", "f", "h", "l", "u"), ("cm", "nm"), ("np1", "np2", "np3"), ("fr", "ba", "le", "ri"),
             ("bad", "med", "goo"))  # body visible, camera motion, people, view, quality

# Motion and texture sizes are fractions of the frame width, so any FRAME_SIZE looks alike.
RATE = (0.03, 0.045)  # k of Expand/Saddle, and rad/frame of Rotate: mean 1.3-2 px/frame at 128x96
SPEED = (0.012, 0.02)  # Translate, x width per frame: 1.5-2.6 px/frame at 128x96
PAN = (0.003, 0.006)  # camera drift, x width per frame
PAN_SHARE = 1 / 3
SHORT_SHARE = 1 / 4
SHORT_FRAMES, LONG_FRAMES = (20, 30), (40, 70)
TINT = (26.0, 34.0)  # chroma radius
TINT_JITTER = 15.0  # degrees of hue
GREY_MEAN, GREY_STD, GREY_CLIP = 128.0, 25.0, 2.3  # clipped at 2.3 std: no channel ever saturates
DOT_SIGMAS = (0.012, 0.03)  # fine and coarse dots, x width
DOT_DENSITIES = (0.08, 0.012)  # dots alive per pixel^2 (at 160x120)
DOT_LIFE = 16  # frames from fade-in to fade-out


@dataclass(frozen=True)
class Clip:
    """Everything random about one video, drawn from default_rng((seed, label, group, clip))."""
    name: str
    label: int
    colour: str
    motion: str
    frames: int
    tint: tuple  # (Cb, Cr)
    step: tuple  # 2x2 affine map of one frame about the centre, row-major (a, b, c, d)
    shift: tuple  # (dx, dy) pixels per frame: Translate's motion plus the camera pan
    size: tuple  # (width, height)
    texture_seed: int


def make_clip(seed, label, group, clip, size=FRAME_SIZE):
    """Clip clip of group `group` of UCF-style class `label`: v_<Class>_gXX_cYY."""
    name = CLASSES[label][0]
    rng = np.random.default_rng((seed, label, group, clip))
    return draw_clip(f"v_{name}_g{group:02d}_c{clip:02d}", label, CLASSES[label], rng, size)


def draw_clip(name, label, cls, rng, size=FRAME_SIZE):
    """A clip of class cls = (name, colour, motion): its length, tint, motion and texture seed."""
    _, colour, motion = cls
    width = size[0]
    frames = int(rng.integers(*SHORT_FRAMES, endpoint=True) if rng.random() < SHORT_SHARE
                 else rng.integers(*LONG_FRAMES, endpoint=True))
    hue = np.radians(HUES[colour] + rng.uniform(-TINT_JITTER, TINT_JITTER))
    radius = rng.uniform(*TINT)
    k = rng.uniform(*RATE)
    direction = rng.choice([-1.0, 1.0])
    shift = np.zeros(2)
    if motion == "Expand":
        step = np.diag([np.exp(k), np.exp(k)])
    elif motion == "Saddle":
        step = np.diag([np.exp(-k), np.exp(k)])
    elif motion == "Rotate":
        c, s = np.cos(k * direction), np.sin(k * direction)
        step = np.array([[c, -s], [s, c]])
    else:
        step = np.eye(2)
        shift[0] = direction * rng.uniform(*SPEED) * width
    if rng.random() < PAN_SHARE:
        angle = rng.uniform(0, 2 * np.pi)
        shift += rng.uniform(*PAN) * width * np.array([np.cos(angle), np.sin(angle)])
    return Clip(name, label, colour, motion, frames,
                (radius * np.cos(hue), radius * np.sin(hue)), tuple(step.ravel()), tuple(shift),
                tuple(size), int(rng.integers(2**31)))


# ---------------------------------------------------------------------------- rendering

# A dot's contrast over its life: it fades in and out, so births and deaths do not flicker.
ENVELOPE = np.sin(np.pi * (np.arange(DOT_LIFE) + 0.5) / DOT_LIFE)


def birth_box(step, shift, width, height, margin):
    """Bounding box of every point whose dot can be in view (plus margin) during its life."""
    inverse = np.linalg.inv(step)
    half = np.array([width / 2 + margin, height / 2 + margin])
    corners = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]]) * half
    reached = [corners]
    for _ in range(DOT_LIFE):
        corners = (corners - shift) @ inverse.T  # one frame back
        reached.append(corners)
    reached = np.concatenate(reached)
    return reached.min(0), reached.max(0)


class DotField:
    """Dots born uniformly in the birth box, moved each frame by p -> step p + shift."""

    def __init__(self, rng, step, shift, density, width, height, margin):
        self.rng, self.step, self.shift = rng, step, shift
        self.low, self.high = birth_box(step, shift, width, height, margin)
        area = np.prod(self.high - self.low)
        # An expansion thins dots out with age; more births keep the visible contrast the same.
        thinning = np.linalg.det(step) ** -np.arange(DOT_LIFE)
        compensation = np.sum(ENVELOPE**2) / np.sum(ENVELOPE**2 * thinning)
        self.births = density * area * compensation / DOT_LIFE
        self.positions = np.zeros((0, 2))
        self.ages = np.zeros(0, int)
        self.amplitudes = np.zeros(0)

    def advance(self):
        self.positions = self.positions @ self.step.T + self.shift
        self.ages = self.ages + 1
        alive = self.ages < DOT_LIFE
        count = self.rng.poisson(self.births)
        born = self.rng.uniform(self.low, self.high, (count, 2))
        self.positions = np.concatenate([self.positions[alive], born])
        self.ages = np.concatenate([self.ages[alive], np.zeros(count, int)])
        self.amplitudes = np.concatenate([self.amplitudes[alive], self.rng.standard_normal(count)])

    def splat(self, width, height, margin):
        """Dot amplitudes on the frame grid plus margin, spread bilinearly for sub-pixel motion."""
        w, h = width + 2 * margin, height + 2 * margin
        x = self.positions[:, 0] + (w / 2 - 0.5)
        y = self.positions[:, 1] + (h / 2 - 0.5)
        inside = (x >= 0) & (x < w - 1) & (y >= 0) & (y < h - 1)  # the rest are out of sight
        x, y = x[inside], y[inside]
        weight = (self.amplitudes * ENVELOPE[self.ages])[inside]
        x0, y0 = x.astype(int), y.astype(int)
        fx, fy = x - x0, y - y0
        corner = y0 * w + x0
        index = np.concatenate([corner, corner + 1, corner + w, corner + w + 1])
        share = np.concatenate([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
        return np.bincount(index, share * np.tile(weight, 4), h * w).astype(np.float32).reshape(h, w)


def chroma_offset(tint):
    """RGB offset of a (Cb, Cr) tint (BT.601): zero luminance, so grey images stay the same."""
    cb, cr = tint
    return np.float32([1.402 * cr, -0.344136 * cb - 0.714136 * cr, 1.772 * cb])


def render(clip):
    """The clip's frames: uint8 RGB, [frames, height, width, 3]."""
    width, height = clip.size
    rng = np.random.default_rng(clip.texture_seed)
    step, shift = np.array(clip.step).reshape(2, 2), np.array(clip.shift)
    scale = width / FRAME_SIZE[0]
    sigmas = [s * width for s in DOT_SIGMAS]
    margin = int(np.ceil(3 * max(sigmas)))
    fields = [DotField(rng, step, shift, d / scale**2, width, height, margin) for d in DOT_DENSITIES]
    chroma = chroma_offset(clip.tint)
    frames = np.empty((clip.frames, height, width, 3), np.uint8)
    for t in range(-DOT_LIFE, clip.frames):  # the first DOT_LIFE frames fill the field
        for field in fields:
            field.advance()
        if t < 0:
            continue
        grey = 0
        for field, sigma in zip(fields, sigmas):
            layer = cv2.GaussianBlur(field.splat(width, height, margin), (0, 0), sigma)
            layer = layer[margin:margin + height, margin:margin + width]
            grey = grey + (layer - layer.mean()) / (layer.std() + 1e-6)
        grey = np.clip((grey - grey.mean()) / (grey.std() + 1e-6), -GREY_CLIP, GREY_CLIP)
        frames[t] = np.clip(GREY_MEAN + 0.5 + GREY_STD * grey[..., None] + chroma, 0, 255).astype(np.uint8)
    return frames


def write_video(path, frames, fps=FPS):
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"XVID"), fps, (width, height))
    if not writer.isOpened():
        raise DataError(f"{path}: OpenCV cannot write XviD video here (no FFmpeg backend?)")
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


# ---------------------------------------------------------------------------- the dataset

def make_clips(seed=0, groups=GROUPS, clips=1, size=FRAME_SIZE, classes=CLASS_NAMES):
    """Clips of the named classes; a clip's randomness does not depend on which others are made."""
    return [make_clip(seed, CLASS_NAMES.index(name), group, c, size)
            for name in classes for group in range(1, groups + 1) for c in range(1, clips + 1)]


def generated_settings(out_dir):
    """The settings an earlier generate() wrote into out_dir, or None if it holds no generated dataset."""
    try:
        with open(os.path.join(out_dir, MARKER)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def check_target(out_dir, overwrite):
    """Refuse to replace anything but an earlier generated dataset, and that only with overwrite."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DataError(f"{out_dir}: is a file, not a folder; choose another --out")
    if not os.path.isdir(out_dir) or not os.listdir(out_dir):
        return
    if not os.path.isfile(os.path.join(out_dir, MARKER)):
        raise DataError(f"{out_dir}: already holds files that synthetic.py did not generate; "
                               "choose another --out or empty it yourself")
    if not overwrite:
        raise DataError(f"{out_dir}: a generated dataset is already there; pass --overwrite to "
                               "replace it (its frames and flow go too, as they would no longer match)")


def start(out_dir, overwrite):
    """-> (out_dir, the <out_dir>.partial folder to write the dataset into) once check_target allows it."""
    out_dir = os.path.normpath(out_dir)
    check_target(out_dir, overwrite)
    partial = out_dir + ".partial"
    shutil.rmtree(partial, ignore_errors=True)  # left by a killed run
    os.makedirs(partial)
    return out_dir, partial


def write_clip(job):
    clip, folder, fps = job
    os.makedirs(folder, exist_ok=True)
    write_video(os.path.join(folder, clip.name + ".avi"), render(clip), fps)


def write_clips(jobs, workers, progress):
    """Render and write [(clip, folder, fps)], in `workers` processes if more than 1."""
    run_jobs(write_clip, jobs, workers, progress, "synthetic videos")


def run_jobs(work, jobs, workers, progress, desc):
    """work(job) for every job, in `workers` processes if more than 1 (media.run_parallel), with a progress bar."""
    media.run_parallel(work, jobs, workers, max(1, len(jobs) // (100 * workers)), desc=desc, disable=not progress,
                       mininterval=5)


def finish(partial, out_dir, settings):
    """Write the marker, then move the complete dataset into place."""
    with open(os.path.join(partial, MARKER), "w") as f:
        json.dump(settings, f, indent=1)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)  # empty, or a generated dataset that check_target let us replace
    os.rename(partial, out_dir)


def generate(out_dir, seed=0, overwrite=False, groups=GROUPS, clips=1, size=FRAME_SIZE, classes=CLASS_NAMES,
             workers=1, progress=True):
    """Write the mini dataset under out_dir -> [(class, video path)], as ucf101.find_videos lists them.

    It is written to <out_dir>.partial and renamed into place when complete, so a kill never
    leaves half a dataset. With overwrite, an earlier generated dataset at out_dir (with the frames
    and flow extracted from it) is replaced; a folder holding anything else is never touched.
    """
    unknown = set(classes) - set(CLASS_NAMES)
    if unknown:
        raise DataError(f"unknown synthetic classes {sorted(unknown)}; choose from {CLASS_NAMES}")
    classes = [name for name in CLASS_NAMES if name in classes]  # classInd.txt order
    out_dir, partial = start(out_dir, overwrite)
    jobs, videos = [], []
    for clip in make_clips(seed, groups, clips, size, classes):
        cls = CLASS_NAMES[clip.label]
        jobs.append((clip, os.path.join(partial, "UCF-101", cls), FPS))
        videos.append((cls, os.path.join(out_dir, "UCF-101", cls, clip.name + ".avi")))
    write_clips(jobs, workers, progress)
    os.makedirs(os.path.join(partial, "splits"))
    for file, lines in ucf101.make_splits(videos, classes).items():
        ucf101.write_lines(os.path.join(partial, "splits", file), lines)
    finish(partial, out_dir, {"dataset": "ucf101", "seed": seed, "groups": groups, "clips": clips,
                              "size": list(size), "fps": FPS,
                              "classes": [{"name": n, "colour": c, "motion": m} for n, c, m in CLASSES
                                          if n in classes]})
    return videos


# ---------------------------------------------------------------------------- the HMDB-style dataset

def hmdb51_split_id(source, split):
    """The official id of a clip from source `source` in split `split`: "1" training, "2" test, "0" unused."""
    place = (source - HMDB_ROTATION * (split - 1)) % len(HMDB_SOURCES)
    test_sources = HMDB_COUNTS[1] // CLIPS_PER_SOURCE
    train_sources = HMDB_COUNTS[0] // CLIPS_PER_SOURCE
    if place < test_sources:
        return hmdb51.TEST
    return hmdb51.UNUSED if place < len(HMDB_SOURCES) - train_sources else hmdb51.TRAIN


def make_hmdb51_clips(seed=0, size=FRAME_SIZE, classes=HMDB_CLASS_NAMES):
    """[(clip, source index)] of the named classes, CLIPS_PER_SOURCE from each source, HMDB-named:
    "<source>_<class>_<body>_<camera>_<people>_<view>_<quality>_<n>", tags drawn with the clip."""
    clips = []
    for label, cls in enumerate(HMDB_CLASSES):
        if cls[0] not in classes:
            continue
        for source, title in enumerate(HMDB_SOURCES):
            for n in range(CLIPS_PER_SOURCE):
                rng = np.random.default_rng((seed, hmdb51.NUM_CLASSES, label, source, n))  # 5 numbers: not a UCF key
                tags = "_".join(str(rng.choice(choices)) for choices in HMDB_TAGS)
                clips.append((draw_clip(f"{title}_{cls[0]}_{tags}_{n}", label, cls, rng, size), source))
    return clips


def write_official_split(path, clips, split, crlf=False):
    """One <class>_test_split<K>.txt as the official ones are: sorted by name, a space after the id."""
    lines = sorted(f"{clip.name}.avi {hmdb51_split_id(source, split)} " for clip, source in clips)
    with open(path, "w", newline="\r\n" if crlf else "\n") as f:
        f.write("\n".join(lines) + "\n")


def generate_hmdb51(out_dir, seed=0, overwrite=False, size=FRAME_SIZE, classes=HMDB_CLASS_NAMES, workers=1,
                    progress=True):
    """Write the HMDB-style mini dataset under out_dir -> [(class, video path)] of every clip, the
    unused ones too, as ucf101.find_videos lists them. Like generate(): written to .partial first,
    and replacing only an earlier generated dataset, with overwrite. Every other class's split
    files have CRLF line ends, as some of HMDB-51's have."""
    unknown = set(classes) - set(HMDB_CLASS_NAMES)
    if unknown:
        raise DataError(f"unknown HMDB-style classes {sorted(unknown)}; choose from {HMDB_CLASS_NAMES}")
    out_dir, partial = start(out_dir, overwrite)
    clips = make_hmdb51_clips(seed, size, classes)
    official = os.path.join(partial, hmdb51.SPLITS_DIR)
    os.makedirs(official)
    for label, cls in enumerate(HMDB_CLASS_NAMES):
        own = [(clip, source) for clip, source in clips if clip.label == label]
        for split in ucf101.SPLITS:
            if own:
                write_official_split(hmdb51.split_file(official, cls, split), own, split, crlf=label % 2 == 1)
    os.makedirs(os.path.join(partial, "splits"))
    for file, lines in hmdb51.official_lists(official, HMDB_COUNTS, len(classes)).items():
        ucf101.write_lines(os.path.join(partial, "splits", file), lines)
    folders = [os.path.join(hmdb51.VIDEOS_DIR, HMDB_CLASS_NAMES[clip.label]) for clip, _ in clips]
    write_clips([(clip, os.path.join(partial, folder), HMDB_FPS) for (clip, _), folder in zip(clips, folders)],
                workers, progress)
    finish(partial, out_dir, {"dataset": "hmdb51", "seed": seed, "size": list(size), "fps": HMDB_FPS,
                              "counts": list(HMDB_COUNTS),
                              "classes": [{"name": n, "colour": c, "motion": m} for n, c, m in HMDB_CLASSES
                                          if n in classes]})
    videos = [(HMDB_CLASS_NAMES[clip.label], os.path.join(out_dir, folder, clip.name + ".avi"))
              for (clip, _), folder in zip(clips, folders)]
    return sorted(videos, key=lambda v: (v[0].lower(), ucf101.video_name(v[1]).lower()))


# ---------------------------------------------------------------------------- full-size shapes

# generate_full() writes UCF-101 and HMDB-51 at their real size, already extracted, for rehearsing
# every command at full scale (benchmarks/rehearsal.py):
#     <out>/ucf101/splits/            the official classInd.txt and six lists (thinned by `fraction`)
#     <out>/ucf101/jpegs_256/<video>/frame000001.jpg ...   each video's real frame count (frame_counts.csv)
#     <out>/ucf101/tvl1_flow/{u,v}/<video>/frame000001.jpg ...   frames - 1 images; flow_info.json
#     <out>/hmdb51/testTrainMulti_7030_splits/   51 classes x 3 official split files (ids 0/1/2)
#     <out>/hmdb51/splits/, jpegs_256/, tvl1_flow/   as for UCF-101, 6,766 clips of drawn lengths
#     <out>/pool/<dataset>/<class>/   the only image data: POOL_FRAMES distinct frames of the class
#                                   (a colour of its own and one of the mini dataset's motions, at
#                                   340x256) and their DIS flow, hard-linked into every folder
# Every frame and flow folder has the record prepare_data.py writes after extraction, so `check`
# and training accept it as extracted; there are no videos. Disk: the pool (about 100 MB) and the
# directory entries (7.4 million, a few hundred MB of file-system metadata).
POOL_FRAMES = 12  # distinct frames a class; flow images cycle through POOL_FRAMES - 1 pairs
FULL_SIZE = (340, 256)  # media.FRAME_SIZE, the public jpegs_256 frames
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
    """POOL_FRAMES grey frames of `motion` at FULL_SIZE and their quantised DIS flow, which every
    class of that motion shares (flow cannot see colour). Rendered at FRAME_SIZE and resized: only
    the shape of the data matters here, and rendering at 340x256 takes minutes on 2 cores."""
    clip = draw_clip("pool", 0, ("pool", "Red", motion), np.random.default_rng(seed))
    grey = render(Clip(**{**clip.__dict__, "frames": POOL_FRAMES, "tint": (0.0, 0.0)}))
    frames = [cv2.resize(frame, FULL_SIZE, interpolation=cv2.INTER_LINEAR) for frame in grey]
    return frames, media.compute_flow(frames, "dis")


def render_pool(job):
    """Write a class's pool: POOL_FRAMES frames of its motion in its own hue, and the motion's flow."""
    folder, hue, motion, seed = job
    frames, flow = pool_motion(motion, seed)
    tint = np.mean(TINT) * np.array([np.cos(np.radians(hue)), np.sin(np.radians(hue))])
    os.makedirs(folder, exist_ok=True)
    for i, frame in enumerate(frames):
        media.write_image(os.path.join(folder, f"rgb{i}.jpg"),
                          np.clip(frame + chroma_offset(tint), 0, 255).astype(np.uint8))
    for i, (u, v) in flow.items():
        media.write_image(os.path.join(folder, f"u{i}.jpg"), u)
        media.write_image(os.path.join(folder, f"v{i}.jpg"), v)


def link_frames(pool, folder, count, prefix, record_name):
    """`count` frames hard-linked from the pool, frame i from the pool's (i mod size), and the record
    extraction writes last (prepare_data.write_record's fields; there is no video file)."""
    size = POOL_FRAMES - (prefix != "rgb")
    os.makedirs(folder)
    for i in range(count):
        os.link(os.path.join(pool, f"{prefix}{i % size}.jpg"), ucf101.frame_path(folder, i))
    frames = count + (prefix != "rgb")
    with open(os.path.join(folder, prepare_data.RECORD_FILE), "w") as f:
        json.dump(dict(video=record_name, video_bytes=0, header_frames=frames, decoded_frames=frames, images=count), f)


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
    run_jobs(link_video, [(root, os.path.join(pool_dir, video.cls), video) for video in videos], workers,
             progress, desc)
    media.write_flow_info(os.path.join(root, ucf101.FLOW_DIR), media.flow_info("dis", FULL_SIZE))
    return sum(3 * video.frames - 2 for video in videos)


def generate_full(out_dir, lists_dir, fraction=1.0, seed=0, overwrite=False, workers=1, progress=True):
    """Write UCF-101 (the official lists in lists_dir, with frame_counts.csv) and HMDB-51 at their real
    shape under out_dir, extracted (see above) -> the settings, also written to its MARKER.
    Written to <out_dir>.partial and renamed into place when complete, as generate()."""
    if not 0 < fraction <= 1:
        raise DataError(f"--fraction {fraction}: expected a number in (0, 1]")
    out_dir, partial = start(out_dir, overwrite)
    ucf_videos, ucf_lists = ucf101_full_videos(lists_dir, fraction)
    hmdb_videos, hmdb_clips, sources = hmdb51_full_clips(seed, fraction)
    ucf_classes = ucf101.read_classes(os.path.join(lists_dir, ucf101.CLASS_FILE))
    jobs = [(os.path.join(partial, "pool", "ucf101", cls), 360 * i / len(ucf_classes), MOTIONS[i % 4], seed)
            for i, cls in enumerate(ucf_classes)]
    jobs += [(os.path.join(partial, "pool", "hmdb51", cls), 360 * i / len(HMDB51_CLASS_NAMES) + 3,
              HMDB_MOTIONS[i % 2], seed) for i, cls in enumerate(HMDB51_CLASS_NAMES)]
    run_jobs(render_pool, jobs, workers, progress, "pool frames")

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
    settings = {"dataset": "full", "seed": seed, "fraction": fraction, "size": list(FULL_SIZE),
                "pool_frames": POOL_FRAMES, "ucf101_videos": len(ucf_videos),
                "ucf101_frames": sum(v.frames for v in ucf_videos), "hmdb51_clips": len(hmdb_videos),
                "hmdb51_frames": sum(v.frames for v in hmdb_videos), "hmdb51_counts": list(counts),
                "linked_files": files}
    finish(partial, out_dir, settings)
    return settings

