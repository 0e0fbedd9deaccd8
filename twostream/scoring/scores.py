"""The score store of a test run: each stream's per-sample scores of each list, in the run folder.

    scores_<stream>[_train].npz                 a stream's scores of the test (training) list, whole
    scores_<stream>[_train].chunks/             the chunks of --save-every videos of a run under way, each written once
    scores_<stream>[_train].shardKofN.npz       part K of N (--shard K/N), resumable like the others
    .lock[.shardKofN]                           the process scoring into the folder (or into its part)

Scores are computed (compute_all) in chunks that a run killed at any moment resumes after, and reused when a score
file holds them computed the same way (ScoreSettings); --from-scores and --merge read them back (load_saved), aligned
on the videos every stream scored. The model's scores come from the `predict` function the caller passes
(fuse_test.predict_videos): the loader and its sequences live above this package.
"""
import os
import re
import shutil
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from twostream.datasets.ucf101 import STREAMS
from twostream.errors import DataError
from twostream.scoring import evaluation, inputs, references
from twostream.scoring.settings import ScoreSettings
from twostream.storage import atomic
from twostream.train import checkpoints, lineage

CHUNK = re.compile(r"chunk\d{6}_\d+\.npz")  # chunk_path's names


class StreamScores(NamedTuple):
    """One stream's scores of one list: per-sample softmax [V, N, C] of `videos` (their `labels`: class indices
    [V]) over `classes`, computed as `settings` says."""
    videos: list
    labels: np.ndarray
    scores: np.ndarray
    classes: list
    settings: ScoreSettings


def read_scores(path, redo):
    """A score file (evaluation.load_scores; `redo`: what computes it again) as StreamScores."""
    loaded = evaluation.load_scores(path, redo)
    return StreamScores(loaded["videos"], loaded["labels"], loaded["scores"], loaded["classes"],
                        ScoreSettings.read(loaded["settings"]))


# ---------------------------------------------------------------------------- the files of a run folder

def scores_path(run_dir, stream, subset="test", partial=False, shard=None):
    """A stream's score file; partial: the single file of scores so far that earlier versions rewrote every
    --save-every videos (read on resume, never written)."""
    suffix = "" if subset == "test" else f"_{subset}"
    return os.path.join(run_dir, f"scores_{stream}{suffix}{shard_part(shard)}{'.partial' if partial else ''}.npz")


def shard_part(shard):
    """The part of a file name that says which --shard K/N wrote it ("" for an unsharded run)."""
    return f".shard{shard[0]}of{shard[1]}" if shard else ""


def lock_run(run_dir, shard):
    """Hold the run folder's lock of this part (each --shard K/N its own, so that the parts of one split can score
    into one shared folder at once), or stop naming the process that holds it: two processes scoring the
    same videos would each join the chunks and remove them under the other."""
    os.makedirs(run_dir, exist_ok=True)
    part = f"part {shard[0]}/{shard[1]} of " if shard else ""
    checkpoints.lock(run_dir, f"{checkpoints.LOCK_FILE}{shard_part(shard)}", f"scoring {part}this run into it",
                     "use another --run-name")


def chunks_dir(final):
    """The folder beside a score file where a run keeps its chunks of --save-every videos until it is whole."""
    return final[:-len(".npz")] + ".chunks"


def chunk_path(final, first, count):
    """The chunk of `count` videos from position `first` of the list: every chunk is written once, atomically,
    so a run's writes stay linear in its videos and a kill at any moment loses at most the chunk in progress."""
    return os.path.join(chunks_dir(final), f"chunk{first:06d}_{count}.npz")


# ---------------------------------------------------------------------------- scores reused, resumed or computed

def saved_scores(path, settings, classes, redo):
    """{video name: (label, sample scores [N, C])} from a scores file computed the same way."""
    saved = read_scores(path, redo)
    differ = settings.differences(saved.settings)
    if differ or saved.classes != classes:
        raise DataError(f"{path}: holds scores computed differently ({', '.join(differ) or 'other classes'}). "
                        "Pass --overwrite to compute them again, or --run-name to keep both")
    return {name: (int(label), scores) for name, label, scores in zip(saved.videos, saved.labels, saved.scores)}


