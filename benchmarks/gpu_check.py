"""The GPU check: what this repository does on one GPU, measured in one command of a few minutes.
Run it through benchmarks/gpu_check.sh, which installs Keras from a folder of wheels first:

    bash benchmarks/gpu_check.sh --wheels .whl --out $OUT      # a bare GPU machine (JAX, no TensorFlow)
    bash benchmarks/gpu_check.sh --tiny --out /tmp/gpu_check   # every section at tiny sizes, on this CPU

Sections, each in its own process (one that fails or runs out of time prints why and the others go on):
    device          GPU model and memory, versions, cores
    tvl1            tvl1_keras pairs/s at 340x256 at a few batch sizes (after compiling), and its
                    accuracy against OpenCV's DualTVL1 flow of the pairs in --reference, a file made
                    on a machine with OpenCV's contrib build (benchmarks/bench_flow.py
                    --save-reference FILE), which also holds OpenCV's one-core pairs/s measured there
    data            (beside tvl1) a generated dataset at 340x256 in the real layout (bench_data.py), and
                    the flow section's videos
    flow            `prepare_data.py flow --flow-method tvl1_keras` end to end (decoding, the device, JPEG
                    writing: FlowPipeline) over 200 generated videos against the kernel alone on the same
                    pairs decoded beforehand (benchmarks/bench_flow_pipeline.py), and its host CPU per pair
    train_temporal  CNN-M-2048 on 224x224x20 stacks, train_spatial InceptionV3 phase 2 (the top two
                    blocks and the new top) on 224x224 frames, batch 256, float32 and bfloat16:
                    samples/s from tensors already on the device (the bound), through the training
                    scripts' own loader (generators.train_sequence, fed to model.fit), and the loader alone,
                    each over 100 warm batches before an epoch's end (one worker process: 10), with the
                    CPU time per sample of the training process and of the loader's worker processes
    multi_gpu       CNN-M-2048 training samples/s on one device and on all (keras.distribution.DataParallel,
                    as --distribute mirrored on JAX), batch already on the devices; --tiny: 2 CPU devices
    fuse            fuse_test.py's scoring, 25 samples x 10 crops per video, both streams (untrained
                    networks of the real shapes): videos/s once compiled, and one whole fuse_test.py run

Everything printed is also written to --out/gpu_check.md, and each section's stderr to --out/<section>.log.
Timings are taken after a warm-up (compilation, worker start-up) and each section has a time limit,
all within --budget seconds.
"""
import argparse
import contextlib
import os
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

# Sizes of the real check and of --tiny (CPU, seconds). Limits: each section's share of the budget.
SIZES = {
    "full": dict(frame_size=(340, 256), classes=25, videos_per_class=4, frames=50, batch=256, spatial_size=224,
                 temporal_size=224, warmup=3, steps=8, loader_steps=100, one_process_steps=10, samples=25,
                 fuse_warmup=2, fuse_videos=30, fuse_e2e_videos=4, tvl1_batches=(32, 128), tvl1_rounds=2,
                 tvl1_settings={}, flow_videos=200, flow_frames=(12, 36), flow_source=(320, 240),
                 flow_batch=128, precisions=("float32", "bfloat16")),
    "tiny": dict(frame_size=(128, 96), classes=3, videos_per_class=2, frames=12, batch=4, spatial_size=80,
                 temporal_size=64, warmup=1, steps=2, loader_steps=3, one_process_steps=2, samples=2,
                 fuse_warmup=1, fuse_videos=2, fuse_e2e_videos=2, tvl1_batches=(2,), tvl1_rounds=1,
                 tvl1_settings=dict(scales=1, warps=1), flow_videos=3, flow_frames=(4, 8), flow_source=(128, 96),
                 flow_batch=4,
                 precisions=("float32", "bfloat16"), spatial_precisions=("float32",)),
}
LIMITS = {"device": 60, "data": 150, "tvl1": 150, "flow": 120, "train_temporal": 120, "train_spatial": 150,
          "multi_gpu": 90, "fuse": 120}
