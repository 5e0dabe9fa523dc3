"""Typed schema for `params.yaml`: every key a stage reads is declared and checked here.

Stages call `load_params(path, "extract")` and get validated, typed sections back.
Unknown keys are errors with a close-match suggestion, and numbers that
`dvc exp run -S` wrote as strings (`1e-07`) are coerced to numbers.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from imgcls.errors import ImgclsError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SampleParams(Section):
    seed: int = 0
    scarce_category: str = "eight"
    scarce_fraction: float = Field(0.25, gt=0, le=1)


class ExtractParams(Section):
    source: Literal["coco"] = "coco"
    annotations: Path
    images: Path
    categories: list[str] = Field(min_length=2)
    per_category: int | None = Field(None, gt=0)
    size: int = Field(32, ge=8, le=1024)
    seed: int = 0
    crowd: Literal["disqualify", "ignore"] = "disqualify"
    other_categories: Literal["disqualify", "ignore"] = "disqualify"

    @field_validator("categories")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"categories must be unique; repeated: {duplicates}")
        return names


class NormalizeParams(Section):
    resize: Literal["pad", "stretch"] = "pad"


class SplitParams(Section):
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    per_class: tuple[int, int, int] | None = None
    seed: int = 0

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, fractions: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f <= 0 for f in fractions):
            raise ValueError(f"every fraction must be > 0, got {list(fractions)}")
        if not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
            raise ValueError(f"fractions [train, val, test] must sum to 1, got {list(fractions)} (sum {sum(fractions):g})")
        return fractions

    @field_validator("per_class")
    @classmethod
    def _per_class(cls, counts: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if counts is not None and any(c <= 0 for c in counts):
            raise ValueError(f"every per-class count must be > 0, got {list(counts)}")
        return counts


class AugmentParams(Section):
    enabled: bool = True
    target: int | None = Field(None, gt=0)
    rotation_deg: float = Field(15.0, ge=0, le=180)
    scale: tuple[float, float] = (0.9, 1.1)
    hflip: bool = False
    seed: int = 0

    @field_validator("scale")
    @classmethod
    def _scale(cls, scale: tuple[float, float]) -> tuple[float, float]:
        if not 0 < scale[0] <= scale[1]:
            raise ValueError(f"scale must be [low, high] with 0 < low <= high, got {list(scale)}")
        return scale


PARAM_SECTIONS: dict[str, type[Section]] = {
    "sample": SampleParams,
    "extract": ExtractParams,
    "normalize": NormalizeParams,
    "split": SplitParams,
    "augment": AugmentParams,
}


def _key_path(section: str, loc: tuple[int | str, ...]) -> str:
    path = section
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _describe(section: str, model: type[BaseModel], error: dict[str, Any]) -> str:
    key = _key_path(section, error["loc"])
    if error["type"] == "extra_forbidden":
        known = _fields_at(model, error["loc"][:-1])
        close = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(sorted(known))}"
        return f"{key}: unknown key{hint}"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    return f"{key}: {message} (got {error.get('input')!r})"


def _fields_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[str(part)].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    return list(model.model_fields)


def parse_section(name: str, raw: Any, schema: type[Section] | None = None) -> Section:
    """Validate one section's raw mapping; raise ImgclsError naming every bad key."""
    schema = schema or PARAM_SECTIONS[name]
    try:
        return schema.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        problems = "\n  ".join(_describe(name, schema, e) for e in exc.errors())
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
    for key in raw:
        if key not in PARAM_SECTIONS:
            close = difflib.get_close_matches(str(key), list(PARAM_SECTIONS), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; valid sections: {', '.join(PARAM_SECTIONS)}"
            raise ImgclsError(f"{path}: {key}: unknown section{hint}")
    return raw


def load_params(path: str | Path, *sections: str) -> tuple[Section, ...]:
    """Load and validate the named sections of a params file, in the order asked."""
    raw = read_params_file(path)
    return tuple(parse_section(name, raw.get(name)) for name in sections)
