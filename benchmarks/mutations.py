"""Mutation check: each promise the README makes is broken on purpose, one small bug at a time, and
the tests that guard it must fail.

    python benchmarks/mutations.py                          # every mutation (minutes: a few need slow tests)
    python benchmarks/mutations.py --list                   # the mutations and their test selections, nothing run
    python benchmarks/mutations.py --only flipped-flow-keeps-u demo-writes-over-its-input
    python benchmarks/mutations.py --check-clean            # also run each selection on the unmutated code first
    python benchmarks/mutations.py --timeout 600 --keep     # 600 s per pytest run; keep the copies to inspect

For each mutation: the tracked files (git ls-files) are copied into a fresh temporary folder
(<tmp>/main, with <tmp>/shared linked to the ../shared beside the repository, which some tests read),
the mutation's source text is replaced there (it must occur exactly once in its file, or the mutation
is reported as "patch no longer applies"), and its test selection runs as

    python -m pytest -q -x -p no:cacheprovider <selection>

with this interpreter. Exit 1 (a test failed) is "caught", exit 0 "missed", anything else (a collection
error, a timeout, exit 2, 4 or 5) "error": none of those counts as caught. Each selection is the
cheapest one found that catches its bug; the few marked slow below need a slow test, as nothing
cheaper catches them. The table is printed at the end, then "N caught, M missed, K errors of T";
the exit status is 1 unless every mutation was caught. The working tree's copies of the tracked files
are used (uncommitted edits included); the repository itself is never changed.
"""
import argparse
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAIL_LINES = 25  # of pytest's output, shown for a mutation not caught


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str  # the rule broken, as one kebab-case line (what --only takes)
    file: str  # the product file, relative to the repository root
    old: str  # source text, exactly once in `file`
    new: str  # what replaces it
    selection: tuple  # pytest arguments: test files, node ids, -k expressions
    slow: bool = False  # the selection holds a test marked slow


