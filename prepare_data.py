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
import re
import sys

from twostream import errors
from twostream.datasets import checking, extraction, hmdb51, split_lists
from twostream.errors import DataError
from twostream.protocol import flags, presets
from twostream.video import media

# ---------------------------------------------------------------------------- the commands

def run_splits(args):
    if args.layout == "hmdb51":
        lists = split_lists.hmdb51_lists(args.dataset, args.official_dir, args.any_counts)
    elif args.official_zip:
        lists = split_lists.read_official_zip(args.official_zip)
    else:
        lists = split_lists.ucf101_lists(args.videos, args.classes)
    split_lists.write_lists(lists, args.out, args.overwrite)
    return 0


def run_frames(args):
    return extraction.extract("frames", args.videos, args.out, args.size, args.workers, args.overwrite, args.shard,
                              args.verify)


def run_flow(args):
    return extraction.extract("flow", args.videos, args.out, args.size, args.workers, args.overwrite, args.shard,
                              args.verify, args.flow_method, args.batch_size)


def run_check(args):
    return checking.check(args.data_dir, args.splits_dir, args.split, args.decode, args.workers)


def run_synthetic(args):
    from twostream.datasets import synthetic, synthetic_full  # only this command needs them

    if args.full:
        if not args.out:
            raise DataError("--full needs --out: the folder to write ucf101/, hmdb51/ and pool/ into")
        settings = synthetic_full.generate_full(args.out, args.full, fraction=args.fraction, seed=args.seed,
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
    flag = flags.adder(parser, command)
    flags.add(parser, command, "--dataset")
    flag("--videos", "folder of videos: UCF-101/<Class>/<video>.avi, HMDB-51's "
         "<class>/<clip>.avi, or flat as `unrar e` leaves them")
    flag("--out", "output folder")


def add_splits_flags(parser, command="splits"):
    flag = flags.adder(parser, command)
    add_video_flags(parser, command)
    flag("--official-zip", "extract the lists from "
         "UCF101TrainTestSplits-RecognitionTask.zip instead", metavar="PATH")
    flag("--classes", "class list to use (recommended for the flat layout, whose file names "
         "spell HandstandPushups as HandStandPushups); default: the class folders found",
         metavar="classInd.txt")
    flag("--official-dir", f"HMDB-51's layout: the {hmdb51.SPLITS_DIR} folder of "
         "test_train_splits.rar", metavar="DIR")
    flag("--any-counts", "HMDB-51's layout: accept other numbers of classes and of clips "
         "per class than HMDB-51's 51 and 70/30 (a subset of it, or the generated mini dataset)",
         action="store_true")
    flags.add(parser, command, "--overwrite")


def add_extraction_flags(parser, command):
    """The flags of `frames`, and of `flow` with --flow-method and --batch-size."""
    flag = flags.adder(parser, command)
    add_video_flags(parser, command)
    flag("--size", "resize frames to WIDTHxHEIGHT before saving or computing flow "
         "(default: 340x256, as jpegs_256)", type=frame_size, default=media.FRAME_SIZE)
    flags.add(parser, command, "--workers", "--overwrite")
    flag("--verify", "also decode every JPEG of finished folders (in --workers processes) "
         "and redo the videos with a truncated or unreadable one, as `check --decode` finds them (slow on "
         "millions of files)", action="store_true")
    flags.add(parser, command, "--shard")
    if command == "flow":
        flags.add(parser, command, "--flow-method", "--batch-size")


def add_check_flags(parser, command="check"):
    flag = flags.adder(parser, command)
    flags.add(parser, command, *flags.DATASET_FLAGS)
    flag("--decode", "also decode every JPEG (slow: millions of files); without it, JPEGs "
         "are only tested for truncation (size, end-of-image marker)", action="store_true")
    flags.add(parser, command, "--workers")


def add_synthetic_flags(parser, command="synthetic"):
    flag = flags.adder(parser, command)
    flag("--layout", "ucf101: UCF-101's layout, 12 classes (--dataset synthetic); hmdb51: "
         "HMDB-51's layout and official split files, 6 other classes (--dataset synthetic_hmdb) "
         "(default: %(default)s)", choices=presets.LAYOUTS, default="ucf101")
    flag("--out", "output folder (default: the generated dataset's folder, "
         f"{presets.PRESETS['synthetic']['data']['data_dir']} or "
         f"{presets.PRESETS['synthetic_hmdb']['data']['data_dir']})")
    flags.add(parser, command, "--seed", "--overwrite", "--workers")
    flag("--full", "instead, UCF-101 and HMDB-51 at their real shape, already extracted, "
         "for rehearsing every command at full size (benchmarks/rehearsal.py): every video of the official "
         "lists in LISTS_DIR (classInd.txt, the six lists, frame_counts.csv) with its real frame count at "
         "340x256, and 6,766 HMDB-style clips; a few distinct JPEGs per class hard-linked into place, so it "
         "takes about 100 MB. Needs --out", metavar="LISTS_DIR")
    flag("--fraction", "with --full: keep this fraction of each class's videos, all "
         "classes (default: %(default)s)", type=float, default=1.0)


# Each command: its summary, its flags, what runs it.
COMMANDS = {
    "splits": ("write classInd.txt and the train/test lists of splits 1-3: UCF-101's from --videos or --official-zip, "
               "HMDB-51's converted from --official-dir", add_splits_flags, run_splits),
    "frames": ("decode videos into resized JPEG frames", add_extraction_flags, run_frames),
    "flow": ("compute quantised optical flow (u/ and v/ JPEGs) between frames", add_extraction_flags, run_flow),
    "check": ("report videos of a split with missing or inconsistent data", add_check_flags, run_check),
    "synthetic": ("generate a mini dataset (XviD videos and split lists)", add_synthetic_flags, run_synthetic),
}


def build_parser():
    """The parser, and its sub-commands (for flags.parse)."""
    parser = flags.parser(__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (summary, add_flags, run) in COMMANDS.items():
        command = commands.add_parser(name, help=summary, description=summary, allow_abbrev=False)
        add_flags(command, name)
        command.set_defaults(run=run)
    return parser, commands


def parse_args(argv=None):
    """Parse, with the --dataset's folders (presets.py) for those not given."""
    parser, commands = build_parser()
    return flags.parse(parser, None, argv, commands)


def main(argv=None):
    return errors.run(run_command, argv)


def run_command(argv):
    args = parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
