"""TSN's segment consensus (--segments) and recipe (--recipe tsn): the draws, the model, the flags.

The data are fakedata's: frame j of a video has R = j, so a test can read which frame a snippet came from,
and B = a left-to-right ramp, so it can tell a mirrored snippet and its window.
"""
import keras
import numpy as np
import pytest
from keras import layers

import fakedata
import generators
import spatial_train
import temporal_train
from twostream.datasets import ucf101
from twostream.loading.sampling import sample_starts, segment_starts
from twostream.networks import custom_layers
from twostream.protocol import flags, presets
from twostream.train import checkpoints

SIZE, FRAMES, K = 32, 12, 3


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("consensus")
    splits = fakedata.write_dataset(str(root), groups=(8, 9), frames=FRAMES)
    return str(root), ucf101.load_index(str(root), splits, 1, "train")


def snippet_network(classes=5):
    inputs = keras.Input((8, 8, 3), dtype="uint8")
    hidden = layers.Dense(7, activation="relu")(layers.Flatten()(layers.Rescaling(1 / 255)(inputs)))
    outputs = layers.Dense(classes, activation="softmax", dtype="float32", name="predictions")(hidden)
    return keras.Model(inputs, outputs, name="spatial")


def logits(network, x):
    """The network's logits, from its last hidden layer and its softmax layer's weights."""
    hidden = keras.Model(network.input, network.get_layer("predictions").input)(x)
    kernel, bias = network.get_layer("predictions").get_weights()
    return np.asarray(hidden) @ kernel + bias


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------------------- the model

def test_consensus_is_the_softmax_of_the_mean_of_the_snippets_logits():
    network = snippet_network()
    rng = np.random.default_rng(0)  # the same weights on every backend: logits a few units apart
    network.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in network.get_weights()])
    x = rng.integers(0, 256, (4, K, 8, 8, 3), np.uint8)
    consensus = custom_layers.with_segment_consensus(network, K)
    z = logits(network, x.reshape(-1, 8, 8, 3)).reshape(4, K, -1)
    expected = softmax(z.mean(axis=1))
    np.testing.assert_allclose(np.asarray(consensus(x)), expected, rtol=1e-4, atol=1e-6)
    # The mean of the probabilities, the other way to average, is not what TSN trains.
    assert np.abs(softmax(z).mean(axis=1) - expected).max() > 0.01


def test_one_segment_is_the_network_itself_and_checkpoints_keep_the_shared_network():
    network = snippet_network()
    assert custom_layers.with_segment_consensus(network, 1) is network
    consensus = custom_layers.with_segment_consensus(network, K)
    assert custom_layers.snippet_network(consensus) is network
    saved = checkpoints.network(consensus)  # what best.keras, last.keras and phase1.keras hold
    assert saved.input_shape == (None, 8, 8, 3)
    x = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3), np.uint8)
    np.testing.assert_array_equal(np.asarray(saved(x)), np.asarray(network(x)))


def test_a_consensus_model_trains_the_shared_network(tmp_path):
    network = snippet_network()
    consensus = custom_layers.with_segment_consensus(network, K)
    consensus.compile("sgd", "sparse_categorical_crossentropy")
    before = [w.copy() for w in network.get_weights()]
    x = np.random.default_rng(2).integers(0, 256, (8, K, 8, 8, 3), np.uint8)
    consensus.fit(x, np.arange(8) % 5, epochs=1, verbose=0)
    assert all(not np.array_equal(a, b) for a, b in zip(before, network.get_weights()))


# ---------------------------------------------------------------------------- the draws

