"""`prepare_data.py flow --flow-method tvl1_keras` through FlowPipeline: batches mix videos, so only the
run's last batch is padded; the flow written equals each video's own; a killed run resumes.

Tiny generated XviD videos; tvl1 at 32x24 (two pyramid levels: a quick compile)."""
import os

import cv2
import numpy as np
import pytest

import fakedata
import prepare_data
from twostream.datasets import records, ucf101
from twostream.storage import atomic, locks
from twostream.video import media

pytestmark = pytest.mark.xdist_group("test_flow_pipeline")  # one worker builds its module fixtures and compiles

FRAME_COUNTS = {"v_Alpha_g01_c01": 6, "v_Alpha_g02_c01": 7, "v_Beta_g01_c01": 9}  # 5 + 6 + 8 = 19 pairs
SIZE = (32, 24)


@pytest.fixture
def short_videos(tmp_path):
    root = tmp_path / "UCF-101"
    for seed, (name, frames) in enumerate(FRAME_COUNTS.items()):
        fakedata.write_video(root / ucf101.parse_name(name)[0] / f"{name}.avi", frames=frames, seed=seed)
    return root


def flow_command(videos, out, batch=4, workers=2):
    return ["flow", "--videos", videos, "--out", out, "--flow-method", "tvl1_keras", "--size", "x".join(map(str, SIZE)),
            "--batch-size", batch, "--workers", workers]


def fake_tvl1(monkeypatch):
    """A fast fake tvl1.start_flow whose flow is the pair's grey values scaled into the flow range (then
    `then`, as the real one does on the device); records each batch it gets as [(first's mean grey,
    second's)] per slot."""
    from twostream.video import tvl1
    batches = []

    def start_flow(first, second, then=None):
        batches.append([(a.mean(), b.mean()) for a, b in zip(first, second)])
        flow = np.stack([first, second], axis=-1).astype(np.float32) / 8 - 16
        return then(flow) if then else flow

    monkeypatch.setattr(tvl1, "start_flow", start_flow)
    return batches


def written_flow(out, name, count):
    return [[media.read_image(ucf101.frame_path(out / c / name, i), grayscale=True) for c in "uv"]
            for i in range(count)]


def test_batches_mix_videos_so_only_the_last_is_padded(short_videos, tmp_path, monkeypatch):
    batches = fake_tvl1(monkeypatch)
    assert prepare_data.main([str(a) for a in flow_command(short_videos, tmp_path / "flow")]) == 0
    pairs = sum(FRAME_COUNTS.values()) - len(FRAME_COUNTS)
    # 19 pairs in 5 batches of 4, one padding slot; per video it was 2 + 2 + 2 batches, 5 slots padded
    assert [len(batch) for batch in batches] == [4] * 5
    slots = [slot for batch in batches for slot in batch]
    assert len(set(slots[:pairs])) == len(slots[:pairs]) and slots[pairs:] == slots[pairs - 1:pairs]
    assert len({tuple(slot) for slot in batches[0]}) == 4  # no batch is padded but the last
    for name, frames in FRAME_COUNTS.items():
        for component in "uv":
            assert records.read_record(tmp_path / "flow" / component / name)["images"] == frames - 1
    left = [name for c in "uv" for name in os.listdir(tmp_path / "flow" / c)
            if name.endswith((atomic.TEMP_SUFFIX, locks.LOCK_SUFFIX))]
    assert left == []  # no temporary folder or lock left


def test_each_pair_goes_to_its_own_video_and_index(short_videos, tmp_path, monkeypatch):
    """The fake's flow shows which frames it got: each flow image must be its own video's pair i."""
    fake_tvl1(monkeypatch)
    assert prepare_data.main([str(a) for a in flow_command(short_videos, tmp_path / "flow", batch=3)]) == 0
    for name, frames in FRAME_COUNTS.items():
        path = short_videos / ucf101.parse_name(name)[0] / f"{name}.avi"
        grays = [media.to_gray(frame) for frame in media.read_video(str(path), SIZE)]
        for i, (u, v) in enumerate(written_flow(tmp_path / "flow", name, frames - 1)):
            expected = media.quantize_flow(np.stack([grays[i], grays[i + 1]], axis=-1) / 8 - 16)
            for ours, theirs in zip((u, v), expected):
                stored = cv2.imdecode(
                    cv2.imencode(".jpg", theirs, [cv2.IMWRITE_JPEG_QUALITY, media.FLOW_JPEG_QUALITY])[1],
                    cv2.IMREAD_GRAYSCALE)
                np.testing.assert_array_equal(ours, stored, err_msg=f"{name} pair {i}")


@pytest.mark.slow
@pytest.mark.whole_tvl1
def test_flow_across_videos_equals_each_videos_own_flow(short_videos, tmp_path, monkeypatch):
    """Real tvl1: the JPEGs the pipeline writes (pairs of three videos mixed in batches of 4) against
    each video's flow computed alone, in its own batches of 4, and written the same way. Every batch,
    the short last one included, runs the one compiled function (one trace of tvl1.tvl1)."""
    from twostream.video import tvl1
    traces = []
    traced = tvl1.tvl1
    monkeypatch.setattr(tvl1, "tvl1", lambda *args: traces.append(1) or traced(*args))
    tvl1.compiled_tvl1.cache_clear()
    assert prepare_data.main([str(a) for a in flow_command(short_videos, tmp_path / "flow")]) == 0
    assert len(traces) == 1
    for name, frames in FRAME_COUNTS.items():
        path = short_videos / ucf101.parse_name(name)[0] / f"{name}.avi"
        alone = media.compute_flow(media.read_video(str(path), SIZE), "tvl1_keras", batch_size=4)
        for i, images in enumerate(written_flow(tmp_path / "flow", name, frames - 1)):
            for component, ours, theirs in zip("uv", images, alone[i]):
                reference = tmp_path / f"{name}_{component}_{i}.jpg"
                media.write_image(str(reference), theirs, media.FLOW_JPEG_QUALITY)
                with open(ucf101.frame_path(tmp_path / "flow" / component / name, i), "rb") as file:
                    same_bytes = file.read() == reference.read_bytes()
                decoded = media.read_image(str(reference), grayscale=True).astype(int)
                assert same_bytes or np.abs(ours.astype(int) - decoded).max() <= 1, (name, component, i)
