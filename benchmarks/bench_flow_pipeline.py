"""tvl1_keras extraction, end to end, against the TV-L1 kernel alone: how close `prepare_data.py flow
--flow-method tvl1_keras` (FlowPipeline: decoding and JPEG-writing threads around the device) comes to
tvl1.estimate_flow on pre-decoded arrays, and what padding each batching wastes.

    KERAS_BACKEND=jax python benchmarks/bench_flow_pipeline.py                  # 64x48, batch 16
    KERAS_BACKEND=jax python benchmarks/bench_flow_pipeline.py --size 340x256 --batch 128 --videos 40

Prints, on the same generated videos (lengths drawn from UCF-101's frame counts, divided by
--shorten) at --size and --batch:
- kernel: pairs/s of tvl1.estimate_flow on the videos' pairs, decoded beforehand, in batches of
  --batch: the bound.
- per video: pairs/s of the previous extraction (each video decoded, computed in its own padded
  batches and written, one after the other: video_extraction.attempt_flow in one process).
- pipeline: pairs/s of `prepare_data.py flow` as it runs now, and its ratio to the kernel (goal:
  close to 1 where the device is the bottleneck; on a CPU the threads take cores from the kernel).
- padding: batch slots wasted on UCF-101's 13,320 videos (--frame-counts) per video and across videos.
- threads against processes for decoding and JPEG writing (--workers each): near 1 if OpenCV
  releases the GIL, so threads serve.
Compiling is timed apart (once per frame size and batch size). Each timing is the best of --rounds.

--host-cpu measures instead what the pipeline costs the host: process CPU seconds (all threads) per
pair of `prepare_data.py flow`, with tvl1.tvl1 replaced by a near-free keras.ops stand-in, so that
what is left is decoding, the transfers, quantisation and JPEG writing (on a CPU backend the
"device" work that remains, casts and quantisation, runs on the host too and is counted).
Videos at --source-size, as UCF-101's (320x240). --baseline TREE (a checkout of another commit,
e.g. `git archive HEAD~1 | tar -x -C /tmp/old`) runs the same measurement with TREE's code on the
same videos and prints the ratio; --thread-counts measures the CPU per pair at each --workers:

    KERAS_BACKEND=jax python benchmarks/bench_flow_pipeline.py --host-cpu --size 340x256 --batch 128 \
        --videos 24 --baseline /tmp/old --thread-counts 1,2,4,8
"""
import argparse
import csv
import dataclasses
import json
import math
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np

# BENCH_CODE: the tree whose modules run (--baseline starts this script with another one)
sys.path.insert(0, os.environ.get("BENCH_CODE") or os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import prepare_data  # noqa: E402
from twostream.datasets import extraction, flow_pipeline, synthetic, video_extraction  # noqa: E402
from twostream.protocol import presets  # noqa: E402
from twostream.storage import locks  # noqa: E402
from twostream.storage.workers import run_parallel  # noqa: E402
from twostream.video import media, tvl1  # noqa: E402

# UCF-101's frame counts, in ../shared beside the checkout where there is one
FRAME_COUNTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "ucf101",
                            "frame_counts.csv")


def frame_counts(path):
    with open(path) as file:
        return [int(row["frames"]) for row in csv.DictReader(file)]


def padding_table(counts, batches=(32, 64, 128, 256)):
    pairs = [count - 1 for count in counts]
    total = sum(pairs)
    print(f"padding on {len(counts):,} videos, {total:,} pairs (extra slots computed / pairs):")
    for batch in batches:
        per_video = sum(math.ceil(p / batch) * batch for p in pairs) - total
        across = math.ceil(total / batch) * batch - total
        print(f"  batch {batch:4d}: per video {per_video:9,d} ({100 * per_video / total:5.1f}%)   "
              f"across videos {across:4d} ({100 * across / total:.4f}%)")


