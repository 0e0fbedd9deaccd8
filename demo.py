"""Predict the actions in any video file with the trained two-stream model.

    python demo.py my_video.mp4
    python demo.py my_video.mp4 --top 3 --output annotated.mp4 --plot scores.png
    python demo.py clip.avi --dataset synthetic --flow-method dis

Frames are prepared exactly as for training (resized to the frame size each stream was trained
on), flow is computed only for the frames the sampled stacks need, both streams score N
uniformly spaced samples (centre crop), and their mean softmax scores are averaged. The models
are each stream's last.keras, the fixed schedule's final model, as fuse_test.py tests.

--output and --plot never replace the input video, nor any existing file unless --overwrite is given;
they appear only complete (written under a temporary name, then renamed). A video that a model trained
on (its name in a split list the model's config.json says it trained on, read from the run's splits
folder; not checked where those lists are absent) is refused: its prediction would be memory.
"""
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
from tqdm import tqdm

from twostream.datasets.frames import stack_channels, stack_indices
from twostream.errors import DataError, run
from twostream.loading.pixels import eval_crops
from twostream.loading.sampling import sample_starts
from twostream.protocol import flags, presets
from twostream.storage import atomic
from twostream.train import checkpoints, lineage
from twostream.video import media

OUTPUT_EXTENSIONS = (".mp4", ".avi")  # containers cv2.VideoWriter writes with the mp4v codec

def plot_extensions():
    from matplotlib.figure import Figure
    return tuple(f".{name}" for name in Figure().canvas.get_supported_filetypes())


def check_outputs(video, output, plot, overwrite):
    """Refuse, before any work, an output with an extension nothing here writes, one naming the input
    video, and one that exists (unless overwrite)."""
    for flag, path, extensions in (("--output", output, OUTPUT_EXTENSIONS), ("--plot", plot, None)):
        if not path:
            continue
        extensions = extensions or plot_extensions()
        if os.path.splitext(path)[1].lower() not in extensions:
            raise DataError(f"{flag} {path}: unknown extension; use one of {', '.join(extensions)}")
        if os.path.exists(path) and os.path.exists(video) and os.path.samefile(path, video):
            raise DataError(f"{flag} {path}: is the input video; name another file")
        if os.path.isdir(path) or (os.path.exists(path) and not overwrite):
            raise DataError(f"{flag} {path}: exists; pass --overwrite to replace it, or name another file")
    if output and plot and os.path.abspath(output) == os.path.abspath(plot):
        raise DataError(f"--output and --plot name the same file {output}")


def check_not_trained_on(video, paths, dataset_tested):
    """Refuse a video a model trained on (lineage.refuse_seen_video), for each stream's head of
    `dataset_tested`."""
    for stream, path in paths.items():
        config, _ = checkpoints.read(path, stream, dataset_tested)
        dataset = checkpoints.head(config, dataset_tested)
        splits_dir = (config.get("splits_dir") if dataset == config.get("dataset")
                      else presets.values(dataset, "demo")["splits_dir"])
        if splits_dir:
            lineage.refuse_seen_video(path, config, stream, dataset, splits_dir, video)


def read_frames(path, frame_size):
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    frames = media.read_video(path, size=frame_size)
    if not frames:
        raise DataError(f"{path}: OpenCV could not decode any frame; is it a video file? "
                        f"Convert it with e.g. `ffmpeg -i {path} out.mp4`")
    return frames


def spatial_batch(frames, samples, image_size):
    starts = sample_starts(len(frames), samples, 1)
    return np.concatenate([eval_crops(frames[s], image_size, "center", False) for s in starts])


def flow_stacks(frames, samples, stack_length, method, workers):
    """Sampled flow stacks [N, H, W, 2L], computing flow only for the pairs they use."""
    num_flows = max(len(frames) - 1, 1)
    if len(frames) == 1:
        frames = frames * 2  # a single still frame: zero motion
    starts = sample_starts(num_flows, samples, stack_length)
    stacks = [stack_indices(s, stack_length, num_flows) for s in starts]
    pairs = sorted({i for stack in stacks for i in stack})
    if method in media.BATCHED_FLOW_METHODS:
        flow = media.compute_flow(frames, method, pairs)  # batches of pairs on the Keras backend's device
    else:
        def estimate_one(i):
            return i, media.compute_flow(frames[i:i + 2], method)[0]

        with ThreadPoolExecutor(workers) as pool:
            flow = dict(tqdm(pool.map(estimate_one, pairs), total=len(pairs), desc=f"{method} flow", unit="pair"))
    return np.stack([np.stack(stack_channels(flow[i] for i in stack), axis=-1) for stack in stacks])


def temporal_batch(stacks, image_size):
    return np.concatenate([eval_crops(stack, image_size, "center", True) for stack in stacks])


def predict_mean(model, batch):
    return np.asarray(model.predict(batch, batch_size=25, verbose=0)).mean(axis=0)