MUTATIONS = [
    Mutation(
        "device-flip-keeps-u",  # the test crops cut on the device: a mirrored flow crop's u must change sign too
        "twostream/networks/custom_layers.py",
        "                    crop = ops.bitwise_xor(crop, ops.convert_to_tensor(u_bytes, dtype=crop.dtype))",
        "                    pass",
        ("tests/test_device_crops.py",)),
    Mutation(
        "consensus-of-probabilities",  # TSN averages the snippets' logits, not their probabilities
        "twostream/networks/custom_layers.py",
        "        return ops.softmax(ops.mean(per_video, axis=1), axis=-1)",
        "        return ops.mean(ops.exp(per_video), axis=1)",
        ("tests/test_consensus.py::test_consensus_is_the_softmax_of_the_mean_of_the_snippets_logits",)),
    Mutation(
        "one-window-per-snippet",  # a sample's K snippets share one crop window (TSN's group crop)
        "generators.py",
        "            if not windows:\n"
        "                windows.append(random_window(rng, shape, self.image_size, self.crop))",
        "            if True:\n"
        "                windows.insert(0, random_window(rng, shape, self.image_size, self.crop))",
        ("tests/test_consensus.py::test_a_training_sample_is_one_snippet_from_each_segment_with_one_window_and_flip",)),
    Mutation(
        "scoring-batches-unpadded",  # keras.distribution on JAX splits a batch over the devices only evenly
        "fuse_test.py",
        "    if devices == 1:\n        return np.asarray(model.predict(sequence, verbose=0), np.float32)",
        "    if True:\n        return np.asarray(model.predict(sequence, verbose=0), np.float32)",
        ("tests/test_distributed.py::test_mirrored_on_jax_splits_each_batch_over_two_devices_and_trains_the_weights_of_one",)),
    Mutation(
        "mirrored-training-stack-keeps-u",  # the training path's mirrored flow stack: u must change sign there too
        "twostream/loading/pixels.py",
        "            mirror_pairs(out)\n            invert_u(out)",
        "            mirror_pairs(out)",
        ("tests/test_generators.py",)),
    Mutation(
        "flipped-flow-keeps-u",  # a mirrored flow stack's horizontal motion must change sign
        "twostream/loading/pixels.py",
        "            cv2.bitwise_not(u, dst=u)  # 255 - u on uint8",
        "            pass  # 255 - u on uint8",
        ("tests/test_generators.py::test_flip_mirrors_the_planes_and_inverts_u_only",)),
    Mutation(
        "training-reads-the-test-list",  # training reads the training list only
        "twostream/train/training.py",
        'videos = ucf101.load_index(data_dir, splits_dir, split, "train", class_limit, max_videos)',
        'videos = ucf101.load_index(data_dir, splits_dir, split, "test", class_limit, max_videos)',
        ("tests/test_training.py::test_both_scripts_train_to_the_end_without_any_test_list_data",), slow=True),
    Mutation(
        "checkpoint-written-in-place",  # last.keras appears only whole: written under a temporary name
        "twostream/train/keras_internals.py",
        "            with atomic.replacing(final) as self.filepath:",
        "            if True:  # Keras writes the final name itself",
        (("tests/test_resume.py::test_temporal_run_killed_at_every_kind_of_moment_resumes_and_ends_as_an_"
          "uninterrupted_run"),), slow=True),
    Mutation(
        "weight-decay-on-biases-and-batchnorm",  # decay on conv and dense kernels only
        "twostream/networks/optimizers.py",
        "    return len(variable.shape) >= 2",
        "    return len(variable.shape) >= 1",
        ("tests/test_weight_decay.py::test_one_and_two_steps_are_caffes_update_on_kernels_and_plain_sgd_on_the_rest",)),
    Mutation(
        "decoupled-weight-decay",  # Caffe's decay joins the gradient before the momentum; Keras's is decoupled
        "twostream/networks/optimizers.py",
        "        if self.caffe_weight_decay and decays(variable):\n"
        "            gradient = ops.add(ops.cast(gradient, variable.dtype),\n"
        "                               ops.multiply(ops.cast(self.caffe_weight_decay, variable.dtype), variable))\n"
        "        super().update_step(gradient, variable, learning_rate)\n",
        "        super().update_step(gradient, variable, learning_rate)\n"
        "        if self.caffe_weight_decay and decays(variable):\n"
        "            decay = ops.cast(learning_rate * self.caffe_weight_decay, variable.dtype)\n"
        "            variable.assign_sub(ops.multiply(decay, variable))\n",
        ("tests/test_weight_decay.py::test_one_and_two_steps_are_caffes_update_on_kernels_and_plain_sgd_on_the_rest",)),
    Mutation(
        "multitask-accuracy-counts-the-other-dataset",  # each head's accuracy counts its own samples only
        "twostream/train/multitask.py",
        'metrics=None,\n                weighted_metrics={h: ["accuracy"] for h in heads})',
        'metrics={h: ["accuracy"] for h in heads},\n                weighted_metrics=None)',
        ("tests/test_multitask.py::test_each_heads_accuracy_counts_its_own_samples_only",)),
    Mutation(
        "wrong-paper-figure-for-multitask-fusion",  # averaging with a multi-task temporal net compares with 86.2
        "twostream/scoring/references.py",
        '"Fusion by averaging (multi-task temporal)", 86.2, None),',
        '"Fusion by averaging (multi-task temporal)", 85.9, None),',
        ("tests/test_report.py::test_every_reference_figure_is_the_papers",)),
    Mutation(
        "nine-test-crops",  # 4 corners and the centre, and their 5 mirror images
        "twostream/loading/sampling.py",
        "    return [(w, False) for w in windows] + [(w, True) for w in windows]",
        "    return [(w, False) for w in windows] + [(w, True) for w in windows[:4]]",
        ("tests/test_generators.py::test_eval_windows_are_inside_the_image_and_in_the_papers_order",)),
    Mutation(
        "samples-drawn-by-video-not-class",  # each sample draws a class uniformly, then one of its videos
        "generators.py",
        "        classes = rng.integers(len(self.class_sizes), size=self.batch_size)\n"
        "        return self.class_videos[self.class_starts[classes] + rng.integers(self.class_sizes[classes])]",
        "        return rng.integers(len(self.videos), size=self.batch_size)",
        ("tests/test_generators.py::test_class_uniform_sampling_evens_out_classes_of_1_and_5_videos",)),
    Mutation(
        "flow-dequantised-with-the-wrong-bound",  # flow JPEGs map -20 .. 20 pixels onto 0 .. 255
        "twostream/video/media.py",
        "def dequantize_flow(quantized, bound=FLOW_BOUND):",
        "def dequantize_flow(quantized, bound=16.0):",
        ("tests/test_media.py::test_quantisation_maps_the_clipped_range_onto_0_255",)),
    Mutation(
        "extraction-folder-published-unfinished",  # only whole video folders are ever under their final name
        "twostream/storage/atomic.py",
        "        yield temps\n"
        "    finally:\n"
        "        remove_folders(temps)\n",
        "        yield temps\n"
        "    finally:\n"
        "        for temp, final in zip(temps, finals):\n"
        "            if os.path.isdir(temp):  # not published by the block: it failed\n"
        "                publish_folder(temp, final, lambda final: False)\n",
        ("tests/test_prepare_data.py::test_a_corrupt_video_is_reported_and_the_others_are_done",)),
    Mutation(
        "resumed-run-rewrites-config",  # a resumed run keeps config.json as its run started
        "twostream/train/checkpoints.py",
        "    kept = {**config, **(old or {})}",
        "    kept = {**(old or {}), **config}",
        ("tests/test_resume.py::test_a_resumed_run_keeps_config_json_as_the_run_started",)),
    Mutation(
        "scores-of-a-changed-model-file-reused",  # fuse_test.py never reuses scores of another model file
        "twostream/scoring/settings.py",
        '        if saved.model == self.model and saved.fingerprint != self.fingerprint:\n'
        '            differ.append(f"the model file {self.model} changed after they were computed: other size or '
        'mtime")\n',
        "",
        ("tests/test_fuse_test.py::test_scores_of_a_changed_model_file_are_computed_again_only_with_overwrite",),
        slow=True),
    Mutation(
        "svm-trained-on-test-list-scores",  # the SVM learns from the training list's scores only
        "twostream/scoring/fusion.py",
        '    train, svm = data.get("train", {}), None',
        '    train, svm = data["test"] if data.get("train") else {}, None',
        ("tests/test_fuse_test.py::test_the_svm_learns_from_the_training_list_not_the_test_list",)),
    Mutation(
        "demo-writes-over-its-input",  # --output and --plot never replace the input video
        "demo.py",
        "        if os.path.exists(path) and os.path.exists(video) and os.path.samefile(path, video):\n"
        '            raise DataError(f"{flag} {path}: is the input video; name another file")\n',
        "",
        ("tests/test_demo.py::test_the_input_video_is_never_written_over",), slow=True),
    Mutation(
        "lr-drops-counted-in-micro-steps",  # with --accumulate K the drops count optimizer steps
        "twostream/train/training.py",
        "[d * accumulate for d in drops]",
        "list(drops)",
        ("tests/test_training.py::test_sgd_has_caffes_weight_decay_and_drops_count_optimizer_steps",)),
    Mutation(
        "lr-drops-counted-in-epochs",  # the schedule counts iterations; --epoch-steps only sets the logging
        "temporal_train.py",
        "learning_rate = training.schedule(args.lr, args.lr_drops, args.accumulate)",
        "learning_rate = training.schedule(args.lr, [d * args.epoch_steps for d in args.lr_drops], args.accumulate)",
        ("tests/test_training.py::test_a_killed_run_started_again_resumes_at_epoch_2",), slow=True),
    Mutation(
        "twenty-test-samples",  # 25 samples per test video
        "twostream/protocol/presets.py",
        "TEST_SAMPLES = 25\n",
        "TEST_SAMPLES = 20\n",
        ("tests/test_fuse_test.py::test_dataset_presets_and_default_run_names",)),
    Mutation(
        "test-samples-not-equally-spaced",  # the test samples are the centres of equal segments
        "twostream/loading/sampling.py",
        "    return [(2 * i + 1) * room // (2 * samples) for i in range(samples)]",
        "    return [i * room // samples for i in range(samples)]",
        ("tests/test_generators.py::test_sample_positions_for_a_29_frame_video",)),
    Mutation(
        "multitask-halves-share-their-draws",  # the two halves of a multi-task batch draw independently
        "twostream/train/multitask.py",
        "    return seed if position == 0 else int(np.random.SeedSequence([seed, position]).generate_state(1)[0])",
        "    return seed",
        ("tests/test_multitask.py::test_the_two_halves_draw_independently_and_a_seed_reproduces_them",)),
    Mutation(
        "multitask-loss-not-its-own-mean",  # a head's loss is the mean over its own samples
        "twostream/train/multitask.py",
        "            weights[head_name(dataset)][own] = len(x) / len(y)",
        "            weights[head_name(dataset)][own] = 1.0",
        ("tests/test_multitask.py::test_batches_are_half_from_each_dataset_with_the_other_head_masked",)),
    Mutation(
        "batch-order-shuffled-by-keras",  # a resumed run ends with the weights of a run never stopped
        "twostream/train/training.py",
        "return model.fit(data, shuffle=False,",
        "return model.fit(data, shuffle=True,",
        ("tests/test_resume.py::test_a_run_killed_after_each_commit_ends_with_the_weights_of_a_run_never_stopped"
         "[temporal]",), slow=True),
    Mutation(
        "dropout-masks-not-resumed",  # the same weights after resume, with dropout (spatial phase 2)
        "twostream/train/keras_internals.py",
        "            variable.assign(state)\n",
        "            pass\n",
        ("tests/test_resume.py::test_a_run_killed_after_each_commit_ends_with_the_weights_of_a_run_never_stopped"
         "[spatial]",), slow=True),
    Mutation(
        "unfinished-model-tested",  # a model whose run had steps left is refused unless --unfinished
        "twostream/scoring/inputs.py",
        "        check_finished(path, trained, args.unfinished)\n",
        "",
        ("tests/test_fuse_test.py::test_an_unfinished_model_is_refused_before_scoring_unless_meant",)),
    Mutation(
        "fewer-rows-written-over-more",  # a one-stream table never replaces the full one
        "twostream/scoring/fusion.py",
        "    keep_fuller_table(out_dir, scores)\n",
        "",
        ("tests/test_fuse_test.py::test_from_scores_refuses_a_missing_stream_and_never_writes_fewer_rows_over_more",)),
    Mutation(
        "lost-log-row-not-restored",  # the log never loses a row
        "twostream/train/training.py",
        "        kept.append(committed_row)\n",
        "        pass\n",
        ("tests/test_resume.py::test_the_last_log_row_cut_short_is_written_again_from_the_backup",), slow=True),
    Mutation(
        "full-disk-in-h5py-is-a-traceback",  # a full disk is one line and exit 1
        "twostream/storage/atomic.py",
        '        if "errno = 28," not in str(error):',
        "        if True:",
        ("tests/test_resume.py::test_a_disk_filling_up_while_the_backup_is_written_is_one_line_and_exit_1",),
        slow=True),
    Mutation(
        "killed-scores-write-left-behind",  # a rerun removes what a killed run was writing
        "twostream/scoring/scores.py",
        "    atomic.remove_temporaries_of(final)  # a killed run's, as it wrote the joined file\n",
        "",
        ("tests/test_fuse_test.py::test_kill_9_at_any_moment_then_the_same_command_finishes_with_the_same_scores",),
        slow=True),
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these mutations only (names as --list prints)")
    parser.add_argument("--list", action="store_true", help="print the mutations and their selections, run nothing")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds allowed to each pytest run; one that runs longer is an error (default: 900)")
    parser.add_argument("--check-clean", action="store_true",
                        help="first run each selection on an unmutated copy: it must pass, or the mutation is an error")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies and print where they are")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------- the copy and the patch

def tracked_files(repo):
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=repo, check=True, capture_output=True).stdout
    return [name for name in listing.decode().split("\0") if name]


