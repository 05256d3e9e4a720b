"""The registry of input kinds, in the manner of timm's `register_model`: one class per kind of input.

An input kind owns everything that depends on what a sample is (a picture, a sound, a row of
embeddings). Every kind has the base's part (`InputKind`): the schema of its `input:` section, the
defaults it gives a config, how its data is loaded, the batch the model reads and how it is
normalized, what the report says of it. The rest is a small protocol (protocols.py) a kind implements
only where it has it, and callers ask for by `able(kind, Protocol, why)`:

- `Packs`: its files are decoded into the store (the codec) and laid out as the model reads them (rows);
- `Decodes`: a run predicts single items of it (a path, bytes, a file object, an in-memory object);
- `Augments`: training (and test-time) augmentation, with the kind's `augment:` section;
- `Shows`: what a person is shown of a sample (the worst predicted, top losses, Grad-CAM);
- `Exports`: an example input for ONNX export, and the steps a program repeats before the model.

Training, evaluation, prediction, explanation, export and the review loop ask the kind and never branch
on its name, so a fourth kind is one new package beside image/, audio/ and embeddings/
(tests/test_kinds.py writes one outside the package).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import Counter
from pathlib import Path
from typing import IO, Any, ClassVar

import numpy as np
from pydantic import ValidationError

from trilla.data.sources import MEDIA
from trilla.errors import TrillaError, Unreadable, unknown_name
from trilla.kinds.protocols import Packs
from trilla.schema import Section

log = logging.getLogger("trilla")


WINDOWS = "windows"  # the prepared entry with each window's (start, end) in seconds, when an item has several


class Preprocessor(ABC):
    """What a trained run does to one item before the model sees it: `prepare` returns that item's
    arrays with a leading batch axis of 1, or of several windows for an item longer than the model's
    input (a sound longer than the run's `seconds`, read every `hop` seconds), then with `WINDOWS`
    giving each window's start and end in seconds; `collate` stacks prepared items into one batch."""

    @abstractmethod
    def prepare(self, item: Any, hop: float | None = None) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def blank(self) -> Any:
        """An item `prepare` reads (a black picture, a silent clip): what a server warms its model with."""

    def collate(self, prepared: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {key: np.concatenate([p[key] for p in prepared]) for key in prepared[0]}


class InputKind:
    """Base of every input kind: subclasses set the class attributes, override the hooks below where
    they differ, and implement the protocols (`Packs`, `Decodes`, `Augments`, `Shows`, `Exports`) they have."""

    name: ClassVar[str]
    schema: ClassVar[type[Section]]  # the `input:` section; its `type` field is `name`
    augment_schema: ClassVar[type[Section] | None] = None  # the `augment:` section; None: no augmentation
    key: ClassVar[str]  # the batch entry the model reads
    default_model: ClassVar[str]
    default_task: ClassVar[str | None] = None  # a task this kind implies (embeddings: multilabel)
    # train.min_steps when the config sets neither it nor train.epochs: a default that plans passes over
    # the data gives a small data set too few updates (issue 23); an explicit epochs count is kept as given
    default_min_steps: ClassVar[int | None] = None
    suffixes: ClassVar[frozenset[str]] = frozenset()  # file suffixes it reads, for inferring the kind
    noun: ClassVar[str] = "file"  # what one sample is called in messages and reports

    # --- the config ---------------------------------------------------------------------------------

    def defaults(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The raw config with this kind's defaults filled in where the user gave none."""
        model = raw.get("model") or {}
        if isinstance(model, dict) and "name" not in model:
            raw = {**raw, "model": {"name": self.default_model, **model}}
        if self.default_task is not None:
            raw = {"task": self.default_task, **raw}
        train = raw.get("train") or {}
        if self.default_min_steps is not None and isinstance(train, dict) and not {"epochs", "min_steps"} & train.keys():
            raw = {**raw, "train": {**train, "min_steps": self.default_min_steps}}
        if self.augment_schema is None:
            return {"augment": None, **raw}
        augment = raw.get("augment", {})
        if isinstance(augment, dict):
            try:
                raw = {**raw, "augment": self.augment_schema.model_validate(augment)}
            except ValidationError as err:  # its keys are the config's augment.*, not the top level's
                owner = next((k.name for k in _KINDS.values() if k is not self and k.augment_schema is not None and _fits(k.augment_schema, augment)), None)
                if owner is not None:
                    raise ValueError(f"augment: these keys belong to input: {{type: {owner}}}, not {self.name}") from None
                errors = [{**e, "loc": ("augment", *e["loc"])} for e in err.errors()]
                raise ValidationError.from_exception_data(err.title, errors) from None
        return raw

    def check(self, config) -> None:
        """Raise ValueError when the rest of `config` does not fit this kind."""
        if config.augment is None or (self.augment_schema is not None and isinstance(config.augment, self.augment_schema)):
            return
        if self.augment_schema is None:
            raise ValueError(f"input: {{type: {self.name}}} has no augmentation: set augment: null")
        owner = next((k.name for k in _KINDS.values() if k.augment_schema is type(config.augment)), "another input")
        raise ValueError(f"augment: these keys belong to input: {{type: {owner}}}, not {self.name}")

    # --- data -------------------------------------------------------------------------------------

    def load(self, path: Path, config, **kwargs):
        """The labelled data at `path` as `config` reads it (a `LabelledData`): what a packed source of
        this kind holds, or (a kind that `Packs`) the files a listing source lists, packed into the store
        with its codec and laid out by its rows."""
        from trilla.data.dataset import load_labelled
        from trilla.data.sources import find_source, packed_sources

        source = find_source(path)
        if source is not None and source.load is not None:
            if source.kind != self.name:
                raise TrillaError(f"{path} is packed {source.kind} data ({source.name}): read it with input: {{type: {source.kind}}}, not {self.name}")
            return source.load(path, config, **kwargs)
        if not isinstance(self, Packs):  # only its packed sources hold it
            raise TrillaError(f"{path}: input type {self.name} reads {' or '.join(packed_sources(self.name))} data, which this is not")
        return load_labelled(path, config, self, **kwargs)

    def longer_than_input(self, data, positions: np.ndarray) -> np.ndarray:
        """Which of these samples hold more than the model reads at once (sounds longer than the run's
        clips, cropped in the store): evaluation reads those from their files in windows."""
        return np.zeros(len(positions), dtype=bool)

    # --- batches ------------------------------------------------------------------------------------

    def to_batch(self, inputs: dict[str, np.ndarray], transform=None) -> dict:
        """Arrays as the data gives them -> tensors as the task reads them, augmented if asked."""
        import torch

        batch = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in inputs.items()}
        if transform is not None:
            batch[self.key] = transform(batch[self.key], batch.get("lengths"))
        return batch

    def normalization_values(self, inputs: dict[str, np.ndarray]) -> np.ndarray | None:
        """(values, channels) float64 whose mean and std standardize the input; None: the kind's inputs
        are fed as they are (mean 0, std 1 per `spec['bins']`)."""
        return None

    def norm_layout(self, count: int) -> tuple[tuple[int, ...], float]:
        """The shape the task's mean and std broadcast in, and the scale of their values."""
        return (1, 1, count), 1.0

    def describe(self, config, info: dict) -> str:
        """One line of the report on the run's data."""
        return f"{info['samples']} usable {self.noun}{'s' if info['samples'] != 1 else ''}"

    def record(self, data) -> dict:
        """Extra entries of run.json's `data` section."""
        return {}

_KINDS: dict[str, InputKind] = {}


def _fits(schema: type[Section], values: dict) -> bool:
    try:
        schema.model_validate(values)
    except ValidationError:
        return False
    return True


def register_input(cls: type[InputKind]) -> type[InputKind]:
    """Class decorator: register one instance of the kind under `cls.name`."""
    if cls.name in _KINDS:
        raise ValueError(f"input kind {cls.name!r} is registered twice")
    _KINDS[cls.name] = cls()
    MEDIA.update(cls.suffixes)  # a folder tree's loose files of these kinds are reported, other files left alone
    return cls


def list_inputs() -> list[str]:
    return list(_KINDS)


def input_kinds() -> list[InputKind]:
    return list(_KINDS.values())


def input_kind(name: str) -> InputKind:
    if name not in _KINDS:
        raise unknown_name("input type", name, list(_KINDS))
    return _KINDS[name]


def infer_kind(path: Path, path_column: str = "path", sample: int = 2000) -> tuple[str, str]:
    """The kind of the data at `path`, and why: the kind of the packed source that reads it, else the kind whose
    suffixes most of its files have (a folder's files, a CSV manifest's paths; at most `sample` read)."""
    from trilla.data.sources import find_source

    path = Path(path)
    source = find_source(path)
    if source is not None and source.kind in _KINDS:
        return source.kind, f"{path.name} is {_KINDS[source.kind].noun} data"
    suffixes = Counter(p.suffix.lower() for p in _listed(path, path_column, sample))
    votes = Counter({kind.name: sum(n for s, n in suffixes.items() if s in kind.suffixes) for kind in _KINDS.values()})
    best, count = votes.most_common(1)[0] if votes else ("image", 0)
    if not count:
        return "image", "no file suffix points to another kind"
    return best, f"{count} of {sum(suffixes.values())} files are {_KINDS[best].noun}s"


def _listed(path: Path, path_column: str, sample: int) -> list[Path]:
    from trilla.data.sources import manifest_rows, visible_files

    if path.is_dir():
        return visible_files(path)[:sample]
    if path.is_file() and path.suffix.lower() == ".csv":
        with manifest_rows(path) as rows:
            return [Path(row.get(path_column) or "") for row, _ in zip(rows, range(sample))]
    return []


def read_item(item: str | Path | bytes | bytearray | memoryview | IO[bytes]) -> bytes:
    """The bytes of a path, of a binary file object, or the bytes themselves; a `Problem` (something
    found that cannot be read) is its reason."""
    from trilla.data.sources import Problem

    if isinstance(item, Problem):
        raise Unreadable(item.reason)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, (str, Path)):
        try:
            return Path(item).read_bytes()
        except OSError as err:
            raise Unreadable(f"cannot read file: {err.strerror or err}") from err
    if hasattr(item, "read"):
        data = item.read()
        if not isinstance(data, (bytes, bytearray)):
            raise Unreadable("a file object to predict must be opened in binary mode ('rb')")
        return bytes(data)
    raise Unreadable(f"cannot predict a {type(item).__name__}: give a path, bytes, a binary file object or a decoded array")

