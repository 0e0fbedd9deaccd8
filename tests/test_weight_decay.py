"""Caffe's weight decay (optimizers.py, training.sgd): the update checked against the hand-computed
one, step by step, on its own and through fit (gradient accumulation, loss scaling, tf.distribute),
saved and loaded, and which variables of the project's models decay. Runs with the TensorFlow or
JAX backend (the distributed test needs TensorFlow)."""
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import models
import temporal_train
from twostream.networks import custom_layers, optimizers
from twostream.train import multitask, training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LR, MOMENTUM, DECAY = 0.1, 0.9, 0.05  # a decay large enough that every step shows it


def paper_sgd(accumulate=1, lr=LR, decay=DECAY):
    args = temporal_train.parse_args(["--momentum", str(MOMENTUM), "--weight-decay", str(decay),
                                      "--batch-size", "4", "--accumulate", str(accumulate)])
    return training.sgd(lr, args.momentum, args.weight_decay, args.accumulate)


def caffe_steps(w, gradients, decay, lr=LR, momentum=MOMENTUM):
    """w after one Caffe SGD step per gradient: v = m * v - lr * (g + decay * w); w += v."""
    w, v = np.array(w, np.float64), np.zeros(np.shape(w))
    for g in gradients:
        v = momentum * v - lr * (g + decay * w)
        w = w + v
    return w


def test_one_and_two_steps_are_caffes_update_on_kernels_and_plain_sgd_on_the_rest():
    rng = np.random.default_rng(0)
    start = {"kernel": rng.normal(size=(3, 2)), "bias": rng.normal(size=2), "gamma": rng.normal(size=2)}
    gradients = [{name: rng.normal(size=w.shape) for name, w in start.items()} for _ in range(2)]
    variables = {name: keras.Variable(w.astype(np.float32), name=name) for name, w in start.items()}
    optimizer = paper_sgd()
    for step, grads in enumerate(gradients, 1):
        optimizer.apply([grads[n].astype(np.float32) for n in variables], list(variables.values()))
        for name, variable in variables.items():
            decay = DECAY if name == "kernel" else 0.0
            expected = caffe_steps(start[name], [g[name] for g in gradients[:step]], decay)
            np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), expected, rtol=1e-5,
                                       err_msg=f"{name} after step {step}")


def zero_input_model():
    """Dense(2) on zero inputs: its kernel's gradient is exactly 0 (only the decay moves it), its
    bias's is 2 (b - y) / 2 for the mean squared error on targets y (the same for every sample)."""
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2, bias_initializer="ones", name="dense")(inputs))


def bias_steps(b, target, steps, lr=LR, momentum=MOMENTUM):
    b, v = np.array(b, np.float64), 0.0
    for _ in range(steps):
        v = momentum * v - lr * (b - target)  # d/db mean((b - y)^2) over 2 outputs
        b = b + v
    return b


@pytest.mark.parametrize("accumulate, policy", [(1, "float32"), (2, "float32"), (1, "mixed_float16"),
                                                (2, "mixed_bfloat16")])
