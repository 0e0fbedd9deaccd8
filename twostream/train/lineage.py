"""A run's lineage: the lists it and every net it descends from trained on, and the refusal to test it on
them (fuse_test.py, demo.py).

A head tested on videos it trained on measures memory, not recognition: a multi-task run with
--multitask-videos all trained its second head on that dataset's test list too, and a head trained on
split 1's training list overlaps the test lists of splits 2 and 3. config.json's "trained_on",
{dataset: [list file names]}, records the lists each head trained on, and those of every net it was
fine-tuned from (--init, transitively: what an ancestor learnt, its descendant still holds); for runs
written before it, trained_on reads the same from the run's dataset, split, multitask and init
entries. The videos are compared by name (case aside), read from the lists in the tested dataset's
splits folder.
"""
import os

from twostream.datasets import ucf101
from twostream.errors import DataError, warn
from twostream.train import checkpoints

SECOND_SPLIT = 1  # a multi-task run's second dataset: the lists of its split 1


def second_subsets(videos):
    """The lists of a multi-task run's second dataset (split SECOND_SPLIT) that --multitask-videos
    takes: all (the paper's: the training and the test list) or train (the training list alone)."""
    return ("train", "test") if videos == "all" else ("train",)


def trained_on(config, _seen=()):
    """{dataset: [names of the split lists]} of the videos every head of a run trained on, and every net it
    descends from (its lineage): a model fine-tuned from another (--init) still holds what that one learnt,
    so a test list any ancestor trained on is no test of it. From its config.json: its own dataset's training
    list of its split, for a multi-task run the second dataset's lists (second_subsets), and the same of
    its --init net (init_lineage). Configs written before "trained_on" was recorded give the same."""
    if "trained_on" in config:
        lists = config["trained_on"]
    else:
        train_list, _ = (os.path.basename(path) for path in ucf101.split_files("", config.get("split") or 1))
        lists = {config["dataset"]: [train_list]} if config.get("dataset") else {}
        second = config.get("multitask") or {}
        if second.get("dataset"):
            names = dict(zip(("train", "test"),
                             (os.path.basename(path) for path in ucf101.split_files("", SECOND_SPLIT))))
            lists[second["dataset"]] = [names[subset] for subset in second_subsets(second.get("videos"))]
    return merged_lists(lists, init_lineage(config, _seen))


def init_lineage(config, seen=()):
    """What the --init net of a run (config["init"]) and its own ancestors trained on (trained_on), read from
    the training record inside the .keras file (it travels with the model), else the config.json beside it;
    {} without --init. An --init net that says neither is warned about when its run starts (config.json has no
    "trained_on" yet); once recorded, the lineage is in config.json and a moved ancestor changes nothing."""
    path = config.get("init")
    if not path or os.path.abspath(path) in seen:
        return {}
    record = checkpoints.read_training_record(path) if os.path.isfile(path) else None
    beside = os.path.join(os.path.dirname(path), checkpoints.CONFIG_FILE)
    parent = (record and record.config) or (checkpoints.read_json(beside) if os.path.isfile(beside) else None)
    if parent is None:
        if "trained_on" not in config:
            warn(f"--init {path}: neither its training record ({checkpoints.TRAINING_RECORD}) nor {beside} says what "
                 "it trained on: fuse_test.py and demo.py cannot refuse the videos it learnt")
        return {}
    return trained_on(parent, (*seen, os.path.abspath(path)))


def merged_lists(*lineage):
    """The union of {dataset: [list names]} dicts, each dataset's lists in order of first appearance."""
    merged = {}
    for lists in lineage:
        for dataset, names in lists.items():
            merged.setdefault(dataset, [])
            merged[dataset] += [name for name in names if name not in merged[dataset]]
    return merged


def seen_videos(config, dataset, splits_dir):
    """{video name, lower case: the list file naming it} of the `dataset` videos a run trained on, read from
    the lists in splits_dir; the paths of lists missing there under the key None."""
    classes_path = os.path.join(splits_dir, ucf101.CLASS_FILE)
    seen = {}
    for file in trained_on(config).get(dataset, []):
        path = os.path.join(splits_dir, file)
        if os.path.isfile(path) and os.path.isfile(classes_path):
            seen.update({name.lower(): file for name, _ in ucf101.read_split(path, ucf101.read_classes(classes_path))})
        else:
            seen.setdefault(None, []).append(path)
    return seen


def clean_head_command(config, stream, dataset, split):
    """The training command of a head of `stream` for `dataset` that never saw split `split`'s test list."""
    if dataset == config.get("dataset"):
        return f"python {stream}_train.py --dataset {dataset} --split {split}" + (
            ", with no --init or one from a net that never trained on that list" if config.get("init") else "")
    return (f"python temporal_train.py --dataset {config.get('dataset')} --multitask {dataset} --multitask-videos "
            f"train, tested on --split 1 (its {dataset} head trains on split 1's training list)")


def refuse_seen_test_videos(model_path, config, stream, dataset, split, splits_dir, videos):
    """A DataError when a head trained on some of the `dataset` videos (names) of split `split`'s test list."""
    seen = seen_videos(config, dataset, splits_dir)
    if seen.get(None):
        warn(f"{model_path}: trained on {', '.join(seen[None])}, not found: cannot check that it never saw the "
             "videos it is tested on")
    overlap = [name for name in videos if name.lower() in seen]
    if overlap:
        files = sorted({seen[name.lower()] for name in overlap})
        more = f" and {len(overlap) - 3} more" if len(overlap) > 3 else ""
        raise DataError(f"{model_path}: its {dataset} head trained on {', '.join(files)} ({lineage_text(config)}), "
                        "which hold "
                        f"{len(overlap)} of the {len(videos)} split {split} test videos to score "
                        f"({', '.join(overlap[:3])}{more}): it would be tested on videos it learnt. Test it on a split "
                        f"whose test list it never saw, or train a clean head: "
                        f"{clean_head_command(config, stream, dataset, split)}")


def refuse_seen_video(model_path, config, stream, dataset, splits_dir, video_path):
    """A DataError when the demo's video file is one a head trained on: its name (without folder and
    extension) in a `dataset` list the run trained on, read from splits_dir."""
    name = ucf101.video_name(video_path)
    file = seen_videos(config, dataset, splits_dir).get(name.lower())
    if file:
        raise DataError(f"{video_path}: is {name} of {dataset}'s {file}, which the {stream} model {model_path} "
                        f"trained on ({lineage_text(config)}): its prediction would be of a video it learnt. "
                        "Try a video of the test list of the split it trained on, or a video of your own")


def lineage_text(config):
    """Where a run's trained_on comes from, for the refusals: config.json, and the --init net it descends from."""
    return "config.json" + (f"; it or the net it was fine-tuned from, --init {config['init']}" if config.get("init")
                            else "")
