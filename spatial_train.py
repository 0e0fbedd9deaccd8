"""Train the spatial stream: ImageNet InceptionV3 fine-tuned on single RGB frames, in two phases.

    python spatial_train.py                          # UCF-101 split 1, ImageNet weights (downloaded by Keras)
    python spatial_train.py --weights /path/to/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5
    python spatial_train.py --dataset synthetic      # the generated mini dataset, a few minutes on a CPU
    python spatial_train.py --arch convnext_tiny     # beyond the paper: a stronger ImageNet network
    python spatial_train.py --partial-bn             # beyond the paper: TSN's partial BatchNorm in phase 2
    python spatial_train.py --recipe tsn             # beyond the paper: all of TSN's settings (presets.TSN)

Phase 1 trains only the new top (global average pooling, Dense 1024, dropout 0.5, softmax) on the
frozen ImageNet features, with the paper's fine-tuning schedule: SGD, momentum 0.9, weight decay
5e-4, batches of 256 frames (one per video, classes drawn uniformly, a random 224 x 224 crop, a
random flip and PCA lighting noise), learning rate 1e-2, 1e-3 after 14k iterations, stop at 20k.
Phase 2 also unfreezes the top two inception blocks (mixed9, mixed10): the same schedule at a
tenth of the learning rate. Frozen BatchNorm layers keep their ImageNet statistics.

--arch picks another ImageNet network from keras.applications (EfficientNetV2-S, ConvNeXt-Tiny, Xception;
models.BACKBONES): the same two phases, phase 2 training its last blocks, with its own preprocessing
inside the model. --partial-bn (TSN, Wang et al. 2016) freezes every BatchNorm layer of phase 2 but
the first, which adapts to the frames. --segments 3 (TSN's consensus) trains on 3 frames of each video at
once, their logits averaged; --recipe tsn sets these and TSN's other settings, each flag still overridable.

Phase 1's final model is kept as phase1.keras; a run started again after it (whole) skips to phase 2.
Within a phase, the same command started again continues from the last finished epoch. Epochs
are numbered on from phase 1 into phase 2 in log.csv. The model after the last iteration
(last.keras) is the one fuse_test.py tests.
"""
import copy
import os
import sys

from twostream.errors import DataError, run
from twostream.protocol import flags, presets


def parse_args(argv=None):
    parser = flags.parser(__doc__)
    flags.add(parser, "spatial", *flags.TRAINING_FLAGS, "--arch", "--weights", "--dropout", "--partial-bn")

    flag = flags.adder(parser, "spatial")

    flag("--lighting", "standard deviation of the PCA lighting noise (Krizhevsky et al.; 0: none)", type=float)
    flag("--phase1-optimizer", "optimizer of phase 1: sgd (the paper's) or rmsprop", choices=("sgd", "rmsprop"))
    flag("--phase1-lr", "learning rate of phase 1", type=float)
    flag("--phase1-lr-drops", "iterations of phase 1 after which its learning rate is divided by 10",
         type=flags.non_negative, nargs="*")
    flag("--phase1-iterations", "optimizer steps of phase 1 (the new top only)", type=flags.positive)
    flag("--phase2-lr", "SGD learning rate of phase 2", type=float)
    flag("--phase2-lr-drops", "iterations of phase 2 after which its learning rate is divided by 10",
         type=flags.non_negative, nargs="*")
    flag("--phase2-iterations", "optimizer steps of phase 2 (--arch's last blocks too: InceptionV3's top two)",
         type=flags.positive)
    flag("--phase2-layers", "what phase 2 trains beside the new top: last_blocks, --arch's last blocks (InceptionV3's "
         "top two, the seed's), or all of the network (TSN's)", choices=presets.PHASE2_LAYERS, default="last_blocks")
    args = flags.parse_training(parser, "spatial", argv)
    if args.partial_bn and args.arch in presets.WITHOUT_BATCHNORM:
        parser.error(f"--partial-bn: {args.arch} has no BatchNormalization layers (it normalises with LayerNorm)")
    return args


