"""`prepare_data.py check`: whether everything a split's videos need is on disk, frames and flow,
whole and consistent, without reading a video (check_video's list of problems)."""
import os
from dataclasses import dataclass

from twostream.datasets import records, ucf101
from twostream.errors import DataError
from twostream.storage.workers import run_parallel


@dataclass(frozen=True)
class CheckJob:
    name: str
    rgb: str
    u: str
    v: str
    decode: bool


def check(data_dir, splits_dir, split, decode, workers):
    """Check every video of a split's lists (check_video) in `workers` processes -> exit code."""
    if not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: no such folder. Point --data-dir at the folder holding "
                        f"{ucf101.RGB_DIR}/ and {ucf101.FLOW_DIR}/")
    videos = [video for subset in ("train", "test") for video in ucf101.load_index(data_dir, splits_dir, split, subset)]
    u_names, v_names = (ucf101.folder_names(os.path.join(data_dir, ucf101.FLOW_DIR, c)) for c in "uv")
    jobs = [CheckJob(video.name, ucf101.rgb_dir(data_dir, video.name),
                     ucf101.flow_dir(data_dir, "u", u_names.get(video.name.lower(), video.name)),
                     ucf101.flow_dir(data_dir, "v", v_names.get(video.name.lower(), video.name)),
                     decode) for video in videos]
    results = sorted(run_parallel(check_video, jobs, workers, desc="check", unit="video"))
    bad = [(name, problems) for name, problems in results if problems]
    for name, problems in bad:
        print(f"{name}: {'; '.join(problems)}")
    print(f"check: split {split}: {len(jobs) - len(bad)} of {len(jobs)} videos (train + test) complete"
          f"{'' if bad else ', all frames and flow present'}"
          f"{'' if decode else ' (JPEGs tested for truncation only; --decode decodes every one, slow)'}")
    if bad:
        print("check: `prepare_data.py frames` and `flow` run again (same --videos and --out) redo missing and "
              "incomplete folders; add --verify to redo those with truncated or unreadable JPEGs (it decodes "
              "every JPEG, as --decode)")
    return 1 if bad else 0


def check_video(job):
    """-> (video name, [problems]): frames present and numbered 1..n, as many as extraction recorded,
    none truncated (or, with decode, unreadable); u and v counts = frames - 1; the video not short
    of its header's frame count."""
    counts, problems, damage = {}, [], set()
    for kind, folder in (("RGB", job.rgb), ("flow u", job.u), ("flow v", job.v)):
        numbers = ucf101.frame_numbers(folder)
        counts[kind] = len(numbers)
        if not numbers:
            problems.append(f"{kind}: no frames in {folder}")
        elif numbers != list(range(1, len(numbers) + 1)):
            gap = min(set(range(1, len(numbers) + 1)) - set(numbers))
            problems.append(f"{kind}: {ucf101.FRAME_NAME.format(gap)} missing in {folder} ({len(numbers)} files)")
        else:
            record = records.read_record(folder)
            if record is not None and record.get("images") != len(numbers):
                problems.append(f"{kind}: {len(numbers)} images in {folder}, but extraction wrote "
                                f"{record.get('images', 'an unreadable record of')} ({records.RECORD_FILE})")
            damage.add(records.shortfall(record))
            problems += bad_jpegs(kind, folder, len(numbers), job.decode)
    if counts["flow u"] != counts["flow v"]:
        problems.append(f"{counts['flow u']} u but {counts['flow v']} v flow frames")
    elif counts["RGB"] and counts["flow u"] and counts["flow u"] != counts["RGB"] - 1:
        problems.append(f"{counts['flow u']} flow frames for {counts['RGB']} RGB frames "
                        f"(expected {counts['RGB'] - 1})")
    problems += [f"the video {text}" for text in sorted(damage - {""})]
    return job.name, problems


def bad_jpegs(kind, folder, count, decode):
    """Problems with the JPEGs themselves (damaged_jpegs)."""
    truncated, unreadable = records.damaged_jpegs(folder, count, decode, grayscale=kind != "RGB")
    problems = [f"{kind}: {len(truncated)} truncated JPEGs, e.g. {truncated[0]}"] if truncated else []
    problems += [f"{kind}: {len(unreadable)} unreadable JPEGs, e.g. {unreadable[0]}"] if unreadable else []
    return problems
