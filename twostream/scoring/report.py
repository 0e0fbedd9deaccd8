"""The report of a two-stream test run: the results tables (one split, and the mean over splits), results.md,
per_class.csv, misclassified.csv, metrics.json and the plots; written by fuse_test.py (demo.py draws
plot_top_scores). The numbers come from evaluation.py, the published figures beside them from references.py.

Accuracies are fractions (0..1) in the code, and percentages in the tables and the published figures.
"""
import csv
import json
import os

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no GUI backend to choose, no figure to close

from twostream.datasets import ucf101
from twostream.errors import DataError
from twostream.scoring import evaluation, references
from twostream.storage import atomic
from twostream.train import checkpoints

# ---------------------------------------------------------------------------- tables

def percent(fraction):
    """One of our accuracies (a fraction, 0..1) as a percentage with one decimal, "—" when undefined."""
    return "—" if fraction is None or np.isnan(fraction) else f"{100 * fraction:.1f}"


def one_decimal(percentage):
    """A published figure (already a percentage) with one decimal, "—" where there is none."""
    return "—" if percentage is None else f"{percentage:.1f}"


def row_order(results):
    """Our rows in table order; the SVM row is listed as not run when averaging fusion was run without it."""
    unknown = set(results) - set(references.ROW_NAMES)
    if unknown:
        raise ValueError(f"unknown result rows {sorted(unknown)}; expected some of {list(references.ROW_NAMES)}")
    return [row for row in references.ROW_NAMES if row in results or (row == "svm" and "fusion" in results)]


