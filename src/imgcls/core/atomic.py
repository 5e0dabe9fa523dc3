"""Atomic output writes: a killed stage never leaves a half-written file behind.

Everything is written to a temporary sibling first and moved into place with
`os.replace`, which is atomic on POSIX and Windows within one file system. A
write that fails (a read-only folder, a full disk) ends in one ImgclsError that
names the output; the temporaries a SIGKILL left are cleared by the next write
of the same output.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from imgcls.core.errors import ImgclsError

_TEMPORARY = r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp"  # how mkstemp/mkdtemp name ours: `.<name>.<8 random>.tmp`


def _write_error(path: Path, exc: OSError) -> ImgclsError:
    reason = exc.strerror or str(exc)
    culprit = f": {exc.filename}" if exc.filename else ""  # a write() to a full disk names no file
    return ImgclsError(
        f"{_final(path)}: cannot write this output ({reason}{culprit}); it needs a writable folder with free space"
    )


def _final(path: Path) -> Path:
    """Where `path` was headed: a file inside an `atomic_dir` temporary is named by its place in the real folder."""
    return Path(*(match["name"] if (match := re.fullmatch(_TEMPORARY, part)) else part for part in path.parts))


def _is_leftover(name: str, path: Path) -> bool:
    """Whether `name` is a temporary of a write of `path`: `.<name>.<8 random>.tmp`, as mkstemp makes them.

    Exactly eight random characters and no dot among them, so `.a.b.<random>.tmp`, a temporary
    of an output named `a.b`, is never taken for one of output `a`.
    """
    match = re.fullmatch(_TEMPORARY, name)
    return match is not None and match["name"] == path.name


def clear_leftovers(path: Path) -> None:
    """Remove what a killed earlier write of `path` left beside it: SIGKILL runs no `finally`."""
    if not path.parent.is_dir():
        return
    with os.scandir(path.parent) as entries:
        leftovers = [Path(e.path) for e in entries if _is_leftover(e.name, path)]
    for leftover in leftovers:
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success move it over `path`."""
    path = Path(path)
    tmp_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clear_leftovers(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        raise _write_error(path, exc) from None
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces `path` whole."""
    path = Path(path)
    old = path.with_name(f".{path.name}.old")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clear_leftovers(path)
        shutil.rmtree(old, ignore_errors=True)  # left by a kill between the two renames below
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        yield tmp
        if path.exists():
            # Rename the old folder aside first so `path` is never half old, half new.
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as exc:
        raise _write_error(path, exc) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON output of an earlier stage, failing clearly if that stage has not run."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ImgclsError(f"{path}: not found; run the stage that writes it first") from None
    except json.JSONDecodeError as exc:
        raise ImgclsError(f"{path}: not valid JSON ({exc})") from None


def save_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Save an array as `.npy`, which `np.load(mmap_mode="r")` can map without reading it."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(array))
