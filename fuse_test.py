"""Test the spatial and temporal streams with the paper's protocol and fuse their scores.

    python fuse_test.py                                    # UCF-101 split 1: 25 samples x 10 crops, both streams
    python fuse_test.py --dataset synthetic                # the generated mini dataset (run_mini.sh)
    python fuse_test.py --from-scores results/ucf101_split1 --aggregate vote --fusion-weights 1 1.5
    python fuse_test.py --streams temporal --crops center --max-videos 200    # a quick look at one stream

Per test video, N frames (spatial) and N flow stacks (temporal) at uniform spacing, each scored on
its centre crop or on ten crops (four corners and centre, and their mirror images, the paper's).
Crops are averaged; samples are aggregated by mean softmax (the paper) or by voting (the seed);
the streams' video scores are averaged. Per-sample scores are saved as they are computed in
results/<run>/scores_<stream>.npz: an interrupted run started again resumes where it stopped,
and --from-scores redoes aggregation and fusion without loading any model. Also written there:
results.md (the table), per_class.csv, confusion.png, misclassified.csv, metrics.json.
"""
import argparse
import json
import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm import tqdm

import evaluation
import ucf101

STREAMS = ("spatial", "temporal")
PRESETS = {  # --dataset: where its data, split lists and checkpoints are, and the test crops
    "ucf101": {"data_dir": "data/ucf101", "splits_dir": "splits", "checkpoints": "checkpoints/ucf101", "crops": "10"},
    # centre crops: 10 crops would take 10x the inference, minutes of the mini run's 10 on 2 CPU cores
    "synthetic": {"data_dir": "data/synthetic", "splits_dir": "data/synthetic/splits",
                  "checkpoints": "checkpoints/synthetic", "crops": "center"},
}
REUSE_SETTINGS = ("model", "samples", "crops", "image_size", "stack_length")  # saved scores must match these

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--dataset", default="ucf101", choices=PRESETS,
                    help="preset for --data-dir, --splits-dir, --checkpoints and --crops "
                         "(ucf101, or the generated mini dataset)")
parser.add_argument("--split", type=int, default=1, choices=(1, 2, 3), help="which of the three splits to test")
parser.add_argument("--data-dir", help="folder holding jpegs_256/ and tvl1_flow/ (default: the preset's)")
parser.add_argument("--splits-dir", help="folder holding classInd.txt and testlist0K.txt (default: the preset's)")
parser.add_argument("--checkpoints",
                    help="folder with spatial/ and temporal/, each holding best.keras, config.json and classInd.txt "
                         "(default: checkpoints/<dataset>)")
parser.add_argument("--spatial", help="spatial model .keras, config.json and classInd.txt beside it "
                                      "(default: <checkpoints>/spatial/best.keras)")
parser.add_argument("--temporal", help="temporal model .keras, config.json and classInd.txt beside it "
                                       "(default: <checkpoints>/temporal/best.keras)")
parser.add_argument("--streams", nargs="+", choices=STREAMS,
                    help="streams to test (default: both, and their fusion; with --from-scores: those saved there)")
parser.add_argument("--samples", type=int, default=25,
                    help="frames / flow stacks per video at uniform spacing (paper: 25)")
parser.add_argument("--crops", choices=("center", "10"),
                    help="centre crop only, or 4 corners + centre and their flips "
                         "(default: ucf101 10, the paper's; synthetic: center, to keep the mini run short)")
parser.add_argument("--aggregate", default="mean", choices=evaluation.AGGREGATIONS,
                    help="samples -> video score: mean softmax (paper) or votes of the samples (seed; ties go to "
                         "the class with the higher mean softmax)")
parser.add_argument("--fusion-weights", type=float, nargs=2, default=(1.0, 1.0), metavar=("SPATIAL", "TEMPORAL"),
                    help="weights of the two streams' video scores in the average (paper: 1 1; TSN uses 1 1.5)")
parser.add_argument("--batch-size", type=int, default=50, help="images per forward pass")
parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                    help="threads reading and cropping frames while the model runs")
parser.add_argument("--save-every", type=int, default=50,
                    help="save the scores computed so far every this many videos, so that a rerun resumes there")