def results_table(results, dataset="ucf101", scope="split1", net=None, run=references.PAPER_RUN):
    """Markdown table in the seed's form (Network | Simonyan et al. 2014 | Seed | Ours top-1 | top-5 | mean class).

    results: {row: metrics dict}, rows from ROW_NAMES. scope: "split1", "mean" (over splits 1-3) or
    None when the published figures do not apply to the run (its figures are then "—"). Our rows come
    first, each beside the figure measured with its settings (row_reference; "—" where there is none); then
    the paper's figures no row of ours is compared with (e.g. bi-directional flow), with "not run" in our
    columns. net: the temporal net (TEMPORAL_NETS) the rows come from; None: "multitask" with a multi-task
    row, else "alone". run: the run's settings (run_settings); default: the paper's.
    """
    net = net or ("multitask" if "temporal_multitask" in results else "alone")
    rows = row_order(results)
    compared = {row: references.row_reference(row, dataset, scope, net, run)[0] or (None, None, None) for row in rows}
    source = references.source_of(run)
    lines = [f"| Network | {source} (top-1) | {references.SEED} (top-1) | Ours top-1 | Ours top-5 | "
             "Ours mean class accuracy |", "|---|:-:|:-:|:-:|:-:|:-:|"]
    for row in rows:
        m = results.get(row)
        ours = (f"{percent(m['top1'])} | {percent(m['top5'])} | {percent(m['mean_class'])}" if m
                else "not run | — | —")
        lines.append(f"| {references.row_name(row, run)} | {one_decimal(compared[row][1])} | "
                     f"{one_decimal(compared[row][2])} | {ours} |")
    for name, paper, seed in (references.published(dataset, scope, source) if scope else []):
        if (name, paper, seed) not in compared.values():
            lines.append(f"| {name} | {one_decimal(paper)} | {one_decimal(seed)} | not run | — | — |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- the mean over splits


def mean_over_splits(results_by_split):
    """{split: {row: metrics}} -> {row: metrics averaged over the splits 1, 2, 3 present}.

    top1, top5 and mean_class are the means over splits (Table 4's "mean accuracy over three splits");
    videos is the total; classes is the common class count; splits lists the splits averaged.
    Splits must have the same rows and the same class count: a mean over different things is no mean.
    """
    if not results_by_split:
        raise DataError("no split's results to average: test at least one of splits 1, 2, 3")
    by_split = {int(split): results for split, results in results_by_split.items()}
    if set(by_split) - set(ucf101.SPLITS):
        raise DataError(f"splits {sorted(set(by_split) - set(ucf101.SPLITS))} are not among 1, 2, 3")
    splits = sorted(by_split)
    first = by_split[splits[0]]
    for split in splits[1:]:
        if set(by_split[split]) != set(first):
            raise DataError(f"split {split} has the rows {sorted(by_split[split])} but split {splits[0]} has "
                                   f"{sorted(first)}: test the same streams on every split")
        if class_counts(by_split[split]) != class_counts(first):
            raise DataError(f"split {split}'s scores rank {class_counts(by_split[split])} classes but split "
                                   f"{splits[0]}'s {class_counts(first)}: "
                                   "test models of the same classes on every split")
    return {row: {"top1": float(np.mean([by_split[s][row]["top1"] for s in splits])),
                  "top5": float(np.mean([by_split[s][row]["top5"] for s in splits])),
                  "mean_class": float(np.mean([by_split[s][row]["mean_class"] for s in splits])),
                  "videos": int(sum(by_split[s][row]["videos"] for s in splits)),
                  "classes": first[row].get("classes"), "splits": splits}
            for row in first}


def class_counts(results):
    """The class counts of one split's rows, sorted (one count when all its rows agree)."""
    return sorted({m.get("classes") for m in results.values()}, key=str)


def mean_missing(mean, dataset, full_runs=True, nets=("alone",), runs=(references.PAPER_RUN,)):
    """Why Table 4 (the mean over all three splits of a whole dataset) does not fit `mean`: [] when it does.
    nets: the temporal net of each split's run, runs: their run_settings (each must be of one kind)."""
    splits, classes = next(iter(mean.values()))["splits"], next(iter(mean.values()))["classes"]
    missing = [s for s in ucf101.SPLITS if s not in splits]
    reasons = [f"split{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} missing"] if missing else []
    if dataset not in references.FULL_CLASSES:
        reasons.append(f"this is {dataset}")
    elif classes != references.FULL_CLASSES[dataset]:
        reasons.append(f"{classes} classes where {dataset} has {references.FULL_CLASSES[dataset]}")
    if not full_runs:
        reasons.append("some split was tested on part of its classes or test videos")
    if len(set(nets)) > 1:
        reasons.append(f"the splits' temporal nets differ ({', '.join(sorted(set(nets)))})")
    differ = sorted(key for key in runs[0] if any(run.get(key) != runs[0][key] for run in runs))
    if differ:
        reasons.append(f"the splits were tested with different settings ({', '.join(differ)})")
    return reasons


def mean_table(results_by_split, dataset="ucf101", full_runs=True, nets=("alone",), runs=(references.PAPER_RUN,)):
    """Markdown: the table of the mean over splits and a note on what it averages.

    It is compared with Table 4 only when all three splits are there, with all of the dataset's
    classes, and full_runs (no split's run was limited to part of its classes or test videos), and the
    same kind of temporal net (nets: each split's, TEMPORAL_NETS) and settings (runs: each split's
    run_settings) on every split; then each row as row_reference says.
    """
    mean = mean_over_splits(results_by_split)
    reasons = mean_missing(mean, dataset, full_runs, nets, runs)
    splits = next(iter(mean.values()))["splits"]
    note = (f"Mean over split{'s' if len(splits) > 1 else ''} {', '.join(map(str, splits))} "
            f"({next(iter(mean.values()))['videos']} test videos in all).")
    if reasons:
        note += (f" {references.PAPER}'s Table 4 is the mean over all three splits of the whole dataset; it does not "
                 f"apply here ({'; '.join(reasons)}), hence \"—\".")
    return results_table(mean, dataset, None if reasons else "mean", nets[0], runs[0]) + "\n" + note + "\n"


def read_metrics(path):
    """A metrics.json written by write_report -> its dict."""
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as error:
        saved = error
    if not isinstance(saved, dict) or not {"results", "settings"} <= set(saved):
        raise DataError(f"{path}: not a metrics.json written by fuse_test.py; "
                               "run that split's fuse_test.py again, or move its folder away")
    return saved


def write_splits_mean(results_dir, dataset):
    """The mean over the splits tested so far, written to <results_dir>/<dataset>_mean/ (results.md,
    metrics.json); returns the markdown, or None (nothing written) with fewer than two splits.

    Reads the default run folders <results_dir>/<dataset>_split{1,2,3}/metrics.json. Rows that not
    every split has (e.g. an SVM run on one split only) are left out of the mean, and said so.
    """
    paths = {split: os.path.join(results_dir, f"{dataset}_split{split}", "metrics.json") for split in ucf101.SPLITS}
    saved = {split: read_metrics(path) for split, path in paths.items() if os.path.isfile(path)}
    common = [row for row in references.ROW_NAMES if all(row in s["results"] for s in saved.values())]
    if len(saved) < 2 or not common:
        return None
    # A full run is one the split-1 figures would fit, whatever its split.
    full_runs = all(not references.references_missing({**s["settings"], "split": 1}) for s in saved.values())
    results_by_split = {split: {row: s["results"][row] for row in common} for split, s in saved.items()}
    nets = [saved_net(s) for s in saved.values()]
    runs = [saved_run(s) for s in saved.values()]
    try:
        mean = mean_over_splits(results_by_split)
        table = mean_table(results_by_split, dataset, full_runs, nets, runs)
    except DataError as error:
        raise DataError(f"{', '.join(paths[s] for s in saved)}: {error}")
    left_out = sorted(set().union(*(s["results"] for s in saved.values())) - set(common))
    lines = [f"# Two-stream results: {dataset}, mean over splits", "", table]
    if left_out:
        names = ", ".join(references.ROW_NAMES.get(r, r) for r in left_out)
        lines += [f"Left out, as not every split has them: {names}.", ""]
    scope = None if mean_missing(mean, dataset, full_runs, nets, runs) else "mean"
    if scope:
        lines += ["Reference figures (top-1, %) and their sources:", ""]
        lines += references.reference_notes(dataset, scope, common, nets[0], runs[0])
    out_dir = os.path.join(results_dir, f"{dataset}_mean")
    os.makedirs(out_dir, exist_ok=True)
    markdown = "\n".join(lines) + "\n"
    atomic.write_text(os.path.join(out_dir, "metrics.json"),
               json.dumps({"results": mean, "references": scope, "runs": [paths[s] for s in saved]}, indent=1))
    atomic.write_text(os.path.join(out_dir, "results.md"), markdown)
    return markdown


def saved_net(saved):
    """The temporal net of a metrics.json's run (TEMPORAL_NETS); files written before it was recorded: from
    its rows."""
    return saved["settings"].get("temporal_net") or ("multitask" if "temporal_multitask" in saved["results"]
                                                     else "alone")


def saved_run(saved):
    """The run_settings of a metrics.json's run."""
    return references.run_settings(saved["settings"], saved.get("aggregate", "mean"), saved.get("fusion_weights"))


# ---------------------------------------------------------------------------- per-class files

def fusion_gains(per_class, classes, count=5):
    """Classes gaining and losing most from fusion -> (gains, losses), each [(class, gain)].

    per_class: {"spatial", "temporal", "fusion": accuracy [C]}. The gain of a class is its fusion
    accuracy minus that of the better stream on that class; classes without test videos are skipped.
    """
    gain = per_class["fusion"] - np.maximum(per_class["spatial"], per_class["temporal"])
    present = [i for i in range(len(classes)) if not np.isnan(gain[i])]
    gains = sorted((i for i in present if gain[i] > 0), key=lambda i: (-gain[i], classes[i]))[:count]
    losses = sorted((i for i in present if gain[i] < 0), key=lambda i: (gain[i], classes[i]))[:count]
    return [(classes[i], float(gain[i])) for i in gains], [(classes[i], float(gain[i])) for i in losses]


def write_per_class_csv(path, classes, labels, per_class):
    """class, test videos, then each stream's accuracy (%) and, with fusion, the gain over the better stream."""
    counts = np.bincount(np.asarray(labels), minlength=len(classes))
    streams = list(per_class)
    header = ["class", "videos"] + [f"{name}_accuracy" for name in streams]
    if "fusion" in per_class and "spatial" in per_class and "temporal" in per_class:
        header.append("fusion_gain_over_better_stream")
    with atomic.replacing(path) as temp, open(temp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i, name in enumerate(classes):
            row = [name, int(counts[i])] + [blank_nan(100 * per_class[s][i]) for s in streams]
            if len(header) > len(streams) + 2:
                better = max(per_class["spatial"][i], per_class["temporal"][i])
                row.append(blank_nan(100 * (per_class["fusion"][i] - better)))
            writer.writerow(row)


def blank_nan(value):
    return "" if np.isnan(value) else f"{value:.1f}"


def misclassified(videos, labels, scores, classes, final):
    """Videos the `final` scores get wrong -> rows [video, true class, predicted, confidence, each stream's prediction].

    scores: {stream name: video scores [V, C]} including `final` (e.g. "fusion").
    """
    predictions = {name: s.argmax(axis=1) for name, s in scores.items()}
    rows = []
    for i, video in enumerate(videos):
        guess = predictions[final][i]
        if guess != labels[i]:
            rows.append([video, classes[labels[i]], classes[guess], f"{scores[final][i, guess]:.3f}"]
                        + [classes[predictions[name][i]] for name in scores if name != final])
    return rows


def write_misclassified_csv(path, videos, labels, scores, classes, final):
    others = [name for name in scores if name != final]
    with atomic.replacing(path) as temp, open(temp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "true_class", f"{final}_prediction", f"{final}_score"]
                        + [f"{name}_prediction" for name in others])
        writer.writerows(misclassified(videos, labels, scores, classes, final))


# ---------------------------------------------------------------------------- plots

def plot_confusion(path, matrix, classes, title):
    """Row-normalised confusion matrix (each true class sums to 1) as a PNG."""
    totals = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, totals, out=np.zeros(matrix.shape, np.float64), where=totals > 0)
    size = min(max(4.0, 0.16 * len(classes) + 2), 24.0)
    fontsize = max(3.0, min(9.0, 400 / max(len(classes), 1)))
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(len(classes)), classes, fontsize=fontsize)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    with atomic.replacing(path) as temp:
        fig.savefig(temp, dpi=150)


