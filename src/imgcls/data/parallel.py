"""Per-image work spread over every core, with a progress bar."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.pool import ThreadPool
from typing import TypeVar

from tqdm import tqdm

Item = TypeVar("Item")
Result = TypeVar("Result")

# Images handed to a thread at a time: one per task, the pool's own bookkeeping cost ~10% of
# extraction's throughput on small images.
CHUNK = 16


def imap_images(work: Callable[[Item], Result], items: Sequence[Item], desc: str) -> Iterator[Result]:
    """`work(item)` for each item, yielded in order as they finish, on one thread per core.

    Threads suffice because OpenCV's codecs and file I/O release the GIL. Consuming results as
    they come lets the caller write them out (to one archive, say) without holding them all.
    """
    with ThreadPool(os.cpu_count() or 1) as pool:
        yield from tqdm(pool.imap(work, items, chunksize=CHUNK), total=len(items), desc=desc, unit="img")
