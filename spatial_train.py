"""Train the spatial stream: ImageNet InceptionV3 fine-tuned on single RGB frames, in two phases.

    python spatial_train.py                          # UCF-101 split 1, ImageNet weights (downloaded by Keras)
    python spatial_train.py --weights /path/to/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5
    python spatial_train.py --dataset synthetic      # the generated mini dataset, a few minutes on a CPU

Phase 1 trains only the new top (global average pooling, Dense 1024, dropout, softmax) on the
frozen ImageNet features: 10 epochs of RMSprop, as the seed did (the Keras InceptionV3 fine-tuning
recipe). Phase 2 also unfreezes the top two inception blocks (mixed9, mixed10) and trains with
SGD, learning rate 1e-4, momentum 0.9. Frozen BatchNorm layers keep their ImageNet statistics.
An epoch samples one frame from every training video.

Phase 1's final model is kept as phase1.keras; a run started again after it skips to phase 2.
Within a phase, the same command started again continues from the last epoch. Epochs are
numbered on from phase 1 into phase 2 in log.csv; best.keras is the best of both phases.
"""
import argparse
import os

import keras
import numpy as np

import models
import training
from generators import TrainSequence, validation_data

PRESETS = {
    "ucf101": dict(image_size=224, batch_size=32, weights="imagenet", phase1_epochs=10, phase1_lr=1e-3,
                   phase2_epochs=30, phase2_lr=1e-4, val_videos=505),
    # No ImageNet weights offline: a random base (see models.calibrate_random_batchnorm), whose
    # frozen features the new top needs longer and faster to learn from (measured on the mini run:
    # fusion 78.6% with 1e-3 in phase 1 and 1e-3 in phase 2, 88.1% with 3e-3 and 1e-4).
    "synthetic": dict(image_size=80, batch_size=16, weights="none", phase1_epochs=30, phase1_lr=3e-3,
                      phase2_epochs=4, phase2_lr=1e-4, val_videos=0),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    training.add_common_flags(parser, PRESETS)
    parser.add_argument("--weights", help="imagenet (the Keras download), none, or a local InceptionV3 "
                                          "no-top .h5 file (ucf101: imagenet; synthetic: none)")
    parser.add_argument("--dropout", type=float, default=0.5, help="dropout before the softmax (default: 0.5)")
    parser.add_argument("--phase1-epochs", type=int, help="epochs training the new top only (ucf101: 10; synthetic: 30)")
    parser.add_argument("--phase1-lr", type=float, help="RMSprop learning rate in phase 1 (ucf101: 1e-3; synthetic: 3e-3)")
    parser.add_argument("--phase2-epochs", type=int,
                        help="epochs training the top two inception blocks too (ucf101: 30; synthetic: 4)")
    parser.add_argument("--phase2-lr", type=float, help="SGD learning rate in phase 2 (ucf101 and synthetic: 1e-4)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum in phase 2 (default: 0.9)")
    return training.parse_args(parser, PRESETS, "spatial", argv)


def compile_phase(model, phase, optimizer, args):
    models.set_spatial_phase(model, phase)
    model.compile(optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=training.jit_compile(args))


def main(argv=None):
    args = parse_args(argv)
    strategy, train_videos, val_videos, classes, folder = training.start(args, "spatial", "inception_v3", 1)

    train = TrainSequence(train_videos, args.data_dir, "spatial", batch_size=args.batch_size,
                          image_size=args.image_size, multiscale=args.multiscale, seed=args.seed,
                          workers=args.workers)
    validation = validation_data(val_videos, args.data_dir, "spatial", args.image_size)
    print(f"spatial: {len(train_videos)} training videos, {len(classes)} classes, {len(train)} steps per epoch; "
          f"validation on {len(val_videos)} test-list videos (centre frame, centre crop)")

    phase1_path = os.path.join(folder, "phase1.keras")
    if os.path.isfile(phase1_path):
        print(f"phase 1: done ({phase1_path})")
    else:
        print(f"phase 1: the new top, {args.phase1_epochs} epochs")
        with training.scope(strategy):
            model = models.spatial_model(len(classes), args.image_size, args.weights, args.dropout)
            if models.weights_file(args.weights) is None:
                models.calibrate_random_batchnorm(model, np.concatenate([train[i][0] for i in range(min(4, len(train)))])[:64])
            compile_phase(model, 1, keras.optimizers.RMSprop(args.phase1_lr), args)
        training.fit(model, train, validation, args.phase1_epochs, training.callbacks(folder, train, "backup/phase1"))
        model.save(phase1_path)

    print(f"phase 2: the top two inception blocks and the top, {args.phase2_epochs} epochs")
    with training.scope(strategy):
        model = models.load_model(phase1_path)
        compile_phase(model, 2, keras.optimizers.SGD(args.phase2_lr, momentum=args.momentum), args)
    training.fit(model, train, validation, args.phase1_epochs + args.phase2_epochs,
                 training.callbacks(folder, train, "backup/phase2"), initial_epoch=args.phase1_epochs)
    print(f"spatial: checkpoints, log.csv and TensorBoard logs in {folder}")


if __name__ == "__main__":
    training.run(main)
