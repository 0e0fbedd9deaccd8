"""The paper's optimizer: SGD with momentum and Caffe's weight decay (the paper trained with Caffe).

Caffe adds the decay to the gradient, before the momentum:

    v = momentum * v - lr * (g + weight_decay * w)
    w = w + v

Keras's SGD(weight_decay=...) is decoupled instead: w -= lr * weight_decay * w each step, outside
the momentum. The momentum carries Caffe's decay term on, so at momentum 0.9 it is 1 / (1 - 0.9)
= 10 times as strong: with a zero gradient, 20k steps at lr 1e-2 and decay 5e-4 leave a weight
at 0.368 of its size against 0.905 with Keras's form.

Its own module, not training.py, because a compiled model saved with model.save names this class
in its compile config (the training scripts' .keras files did, before they saved the network
alone): models.py imports it, so that loading such a file finds it registered.
"""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="two_stream")
class SGD(keras.optimizers.SGD):
    """keras.optimizers.SGD with Caffe's weight decay on the variables that `decays`.

    The decay joins the gradient in update_step, which Keras calls once per optimizer step with
    the gradient it then applies: after the replicas' gradients are summed (tf.distribute), the
    loss scale is divided out (mixed precision) and the micro-steps are averaged
    (gradient_accumulation_steps). So it counts once per step, whatever the setup. (On JAX,
    update_step also runs on the micro-steps, but Keras discards their results.)
    Keras's own decoupled `weight_decay` stays off.
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, weight_decay=None, **kwargs):
        super().__init__(learning_rate, momentum, **kwargs)
        self.caffe_weight_decay = weight_decay

    def update_step(self, gradient, variable, learning_rate):
        if self.caffe_weight_decay and decays(variable):
            gradient = ops.add(ops.cast(gradient, variable.dtype),
                               ops.multiply(ops.cast(self.caffe_weight_decay, variable.dtype), variable))
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "weight_decay": self.caffe_weight_decay}


def decays(variable):
    """Whether weight decay applies to a trainable variable: to the kernels of convolutions and
    dense layers (two dimensions or more), not to biases or BatchNorm's scale and offset (one
    dimension), as the paper decays weights only."""
    return len(variable.shape) >= 2
