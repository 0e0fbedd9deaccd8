"""How long ucf101.load_index takes to index all 13,320 UCF-101 videos.

    python benchmarks/bench_index.py                       # needs ../shared/ucf101 (the official lists)
    python benchmarks/bench_index.py --files-per-folder 50

Writes the real layout (jpegs_256/<video>/, tvl1_flow/{u,v}/<video>/) for every video of the
official split lists into a temporary folder, with --files-per-folder empty frame files in each
(the index counts names, not pixels), then times indexing split 1's train and test lists twice (the
files were just written, so both scans find them in the page cache; a cold disk is slower).
Goal: a few seconds for all 13,320 videos.
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from twostream.datasets import ucf101  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--lists", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "ucf101"),
                    help="folder with classInd.txt and the official split lists")
parser.add_argument("--files-per-folder", type=int, default=20,
                    help="frame files in each video folder (UCF-101 averages 186)")
parser.add_argument("--goal", type=float, default=5.0, help="seconds allowed for all 13,320 videos")
args = parser.parse_args()


def write_layout(root, names, count):
    folders = [ucf101.rgb_dir(root, n) for n in names]
    folders += [ucf101.flow_dir(root, c, n) for c in "uv" for n in names]
    for folder in folders:
        os.makedirs(folder)
        for i in range(count):
            open(ucf101.frame_path(folder, i), "wb").close()


with tempfile.TemporaryDirectory() as root:
    classes = ucf101.read_classes(os.path.join(args.lists, ucf101.CLASS_FILE))
    names = [name for subset in ("trainlist01.txt", "testlist01.txt")
             for name, _ in ucf101.read_split(os.path.join(args.lists, subset), classes)]
    start = time.perf_counter()
    write_layout(root, names, args.files_per_folder)
    print(f"wrote {len(names)} videos x 3 folders x {args.files_per_folder} files "
          f"in {time.perf_counter() - start:.1f} s")
    for run in ("first", "second"):
        start = time.perf_counter()
        videos = [v for subset in ("train", "test") for v in ucf101.load_index(root, args.lists, 1, subset)]
        seconds = time.perf_counter() - start
        assert len(videos) == 13320 and all(v.frames == args.files_per_folder for v in videos)
        print(f"index, {run} scan: {len(videos)} videos in {seconds:.2f} s (goal <= {args.goal:.0f} s: "
              f"{seconds / args.goal:.0%} of it)")
