"""Test the spatial and temporal streams with the paper's protocol and fuse their scores.

    python fuse_test.py                                    # UCF-101 split 1: 25 samples x 10 crops, both streams
    python fuse_test.py --split 2                          # ... and the mean over the splits tested so far
    python fuse_test.py --dataset synthetic                # the generated mini dataset (run_mini.sh)
    python fuse_test.py --from-scores results/ucf101_split1 --aggregate vote --fusion-weights 1 1.5
    python fuse_test.py --streams temporal --crops center --max-videos 200    # a quick look at one stream
    python fuse_test.py --shard 3/8                        # machine 3 of 8 scores its part of the lists...
    python fuse_test.py --merge                            # ...and, once all 8 are done, the parts are fused

Per test video, 25 frames (spatial) and 25 flow stacks (temporal) at uniform spacing, each cut
into ten crops (the four corners and the centre, and their mirror images); the softmax scores of
all of them are averaged (--aggregate vote: the seed's voting). Fusion: the average of the two
streams' video scores, and a linear SVM (Crammer & Singer) on their L2-normalised scores, trained
on the training list's videos scored the same way, its C chosen by cross-validation on them (folds by
UCF-101 group). Each stream's per-sample scores are saved as they are computed, in chunks of
--save-every videos (results/<run>/scores_<stream>[_train].chunks/, each chunk written once), joined
into scores_<stream>[_train].npz when the list is done: a run killed at any moment and started again
resumes after its last complete chunk; scores of another model file are refused (--overwrite computes
them again), and --from-scores redoes aggregation and fusion without any model. Also written there:
results.md (the table), per_class.csv, confusion.png, misclassified.csv, metrics.json; and, once more
than one split has results, results/<dataset>_mean/ (results.md, metrics.json), the mean over the
splits. Every file appears only complete (a temporary name, then a rename); a second process scoring into
the same run folder (and --shard part) stops, naming the first. A model is never tested on videos its
config.json says it trained on (overlap.py).

--shard K/N scores only part K of N of the test list (and of the training list, for the SVM):
the videos whose name hashes to K, as prepare_data.py --shard K/N extracts them, so a machine can
score the videos it extracted. Its scores go to scores_<stream>[_train].shardKofN.npz, resumable
like the others; nothing is fused. --merge, with the same flags but --shard, gathers the N parts
into the run's score files (refusing an incomplete set, naming the videos missing and their
parts) and fuses them as --from-scores does; the table is the one an unsharded run gives.
"""
import importlib.util
import os
import re
import shutil
import sys

import numpy as np
from tqdm import tqdm

from twostream.datasets import ucf101
from twostream.datasets.ucf101 import STREAMS
from twostream.errors import DataError, run
from twostream.protocol import flags, presets
from twostream.storage import atomic
from twostream.train import checkpoints, overlap