STACK_LENGTH = 10
# Goals and estimates from issue 18 (an H100 with 16 cores), printed beside the figures.
TVL1_GOAL = 300  # pairs/s at 340x256
TVL1_EPE_GOAL, TVL1_WITHIN_GOAL = 0.2, 0.95


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu_check_out", help="folder for gpu_check.md and the sections' logs")
    parser.add_argument("--reference", default=os.path.join(HERE, "tvl1_reference.npz"),
                        help="OpenCV's TV-L1 flow of the accuracy pairs (bench_flow.py --save-reference)")
    parser.add_argument("--work", default=None, help="scratch folder for the generated data (default: --out/work)")
    parser.add_argument("--tiny", action="store_true", help="every section at tiny sizes (a CPU, the test suite)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for all sections together (default: 540; --tiny: 900, as slow CPUs compile)")
    parser.add_argument("--sections", default=",".join(LIMITS), help="comma-separated sections to run")
    parser.add_argument("--section", help=argparse.SUPPRESS)  # run one section in this process
    args = parser.parse_args(argv)
    args.work = args.work or os.path.join(args.out, "work")
    args.size = SIZES["tiny" if args.tiny else "full"]
    args.budget = args.budget or (900 if args.tiny else 540)
    args.limit_scale = 3 if args.tiny else 1
    return args


def say(line=""):
    print(line, flush=True)


# ---------------------------------------------------------------------------- running the sections

def start_section(name, args):
    """Popen of `name` in its own process: stdout piped (the report), stderr to out/<name>.log."""
    log = open(os.path.join(args.out, f"{name}.log"), "w")
    command = [sys.executable, os.path.abspath(__file__), "--section", name, "--out", args.out,
               "--reference", args.reference, "--work", args.work] + (["--tiny"] if args.tiny else [])
    # Compiled XLA programs are kept on disk: fuse's second load of each model compiles nothing.
    env = {"JAX_COMPILATION_CACHE_DIR": os.path.join(os.path.abspath(args.work), "jax_cache"), **os.environ}
    if name == "multi_gpu" and args.tiny:  # two CPU devices stand in for the GPUs
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2".strip()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT, env=env)
    lines = []
    reader = threading.Thread(target=lambda: [lines.append(line) for line in process.stdout], daemon=True)
    reader.start()
    return process, log, lines, reader


def finish_section(name, started, limit, report):
    """Wait for a section up to `limit` seconds; its report lines, or why it failed."""
    process, log, lines, reader = started
    begin = time.perf_counter()
    try:
        process.wait(timeout=max(limit, 1))
        failure = None if process.returncode == 0 else f"exit code {process.returncode}"
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        failure = f"stopped after its {limit:.0f} s time limit"
    reader.join(timeout=5)
    log.close()
    for line in lines:
        report(line.rstrip("\n"))
    if failure:
        with open(log.name) as f:
            tail = f.read().strip().splitlines()[-12:]
        report(f"\n**{name}: failed ({failure})**; last lines of {log.name}:\n```\n" + "\n".join(tail) + "\n```")
    return failure is None, time.perf_counter() - begin


def orchestrate(args):
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    report_path = os.path.join(args.out, "gpu_check.md")
    chosen = args.sections.split(",")
    begin = time.perf_counter()
    with open(report_path, "w") as report_file:
        def report(line=""):
            say(line)
            report_file.write(line + "\n")
            report_file.flush()

        report(f"# gpu_check{' --tiny' if args.tiny else ''}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")

        def left():
            return args.budget - (time.perf_counter() - begin)

        def run(name):
            if name not in chosen:
                return True
            started = start_section(name, args)
            ok, seconds = finish_section(name, started, min(LIMITS[name] * args.limit_scale, left()), report)
            say(f"({name}: {seconds:.0f} s; {left():.0f} s of the budget left)")
            return ok

        run("device")
        data = start_section("data", args) if "data" in chosen else None  # CPU work, beside the GPU's tvl1
        run("tvl1")
        data_ok = (finish_section("data", data, min(LIMITS["data"] * args.limit_scale, left()), report)[0]
                   if data else True)
        run("multi_gpu")  # no generated data needed
        for name in ("flow", "train_temporal", "train_spatial", "fuse"):
            if name in chosen and not data_ok:
                report(f"\n**{name}: skipped (no generated data)**")
            elif left() < 10:
                report(f"\n**{name}: skipped (the {args.budget:.0f} s budget is spent)**")
            else:
                run(name)
        report(f"\nall sections: {time.perf_counter() - begin:.0f} s")
    say(f"report: {report_path}")


