"""Multi-task training of the temporal stream (the paper's section 4): one ConvNet trunk, one
softmax head per dataset, each head's loss computed on its own dataset's samples only, the total
loss their sum, and every batch half from each dataset.

    train = MultiTaskSequence({"ucf101": ucf_train, "hmdb51": hmdb_train})   # two TrainSequences
    model.fit(train, ...)   # y and sample weights are dicts keyed by head: head_name(dataset)

The other dataset's samples reach a head with label 0 and sample weight 0, so they add nothing
to its loss or accuracy. Keras averages a weighted loss over the whole batch; the weights of a
head's own samples are therefore batch / own samples (2 for half and half), which makes each
head's loss the mean over its own samples, as if it were trained alone. Backend-agnostic: plain
sample weights, no custom train step.
"""
import keras
import numpy as np


def head_name(dataset):
    """The output layer (and the key of y and sample weights) of a dataset's softmax head."""
    return f"predictions_{dataset}"


class MultiTaskSequence(keras.utils.PyDataset):
    """Batches (x, {head: labels}, {head: sample weights}) joined from one TrainSequence per dataset.

    The sequences share their length and epoch: batch i concatenates every sequence's batch i.
    """

    def __init__(self, sequences, workers=1, use_multiprocessing=False, max_queue_size=10):
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
        lengths = {len(s) for s in sequences.values()}
        if len(lengths) != 1:
            raise ValueError(f"the datasets' sequences differ in length: { {d: len(s) for d, s in sequences.items()} }")
        self.sequences = sequences
        self.batch_size = sum(s.batch_size for s in sequences.values())

    @property
    def epoch(self):
        return next(iter(self.sequences.values())).epoch

    @epoch.setter
    def epoch(self, value):
        for sequence in self.sequences.values():
            sequence.epoch = value

    def __len__(self):
        return len(next(iter(self.sequences.values())))

    def __getitem__(self, index):
        parts = {dataset: sequence[index] for dataset, sequence in self.sequences.items()}
        x = np.concatenate([x for x, _ in parts.values()])
        labels, weights = {}, {}
        start = 0
        for dataset, (_, y) in parts.items():
            own = slice(start, start + len(y))
            labels[head_name(dataset)] = np.zeros(len(x), np.int32)
            labels[head_name(dataset)][own] = y
            weights[head_name(dataset)] = np.zeros(len(x), np.float32)
            weights[head_name(dataset)][own] = len(x) / len(y)
            start += len(y)
        return x, labels, weights

    def on_epoch_end(self):
        for sequence in self.sequences.values():
            sequence.on_epoch_end()


def with_heads(model, class_counts):
    """A single-task temporal model -> the same trunk with one softmax head per dataset
    ({dataset: classes}), named head_name(dataset). The trunk ends at the layer before the old
    softmax (drop7 in CNN-M-2048), so every architecture of models.temporal_model works."""
    features = model.layers[-2].output
    outputs = {head_name(dataset): keras.layers.Dense(count, activation="softmax", dtype="float32",
                                                       name=head_name(dataset))(features)
               for dataset, count in class_counts.items()}
    return keras.Model(model.inputs, outputs, name=model.name)


def one_head(model, dataset):
    """The model restricted to one dataset's head (a single softmax output), for testing and the demo.
    A single-task model passes through unchanged."""
    if not isinstance(model.output, dict) and len(model.outputs) == 1:
        return model
    return keras.Model(model.inputs, model.get_layer(head_name(dataset)).output, name=model.name)


def compile_args(datasets):
    """loss and metrics for model.compile: one cross-entropy and one accuracy per head."""
    heads = [head_name(d) for d in datasets]
    return dict(loss={h: "sparse_categorical_crossentropy" for h in heads}, metrics={h: ["accuracy"] for h in heads})


def validation_for(validation, target, datasets):
    """(x, y) of the target dataset -> (x, {head: y}, {head: weights}) with the other heads masked out."""
    x, y = validation
    labels = {head_name(d): (y if d == target else np.zeros_like(y)) for d in datasets}
    weights = {head_name(d): np.full(len(y), float(d == target), np.float32) for d in datasets}
    return x, labels, weights
