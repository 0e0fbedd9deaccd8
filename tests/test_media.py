"""Flow quantisation, the flow methods on a known translation, batched flow, the flow record, and
image/video I/O."""
import os

import cv2
import keras
import numpy as np
import pytest

from twostream.errors import DataError
from twostream.storage.workers import run_parallel
from twostream.video import media

SHIFT = (3, 2)  # right, down (pixels)
# tvl1_keras's whole flows at 96x72 run on JAX only, the backend the README recommends for it (the whole_tvl1
# mark; CI's JAX stage runs this file)


def textured_pair(width=96, height=72, seed=0):
    """A smooth random texture and the same texture moved SHIFT pixels right and down."""
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    image = cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 1.5), None, 0, 255, cv2.NORM_MINMAX)
    return [image, np.roll(image, (SHIFT[1], SHIFT[0]), axis=(0, 1))]


def test_quantisation_maps_the_clipped_range_onto_0_255():
    flow = np.array([[[0.0, 20.0], [-20.0, 50.0], [-50.0, 10.0]]], np.float32)
    u, v = media.quantize_flow(flow)
    assert u.dtype == np.uint8
    assert u.tolist() == [[128, 0, 0]]  # 0 -> 127.5 rounds to 128; clipped at -20
    assert v.tolist() == [[255, 255, 191]]  # +20 -> 255; 50 clipped; 10 -> 191.25
    values = np.linspace(-20, 20, 401, dtype=np.float32)
    restored = media.dequantize_flow(media.quantize_flow(np.stack([values, -values], -1))[0])
    assert np.abs(restored - values).max() <= 20 / 255 + 1e-4  # half a step of 40/255 (float32)


def four_pairs():
    """Frames a, b, a, b, a: pairs 0 and 2 move by SHIFT, 1 and 3 back (4 pairs of 96x72: the shape
    test_tvl1 compiles)."""
    return (textured_pair() * 3)[:5]


@pytest.mark.parametrize("method", ["dis", "tvl1",
                                    pytest.param("tvl1_keras", marks=[pytest.mark.slow, pytest.mark.whole_tvl1])])
def test_a_known_translation_survives_flow_quantisation_and_jpeg(method, tmp_path):
    quantized = media.compute_flow(four_pairs(), method, pairs=[0, 2, 3, 1])
    assert list(quantized) == [0, 1, 2, 3]
    for pair, sign in ((0, 1), (1, -1)):  # forward, then back
        for component, image, shift in zip("uv", quantized[pair], SHIFT):
            path = str(tmp_path / f"{component}.jpg")
            media.write_image(path, image)
            restored = media.dequantize_flow(media.read_image(path, grayscale=True))
            interior = restored[12:-12, 12:-12]  # np.roll wraps the border: no true flow there
            assert np.median(interior) == pytest.approx(sign * shift, abs=0.2)
            assert np.mean(np.abs(interior - sign * shift)) < 0.5


def test_farneback_sees_the_translation_too():
    quantized = media.compute_flow(textured_pair(), "farneback")
    u = media.dequantize_flow(quantized[0][0])[12:-12, 12:-12]
    assert np.median(u) == pytest.approx(SHIFT[0], abs=0.3)


def test_compute_flow_only_computes_the_requested_pairs():
    frames = textured_pair() * 2
    assert sorted(media.compute_flow(frames, "dis", pairs=[2, 0])) == [0, 2]


@pytest.mark.slow
@pytest.mark.whole_tvl1
def test_tvl1_keras_is_opencvs_tvl1():
    ours, theirs = (media.compute_flow(four_pairs(), method) for method in ("tvl1_keras", "tvl1"))
    for i in range(4):
        for a, b in zip(ours[i], theirs[i]):
            assert np.mean(np.abs(a.astype(int) - b) <= 2) > 0.99


def fake_tvl1(monkeypatch):
    """Replace tvl1.start_flow by a fast fake whose flow at every pixel is (first, second)'s values,
    recording the batch sizes it is called with."""
    from twostream.video import tvl1
    calls = []

    def start_flow(first, second, then=None):
        calls.append(len(first))
        flow = np.stack([first, second], axis=-1).astype(np.float32)
        return then(flow) if then else flow

    monkeypatch.setattr(tvl1, "start_flow", start_flow)
    return calls