@pytest.mark.parametrize("frames", [1, 2, 3, 7, 12, 100])
@pytest.mark.parametrize("segments", [1, 3, 5])
def test_each_segment_gives_one_start_inside_its_own_part(frames, segments):
    rng = np.random.default_rng(frames * 10 + segments)
    span = 4
    room = max(frames - span + 1, 1)
    seen = set()
    for _ in range(2000):
        starts = segment_starts(rng, frames, segments, span)
        assert len(starts) == segments
        for k, start in enumerate(starts):
            first, last = k * room // segments, (k + 1) * room // segments
            assert first <= start < max(last, first + 1) and start < room
        seen.update(enumerate(starts))
    # Every start of every part is drawn (uniformly inside its part, not only its first).
    expected = {(k, s) for k in range(segments)
                for s in range(k * room // segments, max((k + 1) * room // segments, k * room // segments + 1))}
    assert seen == expected


def test_one_segment_draws_the_starts_of_a_single_sample():
    for seed in range(50):
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        assert segment_starts(a, 37, 1, 10) == [int(b.integers(28))]


def test_a_training_sample_is_one_snippet_from_each_segment_with_one_window_and_flip(videos):
    root, train = videos
    sequence = generators.TrainSequence(train, root, "spatial", batch_size=8, image_size=SIZE, steps=4, lighting=0,
                                        segments=K)
    flips = set()
    for index in range(len(sequence)):
        x, y = sequence[index]
        assert x.shape == (8, K, SIZE, SIZE, 3) and x.dtype == np.uint8
        for sample, label in zip(x, y):
            frame = [int(np.median(snippet[..., 0])) for snippet in sample]  # R = the frame's index
            for k, j in enumerate(frame):
                assert k * FRAMES // K <= j < (k + 1) * FRAMES // K, (frame, k)
            assert all(abs(int(np.median(s[..., 1])) - 10 * label) <= 2 for s in sample)  # G = 10 x its label
            # The same window and flip for every snippet: the same columns of the ramp (~4 apart from one column to
            # the next, so another window differs by ~4 a column on average; JPEG's rounding by up to 2).
            columns = sample[..., 2].mean(axis=1)
            assert np.abs(columns - columns[0]).mean(axis=1).max() < 1.5
            flips.add(bool(columns[0, 0] > columns[0, -1]))
    assert flips == {True, False}


def test_validation_takes_each_segments_centre(videos):
    root, train = videos
    x, y = generators.validation_data(train[:2], root, "spatial", image_size=SIZE, segments=K)
    assert x.shape == (2, K, SIZE, SIZE, 3) and list(y) == [v.label for v in train[:2]]
    assert [int(np.median(s[..., 0])) for s in x[0]] == sample_starts(FRAMES, K)
    single, _ = generators.validation_data(train[:2], root, "spatial", image_size=SIZE)
    assert single.shape == (2, SIZE, SIZE, 3)


def test_a_flow_sample_holds_k_stacks(videos):
    root, train = videos
    sequence = generators.TrainSequence(train, root, "temporal", batch_size=4, image_size=SIZE, stack_length=2,
                                        steps=1, segments=K)
    assert sequence[0][0].shape == (4, K, SIZE, SIZE, 4)


# ---------------------------------------------------------------------------- the recipe

def test_the_paper_is_the_default_recipe():
    for script in (spatial_train, temporal_train):
        args = script.parse_args([])
        assert args.recipe == "paper" and args.segments == 1 and not args.partial_bn and args.crop == "random"
    assert temporal_train.parse_args([]).stack_length == 10


def test_recipe_tsn_sets_tsns_settings_and_every_flag_given_still_wins():
    spatial = spatial_train.parse_args(["--recipe", "tsn"])
    assert (spatial.segments, spatial.crop, spatial.dropout, spatial.partial_bn, spatial.phase2_layers) == \
        (3, "multiscale", 0.8, True, "all")
    assert (spatial.phase2_lr, spatial.phase2_lr_drops, spatial.phase2_iterations) == (1e-3, [2000, 4000], 4500)
    temporal = temporal_train.parse_args(["--recipe", "tsn"])
    assert (temporal.segments, temporal.arch, temporal.weights, temporal.stack_length, temporal.dropout,
            temporal.partial_bn, temporal.lr, temporal.lr_drops, temporal.iterations) == \
        (3, "inception_v3", "imagenet", 5, 0.7, True, 5e-3, [12000, 18000], 20000)
    given = temporal_train.parse_args(["--recipe", "tsn", "--segments", "1", "--no-partial-bn", "--stack-length",
                                       "10", "--iterations", "7"])
    assert (given.segments, given.partial_bn, given.stack_length, given.iterations) == (1, False, 10, 7)
    assert given.arch == "inception_v3"  # the flags not given stay TSN's
    import fuse_test
    assert fuse_test.parse_args(["--recipe", "tsn"]).fusion_weights == [1.0, 1.5]
    assert fuse_test.parse_args(["--recipe", "tsn", "--fusion-weights", "1", "2"]).fusion_weights == [1.0, 2.0]


def test_recipe_tsn_on_a_mini_dataset_keeps_its_schedule_and_needs_no_imagenet_weights():
    temporal = temporal_train.parse_args(["--dataset", "synthetic", "--recipe", "tsn"])
    mini = presets.values("synthetic", "temporal")
    assert (temporal.iterations, temporal.lr, temporal.weights, temporal.partial_bn) == \
        (mini["iterations"], mini["lr"], "none", False)
    assert temporal.segments == 3 and temporal.stack_length == 5


def test_segments_and_multitask_are_refused_together(capsys):
    with pytest.raises(SystemExit) as stop:
        temporal_train.parse_args(["--segments", "3", "--multitask", "hmdb51"])
    assert stop.value.code == 2 and "--segments" in capsys.readouterr().err


def test_every_recipe_setting_is_a_flag_of_its_script():
    parsers = {"spatial": spatial_train.parse_args([]), "temporal": temporal_train.parse_args([])}
    import fuse_test
    parsers["test"] = fuse_test.parse_args([])
    for script, settings in presets.TSN.items():
        assert set(settings) <= set(vars(parsers[script])), script
    for script, settings in presets.TSN_SCHEDULES.items():
        assert set(settings) <= set(vars(parsers[script])), script
    assert "--recipe" in flags.TRAINING_FLAGS and "--segments" in flags.TRAINING_FLAGS


# ---------------------------------------------------------------------------- both streams, then fused

@pytest.mark.slow
def test_recipe_tsn_trains_both_streams_resumes_and_fuses(tmp_path, tiny_nets):
    import json

    import fuse_test
    from twostream import errors
    root = str(tmp_path / "data")
    splits = fakedata.write_dataset(root, groups=(1, 8), clips=2, frames=FRAMES, size=(80, 64))
    common = ["--dataset", "synthetic", "--data-dir", root, "--splits-dir", splits, "--recipe", "tsn",
              "--image-size", "75", "--batch-size", "4", "--epoch-steps", "2", "--workers", "1"]
    spatial = ["--checkpoint-dir", str(tmp_path / "ck" / "spatial"), "--no-partial-bn",  # the tiny net has no BN
               "--phase1-iterations", "2", "--phase2-iterations", "2"]
    spatial_train.main(common + spatial)
    temporal = ["--checkpoint-dir", str(tmp_path / "ck" / "temporal"), "--iterations", "4"]
    temporal_train.main(common + temporal)
    for stream, channels in (("spatial", 3), ("temporal", 10)):  # L = 5: 10 flow channels
        folder = tmp_path / "ck" / stream
        with open(folder / "config.json") as f:
            config = json.load(f)
        assert (config["segments"], config["recipe"], config["crop"]) == (3, "tsn", "multiscale")
        # What testing loads is the network of one snippet, trained all its steps.
        assert custom_layers.load_model(str(folder / "last.keras")).input_shape == (None, 75, 75, channels)
        record = checkpoints.read_training_record(folder / "last.keras")
        assert record.steps_done == record.steps_planned
    with pytest.raises(errors.DataError, match="different segments"):  # a resumed run keeps its segments
        temporal_train.main(common + temporal + ["--segments", "2"])

    assert errors.run(fuse_test.main, ["--dataset", "synthetic", "--data-dir", root, "--splits-dir", splits,
                                       "--checkpoints", str(tmp_path / "ck"), "--results-dir", str(tmp_path / "r"),
                                       "--run-name", "tsn", "--recipe", "tsn", "--no-svm", "--workers", "1"]) == 0
    with open(tmp_path / "r" / "tsn" / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["fusion_weights"] == [1.0, 1.5] and "fusion" in metrics["results"]
