"""Optical flow speed and accuracy: OpenCV's TV-L1 (one core, all cores), DIS, and tvl1.py's TV-L1
in Keras on this CPU and on a GPU if the Keras backend has one.

    python benchmarks/bench_flow.py                       # 340x256, the Keras backend of KERAS_BACKEND
    KERAS_BACKEND=jax python benchmarks/bench_flow.py --batch 64
    python benchmarks/bench_flow.py --size 170x128 --rounds 1

Speed: frame pairs per second at --size, each method on the same pairs (the accuracy pairs below,
repeated), with its ratio to OpenCV's TV-L1 on one core. "All cores" is OpenCV's TV-L1 in one
single-threaded process per core, as `prepare_data.py flow --workers N` runs it. The Keras TV-L1
runs --batch pairs per compiled call (compiling once, timed apart); its pairs/s depends on the
pairs, since each stops iterating when its flow settles, as OpenCV's does. Every timing is the
best of --rounds: other work on the machine only slows a round down.
Goal on a GPU: at least 100x OpenCV's TV-L1 on one core.

Accuracy: the Keras TV-L1 against OpenCV's DualTVL1 with the same (default) parameters, as the mean
end-point error (pixels) and the share of pixels whose quantised flow JPEG values (u and v, bound
20) are within 2 grey levels of OpenCV's. Pairs: two natural photos that ship with scikit-learn (a
temple, a flower), each moved by a subpixel shift and by a rotation with scaling, the temple also
sheared, and the first two frames of four mini dataset clips (one per
motion; read from data/synthetic if it exists, else rendered by synthetic.py). Goal: EPE <= 0.2 px
and >= 95% within 2 grey levels.

--save-reference FILE writes the pairs, OpenCV's flow of each and OpenCV's one-core pairs/s on
this CPU to FILE (.npz) and stops: benchmarks/gpu_check.sh measures the Keras TV-L1 against it
on a machine without OpenCV's contrib build (no cv2.optflow). The file stays out of git; make it
on the machine that runs the check's command, which carries it along.
"""
import argparse
import contextlib
import multiprocessing
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from twostream.datasets import synthetic  # noqa: E402
from twostream.protocol import presets  # noqa: E402
from twostream.video import media, tvl1  # noqa: E402

MINI_DATASET = os.path.join(os.path.dirname(__file__), "..", "data", "synthetic", "UCF-101")


# ---------------------------------------------------------------------------- the pairs

def photo(name, size):
    """A grey crop of one of scikit-learn's sample photos, resized to size (w, h)."""
    from sklearn.datasets import load_sample_image
    image = cv2.cvtColor(load_sample_image(name), cv2.COLOR_RGB2GRAY)
    return cv2.resize(image[60:444, 80:590], size, interpolation=cv2.INTER_AREA)


def moved(image, matrix):
    return cv2.warpAffine(image, np.float32(matrix), image.shape[::-1], flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT)


def similarity(image, angle=0.0, scale=1.0, shift=(0.0, 0.0)):
    """The affine map that rotates (degrees) and scales about the centre, then shifts (x, y) pixels."""
    height, width = image.shape
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
    matrix[:, 2] += shift
    return matrix


def photo_pairs(size):
    """{name: (first, second)}: the photos moved by known motions, in pixels at 340x256."""
    k = size[0] / 340
    china, flower = photo("china.jpg", size), photo("flower.jpg", size)
    return {
        "temple, shift": (china, moved(china, similarity(china, shift=(1.6 * k, -0.7 * k)))),
        "temple, rotate+scale": (china, moved(china, similarity(china, 1.5, 1.03, (0.8 * k, 0.5 * k)))),
        "temple, shear": (china, moved(china, [[1, 0.02, 2.3 * k], [-0.01, 1, 1.2 * k]])),
        "flower, shift": (flower, moved(flower, similarity(flower, shift=(-1.3 * k, 0.9 * k)))),
        "flower, rotate+scale": (flower, moved(flower, similarity(flower, -2.0, 0.98, (0.4 * k, 0.6 * k)))),
    }


