"""Fetch selected COCO images by URL into a local cache, resumably and only from trusted hosts.

A file lands under its final name only after it decodes to the width and height
its annotation claims, so a rerun can trust whatever is already in the cache.
"""

from __future__ import annotations

import http.client
import os
import random
import time
import urllib.request
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

import cv2
import numpy as np
from tqdm import tqdm

from imgcls.core.errors import ImgclsError
from imgcls.data.images import BadImageError, check_size, header_info

_CHUNK = 1 << 16


@dataclass(frozen=True)
class RemoteImage:
    """One image to fetch: where it goes in the cache, where it comes from, and its annotated size."""

    file_name: str
    url: str
    width: int
    height: int

    def __post_init__(self) -> None:
        name = self.file_name
        if name in ("", ".", "..") or any(c in name for c in "/\\\0"):
            raise ImgclsError(
                f"image file_name {name!r} (from {self.url}) must be a plain file name, "
                "with no folders, separators or '..'"
            )


@dataclass(frozen=True)
class DownloadFailure:
    """An image that could not be fetched, and the last reason why."""

    file_name: str
    url: str
    reason: str


class _Transient(Exception):
    """Worth another attempt: the server or network may behave next time."""


class _Permanent(Exception):
    """Retrying cannot help: the server answered definitively."""


class _AllowlistRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to allowed hosts, so the allowlist cannot be sidestepped by a 302."""

    def __init__(self, allowed_hosts: Collection[str]) -> None:
        self.allowed_hosts = allowed_hosts

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if not _is_allowed(newurl, self.allowed_hosts):
            raise HTTPError(newurl, code, f"redirect to a host outside {sorted(self.allowed_hosts)}", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def download_images(
    images: Sequence[RemoteImage],
    dest: Path,
    *,
    workers: int = 8,
    timeout: float = 30.0,
    retries: int = 4,
    backoff: float = 0.5,
    allowed_hosts: Collection[str] = ("images.cocodataset.org",),
    progress: bool = True,
) -> list[DownloadFailure]:
    """Fetch the images missing or invalid in `dest`; return those that still failed after `retries` retries.

    `timeout` bounds each request in seconds; retry `n` waits `backoff * 2**n` seconds plus jitter.
    """
    allowed = {host.lower() for host in allowed_hosts}
    _check_request(images, allowed)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    opener = urllib.request.build_opener(_AllowlistRedirects(allowed))
    failures: dict[int, DownloadFailure] = {}
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        tqdm(total=len(images), desc="download", unit="img", disable=not progress) as bar,
    ):
        futures = {
            pool.submit(_fetch, image, dest, opener, timeout, retries, backoff): index
            for index, image in enumerate(images)
        }
        for future in as_completed(futures):
            failure = future.result()
            if failure is not None:
                failures[futures[future]] = failure
                bar.set_postfix(failed=len(failures))
            bar.update()
    return [failures[index] for index in sorted(failures)]


def _check_request(images: Sequence[RemoteImage], allowed: Collection[str]) -> None:
    """Refuse the whole call before any request if one URL or file name is unacceptable."""
    seen: dict[str, str] = {}
    for image in images:
        if not _is_allowed(image.url, allowed):
            raise ImgclsError(
                f"refusing to download {image.url} (for {image.file_name!r}): "
                f"only http(s) URLs on hosts {sorted(allowed)} are allowed"
            )
        if image.file_name in seen:
            raise ImgclsError(
                f"image file_name {image.file_name!r} is listed twice "
                f"({seen[image.file_name]} and {image.url}); each cached file needs one source"
            )
        seen[image.file_name] = image.url


def _is_allowed(url: str, allowed: Collection[str]) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and (parts.hostname or "") in allowed


def _fetch(
    image: RemoteImage,
    dest: Path,
    opener: urllib.request.OpenerDirector,
    timeout: float,
    retries: int,
    backoff: float,
) -> DownloadFailure | None:
    """Make sure one image is valid in `dest`, downloading it with retries if needed."""
    target = dest / image.file_name
    if target.is_file() and _is_valid(target.read_bytes(), image):
        return None
    # Seeded per URL so a rerun waits the same, while workers still spread their retries apart.
    rng = random.Random(image.url)
    last_reason = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1) + rng.uniform(0, backoff))
        try:
            _attempt(image, target, opener, timeout)
            return None
        except _Permanent as err:
            return DownloadFailure(image.file_name, image.url, str(err))
        except _Transient as err:
            last_reason = str(err)
    return DownloadFailure(image.file_name, image.url, f"{last_reason} (gave up after {retries + 1} attempts)")


def _attempt(image: RemoteImage, target: Path, opener: urllib.request.OpenerDirector, timeout: float) -> None:
    """Download once, classify what went wrong, and move the file into place only if it is valid."""
    try:
        data = _get(opener, image.url, timeout)
    except HTTPError as err:
        err.close()
        retryable = err.code >= 500 or err.code == 429
        raise (_Transient if retryable else _Permanent)(f"HTTP {err.code} {err.reason}") from None
    except URLError as err:
        raise _Transient(f"{type(err.reason).__name__}: {err.reason}") from None
    except (OSError, http.client.HTTPException) as err:
        raise _Transient(f"{type(err).__name__}: {err}") from None
    _validate(data, image)
    part = target.with_name(target.name + ".part")
    try:
        part.write_bytes(data)
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)


def _get(opener: urllib.request.OpenerDirector, url: str, timeout: float) -> bytes:
    """Return the full body of `url`, failing if it arrives short or later than `timeout` seconds."""
    deadline = time.monotonic() + timeout
    chunks = []
    with opener.open(url, timeout=timeout) as response:
        declared = response.headers.get("Content-Length")
        # The socket timeout only bounds each read; a server trickling bytes needs a total deadline.
        while chunk := response.read(_CHUNK):
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise TimeoutError(f"body not received within {timeout}s")
    data = b"".join(chunks)
    # http.client's read(amt) ends a short body silently instead of raising IncompleteRead.
    if declared is not None and declared.isdigit() and len(data) != int(declared):
        raise http.client.IncompleteRead(data, int(declared) - len(data))
    return data


def _validate(data: bytes, image: RemoteImage) -> None:
    """Check the header's size before decoding, so a decompression bomb is refused without being decoded."""
    try:
        width, height, _ = header_info(data, Path(image.file_name))
    except BadImageError:
        raise _Transient(f"not a decodable image ({len(data)} bytes)") from None
    try:
        check_size(width, height, image.file_name, (image.width, image.height))
    except BadImageError as err:
        raise _Permanent(str(err)) from None
    if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is None:
        raise _Transient(f"not a decodable image ({len(data)} bytes)")


def _is_valid(data: bytes, image: RemoteImage) -> bool:
    """Whether a cached file can be kept as it is."""
    try:
        _validate(data, image)
    except (_Transient, _Permanent):
        return False
    return True
