"""Train the temporal stream: a ConvNet on stacks of L = 10 optical flow frames (u and v).

    python temporal_train.py                         # the paper: CNN-M-2048 from scratch, UCF-101 split 1
    python temporal_train.py --arch inception_v3 --weights imagenet   # cross-modality initialisation (TSN)
    python temporal_train.py --dataset synthetic     # the generated mini dataset, a few minutes on a CPU

As the paper: SGD with momentum 0.9, batch 128, learning rate 1e-2, divided by 10 after 50k and
70k iterations, stopping at 80k; dropout 0.9 on both fully connected layers. Training runs in
epochs of one stack from every training video, as many as the iterations take (the last epoch
may overshoot by less than one epoch); the learning rate follows the iteration count, so it is
the same whatever the epoch length. Started again, the same command continues from the last epoch.
"""
import argparse
import math

import keras

import models
import training
from generators import TrainSequence, validation_data

PRESETS = {
    "ucf101": dict(image_size=224, batch_size=128, iterations=80000, lr_drops=[50000, 70000],
                   dropout=0.9, val_videos=505),
    # 216 training videos of 12 classes (128x96 frames): ~14 steps per epoch at batch 16.
    "synthetic": dict(image_size=80, batch_size=16, iterations=300, lr_drops=[200, 260],
                      dropout=0.5, val_videos=0),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    training.add_common_flags(parser, PRESETS)
    parser.add_argument("--arch", choices=models.ARCHS, default="cnn_m_2048",
                        help="cnn_m_2048 (the paper's) or inception_v3 (default: %(default)s)")
    parser.add_argument("--weights", default="none",
                        help="none (from scratch); imagenet or a local InceptionV3 .h5 file for "
                             "--arch inception_v3 (cross-modality initialisation) (default: %(default)s)")
    parser.add_argument("--stack-length", type=int, default=10, help="L, flow frames per stack (default: 10)")
    parser.add_argument("--dropout", type=float, help="dropout after full6 and full7 (ucf101: 0.9; synthetic: 0.5)")
    parser.add_argument("--lr", type=float, default=1e-2, help="initial learning rate (default: %(default)s)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: %(default)s)")
    parser.add_argument("--lr-drops", type=int, nargs="*",
                        help="iterations after which the learning rate is divided by 10 "
                             "(ucf101: 50000 70000; synthetic: 200 260)")
    parser.add_argument("--iterations", type=int, help="training steps in all (ucf101: 80000; synthetic: 300)")
    parser.add_argument("--epochs", type=int, help="train this many epochs instead of --iterations' worth")
    return training.parse_args(parser, PRESETS, "temporal", argv)


def learning_rate(args):
    """Piecewise constant in the optimizer's iteration count: lr, lr/10, lr/100, ..."""
    drops = sorted(args.lr_drops)
    if not drops:
        return args.lr
    values = [args.lr / 10 ** k for k in range(len(drops) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(drops, values)


def main(argv=None):
    args = parse_args(argv)
    strategy, train_videos, val_videos, classes, folder = training.start(args, "temporal", args.arch, args.stack_length)

    train = TrainSequence(train_videos, args.data_dir, "temporal", batch_size=args.batch_size,
                          image_size=args.image_size, stack_length=args.stack_length,
                          multiscale=args.multiscale, seed=args.seed, workers=args.workers)
    validation = validation_data(val_videos, args.data_dir, "temporal", args.image_size, args.stack_length)
    epochs = args.epochs or math.ceil(args.iterations / len(train))
    print(f"temporal: {len(train_videos)} training videos, {len(classes)} classes, {len(train)} steps per epoch, "
          f"{epochs} epochs; validation on {len(val_videos)} test-list videos (centre stack, centre crop)")

    with training.scope(strategy):
        model = models.temporal_model(len(classes), args.image_size, args.stack_length, args.arch,
                                      args.weights, args.dropout)
        optimizer = keras.optimizers.SGD(learning_rate(args), momentum=args.momentum)
        model.compile(optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                      jit_compile=training.jit_compile(args))
    training.fit(model, train, validation, epochs, training.callbacks(folder, train))
    print(f"temporal: checkpoints, log.csv and TensorBoard logs in {folder}")


if __name__ == "__main__":
    training.run(main)
