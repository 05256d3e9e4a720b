"""The YAML schema of a trilla run, validated with pydantic.

Errors are rewritten so that each names the dotted key, the allowed values and the closest valid key:
pydantic's own messages say what is wrong but not what would be right. The `model` section is validated
by the parameter class that the chosen model registered, so each model declares its own knobs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, ValidationInfo, field_validator, model_validator

from trilla.errors import TrillaError, unknown_name
from trilla.kinds import infer_kind, input_kind, input_kinds, list_inputs
from trilla.kinds.audio.augment_config import AudioAugmentConfig  # noqa: F401  (the schema's public names)
from trilla.kinds.audio.kind import AudioInput  # noqa: F401
from trilla.kinds.embeddings.kind import EmbeddingsInput  # noqa: F401
from trilla.kinds.image.augment_config import AugmentConfig  # noqa: F401  (the schema's public names)
from trilla.kinds.image.kind import ImageInput
from trilla.models import ModelParams, params_class
from trilla.schema import InputSection, Section, explain, load_yaml, short

log = logging.getLogger("trilla")



class SplitConfig(Section):
    val: float = Field(0.15, gt=0.0, lt=1.0, description="validation picks the best epoch, so it cannot be 0")
    test: float = Field(0.15, ge=0.0, lt=1.0, description="share held out for the test split (0 with data.test_path)")
    seed: int = Field(0, ge=0, lt=2**32, description="the random seed (numpy takes 0 to 2**32 - 1)")
    stratify: bool = Field(True, description="every split keeps the classes' proportions")
    group_column: str | None = Field(
        "auto", description="a column of the CSV manifest (song, speaker, session, instrument program, product id): files sharing a "
        "value go to one split together, so validation and test measure groups never trained on. auto: the 'song' column where the "
        "manifest has one (harvest clips writes it), else none; null: none"
    )


class MetadataField(Section):
    """Where one categorical input fused into the model comes from: a level of the file's path
    (`{from: path, level: -3}` is Region in Region/Species/photo.jpg) or a column of the CSV manifest."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True, serialize_by_alias=True)
    source: Literal["path", "column"] = Field("column", alias="from", description="read the value from a CSV column or from a part of the file's path")
    level: int | None = Field(None, description="from: path; -1 is the file name, -2 its folder, ...")
    column: str | None = Field(None, description="from: column; default: the field's own name")

    @model_validator(mode="after")
    def _needs_level(self) -> MetadataField:
        if self.source == "path" and self.level is None:
            raise ValueError("from: path needs a level, e.g. level: -3 for Region in Region/Species/photo.jpg")
        return self


AXES = ("valence", "arousal")


