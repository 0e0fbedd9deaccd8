"""Train the temporal stream: a ConvNet on stacks of L = 10 optical flow frames (u and v).

    python temporal_train.py                         # the paper: CNN-M-2048 from scratch, UCF-101 split 1
    python temporal_train.py --accumulate 2          # batch 256 as two halves, where 256 does not fit
    python temporal_train.py --arch inception_v3 --weights imagenet   # cross-modality initialisation (TSN)
    python temporal_train.py --multitask hmdb51      # multi-task: one trunk, a UCF-101 and an HMDB-51 head
    python temporal_train.py --dataset hmdb51 --init checkpoints/ucf101/temporal/last.keras
                                                     # fine-tuned from a UCF-101 net (the paper's Table 2)
    python temporal_train.py --dataset synthetic     # the generated mini dataset, a few minutes on a CPU
    python temporal_train.py --recipe tsn            # beyond the paper: TSN's recipe (presets.TSN): 3 segments,
                                                     # InceptionV3 from ImageNet on L = 5, partial BN, dropout 0.7

As the paper: CNN-M-2048 with local response normalisation after conv1 only, dropout 0.9 on both
fully connected layers; batches of 256 stacks, each from a class drawn uniformly, a random
224 x 224 crop and a random flip; SGD with momentum 0.9 and weight decay 5e-4 (Caffe's ImageNet
recipe, which the paper follows), learning rate 1e-2, divided by 10 after 50k and 70k iterations,
stopping at 80k; with --init, the paper's fine-tuning schedule instead: 1e-2, divided by 10 after
14k, stopping at 20k (a schedule flag given wins). The model after the last
iteration (last.keras) is the one fuse_test.py tests. Started again, the same command continues
from the last finished epoch.

Multi-task (--multitask OTHER, the paper's section 4): a second softmax head for another dataset,
whose videos (all of them, the paper's choice: its test list is not this run's) fill half of every
batch; each head's loss counts its own samples only and the losses are summed (multitask.py).
fuse_test.py and demo.py use the head of the dataset they test.
"""
import collections
import os
import sys

from twostream.errors import run, warn
from twostream.protocol import flags, presets


def parse_args(argv=None):
    parser = flags.parser(__doc__)
    flags.add(parser, "temporal", *flags.TRAINING_FLAGS, "--arch", "--weights", "--dropout", "--partial-bn")

    flag = flags.adder(parser, "temporal")

    flag("--norm", "cnn_m_2048's normalisation after conv1: lrn (the paper's; none after conv2) or "
         "batchnorm (after conv1 and conv2)", choices=presets.NORMS)
    flag("--stack-length", "L, flow frames per stack", type=flags.positive)
    flag("--lr", "initial learning rate", type=float)
    flag("--lr-drops", "iterations after which the learning rate is divided by 10", type=flags.non_negative,
         nargs="*")
    flag("--iterations", "optimizer steps in all", type=flags.positive)
    flag("--init", "start from the weights of this temporal .keras file (all layers but the softmax), with the "
         "paper's fine-tuning schedule where --lr, --lr-drops, --iterations are not given (ucf101, hmdb51: "
         f"{schedule_text(presets.FINE_TUNING)}; the mini datasets keep their own). What it and the nets it "
         "descends from trained on is recorded (config.json's trained_on): fuse_test.py and demo.py refuse those "
         "videos")
    flag("--multitask", "train a second softmax head on this dataset too (multi-task; its folders from its preset "
         "or the two flags below)", choices=presets.DATASETS)
    flag("--multitask-data-dir", "the second dataset's jpegs_256/ and tvl1_flow/ folder")
    flag("--multitask-splits-dir", "the second dataset's classInd.txt and split lists")
    flag("--multitask-videos", "the second dataset's videos: all (the paper's) or train (its training list only, "
         "so that its head can be tested too)", choices=("all", "train"), default="all")
    args = flags.parse_training(parser, "temporal", argv)
    if args.init:
        fine_tuning_schedule(args, argv)
    if args.partial_bn and not args.init and args.weights in ("none", None):
        parser.error("--partial-bn keeps pretrained BatchNorm statistics: it needs --weights or --init (a net "
                     "trained from scratch has none to keep)")
    if args.multitask and args.segments > 1:
        parser.error("--segments with --multitask: segment consensus trains one head; use one or the other")
    if args.multitask == args.dataset:
        parser.error("--multitask needs another dataset than --dataset")
    if args.multitask and args.batch_size % (2 * args.accumulate):
        parser.error("--multitask fills half of every batch (of every --accumulate part) from each dataset: "
                     "--batch-size must divide by 2 x --accumulate")
    return args


