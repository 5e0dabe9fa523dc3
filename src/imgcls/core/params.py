"""Typed schema for `params.yaml`: every key a stage reads is declared and checked here.

Stages call `load_params(path, "extract")` and get validated, typed sections back.
Unknown keys are errors with a close-match suggestion, and numbers that
`dvc exp run -S` wrote as strings (`1e-07`) are coerced to numbers.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from imgcls.core.errors import ImgclsError, did_you_mean


def _not_a_boolean(value: Any) -> Any:
    """YAML's true/false are not numbers, though pydantic's lax mode would read them as 1 and 0."""
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    return value


# numpy's RandomState and scikit-learn's random_state take 0 .. 2**32 - 1: the narrowest of the seeds' consumers.
SEED_MAX = 2**32 - 1


def _seed_range(value: int) -> int:
    if not 0 <= value <= SEED_MAX:
        raise ValueError(
            f"a seed must be an integer from 0 to {SEED_MAX} (2**32 - 1), the range numpy and scikit-learn accept"
        )
    return value


# Lax, not strict: `dvc exp run -S train.lr=1e-07` writes a string that YAML does not read as a number.
Int = Annotated[int, BeforeValidator(_not_a_boolean)]
Float = Annotated[float, BeforeValidator(_not_a_boolean)]
Seed = Annotated[Int, AfterValidator(_seed_range)]
Rate = Annotated[Float, Field(ge=0, lt=1)]


class Section(BaseModel):
    # No inf or nan anywhere: torch trains to NaN on them and exits 0.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SampleParams(Section):
    seed: Seed = 0
    scarce_category: str = "eight"
    scarce_fraction: Float = Field(0.25, gt=0, le=1)


class ExtractParams(Section):
    source: Literal["coco", "folder"] = "coco"
    annotations: Path
    images: Path
    categories: list[str] = Field(min_length=2)
    per_category: Int | None = Field(None, gt=0)
    side_px: Int = Field(32, ge=8, le=1024)
    seed: Seed = 0
    crowd: Literal["disqualify", "ignore"] = "disqualify"
    other_categories: Literal["disqualify", "ignore"] = "disqualify"
    on_bad_image: Literal["skip", "fail"] = "skip"
    max_bad_fraction: Float = Field(0.01, ge=0, le=1)
    download: bool = False
    download_workers: Int = Field(8, gt=0, le=64)
    # Past about 1e9 s the socket layer overflows; an hour per request is already no timeout at all.
    download_timeout: Float = Field(30.0, gt=0, le=3600)
    # Retry n waits 0.5 * 2**n s: ten retries already wait about 8.5 minutes in all, and past 1023 the float overflows.
    download_retries: Int = Field(4, ge=0, le=10)
    allowed_hosts: list[str] = ["images.cocodataset.org"]

    @field_validator("categories")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"categories must be unique; repeated: {duplicates}")
        return names

    @model_validator(mode="after")
    def _source_layout(self) -> ExtractParams:
        if self.source == "folder" and self.annotations != self.images:
            raise ValueError(
                "with source: folder the class sub-folders are the labels; set annotations to the same folder as "
                "images "
                f"({self.images}) so DVC tracks it once"
            )
        if self.source == "folder" and self.download:
            raise ValueError("download: true needs source: coco (image URLs come from the annotation file)")
        return self


class NormalizeParams(Section):
    resize: Literal["pad", "stretch"] = "pad"


class SplitParams(Section):
    method: Literal["stratified", "given"] = "stratified"
    fractions: tuple[Float, Float, Float] = (0.8, 0.1, 0.1)
    per_class: tuple[Int, ...] | None = None
    seed: Seed = 0
    # pHash bits (of 64) two images in different splits may differ by and still be listed as near-duplicates.
    near_duplicate_bits: Int = Field(4, ge=0, le=32)

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, fractions: tuple[float, float, float]) -> tuple[float, float, float]:
        if fractions[0] <= 0 or fractions[1] <= 0 or fractions[2] < 0:
            raise ValueError(f"every fraction must be > 0, but test may be 0 for train/val only, got {list(fractions)}")
        if not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
            raise ValueError(
                f"fractions [train, val, test] must sum to 1, got {list(fractions)} (sum {sum(fractions):g})"
            )
        return fractions

    @field_validator("per_class")
    @classmethod
    def _per_class(cls, counts: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if counts is None:
            return counts
        if len(counts) not in (2, 3):
            raise ValueError(
                f"per_class must be [train, val] (the rest of each class to test) or [train, val, test], got "
                f"{list(counts)}"
            )
        if counts[0] <= 0 or counts[1] <= 0 or any(c < 0 for c in counts[2:]):
            raise ValueError(
                f"every per-class count must be > 0, but test may be 0 for train/val only, got {list(counts)}"
            )
        return counts

    @model_validator(mode="after")
    def _per_class_needs_stratified(self) -> SplitParams:
        if self.method == "given" and self.per_class is not None:
            raise ValueError(
                "per_class re-splits every class, so it needs method: stratified; set per_class: null to keep the "
                "given split"
            )
        return self


class AugmentParams(Section):
    enabled: bool = True
    target: Int | None = Field(None, gt=0)
    rotation_deg: Float = Field(15.0, ge=0, le=180)
    scale: tuple[Float, Float] = (0.9, 1.1)
    hflip: bool = False
    seed: Seed = 0

    @field_validator("scale")
    @classmethod
    def _scale(cls, scale: tuple[float, float]) -> tuple[float, float]:
        if not 0 < scale[0] <= scale[1]:
            raise ValueError(f"scale must be [low, high] with 0 < low <= high, got {list(scale)}")
        return scale


class TrainParams(Section):
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: Float = Field(1e-3, gt=0)
    momentum: Rate = 0.9
    nesterov: bool = False
    weight_decay: Float = Field(0.0, ge=0)
    betas: tuple[Rate, Rate] = (0.9, 0.999)  # torch's Adam refuses a beta outside [0, 1)
    scheduler: Literal["step", "cosine", "none"] = "cosine"
    step_size: Int = Field(5, gt=0)
    gamma: Float = Field(0.1, gt=0, le=1)
    epochs: Int = Field(8, gt=0)
    batch_size: Int = Field(64, gt=0)
    label_smoothing: Rate = 0.0
    class_weights: Literal["none", "balanced"] = "none"
    patience: Int | None = Field(None, gt=0)
    monitor: Literal["val/f1_macro", "val/acc", "val/loss"] = "val/f1_macro"
    seed: Seed = 0
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    hflip: bool = False
    crop_padding: Int = Field(2, ge=0)
    rotation_deg: Float = Field(0.0, ge=0, le=180)
    compile: bool = False
    cpu_kernels: Literal["portable", "native"] = "portable"
    nproc: Int = Field(1, gt=0)
    log_every_steps: Int | None = Field(None, gt=0)
    # ImageNet's channel statistics, which torchvision's pretrained weights expect; many course notebooks use 0.5s.
    normalize_mean: tuple[Float, Float, Float] = (0.485, 0.456, 0.406)
    normalize_std: tuple[Float, Float, Float] = (0.229, 0.224, 0.225)

    @field_validator("normalize_mean", "normalize_std")
    @classmethod
    def _on_the_unit_scale(cls, values: tuple[float, float, float], info: ValidationInfo) -> tuple[float, float, float]:
        # Pixels are divided by 255 first: 0-255 statistics (123.7, 58.4) would leave the inputs all but constant.
        low_ok = all(v > 0 for v in values) if info.field_name == "normalize_std" else all(v >= 0 for v in values)
        if not low_ok or any(v > 1 for v in values):
            bound = "0 < std <= 1" if info.field_name == "normalize_std" else "0 <= mean <= 1"
            raise ValueError(
                f"one value per RGB channel on the 0-1 pixel scale ({bound}), e.g. ImageNet's or [0.5, 0.5, 0.5]"
            )
        return values

    @model_validator(mode="after")
    def _sgd_only_options(self) -> TrainParams:
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs optimizer: sgd with momentum > 0")
        if self.batch_size % self.nproc:
            raise ValueError(
                f"batch_size {self.batch_size} must be divisible by nproc {self.nproc} (it is the global batch)"
            )
        return self


class ModelOptions(Section):
    """What a `models.<name>` entry may add on top of the train settings."""

    arch: str | None = None
    dropout: Rate | None = None
    pretrained: bool | None = None
    weights_path: Path | None = None
    freeze: Literal["none", "backbone", "last_block"] | None = None
    unfreeze_at_epoch: Int | None = Field(None, gt=1)
    head_hidden: Int | None = Field(None, gt=0)
    head_dropout: Rate | None = None
    probe: bool | None = None
    # A frozen backbone of random weights makes a feature-quality baseline, not a model: meant only when said so.
    random_features: bool | None = None

    @model_validator(mode="after")
    def _probe_keeps_the_backbone_frozen(self) -> ModelOptions:
        if self.probe and self.freeze != "backbone":
            raise ValueError(
                f"probe: true trains the head on a frozen backbone's features, so it needs freeze: backbone, not "
                f"{self.freeze or 'none'}"
            )
        if self.probe and self.unfreeze_at_epoch is not None:
            raise ValueError(
                "probe: true computes the frozen backbone's features once, so it cannot unfreeze; leave "
                "unfreeze_at_epoch empty"
            )
        return self


class EvaluateParams(Section):
    misclassified: Int = Field(32, ge=0)
    # Fewer than 1,000 resamples leaves the 2.5th and 97.5th percentiles resting on a couple of draws each.
    bootstrap_resamples: Int = Field(1000, ge=1000, le=1_000_000)
    bootstrap_seed: Seed = 0


def builds_ensemble(members: Sequence[str]) -> bool:
    """Fewer than two members (null or [] included) build no ensemble: one model's vote is that model."""
    return len(members) >= 2


