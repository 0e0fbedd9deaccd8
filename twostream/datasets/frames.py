"""A stream's frames on disk: what a sample of a stream reads (Stream: one frame, or a stack of u/v flow frames in the
order u1, v1, ..., uL, vL), the paths of its JPEGs, and which videos lack some (missing_data, and the one error that
names them). The data layout's side of loading: nothing here decodes an image."""
import os
from dataclasses import dataclass

from twostream.datasets import ucf101
from twostream.errors import DataError

STACK_LENGTH = 10  # L, the flow pairs of a temporal sample: the paper's (section 3.1), the default everywhere

# ---------------------------------------------------------------------------- what a stream reads

@dataclass(frozen=True)
class Stream:
    """What a sample of a stream is: one RGB frame, or a stack of `stack_length` flow frames."""
    name: str
    stack_length: int = 10

    def __post_init__(self):
        if self.name not in ucf101.STREAMS:
            raise ValueError(f"unknown stream {self.name!r}; choose from {', '.join(ucf101.STREAMS)}")

    @property
    def is_flow(self):
        return self.name == "temporal"

    @property
    def span(self):
        """Consecutive frames one sample covers."""
        return self.stack_length if self.is_flow else 1

    @property
    def channels(self):
        return 2 * self.stack_length if self.is_flow else 3

    @property
    def data(self):
        """What the stream reads, as prepare_data.py's command that extracts it names it."""
        return "flow" if self.is_flow else "frames"

    @property
    def data_folder(self):
        """The folder under a data directory that holds it."""
        return ucf101.FLOW_DIR if self.is_flow else ucf101.RGB_DIR

    def count(self, video):
        """Frames (spatial) or flow frames (temporal) the video has on disk."""
        return video.flow_count if self.is_flow else video.frames

    def folders(self, data_dir, video):
        if self.is_flow:
            return [ucf101.flow_dir(data_dir, c, video.flow_folder) for c in "uv"]
        return [ucf101.rgb_dir(data_dir, video.name)]

    def paths(self, data_dir, video, start):
        """The JPEGs of the sample at `start`: [frame], or [u1, v1, ..., uL, vL] (a short video loops)."""
        if not self.is_flow:
            return [rgb_path(data_dir, video.name, start)]
        return flow_paths(data_dir, video.flow_folder, stack_indices(start, self.span, video.flow_count))


def as_stream(stream, stack_length=STACK_LENGTH):
    """A Stream, from a Stream or a stream name."""
    return stream if isinstance(stream, Stream) else Stream(stream, stack_length)


def rgb_path(data_dir, name, index):
    return ucf101.frame_path(ucf101.rgb_dir(data_dir, name), index)


def flow_paths(data_dir, name, indices):
    """Paths of u1, v1, ..., uL, vL for the flow frames `indices`."""
    u_dir, v_dir = ucf101.flow_dir(data_dir, "u", name), ucf101.flow_dir(data_dir, "v", name)
    return stack_channels((ucf101.frame_path(u_dir, i), ucf101.frame_path(v_dir, i)) for i in indices)


def stack_channels(pairs):
    """A flow stack's channel order: [(u1, v1), ..., (uL, vL)] -> [u1, v1, ..., uL, vL]."""
    return [plane for pair in pairs for plane in pair]


def u_channels(planes):
    """The u planes of a stack in stack_channels' order (every other one, from the first)."""
    return planes[0::2]


def stack_indices(start, span, num_frames):
    """Frame indices of the stack of `span` frames from `start`, looping a short video."""
    return [(start + k) % num_frames for k in range(span)]


# ---------------------------------------------------------------------------- missing data

def missing_data(videos, data_dir, stream):
    """Names of the videos without a complete set of frames (spatial) or of u and v flow
    (temporal): a count of 0 in the index, or a file of 0 .. count-1 gone since indexing.
    One directory listing per folder (ucf101.frame_numbers)."""
    stream = as_stream(stream)
    return [video.name for video in videos
            if not holds_frames(stream.count(video), stream.folders(data_dir, video))]


def holds_frames(count, folders):
    """Whether every folder holds frames 1 .. count (count > 0), with or without more after them."""
    for folder in folders:
        numbers = [n for n in ucf101.frame_numbers(folder) if n > 0]  # sorted, distinct: 1 .. count come first
        if count == 0 or len(numbers) < count or numbers[count - 1] != count:
            return False
    return count > 0


def missing_data_error(names, data_dir, streams, total=None, what="",
                       leave_out="leave them out (twostream.datasets.frames.missing_data lists them)"):
    """The one error for videos without a complete set of frames or flow (missing_data's `names`, of
    `total` `what` videos): the first ten names and the prepare_data.py commands that extract them.
    `streams`: a stream, a stream name or a list of them; `leave_out`: how to go on without them, or None."""
    streams = [as_stream(s) for s in (streams if isinstance(streams, (list, tuple)) else [streams])]
    count = f"{len(names)} of {total}" if total is not None else str(len(names))
    data = " or ".join(s.data for s in streams)
    listed = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    commands = "; ".join(f"python prepare_data.py {s.data} --out {os.path.join(data_dir, s.data_folder)} ..."
                         for s in streams)
    return DataError(f"{count} {what}videos have no complete {data} under {data_dir}: {listed}. Extract them "
                     f"first ({commands}; `prepare_data.py check` lists what is missing)"
                     + (f", or {leave_out}" if leave_out else ""))


def check_complete(videos, data_dir, stream):
    missing = missing_data(videos, data_dir, stream)
    if missing:
        raise missing_data_error(missing, data_dir, stream)
