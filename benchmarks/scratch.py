"""Where benchmarks write their throw-away files, and what creating a file there costs."""

import tempfile
import time
from pathlib import Path


def scratch_dir() -> Path:
    """The system's temporary folder (set TMPDIR to choose another disk)."""
    return Path(tempfile.gettempdir())


def file_creation_ms(count: int = 300) -> float:
    """Milliseconds to create, fill with 4 KiB and close one file in the scratch folder.

    Every image a benchmark writes pays this on both of its paths; on one machine here it
    ranged from 0.05 ms to 0.7 ms depending on the folder, so the benchmarks print it.
    """
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
        start = time.perf_counter()
        for index in range(count):
            (Path(tmp) / f"{index}.png").write_bytes(bytes(4096))
        return (time.perf_counter() - start) * 1000 / count
