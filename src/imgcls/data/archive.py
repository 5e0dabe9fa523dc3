"""A stage's images packed in one uncompressed zip: one file for DVC to check instead of one per image.

`dvc status` visits every file of a folder output on every run, so a folder of 20,000 PNGs
costs seconds of fixed cost per pipeline command; one archive costs one lookup. The members
are the PNGs themselves, stored (PNG is compressed already), so the archive opens in any
archive viewer and `unzip` gives back the viewable files. Writing appends to one open file,
which also spares the per-file creation cost of a slow disk.
"""

from __future__ import annotations

import contextlib
import os
import threading
import zipfile
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import BinaryIO

from imgcls.core.errors import ImgclsError

ARCHIVE = "images.zip"
# Fixed member metadata so that the same images give the same archive bytes on every machine and run.
_EPOCH = (1980, 1, 1, 0, 0, 0)
_UNIX = 3
_READABLE = 0o100644 << 16


class ArchiveWriter:
    """Appends members in the order given; the caller keeps that order deterministic."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self._archive = archive

    def add(self, name: str, data: bytes) -> None:
        info = zipfile.ZipInfo(name, date_time=_EPOCH)
        info.create_system, info.external_attr = _UNIX, _READABLE
        self._archive.writestr(info, data)


class _Stream:
    """A file seen as a stream, write-only: zipfile then writes each member's sizes after its data (a data
    descriptor, which every unzip reads) instead of seeking back to patch its header. Those three seeks per
    member each flushed the buffer, and made writing the archive half of extract's main-thread time."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file

    def write(self, data: bytes) -> int:
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()


@contextlib.contextmanager
def write_archive(path: Path) -> Iterator[ArchiveWriter]:
    """Write a new archive at `path` (inside an `atomic_dir` temporary: the folder swap makes it atomic)."""
    with open(path, "xb") as file, zipfile.ZipFile(_Stream(file), "w", compression=zipfile.ZIP_STORED) as archive:
        yield ArchiveWriter(archive)


class ArchiveReader:
    """Reads members from any thread: one lock around each read, as ZipFile counts its open members unlocked."""

    def __init__(self, archive: zipfile.ZipFile, path: Path) -> None:
        self._archive, self.path, self._lock = archive, path, threading.Lock()

    def names(self) -> list[str]:
        return self._archive.namelist()

    def read(self, name: str) -> bytes:
        """A member's bytes (a stored member is a plain file read), failing clearly when it is missing."""
        try:
            with self._lock:
                return self._archive.read(name)
        except KeyError:
            raise ImgclsError(f"{self.path}: has no member {name}; the manifest beside it lists it") from None
        except zipfile.BadZipFile as exc:
            raise ImgclsError(f"{self.path}: member {name} is damaged ({exc}); run its stage again") from None


@contextlib.contextmanager
def read_archive(path: Path) -> Iterator[ArchiveReader]:
    """Open an earlier stage's archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            yield ArchiveReader(archive, path)
    except FileNotFoundError:
        raise ImgclsError(f"{path}: not found; run the stage that writes it first") from None
    except zipfile.BadZipFile as exc:
        raise ImgclsError(f"{path}: not a readable zip archive ({exc}); run the stage that writes it again") from None


def drop_members(path: Path, names: Collection[str]) -> None:
    """Rewrite the archive at `path` without the members `names`: zip cannot delete in place (and extract rarely
    needs it)."""
    if not names:
        return
    dropped = set(names)
    rewritten = path.with_name(f".{path.name}.rewritten")
    with read_archive(path) as source, write_archive(rewritten) as target:
        for name in source.names():
            if name not in dropped:
                target.add(name, source.read(name))
    os.replace(rewritten, path)
