"""The other two sources end to end through the extract stage: COCO by URL (loopback) and image folders."""

from __future__ import annotations

import csv
import functools
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest

from conftest import archived_image, run_extract


def manifest(root: Path) -> list[dict[str, str]]:
    with open(root / "out" / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


class CountingHandler(SimpleHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: object) -> None:
        CountingHandler.requests.append(self.path)


@pytest.fixture
def image_server(tmp_path, monkeypatch) -> Iterator[tuple[str, Path]]:
    """A static file server on 127.0.0.1 standing in for images.cocodataset.org.

    The extract stage runs in this process: it reaches the server directly, whatever proxy the machine sets.
    """
    monkeypatch.setenv("no_proxy", "*")
    served = tmp_path / "served"
    served.mkdir()
    CountingHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(CountingHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()


def test_coco_by_url_fetches_only_selected_images_and_resumes(tmp_path, image_server):
    base, served = image_server
    coco = {
        "images": [],
        "annotations": [],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "cow"}],
    }
    for image_id in range(1, 25):
        name = f"{image_id:012d}.jpg"
        pixels = np.full((48, 64, 3), image_id * 9, np.uint8)
        if image_id != 7:  # image 7 is missing on the server: a 404
            cv2.imwrite(str(served / name), pixels)
        coco["images"].append(
            {"id": image_id, "file_name": name, "width": 64, "height": 48, "coco_url": f"{base}/{name}"}
        )
        category = 3 if image_id > 20 else 1 + image_id % 2
        coco["annotations"].append(
            {
                "id": image_id,
                "image_id": image_id,
                "category_id": category,
                "bbox": [0, 0, 1, 1],
                "area": 1,
                "iscrowd": 0,
            }
        )
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    cache = tmp_path / "cache"
    cache.mkdir()
    extract = {
        "annotations": str(tmp_path / "annotations.json"),
        "images": str(cache),
        "categories": ["cat", "dog"],
        "side_px": 16,
        "download": True,
        "download_workers": 4,
        "download_timeout": 5,
        "download_retries": 1,
        "allowed_hosts": ["127.0.0.1"],
        "on_bad_image": "skip",
        "max_bad_fraction": 0.1,
    }
    result = run_extract(tmp_path, extract)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{i:012d}.jpg" for i in range(1, 21) if i != 7)
    assert not any(r.endswith(("21.jpg", "22.jpg", "23.jpg", "24.jpg")) for r in CountingHandler.requests), (
        "unselected cow images are never fetched"
    )
    assert len(manifest(tmp_path)) == 19
    bad = (tmp_path / "out" / "bad_images.csv").read_text()
    assert "000000000007.jpg" in bad and "download failed" in bad

    CountingHandler.requests = []
    assert run_extract(tmp_path, extract).returncode == 0
    assert CountingHandler.requests == ["/000000000007.jpg"] * 2, (
        "valid files are reused; only the missing one is retried"
    )


def test_download_refuses_hosts_outside_the_allowlist(tmp_path, image_server):
    base, _ = image_server
    coco = {
        "images": [
            {"id": i, "file_name": f"{i}.jpg", "width": 8, "height": 8, "coco_url": f"{base}/{i}.jpg"} for i in (1, 2)
        ],
        "annotations": [
            {"id": i, "image_id": i, "category_id": i, "bbox": [0, 0, 1, 1], "area": 1, "iscrowd": 0} for i in (1, 2)
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    (tmp_path / "cache").mkdir()
    result = run_extract(
        tmp_path,
        {
            "annotations": str(tmp_path / "annotations.json"),
            "images": str(tmp_path / "cache"),
            "categories": ["cat", "dog"],
            "download": True,
        },
    )
    assert result.returncode != 0 and "images.cocodataset.org" in result.stderr and "127.0.0.1" in result.stderr
    assert CountingHandler.requests == [] and not (tmp_path / "out").exists()


def test_image_folder_source(tmp_path):
    root = tmp_path / "flowers"
    for index, (name, suffix) in enumerate(
        [("daisy", ".jpg"), ("rose", ".png"), ("tulip", ".bmp"), ("tulip", ".webp")] * 6
    ):
        (root / name).mkdir(parents=True, exist_ok=True)
        pixels = np.full((40 + index, 50, 3), 10 * index, np.uint8)
        assert cv2.imwrite(str(root / name / f"img{index:02d}{suffix}"), pixels)
    (root / "rose" / "notes.txt").write_text("not an image, not picked up")
    (root / "ignored_class").mkdir()
    (root / "ignored_class" / "x.png").write_bytes(b"")
    extract = {
        "source": "folder",
        "annotations": str(root),
        "images": str(root),
        "categories": ["daisy", "rose", "tulip"],
        "side_px": 20,
        "per_category": 6,
        "on_bad_image": "fail",
    }
    result = run_extract(tmp_path, extract)
    assert result.returncode == 0, result.stderr
    rows = manifest(tmp_path)
    assert [r["category"] for r in rows].count("tulip") == 6 and len(rows) == 18
    assert {Path(r["source_file"]).suffix for r in rows} == {".jpg", ".png", ".bmp", ".webp"}
    assert all(r["source_file"].split("/")[0] == r["category"] for r in rows)
    for row in rows:
        image = archived_image(tmp_path / "out", row["file"])
        assert max(image.shape[:2]) == 20

    missing = run_extract(tmp_path, {**extract, "categories": ["daisy", "roses"]})
    assert missing.returncode != 0 and "'roses' (did you mean 'rose'?)" in missing.stderr