def constant_frames(count, size=(8, 6)):
    """RGB frames whose grey value is their index, so a fake flow shows which frames it got."""
    return [np.full((size[1], size[0], 3), i, np.uint8) for i in range(count)]


def test_batched_flow_pads_the_last_batch_and_keeps_pairs_in_order(monkeypatch):
    calls = fake_tvl1(monkeypatch)
    grays = [media.to_gray(f) for f in constant_frames(7)]
    flows = media.estimate_flows(grays[:-1], grays[1:], "tvl1_keras", batch_size=4)
    assert calls == [4, 4]  # 6 pairs: 4, then 2 padded to 4, so one compiled shape
    assert flows[:, 0, 0].tolist() == [[i, i + 1] for i in range(6)]
    quantized = media.compute_flow(constant_frames(7), "tvl1_keras", pairs=[5, 1], batch_size=4)
    assert sorted(quantized) == [1, 5] and calls[2:] == [2]  # a few pairs: one batch of just those
    assert quantized[5][0][0, 0] == media.quantize_flow(np.float32([[[5, 6]]]))[0][0, 0]


@pytest.mark.parametrize("count", [2, 5, 9, 10])
def test_iter_flow_streams_every_consecutive_pair_once(monkeypatch, count):
    calls = fake_tvl1(monkeypatch)
    flows = list(media.iter_flow(iter(constant_frames(count)), "tvl1_keras", batch_size=4))
    assert [f[0, 0].tolist() for f in flows] == [[i, i + 1] for i in range(count - 1)]
    assert set(calls) == {4}
    opencv = list(media.iter_flow(iter(textured_pair() * 2), "dis"))
    assert len(opencv) == 3 and all(f.shape == (72, 96, 2) for f in opencv)


def test_flow_info_round_trips_and_bad_records_name_the_file(tmp_path):
    assert media.read_flow_info(str(tmp_path)) is None
    media.write_flow_info(str(tmp_path / "flow"), media.flow_info("dis", (340, 256)))
    info = media.read_flow_info(str(tmp_path / "flow"))
    assert info["method"] == "dis" and info["frame_size"] == [340, 256] and info["bound"] == media.FLOW_BOUND
    assert info["opencv"] == cv2.__version__
    assert os.listdir(tmp_path / "flow") == [media.FLOW_INFO_FILE]  # no temporary file left
    path = tmp_path / "flow" / media.FLOW_INFO_FILE
    for text in ("{not json", '{"method": "dis"}', "[1, 2]"):
        path.write_text(text)
        with pytest.raises(DataError, match=str(path)):
            media.read_flow_info(str(tmp_path / "flow"))


def test_an_unknown_flow_method_is_refused():
    with pytest.raises(ValueError, match="choose from"):
        media.flow_estimator("lucas-kanade")


def test_images_round_trip_as_rgb_and_unreadable_ones_give_none(tmp_path):
    image = np.zeros((12, 16, 3), np.uint8)
    image[..., 0] = 200  # red: catches a BGR/RGB swap
    media.write_image(str(tmp_path / "a.jpg"), image)
    restored = media.read_image(str(tmp_path / "a.jpg"))
    assert restored.shape == (12, 16, 3)
    assert np.abs(restored.astype(int) - image).max() <= 3
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    assert media.read_image(str(tmp_path / "bad.jpg")) is None
    assert media.read_image(str(tmp_path / "missing.jpg")) is None


def spy_on_simplejpeg(monkeypatch, installed=True):
    """media with simplejpeg (its decode_jpeg recording each call's colorspace) or without it: the list of calls."""
    calls = []
    simplejpeg = pytest.importorskip("simplejpeg") if installed else None
    if installed:
        decode = simplejpeg.decode_jpeg
        monkeypatch.setattr(simplejpeg, "decode_jpeg", lambda data, space: calls.append(space) or decode(data, space))
    monkeypatch.setattr(media, "simplejpeg", simplejpeg)
    return calls


def opencv_decode(path, grayscale):
    return cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR)


