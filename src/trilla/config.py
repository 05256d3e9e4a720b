"""The YAML schema of a trilla run, validated with pydantic.

Errors are rewritten so that each names the dotted key, the allowed values and the closest valid key:
pydantic's own messages say what is wrong but not what would be right. The `model` section is validated
by the parameter class that the chosen model registered, so each model declares its own knobs.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from trilla.errors import TrillaError
from trilla.models import ModelParams, params_class


class Section(BaseModel):
    """A config section: unknown keys are errors, and assignments are validated too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SplitConfig(Section):
    val: float = Field(0.15, gt=0.0, lt=1.0, description="validation picks the best epoch, so it cannot be 0")
    test: float = Field(0.15, ge=0.0, lt=1.0)
    seed: int = 0
    stratify: bool = True


class MetadataField(Section):
    """Where one categorical input fused into the model comes from: a level of the file's path
    (`{from: path, level: -3}` is Region in Region/Species/photo.jpg) or a column of the CSV manifest."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True, serialize_by_alias=True)
    source: Literal["path", "column"] = Field("column", alias="from")
    level: int | None = Field(None, description="from: path; -1 is the file name, -2 its folder, ...")
    column: str | None = Field(None, description="from: column; default: the field's own name")

    @model_validator(mode="after")
    def _needs_level(self) -> "MetadataField":
        if self.source == "path" and self.level is None:
            raise ValueError("from: path needs a level, e.g. level: -3 for Region in Region/Species/photo.jpg")
        return self


class DataConfig(Section):
    path: Path | None = None
    test_path: Path | None = None
    split: SplitConfig = SplitConfig()
    image_size: Annotated[int, Field(ge=4, le=4096)] | Literal["auto"] = "auto"
    channels: Literal["auto", "rgb", "grey"] = "auto"
    path_column: str = "path"
    label_column: str = "label"
    label_level: int | None = Field(
        None, description="folder trees: the label is this part of the path below data.path (-2: the file's folder); "
        "default: the top-level folder"
    )
    store: Path | None = None
    num_workers: int = Field(0, ge=0)
    metadata: dict[str, MetadataField] = Field(
        default_factory=dict, description="categorical inputs fused into the model's head, by name"
    )


class AugmentConfig(Section):
    """Training-time augmentation (torchvision transforms v2), applied per image; `augment: null` turns it off.

    The defaults are mild geometric jitter, which small from-scratch datasets gain most from; flips are
    off by default because they change the meaning of digits, text and left-handed guitars.
    """

    hflip: float = Field(0.0, ge=0.0, le=1.0, description="probability of a horizontal flip")
    vflip: float = Field(0.0, ge=0.0, le=1.0, description="probability of a vertical flip")
    rotate: float = Field(10.0, ge=0.0, le=180.0, description="largest rotation in degrees")
    rotate_p: float = Field(0.5, ge=0.0, le=1.0, description="probability of rotating")
    zoom: float = Field(0.1, ge=0.0, lt=1.0, description="largest relative change of scale")
    shift: float = Field(0.1, ge=0.0, lt=1.0, description="largest shift, as a fraction of the side")
    noise: float = Field(0.0, ge=0.0, le=1.0, description="std of Gaussian pixel noise on the 0-1 scale")
    color: float = Field(0.0, ge=0.0, le=1.0, description="brightness/contrast/saturation jitter")
    elastic: float = Field(0.0, ge=0.0, le=5.0, description="elastic distortion; 1 = Simard et al.'s MNIST setting")
    tta: int = Field(0, ge=0, le=64, description="test-time augmentation: augmented views averaged with the original when evaluating")


class TrainConfig(Section):
    epochs: int = Field(60, ge=1)
    batch_size: int = Field(32, ge=1)
    optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "adamw"
    lr: float = Field(0.002, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.01, ge=0.0)
    schedule: Literal["constant", "cosine", "onecycle"] = "onecycle"
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    ema: Annotated[float, Field(gt=0.0, lt=1.0)] | Literal["auto"] | None = Field(
        "auto", description="decay of an exponential moving average of the weights, used for validation and saved in "
        "checkpoints (Lightning's EMAWeightAveraging); null = off; auto = the model's own default (0.99 for small_cnn, "
        "off for timm backbones, whose batch-norm statistics do not fit averaged weights early in fine-tuning)"
    )
    imbalance: Literal["none", "class_weights", "balanced_sampler"] = "none"
    early_stopping: int | None = Field(
        None, ge=1, description="patience in epochs; off by default because the one-cycle schedule plans its own end"
    )
    monitor: Literal["val/loss", "val/accuracy", "val/balanced_accuracy"] = "val/loss"
    feature_cache: bool = Field(
        True, description="with a frozen backbone and augment: null, compute the backbone's features once and train the head on them"
    )
    seed: int = 0
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int | Literal["auto"] = "auto"
    precision: Literal["32-true", "16-mixed", "bf16-mixed"] = "32-true"
    progress: bool = True


class RunConfig(Section):
    dir: Path = Path("runs")
    name: str | None = None


class Config(Section):
    data: DataConfig = DataConfig()
    model: SerializeAsAny[ModelParams] = Field(default_factory=lambda: params_class("small_cnn")())
    augment: AugmentConfig | None = AugmentConfig()
    train: TrainConfig = TrainConfig()
    run: RunConfig = RunConfig()

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

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    data: str | Path | None = None,
) -> Config:
    """Read a YAML file (or start from defaults), apply `--data` and `--set key=value`, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if path.is_dir() or path.suffix.lower() == ".csv":
            raise TrillaError(f"{path} looks like data, not a config file: use trilla train --data {path}")
        if not path.is_file():
            raise TrillaError(f"config file {path} does not exist")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise TrillaError(f"config file {path} is not valid YAML: {err}") from err
        if not isinstance(raw, dict):
            raise TrillaError(f"config file {path} must hold a mapping of sections (data, model, train, run)")
    if data is not None:
        raw.setdefault("data", {})["path"] = str(data)
    for item in overrides or []:
        apply_override(raw, item)
    return validate_config(raw)


