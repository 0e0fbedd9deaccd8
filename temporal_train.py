"""Train the temporal stream: a ConvNet on stacks of L = 10 optical flow frames (u and v).

    python temporal_train.py                         # the paper: CNN-M-2048 from scratch, UCF-101 split 1
    python temporal_train.py --accumulate 2          # batch 256 as two halves, where 256 does not fit
    python temporal_train.py --arch inception_v3 --weights imagenet   # cross-modality initialisation (TSN)
    python temporal_train.py --dataset synthetic     # the generated mini dataset, a few minutes on a CPU

As the paper: CNN-M-2048 with local response normalisation after conv1 only, dropout 0.9 on both
fully connected layers; batches of 256 stacks, each from a class drawn uniformly, a random
224 x 224 crop and a random flip; SGD with momentum 0.9 and weight decay 5e-4, learning rate
1e-2, divided by 10 after 50k and 70k iterations, stopping at 80k. The model after the last
iteration (last.keras) is the one fuse_test.py tests. Started again, the same command continues
from the last finished epoch.
"""
import argparse
import sys

import presets
from errors import run


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    presets.add_training_flags(parser, "temporal")
    flag = lambda *a, **k: presets.add_flag(parser, "temporal", *a, **k)
    flag("--arch", "cnn_m_2048 (the paper's) or inception_v3", choices=presets.ARCHS, default="cnn_m_2048")
    flag("--norm", "cnn_m_2048's normalisation after conv1: lrn (the paper's; none after conv2) or "
         "batchnorm (after conv1 and conv2)", choices=presets.NORMS)
    flag("--weights", "none (from scratch); imagenet or a local InceptionV3 .h5 file for --arch inception_v3 "
         "(cross-modality initialisation)", default="none")
    flag("--stack-length", "L, flow frames per stack", type=int, default=10)
    flag("--dropout", "dropout after full6 and full7", type=float)
    flag("--lr", "initial learning rate", type=float)
    flag("--lr-drops", "iterations after which the learning rate is divided by 10", type=int, nargs="*")
    flag("--iterations", "optimizer steps in all", type=int)
    return presets.parse_training(parser, "temporal", argv)


def main(argv=None):
    args = parse_args(argv)
    import generators  # Keras and TensorFlow load here, after the flags: --help stays instant
    import models
    import training

    stream = generators.Stream("temporal", args.stack_length)
    norm = args.norm if args.arch == "cnn_m_2048" else None
    run_ = training.start(args, stream, arch=args.arch, norm=norm)
    train = training.train_sequence(args, run_, stream)
    validation = training.validation(args, run_, stream)
    training.describe("temporal", args, run_, train, args.iterations)

    with training.scope(run_.strategy):
        model = models.temporal_model(len(run_.classes), args.image_size, args.stack_length, args.arch,
                                      args.weights, args.dropout, norm=norm or "lrn")
        training.compile_model(model, training.sgd(args, args.lr, args.lr_drops), args)
    epochs = training.epochs_for(args.iterations, args.epoch_steps)
    training.fit(model, train, validation, epochs, training.callbacks(run_.folder, train, validation is not None))
    print(f"temporal: the final model, checkpoints, log.csv and TensorBoard logs are in {run_.folder}")


if __name__ == "__main__":
    sys.exit(run(main))
