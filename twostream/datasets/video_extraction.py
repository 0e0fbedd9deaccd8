"""One video's frames or flow, published whole: a Job in, an Outcome out.

Each video is written into temporary folders of this process (atomic.staging: .<video>.<token>.tmp)
and renamed into place when complete (publish_video), with its record written last
(records.write_record). Exactly one process publishes each video: another process's complete copy
is kept unless --overwrite.
"""
import os
from dataclasses import dataclass

from twostream.datasets import records, ucf101
from twostream.errors import DataError
from twostream.storage import atomic
from twostream.video import media


@dataclass(frozen=True)
class Job:
    """One video to extract: its file, the output folder name, and the extraction settings."""
    path: str
    name: str  # the video's stem, or its spelling already on disk
    out: str
    size: tuple
    overwrite: bool
    method: str = ""
    batch: int = media.FLOW_BATCH
    verify: bool = False  # folders with truncated or unreadable JPEGs are not complete (damaged_jpegs)


@dataclass(frozen=True)
class Outcome:
    """What became of a Job: written (maybe from a damaged video), done by another process, or failed."""
    path: str
    error: str = ""  # why it failed
    damage: str = ""  # how the video fell short of its header (its frames are kept)
    done_elsewhere: bool = False  # another process finished it first


def finals(job):
    """The output folders of a job: <out>/<video>, or <out>/u/<video> and <out>/v/<video> for flow."""
    if job.method:
        return [os.path.join(job.out, component, job.name) for component in "uv"]
    return [os.path.join(job.out, job.name)]


def keeps(job, offset):
    """keep_existing for publish_folder: a complete folder stays unless --overwrite."""
    return lambda final: not job.overwrite and records.folder_state(final, job.path, offset, job.verify) != records.REDO


def publish_video(temps, finals, keep_existing):
    """Publish a video's complete folders in order -> True if this process's rename completed the video
    (published its last folder), False if another process's copy was there first and kept. Exactly one
    process completes each video, so the videos each process says it wrote add up to those written."""
    return [atomic.publish_folder(temp, final, keep_existing) for temp, final in zip(temps, finals)][-1]


def extract_frames(job):
    """-> (the video's header frame count, the number of frames it decoded to, whether this process
    published it: publish_video)."""
    header = media.video_frame_count(job.path)
    with atomic.staging(finals(job)) as temps:
        count = 0
        for count, frame in enumerate(media.iter_video(job.path, job.size), 1):
            media.write_image(ucf101.frame_path(temps[0], count - 1), frame)
        if count == 0:
            raise DataError("OpenCV decoded no frames (unreadable or not a video)")
        records.write_record(temps[0], job.path, header, count, count)
        return header, count, publish_video(temps, finals(job), keeps(job, 0))


def extract_flow(job):
    """Flow image i lies between frames i and i+1, computed on the resized frames. -> as extract_frames."""
    header = media.video_frame_count(job.path)
    with atomic.staging(finals(job)) as temps:
        temp_u, temp_v = temps
        pairs = 0
        for pairs, flow in enumerate(media.iter_flow(media.iter_video(job.path, job.size), job.method, job.batch), 1):
            media.write_flow(ucf101.frame_path(temp_u, pairs - 1), ucf101.frame_path(temp_v, pairs - 1), flow)
        if pairs == 0:
            raise DataError("OpenCV decoded fewer than 2 frames (unreadable or not a video)")
        for temp in temps:
            records.write_record(temp, job.path, header, pairs + 1, pairs)
        return header, pairs + 1, publish_video(temps, finals(job), keeps(job, 1))


def attempt(extract_video, job):
    """-> Outcome: one bad video must not stop the others."""
    if done_elsewhere(job):
        return Outcome(job.path, done_elsewhere=True)
    try:
        header, decoded, published = extract_video(job)
    except Exception as error:  # reported in the summary at the end
        return failure(job, error)
    return completed(job, header, decoded, published)


def done_elsewhere(job):
    """True if another process has finished the job's folders since plan()."""
    offset = 1 if job.method else 0
    return not job.overwrite and all(records.folder_state(final, job.path, offset, job.verify) != records.REDO
                                     for final in finals(job))


def failure(job, error):
    return Outcome(job.path, error=f"{type(error).__name__}: {error}")


def completed(job, header, decoded, published=True):
    """The Outcome of a job written whole, damaged if its video decoded short of its header; done
    elsewhere unless this process `published` it (another's rename won the race)."""
    damage = records.shortfall(dict(header_frames=header, decoded_frames=decoded))
    return Outcome(job.path, damage=f"{damage}; its frames are kept in {finals(job)[0]}" if damage else "",
                   done_elsewhere=not published)


def attempt_frames(job):
    return attempt(extract_frames, job)


def attempt_flow(job):
    return attempt(extract_flow, job)