def validate_config(raw: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise TrillaError("invalid configuration:\n" + "\n".join(explain(e, raw) for e in err.errors())) from None


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set `dotted.key=value` in a raw config; list items are addressed by index (model.conv.0.maps=20)."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise TrillaError(f"--set expects dotted.key=value, got {item!r}")
    value = yaml.safe_load(text) if text else None
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise TrillaError(f"--set {key}: {'.'.join(parts[:i])} has no item {part}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
            continue
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
    if parts[0] == "model":
        node: Any = params_class(raw.get("model", {}).get("name", "small_cnn"))().model_dump(mode="json")
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


def explain(error: dict[str, Any], raw: dict[str, Any]) -> str:
    """One line per problem: the dotted key, what is wrong, and what would be right."""
    loc = [str(p) for p in error["loc"]]
    key = ".".join(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        valid = _fields_at(loc[:-1], raw)
        close = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.5)
        hint = f"; did you mean '{'.'.join(loc[:-1] + close)}'?" if close else ""
        return f"  {key}: unknown key{hint} Valid keys here: {', '.join(valid)}"
    if kind == "literal_error":
        allowed = [a.strip(" '") for a in error["ctx"]["expected"].replace(" or ", ", ").split(",")]
        close = difflib.get_close_matches(str(error["input"]), allowed, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"  {key}: {error['input']!r} is not allowed{hint} Allowed values: {', '.join(allowed)}"
    return f"  {key}: {error['msg']} (got {error.get('input')!r})"


def _fields_at(loc: list[str], raw: dict[str, Any]) -> list[str]:
    """Valid field names of the section at `loc` (walks the schema, following list items)."""
    model: Any = Config
    for part in loc:
        if part == "model" and model is Config:
            model = params_class(raw.get("model", {}).get("name", "small_cnn"))
            continue
        if part.isdigit():
            continue
        annotation = model.model_fields[part].annotation
        model = next(
            (t for t in (annotation, *_flatten_args(annotation)) if isinstance(t, type) and issubclass(t, BaseModel)),
            None,
        )
        if model is None:
            return []
    return list(model.model_fields)


def _flatten_args(annotation: Any) -> list[Any]:
    out = []
    for arg in typing.get_args(annotation):
        out.append(arg)
        out.extend(_flatten_args(arg))
    return out