def fresh_copy(repo):
    """The tracked files of `repo` in <tmp>/main, with <tmp>/shared linked to the shared folder beside it."""
    root = tempfile.mkdtemp(prefix="mutations-")
    copy = os.path.join(root, "main")
    for name in tracked_files(repo):
        source = os.path.join(repo, name)
        if os.path.isdir(source) or not os.path.lexists(source):  # a submodule, or deleted in the working tree
            continue
        os.makedirs(os.path.dirname(os.path.join(copy, name)), exist_ok=True)
        shutil.copy2(source, os.path.join(copy, name), follow_symlinks=False)
    shared = os.path.realpath(os.path.join(repo, "..", "shared"))
    if os.path.isdir(shared):
        os.symlink(shared, os.path.join(root, "shared"))
    return root, copy


class PatchError(Exception):
    pass


def patched(mutation, folder):
    """The text of the mutation's file under `folder` with the mutation applied."""
    with open(os.path.join(folder, mutation.file), encoding="utf-8") as f:
        text = f.read()
    count = text.count(mutation.old)
    if count != 1:
        raise PatchError(f"patch no longer applies: the text occurs {count} times in {mutation.file}, not once")
    return text.replace(mutation.old, mutation.new)


def apply(mutation, copy):
    text = patched(mutation, copy)
    with open(os.path.join(copy, mutation.file), "w", encoding="utf-8") as f:
        f.write(text)