def write_videos(folder, counts, size):
    """Generated XviD videos of these frame counts in UCF-101's layout -> their paths."""
    paths = []
    for i, count in enumerate(counts):
        clip = dataclasses.replace(synthetic.make_clip(0, i % len(synthetic.CLASSES), 1 + i // 12, 1, size),
                                   frames=count)
        path = os.path.join(folder, clip.name.split("_")[1], clip.name + ".avi")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        synthetic.write_video(path, synthetic.render(clip))
        paths.append(path)
    return paths


def best(rounds, function):
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def kernel_rate(pairs, batch, rounds):
    firsts, seconds = (np.array(frames) for frames in zip(*pairs))
    usable = len(firsts) // batch * batch
    started = time.perf_counter()
    tvl1.estimate_flow(firsts[:batch], seconds[:batch])
    print(f"compile + first batch: {time.perf_counter() - started:.1f} s")

    def run():
        for start in range(0, usable, batch):
            tvl1.estimate_flow(firsts[start:start + batch], seconds[start:start + batch])
    return usable / best(rounds, run)


def extract(videos, size, batch, workers, per_video=False):
    """prepare_data's flow extraction into a fresh folder, per video (the earlier way) or through
    FlowPipeline -> (wall seconds, process CPU seconds) of the extraction alone."""
    with tempfile.TemporaryDirectory() as out:
        todo, _, _ = extraction.plan(videos, [os.path.join(out, c) for c in "uv"], 1, False)
        jobs = [video_extraction.Job(path, name, out, size, False, "tvl1_keras", batch) for path, name in todo]
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            if per_video:
                outcomes = run_parallel(video_extraction.attempt_flow, jobs, 1, desc="per video", unit="video")
            else:
                outcomes = flow_pipeline.extract_flow_batched(jobs, workers, "pipeline")
        finally:
            locks.release_tokens()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert not any(o.error for o in outcomes), outcomes
    return wall, cpu


def extraction_rate(videos, size, batch, workers, rounds, per_video):
    """Seconds of prepare_data's flow extraction (extract), the best of `rounds`."""
    return min(extract(videos, size, batch, workers, per_video)[0] for _ in range(rounds))


def decode(path, size):
    return sum(1 for _ in media.consecutive_pairs(media.iter_video(path, size)))


def encode(flows, folder):
    for i, flow in enumerate(flows):
        for component, image in zip("uv", media.quantize_flow(flow)):
            media.write_image(os.path.join(folder, f"{component}{i}.jpg"), image)
    return len(flows)


def threads_against_processes(paths, size, workers, rounds):
    """Decoding and JPEG writing in `workers` threads and in `workers` processes: items/s of each."""
    rng = np.random.default_rng(0)
    flows = [rng.normal(0, 3, (size[1], size[0], 2)).astype(np.float32) for _ in range(64)]
    with tempfile.TemporaryDirectory() as folder:
        for name, work, tasks in (("decoding (frames)", decode, [(path, size) for path in paths]),
                                  ("JPEG writing (pairs)", encode,
                                   [(flows, os.path.join(folder, str(i))) for i in range(4 * workers)])):
            if work is encode:
                for _, task_folder in tasks:
                    os.makedirs(task_folder)
            rates = {}
            forkserver = multiprocessing.get_context("forkserver")  # not fork: JAX runs threads
            for kind, pool in (("threads", ThreadPoolExecutor(workers)),
                               ("processes", ProcessPoolExecutor(workers, mp_context=forkserver))):
                with pool as executor:
                    list(executor.map(work, *zip(*tasks[:workers])))  # start the processes
                    items = []
                    seconds = best(rounds, lambda: items.append(sum(executor.map(work, *zip(*tasks)))))
                    rates[kind] = items[-1] / seconds
            print(f"{name}, {workers} workers: threads {rates['threads']:.0f}/s, processes "
                  f"{rates['processes']:.0f}/s (threads / processes {rates['threads'] / rates['processes']:.2f})")


# ---------------------------------------------------------------------------- host CPU per pair

def stand_in_kernel(first, second, *_):
    """tvl1.tvl1's place in --host-cpu: a flow of the same shape from a few elementwise keras.ops, so
    the compiled call, the transfers and the JPEGs stay and the kernel's own work goes. Smooth where
    the frames are, like real flow, so the JPEGs cost about what real ones do."""
    from keras import ops
    first, second = ops.convert_to_tensor(first, "float32"), ops.convert_to_tensor(second, "float32")
    return ops.stack([(second - first) / 16, (first - second) / 32 + first / 64 - 2], axis=-1)


def host_cpu(videos, pairs, size, batch, workers, rounds):
    """{workers: (CPU ms per pair, pairs/s)} of FlowPipeline around stand_in_kernel, best of `rounds`
    each; the first extraction compiles and is not counted."""
    tvl1.tvl1 = stand_in_kernel
    tvl1.compiled_tvl1.cache_clear()
    extract(videos, size, batch, workers[0])
    results = {}
    for count in workers:
        walls, cpus = zip(*(extract(videos, size, batch, count) for _ in range(rounds)))
        results[count] = (1e3 * min(cpus) / pairs, pairs / min(walls))
    return results


def measure_tree(tree, args):
    """host_cpu, one round, with the code of `tree` (None: this one) in a fresh process
    -> {workers: (ms, pairs/s)}."""
    command = [sys.executable, os.path.abspath(__file__), "--host-cpu-only", "--size", "x".join(map(str, args.size)),
               "--batch", str(args.batch), "--rounds", "1", "--thread-counts", ",".join(map(str, args.thread_counts)),
               "--videos-dir", args.videos_dir, "--pairs", str(args.pairs)]
    env = dict(os.environ, BENCH_CODE=os.path.abspath(tree) if tree else "")
    lines = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout.splitlines()
    return {int(k): tuple(v) for k, v in json.loads(lines[-1]).items()}


def compare_host_cpu(args, videos, pairs):
    """Print CPU ms per pair of this tree (and of --baseline) at each thread count, and the ratio. The
    trees take turns, a round each, so that load from elsewhere falls on both; the best round counts."""
    args.videos_dir, args.pairs = videos, pairs
    trees = {"this tree": None, **({f"baseline {args.baseline}": args.baseline} if args.baseline else {})}
    rounds = [{name: measure_tree(tree, args) for name, tree in trees.items()} for _ in range(args.rounds)]
    results = {name: {workers: (min(r[name][workers][0] for r in rounds), max(r[name][workers][1] for r in rounds))
                      for workers in args.thread_counts} for name in trees}
    for name, by_workers in results.items():
        for workers, (ms, rate) in by_workers.items():
            print(f"host CPU, {name}, {workers} threads each: {ms:.3f} ms per pair ({rate:.0f} pairs/s with the "
                  "stand-in kernel)")
    if args.baseline:
        new, old = results.values()
        for workers in new:
            print(f"host CPU per pair, this tree / baseline, {workers} threads each: "
                  f"{new[workers][0] / old[workers][0]:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=prepare_data.frame_size, default=(64, 48))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--videos", type=int, default=12, help="generated videos (default: %(default)s)")
    parser.add_argument("--shorten", type=int, default=4, help="divide UCF-101's frame counts by this")
    parser.add_argument("--workers", type=int, default=presets.CORES, help="decoding and writing threads")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--frame-counts", default=FRAME_COUNTS)
    parser.add_argument("--host-cpu", action="store_true", help="measure host CPU per pair instead (see above)")
    parser.add_argument("--baseline", help="with --host-cpu: a tree of another commit to compare with")
    parser.add_argument("--thread-counts", type=lambda text: [int(n) for n in text.split(",")], default=None,
                        help="with --host-cpu: --workers values to measure, e.g. 1,2,4 (default: --workers)")
    parser.add_argument("--source-size", type=prepare_data.frame_size, default=(320, 240),
                        help="with --host-cpu: size of the generated videos (default: UCF-101's 320x240)")
    parser.add_argument("--host-cpu-only", action="store_true", help=argparse.SUPPRESS)  # measure_tree's child
    parser.add_argument("--videos-dir", help=argparse.SUPPRESS)
    parser.add_argument("--pairs", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.thread_counts = args.thread_counts or [args.workers]
    if args.host_cpu_only:
        print(json.dumps(host_cpu(args.videos_dir, args.pairs, args.size, args.batch, args.thread_counts,
                                  args.rounds)))
        return

    counts = frame_counts(args.frame_counts) if os.path.exists(args.frame_counts) else None
    if counts:
        padding_table(counts)
    sample = np.random.default_rng(0).choice(counts or [186], args.videos)
    lengths = [max(3, int(count) // args.shorten) for count in sample]
    import keras
    print(f"\n{args.videos} videos of {sum(lengths) - len(lengths)} pairs at {args.size[0]}x{args.size[1]}, "
          f"batch {args.batch}, {args.workers} threads each for decoding and writing; Keras backend "
          f"{keras.backend.backend()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as folder:
        videos = os.path.join(folder, "UCF-101")
        paths = write_videos(videos, lengths, args.source_size if args.host_cpu else synthetic.FRAME_SIZE)
        if args.host_cpu:
            compare_host_cpu(args, videos, sum(lengths) - len(lengths))
            return
        pairs = [(first, second) for path in paths
                 for _, first, second in media.consecutive_pairs(media.iter_video(path, args.size))]
        kernel = kernel_rate(pairs, args.batch, args.rounds)
        print(f"kernel alone:  {kernel:7.1f} pairs/s (tvl1.estimate_flow on decoded pairs)")
        for name, per_video in (("per video", True), ("pipeline", False)):
            seconds = extraction_rate(videos, args.size, args.batch, args.workers, args.rounds, per_video)
            print(f"{name + ':':14s} {len(pairs) / seconds:7.1f} pairs/s "
                  f"({len(pairs) / seconds / kernel:.2f} x the kernel)")
        threads_against_processes(paths, args.size, args.workers, args.rounds)


if __name__ == "__main__":
    main()