def imported_on_use(name):
    """The module `name`, run on the first use of one of its attributes (importlib's LazyLoader), or the
    module itself once something has imported it."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# scikit-learn and matplotlib load when scores are first saved or fused: --help stays instant.
evaluation, report = imported_on_use("twostream.scoring.evaluation"), imported_on_use("twostream.scoring.report")

REUSE_SETTINGS = ("model", "fingerprint", "samples", "crops", "image_size", "stack_length")  # must match to reuse
CHUNK = re.compile(r"chunk\d{6}_\d+\.npz")  # chunk_path's names
# Each stream's network, as its config.json records it: the report compares a row with the figure measured with it.
NETWORK_SETTINGS = ("stack_length", "arch", "norm", "training")
MERGE_SETTINGS = ("samples", "crops", "image_size", "stack_length", "dataset", "split", "num_classes", "class_limit",
                  "max_videos", "trained_on", "multitask")  # the parts of one --shard K/N split must agree on these


def parse_args(argv=None):
    parser = flags.parser(__doc__)
    flags.add(parser, "test", *flags.DATASET_FLAGS, "--checkpoints", "--spatial", "--temporal")

    def flag(*args, **kwargs):
        return flags.add_flag(parser, "test", *args, **kwargs)

    flag("--streams", "streams to test (default: both, and their fusions; with --from-scores: those saved there)",
         nargs="+", choices=STREAMS)
    flags.add(parser, "test", "--samples")
    flag("--crops", "centre crop only, or 4 corners + centre and their flips (the paper's)", choices=presets.EVAL_CROPS)
    flag("--aggregate", "samples -> video score: mean softmax (the paper) or votes of the samples (the seed; "
         "ties go to the class with the higher mean softmax)", choices=presets.AGGREGATIONS, default="mean")
    flags.add(parser, "test", "--fusion-weights", "--recipe")
    flag("--no-svm", "skip SVM fusion, which scores the training list's videos too", action="store_true")
    flags.add(parser, "test", "--batch-size", "--workers")
    flag("--save-every", "save the scores in chunks of this many videos, each as soon as it is computed: a rerun "
         "resumes after the last complete chunk", type=flags.positive, default=50)
    flag("--from-scores", "re-aggregate and re-fuse the scores_<stream>.npz saved in DIR; loads no model",
         metavar="DIR")
    flag("--skip-missing", "leave out test videos whose frames or flow are missing (default: list them and stop)",
         action="store_true")
    flags.add(parser, "test", "--overwrite")
    flag("--results-dir", "parent folder of the run folders", default="results")
    flag("--run-name", "results/<run-name>/ (default: <dataset>_split<K>, with the quick-run limits appended; "
         "with --from-scores: write into that folder)")
    flag("--unfinished", "test models whose run had steps left when they were saved (their training record says so: "
         "a stopped run, or best.keras of an earlier epoch); results.md says so. Default: refuse them",
         action="store_true")
    flags.add(parser, "test", "--class-limit", "--max-videos", "--distribute", "--shard")
    flag("--merge", "fuse the N parts that --shard K/N runs scored into this run folder (same flags, without "
         "--shard); refuses an incomplete set, naming the missing videos; loads no model", action="store_true")
    args = flags.parse(parser, "test", argv)
    flags.refuse(parser, args, "--distribute", "multiworker", "fuse_test.py runs on one machine: use mirrored for "
                 "its GPUs, and --shard K/N to share the videos between machines")
    if args.samples < 1 or args.batch_size < 1 or args.save_every < 1:
        parser.error("--samples, --batch-size and --save-every must be at least 1")
    if sum(map(bool, (args.shard, args.merge, args.from_scores))) > 1:
        parser.error("--shard, --merge and --from-scores exclude each other")
    return args


# ---------------------------------------------------------------------------- models and videos

def read_models(args, streams):
    """{stream: (path, config, how far it trained)} and the classes every stream was trained on (they must
    agree). An unfinished model is refused unless --unfinished."""
    found, classes = {}, None
    for stream in streams:
        path = checkpoints.model_path(args.checkpoints, stream, getattr(args, stream))
        config, stream_classes = checkpoints.read(path, stream, args.dataset)
        check_config(path, stream, config, stream_classes, args.dataset)
        trained = training_progress(path)
        check_finished(path, trained, args.unfinished)
        print(f"{stream}: {path}, {checkpoints.progress_text(trained)}")
        if classes is not None and stream_classes != classes:
            raise DataError(f"{path} was trained on other classes than the {streams[0]} stream "
                            f"({len(stream_classes)} vs {len(classes)}, or in another order); "
                            "test models trained on the same classInd.txt")
        found[stream], classes = (path, config, trained), stream_classes
    return found, classes


def training_progress(path):
    """{steps_done, steps_planned} of a model's training record, or None without one."""
    record = checkpoints.read_training_record(path)
    return record and {key: record[key] for key in ("steps_done", "steps_planned")}


def check_finished(path, trained, unfinished_allowed, scores=None):
    """Refuse a model (or the scores of one) whose run had steps left when it was saved, unless --unfinished:
    a preempted job's model must not become a published number by accident."""
    if checkpoints.is_unfinished(trained) and not unfinished_allowed:
        source = f"{scores}: scores of {path}" if scores else path
        raise DataError(f"{source}: trained {trained['steps_done']} of its run's {trained['steps_planned']} steps. "
                        "Finish the run (its training command started again resumes it), or pass --unfinished to "
                        "test it as it is (results.md then says so)")


