"""A test run's last step: each stream's video scores (the samples aggregated), their fusions (the average, and
the SVM trained on the training list's scores), and the run's report (report.write_report) written and its table
printed, then the mean over the splits tested so far."""
import os

from twostream.errors import DataError
from twostream.scoring import evaluation, references, report
from twostream.scoring.inputs import check_finished
from twostream.scoring.scores import scores_path


def video_scores(data, args):
    """({row: video scores [V, C]}: each stream, their average, and the SVM on their scores; the SVM's C and
    how it was chosen, or None)."""
    test = data["test"]
    scores = {stream: evaluation.aggregate(d.scores, args.aggregate) for stream, d in test.items()}
    if len(scores) == 2:
        scores["fusion"] = evaluation.fuse([scores["spatial"], scores["temporal"]], args.fusion_weights)
    train, svm = data.get("train", {}), None
    if len(scores) == 3 and train and len(set(next(iter(train.values())).labels)) < 2:
        print("no SVM fusion: the training list's scores hold fewer than two classes")
    elif len(scores) == 3 and train:
        first = next(iter(train.values()))
        svm = evaluation.svm_fit({s: evaluation.aggregate(d.scores, args.aggregate) for s, d in train.items()},
                                 first.labels, groups=evaluation.video_groups(first.videos))
        scores["svm"] = evaluation.svm_scores(svm, {s: scores[s] for s in train})
        print(f"SVM fusion: {report.svm_text(svm.choice_)}")
    if "temporal" in test and test["temporal"].settings.multitask:  # its own row and reference figures
        scores = {("temporal_multitask" if row == "temporal" else row): s for row, s in scores.items()}
    return scores, svm and svm.choice_


def fuse_and_report(data, args, out_dir):
    """Fuse the test scores (video_scores), write the run's report files (report.write_report) and print its
    table; then the mean over the splits tested so far. Scores of an unfinished model are refused unless
    --unfinished, and a table is never written over one with more rows."""
    first = next(iter(data["test"].values()))
    models = {stream: {"model": d.settings.model, "trained": d.settings.trained} for stream, d in data["test"].items()}
    for stream, d in data["test"].items():
        check_finished(models[stream]["model"], models[stream]["trained"], args.unfinished,
                       scores=scores_path(out_dir, stream))
    skipped = sorted(set().union(*(d.settings.skipped or [] for d in data["test"].values())))
    scores, svm_choice = video_scores(data, args)
    keep_fuller_table(out_dir, scores)
    temporal = data["test"]["temporal"].settings.record() if "temporal" in data["test"] else {}
    settings = {**first.settings.record(), "temporal_net": references.temporal_net(temporal) if temporal else None,
                "models": models, "networks": {stream: d.settings.network() for stream, d in data["test"].items()}}
    table = report.write_report(out_dir, first.videos, first.labels, first.classes, scores, settings,
                                args.aggregate, args.fusion_weights, skipped, svm_choice)
    print(table)
    print(f"{len(first.videos)} test videos" + (f", {len(skipped)} skipped for missing frames or flow" if skipped
                                                else "")
          + f"; {report.aggregation_text(args.aggregate)}. Wrote {out_dir}/results.md, per_class.csv, "
            "confusion.png, misclassified.csv, metrics.json")
    report.write_splits_mean(os.path.dirname(os.path.abspath(out_dir)), first.settings.dataset)


def keep_fuller_table(out_dir, scores):
    """Refuse to write a table of fewer rows (streams, fusions) over the one in out_dir: a quick look at one
    stream must not replace a run's full results."""
    saved = os.path.join(out_dir, "metrics.json")
    if not os.path.isfile(saved):
        return
    rows = set(report.read_metrics(saved).get("results", {}))
    lost = sorted(rows - set(scores))
    if lost:
        raise DataError(f"{saved}: its table has the rows {', '.join(sorted(rows))}, this one would lose "
                        f"{', '.join(lost)}. Write it elsewhere (--run-name), or delete results.md and metrics.json "
                        "there first")
