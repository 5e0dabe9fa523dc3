"""download_images against a scripted local HTTP server: retries, resume, validation and the host allowlist."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from imgcls.core.errors import ImgclsError
from imgcls.data.download import RemoteImage, download_images

TIMEOUT = 0.5
RETRIES = 3
FAST = dict(timeout=TIMEOUT, retries=RETRIES, backoff=0.01, allowed_hosts=("127.0.0.1",), progress=False, workers=4)


def _encode(ext: str, width: int, height: int) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(ext, pixels)
    assert ok
    return buf.tobytes()


BODIES = {".png": _encode(".png", 16, 12), ".jpg": _encode(".jpg", 20, 10)}
SIZES = {".png": (16, 12), ".jpg": (20, 10)}


def _bomb(width: int, height: int) -> bytes:
    """A small PNG whose CRC-correct header claims `width` x `height` pixels: a decompression bomb's calling card."""
    png = BODIES[".png"]
    chunk = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return png[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + png[33:]


BOMB = _bomb(10_000, 10_000)

# What the server does on the 1st, 2nd, ... request for a path; the last action repeats.
SCRIPTS: dict[str, list[str | int]] = {
    "/ok.png": ["ok"],
    "/busy.png": [503, 503, "ok"],
    "/throttled.jpg": [429, "ok"],
    "/reset.jpg": ["reset", "ok"],
    "/truncated.png": ["truncated", "ok"],
    "/slow.png": ["slow", "ok"],
    "/missing.png": [404],
    "/garbage.jpg": ["garbage"],
    "/redirect.png": ["redirect"],
    "/bomb.png": ["bomb"],
}


class _Server(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            attempt = self.server.counts[self.path]
            self.server.counts[self.path] += 1
        script = SCRIPTS.get(self.path, [404])
        action = script[min(attempt, len(script) - 1)]
        body = BODIES[Path(self.path).suffix]
        if isinstance(action, int):
            self._send(action, b"")
        elif action == "ok":
            self._send(200, body)
        elif action == "garbage":
            self._send(200, b"this is not an image")
        elif action == "truncated":
            self._send(200, body[: len(body) // 2], length=len(body))
        elif action == "slow":
            time.sleep(TIMEOUT * 2)
            with contextlib.suppress(OSError):  # the client gave up long ago
                self._send(200, body)
        elif action == "reset":
            # Linger 0 makes close() send RST instead of FIN; rfile holds a reference that would defer it.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()
            self.close_connection = True
        elif action == "bomb":
            self._send(200, BOMB)
        elif action == "redirect":
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{self.server.server_address[1]}/ok.png")
            self.send_header("Content-Length", "0")
            self.end_headers()

    def _send(self, status: int, body: bytes, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    monkeypatch.setenv("no_proxy", "*")
    srv = _Server()
    # A short poll keeps shutdown() from waiting out the default half-second loop.
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


def _remote(server: _Server, path: str, size: tuple[int, int] | None = None) -> RemoteImage:
    width, height = size or SIZES[Path(path).suffix]
    return RemoteImage(path.lstrip("/"), server.url(path), width, height)


def _assert_valid(dest: Path, image: RemoteImage) -> None:
    decoded = cv2.imdecode(np.fromfile(dest / image.file_name, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded is not None and decoded.shape[:2] == (image.height, image.width)


def test_transient_faults_are_retried_until_success(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "images"
    paths = ["/ok.png", "/busy.png", "/throttled.jpg", "/reset.jpg", "/truncated.png", "/slow.png"]
    images = [_remote(server, p) for p in paths]

    assert download_images(images, dest, **FAST) == []

    for image in images:
        _assert_valid(dest, image)
    assert not list(dest.glob("*.part"))
    assert dict(server.counts) == {
        "/ok.png": 1,
        "/busy.png": 3,
        "/throttled.jpg": 2,
        "/reset.jpg": 2,
        "/truncated.png": 2,
        "/slow.png": 2,
    }


def test_rerun_resumes_without_requests(server: _Server, tmp_path: Path) -> None:
    images = [_remote(server, "/ok.png"), _remote(server, "/throttled.jpg")]
    assert download_images(images, tmp_path, **FAST) == []
    before = dict(server.counts)

    assert download_images(images, tmp_path, **FAST) == []

    assert dict(server.counts) == before


@pytest.mark.parametrize("cached", [b"", b"junk", _encode(".png", 5, 5)], ids=["empty", "junk", "wrong-size"])
def test_invalid_cached_file_is_downloaded_again(server: _Server, tmp_path: Path, cached: bytes) -> None:
    image = _remote(server, "/ok.png")
    (tmp_path / image.file_name).write_bytes(cached)

    assert download_images([image], tmp_path, **FAST) == []

    _assert_valid(tmp_path, image)
    assert server.counts["/ok.png"] == 1


def test_permanent_failures_are_reported_not_stormed(server: _Server, tmp_path: Path) -> None:
    images = [
        _remote(server, "/missing.png"),
        _remote(server, "/ok.png", size=(64, 64)),
        _remote(server, "/garbage.jpg"),
        _remote(server, "/redirect.png"),
    ]

    failures = download_images(images, tmp_path, **FAST)

    assert [(f.file_name, f.url) for f in failures] == [(i.file_name, i.url) for i in images]
    missing, wrong_size, garbage, redirect = (f.reason for f in failures)
    assert "404" in missing
    assert "16x12" in wrong_size and "64x64" in wrong_size
    assert "not a decodable image" in garbage and f"{RETRIES + 1} attempts" in garbage
    assert "302" in redirect and "127.0.0.1" in redirect
    assert dict(server.counts) == {"/missing.png": 1, "/ok.png": 1, "/garbage.jpg": RETRIES + 1, "/redirect.png": 1}
    assert list(tmp_path.iterdir()) == []


def test_connection_refused_is_retried_then_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "*")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    image = RemoteImage("gone.png", f"http://127.0.0.1:{port}/gone.png", 16, 12)

    [failure] = download_images([image], tmp_path, **{**FAST, "retries": 1})

    assert "ConnectionRefusedError" in failure.reason and "2 attempts" in failure.reason


@pytest.mark.parametrize(
    "url", ["http://example.com/ok.png", "ftp://127.0.0.1/ok.png", "file:///etc/passwd", "http:///ok.png"]
)
def test_disallowed_url_is_refused_before_any_request(server: _Server, tmp_path: Path, url: str) -> None:
    images = [_remote(server, "/ok.png"), RemoteImage("bad.png", url, 16, 12)]

    with pytest.raises(ImgclsError, match=r"127\.0\.0\.1") as error:
        download_images(images, tmp_path / "images", **FAST)

    assert url in str(error.value)
    assert not server.counts
    assert not (tmp_path / "images").exists()


@pytest.mark.parametrize("name", ["../x.png", "a/b.png", "/x.png", "..", ".", "", "a\\b.png"])
def test_unsafe_file_name_is_refused(name: str) -> None:
    with pytest.raises(ImgclsError, match="plain file name"):
        RemoteImage(name, "http://127.0.0.1/x.png", 16, 12)


def test_duplicate_file_name_is_refused(server: _Server, tmp_path: Path) -> None:
    images = [_remote(server, "/ok.png"), RemoteImage("ok.png", server.url("/busy.png"), 16, 12)]

    with pytest.raises(ImgclsError, match="listed twice"):
        download_images(images, tmp_path, **FAST)

    assert not server.counts


def test_decompression_bomb_is_refused_from_its_header(
    server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[int] = []
    imdecode = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda buf, flags: decoded.append(len(buf)) or imdecode(buf, flags))
    image = RemoteImage("bomb.png", server.url("/bomb.png"), 10_000, 10_000)
    (tmp_path / image.file_name).write_bytes(BOMB)  # a bomb already in the cache is not decoded either

    [failure] = download_images([image], tmp_path, **FAST)

    assert "10000x10000" in failure.reason and "refused before decoding" in failure.reason
    assert decoded == [], "nothing was decoded"
    assert server.counts["/bomb.png"] == 1, "a refused header is not retried"