def reusable_scores(args, final, settings, classes, wanted):
    """The scores saved so far for the `wanted` videos: the whole file if there is one, else the chunks of an
    interrupted run (and the .partial.npz of earlier versions). --overwrite removes them all first."""
    partial, chunks = final[:-len(".npz")] + ".partial.npz", chunks_dir(final)
    if args.overwrite:
        for path in (final, partial):
            if os.path.exists(path):
                os.remove(path)
        shutil.rmtree(chunks, ignore_errors=True)
    redo = (f"delete it (a rerun computes its videos again{', for this part' if args.shard else ''}), "
            "or pass --overwrite to compute all the scores again")
    if os.path.exists(final):
        return saved_scores(final, settings, classes, redo), final
    sources = [partial] if os.path.exists(partial) else []
    if os.path.isdir(chunks):
        sources += sorted(os.path.join(chunks, name) for name in os.listdir(chunks) if CHUNK.fullmatch(name))
    done = {}
    for path in sources:
        done.update(saved_scores(path, settings, classes, redo))
    return {name: entry for name, entry in done.items() if name in wanted}, chunks if sources else None


def stream_scores(args, stream, tested, classes, videos, run_dir, settings, subset, strategy, predict):
    """Per-sample scores [V, N, C] of every video: reused, resumed or computed (by `predict`, see compute_all).
    Computed scores are saved in chunks of --save-every videos as they come, joined into the stream's score file
    at the end."""
    lock_run(run_dir, args.shard)
    final = scores_path(run_dir, stream, subset, shard=args.shard)
    atomic.remove_temporaries_of(final)  # a killed run's, as it wrote the joined file
    done, source = reusable_scores(args, final, settings, classes, {v.name for v in videos})
    if source:
        print(f"{source}: reusing {len(done)} of {len(videos)} videos' {stream} scores")
    position = {v.name: i for i, v in enumerate(videos)}
    todo = [v for v in videos if v.name not in done]
    if todo:
        from twostream.train import distributed  # Keras loads here, once there is scoring to do
        with distributed.scope(strategy):
            model = checkpoints.load(tested.path, stream, args.dataset)[0]
        inputs.check_outputs(model, tested.path, classes)
        with tqdm(total=len(videos), initial=len(done), desc=f"{stream} ({subset} list)", unit="video") as progress:
            for start in range(0, len(todo), args.save_every):
                chunk = todo[start:start + args.save_every]
                scores = predict(model, chunk, args, stream, tested.config, distributed.device_count(strategy))
                evaluation.save_scores(chunk_path(final, position[chunk[0].name], len(chunk)),
                                       [v.name for v in chunk], [v.label for v in chunk], scores, classes,
                                       settings.record())
                done.update({video.name: (video.label, s) for video, s in zip(chunk, scores)})
                progress.update(len(chunk))
    if todo or source != final:  # scores reused whole are left as they are
        evaluation.save_scores(final, [v.name for v in videos], [done[v.name][0] for v in videos],
                               [done[v.name][1] for v in videos], classes, settings.record())
    shutil.rmtree(chunks_dir(final), ignore_errors=True)
    partial = final[:-len(".npz")] + ".partial.npz"
    if os.path.exists(partial):
        os.remove(partial)
    return np.stack([done[v.name][1] for v in videos])


def score_settings(args, stream, tested, classes, subset, skipped):
    """How `stream`'s scores of the `subset` list are computed now (ScoreSettings)."""
    config = tested.config
    return ScoreSettings(
        stream=stream, model=os.path.abspath(tested.path), fingerprint=checkpoints.fingerprint(tested.path),
        samples=args.samples, crops=args.crops, image_size=config["image_size"], stack_length=config["stack_length"],
        dataset=args.dataset, split=args.split, num_classes=len(classes), class_limit=args.class_limit,
        max_videos=args.max_videos if subset == "test" else None, skipped=skipped,
        trained_on={"dataset": config.get("dataset"), "split": config.get("split")},
        multitask=config.get("multitask"), init=config.get("init"), shard=args.shard, trained=tested.trained,
        arch=config.get("arch"), norm=config.get("norm"), training=references.training_kind(config, stream))