def plot_top_scores(path, scores, classes, k=5):
    """Bar charts of the top-k classes of one video, one panel per stream. scores: {name: [C]}."""
    fig = Figure(figsize=(4 * len(scores), 0.5 * k + 1.5))
    axes = fig.subplots(1, len(scores), squeeze=False)
    for ax, (name, stream_scores) in zip(axes[0], scores.items()):
        top = np.argsort(stream_scores)[::-1][:k][::-1]
        ax.barh(range(len(top)), np.asarray(stream_scores)[top], color="tab:blue")
        ax.set_yticks(range(len(top)), [classes[i] for i in top])
        ax.set_xlim(0, 1)
        ax.set_title(name)
        ax.set_xlabel("softmax score")
    fig.tight_layout()
    with atomic.replacing(path) as temp:
        fig.savefig(temp, dpi=120)


# ---------------------------------------------------------------------------- the report

def aggregation_text(method):
    return ("samples aggregated by mean softmax (the paper)" if method == "mean" else
            "samples aggregated by voting (the seed; ties go to the higher mean softmax)")


def final_row(video_scores):
    """The row the confusion matrix and the misclassified list are about: SVM, else averaging, else the stream."""
    return next((row for row in ("svm", "fusion") if row in video_scores), list(video_scores)[-1])