# ---------------------------------------------------------------------------- device

def section_device(args):
    import platform
    say("\n## Device\n")
    try:
        gpus = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as error:
        gpus = f"no nvidia-smi ({error.__class__.__name__})"
    say(f"- GPU: {gpus or 'none'}")
    import keras
    say(f"- Keras {keras.__version__} ({os.path.dirname(os.path.dirname(keras.__file__))}), backend "
        f"{keras.backend.backend()}; Python {platform.python_version()}; "
        f"{len(os.sched_getaffinity(0))} CPU cores usable")
    if keras.backend.backend() == "jax":
        import jax
        devices = jax.devices()
        say(f"- JAX {jax.__version__}: {', '.join(f'{d.platform}:{d.device_kind}' for d in devices)}")
        with contextlib.suppress(Exception):
            stats = devices[0].memory_stats() or {}
            if "bytes_limit" in stats:
                say(f"- JAX may use {stats['bytes_limit'] / 2 ** 30:.1f} GiB of the first device's memory")
    import importlib.util
    say(f"- TensorFlow: {'installed' if importlib.util.find_spec('tensorflow') else 'not installed'}; "
        f"OpenCV contrib (cv2.optflow): {'yes' if hasattr(__import__('cv2'), 'optflow') else 'no'}")


# ---------------------------------------------------------------------------- TV-L1

