"""How a stream's scores were computed (ScoreSettings), as fuse_test.py records it in every score file it writes: the
"settings" of evaluation.save_scores, a JSON object of ScoreSettings' keys. Which of them must agree for saved scores
to be reused (REUSE_SETTINGS), for the parts of one --shard K/N split to be merged (MERGE_SETTINGS), and which
describe the network a row of the report is compared by (NETWORK_SETTINGS).
"""
import dataclasses

REUSE_SETTINGS = ("model", "fingerprint", "samples", "crops", "image_size", "stack_length")  # must match to reuse
# Each stream's network, as its config.json records it: the report compares a row with the figure measured with it.
NETWORK_SETTINGS = ("stack_length", "arch", "norm", "training")
MERGE_SETTINGS = ("samples", "crops", "image_size", "stack_length", "dataset", "split", "num_classes", "class_limit",
                  "max_videos", "trained_on", "multitask")  # the parts of one --shard K/N split must agree on these


@dataclasses.dataclass(frozen=True)
class ScoreSettings:
    """How one stream's scores of one list were computed: the model file, the test protocol, the list and its
    limits, and the network as its config.json describes it. A score file of an earlier version lacks the keys added
    since: they read as None, and `unrecorded` names them, so that its settings are written back as they were read
    (keys this version does not know are left out: no version wrote any other)."""
    stream: str = None
    model: str = None  # the model file's absolute path
    fingerprint: dict = None  # its size and mtime_ns (checkpoints.fingerprint): another file's scores are stale
    samples: int = None  # --samples
    crops: str = None  # --crops
    image_size: int = None  # the network's input side, from config.json
    stack_length: int = None  # its L, from config.json
    dataset: str = None  # --dataset
    split: int = None  # --split
    num_classes: int = None  # the classes the models know
    class_limit: int = None  # --class-limit
    max_videos: int = None  # --max-videos: the test list's limit (None for the training list)
    skipped: list = None  # the list's videos left out for missing frames or flow (--skip-missing)
    trained_on: dict = None  # {dataset, split} of the model's config.json
    multitask: dict = None  # its second dataset's head (temporal_train.py --multitask), from config.json
    init: str = None  # the model it was fine-tuned from (--init), from config.json
    shard: tuple = None  # (K, N) of --shard K/N; None: the whole lists
    trained: dict = None  # {steps_done, steps_planned} of its training record; None without one
    arch: str = None  # its architecture, from config.json
    norm: str = None  # its normalisation, from config.json
    training: str = None  # how it was trained beyond its architecture (references.training_kind)
    unrecorded: frozenset = dataclasses.field(default=frozenset(), compare=False, repr=False)

    @classmethod
    def keys(cls):
        """The keys of a score file's settings, in the order they are written."""
        return [field.name for field in dataclasses.fields(cls) if field.name != "unrecorded"]

    @classmethod
    def read(cls, record):
        """The settings of a score file, from its JSON object (evaluation.load_scores' "settings")."""
        keys = cls.keys()
        return cls(**{key: record[key] for key in keys if key in record}, unrecorded=frozenset(set(keys) - set(record)))

    def record(self):
        """The JSON object a score file holds (evaluation.save_scores' settings)."""
        return {key: getattr(self, key) for key in self.keys() if key not in self.unrecorded}

    def but(self, **changes):
        """These settings with `changes`, which are recorded from now on."""
        return dataclasses.replace(self, **changes, unrecorded=self.unrecorded - set(changes))

    def differences(self, saved):
        """Why scores computed with the `saved` settings are not those these settings compute: [] when they are."""
        differ = [f"{key}: saved {getattr(saved, key)!r}, now {getattr(self, key)!r}" for key in REUSE_SETTINGS
                  if key != "fingerprint" and getattr(saved, key) != getattr(self, key)]
        if saved.model == self.model and saved.fingerprint != self.fingerprint:
            differ.append(f"the model file {self.model} changed after they were computed: other size or mtime")
        return differ

    def scored_alike(self, other):
        """Whether two parts were scored alike: the same protocol, limits and model file size (the model's
        path and time stamp may differ between machines)."""

        def size(s):
            return (s.fingerprint or {}).get("size")

        return all(getattr(self, key) == getattr(other, key) for key in MERGE_SETTINGS) and size(self) == size(other)

    def network(self):
        """The network the scores come from, as its config.json records it (NETWORK_SETTINGS)."""
        return {key: getattr(self, key) for key in NETWORK_SETTINGS}