class EnsembleParams(Section):
    models: Annotated[list[str], BeforeValidator(lambda members: [] if members is None else members)] = []
    tie_break: str | None = None

    @model_validator(mode="after")
    def _tie_break_is_a_member(self) -> EnsembleParams:
        if builds_ensemble(self.models) and self.tie_break not in self.models:
            raise ValueError(
                f"tie_break '{self.tie_break}' must be one of ensemble.models {self.models}: "
                "the member whose vote wins a tie"
            )
        return self


class ReportParams(Section):
    feature_image: Int = Field(0, ge=0)
    # Conv2d names as `model.named_modules()` spells them (`features.3`, `layer2.1.conv1`); None picks the
    # first, middle and last convolution whose maps are larger than 2x2.
    feature_layers: list[str] | None = Field(None, min_length=1)

    @field_validator("feature_layers")
    @classmethod
    def _unique_layers(cls, names: list[str] | None) -> list[str] | None:
        duplicates = sorted({n for n in names or () if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"feature_layers must be unique; repeated: {duplicates}")
        return names


PARAM_SECTIONS: dict[str, type[Section]] = {
    "sample": SampleParams,
    "extract": ExtractParams,
    "normalize": NormalizeParams,
    "split": SplitParams,
    "augment": AugmentParams,
    "train": TrainParams,
    "models": Section,
    "finetune": Section,
    "evaluate": EvaluateParams,
    "ensemble": EnsembleParams,
    "report": ReportParams,
}


def _key_path(section: str, loc: tuple[int | str, ...]) -> str:
    path = section
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _hint(word: str, known: Collection[str], listing: str) -> str:
    """The closest known name as a question, or else the whole `listing` of known names."""
    hint = did_you_mean(word, known)
    return f"; {hint}" if hint else f"; {listing}: {', '.join(known)}"


def _describe(section: str, known: Collection[str], error: dict[str, Any]) -> str:
    key = _key_path(section, error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key{_hint(str(error['loc'][-1]), sorted(known), 'valid keys')}"
    if error["type"] == "missing" and isinstance(error["loc"][-1], int):
        item = error["loc"][-1]
        return f"{_key_path(section, error['loc'][:-1])}: too few values, item {item} (counting from 0) is missing"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    return f"{key}: {message} (got {error.get('input')!r})"


def parse_section(
    name: str, raw: Any, schema: type[Section] | None = None, extra_known: Collection[str] = ()
) -> Section:
    """Validate one section's raw mapping; raise ImgclsError naming every bad key.

    `extra_known` are keys valid beside this schema's own, offered as typo suggestions too.
    """
    schema = schema or PARAM_SECTIONS[name]
    try:
        return schema.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        known = [*schema.model_fields, *extra_known]
        problems = "\n  ".join(_describe(name, known, e) for e in exc.errors())
        raise ImgclsError(f"invalid params.yaml:\n  {problems}") from None


def read_params_file(path: str | Path) -> dict[str, Any]:
    """Read params.yaml and reject unknown top-level sections."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ImgclsError(f"{path}: params file not found") from None
    except yaml.YAMLError as exc:
        raise ImgclsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ImgclsError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    _check_keys(path, raw)
    return raw


def _check_keys(path: Path, raw: dict[str, Any]) -> None:
    """Reject a misspelt key anywhere in the file, whichever stage reads it, so no typo is ever ignored."""
    _check_names(path, "", raw, PARAM_SECTIONS, "section")
    for name, section in raw.items():
        if name in ("models", "finetune"):
            known = [*TrainParams.model_fields, *ModelOptions.model_fields, *(["from"] if name == "finetune" else [])]
            for model, entry in (section or {}).items() if isinstance(section, dict) else ():
                if isinstance(entry, dict):
                    _check_names(path, f"{name}.{model}.", entry, known, "key")
        elif isinstance(section, dict):
            _check_names(path, f"{name}.", section, PARAM_SECTIONS[name].model_fields, "key")


# DVC's run cache leaves params keys named `size` or `nfiles` out of its key (treeverse/dvc#10296), so a
# change to one would be served stale outputs from the cache: the schema uses neither name.
RENAMED_KEYS = {"extract.size": "extract.side_px"}


def _check_names(path: Path, prefix: str, mapping: dict[str, Any], known: Collection[str], what: str) -> None:
    for key in mapping:
        if key in known:
            continue
        if f"{prefix}{key}" in RENAMED_KEYS:
            new = RENAMED_KEYS[f"{prefix}{key}"]
            raise ImgclsError(f"{path}: {prefix}{key}: renamed to {new} (DVC's run cache ignores keys named '{key}')")
        raise ImgclsError(f"{path}: {prefix}{key}: unknown {what}{_hint(str(key), known, 'valid')}")


def load_params(path: str | Path, *sections: str) -> tuple[Section, ...]:
    """Load and validate the named sections of a params file, in the order asked."""
    raw = read_params_file(path)
    return tuple(parse_section(name, raw.get(name)) for name in sections)


@dataclass(frozen=True)
class ModelSettings:
    """One model's resolved settings: `train` defaults overlaid with `models.<name>`."""

    name: str
    arch: str
    train: TrainParams
    options: dict[str, Any]
    unfreeze_at_epoch: int | None
    init_from: str | None = None  # the model whose best.pt training starts from (a finetune: entry)

    def fingerprint(self) -> dict[str, Any]:
        """Everything that shapes a training run, as plain JSON-able values."""
        return {
            "arch": self.arch,
            "train": self.train.model_dump(mode="json"),
            "options": jsonable(self.options),
            "unfreeze_at_epoch": self.unfreeze_at_epoch,
            "init_from": self.init_from,
        }

    def effective(self) -> dict[str, Any]:
        """The settings this model really trains with, flat, as `dvc params diff` shows them (dvclive `log_params`)."""
        extra = {
            k: v
            for k, v in (("unfreeze_at_epoch", self.unfreeze_at_epoch), ("init_from", self.init_from))
            if v is not None
        }
        return {"arch": self.arch, **self.train.model_dump(mode="json"), **jsonable(self.options), **extra}


def jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}


def model_names(raw: dict[str, Any]) -> list[str]:
    """Every model the pipeline trains: the `models:` keys, then the `finetune:` ones."""
    models = raw.get("models")
    if not isinstance(models, dict) or not models:
        raise ImgclsError("params.yaml: models: expected a mapping of model name -> settings with at least one model")
    return [*models, *_finetune_entries(raw)]


def _finetune_entries(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`finetune:` checked for what dvc.yaml's finetune@ stages rely on: each entry names a `models:` key in `from`."""
    problems = finetune_problems(raw)
    if problems:
        # DVC resolves finetune: before any stage runs, so the next mistake may come from DVC itself.
        raise ImgclsError(f"{problems[0]}; `imgcls check` lists every problem in params.yaml before DVC reads it")
    return raw.get("finetune") or {}


def finetune_problems(raw: dict[str, Any]) -> list[str]:
    """One line per `finetune:` mistake: a name of models:, or a `from` missing, itself, in a cycle or not a model."""
    finetune = raw.get("finetune")
    if finetune is None:
        return []
    if not isinstance(finetune, dict):
        return [f"finetune: expected a mapping of model name -> settings ({{}} for none), got {finetune!r}"]
    models = raw.get("models") if isinstance(raw.get("models"), dict) else {}
    problems = []
    for name, entry in finetune.items():
        if name in models:
            problems.append(f"finetune.{name}: also a key of models:; a finetuned model needs a name of its own")
        if not isinstance(entry, dict) or "from" not in entry:
            problems.append(
                f"finetune.{name}.from: missing; expected a mapping with from: <a key of models:>, got {entry!r}"
            )
        elif entry["from"] not in models:
            problems.append(f"finetune.{name}.from: {_not_a_source(name, entry['from'], finetune, models)}")
    return problems


def _not_a_source(name: str, source: object, finetune: dict[str, Any], models: dict[str, Any]) -> str:
    """Why `source` cannot be where finetune entry `name` starts; training starts from data/models/<from>/best.pt."""
    if source == name:
        return f"'{source}' is this entry itself; name the key of models: whose trained best.pt it starts from"

    def source_of(entry: str) -> object:
        return finetune[entry].get("from") if isinstance(finetune.get(entry), dict) else None

    chain = [name]
    while chain[-1] in finetune and source_of(chain[-1]) not in (None, *chain):
        chain.append(source_of(chain[-1]))
    start = source_of(chain[-1])
    if start in chain:
        cycle = " -> ".join([*chain[chain.index(start) :], start])
        verb = "makes" if start == name else "leads into"
        return f"'{source}' {verb} a cycle ({cycle}); from: must name a key of models:"
    if source in finetune:
        return f"'{source}' is a finetune: entry, not a key of models:; start from its model '{source_of(source)}'"
    return (
        f"'{source}' is not a key of models:{_hint(str(source), models, 'models')} "
        "(its data/models/<from>/best.pt is where training starts)"
    )


def _model_entry(raw: dict[str, Any], name: str) -> tuple[str, dict[str, Any], str | None]:
    """(key path, settings, from) for a `models:` or `finetune:` entry; a finetune entry overlays its source's."""
    models = raw.get("models") or {}
    finetune = _finetune_entries(raw)
    if name == "ensemble":
        raise ImgclsError("models.ensemble: 'ensemble' is reserved for the ensemble stage's metrics; rename this model")
    if name in finetune:
        source = finetune[name]["from"]
        _, inherited, _ = _model_entry(raw, source)
        own = {k: v for k, v in finetune[name].items() if k != "from"}
        return f"finetune.{name}", {"arch": source, **inherited, **own}, source
    if name not in models:
        raise ImgclsError(f"models.{name}: no such model{_hint(name, [*models, *finetune], 'models in params.yaml')}")
    entry = models[name] or {}
    if not isinstance(entry, dict):
        raise ImgclsError(f"models.{name}: expected a mapping of settings, got {entry!r}")
    return f"models.{name}", entry, None


def _check_freezing(key: str, options: ModelOptions, epochs: int, init_from: str | None) -> None:
    """Refuse freezing settings that would train silently but not as meant."""
    unfreeze = options.unfreeze_at_epoch
    if unfreeze is not None and options.freeze in (None, "none"):
        raise ImgclsError(
            f"{key}.unfreeze_at_epoch: {unfreeze} unfreezes a frozen backbone, but nothing is frozen; "
            "set freeze or drop it"
        )
    if unfreeze is not None and unfreeze > epochs:
        raise ImgclsError(
            f"{key}.unfreeze_at_epoch: {unfreeze} is past the last epoch (epochs: {epochs}), so it would never unfreeze"
        )
    # A finetune entry starts from its source's trained weights, so its frozen layers are learnt ones.
    weightless = not options.pretrained and options.weights_path is None and init_from is None
    if options.freeze not in (None, "none") and weightless and not options.random_features:
        raise ImgclsError(
            f"{key}.freeze: {options.freeze} freezes layers of random weights (no pretrained or weights_path), "
            "so the head learns from random features; give it weights, "
            "or set random_features: true if that baseline is meant"
        )


def resolve_model(path: str | Path, name: str, architectures: Sequence[str]) -> ModelSettings:
    """Overlay `models.<name>` on the `train` defaults and validate the result.

    A `finetune.<name>` entry overlays its own keys on those of the model it starts `from`.
    `architectures` are the registered network names (`imgcls.models.names.MODEL_NAMES`); taking them as an
    argument keeps this module free of torch, so the data stages neither import nor depend on the models.
    """
    raw = read_params_file(path)
    key, entry, init_from = _model_entry(raw, name)
    defaults = parse_section("train", raw.get("train"))
    train_keys = set(TrainParams.model_fields)
    overrides = {k: v for k, v in entry.items() if k in train_keys}
    if "nproc" in overrides:
        raise ImgclsError(
            f"{key}.nproc: the process count is set once, as train.nproc (dvc.yaml passes it to torchrun)"
        )
    options = parse_section(
        key, {k: v for k, v in entry.items() if k not in train_keys}, ModelOptions, extra_known=train_keys
    )
    merged = parse_section(key, {**defaults.model_dump(), **overrides}, TrainParams)
    arch = options.arch or name
    if arch not in architectures:
        hint = f" ({close})" if (close := did_you_mean(arch, architectures)) else ""
        raise ImgclsError(f"{key}: unknown architecture '{arch}'{hint}; valid: {', '.join(architectures)}")
    _check_freezing(key, options, merged.epochs, init_from)
    not_builder_options = ("arch", "unfreeze_at_epoch", "random_features")
    picked = {k: v for k, v in options.model_dump().items() if v is not None and k not in not_builder_options}
    return ModelSettings(name, arch, merged, picked, options.unfreeze_at_epoch, init_from)
