"""Host CPU time and bytes sent to the device per test video: crops cut on the host (generators.EvalSequence, before
issue 26) against whole samples sent once and cut on the device (generators.EvalSampleSequence, what
fuse_test.predict_videos uses now; custom_layers.EvalCrops cuts them).

    python benchmarks/bench_eval_crops.py                       # the mini data's size and UCF-101's, both streams
    python benchmarks/bench_eval_crops.py --setups ucf101 --crops 10 --predict

Generated videos in the real layout (benchmarks/bench_data.py) at the mini dataset's size (128x96 frames, 80 x 80
crops: run_mini.sh) and at UCF-101's (340x256, 224 x 224), 25 samples per video, stacks of L = 10. For each stream
and test crop mode, all of the test videos' batches are made in this process, one thread (workers=1, as fuse_test's
--workers 1), after one untimed pass (the JPEGs in the page cache): CPU milliseconds per video (time.process_time:
every thread of the process, the JPEG decoder's, OpenCV's), and the bytes of the batches, which is what crosses to
the device. Best of --rounds interleaved rounds. (Centre crop: the whole sample is more bytes than its one crop,
and no less CPU: fuse_test.predict_videos keeps cutting it on the host; its row shows why.)

--predict: also time.process_time around the whole of fuse_test.predict_videos, before (the host crops, its code as
it was) and after, with a network that does next to nothing (a global average pool and a dense softmax), so that
Keras's predict loop and the transfers count but not the network. On a machine without a GPU the device is this
CPU: the after figure then includes cutting the crops, which a GPU does elsewhere.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
import types

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import keras  # noqa: E402

import fuse_test  # noqa: E402
import generators  # noqa: E402
from bench_data import write_dataset  # noqa: E402
from twostream.datasets import ucf101  # noqa: E402
from twostream.datasets.frames import Stream  # noqa: E402
from twostream.loading.sampling import CROPS_PER_SAMPLE  # noqa: E402

SETUPS = {"mini": dict(frame_size=(128, 96), image_size=80), "ucf101": dict(frame_size=(340, 256), image_size=224)}
TEST_BATCH = 250  # fuse_test.py's --batch-size: crops per forward pass

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--setups", default="mini,ucf101", help="comma-separated: " + ", ".join(SETUPS))
parser.add_argument("--streams", default="spatial,temporal")
parser.add_argument("--crops", default="10,center", help="comma-separated test crop modes")
parser.add_argument("--videos", type=int, default=6, help="test videos (as many again are written for training)")
parser.add_argument("--frames", type=int, default=40, help="frames per video")
parser.add_argument("--samples", type=int, default=25)
parser.add_argument("--stack-length", type=int, default=10)
parser.add_argument("--rounds", type=int, default=3)
parser.add_argument("--predict", action="store_true", help="also whole predict_videos calls (see above)")
args = parser.parse_args()


def old_predict_videos(model, videos, test_args, stream, config):
    """fuse_test.predict_videos before issue 26: the host cuts the crops, numpy averages their softmax."""
    crops = CROPS_PER_SAMPLE[test_args.crops]
    sequence = generators.EvalSequence(
        videos, test_args.data_dir, Stream(stream, config["stack_length"]), samples=test_args.samples,
        crops=test_args.crops, image_size=config["image_size"],
        videos_per_batch=max(1, test_args.batch_size // (test_args.samples * crops)), workers=test_args.workers)
    scores = np.asarray(model.predict(sequence, verbose=0), np.float32)
    return scores.reshape(len(videos), test_args.samples, crops, -1).mean(axis=2)


def host_crops(videos, data_dir, stream, size, crops):
    per_batch = max(1, TEST_BATCH // (args.samples * CROPS_PER_SAMPLE[crops]))
    sequence = generators.EvalSequence(videos, data_dir, stream, samples=args.samples, crops=crops, image_size=size,
                                       videos_per_batch=per_batch)
    return sum(sequence[k][0].nbytes for k in range(len(sequence)))


def whole_samples(videos, data_dir, stream, size, crops):
    per_batch = max(1, TEST_BATCH // (args.samples * CROPS_PER_SAMPLE[crops]))
    sent = 0
    for shape, same_shape in generators.shape_runs(videos, data_dir, stream, size, args.samples):
        sequence = generators.EvalSampleSequence(same_shape, data_dir, stream, shape, samples=args.samples,
                                                 image_size=size, videos_per_batch=per_batch)
        sent += sum(sequence[k][0].nbytes for k in range(len(sequence)))
    return sent


def cpu_seconds(work):
    begin = time.process_time()
    result = work()
    return time.process_time() - begin, result


def trivial_network(size, channels, classes):
    inputs = keras.Input((size, size, channels), dtype="uint8")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))


def measure(setup, data_dir, videos):
    size = SETUPS[setup]["image_size"]
    print(f"\n{setup}: {SETUPS[setup]['frame_size'][0]}x{SETUPS[setup]['frame_size'][1]} frames, {size}x{size} "
          f"crops, {args.samples} samples, L={args.stack_length}, {len(videos)} test videos; per video, best of "
          f"{args.rounds} rounds\n")
    print("| stream | crops | host CPU ms, host crops | host CPU ms, whole samples | MB sent, host crops | "
          "MB sent, whole samples |")
    print("|---|---|---|---|---|---|")
    for name in args.streams.split(","):
        stream = Stream(name, args.stack_length)
        for crops in args.crops.split(","):
            ways = {"host": host_crops, "device": whole_samples}
            best, sent = dict.fromkeys(ways, float("inf")), {}
            for way in ways.values():
                way(videos, data_dir, stream, size, crops)  # page cache
            for _ in range(args.rounds):
                for key, way in ways.items():
                    seconds, sent[key] = cpu_seconds(lambda w=way: w(videos, data_dir, stream, size, crops))
                    best[key] = min(best[key], seconds)
            n = len(videos)
            print(f"| {name} | {crops} | {1000 * best['host'] / n:.1f} | {1000 * best['device'] / n:.1f} | "
                  f"{sent['host'] / n / 1e6:.2f} | {sent['device'] / n / 1e6:.2f} |", flush=True)
    if args.predict:
        predict(setup, data_dir, videos, size)


def predict(setup, data_dir, videos, size):
    print(f"\n{setup}: time.process_time around predict_videos (a network that does next to nothing), per video\n")
    print("| stream | crops | CPU ms before | CPU ms after | wall ms before | wall ms after | max score difference |")
    print("|---|---|---|---|---|---|---|")
    for name in args.streams.split(","):
        channels = 2 * args.stack_length if name == "temporal" else 3
        model = trivial_network(size, channels, 5)
        config = {"stack_length": args.stack_length, "image_size": size}
        for crops in args.crops.split(","):
            test_args = types.SimpleNamespace(crops=crops, samples=args.samples, batch_size=TEST_BATCH,
                                              data_dir=data_dir, workers=1)
            ways = {"before": old_predict_videos, "after": fuse_test.predict_videos}
            cpu, wall, scores = dict.fromkeys(ways, float("inf")), dict.fromkeys(ways, float("inf")), {}
            for way in ways.values():
                way(model, videos, test_args, name, config)  # compiles
            for _ in range(args.rounds):
                for key, way in ways.items():
                    begin = time.perf_counter()
                    seconds, scores[key] = cpu_seconds(lambda w=way: w(model, videos, test_args, name, config))
                    cpu[key], wall[key] = min(cpu[key], seconds), min(wall[key], time.perf_counter() - begin)
            n = len(videos)
            print(f"| {name} | {crops} | {1000 * cpu['before'] / n:.0f} | {1000 * cpu['after'] / n:.0f} | "
                  f"{1000 * wall['before'] / n:.0f} | {1000 * wall['after'] / n:.0f} | "
                  f"{np.abs(scores['before'] - scores['after']).max():.1e} |", flush=True)


def main():
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} before")
    for setup in args.setups.split(","):
        data_dir = tempfile.mkdtemp(prefix=f"bench_eval_crops_{setup}_")
        try:
            splits = write_dataset(data_dir, classes=args.videos, videos_per_class=2, frames=args.frames,
                                   size=SETUPS[setup]["frame_size"], workers=2)
            measure(setup, data_dir, ucf101.load_index(data_dir, splits, 1, "test"))
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(f"\nload average {os.getloadavg()[0]:.2f} after (other processes on these CPUs lengthen wall times, not "
          "CPU times)")


if __name__ == "__main__":
    main()