def test_fit_decays_kernels_once_per_optimizer_step(accumulate, policy):
    """Through fit: 4 batches with --accumulate 2 are 2 optimizer steps, and the decay counts 2
    times, not 4; loss scaling (mixed_float16) leaves it unscaled."""
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = zero_input_model()
        kernel = keras.ops.convert_to_numpy(model.get_layer("dense").kernel)
        model.compile(paper_sgd(accumulate), loss="mse")
        target = np.array([0.75, 1.25], np.float32)  # near the bias: no float16 overflow at loss scale 2^15
        micro_steps = 4
        model.fit(np.zeros((4 * micro_steps, 3), np.float32), np.tile(target, (4 * micro_steps, 1)), batch_size=4,
                  shuffle=False, verbose=0)
        steps = micro_steps // accumulate
        dense = model.get_layer("dense")
        np.testing.assert_allclose(keras.ops.convert_to_numpy(dense.kernel),
                                   caffe_steps(kernel, [0.0] * steps, DECAY), rtol=1e-5)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(dense.bias), bias_steps(np.ones(2), target, steps),
                                   rtol=1e-5 if policy == "float32" else 1e-2)  # b - y in float16 or bfloat16
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.slow
def test_mirrored_replicas_decay_once_not_once_each(tmp_path):
    """With 2 replicas (tf.distribute on 2 logical CPUs) the decay is not summed over them."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.distribute needs the TensorFlow backend")
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        sys.path[:0] = [{REPO!r}, {os.path.dirname(__file__)!r}]
        import test_weight_decay as t
        from twostream.train import distributed
        strategy = distributed.distribution_strategy("mirrored")
        with strategy.scope():
            model = t.zero_input_model()
            model.compile(t.paper_sgd(), loss="mse")
        before = model.get_layer("dense").kernel.numpy()
        model.fit(np.zeros((8, 3), np.float32), np.zeros((8, 2), np.float32), batch_size=4, verbose=0)
        print(json.dumps([before.tolist(), model.get_layer("dense").kernel.numpy().tolist()]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "KERAS_BACKEND": "tensorflow"}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mirrored: 2 replicas" in result.stdout
    before, after = map(np.array, __import__("json").loads(result.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(after, caffe_steps(before, [0.0, 0.0], DECAY), rtol=1e-5)


def test_a_saved_model_loads_with_the_same_optimizer_and_trains_on_the_same(tmp_path):
    model = zero_input_model()
    model.compile(paper_sgd(), loss="mse")
    x, y = np.zeros((4, 3), np.float32), np.zeros((4, 2), np.float32)
    model.fit(x, y, batch_size=4, verbose=0)  # a step: the momentum is not 0 any more
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = custom_layers.load_model(path)
    assert type(loaded.optimizer) is optimizers.SGD
    assert loaded.optimizer.caffe_weight_decay == DECAY and loaded.optimizer.weight_decay is None
    for trained in (model, loaded):
        trained.fit(x, y, batch_size=4, verbose=0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded.get_layer("dense").kernel),
                               keras.ops.convert_to_numpy(model.get_layer("dense").kernel), rtol=1e-6)


def decayed_by_one_step(model):
    """The paths of the trainable variables that one SGD step with zero gradients changes, all
    of them set to 1 first (a decay leaves the zeros that biases and betas start with unchanged)."""
    for variable in model.trainable_variables:
        variable.assign(keras.ops.ones(variable.shape, variable.dtype))
    paper_sgd(decay=0.5).apply([keras.ops.zeros(v.shape, v.dtype) for v in model.trainable_variables],
                               model.trainable_variables)
    return {v.path for v in model.trainable_variables if not np.all(keras.ops.convert_to_numpy(v) == 1)}


def kernel_paths(model):
    return {v.path for v in model.trainable_variables if v.name == "kernel"}


@pytest.mark.slow
def test_spatial_phase_2_decays_its_kernels_and_not_its_batchnorm_betas():
    spatial = models.set_spatial_phase(models.spatial_model(3, 75, "none"), 2)
    names = [v.name for v in spatial.trainable_variables]
    assert (names.count("kernel"), names.count("beta"), names.count("bias")) == (20, 18, 2)
    assert decayed_by_one_step(spatial) == kernel_paths(spatial)


@pytest.mark.slow
def test_the_temporal_net_and_its_multitask_heads_decay_their_kernels_only():
    for norm in ("lrn", "batchnorm"):  # the paper's CNN-M-2048, and one with BatchNorm's gamma and beta
        temporal = multitask.with_heads(models.temporal_model(3, 64, 2, norm=norm), {"a": 3, "b": 2})
        assert decayed_by_one_step(temporal) == kernel_paths(temporal), norm
        assert ({"conv1/kernel", "full7/kernel", "predictions_a/kernel", "predictions_b/kernel"}
                <= kernel_paths(temporal))
