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

synthetic_full.generate_full() (prepare_data.py synthetic --full) writes UCF-101 and HMDB-51 at their real
shape and size, already extracted, for the full-size rehearsal (benchmarks/rehearsal.py).
"""
import contextlib
import json
import os
from dataclasses import dataclass

import cv2
import numpy as np

from twostream.datasets import hmdb51, ucf101
from twostream.errors import DataError
from twostream.storage import atomic
from twostream.storage.workers import run_parallel

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


@contextlib.contextmanager
def writing_dataset(out_dir, overwrite):
    """-> (out_dir, the folder to write the dataset into) once check_target allows it: a temporary folder
    beside out_dir, renamed into place when the block ends (atomic.replacing_folder), replacing an
    earlier generated dataset; on an error or a kill, out_dir is left as it was."""
    out_dir = os.path.normpath(out_dir)
    check_target(out_dir, overwrite)
    with atomic.replacing_folder(out_dir) as partial:
        yield out_dir, partial


def write_clip(job):
    clip, folder, fps = job
    os.makedirs(folder, exist_ok=True)
    write_video(os.path.join(folder, clip.name + ".avi"), render(clip), fps)


def write_clips(jobs, workers, progress):
    """Render and write [(clip, folder, fps)], in `workers` processes if more than 1."""
    run_jobs(write_clip, jobs, workers, progress, "synthetic videos")


def run_jobs(work, jobs, workers, progress, desc):
    """work(job) for every job, in `workers` processes if more than 1 (workers.run_parallel), with a progress bar."""
    run_parallel(work, jobs, workers, max(1, len(jobs) // (100 * workers)), desc=desc, disable=not progress,
                 mininterval=5)


def write_marker(partial, settings):
    """Write the marker, last: the dataset is complete (writing_dataset then moves it into place)."""
    with open(os.path.join(partial, MARKER), "w") as f:
        json.dump(settings, f, indent=1)


def generate(out_dir, seed=0, overwrite=False, groups=GROUPS, clips=1, size=FRAME_SIZE, classes=CLASS_NAMES,
             workers=1, progress=True):
    """Write the mini dataset under out_dir -> [(class, video path)], as ucf101.find_videos lists them.

    It is written into a temporary folder beside out_dir and renamed into place when complete
    (writing_dataset), so a kill never leaves half a dataset. With overwrite, an earlier generated
    dataset at out_dir (with the frames and flow extracted from it) is replaced; a folder holding
    anything else is never touched.
    """
    unknown = set(classes) - set(CLASS_NAMES)
    if unknown:
        raise DataError(f"unknown synthetic classes {sorted(unknown)}; choose from {CLASS_NAMES}")
    classes = [name for name in CLASS_NAMES if name in classes]  # classInd.txt order
    with writing_dataset(out_dir, overwrite) as (out_dir, partial):
        jobs, videos = [], []
        for clip in make_clips(seed, groups, clips, size, classes):
            cls = CLASS_NAMES[clip.label]
            jobs.append((clip, os.path.join(partial, "UCF-101", cls), FPS))
            videos.append((cls, os.path.join(out_dir, "UCF-101", cls, clip.name + ".avi")))
        write_clips(jobs, workers, progress)
        os.makedirs(os.path.join(partial, "splits"))
        for file, lines in ucf101.make_splits(videos, classes).items():
            ucf101.write_lines(os.path.join(partial, "splits", file), lines)
        write_marker(partial, {"dataset": "ucf101", "seed": seed, "groups": groups, "clips": clips,
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
    unused ones too, as ucf101.find_videos lists them. Like generate(): written to a temporary folder
    first, and replacing only an earlier generated dataset, with overwrite. Every other class's split
    files have CRLF line ends, as some of HMDB-51's have."""
    unknown = set(classes) - set(HMDB_CLASS_NAMES)
    if unknown:
        raise DataError(f"unknown HMDB-style classes {sorted(unknown)}; choose from {HMDB_CLASS_NAMES}")
    with writing_dataset(out_dir, overwrite) as (out_dir, partial):
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
        write_marker(partial, {"dataset": "hmdb51", "seed": seed, "size": list(size), "fps": HMDB_FPS,
                               "counts": list(HMDB_COUNTS),
                               "classes": [{"name": n, "colour": c, "motion": m} for n, c, m in HMDB_CLASSES
                                           if n in classes]})
    videos = [(HMDB_CLASS_NAMES[clip.label], os.path.join(out_dir, folder, clip.name + ".avi"))
              for (clip, _), folder in zip(clips, folders)]
    return sorted(videos, key=lambda v: (v[0].lower(), ucf101.video_name(v[1]).lower()))
