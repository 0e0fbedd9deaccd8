"""A full-size dress rehearsal: every default command of the README on UCF-101 and HMDB-51 at their
real shape (synthetic_full.generate_full), with only the iteration counts cut.

    python benchmarks/rehearsal.py --work /tmp/rehearsal                    # full size (~1 h on 2 cores)
    python benchmarks/rehearsal.py --work /tmp/rehearsal --fraction 0.01    # 1% of the videos, every class

Steps, each a subprocess of the real script:
  generate      prepare_data.py synthetic --full: 13,320 UCF-101 videos (real frame counts) and 6,766
                HMDB-51 clips, frames at 340x256 and u/v flow, hard-linked from a pool of JPEGs
  check         prepare_data.py check on split 1 (and hmdb51), then --decode on a sample of classes
  temporal      temporal_train.py at the paper's batch 256 and 224 crops, --iterations cut
  spatial       spatial_train.py likewise, --weights none (ImageNet weights cannot be downloaded here)
  multitask     temporal_train.py --multitask hmdb51
  score-sample  fuse_test.py with the trained networks and the paper's 25 x 10 protocol on a few test
                videos (--max-videos, --no-svm)
  score-all     fuse_test.py on all 3,783 test and 9,537 training videos of split 1, both streams, both
                fusions, the full report, with stand-in networks (a pooling layer and a softmax, saved as
                real .keras files in the run's layout with the trained runs' config.json) and
                --samples 1 --crops center: every list, file, table, plot and the SVM at full size
For each: start-up (seconds until the first batch or video), steady rate, peak resident memory of the
process tree (wait4), files and bytes written (write_bytes of /proc/<pid>/io, and what is left in
its output folder). The table goes to stdout and <work>/rehearsal.md (--table), after every step. The
generated data lives in <work>/data and is reused by a rerun with the same --fraction.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from twostream.datasets import synthetic, ucf101  # noqa: E402

STEPS = ("generate", "check", "temporal", "spatial", "multitask", "score-sample", "score-all")
PROGRESS = re.compile(r"(\d+)/(\d+) \[")  # tqdm: "  123/3783 [00:10<..."
# Keras's epoch line, "4/4 - 407s - 102s/step - loss: ...": the epoch's seconds (its steps are the parts
# of --accumulate, so its s/step is not an optimizer step's)
KERAS_EPOCH = re.compile(r"^\d+/\d+ - (\d+(?:\.\d+)?)(m?s) - ")


class Step:
    """One command run as a subprocess: its output lines with times, peak memory and bytes written."""

    def __init__(self, name, argv, out_dirs, first=None, env=None):
        self.name, self.argv, self.out_dirs, self.first = name, argv, out_dirs, first
        # PYTHONUNBUFFERED: lines timed as printed
        self.env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **(env or {})}
        self.lines = []  # (seconds since start, text)

    def run(self, log):
        print(f"\n== {self.name}: {' '.join(self.argv)}", flush=True)
        start = time.perf_counter()
        process = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
        written = [0]
        watcher = threading.Thread(target=watch_io, args=(process.pid, written), daemon=True)
        watcher.start()
        buffer = b""
        with open(log, "ab") as log_file:
            while chunk := os.read(process.stdout.fileno(), 65536):
                log_file.write(chunk)
                now = time.perf_counter() - start
                buffer += chunk
                *done, buffer = re.split(rb"[\r\n]", buffer)
                self.lines += [(now, line.decode(errors="replace")) for line in done if line.strip()]
        _, status, usage = os.wait4(process.pid, 0)
        self.seconds = time.perf_counter() - start
        self.code = os.waitstatus_to_exitcode(status)
        self.peak_gb = usage.ru_maxrss / 2**20
        self.written = written[0]
        self.files, self.bytes = folder_usage(self.out_dirs)
        tail = [text for _, text in self.lines[-3:]]
        print(f"   exit {self.code} after {self.seconds:.0f} s; {' | '.join(tail)[-300:]}", flush=True)
        if self.code:
            raise SystemExit(f"rehearsal: {self.name} failed (exit {self.code}); see {log}")
        return self

    def startup(self):
        """Seconds until the first batch or video: until the line matching `first` appeared, or for
        training, until the first epoch began (its end less its steps' time: the first step, with
        tracing, is in the first epoch's time, not here)."""
        epochs = keras_epochs(self)
        if epochs:
            return epochs[0][0] - epochs[0][1]
        return next((t for t, text in self.lines if self.first and re.search(self.first, text)), None)


def watch_io(pid, written):
    """Bytes the process has caused to be written to storage (it alone, not its children)."""
    path = f"/proc/{pid}/io"
    while True:
        try:
            with open(path) as f:
                written[0] = max(written[0], int(next(line for line in f if line.startswith("write_bytes")).split()[1]))
        except (OSError, StopIteration, ValueError):
            return
        time.sleep(0.5)


def folder_usage(folders):
    """(files, bytes) under the folders; hard links counted once per inode."""
    seen, files, size = set(), 0, 0
    for folder in folders:
        for root, _, names in os.walk(folder):
            for name in names:
                stat = os.lstat(os.path.join(root, name))
                files += 1
                if stat.st_ino not in seen:
                    seen.add(stat.st_ino)
                    size += stat.st_size
    return files, size


def keras_epochs(step):
    """[(seconds at the end of the epoch, the epoch's seconds)] of every epoch: one optimizer step each
    (--epoch-steps 1), with its checkpoint."""
    return [(t, float(m[1]) / (1000 if m[2] == "ms" else 1))
            for t, text in step.lines if (m := KERAS_EPOCH.search(text))]


def keras_step_seconds(step):
    """The steady step: the last epoch's time (an optimizer step and writing a checkpoint)."""
    epochs = keras_epochs(step)
    return epochs[-1][1] if len(epochs) > 1 else None


def progress_rate(step):
    """Videos/s over all tqdm bars of the step, after each bar's first item."""
    bars, total_items, total_time = {}, 0, 0.0
    for t, text in step.lines:
        if m := PROGRESS.search(text):
            key = (text.split(":")[0], m[2])
            bars.setdefault(key, []).append((t, int(m[1])))
    for points in bars.values():
        started = [(t, n) for t, n in points if n > 0]
        if len(started) >= 2:
            total_items += started[-1][1] - started[0][1]
            total_time += started[-1][0] - started[0][0]
    return total_items / total_time if total_time else None


# ---------------------------------------------------------------------------- the steps

def python(script, *args):
    return [sys.executable, os.path.join(ROOT, script), *map(str, args)]


def training_flags(args, data, dataset="ucf101"):
    return ["--dataset", dataset, "--data-dir", os.path.join(data, dataset), "--splits-dir",
            os.path.join(data, dataset, "splits"), "--batch-size", args.batch_size, "--image-size", args.image_size,
            "--accumulate", args.accumulate, "--epoch-steps", 1, "--workers", 2]


def stand_in(real_dir, out_dir, stream):
    """A stand-in for a trained stream: average pooling and a softmax, saved as a real .keras file
    with the trained run's config.json and classInd.txt, so fuse_test.py reads it as that run."""
    import keras

    from twostream.train import checkpoints
    with open(os.path.join(real_dir, checkpoints.CONFIG_FILE)) as f:
        config = json.load(f)
    size, classes = config["image_size"], config["num_classes"]
    channels = 3 if stream == "spatial" else 2 * config["stack_length"]
    inputs = keras.Input((size, size, channels))
    pooled = keras.layers.Flatten()(keras.layers.AveragePooling2D(size // 4)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(pooled))
    os.makedirs(out_dir, exist_ok=True)
    for name in (checkpoints.CONFIG_FILE, checkpoints.CLASSES_FILE):
        shutil.copy(os.path.join(real_dir, name), out_dir)
    model.save(os.path.join(out_dir, checkpoints.MODEL_FILE))


def sample_splits(data, out, classes):
    """Split lists of the first `classes` classes of split 1, for check --decode on a sample."""
    from twostream.datasets import ucf101
    splits = os.path.join(data, "ucf101", "splits")
    names = ucf101.read_classes(os.path.join(splits, ucf101.CLASS_FILE))[:classes]
    os.makedirs(out, exist_ok=True)
    ucf101.write_lines(os.path.join(out, ucf101.CLASS_FILE), ucf101.class_index_lines(names))
    for path in ucf101.split_files(splits, 1):
        lines = [line for line in ucf101.read_lines(path) if line.split("/")[0] in names]
        ucf101.write_lines(os.path.join(out, os.path.basename(path)), lines)


def plan(args):
    work, data = args.work, os.path.join(args.work, "data")
    ckpt, results = os.path.join(work, "checkpoints"), os.path.join(work, "results")
    ucf, hmdb = os.path.join(data, "ucf101"), os.path.join(data, "hmdb51")
    iterations = ["--iterations", args.iterations]
    test_flags = ["--data-dir", ucf, "--splits-dir", os.path.join(ucf, "splits"), "--results-dir", results,
                  "--workers", 2, "--streams", *args.streams]
    return {
        "generate": [Step("generate", python("prepare_data.py", "synthetic", "--full", args.lists, "--out", data,
                                             "--fraction", args.fraction, "--workers", 2), [data], r"UCF-101 folders")],
        "check": [Step("check ucf101", python("prepare_data.py", "check", "--data-dir", ucf, "--splits-dir",
                                              os.path.join(ucf, "splits"), "--workers", 2), [], r"check:.*[1-9]\d*/"),
                  Step("check hmdb51", python("prepare_data.py", "check", "--data-dir", hmdb, "--splits-dir",
                                              os.path.join(hmdb, "splits"), "--workers", 2), [], r"check:.*[1-9]\d*/"),
                  Step("check --decode (sample)", python("prepare_data.py", "check", "--decode", "--data-dir", ucf,
                                                         "--splits-dir", os.path.join(work, "sample_splits"),
                                                         "--workers", 2), [], r"check:.*[1-9]\d*/")],
        "temporal": [Step("temporal_train", python("temporal_train.py", *training_flags(args, data), *iterations,
                                                   "--checkpoint-dir", os.path.join(ckpt, "temporal"), "--overwrite"),
                          [os.path.join(ckpt, "temporal")], r"^Epoch 1/")],
        "spatial": [Step("spatial_train", python("spatial_train.py", *training_flags(args, data), "--weights", "none",
                                                 "--phase1-iterations", args.iterations, "--phase2-iterations",
                                                 args.iterations, "--checkpoint-dir", os.path.join(ckpt, "spatial"),
                                                 "--overwrite"),
                         [os.path.join(ckpt, "spatial")], r"^Epoch 1/")],
        "multitask": [Step("temporal_train --multitask hmdb51",
                           python("temporal_train.py", *training_flags(args, data), *iterations,
                                  "--multitask", "hmdb51", "--multitask-data-dir", hmdb,
                                  "--multitask-splits-dir", os.path.join(hmdb, "splits"),
                                  "--checkpoint-dir", os.path.join(ckpt, "multitask"), "--overwrite"),
                           [os.path.join(ckpt, "multitask")], r"^Epoch 1/")],
        "score-sample": [Step(f"fuse_test 25x10, {args.sample_videos} videos",
                              python("fuse_test.py", *test_flags, "--checkpoints", ckpt, "--max-videos",
                                     args.sample_videos, "--no-svm", "--run-name", "sample", "--overwrite"),
                              [os.path.join(results, "sample")], PROGRESS.pattern.replace("(\\d+)", "([1-9]\\d*)", 1))],
        "score-all": [Step("fuse_test all videos (stand-ins, 1 centre crop)",
                           python("fuse_test.py", *test_flags, "--checkpoints", os.path.join(work, "stand_in"),
                                  "--samples", 1, "--crops", "center", "--run-name", "all", "--overwrite"),
                           [os.path.join(results, "all")], PROGRESS.pattern.replace("(\\d+)", "([1-9]\\d*)", 1))],
    }


def prepare(step_name, args):
    """What a step needs made first, outside the timed command."""
    if step_name == "check":
        sample_splits(os.path.join(args.work, "data"), os.path.join(args.work, "sample_splits"), args.decode_classes)
    if step_name == "score-all":
        for stream in args.streams:
            stand_in(os.path.join(args.work, "checkpoints", stream), os.path.join(args.work, "stand_in", stream),
                     stream)


def row(step, cores, batch):
    startup = step.startup()
    keras_step = keras_step_seconds(step)
    rate = progress_rate(step)
    epochs = keras_epochs(step)
    if keras_step:
        samples = batch / keras_step
        steady = (f"{keras_step:.0f} s/step = {samples:.2f} samples/s ({samples / cores:.2f}/core); "
                  f"first step {epochs[0][1]:.0f} s")
    elif rate:
        steady = f"{rate:.1f} videos/s ({rate / cores:.2f}/core)"
    else:
        steady = "—"
    return (f"| {step.name} | {step.seconds:.0f} | {'—' if startup is None else f'{startup:.0f}'} | {steady} | "
            f"{step.peak_gb:.2f} | {step.files:,} | {step.bytes / 1e6:,.1f} | {step.written / 1e6:,.1f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="folder for the data, checkpoints, results and the table")
    parser.add_argument("--lists", default=os.path.join(ROOT, "..", "shared", "ucf101"),
                        help="the official UCF-101 lists and frame_counts.csv (default: %(default)s)")
    parser.add_argument("--fraction", type=float, default=1.0, help="fraction of each class's videos")
    parser.add_argument("--iterations", type=int, default=2, help="training iterations per run (phase)")
    parser.add_argument("--accumulate", type=int, default=4, help="--accumulate of the training runs")
    parser.add_argument("--batch-size", type=int, default=256, help="training batch (the paper's: 256)")
    parser.add_argument("--image-size", type=int, default=224, help="training crop side (the paper's: 224)")
    parser.add_argument("--sample-videos", type=int, default=2, help="test videos scored with the real networks")
    parser.add_argument("--decode-classes", type=int, default=2, help="classes whose JPEGs check --decode decodes")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument("--streams", nargs="+", choices=ucf101.STREAMS, default=list(ucf101.STREAMS),
                        help="streams the scoring steps test (both: also both fusions)")
    parser.add_argument("--table", default="rehearsal.md", help="file in --work for the table (default: %(default)s)")
    parser.add_argument("--machine", default=f"{os.cpu_count()} cores", help="what to call this machine in the table")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    marker = synthetic.generated_settings(os.path.join(args.work, "data"))
    if "generate" in args.steps and marker and marker.get("fraction") == args.fraction:
        args.steps.remove("generate")  # the data of an earlier run: reused
        print(f"rehearsal: reusing {os.path.join(args.work, 'data')} ({args.fraction:g} of the videos)")
    log = os.path.join(args.work, "rehearsal.log")
    steps, all_steps = [], plan(args)
    for name in args.steps:
        prepare(name, args)
        for step in all_steps[name]:
            steps.append(step.run(log))
            write_table(args, steps)  # after every step: a long rehearsal stopped early keeps what it measured


def write_table(args, steps):
    cores = os.cpu_count()
    table = ["| step | wall s | start-up s | steady rate | peak RSS GB | files | MB left | MB written |",
             "|---|--:|--:|---|--:|--:|--:|--:|"] + [row(step, cores, args.batch_size) for step in steps]
    settings = synthetic.generated_settings(os.path.join(args.work, "data")) or {}
    text = (f"Rehearsal at {args.fraction:g} of full size on {args.machine}: UCF-101 {settings.get('ucf101_videos')} "
            f"videos ({settings.get('ucf101_frames', 0):,} frames), HMDB-51 {settings.get('hmdb51_clips')} clips; "
            f"training {args.iterations} iterations of batch {args.batch_size} (--accumulate {args.accumulate}), "
            f"{args.image_size} crops.\n\n" + "\n".join(table) + "\n")
    print("\n" + text, flush=True)
    with open(os.path.join(args.work, args.table), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