SCHEDULE_FLAGS = {"lr": "--lr", "lr_drops": "--lr-drops", "iterations": "--iterations"}


def fine_tuning_schedule(args, argv):
    """--init: a net already trained is fine-tuned, as the paper's spatial net and its HMDB-51 temporal net
    from UCF-101 (Table 2), on the preset's fine-tuning schedule (presets.init_schedule), not the 80k
    iterations from scratch. Each schedule flag given on the command line wins."""
    given = {token.split("=")[0] for token in (sys.argv[1:] if argv is None else argv)}
    for key, value in presets.init_schedule(args.dataset).items():
        if SCHEDULE_FLAGS[key] not in given:
            setattr(args, key, value)


def schedule_text(schedule):
    """'lr 0.01, divided by 10 after 14000, stop at 20000' for --help."""
    return (f"lr {schedule['lr']:g}, divided by 10 after {' and '.join(map(str, schedule['lr_drops']))}, stop at "
            f"{schedule['iterations']}")


def main(argv=None):
    args = parse_args(argv)
    import generators  # Keras and TensorFlow load here, after the flags: --help stays instant
    import models
    from twostream.datasets.frames import Stream
    from twostream.networks import custom_layers
    from twostream.train import checkpoints, distributed, multitask, training

    # Set-up: the seed, the precision, --distribute and the folder this process writes its checkpoints into.
    strategy, folder = training.set_up(args.seed, args.precision, args.distribute, args.checkpoint_dir, args.overwrite)

    # Data: stacks of L flow frames from the training list's videos (a random video of a random
    # class, a random start, crop and flip), minus the --val-groups held out for validation; with
    # --multitask, a second dataset fills half of every batch.
    stream = Stream("temporal", args.stack_length)
    videos, held_out, classes = training.load_videos(args.data_dir, args.splits_dir, args.split, stream,
                                                     args.class_limit, args.max_videos, args.val_groups)
    second = multitask_data(args.multitask, args.multitask_data_dir, args.multitask_splits_dir,
                            args.multitask_videos, stream, args.data_dir) if args.multitask else None
    norm = args.norm if args.arch == "cnn_m_2048" else None
    training.prepare_checkpoint_dir(folder, stream, args.data_dir, videos[0], classes, args.overwrite,
                                    image_size=args.image_size, epoch_steps=args.epoch_steps, dataset=args.dataset,
                                    split=args.split, splits_dir=args.splits_dir, arch=args.arch, norm=norm,
                                    init=args.init, partial_bn=args.partial_bn, segments=args.segments,
                                    crop=args.crop, dropout=args.dropout, weights=args.weights, recipe=args.recipe,
                                    multitask=second and {"dataset": args.multitask, "videos": args.multitask_videos})
    loading = dict(batch_size=args.batch_size, accumulate=args.accumulate, epoch_steps=args.epoch_steps,
                   image_size=args.image_size, sampling=args.sampling, crop=args.crop, seed=args.seed,
                   workers=args.workers, datasets=2 if second else 1)
    train = generators.train_sequence(videos, args.data_dir, stream, strategy, segments=args.segments, **loading)
    validation = generators.validation_data(held_out, args.data_dir, stream, args.image_size, args.segments)
    training.describe("temporal", videos, held_out, classes, args.batch_size, args.accumulate, args.iterations,
                      args.epoch_steps, args.val_groups)
    if second:
        datasets = [args.dataset, args.multitask]
        checkpoints.write_head_classes(folder, args.multitask, second.classes)
        other = generators.train_sequence(second.videos, second.data_dir, stream, strategy, **loading)
        train = multitask.MultiTaskSequence({args.dataset: train, args.multitask: other}, workers=args.workers)
        validation = validation and multitask.validation_for(validation, args.dataset, datasets)
        print(f"multi-task: half of every batch from {len(second.videos)} {args.multitask} videos "
              f"({len(second.classes)} classes, {args.multitask_videos})")

    with distributed.scope(strategy):
        # Model: CNN-M-2048 (--arch), from scratch or from --init; with --multitask, one softmax head
        # per dataset on the same trunk.
        model = models.temporal_model(len(classes), args.image_size, args.stack_length, args.arch,
                                      args.weights, args.dropout, norm=norm or "lrn")
        if args.init:
            models.copy_weights(checkpoints.load(args.init, "temporal")[0], model, skip=("predictions",))
        if second:
            model = multitask.with_heads(model, {args.dataset: len(classes), args.multitask: len(second.classes)})
        if args.partial_bn:  # TSN's: only the first BatchNorm layer adapts to flow
            models.set_partial_batchnorm(model)
        # --segments K (TSN's): the network on K stacks of each video, their logits averaged.
        model = custom_layers.with_segment_consensus(model, args.segments)

        # Compile: SGD with momentum and Caffe's weight decay, the learning rate divided by 10 after
        # each of --lr-drops, the softmax cross-entropy (with --multitask, one per head, each over its
        # own dataset's samples).
        learning_rate = training.schedule(args.lr, args.lr_drops, args.accumulate)
        optimizer = training.sgd(learning_rate, args.momentum, args.weight_decay, args.accumulate)
        losses = (multitask.compile_args(datasets) if second else
                  dict(loss="sparse_categorical_crossentropy", metrics=["accuracy"]))
        model.compile(optimizer, **losses, jit_compile=training.jit_compile(args.jit))

    # Callbacks: each epoch's checkpoints (best.keras on the head of --dataset), log and backup.
    monitor = f"val_{multitask.head_name(args.dataset)}_accuracy" if second else "val_accuracy"
    epochs = training.epochs_for(args.iterations, args.epoch_steps)
    callbacks = training.callbacks(folder, train, validation is not None, epochs, monitor=monitor)

    # Fit: --iterations steps, in epochs of --epoch-steps; then the final model.
    training.fit(model, train, validation, epochs, callbacks)
    training.save_final_model(model, folder, args.checkpoint_dir, epochs)
    print(f"temporal: the final model, checkpoints, log.csv and TensorBoard logs are in {folder}")


