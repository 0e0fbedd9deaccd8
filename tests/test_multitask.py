"""Multi-task temporal training (multitask.py, temporal_train.py --multitask) and fine-tuning from
another checkpoint (--init), on two tiny fake datasets with different classes."""
import json
import os

import keras
import numpy as np
import pytest

import fakedata
import generators
import models
import temporal_train
from twostream.datasets import ucf101
from twostream.datasets.frames import Stream
from twostream.train import checkpoints, multitask, training

UCF_CLASSES = ("Alpha", "Beta", "Gamma")
HMDB_CLASSES = ("delta", "epsilon")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    ucf, hmdb = str(root / "ucf"), str(root / "hmdb")
    return {"ucf": (ucf, fakedata.write_dataset(ucf, UCF_CLASSES, groups=(1, 8), clips=2, frames=8, size=(80, 64))),
            "hmdb": (hmdb, fakedata.write_dataset(hmdb, HMDB_CLASSES, groups=(1, 8), clips=2, frames=8, size=(80, 64)))}


def sequences(datasets, batch_size=4):
    made = {}
    for name, dataset in (("synthetic", "ucf"), ("synthetic_hmdb", "hmdb")):
        root, splits = datasets[dataset]
        videos = ucf101.load_index(root, splits, 1, "train")
        made[name] = generators.TrainSequence(videos, root, Stream("temporal", 2), batch_size=batch_size,
                                              image_size=32, steps=3)
    return made


def test_batches_are_half_from_each_dataset_with_the_other_head_masked(datasets):
    train = multitask.MultiTaskSequence(sequences(datasets))
    x, labels, weights = train[1]
    assert x.shape == (8, 32, 32, 4) and len(train) == 3
    ucf, hmdb = multitask.head_name("synthetic"), multitask.head_name("synthetic_hmdb")
    assert set(labels) == set(weights) == {ucf, hmdb}
    np.testing.assert_array_equal(weights[ucf], [2, 2, 2, 2, 0, 0, 0, 0])
    np.testing.assert_array_equal(weights[hmdb], [0, 0, 0, 0, 2, 2, 2, 2])
    assert set(labels[hmdb][4:]) <= {0, 1} and labels[hmdb][:4].tolist() == [0, 0, 0, 0]
    # The first half is the UCF-style sequence's own batch, untouched.
    own_x, own_y = sequences(datasets)["synthetic"][1]
    np.testing.assert_array_equal(x[:4], own_x)
    np.testing.assert_array_equal(labels[ucf][:4], own_y)
    train.epoch = 5
    assert all(s.epoch == 5 for s in train.sequences.values())


def test_the_two_halves_draw_independently_and_a_seed_reproduces_them(datasets):
    train = multitask.MultiTaskSequence(sequences(datasets, batch_size=64))
    ucf, hmdb = train.sequences.values()
    assert ucf.seed == 0 and hmdb.seed != 0  # the first half keeps the run's seed
    for index in range(3):
        (ucf_uniforms, ucf_normals), (hmdb_uniforms, hmdb_normals) = ucf.batch_draws(index), hmdb.batch_draws(index)
        assert not np.isclose(ucf_uniforms, hmdb_uniforms).any() and not np.isclose(ucf_normals, hmdb_normals).any()
    again = multitask.MultiTaskSequence(sequences(datasets, batch_size=64))
    for (x, labels, _), (x_again, labels_again, _) in zip((train[2], train[0]), (again[2], again[0])):
        np.testing.assert_array_equal(x, x_again)
        assert all(np.array_equal(labels[head], labels_again[head]) for head in labels)


def test_each_heads_accuracy_counts_its_own_samples_only():
    """Head a always says class 0, head b class 1; half a's labels are 1, 1, 1, 0 and half b's 1, 0, 0, 0:
    each head is right once in 4 (Keras's plain metrics said 5 in 8 for a, 1 in 8 for b)."""
    inputs = keras.Input((1,))
    heads = {name: keras.layers.Dense(2, activation="softmax", kernel_initializer="zeros",
                                      name=multitask.head_name(name),
                                      bias_initializer=keras.initializers.Constant(bias))(inputs)
             for name, bias in (("a", [5.0, 0.0]), ("b", [0.0, 5.0]))}
    model = keras.Model(inputs, {multitask.head_name(name): head for name, head in heads.items()})
    model.compile(keras.optimizers.SGD(), **multitask.compile_args(["a", "b"]),
                  jit_compile=training.jit_compile(temporal_train.parse_args([]).jit))
    own = {"a": np.array([1, 1, 1, 0]), "b": np.array([1, 0, 0, 0])}
    labels = {multitask.head_name("a"): np.concatenate([own["a"], np.zeros(4, int)]),
              multitask.head_name("b"): np.concatenate([np.zeros(4, int), own["b"]])}
    weights = {multitask.head_name("a"): np.array([2.0] * 4 + [0.0] * 4),
               multitask.head_name("b"): np.array([0.0] * 4 + [2.0] * 4)}  # as MultiTaskSequence gives them
    logs = model.evaluate(np.zeros((8, 1), np.float32), labels, sample_weight=weights, batch_size=8, verbose=0,
                          return_dict=True)
    for name, says in (("a", 0), ("b", 1)):  # the names temporal_train.py monitors (with val_) for best.keras
        hand_count = np.mean(own[name] == says)
        assert logs[f"{multitask.head_name(name)}_accuracy"] == pytest.approx(hand_count) == 0.25


