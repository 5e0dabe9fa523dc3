"""Unwritable, full and killed output locations: the output is named, the previous one stays whole, and
nothing half-written is left; the next run clears what a killed one left."""

from __future__ import annotations

import ctypes
import os
import re
import resource
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    STAGE_PARAMS,
    assert_one_line_error,
    leftovers,
    run_augment,
    run_command,
    run_stage_in_process,
    run_train_stage,
    striped_processed,
    write_params,
)
from imgcls.core.atomic import atomic_dir, save_npy
from imgcls.core.errors import ImgclsError


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[tuple[Path, Callable[[], None] | None]]:
    """A folder no one may write into, and the preexec_fn that makes even root respect that.

    (It drops CAP_DAC_OVERRIDE.)
    """
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    preexec = _without_root_override if os.geteuid() == 0 else None
    probe = run_command(sys.executable, "-c", f"open({str(folder / 'probe')!r}, 'w')", preexec_fn=preexec)
    try:
        if probe.returncode == 0:
            pytest.skip("cannot make a folder read-only here")
        yield folder, preexec
    finally:
        folder.chmod(0o755)


def _without_root_override() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH: dropped from the bounding set, gone after exec
        libc.prctl(24, capability, 0, 0, 0)  # PR_CAPBSET_DROP


@pytest.mark.slow
def test_augment_into_a_read_only_folder_names_the_output(tmp_path, read_only):
    folder, preexec = read_only
    result = run_augment(
        write_params(tmp_path, STAGE_PARAMS),
        striped_processed(tmp_path),
        folder,
        preexec_fn=preexec,
    )
    assert_one_line_error(result, f"error: {folder / 'train_augmented'}: cannot write this output (Permission denied")
    assert list(folder.iterdir()) == []


@pytest.mark.slow
def test_train_into_a_read_only_folder_names_the_folder(tmp_path, read_only):
    folder, preexec = read_only
    data = striped_processed(tmp_path)
    params = write_params(tmp_path, STAGE_PARAMS)
    result = run_train_stage(params, "net1", data, folder / "net1", tmp_path / "live", preexec_fn=preexec)
    assert_one_line_error(result, f"error: {folder / 'net1'}: Permission denied")
    assert list(folder.iterdir()) == []


def test_train_with_a_missing_input_leaves_no_output_folder(tmp_path):
    missing = tmp_path / "processed"
    result = run_stage_in_process(
        "train", write_params(tmp_path, STAGE_PARAMS), "--model", "net1", "--processed", missing,
        "--train-data", missing / "train", "--out", tmp_path / "models" / "net1", "--live", tmp_path / "live",
    )  # fmt: skip
    assert_one_line_error(result, f"error: {missing / 'classes.json'}: not found")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"], "no models/ or live/ folder made"


DISK_FULL = (
    "import errno, os, numpy\n"
    "def full(*args, **kwargs):\n"
    "    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
    "numpy.save = full\n"
)


@pytest.mark.slow
def test_augment_onto_a_full_disk_names_the_output_and_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    result = run_augment(
        write_params(tmp_path, STAGE_PARAMS),
        striped_processed(tmp_path),
        out,
        sabotage=DISK_FULL,
    )
    # Named by where it was headed, not by the temporary folder it was written into.
    assert_one_line_error(
        result, f"error: {out / 'train_augmented' / 'images.npy'}: cannot write this output (No space left on device)"
    )
    assert list(out.iterdir()) == []


def _file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
def test_train_that_cannot_write_its_checkpoint_names_it_and_leaves_nothing(tmp_path):
    data = striped_processed(tmp_path)
    out = tmp_path / "models" / "net1"
    limit = _file_size_limit(16_384)  # net1's checkpoint is about 55 KB
    result = run_train_stage(write_params(tmp_path, STAGE_PARAMS), "net1", data, out, preexec_fn=limit)
    assert_one_line_error(result, f"error: {out / 'best.pt'}: cannot write this output")
    assert list(out.iterdir()) == []


def test_a_full_disk_keeps_the_previous_output_whole(tmp_path, monkeypatch):
    target = tmp_path / "labels.npy"
    np.save(target, np.arange(3))
    previous = target.read_bytes()

    def full(file, array):
        file.write(b"partial")
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(ImgclsError, match=re.escape(f"{target}: cannot write this output (No space left on device)")):
        save_npy(target, np.arange(5))
    assert target.read_bytes() == previous and leftovers(tmp_path) == []
    with (
        pytest.raises(
            ImgclsError, match=re.escape(f"{tmp_path / 'folder'}: cannot write this output (No space left on device)")
        ),
        atomic_dir(tmp_path / "folder") as tmp,
    ):
        (tmp / "part").write_bytes(b"partial")
        raise OSError(28, os.strerror(28))
    assert not (tmp_path / "folder").exists() and leftovers(tmp_path) == []


# --- a SIGKILL mid-write -----------------------------------------------------------------------------------------

# SIGKILL at the rename of the named output: its temporary is complete but never moved into place,
# and no `finally` runs.
KILL_AT = (
    "import os, signal\nrename = os.replace\n"
    "def replace(src, dst):\n"
    "    if os.path.basename(dst) == {name!r}:\n"
    "        os.kill(os.getpid(), signal.SIGKILL)\n"
    "    rename(src, dst)\n"
    "os.replace = replace\n"
)
# Names that are not leftovers of train_augmented or augmented.csv, though they look close: they must survive.
BYSTANDERS = (
    ".train_augmented.notes",
    ".train_augmented.x.abcdefgh.tmp",
    ".other.abcdefgh.tmp",
    "train_augmented.abcdefgh.tmp",
    ".augmented.csv.b.abcdefgh.tmp",
    ".augmented.csv.abcdefg.tmp",
)


@pytest.mark.parametrize(
    ("killed_at", "leftover"), [("images.npy", ".train_augmented."), ("augmented.csv", ".augmented.csv.")]
)
@pytest.mark.slow
def test_the_next_run_clears_what_a_killed_run_left(tmp_path, killed_at, leftover):
    data, out = striped_processed(tmp_path), tmp_path / "out"
    out.mkdir()
    for name in BYSTANDERS:
        (out / name).write_text("not ours")
    args = (write_params(tmp_path, STAGE_PARAMS), data, out)
    killed = run_augment(*args, sabotage=KILL_AT.format(name=killed_at))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [name for name in leftovers(out) if name.startswith(leftover) and name not in BYSTANDERS], (
        "the kill left a temporary"
    )
    result = run_augment(*args)
    assert result.returncode == 0, result.stderr
    assert [name for name in leftovers(out) if name not in BYSTANDERS] == []
    assert all((out / name).read_text() == "not ours" for name in BYSTANDERS)
    assert (out / "train_augmented" / "images.npy").is_file() and (out / "augmented.csv").is_file()