parser.add_argument("--from-scores", metavar="DIR",
                    help="re-aggregate and re-fuse the scores_<stream>.npz saved in DIR; loads no model")
parser.add_argument("--skip-missing", action="store_true",
                    help="leave out test videos whose frames or flow are missing (default: list them and stop)")
parser.add_argument("--overwrite", action="store_true",
                    help="compute the scores again even if results/<run>/scores_<stream>.npz exists")
parser.add_argument("--results-dir", default="results", help="parent folder of the run folders")
parser.add_argument("--run-name",
                    help="results/<run-name>/ (default: <dataset>_split<K>, with the quick-run limits appended; "
                         "with --from-scores: write into that folder)")
parser.add_argument("--class-limit", type=int, help="test only the first N classes (quick runs)")
parser.add_argument("--max-videos", type=int, help="test only N evenly spread videos of the test list (quick runs)")
parser.add_argument("--distribute", default="none", choices=("none", "mirrored"),
                    help="mirrored: run inference on all local GPUs (tensorflow backend only)")


# ---------------------------------------------------------------------------- checkpoints and test list

def model_path(args, stream):
    explicit = getattr(args, stream)
    return explicit or os.path.join(args.checkpoints, stream, "best.keras")


def same_classes(checkpoints):
    """The classes all streams were trained on; a clear error if they differ."""
    (first, (_, classes)), *others = checkpoints.items()
    for path, (_, other) in others:
        if other != classes:
            difference = next((f"class {i + 1} is {a!r} vs {b!r}" for i, (a, b) in enumerate(zip(classes, other))
                               if a != b), f"{len(classes)} vs {len(other)} classes")
            raise ucf101.DataError(f"{first} and {path} were trained on different classes ({difference}); "
                                   "test models trained on the same classInd.txt")
    return classes


def load_test_videos(args, classes):
    """The split's test list, limited to the classes the models know (they may be trained on the first N)."""
    listed = ucf101.class_names(args.splits_dir)
    if listed[:len(classes)] != classes:
        listed_path = os.path.join(args.splits_dir, "classInd.txt")
        raise ucf101.DataError(f"the models' classInd.txt does not match {listed_path} "
                               f"(models: {len(classes)} classes starting {classes[:3]}, splits: {listed[:3]}); "
                               "point --splits-dir / --dataset at the split lists the models were trained on")
    class_limit = min(args.class_limit or len(classes), len(classes))
    if class_limit < len(listed) and not args.class_limit:
        print(f"the models know the first {class_limit} of {len(listed)} classes: testing those")
    videos = ucf101.load_index(args.data_dir, args.splits_dir, args.split, "test", class_limit, args.max_videos)
    if not videos:
        raise ucf101.DataError(f"{args.splits_dir}: the split {args.split} test list has no videos of these classes")
    return videos


def drop_missing(videos, args, streams):
    """Test videos without the frames or flow a stream needs: an error listing them, or left out."""
    import generators
    missing = set()
    for stream in streams:
        missing.update(generators.missing_data(videos, args.data_dir, stream))
    if missing and not args.skip_missing:
        names = "\n  ".join(v.name for v in videos if v.name in missing)
        raise ucf101.DataError(f"{len(missing)} of {len(videos)} test videos have missing frames or flow under "
                               f"{args.data_dir}:\n  {names}\nExtract them with prepare_data.py (frames, flow; "
                               "`prepare_data.py check` lists what is missing), "
                               "or pass --skip-missing to leave them out")
    if missing:
        print(f"leaving out {len(missing)} test videos with missing frames or flow (--skip-missing)")
    return [v for v in videos if v.name not in missing], sorted(missing)


# ---------------------------------------------------------------------------- scores of one stream

def scores_path(run_dir, stream, partial=False):
    return os.path.join(run_dir, f"scores_{stream}{'.partial' if partial else ''}.npz")


def check_settings(path, saved, wanted):
    differ = {key: (saved.get(key), wanted[key]) for key in REUSE_SETTINGS if saved.get(key) != wanted[key]}
    if differ:
        detail = ", ".join(f"{key}: saved {a!r}, now {b!r}" for key, (a, b) in differ.items())
        raise ucf101.DataError(f"{path}: holds scores computed differently ({detail}). Pass --overwrite to "
                               "compute them again, or --run-name to keep both")