def print_top(name, scores, classes, k):
    print(f"{name}:")
    for i in np.argsort(scores)[::-1][:k]:
        print(f"  {scores[i]:6.1%}  {classes[i]}")


def write_annotated(path, frames, label, fps):
    height, width = frames[0].shape[:2]
    with atomic.replacing(path) as temp:
        writer = cv2.VideoWriter(temp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise DataError(f"{path}: OpenCV cannot write this file; use an .mp4 or .avi name")
        for frame in frames:
            frame = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
            cv2.rectangle(frame, (0, 0), (width, 22), (0, 0, 0), -1)
            cv2.putText(frame, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
            writer.write(frame)
        writer.release()


def classify(video_path, spatial_path, temporal_path, samples=presets.TEST_SAMPLES, flow_method="tvl1", workers=1,
             fusion_weights=(1, 1), dataset=None):
    """Score one video with both streams -> (frames, classes, {stream or "fusion": softmax}, {step: seconds}).
    A multi-task temporal model answers with the head of `dataset` (default: the one it was trained for)."""
    spatial, spatial_config, classes = checkpoints.load(spatial_path, "spatial", dataset)
    temporal, temporal_config, temporal_classes = checkpoints.load(temporal_path, "temporal", dataset)  # its head
    if classes != temporal_classes:
        raise DataError(f"{spatial_path} and {temporal_path} were trained on different classes")
    timings = {}
    start = time.perf_counter()
    frames = read_frames(video_path, frame_size(spatial_config))
    # Each stream sees the video at the frame size it was trained on (flow depends on it).
    flow_frames = (frames if frame_size(temporal_config) == frame_size(spatial_config) else
                   read_frames(video_path, frame_size(temporal_config)))
    timings["decode"] = time.perf_counter() - start

    start = time.perf_counter()
    stacks = flow_stacks(flow_frames, samples, temporal_config["stack_length"], flow_method, workers)
    timings["flow"] = time.perf_counter() - start

    start = time.perf_counter()
    scores = {
        "spatial": predict_mean(spatial, spatial_batch(frames, samples, spatial_config["image_size"])),
        "temporal": predict_mean(temporal, temporal_batch(stacks, temporal_config["image_size"])),
    }
    from twostream.scoring import evaluation
    scores["fusion"] = evaluation.fuse([scores["spatial"], scores["temporal"]], fusion_weights)
    timings["inference"] = time.perf_counter() - start
    return frames, classes, scores, timings


def frame_size(config):
    return tuple(config.get("frame_size", media.FRAME_SIZE))


def parse_args(argv=None):
    parser = flags.parser(__doc__)
    parser.add_argument("video", help="any video file OpenCV can decode (any size, frame rate, container)")
    flags.add(parser, "demo", "--dataset", "--checkpoints", "--spatial", "--temporal")

    flag = flags.adder(parser, "demo")

    flag("--top", "how many classes to print per stream", type=flags.positive, default=5)
    flags.add(parser, "demo", "--samples", "--flow-method", "--fusion-weights", "--workers")
    flag("--output", f"write the video with the fused top prediction drawn on it ({' or '.join(OUTPUT_EXTENSIONS)}, "
         "e.g. out.mp4)")
    flag("--plot", "write a bar chart of the top-k scores per stream (e.g. scores.png, .pdf, .svg)")
    flags.add(parser, "demo", "--overwrite")
    return flags.parse(parser, "demo", argv)


def main(argv=None):
    """Classify the video, print the top classes and timings, write the annotated video and plot."""
    args = parse_args(argv)
    spatial_path = checkpoints.model_path(args.checkpoints, "spatial", args.spatial)
    temporal_path = checkpoints.model_path(args.checkpoints, "temporal", args.temporal)
    check_outputs(args.video, args.output, args.plot, args.overwrite)
    for output in filter(None, (args.output, args.plot)):
        atomic.remove_abandoned_temporaries_of(output)  # a killed demo's
    check_not_trained_on(args.video, {"spatial": spatial_path, "temporal": temporal_path}, args.dataset)
    frames, classes, scores, timings = classify(args.video, spatial_path, temporal_path, args.samples,
                                                args.flow_method, args.workers, args.fusion_weights, args.dataset)
    for stream, path in (("spatial", spatial_path), ("temporal", temporal_path)):
        print(f"{stream}: {path}, {checkpoints.progress_text(checkpoints.read_training_record(path))}")
    height, width = frames[0].shape[:2]
    print(f"{args.video}: {len(frames)} frames at {width}x{height}")
    for name, stream_scores in scores.items():
        print_top(name, stream_scores, classes, args.top)
    print("time: " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in timings.items()))

    best = int(np.argmax(scores["fusion"]))
    if args.output:
        label = f"{classes[best]} {scores['fusion'][best]:.0%}"
        write_annotated(args.output, frames, label, media.video_fps(args.video))
        print(f"wrote {args.output}")
    if args.plot:
        from twostream.scoring import report
        report.plot_top_scores(args.plot, scores, classes, args.top)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    sys.exit(run(main))