def check_config(path, stream, config, classes, dataset):
    """A model of the other stream, or one whose config.json and classInd.txt disagree: refused from its
    config.json before anything is loaded."""
    config_path = os.path.join(os.path.dirname(path), checkpoints.CONFIG_FILE)
    if config.get("stream", stream) != stream:
        raise DataError(f"{path}: is a {config['stream']} model ({config_path}), given as the {stream} stream; "
                        f"point --{stream} (or --checkpoints) at a {stream} model")
    own_head = checkpoints.head(config, dataset) == config.get("dataset")
    if own_head and config.get("num_classes", len(classes)) != len(classes):
        raise DataError(f"{config_path}: says {config['num_classes']} classes but the classInd.txt beside it lists "
                        f"{len(classes)}; the folder mixes two runs: retrain, or copy that run's classInd.txt back")


def load_videos(args, classes, subset):
    """The split's test (or training) list, limited to the classes the models know."""
    listed = ucf101.class_names(args.splits_dir)
    if listed[:len(classes)] != classes:
        raise DataError(f"the models' classInd.txt does not match {os.path.join(args.splits_dir, 'classInd.txt')} "
                        f"(models: {len(classes)} classes starting {classes[:3]}, splits: {listed[:3]}); "
                        "point --splits-dir / --dataset at the split lists the models were trained on")
    if len(classes) < len(listed) and not args.class_limit and subset == "test":
        print(f"the models know the first {len(classes)} of {len(listed)} classes: testing those")
    class_limit = min(args.class_limit or len(classes), len(classes))
    limit = args.max_videos if subset == "test" else None
    videos = ucf101.load_index(args.data_dir, args.splits_dir, args.split, subset, class_limit, limit)
    if not videos:
        raise DataError(f"{args.splits_dir}: the split {args.split} {subset} list has no videos of these classes")
    return videos


def drop_missing(videos, args, streams, subset):
    """Videos without the frames or flow a stream needs: an error listing them, or left out."""
    import generators
    missing = set()
    for stream in streams:
        missing.update(generators.missing_data(videos, args.data_dir, stream))
    if missing and not args.skip_missing:
        raise generators.missing_data_error([v.name for v in videos if v.name in missing], args.data_dir, streams,
                                            len(videos), f"{subset} ", "pass --skip-missing to leave them out")
    if missing:
        print(f"leaving out {len(missing)} {subset} videos with missing frames or flow (--skip-missing)")
    return [v for v in videos if v.name not in missing], sorted(missing)


# ---------------------------------------------------------------------------- scores of one stream

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


def saved_scores(path, settings, classes, redo):
    """{video name: (label, sample scores [N, C])} from a scores file computed the same way."""
    loaded = evaluation.load_scores(path, redo)
    saved = loaded["settings"]
    differ = [f"{key}: saved {saved.get(key)!r}, now {settings[key]!r}" for key in REUSE_SETTINGS
              if key != "fingerprint" and saved.get(key) != settings[key]]
    if saved.get("model") == settings["model"] and saved.get("fingerprint") != settings["fingerprint"]:
        differ.append(f"the model file {settings['model']} changed after they were computed: other size or mtime")
    if differ or loaded["classes"] != classes:
        raise DataError(f"{path}: holds scores computed differently ({', '.join(differ) or 'other classes'}). "
                        "Pass --overwrite to compute them again, or --run-name to keep both")
    return {name: (int(label), scores) for name, label, scores in
            zip(loaded["videos"], loaded["labels"], loaded["scores"])}


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


