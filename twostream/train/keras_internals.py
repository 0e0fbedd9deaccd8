"""Every use of Keras's private API, in one module (tests/test_layout.py bans it everywhere else): when Keras
changes, this is the file to check. The training callbacks that save whole or not at all (by overriding
BackupAndRestore's and ModelCheckpoint's private save and load), the build JAX's fit does, minus its queue, and
the workarounds for Keras's multi-worker fit on tf.distribute."""
import json
import os

import keras

from twostream.errors import DataError
from twostream.storage import atomic
from twostream.train import checkpoints, distributed

KERAS_BACKUP_WEIGHTS = "latest.weights.h5"  # what keras.callbacks.BackupAndRestore writes (older runs' backups)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore whose saved state changes in one step: a kill at any moment leaves the last
    finished epoch's state whole, and the same command resumes from it. Its metadata also holds the
    states of the dropout layers' seed generators (seed_states), which weights files leave out, and the
    epoch's log.csv row (log_row), which a rerun writes again if log.csv lost it.

    Keras writes latest.weights.h5, then training_metadata.json, both in place: a kill during the
    first leaves a truncated file that no rerun can read, one between the two a state of two
    epochs. Here each epoch's weights go to a file of their own (written under a temporary name,
    then renamed), and the metadata, which names that file, is replaced last: it is the commit.
    The previous epoch's file goes after it. Restoring is Keras's: the model and optimizer weights,
    and the epoch to start from. A damaged backup (an older version's, cut short by a kill) stops
    the run with a message naming it: it is not set aside, since no earlier state exists and the
    stage would silently start again from its beginning.
    """

    def __init__(self, backup_dir):
        super().__init__(backup_dir, delete_checkpoint=False)

    @property
    def metadata_path(self):
        return self._training_metadata_path

    def committed(self):
        """What the backup's last commit says, or None without a backup: the number of finished epochs
        ("epoch"), their weights file, the seed states and the last epoch's log.csv row ("log_row", None
        from older versions)."""
        return self._metadata()

    def on_epoch_end(self, epoch, logs=None):
        self._log_row = {"epoch": str(epoch), **{key: str(float(value)) for key, value in (logs or {}).items()}}
        super().on_epoch_end(epoch, logs)

    def _metadata(self):
        path = self._training_metadata_path
        try:
            with open(path) as f:
                metadata = json.load(f)
            return {"epoch": int(metadata["epoch"]), "weights": metadata.get("weights", KERAS_BACKUP_WEIGHTS),
                    "seed_states": metadata.get("seed_states"), "log_row": metadata.get("log_row")}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DataError(self._damaged(path, error)) from error

    def _damaged(self, path, error):
        return (f"{path}: damaged ({error}): training cannot resume from {self.backup_dir}. An older version of "
                "this program, killed while writing it, leaves such a file. To train this stage again from its "
                f"start, move the folder aside (mv {self.backup_dir} {self.backup_dir}.damaged); to start the "
                "whole run again, pass --overwrite")

    def _load_model(self):
        metadata = self._metadata()
        distributed.check_same_backup(metadata["epoch"] if metadata else 0)
        if metadata is None:
            return  # no finished epoch yet: start from the beginning
        self._weights_path = os.path.join(self.backup_dir, metadata["weights"])
        if not os.path.isfile(self._weights_path):
            raise DataError(self._damaged(self._weights_path, "missing"))
        try:
            super()._load_model()
        except (OSError, ValueError) as error:
            raise DataError(self._damaged(self._weights_path, error)) from error
        for variable, state in zip(seed_states(self.model), metadata["seed_states"] or []):
            variable.assign(state)

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"epoch{self._current_epoch:06d}.weights.h5"
        with atomic.replacing(os.path.join(self.backup_dir, name)) as temp:
            self.model.save_weights(temp)
        seeds = [keras.ops.convert_to_numpy(v).tolist() for v in seed_states(self.model)]
        checkpoints.write_json(self._training_metadata_path, {
            "epoch": self._current_epoch, "batch": self._last_batch_seen, "weights": name, "seed_states": seeds,
            "log_row": getattr(self, "_log_row", None)})
        for old in os.listdir(self.backup_dir):
            if old.endswith(".weights.h5") and old != name and not atomic.is_temporary(old):
                os.remove(os.path.join(self.backup_dir, old))


def seed_states(model):
    """The states of the model's random seed generators (its dropout masks), which Keras's weights files
    leave out: the backup keeps them, so that a resumed run draws the masks a run never stopped draws."""
    return [v for v in model.variables if v.name == "seed_generator_state"]


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint whose file appears only whole and holds the network alone. Keras saves in
    place, and a kill during the save left a truncated model: here it saves to a temporary name,
    renamed when complete. Keras saves the optimizer's state too, which the backup, written the
    same epoch, holds already: here it saves checkpoints.network(model), half the bytes with SGD, and
    the training record of its epoch (`record`: epochs done -> checkpoints.training_record)."""

    def __init__(self, filepath, record, **kwargs):
        super().__init__(filepath, **kwargs)
        self.record = record

    def _save_model(self, epoch, batch, logs):
        final, trained = self.filepath, self.model  # self.model: on JAX, the trained values into the variables
        try:
            with atomic.replacing(final) as self.filepath:
                self._model = checkpoints.network(trained)
                super()._save_model(epoch, batch, logs)
                if os.path.exists(self.filepath):  # not saved: not the best epoch
                    checkpoints.add_training_record(self.filepath, self.record(epoch + 1))
        finally:
            self.filepath, self._model = final, trained


def build_before_fit(model, sequence):
    """Build the optimizer and the compiled loss and metrics on the shapes of a first batch, loaded here.
    JAX's fit builds them on a batch it takes from Keras's loader queue and leaves that epoch's other
    prefetched batches in the queue, which Keras serves at the start of the first epoch: every batch of
    the run came one late (some twice), and a resumed run, which drops them, trained on others."""
    model._symbolic_build(data_batch=sequence[0])  # what fit would do, minus the queue


def work_around_keras_multiworker_bugs(model, batch):
    """Keras 3.15's fit fails twice on a multi-worker cluster (keras-team/keras#20585,
    tensorflow/tensorflow#72388); both workarounds change only what it does there.

    1. Before training, it builds the model's metrics and loss from the first batch of the
       distributed dataset, which it first tries to reduce across the workers as if the per-replica
       (x, y) were one tensor. Only shapes and dtypes matter: build from this worker's `batch`.
    2. After each step, it averages the replicas' logs with strategy.reduce(MEAN, value, axis=0),
       which also reduces over axis 0 of each value, and the logs are scalars. Average over the
       replicas only (axis=None).
    """
    from keras.src.backend.tensorflow import trainer  # where fit's step function finds reduce_per_replica
    build = model._maybe_symbolic_build
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: build(
        data_batch=batch if data_batch is None else data_batch)
    reduce = trainer.reduce_per_replica
    if getattr(reduce, "over_replicas_only", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction == "auto" and distributed.is_multiworker(strategy):
            return keras.tree.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return reduce(values, strategy, reduction)

    reduce_per_replica.over_replicas_only = True
    trainer.reduce_per_replica = reduce_per_replica
