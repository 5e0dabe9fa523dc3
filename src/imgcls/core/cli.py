"""Shared entry-point plumbing for the `stages/` scripts."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from imgcls.core.errors import ImgclsError


def stage_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="the params file (DVC reads params.yaml)"
    )
    return parser


def stage_main(main: Callable[[], None]) -> None:
    """Run a stage; bad input ends in one clear line on stderr and exit code 1, not a traceback."""
    try:
        main()
    except ImgclsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:
        # What the atomic writers do not wrap (a folder made up front, a log file) still gets one line naming the path.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        sys.exit(1)
