"""--merge: the parts that --shard K/N runs scored into one run folder (scores_<stream>[_train].shardKofN.npz)
joined into the run's score files, the ones an unsharded run writes, once together they hold every video of the
lists; an incomplete set is refused, naming the missing videos and the parts that score them."""
import os
import re

from twostream.datasets import ucf101
from twostream.datasets.ucf101 import STREAMS
from twostream.errors import DataError
from twostream.scoring import evaluation, inputs
from twostream.scoring.scores import lock_run, read_scores, scores_path


def shard_files(run_dir, stream, subset):
    """{(K, N): path} of the finished part files of one stream and list in run_dir."""
    suffix = "" if subset == "test" else f"_{subset}"
    pattern = re.compile(rf"scores_{stream}{suffix}\.shard(\d+)of(\d+)\.npz")
    names = os.listdir(run_dir) if os.path.isdir(run_dir) else []
    return {(int(m[1]), int(m[2])): os.path.join(run_dir, m[0]) for m in map(pattern.fullmatch, names) if m}


def merge_shards(args, run_dir):
    """Join the part files of every stream and list in run_dir into the run's score files, checking
    that together they hold every video of the list (less those a part left out with
    --skip-missing): otherwise a DataError names the missing videos and the parts to run again."""
    merged = [merge_stream(args, run_dir, stream, subset, files) for subset in ("test", "train")
              for stream in args.streams or STREAMS if (files := shard_files(run_dir, stream, subset))]
    if not merged:
        raise DataError(f"{run_dir}: holds no scores_<stream>.shardKofN.npz files to merge; score the parts with "
                        "--shard K/N first (with the same --results-dir and --run-name)")


def merge_stream(args, run_dir, stream, subset, files):
    """One stream's scores of one list from its part files {(K, N): path}."""
    counts = sorted({count for _, count in files})
    if len(counts) > 1:
        raise DataError(f"{run_dir}: holds {stream} {subset}-list parts of {' and '.join(map(str, counts))} shards; "
                        "keep the files of one --shard K/N split only")
    paths = [files[key] for key in sorted(files)]
    parts = [read_scores(files[key], f"delete it and score part {key[0]}/{key[1]} again: fuse_test.py "
                                     f"--shard {key[0]}/{key[1]} with the same flags")
             for key in sorted(files)]
    for part, path in zip(parts[1:], paths[1:]):
        if part.classes != parts[0].classes or not part.settings.scored_alike(parts[0].settings):
            raise DataError(f"{path}: was scored otherwise than {paths[0]} (another model, classes, samples, crops "
                            "or limits); score every part with the same flags and model")
    scored = {name: (label, scores) for part in parts
              for name, label, scores in zip(part.videos, part.labels, part.scores)}
    skipped = sorted({name for part in parts for name in part.settings.skipped or []})
    listed = [v.name for v in inputs.load_videos(args, parts[0].classes, subset)]
    missing = [name for name in listed if name not in scored and name not in skipped]
    if missing:
        count, more = counts[0], f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        todo = " ".join(f"{k}/{count}" for k in sorted({ucf101.shard_of(name, count) for name in missing}))
        raise DataError(f"{run_dir}: no part file holds the {stream} scores of {len(missing)} of the {len(listed)} "
                        f"{subset}-list videos: {', '.join(missing[:10])}{more}. Score them with fuse_test.py "
                        f"--shard K/N for K/N = {todo} (a run resumes), put the scores_*.shard*of{count}.npz files "
                        "here, and --merge again")
    names = [name for name in listed if name in scored]
    settings = parts[0].settings.but(shard=None, skipped=skipped)
    lock_run(run_dir, None)  # the files an unsharded run writes
    evaluation.save_scores(scores_path(run_dir, stream, subset), names, [scored[n][0] for n in names],
                           [scored[n][1] for n in names], parts[0].classes, settings.record())
    print(f"{stream} {subset}-list scores: {len(names)} videos from {len(files)} parts of {counts[0]}")
    return stream, subset