SecondDataset = collections.namedtuple("SecondDataset", "videos classes data_dir splits_dir")


def multitask_data(dataset, data_dir, splits_dir, subsets, stream, own_data_dir):
    """The second dataset of a multi-task run: its videos (`subsets`: --multitask-videos) and
    classes, and its folders, from its preset unless given (`data_dir`, `splits_dir`)."""
    from twostream.datasets import ucf101
    from twostream.train import lineage, training
    from twostream.video import media
    preset = presets.values(dataset, "temporal")
    data_dir, splits_dir = data_dir or preset["data_dir"], splits_dir or preset["splits_dir"]
    videos = [v for subset in lineage.second_subsets(subsets) for v in
              ucf101.load_index(data_dir, splits_dir, lineage.SECOND_SPLIT, subset)]
    training.check_videos(videos, data_dir, stream, f"{dataset} (--multitask)")
    methods = {d: (media.read_flow_info(os.path.join(d, ucf101.FLOW_DIR)) or {}).get("method")
               for d in (own_data_dir, data_dir)}
    if None not in methods.values() and len(set(methods.values())) > 1:
        warn(f"the two datasets' flow was computed with different methods ({methods}): one trunk learns from both")
    return SecondDataset(videos, ucf101.class_names(splits_dir), data_dir, splits_dir)


if __name__ == "__main__":
    sys.exit(run(main))