def mini_dataset_pairs(size):
    """{name: (first, second)}: frames 1 and 2 of one mini dataset clip per motion, grey at size."""
    pairs = {}
    for label in range(len(synthetic.MOTIONS)):  # the first colour's four motions
        clip = synthetic.make_clip(0, label, 1, 1)
        path = os.path.join(MINI_DATASET, synthetic.CLASS_NAMES[label], clip.name + ".avi")
        frames = media.read_video(path, size, max_frames=2) if os.path.isfile(path) else [
            cv2.resize(frame, size, interpolation=cv2.INTER_AREA) for frame in synthetic.render(clip)[:2]]
        pairs[f"mini {clip.name}"] = tuple(media.to_gray(frame) for frame in frames)
    return pairs


# ---------------------------------------------------------------------------- timing

def best_seconds(work, rounds):
    """The least wall time of `rounds` runs of work()."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def opencv_tvl1(pair):
    return tvl1.OPENCV_DEFAULTS.opencv().calc(pair[0], pair[1], None)


def opencv_tvl1_all_cores(pairs, workers, rounds):
    """Pairs per second of OpenCV's TV-L1 in `workers` single-threaded processes, each pair once."""
    # forkserver: a child forked from a process whose OpenCV threads have run can deadlock
    context = multiprocessing.get_context("forkserver")
    with context.Pool(workers, initializer=cv2.setNumThreads, initargs=(1,)) as pool:
        pool.map(opencv_tvl1, pairs[:workers], chunksize=1)  # start the processes before the clock runs
        return len(pairs) / best_seconds(lambda: pool.map(opencv_tvl1, pairs, chunksize=1), rounds)


def keras_devices():
    """{'cpu': context manager, 'gpu': context manager (if present)} placing the Keras backend's work."""
    import keras
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        devices = {"cpu": jax.default_device(jax.devices("cpu")[0])}
        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if gpus:
            devices["gpu"] = jax.default_device(gpus[0])
        return devices
    if backend == "tensorflow":
        import tensorflow as tf
        devices = {"cpu": tf.device("/CPU:0")}
        if tf.config.list_physical_devices("GPU"):
            devices["gpu"] = tf.device("/GPU:0")
        return devices
    return {"cpu": contextlib.nullcontext()}


def device_name(kind):
    if kind == "cpu":
        return f"CPU, {os.cpu_count()} cores"
    try:
        import subprocess
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "GPU"