def compute_all(args, run_dir, predict):
    """Per-sample scores of each stream -> {subset: {stream: StreamScores}}. args: fuse_test.py's flags;
    predict(model, videos, args, stream, config, devices): per-sample softmax [V, N, C] (fuse_test.predict_videos)."""
    from twostream.train import distributed  # tf.distribute lives there only
    streams = args.streams or list(STREAMS)
    strategy = distributed.scoring_strategy(args.distribute)
    found, classes = inputs.read_models(args, streams)
    subsets = ["test"] + (["train"] if len(streams) == 2 and not args.no_svm else [])
    data = {}
    for subset in subsets:
        videos, skipped = inputs.drop_missing(inputs.shard_videos(inputs.load_videos(args, classes, subset),
                                                                  args.shard, subset), args, streams, subset)
        if not videos and args.shard:  # a part of a short list can be empty
            continue
        if subset == "test":
            for stream in streams:
                path, config, _ = found[stream]
                lineage.refuse_seen_test_videos(path, config, stream, checkpoints.head(config, args.dataset),
                                                args.split, args.splits_dir, [v.name for v in videos])
            record = checkpoints.data_record(args.data_dir, videos[0])
            for stream in streams:
                checkpoints.check_data(found[stream].config, record, stream, args.data_dir)
        data[subset] = {}
        for stream in streams:
            settings = score_settings(args, stream, found[stream], classes, subset, skipped)
            scores = stream_scores(args, stream, found[stream], classes, videos, run_dir, settings, subset, strategy,
                                   predict)
            data[subset][stream] = StreamScores([v.name for v in videos], np.array([v.label for v in videos]),
                                                scores, classes, settings)
    return data


# ---------------------------------------------------------------------------- scores read back

def load_saved(folder, streams=None, svm=True):
    """The score files in a results folder -> the same structure as compute_all. The training list's
    (for the SVM, unless not svm) are loaded when there are any: then every stream's must be there."""
    redo = (f"delete it and run fuse_test.py again without --from-scores or --merge, with --run-name "
            f"{os.path.basename(os.path.normpath(folder))}: it computes the scores missing there (with the models)")
    present = streams or [s for s in STREAMS if os.path.exists(scores_path(folder, s))]
    if not present:
        raise DataError(f"{folder}: holds no scores_spatial.npz or scores_temporal.npz")
    if not streams and len(present) < len(STREAMS):
        missing = scores_path(folder, next(s for s in STREAMS if s not in present))
        raise DataError(f"{missing}: not found, but {scores_path(folder, present[0])} is. Compute it with fuse_test.py "
                        f"without --from-scores (the same --run-name; it scores only what is missing), or pass "
                        f"--streams {present[0]} to report on that stream alone")
    data = {"test": align({s: read_scores(scores_path(folder, s), redo) for s in present}, folder)}
    train = {s: scores_path(folder, s, "train") for s in present}
    found = [path for path in train.values() if os.path.exists(path)]
    if svm and len(present) == 2 and found:
        missing = [path for path in train.values() if not os.path.exists(path)]
        if missing:
            raise DataError(f"{missing[0]}: not found, but {found[0]} is: the SVM fusion needs both streams' "
                            "training-list scores. Compute it with fuse_test.py without --from-scores (the same "
                            "--run-name; it scores only what is missing), or pass --no-svm")
        data["train"] = align({s: read_scores(path, redo) for s, path in train.items()}, folder)
    return data


def align(data, folder):
    """Keep the videos every stream scored, in the first stream's order (they may differ after --skip-missing)."""
    classes = {tuple(d.classes) for d in data.values()}
    if len(classes) > 1:
        raise DataError(f"{folder}: the streams' score files were computed for different classes")
    common = set.intersection(*(set(d.videos) for d in data.values()))
    first = next(iter(data.values()))
    label_of = dict(zip(first.videos, first.labels))
    order = [name for name in first.videos if name in common]
    aligned = {}
    for stream, d in data.items():
        position = {name: i for i, name in enumerate(d.videos)}
        keep = [position[name] for name in order]
        if any(d.labels[i] != label_of[name] for i, name in zip(keep, order)):
            raise DataError(f"{folder}: the streams' score files disagree on the labels of some videos")
        skipped = sorted(set(d.settings.skipped or []) | (set(d.videos) - common))
        aligned[stream] = d._replace(videos=order, labels=d.labels[keep], scores=d.scores[keep],
                                     settings=d.settings.but(skipped=skipped))
    return aligned
