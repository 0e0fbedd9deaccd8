"""Training throughput through the real data pipeline against the same model on in-memory tensors.

    python benchmarks/bench_train.py                          # data/synthetic if extracted, else a generated set
    python benchmarks/bench_train.py --data-dir /tmp/synth --splits-dir /tmp/synth/splits
    KERAS_BACKEND=jax python benchmarks/bench_train.py --streams temporal

For each stream it trains the training script's model (InceptionV3 with its new top for the
spatial stream, CNN-M-2048 for the temporal one) on TrainSequence batches decoded from the JPEGs
by --workers threads (the training default: class-uniform sampling, random crops, flips, PCA
lighting on RGB), then on the same batches already in memory (model.fit on numpy arrays, the
bound), and prints samples/s for both and their ratio. Rounds alternate the two so that other
load on the machine hits both alike; the best epoch of each counts. The first epoch of each
(compilation) is not timed. Goal: the pipeline >= 90% of the bound with 2 workers on the CPU.
"""
import argparse
import os
import sys
import tempfile
import time

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
import fakedata  # noqa: E402
import generators  # noqa: E402
import models  # noqa: E402
from twostream.datasets import ucf101  # noqa: E402
from twostream.datasets.frames import Stream, missing_data, missing_data_error  # noqa: E402
from twostream.train import training  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--data-dir", default="data/synthetic", help="extracted frames and flow (default: %(default)s)")
parser.add_argument("--splits-dir", default="data/synthetic/splits", help="split lists (default: %(default)s)")
parser.add_argument("--streams", default="spatial,temporal", help="comma-separated streams to measure")
parser.add_argument("--image-size", type=int, default=80, help="crop side S (default: 80, the synthetic preset's)")
parser.add_argument("--batch-size", type=int, default=16, help="samples per step (default: 16)")
parser.add_argument("--stack-length", type=int, default=10, help="flow frames per temporal sample (default: 10)")
parser.add_argument("--workers", type=int, default=2, help="TrainSequence worker threads (default: 2)")
parser.add_argument("--steps", type=int, default=24, help="training steps per timed epoch (default: 24)")
parser.add_argument("--rounds", type=int, default=3, help="timed epochs of each, alternating (default: 3)")
args = parser.parse_args()


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.start


def training_videos(stream):
    """The split's training videos, their data folder and the number of classes."""
    if os.path.isdir(os.path.join(args.data_dir, ucf101.RGB_DIR)):
        data_dir, splits_dir = args.data_dir, args.splits_dir
    else:
        data_dir = tempfile.mkdtemp(prefix="bench_train_")
        print(f"{args.data_dir}: no frames; generating a fake set at 128x96 in {data_dir}")
        splits_dir = fakedata.write_dataset(data_dir, clips=8, frames=30, size=(128, 96))
    videos = ucf101.load_index(data_dir, splits_dir, 1, "train")
    missing = missing_data(videos, data_dir, stream)
    if missing:
        raise SystemExit(str(missing_data_error(missing, data_dir, stream, leave_out=None)))
    return videos, data_dir, len({v.label for v in videos})


def build(stream, classes):
    if stream == "spatial":
        model = models.spatial_model(classes, args.image_size, weights="none")
        models.set_spatial_phase(model, 2)
        optimizer = keras.optimizers.SGD(1e-4, momentum=0.9)
    else:
        model = models.temporal_model(classes, args.image_size, args.stack_length, dropout=0.5)
        optimizer = keras.optimizers.SGD(1e-2, momentum=0.9)
    model.compile(optimizer, loss="sparse_categorical_crossentropy",
                  jit_compile=training.jit_compile(False))  # as the training scripts without --jit
    return model


def measure(name):
    stream = Stream(name, args.stack_length)
    videos, data_dir, classes = training_videos(stream)
    # args.steps full batches an epoch (class-uniform sampling): a smaller last batch would recompile
    sequence = generators.TrainSequence(videos, data_dir, stream, batch_size=args.batch_size,
                                        image_size=args.image_size, steps=args.steps, workers=args.workers)
    batches = [sequence[i] for i in range(len(sequence))]
    x, y = np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
    model = build(name, classes)
    timer = EpochTimer()
    pipeline, memory = [], []
    model.fit(x, y, batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0)  # compile
    model.fit(sequence, epochs=1, verbose=0)  # start the worker machinery once
    for _ in range(args.rounds):
        model.fit(sequence, epochs=1, verbose=0, callbacks=[timer])
        pipeline.append(len(x) / timer.seconds)
        model.fit(x, y, batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0, callbacks=[timer])
        memory.append(len(x) / timer.seconds)
    figure, bound = max(pipeline), max(memory)
    print(f"{name:8s} {args.image_size}x{args.image_size}x{stream.channels} batch {args.batch_size}: "
          f"pipeline ({args.workers} workers) {figure:6.1f} samples/s, in memory {bound:6.1f} samples/s, "
          f"ratio {figure / bound:.0%} (goal >= 90%)", flush=True)
    return figure / bound


print(f"backend {keras.backend.backend()}, {os.cpu_count()} CPUs, "
      f"{args.steps} steps of {args.batch_size} per timed epoch")
for name in args.streams.split(","):
    measure(name)