def main(argv=None):
    args = parse_args(argv)
    import keras  # Keras and TensorFlow load here, after the flags: --help stays instant
    import numpy as np

    import generators
    import models
    from twostream.datasets.frames import Stream
    from twostream.networks import custom_layers
    from twostream.train import checkpoints, distributed, training

    # Set-up: the seed, the precision, --distribute and the folder this process writes its checkpoints into.
    strategy, folder = training.set_up(args.seed, args.precision, args.distribute, args.checkpoint_dir, args.overwrite)

    # Data: single RGB frames of the training list's videos (a random video of a random class, a
    # random frame, crop and flip, PCA lighting noise), minus the --val-groups held out for validation.
    stream = Stream("spatial")
    videos, held_out, classes = training.load_videos(args.data_dir, args.splits_dir, args.split, stream,
                                                     args.class_limit, args.max_videos, args.val_groups)
    training.prepare_checkpoint_dir(folder, stream, args.data_dir, videos[0], classes, args.overwrite,
                                    image_size=args.image_size, epoch_steps=args.epoch_steps, dataset=args.dataset,
                                    split=args.split, splits_dir=args.splits_dir, arch=args.arch,
                                    partial_bn=args.partial_bn, segments=args.segments, crop=args.crop,
                                    dropout=args.dropout, phase2_layers=args.phase2_layers, recipe=args.recipe)
    train = generators.train_sequence(videos, args.data_dir, stream, strategy, batch_size=args.batch_size,
                                    accumulate=args.accumulate, epoch_steps=args.epoch_steps,
                                    image_size=args.image_size, sampling=args.sampling, crop=args.crop,
                                    seed=args.seed, workers=args.workers, lighting=args.lighting,
                                    segments=args.segments)
    validation = generators.validation_data(held_out, args.data_dir, stream, args.image_size, args.segments)
    training.describe("spatial", videos, held_out, classes, args.batch_size, args.accumulate,
                      args.phase1_iterations + args.phase2_iterations, args.epoch_steps, args.val_groups)
    phase1_epochs = training.epochs_for(args.phase1_iterations, args.epoch_steps)
    epochs = phase1_epochs + training.epochs_for(args.phase2_iterations, args.epoch_steps)  # numbered on in phase 2

    phase1_path = os.path.join(folder, checkpoints.PHASE1_FILE)
    if checkpoints.is_complete_model(phase1_path):
        print(f"phase 1: done ({phase1_path})")
    else:
        print(f"phase 1: the new top, {args.phase1_iterations} iterations")
        with distributed.scope(strategy):
            # Model: the frozen ImageNet features of InceptionV3 (--arch) and a new top.
            model = models.spatial_model(len(classes), args.image_size, args.weights, args.dropout, args.arch)
            if models.weights_file(args.weights, args.arch) is None:  # a random base: usable BatchNorm statistics
                whole = copy.copy(train)
                whole.shard = (0, 1)  # every worker of a cluster calibrates on the same, whole batches
                first = np.concatenate([whole[i][0] for i in range(min(4, len(whole)))])
                models.calibrate_random_batchnorm(model, first.reshape(-1, *model.input_shape[1:])[:64])
            models.set_spatial_phase(model, 1)
            # --segments K (TSN's): the network on K snippets of each video, their logits averaged.
            model = custom_layers.with_segment_consensus(model, args.segments)

            # Compile: SGD with momentum and Caffe's weight decay (or RMSprop, the mini datasets'
            # choice), the learning rate divided by 10 after each of --phase1-lr-drops, the softmax
            # cross-entropy.
            learning_rate = training.schedule(args.phase1_lr, args.phase1_lr_drops, args.accumulate)
            if args.phase1_optimizer == "rmsprop":
                optimizer = keras.optimizers.RMSprop(
                    learning_rate, gradient_accumulation_steps=training.accumulation_steps(args.accumulate))
            else:
                optimizer = training.sgd(learning_rate, args.momentum, args.weight_decay, args.accumulate)
            model.compile(optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                          jit_compile=training.jit_compile(args.jit))

        # Callbacks and fit: each epoch's checkpoints, log and backup (backup/phase1); then phase1.keras.
        callbacks = training.callbacks(folder, train, validation is not None, epochs, checkpoints.PHASE_BACKUP_DIRS[1])
        training.fit(model, train, validation, phase1_epochs, callbacks)
        # A run started again trains nothing more in phase 1 first.
        checkpoints.save_model(model, phase1_path, checkpoints.training_record(folder, phase1_epochs, epochs))

    trained = "all of" if args.phase2_layers == "all" else "the last blocks of"
    print(f"phase 2: {trained} {args.arch} and the top, {args.phase2_iterations} iterations")
    # Phase 2's own seed: its dropout draws are then the same whether phase 1 ran in this process or not.
    keras.utils.set_random_seed(args.seed + 1)
    with distributed.scope(strategy):
        # Model: phase 1's, with its last blocks unfrozen (InceptionV3: mixed9 and mixed10); with --partial-bn,
        # every BatchNorm layer but the first frozen.
        try:
            model = custom_layers.load_model(phase1_path)
        except DataError as error:
            raise DataError(f"{phase1_path}: unreadable. Delete it: the same command then saves it again from "
                            "phase 1's backup") from error
        models.set_spatial_phase(model, 2, args.phase2_layers)
        if args.partial_bn:
            models.set_partial_batchnorm(model)
        model = custom_layers.with_segment_consensus(model, args.segments)

        # Compile: SGD with momentum and Caffe's weight decay at --phase2-lr, divided by 10 after
        # each of --phase2-lr-drops, the softmax cross-entropy.
        learning_rate = training.schedule(args.phase2_lr, args.phase2_lr_drops, args.accumulate)
        optimizer = training.sgd(learning_rate, args.momentum, args.weight_decay, args.accumulate)
        model.compile(optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                      jit_compile=training.jit_compile(args.jit))

    # Callbacks and fit: epochs numbered on from phase 1's, backed up in backup/phase2; then the final model.
    callbacks = training.callbacks(folder, train, validation is not None, epochs, checkpoints.PHASE_BACKUP_DIRS[2],
                                   initial_epoch=phase1_epochs)
    training.fit(model, train, validation, epochs, callbacks, initial_epoch=phase1_epochs)
    training.save_final_model(model, folder, args.checkpoint_dir, epochs)
    print(f"spatial: the final model, checkpoints, log.csv and TensorBoard logs are in {folder}")


if __name__ == "__main__":
    sys.exit(run(main))