class DataConfig(Section):
    path: Path | None = Field(None, description="a <class>/<file> folder tree, a CSV manifest (path,label[,more columns]), or a packed source (HDF5, TFRecord)")
    test_path: Path | None = Field(None, description="a fixed test set; otherwise one is split off")
    split: SplitConfig = Field(SplitConfig(), description="how the data is split into train, val and test")
    image_size: Annotated[int, Field(ge=4, le=4096)] | Literal["auto"] = Field(
        "auto", description="long side resized to this, padded to a square; auto: the pictures' median long side rounded up to a multiple of 16, within 32..64"
    )
    channels: Literal["auto", "rgb", "grey"] = Field("auto", description="auto keeps grey pictures grey and colour ones RGB")
    path_column: str = Field("path", description="CSV manifests: the column of file paths")
    label_column: str = Field("label", description="CSV manifests: the column of labels")
    label_level: int | None = Field(
        None, description="folder trees: the label is this part of the path below data.path (-2: the file's folder); "
        "default: the top-level folder"
    )
    store: Path | None = Field(None, description="where packed stores live; default ~/.cache/trilla/stores, or $TRILLA_CACHE/stores when that is set")
    keep_conflicts: bool = Field(
        False, description="files with identical content filed under different labels are left out (and listed in conflicts.csv); "
        "true keeps them, in one split together"
    )
    allow_outside: bool = Field(False, description="CSV manifests: accept paths that lead outside the CSV's folder (../, absolute)")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes; 0 reads the batches in the training process")
    metadata: dict[str, MetadataField] = Field(
        default_factory=dict, description="categorical inputs fused into the model's head, by name"
    )
    targets: dict[Literal["valence", "arousal"], str] = Field(
        default_factory=dict, description="affect coordinates in [-1, 1]: axis -> CSV column, e.g. {valence: valence, arousal: arousal}"
    )
    target_mode: Literal["binary", "quadrants", "regression"] = Field(
        "quadrants", description="with targets: one axis as low/high, the four quadrants (happy, stress, sad, calm), or the coordinates"
    )
    axis: Literal["valence", "arousal"] | None = Field(None, description="target_mode binary: the axis trained; default: the only one given")
    labels_column: str = Field("labels", description="task multilabel: the CSV column holding each file's labels")
    label_separator: str = Field(";", min_length=1, description="task multilabel: what joins the labels in that column")
    class_list: Path | None = Field(
        None, description="embeddings: AudioSet's class_labels_indices.csv (index, mid, display_name), naming the label columns"
    )

    @model_validator(mode="after")
    def _affect(self) -> DataConfig:
        given = list(self.targets)
        if not given:
            return self
        if self.target_mode == "quadrants" and set(given) != set(AXES):
            raise ValueError("target_mode quadrants needs both targets, valence and arousal")
        if self.target_mode == "binary":
            if self.axis is None and len(given) > 1:
                raise ValueError(f"target_mode binary trains one axis: set data.axis to one of {given}")
            if self.axis is not None and self.axis not in given:
                raise ValueError(f"data.axis {self.axis} is not among data.targets ({given})")
        return self

    def trained_axes(self) -> list[str]:
        """The affect axes the model predicts (in the targets' order), empty without targets."""
        if self.target_mode == "binary" and self.targets:
            return [self.axis or next(iter(self.targets))]
        return list(self.targets)


MAX_EPOCHS = 100_000