def section_tvl1(args):
    import numpy as np

    import bench_flow
    from twostream.video import tvl1
    say("\n## tvl1_keras (TV-L1 optical flow)\n")
    reference = bench_flow.read_reference(args.reference) if os.path.isfile(args.reference) else None
    if reference is None:
        say(f"no reference file {args.reference}: no accuracy figures (make it where OpenCV's contrib build is: "
            "python benchmarks/bench_flow.py --save-reference FILE); speed on generated pairs")
        firsts, seconds = drifting_pairs(args.size["frame_size"])
    else:
        firsts, seconds = reference["firsts"], reference["seconds"]
    height, width = firsts.shape[1:]
    one_core = reference and reference["opencv_one_core"]
    if one_core:
        say(f"OpenCV DualTVL1 on one CPU core: {one_core:.2f} pairs/s, measured on {reference['cpu']} "
            f"(OpenCV {reference['opencv']}) when the reference was made, not on this machine\n")
    settings = tvl1.Settings(**args.size["tvl1_settings"])
    if settings != tvl1.OPENCV_DEFAULTS:
        say(f"(tiny: TV-L1 with {args.size['tvl1_settings']}, to compile quickly: not OpenCV's settings, so its "
            "accuracy figures mean nothing)\n")
    say(f"| batch | {width}x{height} pairs/s | x OpenCV one core | goal (issue 18) | first call (compile) s |")
    say("|---|---|---|---|---|")
    for k, batch in enumerate(args.size["tvl1_batches"]):
        repeat = -(-batch // len(firsts))
        a, b = (np.concatenate([images] * repeat)[:batch] for images in (firsts, seconds))
        begin = time.perf_counter()
        flows = tvl1.estimate_flow(a, b, settings)[:len(firsts)]
        compile_seconds = time.perf_counter() - begin
        best = min(timed(lambda: tvl1.estimate_flow(a, b, settings)) for _ in range(args.size["tvl1_rounds"]))
        rate = batch / best
        ratio = f"{rate / one_core:.0f}x" if one_core else "-"
        say(f"| {batch} | {rate:.1f} | {ratio} | >= {TVL1_GOAL} | {compile_seconds:.0f} |")
        if k == 0 and reference is not None:  # printed at once: a later batch size may run out of time
            say(accuracy(flows, reference["flows"]))
            say("")


def accuracy(flows, references):
    import numpy as np

    import bench_flow
    errors = [bench_flow.end_point_error(f, r) for f, r in zip(flows, references)]
    shares = [bench_flow.share_within(f, r) for f, r in zip(flows, references)]
    return (f"\naccuracy against OpenCV on {len(errors)} pairs: EPE mean {np.mean(errors):.3f} px, worst "
            f"{max(errors):.3f} (goal <= {TVL1_EPE_GOAL}); flow-JPEG pixels within 2 grey levels: mean "
            f"{np.mean(shares):.1%}, worst {min(shares):.1%} (goal >= {TVL1_WITHIN_GOAL:.0%})\n")


def drifting_pairs(size, count=4):
    """Grey textures and the same moved by a pixel or two: speed pairs when there is no reference."""
    import numpy as np

    import bench_data
    width, height = size
    rng = np.random.default_rng(0)
    textures = [np.clip(128 + 40 * bench_data.smooth_noise(rng, height, width, 3.0), 0, 255).astype(np.uint8)
                for _ in range(count)]
    return (np.array([t[:height, :width] for t in textures]),
            np.array([t[1 + k % 2:1 + k % 2 + height, 2:2 + width] for k, t in enumerate(textures)]))


def timed(work):
    begin = time.perf_counter()
    work()
    return time.perf_counter() - begin


# ---------------------------------------------------------------------------- data

def data_dir(args):
    return os.path.join(args.work, "data")


def section_data(args):
    import bench_data
    size = args.size
    folder = data_dir(args)
    begin = time.perf_counter()
    bench_data.write_dataset(folder, size["classes"], size["videos_per_class"], size["frames"], size["frame_size"])
    videos = size["classes"] * size["videos_per_class"]
    from twostream.video import media
    say(f"\n(generated {videos} videos x {size['frames']} frames and flow at {size['frame_size'][0]}x"
        f"{size['frame_size'][1]}, flow JPEGs at quality {media.FLOW_JPEG_QUALITY}, in "
        f"{time.perf_counter() - begin:.0f} s: half for training, half for testing)")
    begin = time.perf_counter()
    write_flow_videos(args)
    say(f"(and the flow section's {size['flow_videos']} videos in {time.perf_counter() - begin:.0f} s)")


def flow_videos(args, purpose):
    return os.path.join(args.work, f"flow_{purpose}", "UCF-101")


def write_flow_videos(args):
    """The flow section's videos: one to compile on, and flow_videos of flow_frames frames (UCF-101's
    lengths divided by 5-15: batches mix videos, so length matters little) at UCF-101's size."""
    import numpy as np

    import bench_flow_pipeline
    size = args.size
    lengths = np.random.default_rng(0).integers(*size["flow_frames"], size["flow_videos"])
    bench_flow_pipeline.write_videos(flow_videos(args, "warm"), [size["flow_frames"][0]], size["flow_source"])
    bench_flow_pipeline.write_videos(flow_videos(args, "timed"), lengths, size["flow_source"])


# ---------------------------------------------------------------------------- flow extraction

def section_flow(args):
    """Pairs/s of prepare_data's tvl1_keras extraction of flow_videos videos against the kernel alone on
    their pairs, decoded beforehand; both after compiling. Extraction alone is timed: not the videos'
    making, nor the compiling (a warm-up extraction of one video)."""
    import glob

    import bench_flow_pipeline as bench
    from twostream.video import media, tvl1
    size = args.size
    batch, frame_size, workers = size["flow_batch"], size["frame_size"], len(os.sched_getaffinity(0))
    settings = tvl1.Settings(**size["tvl1_settings"])
    if settings != tvl1.OPENCV_DEFAULTS:  # --tiny: every flow, the pipeline's too, with the tiny settings
        start_flow = tvl1.start_flow
        tvl1.start_flow = lambda first, second, _=None, then=None: start_flow(first, second, settings, then)
    paths = sorted(glob.glob(os.path.join(flow_videos(args, "timed"), "*", "*.avi")))
    pairs = [(first, second) for path in paths
             for _, first, second in media.consecutive_pairs(media.iter_video(path, frame_size))]
    count = len(pairs)
    say(f"\n## Flow extraction: prepare_data.py flow --flow-method tvl1_keras, {len(paths)} videos, {count:,} pairs "
        f"at {frame_size[0]}x{frame_size[1]} (from {size['flow_source'][0]}x{size['flow_source'][1]}), batch {batch}, "
        f"{workers} threads\n")
    kernel = bench.kernel_rate(pairs, batch, 1)
    del pairs
    bench.extract(flow_videos(args, "warm"), frame_size, batch, workers)  # compiles the pipeline's program
    wall, cpu = bench.extract(flow_videos(args, "timed"), frame_size, batch, workers)
    say("\n| kernel alone, pairs/s | end to end, pairs/s | end to end / kernel | goal (issue 26) | "
        "host CPU per pair |")
    say("|---|---|---|---|---|")
    say(f"| {kernel:.0f} | {count / wall:.0f} | {count / wall / kernel:.2f} | >= 0.9 | {1e3 * cpu / count:.2f} ms |")


# ---------------------------------------------------------------------------- training

def section_train(args, name):
    import keras
    import numpy as np

    import models
    from twostream.datasets import ucf101
    from twostream.datasets.frames import Stream
    from twostream.train import training
    size = args.size
    folder, splits = data_dir(args), os.path.join(data_dir(args), "splits")
    image_size = size[f"{name}_size"]
    flags = ["--dataset", "ucf101", "--data-dir", folder, "--splits-dir", splits, "--image-size", str(image_size),
             "--batch-size", str(size["batch"]), "--epoch-steps", str(size["warmup"] + size["loader_steps"] + 1),
             "--checkpoint-dir", os.path.join(args.work, "checkpoints", name)]
    if name == "spatial":
        import spatial_train
        train_args = spatial_train.parse_args(flags + ["--weights", "none"])
        lr, drops = train_args.phase2_lr, train_args.phase2_lr_drops
    else:
        import temporal_train
        train_args = temporal_train.parse_args(flags)
        lr, drops = train_args.lr, train_args.lr_drops
    stream = Stream(name, STACK_LENGTH)
    videos = ucf101.load_index(folder, splits, 1, "train")
    classes = ucf101.class_names(splits)
    sequence = training_sequence(train_args, videos, stream, name)
    shape = f"{image_size}x{image_size}x{stream.channels}"
    model_name = "InceptionV3, phase 2 (mixed9, mixed10 and the top train)" if name == "spatial" else "CNN-M-2048"
    say(f"\n## Training: {name}, {model_name}, {shape}, batch {size['batch']}\n")
    loader, own, others = loader_rate(sequence, size["warmup"], size["loader_steps"])
    one = loader_rate(training_sequence(train_args, videos, stream, name, processes=1), size["warmup"],
                      size["one_process_steps"])[0]
    processes = getattr(sequence, "processes", 0) or sequence.workers
    say(f"loader alone ({describe_loader(sequence)}), {size['loader_steps']} warm batches: {loader:.0f} samples/s = "
        f"{loader / one:.1f}x one worker process's {one:.0f} (goal, issue 18: >= {0.75 * processes:.0f}x, 12x on 16 "
        f"cores); CPU per sample: the training process {own:.1f} us (goal, issue 26: <= 10 spatial, 100 temporal), "
        f"the workers {others:.0f} us\n")
    if name == "temporal":
        say("(issue 18's estimate for an H100: about 4,000 samples/s in float32, from CNN-M-2048's 14 GFLOP a "
            "training sample)\n")
    say("| precision | in memory (bound) samples/s | through the loader samples/s | loader / bound | "
        "loader alone / bound |")
    say("|---|---|---|---|---|")
    x, y = sequence[0]
    for precision in size.get(f"{name}_precisions", size["precisions"]):
        try:
            keras.mixed_precision.set_global_policy(training.precision_policy(precision))
            keras.utils.set_random_seed(0)
            if name == "spatial":
                model = models.spatial_model(len(classes), image_size, "none", train_args.dropout)
                models.set_spatial_phase(model, 2)
            else:
                model = models.temporal_model(len(classes), image_size, STACK_LENGTH, dropout=train_args.dropout,
                                              norm=train_args.norm)
            optimizer = training.sgd(training.schedule(lr, drops, train_args.accumulate), train_args.momentum,
                                     train_args.weight_decay, train_args.accumulate)
            model.compile(optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                          jit_compile=training.jit_compile(train_args.jit))
            memory = in_memory_rate(model, x, y, size["warmup"], size["steps"])
            fed = fit_rate(model, sequence, size["warmup"], size["loader_steps"])
            say(f"| {precision} | {memory:.0f} | {fed:.0f} | {fed / memory:.0%} | {loader / memory:.0%} |")
        except Exception:  # the other precision may still work: say why this one did not
            say(f"| {precision} | failed: {traceback.format_exc().strip().splitlines()[-1]} | | | |")
            traceback.print_exc()
        finally:
            keras.mixed_precision.set_global_policy("float32")
    assert np.all(np.isfinite(y))


def training_sequence(train_args, videos, stream, name, processes=None):
    """The training script's loader for `videos`, as the script makes it from its flags (`train_args`); with
    `processes`, that many worker processes instead of --workers."""
    import generators
    sequence = generators.train_sequence(
        videos, train_args.data_dir, stream, None, batch_size=train_args.batch_size,
        accumulate=train_args.accumulate, epoch_steps=train_args.epoch_steps, image_size=train_args.image_size,
        sampling=train_args.sampling, crop=train_args.crop, seed=train_args.seed,
        workers=max(2, train_args.workers) if processes else train_args.workers,
        lighting=train_args.lighting if name == "spatial" else None)
    if processes:
        sequence.processes = processes  # as many as asked, even one (--workers 1 loads in this process)
    return sequence


def describe_loader(sequence):
    if getattr(sequence, "processes", 0):
        return f"{sequence.processes} worker processes, {sequence.workers} batches in flight"
    return f"{sequence.workers} worker threads"


def loader_rate(sequence, warmup, steps):
    """(samples/s, the training process's and the workers' CPU us per sample) of the sequence iterated as fit()
    iterates it, over `steps` batches after `warmup`, before the epoch's end (where Keras waits 0.1 s)."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    from cpu_time import own_cpu_seconds, worker_cpu_seconds
    adapter = PyDatasetAdapter(sequence, shuffle=False)
    adapter.on_epoch_begin()
    for batches, _ in enumerate(adapter.get_numpy_iterator(), 1):
        if batches == warmup:
            begin = time.perf_counter(), own_cpu_seconds(), worker_cpu_seconds(sequence)
        if batches == warmup + steps:
            end = time.perf_counter(), own_cpu_seconds(), worker_cpu_seconds(sequence)
            break
    adapter.on_epoch_end()
    samples = steps * sequence.batch_size
    wall, own, others = (b - a for a, b in zip(begin, end))
    return samples / wall, 1e6 * own / samples, 1e6 * others / samples


def in_memory_rate(model, x, y, warmup, steps):
    """Samples/s of train_on_batch on one batch already on the device (the first calls compile)."""
    from keras import ops
    x, y = ops.convert_to_tensor(x), ops.convert_to_tensor(y)
    for _ in range(warmup):
        model.train_on_batch(x, y)
    begin = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)  # returns its loss as a number: waits for the step
    return steps * len(x) / (time.perf_counter() - begin)


def fit_rate(model, sequence, warmup, steps):
    """Samples/s of model.fit on the sequence over `steps` batches after `warmup`, before the epoch's end."""
    import keras

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 == warmup:
                self.begin = time.perf_counter()
            if batch + 1 == warmup + steps:
                self.seconds = time.perf_counter() - self.begin

    clock = Clock()
    model.fit(sequence, epochs=1, verbose=0, callbacks=[clock])
    return steps * sequence.batch_size / clock.seconds


# ---------------------------------------------------------------------------- testing

def section_fuse(args):
    import fuse_test
    import models
    from twostream import errors
    from twostream.datasets import ucf101
    from twostream.loading.sampling import CROPS_PER_SAMPLE
    from twostream.train import checkpoints
    size = args.size
    folder, splits = data_dir(args), os.path.join(data_dir(args), "splits")
    classes = ucf101.class_names(splits)
    videos = ucf101.load_index(folder, splits, 1, "test")
    record = checkpoints.data_record(folder, videos[0])
    check_dir = os.path.join(args.work, "checkpoints")
    for stream in ucf101.STREAMS:
        image_size = size[f"{stream}_size"]
        model = (models.spatial_model(len(classes), image_size, "none") if stream == "spatial"
                 else models.temporal_model(len(classes), image_size, STACK_LENGTH))
        config = dict(stream=stream, image_size=image_size, stack_length=STACK_LENGTH, dataset="ucf101", split=1,
                      num_classes=len(classes), data_dir=folder, splits_dir=splits, frame_size=record["frame_size"],
                      flow=record["flow"], arch="inception_v3" if stream == "spatial" else "cnn_m_2048")
        checkpoints.prepare(os.path.join(check_dir, stream), config, classes, overwrite=True)
        model.save(checkpoints.model_path(check_dir, stream))
    workers = len(os.sched_getaffinity(0))
    flags = ["--dataset", "ucf101", "--data-dir", folder, "--splits-dir", splits, "--checkpoints", check_dir,
             "--samples", str(size["samples"]), "--crops", "10", "--workers", str(workers),
             "--results-dir", os.path.join(args.work, "results")]
    test_args = fuse_test.parse_args(flags)
    warm, timed_videos = videos[:size["fuse_warmup"]], videos[size["fuse_warmup"]:][:size["fuse_videos"]]
    say(f"\n## Testing: fuse_test.py, {size['samples']} samples x 10 crops per video, {workers} worker threads\n")
    say("| stream | videos/s once compiled | samples/s |")
    say("|---|---|---|")
    rates = {}
    for stream in ucf101.STREAMS:
        model, config, _ = checkpoints.load(checkpoints.model_path(check_dir, stream), stream)
        fuse_test.predict_videos(model, warm, test_args, stream, config)
        seconds = timed(lambda: fuse_test.predict_videos(model, timed_videos, test_args, stream, config))
        rates[stream] = len(timed_videos) / seconds
        say(f"| {stream} | {rates[stream]:.2f} | "
            f"{rates[stream] * size['samples'] * CROPS_PER_SAMPLE['10']:.0f} |")
    both = 1 / sum(1 / rate for rate in rates.values())
    say(f"| both, one after the other | {both:.2f} | |")
    say(f"\n(UCF-101's 3,783 test videos of a split at this rate: {3783 / both / 60:.0f} min; the SVM's scores of "
        f"its 9,537 training videos: {9537 / both / 60:.0f} min more)")
    count = size["fuse_e2e_videos"]
    begin = time.perf_counter()
    code = errors.run(fuse_test.main, flags + ["--max-videos", str(count), "--no-svm", "--run-name", "check"])
    say(f"\nfuse_test.py end to end (loading and compiling both models, {count} videos, --no-svm): exit code {code}, "
        f"{time.perf_counter() - begin:.0f} s")
    if code:
        raise SystemExit(code)


# ---------------------------------------------------------------------------- main

def section_multi_gpu(args):
    """CNN-M-2048 training samples/s on one device and on all of them (--distribute mirrored on JAX:
    keras.distribution.DataParallel, the global batch split over the devices), from a batch already on the
    devices, bfloat16 (float32 with --tiny): what more GPUs add before the loader is the bound."""
    import keras
    import numpy as np

    import models
    from twostream.train import training
    devices = keras.distribution.list_devices()
    say(f"\n## Several devices: {len(devices)} ({', '.join(devices)})\n")
    if len(devices) < 2:
        say("one device: nothing to compare (a machine with several GPUs measures here)")
        return
    size, precision = args.size, "float32" if args.tiny else "bfloat16"
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (size["batch"], size["temporal_size"], size["temporal_size"], 2 * STACK_LENGTH), np.uint8)
    y = rng.integers(0, 10, size["batch"]).astype(np.int32)
    say(f"| devices | samples/s in memory, {precision}, batch {size['batch']} | speed-up |")
    say("|---|---|---|")
    first = None
    for count in (1, len(devices)):
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices[:count]))
        keras.mixed_precision.set_global_policy(training.precision_policy(precision))
        model = models.temporal_model(10, size["temporal_size"], STACK_LENGTH)
        model.compile(training.sgd(1e-2, 0.9, 5e-4), loss="sparse_categorical_crossentropy")
        rate = in_memory_rate(model, x, y, size["warmup"], size["steps"])
        first = first or rate
        say(f"| {count} | {rate:.0f} | {rate / first:.2f}x (ideal {count}x) |")


def run_section(args):
    sections = {"device": section_device, "tvl1": section_tvl1, "data": section_data, "flow": section_flow,
                "fuse": section_fuse,
                "multi_gpu": section_multi_gpu,
                "train_temporal": lambda a: section_train(a, "temporal"),
                "train_spatial": lambda a: section_train(a, "spatial")}
    sections[args.section](args)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.section:
        run_section(arguments)
    else:
        orchestrate(arguments)