def test_a_heads_masked_loss_is_the_mean_over_its_own_samples():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(3), 8).astype(np.float32)
    y = rng.integers(0, 3, 8)
    weights = np.array([2, 2, 2, 2, 0, 0, 0, 0], np.float32)  # as MultiTaskSequence gives them
    loss = keras.losses.SparseCategoricalCrossentropy()
    masked = float(loss(y, probabilities, sample_weight=weights))
    own_mean = float(np.mean(-np.log(probabilities[np.arange(4), y[:4]])))
    assert masked == pytest.approx(own_mean, rel=1e-5)


@pytest.mark.slow
def test_multitask_run_trains_two_heads_and_testing_picks_each_datasets_head(datasets, tmp_path):
    (ucf, ucf_splits), (hmdb, hmdb_splits) = datasets["ucf"], datasets["hmdb"]
    folder = tmp_path / "multitask"
    temporal_train.main(["--dataset", "synthetic", "--data-dir", ucf, "--splits-dir", ucf_splits,
                         "--multitask", "synthetic_hmdb", "--multitask-data-dir", hmdb,
                         "--multitask-splits-dir", hmdb_splits, "--multitask-videos", "train",
                         "--checkpoint-dir", str(folder), "--image-size", "64", "--stack-length", "2",
                         "--batch-size", "4", "--workers", "1", "--iterations", "4", "--epoch-steps", "2"])
    config = json.loads((folder / "config.json").read_text())
    assert config["multitask"] == {"dataset": "synthetic_hmdb", "videos": "train"}
    saved = keras.saving.load_model(str(folder / "last.keras"))
    assert set(saved.output) == {multitask.head_name("synthetic"), multitask.head_name("synthetic_hmdb")}

    x = np.full((2, 64, 64, 4), 128, np.uint8)
    model, _, classes = checkpoints.load(str(folder / "last.keras"), "temporal")
    assert classes == list(UCF_CLASSES) and model.predict(x, verbose=0).shape == (2, 3)
    model, _, classes = checkpoints.load(str(folder / "last.keras"), "temporal", "synthetic_hmdb")
    assert classes == list(HMDB_CLASSES) and model.predict(x, verbose=0).shape == (2, 2)
    # The heads share the trunk: the HMDB head's output is its own softmax on the same features.
    features = keras.Model(saved.inputs, saved.get_layer("drop7").output).predict(x, verbose=0)
    kernel, bias = saved.get_layer(multitask.head_name("synthetic_hmdb")).get_weights()
    logits = features @ kernel + bias
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(model.predict(x, verbose=0), expected / expected.sum(1, keepdims=True), atol=1e-5)


@pytest.mark.slow
def test_fine_tuning_starts_from_another_checkpoint_but_its_softmax(datasets, tmp_path):
    source = models.temporal_model(5, image_size=64, stack_length=2, dropout=0.5)
    target = models.temporal_model(3, image_size=64, stack_length=2, dropout=0.5)
    copied = models.copy_weights(source, target)
    assert copied == ["conv1", "conv2", "conv3", "conv4", "conv5", "full6", "full7"]
    np.testing.assert_array_equal(source.get_layer("full7").get_weights()[0],
                                  target.get_layer("full7").get_weights()[0])
    assert target.get_layer("predictions").get_weights()[0].shape == (2048, 3)

    (hmdb, hmdb_splits) = datasets["hmdb"]
    init = tmp_path / "ucf" / "last.keras"
    os.makedirs(init.parent)
    source.save(init)
    for name in ("config.json", "classInd.txt"):
        (init.parent / name).write_text('{"image_size": 64, "stack_length": 2}' if name == "config.json" else
                                        "".join(f"{i + 1} C{i}\n" for i in range(5)))
    temporal_train.main(["--dataset", "synthetic_hmdb", "--data-dir", hmdb, "--splits-dir", hmdb_splits,
                         "--init", str(init), "--checkpoint-dir", str(tmp_path / "tuned"), "--image-size", "64",
                         "--stack-length", "2", "--batch-size", "4", "--workers", "1", "--iterations", "1",
                         "--epoch-steps", "1", "--lr-drops", "14000"])
    assert json.loads((tmp_path / "tuned" / "config.json").read_text())["init"] == str(init)