def saved_scores(path, settings, classes):
    """{video name: (label, sample scores [N, C])} from a scores file that matches these settings."""
    loaded = evaluation.load_scores(path)
    check_settings(path, loaded["settings"], settings)
    if loaded["classes"] != classes:
        raise ucf101.DataError(f"{path}: was computed for other classes; pass --overwrite or --run-name")
    return {name: (int(label), scores) for name, label, scores in
            zip(loaded["videos"], loaded["labels"], loaded["scores"])}


def stream_scores(args, stream, path, config, classes, videos, run_dir, settings, strategy=None):
    """Per-sample scores [V, N, C] of every test video: reused, resumed or computed."""
    final, partial = scores_path(run_dir, stream), scores_path(run_dir, stream, partial=True)
    if os.path.exists(final) and not args.overwrite:
        done = saved_scores(final, settings, classes)
        lacking = [v.name for v in videos if v.name not in done]
        if lacking:
            raise ucf101.DataError(f"{final}: lacks {len(lacking)} of the {len(videos)} test videos "
                                   f"(e.g. {lacking[0]}); "
                                   "pass --overwrite to compute them all again, or --run-name to keep both")
        print(f"{final}: reusing the saved {stream} scores (--overwrite computes them again)")
        return np.stack([done[v.name][1] for v in videos])
    done = {}
    if os.path.exists(partial) and not args.overwrite:
        done = {name: entry for name, entry in saved_scores(partial, settings, classes).items()
                if name in {v.name for v in videos}}
        print(f"{partial}: resuming {stream}, {len(done)} of {len(videos)} videos already scored")
    todo = [v for v in videos if v.name not in done]

    def save(target):
        names = [v.name for v in videos if v.name in done]
        evaluation.save_scores(target, names, [done[n][0] for n in names], [done[n][1] for n in names],
                               classes, settings)

    if todo:
        import models
        import training
        with training.scope(strategy):
            model = models.load_model(path)
        progress = tqdm(total=len(videos), initial=len(done), desc=stream, unit="video", dynamic_ncols=True)
        try:
            for count, (video, scores) in enumerate(predict_videos(model, todo, args, stream, config), 1):
                done[video.name] = (video.label, scores)
                progress.update(1)
                if count % args.save_every == 0 and count < len(todo):
                    save(partial)
        except KeyboardInterrupt:
            save(partial)
            raise
        finally:
            progress.close()
    save(final)
    if os.path.exists(partial):
        os.remove(partial)
    return np.stack([done[v.name][1] for v in videos])


def prefetched(sequence, workers):
    """sequence[0], sequence[1], ... read by `workers` threads, at most 2 * workers ahead."""
    if workers <= 0:
        yield from (sequence[i] for i in range(len(sequence)))
        return
    with ThreadPoolExecutor(workers) as pool:
        pending = deque()
        for i in range(len(sequence)):
            pending.append(pool.submit(sequence.__getitem__, i))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def predict(model, images, batch_size):
    """Softmax scores [n, C] of a batch of uint8 images, batch_size images per forward pass."""
    return np.concatenate([np.asarray(model.predict_on_batch(images[i:i + batch_size]), np.float32)
                           for i in range(0, len(images), batch_size)])


