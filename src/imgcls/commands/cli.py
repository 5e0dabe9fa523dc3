"""The `imgcls` command line: `imgcls predict` and `imgcls check`.

Only the parser lives here, free of torch: `imgcls check` (and `--help`) answers in half a second,
and `imgcls predict` imports the models when it runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from imgcls.commands.check import add_check_command
from imgcls.core.cli import stage_main

PREDICT_DESCRIPTION = "top-k classes for new, unlabelled images from a trained model's best.pt"


def _predict(args: argparse.Namespace) -> None:
    from imgcls.commands.predict import run_predict  # torch and the models load only for the command that uses them

    run_predict(args)


def add_predict_command(commands: argparse._SubParsersAction) -> None:
    """Register `imgcls predict` on the `imgcls` command's subcommands."""
    command = commands.add_parser("predict", help="top-k classes for new images", description=PREDICT_DESCRIPTION)
    which = command.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--checkpoint", type=Path, help="a best.pt from any pipeline run: needs nothing else, no repository"
    )
    which.add_argument(
        "--model", help="a key of params.yaml's models: in this repository (its data/models/<model>/best.pt)"
    )
    command.add_argument("images", nargs="+", type=Path, help="image files, or folders searched recursively")
    command.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="with --model: the params file, compared to the checkpoint's recipe",
    )
    command.add_argument(
        "--models-dir",
        type=Path,
        default=Path("data/models"),
        help="with --model: the train stages' folder (<model>/best.pt)",
    )
    command.add_argument(
        "--device", choices=("auto", "cpu", "cuda", "mps"), default="auto", help="where the model runs"
    )
    command.add_argument("--top-k", type=int, default=3, help="classes shown per image")
    command.add_argument("--json", action="store_true", help="print a JSON list instead of one line per image")
    command.set_defaults(run=_predict)


def main(argv: Sequence[str] | None = None) -> None:
    """The `imgcls` command; bad input ends in one line on stderr and exit code 1."""
    parser = argparse.ArgumentParser(prog="imgcls", description="imgcls: use the models the pipeline trained.")
    commands = parser.add_subparsers(dest="command", required=True)
    add_predict_command(commands)
    add_check_command(commands)
    args = parser.parse_args(argv)
    stage_main(lambda: args.run(args))