def stream_scores(args, stream, model_file, config, classes, videos, run_dir, settings, subset, strategy):
    """Per-sample scores [V, N, C] of every video: reused, resumed or computed. Computed scores are saved in
    chunks of --save-every videos as they come, joined into the stream's score file at the end."""
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
            model = checkpoints.load(model_file, stream, args.dataset)[0]
        check_outputs(model, model_file, classes)
        with tqdm(total=len(videos), initial=len(done), desc=f"{stream} ({subset} list)", unit="video") as progress:
            for start in range(0, len(todo), args.save_every):
                chunk = todo[start:start + args.save_every]
                scores = predict_videos(model, chunk, args, stream, config, distributed.device_count(strategy))
                evaluation.save_scores(chunk_path(final, position[chunk[0].name], len(chunk)),
                                       [v.name for v in chunk], [v.label for v in chunk], scores, classes, settings)
                done.update({video.name: (video.label, s) for video, s in zip(chunk, scores)})
                progress.update(len(chunk))
    if todo or source != final:  # scores reused whole are left as they are
        evaluation.save_scores(final, [v.name for v in videos], [done[v.name][0] for v in videos],
                               [done[v.name][1] for v in videos], classes, settings)
    shutil.rmtree(chunks_dir(final), ignore_errors=True)
    partial = final[:-len(".npz")] + ".partial.npz"
    if os.path.exists(partial):
        os.remove(partial)
    return np.stack([done[v.name][1] for v in videos])


def check_outputs(model, model_file, classes):
    """A model whose softmax has another class count than its classInd.txt: refused before scoring."""
    outputs = model.output_shape[-1]
    if outputs != len(classes):
        raise DataError(f"{model_file}: its softmax has {outputs} classes but the classInd.txt beside it lists "
                        f"{len(classes)}; the folder mixes two runs: retrain, or point --spatial/--temporal at "
                        "the .keras file of that run")


