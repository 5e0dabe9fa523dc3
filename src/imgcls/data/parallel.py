"""Per-image work spread over every core, with a progress bar."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from multiprocessing.pool import ThreadPool
from typing import TypeVar

from tqdm import tqdm

Item = TypeVar("Item")
Result = TypeVar("Result")

# Images handed to a thread at a time: one per task, the pool's own bookkeeping cost ~10% of
# extraction's throughput on small images.
CHUNK = 16


def map_images(work: Callable[[Item], Result], items: Sequence[Item], desc: str) -> list[Result]:
    """`[work(item) for item in items]`, in order, on one thread per core.

    Threads suffice because OpenCV's codecs and file I/O release the GIL.
    """
    with ThreadPool(os.cpu_count() or 1) as pool:
        return list(tqdm(pool.imap(work, items, chunksize=CHUNK), total=len(items), desc=desc, unit="img"))