def write_report(out_dir, videos, labels, classes, video_scores, settings, aggregate, fusion_weights, skipped,
                 svm_choice=None):
    """Measure each row of video scores; write results.md, per_class.csv, confusion.png, misclassified.csv
    and metrics.json to out_dir; return the results table (markdown).

    video_scores: {"spatial", "temporal", "fusion", "svm" (each optional): [V, C]}, rows of `videos`.
    settings: how the scores were computed (dataset, split, samples, crops, class_limit, max_videos...);
    the class count is taken from the scores. aggregate: "mean" or "vote"; fusion_weights: the averaging
    weights (spatial, temporal), None for equal; skipped: names of test videos left out for missing
    frames or flow; svm_choice: the SVM's C and how it was chosen (evaluation.svm_fit's choice_). The published
    figures are shown only when references_apply(settings), for the temporal net settings["temporal_net"]
    (TEMPORAL_NETS; default: temporal_net(settings)), each beside the row measured with its settings
    (row_reference: the protocol, aggregate, fusion_weights and settings["networks"]["temporal"]'s stack_length,
    arch and norm). Every file is written atomically.
    """
    labels = np.asarray(labels)
    row_order(video_scores)  # refuses unknown rows
    video_scores = {row: np.asarray(video_scores[row]) for row in references.ROW_NAMES if row in video_scores}
    fusion_weights = (1.0, 1.0) if fusion_weights is None else tuple(fusion_weights)  # evaluation.fuse's default
    for row, scores in video_scores.items():
        if scores.shape != (len(videos), len(classes)) or len(labels) != len(videos):
            raise ValueError(f"{row}: scores of shape {scores.shape} for {len(videos)} videos, {len(labels)} labels "
                             f"and {len(classes)} classes")
    settings = {**settings, "num_classes": len(classes),
                "temporal_net": settings.get("temporal_net") or references.temporal_net(settings)}
    scope = "split1" if references.references_apply(settings) else None
    run = references.run_settings(settings, aggregate, fusion_weights)
    final = final_row(video_scores)
    results = {row: evaluation.metrics(labels, s) for row, s in video_scores.items()}
    per_class = {row: evaluation.per_class_accuracy(labels, s, len(classes)) for row, s in video_scores.items()}
    table = results_table(results, settings.get("dataset"), scope, settings["temporal_net"], run)

    os.makedirs(out_dir, exist_ok=True)
    write_per_class_csv(os.path.join(out_dir, "per_class.csv"), classes, labels, per_class)
    matrix = evaluation.confusion(labels, video_scores[final], len(classes))
    plot_confusion(os.path.join(out_dir, "confusion.png"), matrix,
                   classes, f"{final}: {settings.get('dataset', '')} split {settings.get('split', '')}, "
                            f"top-1 {percent(results[final]['top1'])}%")
    write_misclassified_csv(os.path.join(out_dir, "misclassified.csv"), videos, labels, video_scores, classes, final)
    atomic.write_text(os.path.join(out_dir, "metrics.json"), json.dumps(
        {"results": results, "final": final, "num_classes": len(classes), "references": scope, "aggregate": aggregate,
         "fusion_weights": list(fusion_weights), "svm": svm_choice, "skipped": list(skipped), "settings": settings},
        indent=1))
    atomic.write_text(os.path.join(out_dir, "results.md"), results_markdown(
        table, results, per_class, classes, skipped, settings, run, fusion_weights, svm_choice))
    return table


