"""What a test run scores: each stream's model under test (TestedModel), checked against its config.json, its
classInd.txt and its training record before anything is loaded; and the videos of the split's lists, limited to the
classes the models know, their part for --shard K/N, less those whose frames or flow are missing."""
import os
from typing import NamedTuple

from twostream.datasets import frames, ucf101
from twostream.errors import DataError
from twostream.train import checkpoints


class TestedModel(NamedTuple):
    """A stream's model under test: its file, its config.json, and how far its run trained (training_progress)."""
    path: str
    config: dict
    trained: dict


# ---------------------------------------------------------------------------- models

def read_models(args, streams):
    """{stream: TestedModel} and the classes every stream was trained on (they must agree). An unfinished model is
    refused unless --unfinished."""
    found, classes = {}, None
    for stream in streams:
        path = checkpoints.model_path(args.checkpoints, stream, getattr(args, stream))
        config, stream_classes = checkpoints.read(path, stream, args.dataset)
        check_config(path, stream, config, stream_classes, args.dataset)
        trained = training_progress(path)
        check_finished(path, trained, args.unfinished)
        print(f"{stream}: {path}, {checkpoints.progress_text(trained)}")
        if classes is not None and stream_classes != classes:
            raise DataError(f"{path} was trained on other classes than the {streams[0]} stream "
                            f"({len(stream_classes)} vs {len(classes)}, or in another order); "
                            "test models trained on the same classInd.txt")
        found[stream], classes = TestedModel(path, config, trained), stream_classes
    return found, classes


def training_progress(path):
    """{steps_done, steps_planned} of a model's training record, or None without one."""
    record = checkpoints.read_training_record(path)
    return record and {"steps_done": record.steps_done, "steps_planned": record.steps_planned}


def check_finished(path, trained, unfinished_allowed, scores=None):
    """Refuse a model (or the scores of one) whose run had steps left when it was saved, unless --unfinished:
    a preempted job's model must not become a published number by accident."""
    if checkpoints.is_unfinished(trained) and not unfinished_allowed:
        source = f"{scores}: scores of {path}" if scores else path
        raise DataError(f"{source}: trained {trained['steps_done']} of its run's {trained['steps_planned']} steps. "
                        "Finish the run (its training command started again resumes it), or pass --unfinished to "
                        "test it as it is (results.md then says so)")


def check_config(path, stream, config, classes, dataset):
    """A model of the other stream, or one whose config.json and classInd.txt disagree: refused from its
    config.json before anything is loaded."""
    config_path = os.path.join(os.path.dirname(path), checkpoints.CONFIG_FILE)
    if config.get("stream", stream) != stream:
        raise DataError(f"{path}: is a {config['stream']} model ({config_path}), given as the {stream} stream; "
                        f"point --{stream} (or --checkpoints) at a {stream} model")
    own_head = checkpoints.head(config, dataset) == config.get("dataset")
    if own_head and config.get("num_classes", len(classes)) != len(classes):
        raise DataError(f"{config_path}: says {config['num_classes']} classes but the classInd.txt beside it lists "
                        f"{len(classes)}; the folder mixes two runs: retrain, or copy that run's classInd.txt back")


def check_outputs(model, model_file, classes):
    """A model whose softmax has another class count than its classInd.txt: refused before scoring."""
    outputs = model.output_shape[-1]
    if outputs != len(classes):
        raise DataError(f"{model_file}: its softmax has {outputs} classes but the classInd.txt beside it lists "
                        f"{len(classes)}; the folder mixes two runs: retrain, or point --spatial/--temporal at "
                        "the .keras file of that run")


# ---------------------------------------------------------------------------- videos

def load_videos(args, classes, subset):
    """The split's test (or training) list, limited to the classes the models know."""
    listed = ucf101.class_names(args.splits_dir)
    if listed[:len(classes)] != classes:
        raise DataError(f"the models' classInd.txt does not match {os.path.join(args.splits_dir, 'classInd.txt')} "
                        f"(models: {len(classes)} classes starting {classes[:3]}, splits: {listed[:3]}); "
                        "point --splits-dir / --dataset at the split lists the models were trained on")
    if len(classes) < len(listed) and not args.class_limit and subset == "test":
        print(f"the models know the first {len(classes)} of {len(listed)} classes: testing those")
    class_limit = min(args.class_limit or len(classes), len(classes))
    limit = args.max_videos if subset == "test" else None
    videos = ucf101.load_index(args.data_dir, args.splits_dir, args.split, subset, class_limit, limit)
    if not videos:
        raise DataError(f"{args.splits_dir}: the split {args.split} {subset} list has no videos of these classes")
    return videos


def shard_videos(videos, shard, subset):
    """Part K of N of `videos` (--shard K/N), or all of them."""
    if not shard:
        return videos
    part = [v for v in videos if ucf101.shard_of(v.name, shard[1]) == shard[0]]
    print(f"shard {shard[0]}/{shard[1]}: {len(part)} of the {len(videos)} {subset}-list videos")
    return part


def drop_missing(videos, args, streams, subset):
    """Videos without the frames or flow a stream needs: an error listing them, or left out."""
    missing = set()
    for stream in streams:
        missing.update(frames.missing_data(videos, args.data_dir, stream))
    if missing and not args.skip_missing:
        raise frames.missing_data_error([v.name for v in videos if v.name in missing], args.data_dir, streams,
                                        len(videos), f"{subset} ", "pass --skip-missing to leave them out")
    if missing:
        print(f"leaving out {len(missing)} {subset} videos with missing frames or flow (--skip-missing)")
    return [v for v in videos if v.name not in missing], sorted(missing)
