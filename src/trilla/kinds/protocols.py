"""The small interfaces an input kind implements only where it has them (see registry.py), and the two
ways callers ask for one: `able` (the kind, or a clear refusal) and `view` (what a person is shown of
a sample, or None). Apart from the registry, so that what only asks (an objective's evaluation) loads
no data code."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from trilla.errors import TrillaError

if TYPE_CHECKING:
    from trilla.kinds.registry import InputKind, Preprocessor


@runtime_checkable
class Packs(Protocol):
    """Files of the kind, decoded into the store and read back as the model reads them."""

    def codec(self, config, spec: dict | None = None):
        """The store codec (data/store.py): from the config for new data, or (with a trained run's
        `spec`) the run's own."""

    def rows(self, store, config, device: str, progress: bool):
        """What the model reads for the store's rows (a `dataset.Rows`)."""


@runtime_checkable
class Decodes(Protocol):
    """Single items predicted by a trained run."""

    def preprocessor(self, config, spec: dict, record: dict) -> Preprocessor:
        """How a run trained on this kind turns one item into model inputs, exactly as training did;
        `record` is the `data` section of the run's run.json."""


@runtime_checkable
class Augments(Protocol):
    """Training-time (and test-time) augmentation, as the kind's `augment:` section (`augment_schema`) says."""

    def augmentation(self, augment, config, spec: dict):
        """The transform for `augment`, applied to a batch's `key` entry (with its lengths, where given)."""


@runtime_checkable
class Shows(Protocol):
    """Samples a person can look at."""

    def explain_view(self, inputs: dict[str, np.ndarray], heat: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[str, str] | None]:
        """What Grad-CAM's `heat` (over the model input's last two axes) is laid over for one sample
        (a batch of one): (HWC uint8 picture, the heat in its coordinates, axis labels or None)."""


@runtime_checkable
class Exports(Protocol):
    """Runs that export to ONNX: inputs of a fixed shape."""

    def example_input(self, spec: dict, batch: int = 2):
        """A tensor shaped as the model's input."""

    def export_sidecar(self, spec: dict) -> dict:
        """What a program does to an item before the exported model, beside the model."""


def able(kind: InputKind, protocol: Any, refusal: str) -> Any:
    """`kind` as one that implements `protocol`, or the `refusal` as an error."""
    if not isinstance(kind, protocol):
        raise TrillaError(refusal.format(kind=kind.name))
    return kind


def view(kind: InputKind, inputs: dict[str, np.ndarray]) -> np.ndarray | None:
    """One sample (batch of one) as a person looks at it (HWC uint8: a picture, or a spectrogram with time
    on x), or None for a kind with nothing to look at."""
    if not isinstance(kind, Shows):
        return None
    return kind.explain_view(inputs, np.zeros(inputs[kind.key].shape[1:3]))[0]
