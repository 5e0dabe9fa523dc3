"""`imgcls check`: validate the whole params.yaml, one line per problem, before DVC reads it.

DVC fills dvc.yaml's `${...}` from params.yaml before any stage runs, so some mistakes reach DVC
first: a finetune: entry without `from` fails DVC's parser (`Could not find 'item.from'`) and
with it every dvc command, and a `from` naming no model fails on its missing best.pt. Each stage
checks only its own sections when it runs; this checks every section, model and entry at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from imgcls.core.errors import ImgclsError
from imgcls.core.params import (
    PARAM_SECTIONS,
    finetune_problems,
    model_names,
    parse_section,
    read_params_file,
    resolve_model,
)
from imgcls.evaluate.ensemble import check_members
from imgcls.models.names import MODEL_NAMES

# Checked entry by entry below, with the settings each model inherits from train:.
_PER_MODEL = ("models", "finetune")


def _lines(error: ImgclsError) -> list[str]:
    """parse_section's 'invalid params.yaml:' header dropped: each problem is already a line of its own."""
    return [line.strip() for line in str(error).splitlines() if line.strip() and line.strip() != "invalid params.yaml:"]


def params_problems(path: Path) -> list[str]:
    """Every problem in the params file: sections, models and finetune: entries resolved, ensemble members."""
    try:
        raw = read_params_file(path)
    except ImgclsError as error:
        return [str(error)]
    problems = []
    for name in PARAM_SECTIONS:
        if name not in _PER_MODEL:
            try:
                parse_section(name, raw.get(name))
            except ImgclsError as error:
                problems += _lines(error)
    finetune = finetune_problems(raw)
    if finetune:
        return [*problems, *finetune]  # which models exist, and what each inherits, hangs on a sound finetune:
    try:
        names = model_names(raw)
    except ImgclsError as error:
        return [*problems, str(error)]
    for name in names:
        try:
            resolve_model(path, name, MODEL_NAMES)
        except ImgclsError as error:
            problems += _lines(error)
    ensemble = raw.get("ensemble") if isinstance(raw.get("ensemble"), dict) else {}
    try:
        check_members(ensemble.get("models") or [], names)
    except ImgclsError as error:
        problems.append(str(error))
    return list(dict.fromkeys(problems))  # train: is every model's base: its problem once, not once per model


def exit_on_problems(path: Path) -> None:
    """Print each problem of the params file as a line of its own and exit 1; return quietly when there is none."""
    problems = params_problems(path)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        raise SystemExit(1)


def run_check(args: argparse.Namespace) -> None:
    exit_on_problems(args.params)
    print(f"{args.params}: every section, model, finetune: entry and ensemble member is valid")


def add_check_command(commands: argparse._SubParsersAction) -> None:
    """Register `imgcls check` on the `imgcls` command's subcommands."""
    command = commands.add_parser(
        "check", help="validate the whole params.yaml, one line per problem", description=__doc__
    )
    command.add_argument("--params", type=Path, default=Path("params.yaml"), help="the params file to check")
    command.set_defaults(run=run_check)