def applies(mutation):
    """"applies", or why not, for the repository's own file (read only)."""
    try:
        patched(mutation, REPO)
        return "applies"
    except (PatchError, OSError) as error:
        return str(error)


# ---------------------------------------------------------------------------- running pytest

def run_pytest(copy, selection, timeout):
    """-> (exit code, or None after a timeout; pytest's output). The run is its own process group, killed
    whole on a timeout (tests start processes of their own)."""
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *selection]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONDONTWRITEBYTECODE": "1"}
    process = subprocess.Popen(command, cwd=copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
        return process.returncode, output
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return None, output + f"\n(timed out after {timeout:.0f} s)"


def classify(code):
    return {1: "caught", 0: "missed"}.get(code, "error")


def check_clean(mutation, timeout):
    """-> (whether the selection passes on an unmutated copy, seconds, why not)."""
    root, copy = fresh_copy(REPO)
    start = time.perf_counter()
    try:
        code, output = run_pytest(copy, mutation.selection, timeout)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return code == 0, time.perf_counter() - start, "" if code == 0 else f"fails unmutated (exit {code})\n{tail(output)}"


def try_mutation(mutation, timeout, keep):
    """-> (result, seconds, detail): the mutation applied to a fresh copy and its selection run there."""
    root, copy = fresh_copy(REPO)
    start = time.perf_counter()
    try:
        apply(mutation, copy)
        code, output = run_pytest(copy, mutation.selection, timeout)
        result = classify(code)
        detail = "" if result == "caught" else f"exit {code}\n{tail(output)}"
    except PatchError as error:
        result, detail = "error", str(error)
    finally:
        if keep:
            print(f"  kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return result, time.perf_counter() - start, detail


def tail(output, lines=TAIL_LINES):
    return "\n".join("    " + line for line in output.rstrip().splitlines()[-lines:])


# ---------------------------------------------------------------------------- the table

def print_table(rows, headers):
    widths = [max(len(str(row[k])) for row in [headers, *rows]) for k in range(len(headers))]
    for k, row in enumerate([headers, ["-" * w for w in widths], *rows]):
        print(" | ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())


def selection_text(mutation):
    return " ".join(mutation.selection) + (" (slow)" if mutation.slow else "")


def chosen(names):
    if not names:
        return MUTATIONS
    known = {m.name: m for m in MUTATIONS}
    unknown = [name for name in names if name not in known]
    if unknown:
        sys.exit(f"unknown mutation(s): {', '.join(unknown)}; --list names them")
    return [known[name] for name in names]


def run_one(mutation, args):
    """-> (result, seconds, clean): the mutation tried, after its selection passed unmutated if --check-clean."""
    clean = ""
    if args.check_clean:
        passed, seconds, detail = check_clean(mutation, args.timeout)
        clean = f"passed ({seconds:.0f} s)" if passed else "FAILED"
        if not passed:
            print(f"  error: {detail}", flush=True)
            return "error", 0.0, clean
    result, seconds, detail = try_mutation(mutation, args.timeout, args.keep)
    print(f"  {result} in {seconds:.0f} s" + (f": {detail}" if detail else ""), flush=True)
    return result, seconds, clean


def main(argv=None):
    args = parse_args(argv)
    mutations = chosen(args.only)
    if args.list:
        print_table([[m.name, m.file, selection_text(m), applies(m)] for m in mutations],
                    ["name", "file", "selection", "patch"])
        return 0
    rows, results, started = [], [], time.perf_counter()
    for k, mutation in enumerate(mutations, 1):
        print(f"[{k}/{len(mutations)}] {mutation.name} ({mutation.file}): {selection_text(mutation)}", flush=True)
        result, seconds, clean = run_one(mutation, args)
        rows.append([mutation.name, mutation.file, selection_text(mutation), result, f"{seconds:.0f}"]
                    + ([clean] if args.check_clean else []))
        results.append(result)
    print()
    print_table(rows, ["name", "file", "selection", "result", "seconds"] + (["unmutated"] if args.check_clean else []))
    counts = {r: results.count(r) for r in ("caught", "missed", "error")}
    print(f"\n{counts['caught']} caught, {counts['missed']} missed, {counts['error']} errors of {len(results)}")
    print(f"wall time: {time.perf_counter() - started:.0f} s")
    return 0 if counts["caught"] == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
