"""Throughput of the training batches against the JPEG decoder and the number of workers, and
what each way of storing flow costs in decoding time and in flow error.

    python benchmarks/bench_generators.py                 # generated data in a temp folder
    python benchmarks/bench_generators.py --data-dir /tmp/bench_data  # kept, reused next time
    python benchmarks/bench_generators.py --decode-only   # only the flow JPEG options (a minute)
    python benchmarks/bench_generators.py --costs --batch-size 256 --batches 100  # CPU per sample (issue 26)

Writes (or reuses) videos in the real layout at the real sizes: 340x256 RGB JPEGs and
grayscale u/v flow JPEGs (benchmarks/bench_data.py). For spatial and temporal batches of 224x224
crops it prints samples/s with 1 worker (in the training process), with 2 and with all usable
cores as worker processes (TrainSequence's own, the training default) and as threads, and the
decode-only bound: the same number of JPEGs only read and decoded in one process. Two settings
of TrainSequence are measured (--settings):

    default   the training default: class-uniform sampling, random crops, flips, PCA lighting
              noise on the RGB frames (none on flow)
    corners   crop="corners", lighting=0: the crops of the pipeline before random crops and
              lighting, to compare with earlier measurements like with like

The datasets are iterated the way fit() does: Keras's PyDatasetAdapter with on_epoch_begin /
on_epoch_end; each configuration's dataset is made once (its processes start once), and its
first epoch is not timed.
Goals: 1 worker >= 80% of the decode bound; N worker processes >= 0.75 N x 1 worker (16 cores: 12x).

CPU cost (--costs): per stream, with 1 worker process and with --workers' largest count of worker
processes (both as processes, so both pay what processes cost), one epoch of --warmup + --batches + 1
batches iterated as fit() does; the --batches after the warm-up ones (never an epoch end, where Keras
drains for 0.1 s) are timed: CPU microseconds per sample of the training process
(getrusage(RUSAGE_SELF): all its threads, Keras's and the loader's, not its children) and of the
worker processes (/proc/<pid>/stat: they have not ended, so RUSAGE_CHILDREN would not count them),
and samples/s of wall time.

Flow storage (--decode-only, and printed first otherwise): flow fields of real image pairs
(OpenCV's TV-L1 flow of bench_flow.py's pairs from --reference, else DIS flow of the same pairs)
quantised as media.quantize_flow does and stored as JPEG at qualities 95 (today), 90 and 75, and
at 95 decoded at half size (libjpeg's DCT scaling, then resized back): flow stacks (2L decodes)
per second on one core, and the end-point error against the unquantised flow.
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
from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter  # noqa: E402

import generators  # noqa: E402
from bench_data import write_video  # noqa: E402
from cpu_time import own_cpu_seconds, worker_cpu_seconds  # noqa: E402
from twostream.datasets import ucf101  # noqa: E402
from twostream.datasets.frames import Stream  # noqa: E402
from twostream.loading.sampling import segment_starts  # noqa: E402
from twostream.protocol import presets  # noqa: E402
from twostream.video import media  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--data-dir", default=None,
                    help="where to write (or find) the generated data, kept; default: a temp folder, removed")
parser.add_argument("--videos", type=int, default=20, help="generated videos")
parser.add_argument("--frames", type=int, default=60, help="frames per generated video")
parser.add_argument("--repeats", type=int, default=48, help="samples per epoch per video (on average)")
parser.add_argument("--epochs", type=int, default=2, help="epochs timed per configuration and round (the best counts)")
parser.add_argument("--rounds", type=int, default=3,
                    help="rounds of all configurations, interleaved; the best of each is printed "
                         "(other load only slows)")
parser.add_argument("--batch-size", type=int, default=32, help="training batch size")
parser.add_argument("--image-size", type=int, default=224, help="crop size")
parser.add_argument("--stack-length", type=int, default=10, help="flow frames per temporal sample (L)")
parser.add_argument("--streams", default="spatial,temporal", help="comma-separated streams to measure")
parser.add_argument("--settings", default="default,corners", help="comma-separated TrainSequence settings to measure "
                    "(default: random crops and lighting; corners: corner crops, no lighting)")
parser.add_argument("--workers", default=f"1,2,{presets.CORES}",
                    help="comma-separated worker counts (default: 1, 2 and every usable core)")
parser.add_argument("--flow-quality", type=int, default=media.FLOW_JPEG_QUALITY,
                    help="JPEG quality of the generated flow images (default: media.FLOW_JPEG_QUALITY, %(default)s)")
parser.add_argument("--decode-only", action="store_true", help="only the flow storage options")
parser.add_argument("--costs", action="store_true",
                    help="only the CPU cost per sample of the training process and of the workers (see above)")
parser.add_argument("--batches", type=int, default=100, help="--costs: timed batches, after the warm-up ones")
parser.add_argument("--warmup", type=int, default=10, help="--costs: batches before the timed ones")
parser.add_argument("--reference", default=os.path.join(os.path.dirname(__file__), "tvl1_reference.npz"),
                    help="bench_flow.py --save-reference file whose OpenCV TV-L1 flows to store (else DIS flow)")
args = parser.parse_args()
MARKER = "written_by_bench_generators.txt"  # in --data-dir: a folder this benchmark may write to
DECODES_PER_ROUND = 2000  # flow planes decoded per timed round of each storage option
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
            write_video(data_dir, name, args.frames, rng, quality=args.flow_quality)
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
        start = segment_starts(rng, stream.count(video), 1, stream.span)[0]
        plans.append(stream.paths(data_dir, video, start))
    begin = time.perf_counter()
    for paths in plans:
        for path in paths:
            with open(path, "rb", buffering=0) as file:  # the fastest read; np.fromfile is slower
                cv2.imdecode(np.frombuffer(file.read(), np.uint8), flag)
    return samples / (time.perf_counter() - begin)


def make_dataset(videos, data_dir, stream, samples, settings, workers, processes):
    return generators.TrainSequence(videos, data_dir, stream, batch_size=args.batch_size, image_size=args.image_size,
                                    steps=samples // args.batch_size, workers=workers, use_multiprocessing=processes,
                                    **SETTINGS[settings])


def pipeline_rate(dataset):
    """Samples/s of the dataset iterated as fit() does: the best of args.epochs epochs, each timed
    from on_epoch_begin to the arrival of its last batch. The enqueuer's drain after the last batch
    (a fixed 0.1 s wait per epoch, small next to a real epoch) is left out."""
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


# ---------------------------------------------------------------------------- CPU cost per sample

def cpu_costs(videos, data_dir, stream, processes):
    """(training process CPU us/sample, workers' CPU us/sample, samples/s) with `processes` worker processes,
    over args.batches warm batches of one epoch iterated as fit() does, after args.warmup, before the
    epoch's end."""
    dataset = generators.TrainSequence(videos, data_dir, stream, batch_size=args.batch_size,
                                       image_size=args.image_size, steps=args.warmup + args.batches + 1,
                                       workers=max(2, processes), use_multiprocessing=True)
    dataset.processes = processes  # even one (--workers 1 would load in this process, with no process's costs)
    adapter = PyDatasetAdapter(dataset, shuffle=False)
    adapter.on_epoch_begin()
    for batches, _ in enumerate(adapter.get_numpy_iterator(), 1):
        if batches == args.warmup:
            begin = time.perf_counter(), own_cpu_seconds(), worker_cpu_seconds(dataset)
        if batches == args.warmup + args.batches:
            end = time.perf_counter(), own_cpu_seconds(), worker_cpu_seconds(dataset)
    adapter.on_epoch_end()
    samples = args.batches * args.batch_size
    wall, own, others = (b - a for a, b in zip(begin, end))
    del adapter, dataset
    return 1e6 * own / samples, 1e6 * others / samples, samples / wall


def print_costs(videos, data_dir):
    count = max(int(n) for n in args.workers.split(","))
    print(f"CPU per sample over {args.batches} warm batches of {args.batch_size} (after {args.warmup}), "
          f"{args.image_size}x{args.image_size} crops, L={args.stack_length}, training default settings; "
          f"load average {os.getloadavg()[0]:.2f} before", flush=True)
    for name in args.streams.split(","):
        stream = Stream(name, args.stack_length)
        rates = {}
        for processes in sorted({1, count}):
            own, others, rates[processes] = cpu_costs(videos, data_dir, stream, processes)
            print(f"{name:9s} {processes:2d} worker process{'es' if processes > 1 else '  '}   training process "
                  f"{own:7.1f} us/sample | workers {others:7.1f} us/sample | {rates[processes]:7.1f} samples/s",
                  flush=True)
        if count > 1:
            print(f"{name:9s} {count} processes / 1: {rates[count] / rates[1]:.2f}x (goal: >= {0.75 * count:.1f}x)")
    print(f"load average {os.getloadavg()[0]:.2f} after")


# ---------------------------------------------------------------------------- flow storage

def flow_fields():
    """(name of the flow, [float32 H x W x 2 flows]) to store: OpenCV's TV-L1 flow from --reference, or DIS."""
    import bench_flow
    if os.path.isfile(args.reference):
        return "OpenCV TV-L1", list(bench_flow.read_reference(args.reference)["flows"])
    pairs = {**bench_flow.photo_pairs(media.FRAME_SIZE), **bench_flow.mini_dataset_pairs(media.FRAME_SIZE)}
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return "DIS (no --reference file)", [dis.calc(a, b, None) for a, b in pairs.values()]


def stored(flow, quality, reduced):
    """The flow after quantising, JPEG at `quality` and decoding (at half size and resized back
    if `reduced`), and the encoded planes."""
    planes = [cv2.imencode(".jpg", plane, [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
              for plane in media.quantize_flow(flow)]
    decoded = [decode(plane, reduced) for plane in planes]
    if reduced:
        decoded = [cv2.resize(plane, flow.shape[1::-1], interpolation=cv2.INTER_LINEAR) for plane in decoded]
    return media.dequantize_flow(np.stack(decoded, axis=-1)), planes


def decode(data, reduced):
    return cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_2 if reduced else cv2.IMREAD_GRAYSCALE)


def end_point_error(flow, reference):
    return float(np.mean(np.linalg.norm(flow - reference, axis=-1)))


def flow_storage():
    """Per option: flow stacks decoded, and training stacks made, per CPU second of one core (the
    options interleaved round after round, the best of each counting), and the flow error."""
    name, flows = flow_fields()
    cv2.setNumThreads(1)
    options = {"quality 95 (today)": (95, False), "quality 90": (90, False), "quality 75": (75, False),
               "quality 95, half-size decode": (95, True)}
    quantisation_error = np.mean([end_point_error(media.dequantize_flow(np.stack(media.quantize_flow(f), -1)), f)
                                  for f in flows])
    print(f"\nFlow storage: {len(flows)} {name} flows at {flows[0].shape[1]}x{flows[0].shape[0]}; rates per CPU second "
          f"of one core, best of {args.rounds} interleaved rounds; end-point error (px) against the unquantised flow, "
          f"quantisation alone: {quantisation_error:.3f}\n")
    stored_flows = {option: [stored(flow, *setting) for flow in flows] for option, setting in options.items()}
    datasets = {option: flow_dataset(flows, quality) for option, (quality, reduced) in options.items() if not reduced}
    decoded, sampled = dict.fromkeys(options, 0.0), dict.fromkeys(datasets, 0.0)
    try:
        for _ in range(args.rounds):
            for option, (quality, reduced) in options.items():
                planes = [plane for _, encoded in stored_flows[option] for plane in encoded]
                planes = planes * -(-DECODES_PER_ROUND // len(planes))
                seconds = cpu_seconds(lambda: [decode(plane, reduced) for plane in planes])
                decoded[option] = max(decoded[option], len(planes) / seconds / (2 * args.stack_length))
                if option in datasets:
                    dataset = datasets[option]
                    seconds = cpu_seconds(lambda: [dataset[i] for i in range(len(dataset))])
                    sampled[option] = max(sampled[option], len(dataset) * dataset.batch_size / seconds)
    finally:
        for dataset in datasets.values():
            shutil.rmtree(dataset.data_dir, ignore_errors=True)
    print("| option | flow stacks decoded/s, one core | x quality 95 | training stacks/s, one core | x quality 95 | "
          "EPE px | JPEG KB |")
    print("|---|---|---|---|---|---|---|")
    first = next(iter(options))
    for option in options:
        training = (f"{sampled[option]:.0f} | {sampled[option] / sampled[first]:.2f}x" if option in sampled
                    else "- | -")
        error = np.mean([end_point_error(out, flow) for (out, _), flow in zip(stored_flows[option], flows)])
        size = np.mean([len(plane) for _, encoded in stored_flows[option] for plane in encoded]) / 1024
        print(f"| {option} | {decoded[option]:.0f} | {decoded[option] / decoded[first]:.2f}x | {training} | "
              f"{error:.3f} | {size:.1f} |", flush=True)
    cv2.setNumThreads(-1)


def flow_dataset(flows, quality, frames=40, batches=8):
    """A TrainSequence (temporal, one process) on a video whose flow JPEGs are `flows` over and
    over at `quality`, in a temporary folder (its data_dir)."""
    folder = tempfile.mkdtemp(prefix="bench_flow_storage_")
    name = "v_Flow_g08_c01"
    for component in "uv":
        os.makedirs(ucf101.flow_dir(folder, component, name))
    for j in range(frames):
        for component, plane in zip("uv", media.quantize_flow(flows[j % len(flows)])):
            media.write_image(ucf101.frame_path(ucf101.flow_dir(folder, component, name), j), plane, quality)
    video = ucf101.Video(name, 0, frames=frames, flow_count=frames)
    dataset = generators.TrainSequence([video], folder, Stream("temporal", args.stack_length),
                                       batch_size=args.batch_size, image_size=args.image_size, steps=batches)
    dataset[0]  # into the page cache
    return dataset


def cpu_seconds(work):
    """This process's CPU time for work(): one core's rate however busy the machine's other cores are."""
    begin = time.process_time()
    work()
    return time.process_time() - begin


def main():
    if not args.costs:
        flow_storage()
    if args.decode_only:
        return
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="bench_generators_")
    try:
        print(f"\nwriting/reading {args.videos} videos x {args.frames} frames in {data_dir} ...", flush=True)
        videos = make_videos(data_dir)
        name = videos[0].name
        print(f"mean JPEG size: RGB {mean_file_kb(ucf101.rgb_dir(data_dir, name)):.1f} KB, "
              f"flow u {mean_file_kb(ucf101.flow_dir(data_dir, 'u', name)):.1f} KB, "
              f"v {mean_file_kb(ucf101.flow_dir(data_dir, 'v', name)):.1f} KB (flow quality {args.flow_quality}); "
              f"{presets.CORES} CPUs usable, load average {os.getloadavg()[0]:.2f} before")
        if args.costs:
            return print_costs(videos, data_dir)
        samples = (len(videos) * args.repeats) // args.batch_size * args.batch_size
        print(f"{samples} samples per epoch, batch {args.batch_size}, {args.image_size}x{args.image_size} "
              f"crops, L={args.stack_length}; samples/s, best of {args.rounds} interleaved rounds")
        counts = sorted({int(n) for n in args.workers.split(",")})
        workers = {"1 worker": (1, False)}
        for n in counts[1:] if counts[0] == 1 else counts:
            workers[f"{n} processes"] = (n, True)
            workers[f"{n} threads"] = (n, False)
        for name in args.streams.split(","):
            stream = Stream(name, args.stack_length)
            configs = {("decode-only", None): lambda: decode_bound(videos, data_dir, stream, samples)}
            for settings in args.settings.split(","):
                for config, (count, processes) in workers.items():
                    dataset = make_dataset(videos, data_dir, stream, samples, settings, count, processes)
                    pipeline_rate(dataset)  # starts its processes
                    configs[config, settings] = lambda d=dataset: pipeline_rate(d)
            best = dict.fromkeys(configs, 0.0)
            for _ in range(args.rounds):
                for key, measure in configs.items():
                    best[key] = max(best[key], measure())
            decode_rate = best["decode-only", None]
            for settings in args.settings.split(","):
                one = best["1 worker", settings]
                cells = " | ".join(f"{config} {best[config, settings]:7.1f} = {best[config, settings] / one:.2f}x"
                                   for config in list(workers)[1:])
                print(f"{name:9s} {settings:8s} decode-only {decode_rate:7.1f} | 1 worker {one:7.1f} = "
                      f"{one / decode_rate:.2f} x decode | {cells}", flush=True)
        print(f"load average {os.getloadavg()[0]:.2f} after (other processes on these CPUs lower the many-worker "
              "figures)")
    finally:
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
