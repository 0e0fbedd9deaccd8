"""Throughput of the training batches against the JPEG decoder, with 1 and 2 workers.

    python benchmarks/bench_generators.py                 # generated data in a temp folder
    python benchmarks/bench_generators.py --data-dir /tmp/bench_data  # kept, reused next time
    taskset -c 0,1 python benchmarks/bench_generators.py  # the "2 cores" of the goals

Writes (or reuses) videos in the real layout at the real sizes: 340x256 RGB JPEGs and
grayscale u/v flow JPEGs. For spatial and temporal batches of 224x224 crops it prints samples/s
with 1 worker, with 2 worker threads and 2 worker processes, and the decode-only bound: the same
number of JPEGs only read and decoded (one read() + cv2.imdecode) in one process. Two settings
of TrainSequence are measured (--settings):

    default   the training default: class-uniform sampling, random crops, flips, PCA lighting
              noise on the RGB frames (none on flow)
    corners   crop="corners", lighting=0: the crops of the pipeline before random crops and
              lighting, to compare with earlier measurements like with like

The datasets are iterated the way fit() does: Keras's PyDatasetAdapter (its OrderedEnqueuer
when workers > 1) with on_epoch_begin / on_epoch_end.
Goals: 1 worker >= 80% of the decode bound; 2 workers >= 1.5x 1 worker (on 2 cores).
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import generators  # noqa: E402
import media  # noqa: E402
from bench_data import write_video  # noqa: E402
import ucf101  # noqa: E402
from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--data-dir", default=None,
                    help="where to write (or find) the generated data, kept; default: a temp folder, removed")
parser.add_argument("--videos", type=int, default=20, help="generated videos")
parser.add_argument("--frames", type=int, default=60, help="frames per generated video")
parser.add_argument("--repeats", type=int, default=48, help="samples per epoch per video (on average)")
parser.add_argument("--epochs", type=int, default=2, help="epochs timed per configuration and round (the best counts)")
parser.add_argument("--rounds", type=int, default=3,
                    help="rounds of all configurations, interleaved; the best of each is printed (other load only slows)")
parser.add_argument("--batch-size", type=int, default=32, help="training batch size")
parser.add_argument("--image-size", type=int, default=224, help="crop size")
parser.add_argument("--stack-length", type=int, default=10, help="flow frames per temporal sample (L)")
parser.add_argument("--streams", default="spatial,temporal", help="comma-separated streams to measure")
parser.add_argument("--settings", default="default,corners", help="comma-separated TrainSequence settings to measure "
                    "(default: random crops and lighting; corners: corner crops, no lighting)")
args = parser.parse_args()
MARKER = "written_by_bench_generators.txt"  # in --data-dir: a folder this benchmark may write to
SETTINGS = {"default": {}, "corners": {"crop": "corners", "lighting": 0}}  # TrainSequence keywords


# ---------------------------------------------------------------------------- generated data

def make_videos(data_dir):
    """The generated videos in data_dir, written unless there from an earlier run. Refuses a
    folder holding anything else, so that real data is never mixed with generated frames."""
    if os.path.isdir(data_dir) and os.listdir(data_dir) and not os.path.exists(os.path.join(data_dir, MARKER)):
        print(f"{data_dir}: not empty and not written by this benchmark; pass a new or empty --data-dir",
              file=sys.stderr)
        sys.exit(2)
    os.makedirs(data_dir, exist_ok=True)
    open(os.path.join(data_dir, MARKER), "w").close()
    names = [f"v_Bench{i:02d}_g08_c01" for i in range(args.videos)]
    rng = np.random.default_rng(0)
    for name in names:
        if ucf101.count_frames(ucf101.rgb_dir(data_dir, name)) < args.frames:
            write_video(data_dir, name, args.frames, rng)
    return [ucf101.count_video(data_dir, name, label) for label, name in enumerate(names)]


def mean_file_kb(folder):
    files = [os.path.join(folder, f) for f in os.listdir(folder)]
    return np.mean([os.path.getsize(f) for f in files]) / 1024


# ---------------------------------------------------------------------------- measurements

def decode_bound(videos, data_dir, stream, samples):
    """Samples/s when the same JPEGs per sample are only read and decoded, in this process."""
    rng = np.random.default_rng(1)
    flag = cv2.IMREAD_GRAYSCALE if stream.is_flow else cv2.IMREAD_COLOR
    plans = []
    for k in range(samples):
        video = videos[k % len(videos)]
        start = generators.random_start(rng, stream.count(video), stream.span)
        plans.append(stream.paths(data_dir, video, start))
    begin = time.perf_counter()
    for paths in plans:
        for path in paths:
            with open(path, "rb", buffering=0) as file:  # the fastest read; np.fromfile is slower
                cv2.imdecode(np.frombuffer(file.read(), np.uint8), flag)
    return samples / (time.perf_counter() - begin)


def pipeline_rate(videos, data_dir, stream, samples, settings, workers, processes):
    """Samples/s of TrainSequence iterated as fit() does: the best of args.epochs epochs of
    `samples` samples, each timed from on_epoch_begin (which starts Keras's worker pool) to the
    arrival of its last batch. The enqueuer's drain after the last batch (a fixed 0.1 s wait per
    epoch, small next to a real epoch) is left out."""
    dataset = generators.TrainSequence(videos, data_dir, stream, batch_size=args.batch_size,
                                       image_size=args.image_size, steps=samples // args.batch_size,
                                       workers=workers, use_multiprocessing=processes, **SETTINGS[settings])
    adapter = PyDatasetAdapter(dataset, shuffle=False)
    best = 0.0
    for _ in range(args.epochs):
        batches, begin = 0, time.perf_counter()
        adapter.on_epoch_begin()
        for _ in adapter.get_numpy_iterator():
            batches += 1
            if batches == len(dataset):
                best = max(best, batches * args.batch_size / (time.perf_counter() - begin))
        adapter.on_epoch_end()
    return best


def main():
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="bench_generators_")
    try:
        print(f"writing/reading {args.videos} videos x {args.frames} frames in {data_dir} ...", flush=True)
        videos = make_videos(data_dir)
        name = videos[0].name
        print(f"mean JPEG size: RGB {mean_file_kb(ucf101.rgb_dir(data_dir, name)):.1f} KB, "
              f"flow u {mean_file_kb(ucf101.flow_dir(data_dir, 'u', name)):.1f} KB, "
              f"v {mean_file_kb(ucf101.flow_dir(data_dir, 'v', name)):.1f} KB; "
              f"{len(os.sched_getaffinity(0))} CPUs usable, load average {os.getloadavg()[0]:.2f} before")
        samples = (len(videos) * args.repeats) // args.batch_size * args.batch_size
        print(f"{samples} samples per epoch, batch {args.batch_size}, {args.image_size}x{args.image_size} "
              f"crops, L={args.stack_length}; samples/s, best of {args.rounds} interleaved rounds")
        print("goals: 1 worker >= 0.80 x decode-only; 2 workers >= 1.5 x 1 worker")
        workers = {"1 worker": (1, False), "2 threads": (2, False), "2 processes": (2, True)}
        for name in args.streams.split(","):
            stream = generators.Stream(name, args.stack_length)
            configs = {("decode-only", None): lambda: decode_bound(videos, data_dir, stream, samples)}
            for settings in args.settings.split(","):
                for config, (count, processes) in workers.items():
                    configs[config, settings] = (lambda s=settings, c=count, p=processes:
                                                 pipeline_rate(videos, data_dir, stream, samples, s, c, p))
            best = dict.fromkeys(configs, 0.0)
            for _ in range(args.rounds):
                for key, measure in configs.items():
                    best[key] = max(best[key], measure())
            decode = best["decode-only", None]
            for settings in args.settings.split(","):
                one, threads, processes = (best[config, settings] for config in workers)
                print(f"{name:9s} {settings:8s} decode-only {decode:7.1f} | 1 worker {one:7.1f} = {one / decode:.2f} "
                      f"x decode | 2 threads {threads:7.1f} = {threads / one:.2f} x 1 worker | "
                      f"2 processes {processes:7.1f} = {processes / one:.2f} x 1 worker", flush=True)
        print(f"load average {os.getloadavg()[0]:.2f} after (other processes on these CPUs lower the 2-worker figures)")
    finally:
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