def predict_videos(model, videos, args, stream, config, devices=1):
    """Per-sample softmax [V, N, C] (crops averaged). The host reads each sample once (a generators sequence, read
    by its own workers, Keras's ordered enqueuer, while the model runs). 10 crops: it sends the sample whole, fitted
    to the short side but uncropped (generators.EvalSampleSequence), and the device cuts the crops and flips and
    averages their softmax (models.with_eval_crops): the scores of the network on generators.EvalSequence's
    host-cut crops within float32 round-off, from a tenth of the images (a fifth of the bytes: 25 x 256 x 340
    against 250 x 224 x 224 a UCF-101 video). Centre crop: the host cuts it (EvalSequence), a view, and sends
    that, smaller than the whole sample. --batch-size counts the crops of one forward pass either way: a batch
    holds batch_size // (samples x crops) videos (at least one). Videos whose samples differ in shape go in
    separate runs (generators.shape_runs), each with its own crop model: a batch holds one shape. `devices`: how
    many devices split each batch (distributed.device_count), which pads the batches for them."""
    import generators
    sample_stream = generators.Stream(stream, config["stack_length"])
    size, crops = config["image_size"], generators.CROPS_PER_SAMPLE[args.crops]
    per_batch = max(1, args.batch_size // (args.samples * crops))
    if crops == 1:
        sequence = generators.EvalSequence(videos, args.data_dir, sample_stream, samples=args.samples,
                                           crops=args.crops, image_size=size, videos_per_batch=per_batch,
                                           workers=args.workers)
        return predict(model, sequence, devices).reshape(len(videos), args.samples, -1)
    scores = []
    for shape, same_shape in generators.shape_runs(videos, args.data_dir, sample_stream, size, args.samples):
        sequence = generators.EvalSampleSequence(same_shape, args.data_dir, sample_stream, shape, samples=args.samples,
                                                 image_size=size, videos_per_batch=per_batch, workers=args.workers)
        scorer = eval_crops_model(model, shape, size, args.crops, sample_stream.is_flow)
        scores.append(predict(scorer, sequence, devices))
    return np.concatenate(scores).reshape(len(videos), args.samples, -1)


def predict(model, sequence, devices):
    """model.predict over `sequence`'s batches, each padded to split evenly over `devices` devices (JAX's
    keras.distribution: distributed.DevicePadded) and the padding's outputs dropped."""
    from twostream.train import distributed
    if devices == 1:
        return np.asarray(model.predict(sequence, verbose=0), np.float32)
    padded = distributed.DevicePadded(sequence, devices)
    return padded.unpadded(np.asarray(model.predict(padded, verbose=0), np.float32))


EVAL_CROPS_MODELS = {"network": None}  # the last network's device-crop models, by sample shape and protocol


def eval_crops_model(model, shape, image_size, crops, is_flow):
    """`model` on whole samples of `shape`, its crops cut on the device (models.with_eval_crops), made in the
    model's distribution strategy (TensorFlow's: its batches spread over the GPUs) and kept for the next chunk of
    videos: each compiles once. Only the last model's are kept."""
    import generators
    import models
    from twostream.train import distributed
    if EVAL_CROPS_MODELS["network"] is not model:
        EVAL_CROPS_MODELS.clear()
        EVAL_CROPS_MODELS["network"] = model
    key = (tuple(shape), image_size, crops, is_flow)
    if key not in EVAL_CROPS_MODELS:
        with distributed.scope(getattr(model, "distribute_strategy", None)):  # TensorFlow's trainer only
            EVAL_CROPS_MODELS[key] = models.with_eval_crops(
                model, shape, generators.eval_windows(shape, image_size, crops), is_flow)
    return EVAL_CROPS_MODELS[key]


def compute_all(args, run_dir):
    """Per-sample scores of each stream -> {subset: {stream: {videos, labels, scores, classes, settings}}}."""
    from twostream.train import distributed  # tf.distribute lives there only
    streams = args.streams or list(STREAMS)
    strategy = distributed.scoring_strategy(args.distribute)
    found, classes = read_models(args, streams)
    subsets = ["test"] + (["train"] if len(streams) == 2 and not args.no_svm else [])
    data = {}
    for subset in subsets:
        videos, skipped = drop_missing(shard_videos(load_videos(args, classes, subset), args.shard, subset),
                                       args, streams, subset)
        if not videos and args.shard:  # a part of a short list can be empty
            continue
        if subset == "test":
            for stream in streams:
                path, config, _ = found[stream]
                overlap.refuse_seen_test_videos(path, config, stream, checkpoints.head(config, args.dataset),
                                                args.split, args.splits_dir, [v.name for v in videos])
            record = checkpoints.data_record(args.data_dir, videos[0])
            for stream in streams:
                checkpoints.check_data(found[stream][1], record, stream, args.data_dir)
        data[subset] = {}
        for stream in streams:
            path, config, trained = found[stream]
            settings = {"stream": stream, "model": os.path.abspath(path), "fingerprint": checkpoints.fingerprint(path),
                        "samples": args.samples, "crops": args.crops, "image_size": config["image_size"],
                        "stack_length": config["stack_length"], "dataset": args.dataset, "split": args.split,
                        "num_classes": len(classes), "class_limit": args.class_limit,
                        "max_videos": args.max_videos if subset == "test" else None, "skipped": skipped,
                        "trained_on": {"dataset": config.get("dataset"), "split": config.get("split")},
                        "multitask": config.get("multitask"), "init": config.get("init"), "shard": args.shard,
                        "trained": trained, "arch": config.get("arch"), "norm": config.get("norm"),
                        "training": report.training_kind(config, stream)}
            scores = stream_scores(args, stream, path, config, classes, videos, run_dir, settings, subset, strategy)
            data[subset][stream] = {"videos": [v.name for v in videos], "labels": np.array([v.label for v in videos]),
                                    "scores": scores, "classes": classes, "settings": settings}
    return data


def shard_videos(videos, shard, subset):
    """Part K of N of `videos` (--shard K/N), or all of them."""
    if not shard:
        return videos
    part = [v for v in videos if ucf101.shard_of(v.name, shard[1]) == shard[0]]
    print(f"shard {shard[0]}/{shard[1]}: {len(part)} of the {len(videos)} {subset}-list videos")
    return part


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
    parts = [evaluation.load_scores(files[key], f"delete it and score part {key[0]}/{key[1]} again: fuse_test.py "
                                                f"--shard {key[0]}/{key[1]} with the same flags")
             for key in sorted(files)]
    for part, path in zip(parts[1:], paths[1:]):
        if part["classes"] != parts[0]["classes"] or not same_scoring(part["settings"], parts[0]["settings"]):
            raise DataError(f"{path}: was scored otherwise than {paths[0]} (another model, classes, samples, crops "
                            "or limits); score every part with the same flags and model")
    scored = {name: (label, scores) for part in parts
              for name, label, scores in zip(part["videos"], part["labels"], part["scores"])}
    skipped = sorted({name for part in parts for name in part["settings"].get("skipped", [])})
    listed = [v.name for v in load_videos(args, parts[0]["classes"], subset)]
    missing = [name for name in listed if name not in scored and name not in skipped]
    if missing:
        count, more = counts[0], f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        todo = " ".join(f"{k}/{count}" for k in sorted({ucf101.shard_of(name, count) for name in missing}))
        raise DataError(f"{run_dir}: no part file holds the {stream} scores of {len(missing)} of the {len(listed)} "
                        f"{subset}-list videos: {', '.join(missing[:10])}{more}. Score them with fuse_test.py "
                        f"--shard K/N for K/N = {todo} (a run resumes), put the scores_*.shard*of{count}.npz files "
                        "here, and --merge again")
    names = [name for name in listed if name in scored]
    settings = {**parts[0]["settings"], "shard": None, "skipped": skipped}
    lock_run(run_dir, None)  # the files an unsharded run writes
    evaluation.save_scores(scores_path(run_dir, stream, subset), names, [scored[n][0] for n in names],
                           [scored[n][1] for n in names], parts[0]["classes"], settings)
    print(f"{stream} {subset}-list scores: {len(names)} videos from {len(files)} parts of {counts[0]}")
    return stream, subset


def same_scoring(settings, other):
    """Whether two parts were scored alike: the same protocol, limits and model file size (the model's
    path and time stamp may differ between machines)."""

    def size(s):
        return (s.get("fingerprint") or {}).get("size")

    return all(settings.get(key) == other.get(key) for key in MERGE_SETTINGS) and size(settings) == size(other)


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
    data = {"test": align({s: evaluation.load_scores(scores_path(folder, s), redo) for s in present}, folder)}
    train = {s: scores_path(folder, s, "train") for s in present}
    found = [path for path in train.values() if os.path.exists(path)]
    if svm and len(present) == 2 and found:
        missing = [path for path in train.values() if not os.path.exists(path)]
        if missing:
            raise DataError(f"{missing[0]}: not found, but {found[0]} is: the SVM fusion needs both streams' "
                            "training-list scores. Compute it with fuse_test.py without --from-scores (the same "
                            "--run-name; it scores only what is missing), or pass --no-svm")
        data["train"] = align({s: evaluation.load_scores(path, redo) for s, path in train.items()}, folder)
    return data


def align(data, folder):
    """Keep the videos every stream scored, in the first stream's order (they may differ after --skip-missing)."""
    classes = {tuple(d["classes"]) for d in data.values()}
    if len(classes) > 1:
        raise DataError(f"{folder}: the streams' score files were computed for different classes")
    common = set.intersection(*(set(d["videos"]) for d in data.values()))
    first = next(iter(data.values()))
    label_of = dict(zip(first["videos"], first["labels"]))
    order = [name for name in first["videos"] if name in common]
    for d in data.values():
        position = {name: i for i, name in enumerate(d["videos"])}
        keep = [position[name] for name in order]
        if any(d["labels"][i] != label_of[name] for i, name in zip(keep, order)):
            raise DataError(f"{folder}: the streams' score files disagree on the labels of some videos")
        d["settings"]["skipped"] = sorted(set(d["settings"].get("skipped", [])) | (set(d["videos"]) - common))
        d.update(videos=order, labels=d["labels"][keep], scores=d["scores"][keep])
    return data


# ---------------------------------------------------------------------------- fusion and the report

def video_scores(data, args):
    """({row: video scores [V, C]}: each stream, their average, and the SVM on their scores; the SVM's C and
    how it was chosen, or None)."""
    test = data["test"]
    scores = {stream: evaluation.aggregate(d["scores"], args.aggregate) for stream, d in test.items()}
    if len(scores) == 2:
        scores["fusion"] = evaluation.fuse([scores["spatial"], scores["temporal"]], args.fusion_weights)
    train, svm = data.get("train", {}), None
    if len(scores) == 3 and train and len(set(next(iter(train.values()))["labels"])) < 2:
        print("no SVM fusion: the training list's scores hold fewer than two classes")
    elif len(scores) == 3 and train:
        first = next(iter(train.values()))
        svm = evaluation.svm_fit({s: evaluation.aggregate(d["scores"], args.aggregate) for s, d in train.items()},
                                 first["labels"], groups=evaluation.video_groups(first["videos"]))
        scores["svm"] = evaluation.svm_scores(svm, {s: scores[s] for s in train})
        print(f"SVM fusion: {report.svm_text(svm.choice_)}")
    if (test.get("temporal", {}).get("settings") or {}).get("multitask"):  # its own row and reference figures
        scores = {("temporal_multitask" if row == "temporal" else row): s for row, s in scores.items()}
    return scores, svm and svm.choice_


def fuse_and_report(data, args, out_dir):
    """Fuse the test scores (video_scores), write the run's report files (report.write_report) and print its
    table; then the mean over the splits tested so far. Scores of an unfinished model are refused unless
    --unfinished, and a table is never written over one with more rows."""
    first = next(iter(data["test"].values()))
    models = {stream: {"model": d["settings"].get("model"), "trained": d["settings"].get("trained")}
              for stream, d in data["test"].items()}
    for stream, d in data["test"].items():
        check_finished(models[stream]["model"], models[stream]["trained"], args.unfinished,
                       scores=scores_path(out_dir, stream))
    skipped = sorted(set().union(*(d["settings"].get("skipped", []) for d in data["test"].values())))
    scores, svm_choice = video_scores(data, args)
    keep_fuller_table(out_dir, scores)
    temporal = data["test"].get("temporal", {}).get("settings") or {}
    settings = {**first["settings"], "temporal_net": report.temporal_net(temporal) if temporal else None,
                "models": models, "networks": {stream: {key: d["settings"].get(key) for key in NETWORK_SETTINGS}
                                               for stream, d in data["test"].items()}}
    table = report.write_report(out_dir, first["videos"], first["labels"], first["classes"], scores, settings,
                                args.aggregate, args.fusion_weights, skipped, svm_choice)
    print(table)
    print(f"{len(first['videos'])} test videos" + (f", {len(skipped)} skipped for missing frames or flow" if skipped
                                                   else "")
          + f"; {report.aggregation_text(args.aggregate)}. Wrote {out_dir}/results.md, per_class.csv, "
            "confusion.png, misclassified.csv, metrics.json")
    report.write_splits_mean(os.path.dirname(os.path.abspath(out_dir)), first["settings"].get("dataset"))


def keep_fuller_table(out_dir, scores):
    """Refuse to write a table of fewer rows (streams, fusions) over the one in out_dir: a quick look at one
    stream must not replace a run's full results."""
    saved = os.path.join(out_dir, "metrics.json")
    if not os.path.isfile(saved):
        return
    rows = set(report.read_metrics(saved).get("results", {}))
    lost = sorted(rows - set(scores))
    if lost:
        raise DataError(f"{saved}: its table has the rows {', '.join(sorted(rows))}, this one would lose "
                        f"{', '.join(lost)}. Write it elsewhere (--run-name), or delete results.md and metrics.json "
                        "there first")


def run_dir_of(args):
    if args.from_scores and not args.run_name:
        return args.from_scores
    name = args.run_name or (f"{args.dataset}_split{args.split}"
                             + (f"_classes{args.class_limit}" if args.class_limit else "")
                             + (f"_videos{args.max_videos}" if args.max_videos else ""))
    return os.path.join(args.results_dir, name)


def main(argv=None):
    args = parse_args(argv)
    run_dir = run_dir_of(args)
    if args.shard:
        compute_all(args, run_dir)
        print(f"part {args.shard[0]} of {args.shard[1]} scored into {run_dir}. Once every part is there: "
              "the same command with --merge instead of --shard fuses them")
        return
    if args.merge:
        merge_shards(args, run_dir)
    data = load_saved(args.from_scores or run_dir, args.streams, not args.no_svm) if args.from_scores or args.merge \
        else compute_all(args, run_dir)
    fuse_and_report(data, args, run_dir)


if __name__ == "__main__":
    sys.exit(run(main))
