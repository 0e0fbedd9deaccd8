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
config.json says it trained on (twostream/train/lineage.py).

--shard K/N scores only part K of N of the test list (and of the training list, for the SVM):
the videos whose name hashes to K, as prepare_data.py --shard K/N extracts them, so a machine can
score the videos it extracted. Its scores go to scores_<stream>[_train].shardKofN.npz, resumable
like the others; nothing is fused. --merge, with the same flags but --shard, gathers the N parts
into the run's score files (refusing an incomplete set, naming the videos missing and their
parts) and fuses them as --from-scores does; the table is the one an unsharded run gives.
"""
import os
import sys

import numpy as np

from twostream.datasets.ucf101 import STREAMS
from twostream.errors import run
from twostream.protocol import flags, presets


def parse_args(argv=None):
    parser = flags.parser(__doc__)
    flags.add(parser, "test", *flags.DATASET_FLAGS, "--checkpoints", "--spatial", "--temporal")

    flag = flags.adder(parser, "test")

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


# ---------------------------------------------------------------------------- the models' scores

def predict_videos(model, videos, args, stream, config, devices=1):
    """Per-sample softmax [V, N, C] (crops averaged). The host reads each sample once (a generators sequence, read
    by its own workers, Keras's ordered enqueuer, while the model runs). 10 crops: it sends the sample whole, fitted
    to the short side but uncropped (generators.EvalSampleSequence), and the device cuts the crops and flips and
    averages their softmax (custom_layers.with_eval_crops): the scores of the network on generators.EvalSequence's
    host-cut crops within float32 round-off, from a tenth of the images (a fifth of the bytes: 25 x 256 x 340
    against 250 x 224 x 224 a UCF-101 video). Centre crop: the host cuts it (EvalSequence), a view, and sends
    that, smaller than the whole sample. --batch-size counts the crops of one forward pass either way: a batch
    holds batch_size // (samples x crops) videos (at least one). Videos whose samples differ in shape go in
    separate runs (generators.shape_runs), each with its own crop model: a batch holds one shape. `devices`: how
    many devices split each batch (distributed.device_count), which pads the batches for them."""
    import generators
    from twostream.datasets.frames import Stream
    from twostream.loading.sampling import CROPS_PER_SAMPLE
    sample_stream = Stream(stream, config["stack_length"])
    size, crops = config["image_size"], CROPS_PER_SAMPLE[args.crops]
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
    """`model` on whole samples of `shape`, its crops cut on the device (custom_layers.with_eval_crops), made in the
    model's distribution strategy (TensorFlow's: its batches spread over the GPUs) and kept for the next chunk of
    videos: each compiles once. Only the last model's are kept."""
    from twostream.loading.sampling import eval_windows
    from twostream.networks import custom_layers
    from twostream.train import distributed
    if EVAL_CROPS_MODELS["network"] is not model:
        EVAL_CROPS_MODELS.clear()
        EVAL_CROPS_MODELS["network"] = model
    key = (tuple(shape), image_size, crops, is_flow)
    if key not in EVAL_CROPS_MODELS:
        with distributed.scope(getattr(model, "distribute_strategy", None)):  # TensorFlow's trainer only
            EVAL_CROPS_MODELS[key] = custom_layers.with_eval_crops(
                model, shape, eval_windows(shape, image_size, crops), is_flow)
    return EVAL_CROPS_MODELS[key]


# ---------------------------------------------------------------------------- the run

def run_dir_of(args):
    if args.from_scores and not args.run_name:
        return args.from_scores
    name = args.run_name or (f"{args.dataset}_split{args.split}"
                             + (f"_classes{args.class_limit}" if args.class_limit else "")
                             + (f"_videos{args.max_videos}" if args.max_videos else ""))
    return os.path.join(args.results_dir, name)


def main(argv=None):
    args = parse_args(argv)
    # The library, twostream/scoring: scores (the score store: computed, resumed, reused, read back), shards
    # (--merge), fusion (the fusions and the report). It loads here, after the flags: --help stays instant.
    from twostream.scoring import fusion, scores, shards
    run_dir = run_dir_of(args)
    # --shard K/N: this machine's part of the lists, scored into their part files; nothing is fused.
    if args.shard:
        scores.compute_all(args, run_dir, predict_videos)
        print(f"part {args.shard[0]} of {args.shard[1]} scored into {run_dir}. Once every part is there: "
              "the same command with --merge instead of --shard fuses them")
        return
    # The scores: the parts gathered into the run's score files (--merge) and read back, as --from-scores reads
    # them; or each stream's, reused where saved the same way, resumed after the last complete chunk, or computed.
    if args.merge:
        shards.merge_shards(args, run_dir)
    if args.from_scores or args.merge:
        data = scores.load_saved(args.from_scores or run_dir, args.streams, not args.no_svm)
    else:
        data = scores.compute_all(args, run_dir, predict_videos)
    # Fusion and the report: results.md and its files in the run folder, the table printed, the mean over splits.
    fusion.fuse_and_report(data, args, run_dir)


if __name__ == "__main__":
    sys.exit(run(main))