class TrainConfig(Section):
    epochs: int = Field(60, ge=1, le=MAX_EPOCHS, description="passes over the training split (raised by min_steps)")
    min_steps: int | None = Field(
        None, ge=1, description="raise epochs until the training takes at least this many optimizer steps (batches "
        "of batch_size over the training split, counted as one process takes them): a small data set then gets as many "
        "updates as a large one instead of as many passes; the run's config.yaml records the epochs this planned"
    )
    batch_size: int = Field(32, ge=1, description="examples per optimizer step")
    optimizer: Literal["auto", "sgd", "adam", "adamw", "rmsprop"] = Field(
        "auto", description="auto = the model's own default (rmsprop for rnn, as in the music study; adamw otherwise)"
    )
    lr: float = Field(0.002, gt=0.0, description="learning rate (the peak of onecycle); trilla lr-find suggests one")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD's momentum (rmsprop has none, as in Keras)")
    weight_decay: float = Field(0.01, ge=0.0, description="the optimizer's weight decay")
    schedule: Literal["constant", "cosine", "onecycle"] = Field("onecycle", description="the learning rate over the planned steps")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="single-label: share of each target spread over the other classes")
    mixup: float = Field(
        0.0, ge=0.0, le=10.0, description="mixup's Beta(a, a) parameter a (Zhang et al. 2018; PANNs use 1.0): each training batch "
        "is blended with a shuffled copy of itself and so are its targets; 0 = off"
    )
    ema: Annotated[float, Field(gt=0.0, lt=1.0)] | Literal["auto"] | None = Field(
        "auto", description="decay of an exponential moving average of the weights, used for validation and saved in "
        "checkpoints (Lightning's EMAWeightAveraging); null = off; auto = the model's own default (0.99 for small_cnn, "
        "off for timm backbones, whose batch-norm statistics do not fit averaged weights early in fine-tuning)"
    )
    imbalance: Literal["none", "class_weights", "balanced_sampler"] = Field(
        "none", description="rare classes weighted in the loss, or drawn as often as the others"
    )
    early_stopping: int | None = Field(
        None, ge=1, description="patience in epochs; off by default because the one-cycle schedule plans its own end"
    )
    monitor: Literal["val/loss", "val/accuracy", "val/balanced_accuracy", "val/mAP"] = Field(
        "val/loss", description="what picks the best checkpoint and drives early stopping; val/mAP (macro) for task multilabel"
    )
    objective: str | None = Field(
        None, min_length=1, max_length=64, description="what is predicted, by the name of a registered objective (trilla.objectives), "
        "for one that task and train.multilabel_loss do not name; default: the objective those keys and data.target_mode give"
    )
    multilabel_loss: Literal["bce", "bipolar"] = Field(
        "bce", description="task multilabel: sigmoid outputs with binary cross-entropy, or the AudioSet study's bipolar "
        "variant (tanh outputs, targets in {-1, 1}, mean squared error)"
    )
    feature_cache: bool = Field(
        True, description="with a frozen backbone and augment: null, compute the backbone's features once and train the head on them"
    )
    seed: int = Field(0, ge=0, lt=2**32, description="the random seed (numpy takes 0 to 2**32 - 1)")
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = Field("auto", description="where training runs; auto: a GPU when there is one")
    devices: int | Literal["auto"] = Field("auto", description="processes per machine (GPUs, or CPU processes with strategy ddp)")
    strategy: Literal["auto", "ddp"] = Field(
        "auto", description="ddp: one process per device, gradients averaged; start it with torchrun (also on SLURM), or "
        "let Lightning start the other processes of one machine"
    )
    num_nodes: int = Field(1, ge=1, description="machines taking part in a ddp run")
    precision: Literal["32-true", "16-mixed", "bf16-mixed"] = Field("32-true", description="Lightning's precision; mixed precision on GPUs")
    progress: bool = Field(True, description="progress bars on the console")


