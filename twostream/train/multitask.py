"""Multi-task training of the temporal stream (the paper's section 4): one ConvNet trunk, one
softmax head per dataset, each head's loss computed on its own dataset's samples only, the total
loss their sum, and every batch half from each dataset.

    train = MultiTaskSequence({"ucf101": ucf_train, "hmdb51": hmdb_train})   # two TrainSequences
    model.fit(train, ...)   # y and sample weights are dicts keyed by head: head_name(dataset)

The other dataset's samples reach a head with label 0 and sample weight 0, so they add nothing
to its loss, nor to its accuracy: compile_args makes it a weighted metric (Keras applies plain
`metrics` without sample weights, and would count the other half as label 0). Keras averages a
weighted loss over the whole batch; the weights of a head's own samples are therefore batch / own
samples (2 for half and half), which makes each head's loss the mean over its own samples, as if
it were trained alone. Backend-agnostic: plain sample weights, no custom train step.

Each half draws its own random numbers (videos, starts, crops, flips): MultiTaskSequence gives
the second dataset's sequence a seed of its own, derived from the run's seed.
"""
import keras
import numpy as np


def head_name(dataset):
    """The output layer (and the key of y and sample weights) of a dataset's softmax head."""
    return f"predictions_{dataset}"


class MultiTaskSequence(keras.utils.PyDataset):
    """Batches (x, {head: labels}, {head: sample weights}) joined from one TrainSequence per dataset.

    The sequences share their length and epoch: batch i concatenates every sequence's batch i.
    Sequences built with one seed would draw the same table of random numbers (the same start,
    crop and flip at every position of both halves): every sequence after the first gets its own
    seed here (half_seed), the same on every run and every worker with the same seed.
    """

    def __init__(self, sequences, workers=1, use_multiprocessing=False, max_queue_size=10):
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
        lengths = {len(s) for s in sequences.values()}
        if len(lengths) != 1:
            raise ValueError(f"the datasets' sequences differ in length: { {d: len(s) for d, s in sequences.items()} }")
        for position, sequence in enumerate(sequences.values()):
            sequence.seed = half_seed(sequence.seed, position)
            sequence.epoch = sequence.epoch  # redraws its video order (sampling="videos") from the new seed
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


def half_seed(seed, position):
    """The seed of the sequence at `position` in a multi-task batch: the first keeps the run's seed
    (its half is then a single-task run's batch), the others get one derived from it."""
    return seed if position == 0 else int(np.random.SeedSequence([seed, position]).generate_state(1)[0])


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
    """loss and metrics for model.compile: one cross-entropy and one accuracy per head, the
    accuracy weighted by the sample weights, so that each head counts its own samples only."""
    heads = [head_name(d) for d in datasets]
    return dict(loss={h: "sparse_categorical_crossentropy" for h in heads}, metrics=None,
                weighted_metrics={h: ["accuracy"] for h in heads})


def validation_for(validation, target, datasets):
    """(x, y) of the target dataset -> (x, {head: y}, {head: weights}) with the other heads masked out."""
    x, y = validation
    labels = {head_name(d): (y if d == target else np.zeros_like(y)) for d in datasets}
    weights = {head_name(d): np.full(len(y), float(d == target), np.float32) for d in datasets}
    return x, labels, weights