def keras_rows(pairs, batch_size, rounds):
    """[(method, device, pairs/s, flows of the pairs)] for the Keras TV-L1 on each device."""
    import keras
    firsts, seconds = (np.array([pair[i] for pair in pairs]) for i in (0, 1))
    repeat = -(-batch_size // len(pairs))
    batch = [np.concatenate([images] * repeat)[:batch_size] for images in (firsts, seconds)]
    rows = []
    for kind, placement in keras_devices().items():
        with placement:
            start = time.perf_counter()
            flows = tvl1.estimate_flow(*batch)
            compile_seconds = time.perf_counter() - start
            seconds = best_seconds(lambda: tvl1.estimate_flow(*batch), rounds)
        print(f"tvl1_keras on {kind}: first call (compiling) {compile_seconds:.1f} s, then {seconds:.2f} s "
              f"a batch of {batch_size}")
        method = f"TV-L1, Keras ({keras.backend.backend()}), batch {batch_size}"
        rows.append((method, device_name(kind), batch_size / seconds, flows[:len(pairs)]))
    return rows


# ---------------------------------------------------------------------------- report

def end_point_error(flow, reference):
    return float(np.mean(np.sqrt(np.sum(np.square(flow - reference), axis=-1))))


def share_within(flow, reference, levels=2):
    ours, theirs = (np.stack(media.quantize_flow(f)).astype(int) for f in (flow, reference))
    return float(np.mean(np.abs(ours - theirs) <= levels))


def print_speed(rows, reference_rate, size):
    print(f"\nSpeed at {size[0]}x{size[1]} (frame pairs per second; ratio to OpenCV TV-L1 on one core)\n")
    print(f"| {'method':<40} | {'device':<26} | {'pairs/s':>8} | {'ratio':>7} |")
    print(f"|{'-' * 42}|{'-' * 28}|{'-' * 10}|{'-' * 9}|")
    for method, device, rate in rows:
        print(f"| {method:<40} | {device:<26} | {rate:8.2f} | {rate / reference_rate:6.2f}x |")


def print_accuracy(names, flows, references, size, device):
    print(f"\nAccuracy at {size[0]}x{size[1]}: Keras TV-L1 on {device} against OpenCV's DualTVL1 "
          "(goal: EPE <= 0.2 px, >= 95% within 2 grey levels)\n")
    print(f"| {'pair':<34} | {'EPE (px)':>8} | {'within 2 levels':>15} | {'OpenCV mean |flow|':>18} |")
    print(f"|{'-' * 36}|{'-' * 10}|{'-' * 17}|{'-' * 20}|")
    errors, shares = [], []
    for name, flow, reference in zip(names, flows, references):
        errors.append(end_point_error(flow, reference))
        shares.append(share_within(flow, reference))
        magnitude = np.mean(np.linalg.norm(reference, axis=-1))
        print(f"| {name:<34} | {errors[-1]:8.3f} | {shares[-1]:14.1%} | {magnitude:18.2f} |")
    print(f"| {'mean':<34} | {np.mean(errors):8.3f} | {np.mean(shares):14.1%} | {'':18} |")
    print(f"| {'worst':<34} | {max(errors):8.3f} | {min(shares):14.1%} | {'':18} |")


def save_reference(path, names, pairs, flows, one_core):
    """The pairs, OpenCV's flows and one-core rate, for gpu_check (read_reference); written whole."""
    import platform
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    partial = path + ".partial.npz"
    np.savez_compressed(partial, names=np.array(names), firsts=np.array([p[0] for p in pairs]),
                        seconds=np.array([p[1] for p in pairs]), flows=np.array(flows, np.float32),
                        opencv_one_core=one_core, cpu=cpu, opencv=cv2.__version__)
    os.replace(partial, path)
    print(f"{path}: {len(pairs)} pairs, OpenCV's flows, and OpenCV TV-L1 at {one_core:.2f} pairs/s on one core "
          f"of {cpu}")


def read_reference(path):
    """{names, firsts, seconds, flows, opencv_one_core, cpu, opencv} as save_reference wrote them."""
    with np.load(path) as data:
        return {key: data[key] if data[key].ndim else data[key].item() for key in data.files}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=lambda s: tuple(map(int, s.split("x"))), default=media.FRAME_SIZE,
                        help="frame size WIDTHxHEIGHT (default: 340x256)")
    parser.add_argument("--batch", type=int, default=None,
                        help="pairs per call of the Keras TV-L1 (default: 64 on a GPU, else the number of pairs)")
    parser.add_argument("--rounds", type=int, default=2, help="timed runs per method; the best counts")
    parser.add_argument("--workers", type=int, default=presets.CORES, help="processes for OpenCV on all usable cores")
    parser.add_argument("--save-reference", metavar="FILE",
                        help="write the pairs, OpenCV's flows and its one-core pairs/s to FILE (.npz) and stop")
    args = parser.parse_args()

    pairs = {**photo_pairs(args.size), **mini_dataset_pairs(args.size)}
    names, pair_list = list(pairs), list(pairs.values())
    print(f"{len(pair_list)} pairs at {args.size[0]}x{args.size[1]}; OpenCV {cv2.__version__}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    cv2.setNumThreads(1)
    references = [opencv_tvl1(pair) for pair in pair_list]
    one_core = len(pair_list) / best_seconds(lambda: [opencv_tvl1(pair) for pair in pair_list], args.rounds)
    if args.save_reference:
        save_reference(args.save_reference, names, pair_list, references, one_core)
        return
    rows = [("TV-L1, OpenCV", "CPU, 1 core", one_core)]
    rows.append(("TV-L1, OpenCV", f"CPU, {args.workers} processes",
                 opencv_tvl1_all_cores(pair_list * args.workers, args.workers, args.rounds)))
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    rows.append(("DIS (medium), OpenCV", "CPU, 1 core",
                 len(pair_list) / best_seconds(lambda: [dis.calc(a, b, None) for a, b in pair_list], args.rounds)))
    cv2.setNumThreads(-1)

    has_gpu = "gpu" in keras_devices()
    keras = keras_rows(pair_list, args.batch or (64 if has_gpu else len(pair_list)), args.rounds)
    rows += [row[:3] for row in keras]
    if not has_gpu:
        print("no GPU seen by the Keras backend: the Keras TV-L1 ran on the CPU only")
    print_speed(rows, one_core, args.size)
    for method, device, _, flows in keras:
        print_accuracy(names, flows, references, args.size, device)


if __name__ == "__main__":
    main()
