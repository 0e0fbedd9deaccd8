"""Whether a video's frame or flow folder is complete: its extraction record and the JPEGs themselves.

Each frame or flow folder holds a record, written last, of the video's header frame count and of
what was written (write_record); a rerun reads it instead of decoding JPEGs (folder_state). Folders
with no record (the public downloads, older versions) are judged by the video's header.
"""
import json
import os

from twostream.datasets import ucf101
from twostream.video import media

RECORD_FILE = ".extraction.json"
FRAME_COUNT_SLACK = 0.01  # and at least 2 frames: see is_short
COMPLETE, SHORT, REDO = "complete", "short", "redo"


def is_short(header_frames, decoded_frames):
    """True if a video decoded to fewer frames than its container's header says, beyond the slack
    of FRAME_COUNT_SLACK: headers of real AVI files are often off by a frame or two (an index
    counting a frame the decoder drops), and counts FFmpeg estimates from duration x fps by ~1%."""
    return header_frames > 0 and decoded_frames < header_frames - max(2, header_frames * FRAME_COUNT_SLACK)


def shortfall(record):
    """How a damaged video fell short, from a folder's record; "" if it did not (or no record)."""
    if not record or not is_short(record.get("header_frames", 0), record.get("decoded_frames", 0)):
        return ""
    return (f"decoded to {record['decoded_frames']} frames, but its header says {record['header_frames']} "
            "(truncated or damaged?)")


def write_record(folder, video_path, header_frames, decoded_frames, images):
    """The folder's RECORD_FILE, written last: what the container promised and what was written."""
    save_record(folder, dict(video=os.path.basename(video_path), video_bytes=os.path.getsize(video_path),
                             header_frames=header_frames, decoded_frames=decoded_frames, images=images))


def save_record(folder, record):
    """Write a record (write_record's fields) into `folder`."""
    with open(os.path.join(folder, RECORD_FILE), "w") as file:
        json.dump(record, file)


def read_record(folder):
    """A folder's record as a dict; None if it has none (the public downloads, older versions), {}
    if it is unreadable."""
    try:
        with open(os.path.join(folder, RECORD_FILE)) as file:
            record = json.load(file)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def folder_state(folder, video_path, offset, verify=False):
    """-> COMPLETE, SHORT (complete, but the video decoded short: kept until the video file changes,
    so that a rerun does not decode it again for nothing) or REDO (missing, incomplete, damaged).

    A folder is complete when it holds frame000001.jpg .. frameN.jpg with N as its record says or,
    with no record (the public downloads, older versions), N within the slack of is_short of the
    video's header count less `offset` (1 for flow: one image fewer than frames). One directory
    scan and one small read; the video is opened only for folders without a record; `verify`
    also decodes every JPEG (damaged_jpegs, as `check --decode`; grayscale for flow).
    """
    count = whole_count(folder)
    if not count:
        return REDO
    record = read_record(folder)
    if record is None:
        if is_short(media.video_frame_count(video_path) - offset, count):
            return REDO
    elif record.get("images") != count:
        return REDO
    if verify and any(damaged_jpegs(folder, count, True, grayscale=offset == 1)):
        return REDO
    if shortfall(record):
        return SHORT if record.get("video_bytes") == file_size(video_path) else REDO
    return COMPLETE


def whole_count(folder):
    """N if `folder` holds frame000001.jpg .. frameN.jpg with none missing (and maybe dot files, such
    as its record), else 0."""
    return len(ucf101.frame_numbers(folder, whole=True))


def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def damaged_jpegs(folder, count, decode, grayscale):
    """([truncated], [unreadable]) of frame000001.jpg .. frame<count>.jpg of `folder`: truncated
    (media.jpeg_truncated: reads each file's end) or, with `decode`, whole but unreadable (decodes each,
    grayscale for flow). The test of both `check --decode` and `frames`/`flow --verify`."""
    paths = [ucf101.frame_path(folder, i) for i in range(count)]
    truncated = [path for path in paths if media.jpeg_truncated(path)]
    cut = set(truncated)
    unreadable = [path for path in paths if decode and path not in cut and media.decode_image(path, grayscale) is None]
    return truncated, unreadable