@pytest.mark.parametrize("installed", [True, False], ids=["simplejpeg", "opencv"])
def test_decode_image_gives_opencvs_pixels_with_or_without_simplejpeg(tmp_path, monkeypatch, installed):
    """340x256 textured frames as OpenCV writes them (4:2:0 at quality 95; 4:4:4) and a grey plane at the
    flow's quality, each decoded in colour and in grey: OpenCV's pixels (where simplejpeg's fast upsampling
    or DCT would differ); damaged files as OpenCV decodes them, None where it can't."""
    calls = spy_on_simplejpeg(monkeypatch, installed)
    frame = textured_pair(*media.FRAME_SIZE)[0]
    plane = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    writes = {"420.jpg": (frame, []),
              "444.jpg": (frame, [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]),
              "flow.jpg": (plane, [cv2.IMWRITE_JPEG_QUALITY, media.FLOW_JPEG_QUALITY])}
    for name, (image, params) in writes.items():
        assert cv2.imwrite(str(tmp_path / name), image, params)
        for grayscale in (False, True):
            ours = media.decode_image(str(tmp_path / name), grayscale)
            assert ours.dtype == np.uint8 and np.array_equal(ours, opencv_decode(str(tmp_path / name), grayscale))
    assert calls == ["BGR", "GRAY"] * 3 if installed else not calls
    data = (tmp_path / "420.jpg").read_bytes()
    corrupt = bytearray(data)
    corrupt[len(data) // 2::997] = bytes(len(corrupt[len(data) // 2::997]))  # libjpeg warns, OpenCV decodes
    damaged = {"empty": b"", "truncated": data[:len(data) // 2], "headers only": data[:600], "not a jpeg": b"GIF89a",
               "corrupt": bytes(corrupt)}
    for name, content in damaged.items():
        (tmp_path / name).write_bytes(content)
        for grayscale in (False, True):
            ours = media.decode_image(str(tmp_path / name), grayscale)
            if name == "corrupt":
                assert ours is not None and np.array_equal(ours, opencv_decode(str(tmp_path / name), grayscale))
            else:
                assert ours is None, name


def test_exif_orientation_and_huge_frames_are_left_to_opencv(tmp_path, monkeypatch):
    """cv2.imdecode turns a frame by its Exif orientation, which simplejpeg ignores; a damaged header may
    claim 65535 x 65535 pixels, which simplejpeg would fill before it refuses."""
    from PIL import Image
    calls = spy_on_simplejpeg(monkeypatch)
    frame = textured_pair(34, 26)[0]
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned 90 degrees
    turned, plain = str(tmp_path / "exif.jpg"), str(tmp_path / "plain.jpg")
    Image.fromarray(frame[..., ::-1]).save(turned, exif=exif.tobytes())
    assert media.decode_image(turned).shape == (34, 26, 3)
    assert np.array_equal(media.decode_image(turned, True), opencv_decode(turned, True))
    assert not calls
    cv2.imwrite(plain, frame)
    monkeypatch.setattr(media, "SIMPLEJPEG_MAX_PIXELS", 34 * 26 - 1)
    assert np.array_equal(media.decode_image(plain), opencv_decode(plain, False))
    assert not calls


def test_a_header_seen_before_is_not_walked_again_and_gets_the_walks_answer(tmp_path, monkeypatch):
    """A JPEG whose bytes up to its first scan are those of one simplejpeg decoded before (media.CLEAN_HEADERS)
    goes to simplejpeg without the walk; one with another header is walked (an Exif frame: OpenCV); the size limit
    holds for a remembered header too; the memory stays small; a folder that is no file reads as None."""
    from PIL import Image
    calls = spy_on_simplejpeg(monkeypatch)
    monkeypatch.setattr(media, "CLEAN_HEADERS", media.CleanHeaders(size=2))
    first, second, turned = (str(tmp_path / name) for name in ("first.jpg", "second.jpg", "exif.jpg"))
    frames = textured_pair(40, 30)
    for path, frame in zip((first, second), frames):
        cv2.imwrite(path, frame)
    assert media.decode_image(first) is not None and len(media.CLEAN_HEADERS.entries) == 1
    walked = []
    scan_start = media.scan_start
    monkeypatch.setattr(media, "scan_start", lambda data: walked.append(data) or scan_start(data))
    for grayscale in (False, True):
        assert np.array_equal(media.decode_image(second, grayscale), opencv_decode(second, grayscale))
    assert not walked and calls == ["BGR", "BGR", "GRAY"]
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(frames[0][..., ::-1]).save(turned, exif=exif.tobytes())
    assert media.decode_image(turned).shape == (40, 30, 3) and len(walked) == 1 and len(calls) == 3
    monkeypatch.setattr(media, "SIMPLEJPEG_MAX_PIXELS", 40 * 30 - 1)
    assert np.array_equal(media.decode_image(second), opencv_decode(second, False)) and len(calls) == 3
    monkeypatch.setattr(media, "SIMPLEJPEG_MAX_PIXELS", 1 << 24)
    for quality in (50, 60, 70):
        cv2.imwrite(second, frames[1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert np.array_equal(media.decode_image(second), opencv_decode(second, False))
    assert len(media.CLEAN_HEADERS.entries) == 2 and len(calls) == 6
    assert media.decode_image(str(tmp_path)) is None


def test_read_video_resizes_every_frame_and_survives_junk(tmp_path):
    path = str(tmp_path / "v.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"XVID"), 25, (64, 48))
    for frame in textured_pair(64, 48) * 3:
        writer.write(frame)
    writer.release()
    frames = media.read_video(path, size=(32, 24))
    assert len(frames) == 6
    assert all(f.shape == (32, 24)[::-1] + (3,) for f in frames)
    assert len(media.read_video(path, size=None, max_frames=4)) == 4
    assert media.read_video(path, size=None)[0].shape == (48, 64, 3)
    (tmp_path / "junk.avi").write_bytes(np.random.default_rng(0).bytes(3000))
    assert media.read_video(str(tmp_path / "junk.avi")) == []
    assert media.read_video(str(tmp_path / "missing.avi")) == []


@pytest.mark.parametrize("workers, chunksize", [(1, 1), (2, 1), (2, 3)])
def test_run_parallel_returns_every_jobs_result_once(workers, chunksize):
    jobs = list(range(-5, 6))
    assert sorted(run_parallel(abs, jobs, workers, chunksize, disable=True)) == sorted(map(abs, jobs))


def quantisation_edges():
    """Flow values whose scaled grey level lands exactly on a half (where rounding modes differ), one
    float32 step either side of each level's half, the bounds, beyond them and a few ordinary values."""
    halves = ((np.arange(256) + 0.5) * (2 * media.FLOW_BOUND / media.FLOW_LEVELS) - media.FLOW_BOUND).astype(np.float32)
    near = np.concatenate([np.nextafter(halves, np.float32(-np.inf)), halves, np.nextafter(halves, np.float32(np.inf))])
    other = np.float32([0, -0.0, 20, -20, 20.0001, -20.0001, 1e6, -1e6, 3.3, -7.77])
    values = np.concatenate([near, other, np.random.default_rng(1).normal(0, 8, 4000).astype(np.float32)])
    return np.resize(values, (-(-len(values) // 12), 2, 3, 2))  # [B, H, W, 2], the last repeating the first


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_flow_images_on_the_device_equal_quantize_flow_bit_for_bit(compiled):
    from twostream.video import tvl1
    flows = quantisation_edges()
    bound = np.float32(media.FLOW_BOUND)
    scaled = (np.clip(flows, -bound, bound) + bound) * np.float32(media.FLOW_LEVELS / (2 * bound))
    assert np.sum(scaled == np.floor(scaled) + 0.5) > 100  # exact halves: half to even is tested
    quantise = tvl1.compiled(media.flow_images) if compiled else media.flow_images
    ours = keras.ops.convert_to_numpy(quantise(flows))
    assert ours.dtype == np.uint8 and ours.shape == (len(flows), 2, 2, 3)  # [B, u and v, H, W]
    for images, flow in zip(ours, flows):
        assert all(np.array_equal(a, b) for a, b in zip(images, media.quantize_flow(flow)))


def test_video_pairs_are_consecutive_pairs_of_read_video(tmp_path):
    """Grey straight from BGR, decoded by one FFmpeg thread: the frames of to_gray(read_video)."""
    import fakedata
    path = str(tmp_path / "video.avi")
    fakedata.write_video(path, frames=6, size=(64, 48))
    ours = list(media.video_pairs(path, (40, 30)))
    theirs = list(media.consecutive_pairs(media.read_video(path, (40, 30))))
    assert len(ours) == len(theirs) == 5
    for (i, a, b), (j, c, d) in zip(ours, theirs):
        assert i == j and np.array_equal(a, c) and np.array_equal(b, d)