class SweepRange(Section):
    """A numeric range for `random` and `optuna` sweeps."""

    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)
    integer: bool = Field(False, description="draw whole numbers (layers, units) instead of reals")

    @model_validator(mode="after")
    def _ordered(self) -> SweepRange:
        if self.high <= self.low:
            raise ValueError(f"high ({self.high}) must be above low ({self.low})")
        if self.log and self.low <= 0:
            raise ValueError("log: true needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("log: true draws on a log scale, which takes no step")
        return self


class SweepConfig(Section):
    """A table of experiments over one base config (`trilla sweep`). Keys are dotted, as in --set."""

    method: Literal["grid", "random", "optuna"] = Field(
        "grid", description="grid: every combination of the listed values (times each entry of trials); random: draws; "
        "optuna: TPE, with median pruning on train.monitor"
    )
    parameters: dict[str, list[Any] | SweepRange] = Field(default_factory=dict, description="dotted key -> values, or {low, high, log}")
    trials: list[dict[str, Any]] = Field(
        default_factory=list, description="grid: named points, each a mapping of dotted keys (and an optional name), crossed with parameters"
    )
    max_trials: int | None = Field(None, ge=1, description="trials to run in all, over every worker")
    max_minutes: float | None = Field(None, gt=0, description="no worker starts a trial after this many minutes")
    storage: str | None = Field(None, description="Optuna RDB URL (postgresql://... for workers on several machines); default: sweep.db in the sweep folder")
    prune: bool = Field(True, description="optuna: stop trials whose monitored metric trails the median of earlier trials")
    seed: int = Field(0, ge=0, lt=2**32, description="the random seed (numpy takes 0 to 2**32 - 1)")

    @model_validator(mode="after")
    def _complete(self) -> SweepConfig:
        ranges = [key for key, values in self.parameters.items() if isinstance(values, SweepRange)]
        if self.method == "grid":
            if ranges:
                raise ValueError(f"method grid takes lists of values, not ranges ({', '.join(ranges)}); use method random or optuna")
            if not self.parameters and not self.trials:
                raise ValueError("a grid needs parameters (dotted key -> list of values) or trials (a list of points)")
        else:
            if self.trials:
                raise ValueError(f"trials (a list of points) belong to method grid, not {self.method}")
            if not self.parameters:
                raise ValueError(f"method {self.method} needs parameters to draw from")
            if self.max_trials is None and self.max_minutes is None:
                raise ValueError(f"method {self.method} never runs out of points: set max_trials or max_minutes")
        empty = [key for key, values in self.parameters.items() if isinstance(values, list) and not values]
        if empty:
            raise ValueError(f"no values to try for {', '.join(empty)}")
        return self


class RunConfig(Section):
    dir: Path = Field(Path("runs"), description="the folder run directories are made in")
    name: str | None = Field(None, min_length=1, max_length=120, description="the run folder is <timestamp>-<name>; default: the data's name")


class Config(Section):
    task: Literal["classification", "multilabel"] = Field(
        "classification", description="one class per example, or any number of labels (data.labels_column, ';'-joined)"
    )
    data: DataConfig = DataConfig()
    # The `input:` section is the schema of the kind its `type` names and `augment:` that kind's augmentation
    # section, both looked up in the registry when a config is validated: a kind registered later (a
    # plugin's) validates as the built-in ones do.
    input: SerializeAsAny[InputSection] = ImageInput()
    model: SerializeAsAny[ModelParams] = Field(default_factory=lambda: params_class("small_cnn")())
    augment: SerializeAsAny[Section] | None = AugmentConfig()
    dynamic_sections: ClassVar[tuple[str, ...]] = ("model", "input", "augment")

    @classmethod
    def section_schema(cls, part: str, raw: dict[str, Any]) -> type[BaseModel] | None:
        """The model's parameters by its name; the input kind's input and augment sections by its type."""
        if part == "model":
            return params_class(raw.get("model", {}).get("name", "small_cnn"))
        return _section_schema(part, raw)

    @classmethod
    def user_loc(cls, loc: list[str]) -> list[str]:
        return _without_union_tags(loc)

    @model_validator(mode="before")
    @classmethod
    def _defaults_for_input(cls, raw: Any) -> Any:
        """The input kind's defaults: its model, its augmentation section, a task it implies."""
        kind = _input_type(raw)
        return input_kind(kind).defaults(raw) if kind in list_inputs() else raw

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        input_kind(self.input.type).check(self)
        multilabel = self.task == "multilabel"
        if multilabel and self.data.targets:
            raise ValueError("task multilabel reads data.labels_column; affect targets (data.targets) are a classification or regression")
        if multilabel and self.train.monitor in ("val/accuracy", "val/balanced_accuracy"):
            raise ValueError(f"task multilabel logs val/loss and val/mAP, not {self.train.monitor}: set train.monitor to one of those")
        if not multilabel and self.train.monitor == "val/mAP":
            raise ValueError("train.monitor val/mAP needs task: multilabel")
        if multilabel and self.train.imbalance == "class_weights":
            raise ValueError("train.imbalance class_weights is for one class per example; task multilabel takes balanced_sampler")
        return self

    train: TrainConfig = TrainConfig()
    run: RunConfig = RunConfig()
    sweep: SweepConfig | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _validate_with_kind_schema(cls, value: Any) -> InputSection:
        if not isinstance(value, (dict, Section)):
            raise ValueError("must be a mapping with at least a 'type'")
        kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        if not isinstance(kind, str):
            raise ValueError(f"needs a 'type', one of {', '.join(list_inputs())}")
        if kind not in list_inputs():
            raise ValueError(str(unknown_name("input type", kind, list_inputs())))
        schema = input_kind(kind).schema
        return value if isinstance(value, schema) else schema.model_validate(value if isinstance(value, dict) else value.model_dump())

    @field_validator("augment", mode="before")
    @classmethod
    def _validate_with_kind_augment(cls, value: Any, info: ValidationInfo) -> Section | None:
        """The input kind's own augmentation section (its defaults turned a mapping into it already)."""
        if value is None or isinstance(value, Section):
            return value
        found = info.data.get("input")
        if found is None:  # the input section was refused: that error says it
            return None
        schema = input_kind(found.type).augment_schema
        if schema is None:
            raise ValueError(f"input: {{type: {found.type}}} has no augmentation: set augment: null")
        return schema.model_validate(value)

    @field_validator("model", mode="before")
    @classmethod
    def _validate_with_model_params(cls, value: Any) -> ModelParams:
        if isinstance(value, ModelParams):
            return value
        if not isinstance(value, dict):
            raise ValueError("must be a mapping with at least a 'name'")
        try:
            params = params_class(value.get("name", "small_cnn"))
        except TrillaError as err:
            raise ValueError(str(err)) from None
        return params.model_validate(value)

    @property
    def objective(self) -> str:
        """What the run predicts, by its name in `trilla.objectives`: train.objective when set, else what
        the three keys that say it give, read in this one place (task, train.multilabel_loss, and
        data.target_mode with affect targets)."""
        if self.train.objective:
            return self.train.objective
        if self.task == "multilabel":
            return "bipolar" if self.train.multilabel_loss == "bipolar" else "multilabel"
        return "regression" if self.data.targets and self.data.target_mode == "regression" else "classification"

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    data: str | Path | None = None,
) -> Config:
    """Read a YAML file (or start from defaults), apply `--data` and `--set key=value`, infer the input
    kind from the data when the config names none, validate."""
    return validate_config(with_input_kind(load_raw(path, overrides, data)))