def predict_videos(model, videos, args, stream, config):
    """(video, per-sample softmax [N, C] with crops averaged) for each video, in order."""
    import generators
    crops = 10 if args.crops == "10" else 1
    sequence = generators.TestSequence(videos, args.data_dir, stream, samples=args.samples, crops=args.crops,
                                       image_size=config["image_size"], stack_length=config["stack_length"],
                                       videos_per_batch=max(1, args.batch_size // (args.samples * crops)))
    for images, video_index in prefetched(sequence, args.workers):
        scores = predict(model, images, args.batch_size)
        for i in dict.fromkeys(video_index.tolist()):  # the batch's videos, in order
            per_image = scores[video_index == i]
            yield videos[i], per_image.reshape(args.samples, crops, -1).mean(axis=1)


def compute_all(args, run_dir):
    """Per-sample scores of each requested stream on the test list -> {stream: videos, labels, scores, ...}."""
    streams = args.streams or list(STREAMS)
    import training  # tf.distribute lives there only
    strategy = training.distribution_strategy(args.distribute)
    paths = {stream: model_path(args, stream) for stream in streams}
    checkpoints = {paths[s]: training.read_checkpoint(paths[s], s) for s in streams}
    classes = same_classes(checkpoints)
    videos, skipped = drop_missing(load_test_videos(args, classes), args, streams)
    data = {}
    for stream in streams:
        config = checkpoints[paths[stream]][0]
        settings = {"stream": stream, "model": os.path.abspath(paths[stream]), "samples": args.samples,
                    "crops": args.crops, "image_size": config["image_size"], "stack_length": config["stack_length"],
                    "dataset": args.dataset, "split": args.split, "class_limit": args.class_limit,
                    "max_videos": args.max_videos, "skipped": skipped}
        scores = stream_scores(args, stream, paths[stream], config, classes, videos, run_dir, settings, strategy)
        data[stream] = {"videos": [v.name for v in videos], "labels": np.array([v.label for v in videos]),
                        "scores": scores, "classes": classes, "settings": settings}
    return data


def load_saved(args):
    """The scores_<stream>.npz files in --from-scores."""
    streams = args.streams or [s for s in STREAMS if os.path.exists(scores_path(args.from_scores, s))]
    if not streams:
        raise ucf101.DataError(f"{args.from_scores}: holds no scores_spatial.npz or scores_temporal.npz")
    data = {stream: evaluation.load_scores(scores_path(args.from_scores, stream)) for stream in streams}
    same_classes({scores_path(args.from_scores, s): (None, d["classes"]) for s, d in data.items()})
    return align(data, args.from_scores)


def align(data, folder):
    """Keep the videos every stream scored, in the first stream's order (they may differ after --skip-missing)."""
    common = set.intersection(*(set(d["videos"]) for d in data.values()))
    first = next(iter(data.values()))
    label_of = dict(zip(first["videos"], first["labels"]))
    order = [name for name in first["videos"] if name in common]
    for d in data.values():
        position = {name: i for i, name in enumerate(d["videos"])}
        keep = [position[name] for name in order]
        if any(d["labels"][i] != label_of[name] for i, name in zip(keep, order)):
            raise ucf101.DataError(f"{folder}: the streams' score files disagree on the labels of some videos")
        dropped = set(d["videos"]) - common
        d["settings"]["skipped"] = sorted(set(d["settings"].get("skipped", [])) | dropped)
        d.update(videos=order, labels=d["labels"][keep], scores=d["scores"][keep])
    return data


# ---------------------------------------------------------------------------- the report

def references_apply(settings):
    """The published figures are for all of UCF-101 split 1."""
    return (settings.get("dataset") == "ucf101" and settings.get("split") == 1
            and not settings.get("class_limit") and not settings.get("max_videos"))


def report(data, args, out_dir):
    """Aggregate, fuse, measure; write results.md, per_class.csv, confusion.png, misclassified.csv."""
    first = next(iter(data.values()))
    videos, labels, classes, settings = first["videos"], first["labels"], first["classes"], first["settings"]
    scores = {stream: evaluation.aggregate(d["scores"], args.aggregate) for stream, d in data.items()}
    if len(scores) == 2:
        scores["fusion"] = evaluation.fuse([scores["spatial"], scores["temporal"]], args.fusion_weights)
    final = list(scores)[-1]  # fusion, or the one stream tested
    results = {name: evaluation.metrics(labels, s) for name, s in scores.items()}
    per_class = {name: evaluation.per_class_accuracy(labels, s, len(classes)) for name, s in scores.items()}
    skipped = sorted(set().union(*(d["settings"].get("skipped", []) for d in data.values())))
    table = evaluation.results_table(results, references_apply(settings))

    os.makedirs(out_dir, exist_ok=True)
    evaluation.write_per_class_csv(os.path.join(out_dir, "per_class.csv"), classes, labels, per_class)
    evaluation.plot_confusion(os.path.join(out_dir, "confusion.png"),
                              evaluation.confusion(labels, scores[final], len(classes)), classes,
                              f"{final}: {settings.get('dataset', '')} split {settings.get('split', '')}, "
                              f"top-1 {evaluation.percent(results[final]['top1'])}%")
    evaluation.write_misclassified_csv(os.path.join(out_dir, "misclassified.csv"), videos, labels, scores, classes,
                                       final)
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump({"results": results, "aggregate": args.aggregate, "fusion_weights": list(args.fusion_weights),
                   "skipped": skipped, "settings": settings}, f, indent=1)
    markdown = results_markdown(table, results, per_class, classes, skipped, settings, args)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(markdown)
    print(table)
    print(f"{results[final]['videos']} test videos"
          + (f", {len(skipped)} skipped for missing frames or flow" if skipped else "")
          + f"; {aggregation_text(args.aggregate)}. Wrote {out_dir}/results.md, per_class.csv, confusion.png, "
            "misclassified.csv")


def aggregation_text(method):
    return ("samples aggregated by mean softmax (the paper)" if method == "mean" else
            "samples aggregated by voting (the seed; ties go to the higher mean softmax)")


def results_markdown(table, results, per_class, classes, skipped, settings, args):
    dataset = settings.get("dataset", "?")
    crops = "10 crops (4 corners + centre, and their flips)" if settings.get("crops") == "10" else "centre crop"
    lines = [f"# Two-stream results: {dataset}, split {settings.get('split', '?')}", "", table,
             f"Test videos: {next(iter(results.values()))['videos']}"
             + (f" ({len(skipped)} skipped for missing frames or flow, listed below)" if skipped else "") + ". "
             f"{settings.get('samples', '?')} samples per video, {crops}; {aggregation_text(args.aggregate)}.",
             ""]
    if "fusion" in results:
        lines += [f"Fusion: weighted average of the two streams' video scores, spatial : temporal = "
                  f"{args.fusion_weights[0]:g} : {args.fusion_weights[1]:g}.", ""]
    if references_apply(settings):
        lines += ["Reference figures (top-1, %) and their sources:", ""]
        lines += [f"- {note}" for note in evaluation.REFERENCE_NOTES]
    else:
        lines += [f"The reference figures are for all of UCF-101 split 1; they do not apply to this run "
                  f"({dataset}, split {settings.get('split')}"
                  + (f", {settings['class_limit']} classes" if settings.get("class_limit") else "")
                  + (f", {settings['max_videos']} videos" if settings.get("max_videos") else "") + "), hence \"—\"."]
    if len(classes) <= 5:
        lines += ["", f"Top-5 is \"—\": with {len(classes)} classes it would be 100% by construction."]
    if "fusion" in per_class:
        gains, losses = evaluation.fusion_gains(per_class, classes)
        for title, rows in (("Classes gaining most from fusion", gains), ("Classes losing most from fusion", losses)):
            lines += ["", f"## {title}", "", "(fusion accuracy minus that of the better stream on the class)", ""]
            lines += [f"- {name}: {100 * gain:+.1f}" for name, gain in rows] or ["- none"]
    if skipped:
        lines += ["", "## Skipped videos (missing frames or flow)", ""] + [f"- {name}" for name in skipped]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- main

def resolve_paths(args):
    preset = PRESETS[args.dataset]
    args.data_dir = args.data_dir or preset["data_dir"]
    args.splits_dir = args.splits_dir or preset["splits_dir"]
    args.checkpoints = args.checkpoints or preset["checkpoints"]
    args.crops = args.crops or preset["crops"]
    if args.from_scores and not args.run_name:
        return args.from_scores
    name = args.run_name or (f"{args.dataset}_split{args.split}"
                             + (f"_classes{args.class_limit}" if args.class_limit else "")
                             + (f"_videos{args.max_videos}" if args.max_videos else ""))
    return os.path.join(args.results_dir, name)


def main(argv=None):
    args = parser.parse_args(argv)
    if args.samples < 1 or args.batch_size < 1 or args.save_every < 1:
        parser.error("--samples, --batch-size and --save-every must be at least 1")
    run_dir = resolve_paths(args)
    try:
        data = load_saved(args) if args.from_scores else compute_all(args, run_dir)
        report(data, args, run_dir)
    except ucf101.DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted: the scores computed so far are in {run_dir}; the same command resumes",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
