"""Flow of many videos through one device, batches mixing videos (--flow-method tvl1_keras).

tvl1_keras computes --batch-size pairs per device call. One process keeps the device busy (more would
each compile and compete for its memory); threads around it decode videos and encode JPEGs
(OpenCV releases the GIL in both), so that while the device computes batch k, batch k + 1 is
decoded and batch k - 1 written. Batches mix videos: a video's pairs follow the previous video's
in the same batch, so only the run's last batch is short.
"""
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tqdm import tqdm

from twostream.datasets import records, ucf101
from twostream.datasets.video_extraction import (
    Job,
    Outcome,
    completed,
    done_elsewhere,
    failure,
    finals,
    keeps,
    publish_video,
)
from twostream.errors import DataError
from twostream.storage import atomic
from twostream.video import media


@dataclass(eq=False)
class VideoFlow:
    """A video whose flow is in progress: its temporary u and v folders and how far it has got."""
    job: Job
    temps: list = field(default_factory=list)
    header: int = 0  # frames its header promises
    pairs: int = -1  # pairs it decoded to, once decoding has ended
    written: int = 0  # pairs written to temps
    ended: bool = False  # published, failed or done elsewhere: nothing more to do


class FlowPipeline:
    """Flow for many videos through one device: up to DECODE_THREADS decoding threads feed one stream
    of (video, pair) jobs cut into fixed batches (media.stream_flows), `workers` threads write each
    batch's JPEGs into its videos' temporary folders, and a video is published (records written,
    renamed into place) as soon as all its pairs are written. Grey uint8 frames go to the device and
    uint8 flow images (media.flow_images, quantised there) come back: a quarter of float32's bytes
    each way, and no quantisation on the host. Memory holds a few batches: the
    decoders block on a bounded queue, the device takes one batch while it computes another, and
    the writers take at most WRITE_BACKLOG batches."""
    WRITE_BACKLOG = 2  # batches computed but not yet written
    WRITE_CHUNK = 8  # pairs per writing task: a batch is written by several threads
    # With one decoding thread (one FFmpeg thread) and one writer the pipeline ran 800-970 pairs/s at
    # 340x256 on 2 shared cores (330 at load 5), about 2.5x the H200's kernel; more decoders add CPU
    # time and videos in flight, not speed (benchmarks/bench_flow_pipeline.py --host-cpu). Writers
    # stay at `workers`: on a network file system they mostly wait.
    DECODE_THREADS = 4

    def __init__(self, jobs, workers, progress):
        self.videos = [VideoFlow(job) for job in jobs]
        self.workers = max(1, workers)
        self.batch = jobs[0].batch if jobs else media.FLOW_BATCH
        self.pairs = queue.Queue(2 * self.batch)  # (video, index, first, second), or (video, None, ...) at its end
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.outcomes, self.progress = [], progress
        self.backlog = threading.BoundedSemaphore(self.WRITE_BACKLOG * -(-self.batch // self.WRITE_CHUNK))
        self.computed = 0  # pairs

    def run(self):
        """-> [Outcome] of every job."""
        with media.opencv_threads(1):  # our threads run OpenCV side by side
            return self.run_threads()

    def run_threads(self):
        decoders = ThreadPoolExecutor(min(self.workers, self.DECODE_THREADS), thread_name_prefix="decode")
        writers = ThreadPoolExecutor(self.workers, thread_name_prefix="write")
        try:
            for video in self.videos:
                decoders.submit(self.decode, video)
            for keys, images in media.stream_flows(self.stream(), self.batch, then=media.flow_images):
                self.computed += len(keys)
                for start in range(0, len(keys), self.WRITE_CHUNK):
                    self.backlog.acquire()
                    task = writers.submit(self.write, keys[start:start + self.WRITE_CHUNK],
                                          images[start:start + self.WRITE_CHUNK])
                    task.add_done_callback(lambda _: self.backlog.release())
            writers.shutdown()
        finally:
            self.stop.set()  # on an error or Ctrl-C: the threads stop at their next frame or pair
            decoders.shutdown(cancel_futures=True)
            writers.shutdown(cancel_futures=True)
            for video in self.videos:
                atomic.remove_folders(video.temps)  # published folders are renamed away: these are unfinished
        for video in self.videos:
            if not video.ended:  # a bug, not the video's fault: say so rather than lose it silently
                self.end(video, Outcome(video.job.path, error="left unfinished; run again"))
        return self.outcomes

    def stream(self):
        """(key, first, second) of every pair of every video, as the decoders deliver them."""
        decoding = len(self.videos)
        while decoding:
            video, index, first, second = self.pairs.get()
            if index is None:
                decoding -= 1
            else:
                yield (video, index), first, second

    def decode(self, video):
        """Decode a video into the pair queue, then mark its end there."""
        try:
            if done_elsewhere(video.job):
                self.end(video, Outcome(video.job.path, done_elsewhere=True))
                return
            video.header = media.video_frame_count(video.job.path)
            video.temps = atomic.fresh_folders(finals(video.job))
            count = 0
            for index, first, second in media.video_pairs(video.job.path, video.job.size):
                if not self.put((video, index, first, second)):
                    return
                count = index + 1
            if not count:
                raise DataError("OpenCV decoded fewer than 2 frames (unreadable or not a video)")
            self.advance(video, pairs=count)
        except Exception as error:  # reported in the summary at the end
            self.end(video, failure(video.job, error))
        finally:
            self.put((video, None, None, None))

    def put(self, item):
        """Queue an item, waiting for room unless the run stops -> False if it stopped."""
        while not self.stop.is_set():
            try:
                self.pairs.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def write(self, keys, images):
        """Write the u and v JPEGs of these pairs (media.flow_images) into their videos' temporary folders."""
        for (video, index), pair_images in zip(keys, images):
            if video.ended or self.stop.is_set():
                continue
            try:
                media.write_flow_images(*(ucf101.frame_path(temp, index) for temp in video.temps), pair_images)
            except Exception as error:
                self.end(video, failure(video.job, error))
            else:
                self.advance(video, written=1)

    def advance(self, video, written=0, pairs=None):
        """Count written pairs, or record the pair count once decoding ends; publish when complete."""
        with self.lock:
            video.written += written
            video.pairs = video.pairs if pairs is None else pairs
            complete = video.written == video.pairs and not video.ended
            video.ended |= complete  # this thread publishes it
        if complete:
            try:
                published = self.publish(video)
            except Exception as error:
                self.record(video, failure(video.job, error))
            else:
                self.record(video, completed(video.job, video.header, video.pairs + 1, published))

    def publish(self, video):
        """-> whether this process published the video (publish_video)."""
        job = video.job
        for temp in video.temps:
            records.write_record(temp, job.path, video.header, video.pairs + 1, video.pairs)
        published = publish_video(video.temps, finals(job), keeps(job, 1))
        atomic.remove_folders(video.temps)
        return published

    def end(self, video, outcome):
        """End a video before it is complete (failed, or done elsewhere), unless it has ended."""
        with self.lock:
            if video.ended:
                return
            video.ended = True
        self.record(video, outcome)

    def record(self, video, outcome):
        with self.lock:
            self.outcomes.append(outcome)
            self.progress.update()
        if outcome.error:
            atomic.remove_folders(video.temps)


def extract_flow_batched(jobs, workers, desc):
    """[Outcome] of every job, through FlowPipeline, with a progress bar and the pair rate."""
    started = time.monotonic()
    with tqdm(total=len(jobs), desc=desc, unit="video") as progress:
        pipeline = FlowPipeline(jobs, workers, progress)
        outcomes = pipeline.run()
    seconds = time.monotonic() - started
    if pipeline.computed:
        print(f"flow: {pipeline.computed:,} frame pairs in {seconds:.0f} s: {pipeline.computed / seconds:.1f} "
              f"pairs/s in batches of {pipeline.batch} (the first batch compiles)")
    return outcomes