def with_input_kind(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` with `input.type` set from the files at `data.path` when it names no input type, and the
    choice logged, so `trilla train --data songs/` on a folder of sound files trains as audio."""
    section = raw.get("input")
    data_path = (raw.get("data") or {}).get("path")
    if (isinstance(section, dict) and "type" in section) or (section is not None and not isinstance(section, dict)) or not data_path:
        return raw
    if not Path(data_path).exists():
        return raw
    path_column = (raw.get("data") or {}).get("path_column", "path")
    kind, why = infer_kind(Path(data_path), path_column)
    log.info("input type %s, with its defaults (%s); set input.type to choose another", kind, why)
    return {**raw, "input": {**(section or {}), "type": kind}}


def load_raw(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    data: str | Path | None = None,
) -> dict[str, Any]:
    """The config as written, with `--data` and `--set` applied, before validation fills in defaults."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if path.is_dir() or path.suffix.lower() == ".csv":
            raise TrillaError(f"{path} looks like data, not a config file: use trilla train --data {path}")
        if not path.is_file():
            raise TrillaError(f"config file {path} does not exist")
        try:
            raw = load_yaml(path.read_text()) or {}
        except UnicodeDecodeError as err:
            raise TrillaError(f"config file {path} is not text (UTF-8): {err.reason} at byte {err.start}") from None
        except (yaml.YAMLError, ValueError) as err:
            raise TrillaError(f"config file {path} is not valid YAML: {short(err)}") from None
        if not isinstance(raw, dict):
            raise TrillaError(f"config file {path} must hold a mapping of sections (data, model, train, run)")
    if data is not None:
        if raw.get("data") is None:  # `data:` with nothing under it
            raw["data"] = {}
        if not isinstance(raw["data"], dict):
            raise TrillaError(f"the config's data is {raw['data']!r}, not a section (data: {{path: ..., ...}})")
        raw["data"]["path"] = str(data)
    for item in overrides or []:
        apply_override(raw, item)
    take_epochs_as_given(raw, [item.partition("=")[0].strip() for item in overrides or []])
    return raw


def take_epochs_as_given(raw: dict[str, Any], keys: list[str]) -> None:
    """An override of train.epochs (`--set`, a training over HTTP, a sweep point) is the user's latest
    word: a train.min_steps from the file (or a run's config.yaml) would raise it again, so it is dropped
    unless the overrides set it too."""
    train = raw.get("train")
    if "train.epochs" in keys and "train.min_steps" not in keys and isinstance(train, dict) and train.get("min_steps") is not None:
        log.info("train.epochs %s given: train.min_steps %s dropped (set both to keep it)", train.get("epochs"), train["min_steps"])
        train["min_steps"] = None




def validate_config(raw: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise TrillaError("invalid configuration:\n" + "\n".join(explain(e, raw, Config) for e in err.errors())) from None


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set `dotted.key=value` in a raw config; list items are addressed by index (model.conv.0.maps=20)."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise TrillaError(f"--set expects dotted.key=value, got {item!r}")
    try:
        value = load_yaml(text) if text else None
    except (yaml.YAMLError, ValueError) as err:
        raise TrillaError(f"--set {key}: the value is not valid YAML: {short(err)}") from None
    set_dotted(raw, key, value)


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set `dotted.key` to `value` in a raw config, creating sections from their defaults on the way."""
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise TrillaError(f"{key}: {'.'.join(parts[:i])} has no item {part}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise TrillaError(f"{key}: {'.'.join(parts[:i])} is {node!r}, not a section with keys; set it as a whole or fix it first")
        if last:
            node[part] = value
        else:
            if node.get(part) is None:
                node[part] = _default_of(parts[: i + 1], raw)
            node = node[part]


def _default_of(parts: list[str], raw: dict[str, Any]) -> Any:
    """The default value at a dotted location, so `--set model.conv.0.maps=5` can edit a default list."""
    if parts == ["model"]:
        return {}  # the chosen model's own class fills in its defaults, whichever model.name ends up
    if len(parts) == 1 and (parts[0] != "input" or (raw.get("data") or {}).get("path")):
        # validation fills in the rest (a default written here would read as the user's: train.epochs), the
        # input kind its augment section, and with a data path the input type comes from the files
        return {}
    if parts[0] == "model":
        node: Any = params_class(raw.get("model", {}).get("name", "small_cnn"))().model_dump(mode="json")
        rest = parts[1:]
    elif parts[0] in ("input", "augment"):
        schema = _section_schema(parts[0], raw)
        if schema is None:
            return {}
        node = {"type": _input_type(raw)} if parts[0] == "input" else schema().model_dump(mode="json")
        rest = parts[1:]
    else:
        node = Config().model_dump(mode="json")
        rest = parts
    for part in rest:
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return {}
    return node if isinstance(node, (dict, list)) else {}


def _input_type(raw: Any) -> Any:
    """The input type a raw config names (image when it has no `input:` section, as the default)."""
    if not isinstance(raw, dict):
        return None
    section = raw.get("input")
    if section is None:
        return "image"
    return section.get("type") if isinstance(section, dict) else None


def _section_schema(part: str, raw: dict[str, Any]) -> type[BaseModel] | None:
    """The schema of `input:` or `augment:`, which depend on the input type the config names."""
    kind = _input_type(raw)
    if kind not in list_inputs():
        return None
    return input_kind(kind).schema if part == "input" else input_kind(kind).augment_schema


def _without_union_tags(loc: list[str]) -> list[str]:
    """pydantic names the member of a union it tried (input.audio.seconds, augment.AugmentConfig.flip);
    the user wrote input.seconds and augment.flip."""
    tags = set(list_inputs()) | {k.augment_schema.__name__ for k in input_kinds() if k.augment_schema is not None}
    if len(loc) > 1 and loc[0] in ("input", "augment") and loc[1] in tags:
        return [loc[0], *loc[2:]]
    return loc