def results_markdown(table, results, per_class, classes, skipped, settings, run, fusion_weights, svm_choice=None):
    """results.md: the table, how the scores were made (run: run_settings), the figure each row is compared
    with or why none, where the figures come from, and the classes fusion helps and hurts most."""
    dataset = settings.get("dataset", "?")
    crops = "10 crops (4 corners + centre, and their flips)" if settings.get("crops") == "10" else "centre crop"
    lines = [f"# Two-stream results: {dataset}, split {settings.get('split', '?')}", "", table,
             f"Test videos: {next(iter(results.values()))['videos']}"
             + (f" ({len(skipped)} skipped for missing frames or flow, listed below)" if skipped else "") + ". "
             f"{settings.get('samples', '?')} samples per video, {crops}; {aggregation_text(run['aggregate'])}."
             + (f" Temporal net: {run['temporal_network']}, L = {run['stack_length']}." if run["stack_length"]
                else ""), ""]
    if settings.get("models"):
        lines += ["Models: " + "; ".join(f"{stream}: {model['model']}, {checkpoints.progress_text(model['trained'])}"
                                         for stream, model in settings["models"].items()) + ".", ""]
    if "fusion" in results:
        lines += [f"Fusion (averaging): weighted average of the two streams' video scores, spatial : temporal = "
                  f"{fusion_weights[0]:g} : {fusion_weights[1]:g}.", ""]
    if "svm" in results:
        lines += ["Fusion (SVM): a linear multi-class SVM (Crammer and Singer) trained on the training videos' "
                  "scores, each stream's softmax L2-normalised, the streams concatenated and each feature "
                  f"standardised; {svm_text(svm_choice)}.", ""]
    if references.references_apply(settings):
        lines += ["Reference figures (top-1, %) and their sources:", ""]
        net = settings.get("temporal_net", "alone")
        lines += references.reference_notes(dataset, "split1", row_order(results), net, run)
    else:
        lines += [f"The reference figures are for all of UCF-101 or HMDB-51, split 1 (or the mean over its three "
                  f"splits); they do not apply to this run ({'; '.join(references.references_missing(settings))}), "
                  "hence \"—\"."]
    if len(classes) <= 5:
        lines += ["", f"Top-5 is \"—\": with {len(classes)} classes it would be 100% by construction."]
    if {"spatial", "temporal", "fusion"} <= set(per_class):
        gains, losses = fusion_gains(per_class, classes)
        for title, rows in (("Classes gaining most from fusion", gains), ("Classes losing most from fusion", losses)):
            lines += ["", f"## {title}", "", "(averaging fusion's accuracy minus that of the better stream on the "
                                             "class)", ""]
            lines += [f"- {name}: {100 * gain:+.1f}" for name, gain in rows] or ["- none"]
    if skipped:
        lines += ["", "## Skipped videos (missing frames or flow)", ""] + [f"- {name}" for name in skipped]
    return "\n".join(lines) + "\n"


def svm_text(choice):
    """The SVM's C and how it was chosen, for results.md."""
    if not choice:
        return "C unknown"
    accuracy = ", ".join(f"{100 * a:.1f}% at C = {c}" for c, a in choice["accuracy"].items())
    return (f"C = {choice['C']:g} ({choice['how']}"
            + (f"; mean validation accuracy {accuracy}" if accuracy else "") + ")")


def side_by_side(results_dir, pairs):
    """Markdown: temporal top-1 of nets trained alone and multi-task, from the metrics.json of
    fuse_test runs in results_dir. pairs: {row title: (run alone, run multi-task)}."""
    lines = ["| Temporal net tested on | trained alone | multi-task | difference |", "|---|:-:|:-:|:-:|"]
    for title, runs in pairs.items():
        alone, together = (temporal_top1(read_metrics(os.path.join(results_dir, run, "metrics.json"))) for run in runs)
        lines.append(f"| {title} | {percent(alone)} | {percent(together)} | {100 * (together - alone):+.1f} |")
    return "\n".join(lines) + "\n"


def temporal_top1(saved):
    """The temporal row's top-1 in a metrics.json, multi-task or not."""
    results = saved["results"]
    return results["temporal" if "temporal" in results else "temporal_multitask"]["top1"]
