"""Bad input ends with a clear error that names the key, file or image, a non-zero exit, and no output."""

from __future__ import annotations

import csv
import struct
import zlib
from collections.abc import Callable

import cv2
import numpy as np
import pytest

from conftest import GOOD_PNG, CocoCase, distinct_png, write_params
from imgcls.core.errors import ImgclsError
from imgcls.core.params import parse_section, read_params_file, resolve_model
from imgcls.models.names import MODEL_NAMES


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose (valid, CRC-correct) header claims the given size: a decompression bomb's calling card."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return GOOD_PNG[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + GOOD_PNG[33:]


def set_annotations(text: bytes) -> Callable[[CocoCase], None]:
    return lambda c: (c.root / "annotations.json").write_bytes(text)


def set_file_name(name: str) -> Callable[[CocoCase], None]:
    return lambda c: c.coco["images"][0].update(file_name=name)


def write_image(data: bytes, index: int = 0) -> Callable[[CocoCase], None]:
    return lambda c: (c.images / c.coco["images"][index]["file_name"]).write_bytes(data)


def set_extract(**values) -> Callable[[CocoCase], None]:
    return lambda c: c.params["extract"].update(values)


def truncated_jpeg(case: CocoCase) -> None:
    jpeg = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8))[1].tobytes()
    case.coco["images"][0]["file_name"] = "cut.jpg"
    (case.images / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])


def many_broken(case: CocoCase) -> None:
    case.params["extract"].update(on_bad_image="skip", max_bad_fraction=0.05)
    for image in case.coco["images"][:5]:
        (case.images / image["file_name"]).write_bytes(b"")


HOSTILE = {
    "annotation file missing": (
        set_extract(annotations="/nonexistent/instances.json"),
        "extract.annotations: file not found",
    ),
    "annotation file empty": (set_annotations(b""), "is empty; expected a COCO instances JSON"),
    "annotation file malformed": (set_annotations(b'{"images": [ '), "is not valid JSON"),
    "annotation file not COCO": (
        set_annotations(b"[1, 2]"),
        "must hold a JSON object with images, annotations, categories",
    ),
    "image entry without width": (lambda c: c.coco["images"][3].pop("width"), "images[3].width must be int, got None"),
    "category not in file": (set_extract(categories=["cat", "dgo"]), "'dgo' (did you mean 'dog'?)"),
    "per_category too large": (
        set_extract(per_category=50),
        "extract.per_category: 50 asked but category 'cat' has only 20",
    ),
    "absolute file_name": (set_file_name("/etc/passwd"), "file_name '/etc/passwd' must be a plain file name"),
    "file_name with ..": (set_file_name("../secret.png"), "file_name '../secret.png' must be a plain file name"),
    "file_name with separator": (set_file_name("sub/0001.png"), "file_name 'sub/0001.png' must be a plain file name"),
    "zero-byte image": (write_image(b""), "0001.png: empty file (0 bytes)"),
    "truncated JPEG": (truncated_jpeg, "cut.jpg: could not be decoded (corrupt or truncated)"),
    "truncated PNG": (write_image(GOOD_PNG[: len(GOOD_PNG) // 2]), "0001.png: could not be decoded"),
    "not an image": (write_image(b"GIF? no, plain text"), "0001.png: not an image in a known format"),
    "decompression bomb": (write_image(png_claiming(100_000, 100_000)), "claims 100000x100000 pixels"),
    "size differs from annotation": (
        lambda c: c.coco["images"][0].update(width=41),
        "image is 40x30 but the annotation says 41x30",
    ),
    "too many bad images in skip mode": (many_broken, "extract.max_bad_fraction: 5 of 40 images (12.5%) are unusable"),
    "typo in a key": (set_extract(per_categroy=5), "extract.per_categroy: unknown key; did you mean 'per_category'?"),
    "typo in another stage's key": (
        lambda c: c.params.update(train={"learning_rate": 0.1}),
        "train.learning_rate: unknown key",
    ),
    "unknown section": (lambda c: c.params.update(extrakt={}), "extrakt: unknown section; did you mean 'extract'?"),
    "same picture under two labels": (
        write_image(distinct_png(2), 0),
        "0001.png (cat) and 0002.png (dog) are the same image under two labels",
    ),
    "folder source with a separate annotations file": (
        set_extract(source="folder"),
        "with source: folder the class sub-folders are the labels",
    ),
}


@pytest.mark.parametrize("breakage", list(HOSTILE), ids=list(HOSTILE))
def test_extract_refuses_hostile_input(tmp_path, breakage):
    case = CocoCase(tmp_path)
    breaker, message = HOSTILE[breakage]
    breaker(case)
    result = case.run_extract()
    assert result.returncode != 0, result.stdout
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "[ WARN" not in result.stderr, (
        "only the project's own line, not OpenCV's log"
    )
    assert not (tmp_path / "out").exists(), "no half-written output"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")], "no temporary leftovers"


def test_skip_mode_lists_skipped_images_with_reasons(tmp_path):
    case = CocoCase(tmp_path)
    case.params["extract"].update(on_bad_image="skip", max_bad_fraction=0.1)
    write_image(b"", 0)(case)
    write_image(png_claiming(90_000, 90_000), 1)(case)
    result = case.run_extract()
    assert result.returncode == 0, result.stderr
    bad = (tmp_path / "out" / "bad_images.csv").read_text().splitlines()
    assert bad[0] == "id,source_file,reason" and len(bad) == 3
    assert "0001.png" in bad[1] and "empty file" in bad[1] and "90000x90000" in bad[2]
    manifest = (tmp_path / "out" / "manifest.csv").read_text().splitlines()
    assert len(manifest) == 1 + 38


def test_a_picture_listed_twice_is_kept_once_and_counted(tmp_path):
    case = CocoCase(tmp_path)
    write_image(distinct_png(4), 1)(case)  # image 2, a dog, is image 4 under another name
    result = case.run_extract()
    assert result.returncode == 0, result.stderr
    assert "1 image(s) repeat another's pixels and were kept once" in result.stdout
    with open(tmp_path / "out" / "selection.csv", newline="") as f:
        dog = next(row for row in csv.DictReader(f) if row["category"] == "dog")
    assert (dog["found"], dog["duplicate"], dog["kept"]) == ("20", "1", "19")
    manifest = (tmp_path / "out" / "manifest.csv").read_text()
    assert "0002.png" in manifest and "0004.png" not in manifest, "the first file listed is the copy kept"
    assert (tmp_path / "out" / "duplicates.csv").read_text().splitlines()[1:] == ["4,dog,0004.png,0002.png"]
    assert not (tmp_path / "out" / "images" / "4.png").exists()


PARAM_CASES = {
    "fractions do not sum to 1": (
        "split",
        {"fractions": [0.5, 0.3, 0.3]},
        "split.fractions: fractions [train, val, test] must sum to 1",
    ),
    "negative fraction": ("split", {"fractions": [1.2, -0.1, -0.1]}, "every fraction must be > 0"),
    "zero lr": ("train", {"lr": 0}, "train.lr: Input should be greater than 0"),
    "negative lr": ("train", {"lr": -0.1}, "train.lr: Input should be greater than 0"),
    "zero batch size": ("train", {"batch_size": 0}, "train.batch_size: Input should be greater than 0"),
    "zero epochs": ("train", {"epochs": 0}, "train.epochs: Input should be greater than 0"),
}


@pytest.mark.parametrize("case", list(PARAM_CASES), ids=list(PARAM_CASES))
def test_bad_numbers_name_the_key(case):
    section, raw, message = PARAM_CASES[case]
    with pytest.raises(ImgclsError) as error:
        parse_section(section, raw)
    assert message in str(error.value)


def test_unknown_model_lists_valid_ones(tmp_path):
    path = write_params(tmp_path, {"train": {}, "models": {"resnt18": {}}})
    with pytest.raises(
        ImgclsError,
        match=r"models.resnt18: unknown architecture 'resnt18' \(did you mean 'resnet18'\?\); valid: .*net1",
    ):
        resolve_model(path, "resnt18", MODEL_NAMES)


def test_typo_in_a_model_entry_is_caught(tmp_path):
    path = write_params(tmp_path, {"train": {}, "models": {"net1": {"epoch": 3}}})
    with pytest.raises(ImgclsError, match=r"models.net1.epoch: unknown key; did you mean 'epochs'\?"):
        read_params_file(path)


def test_dvc_exp_run_strings_become_numbers(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  lr: 1e-07\n  weight_decay: '5e-4'\nmodels:\n  net1:\n    lr: 1e-05\n")
    settings = resolve_model(path, "net1", MODEL_NAMES)
    assert isinstance(settings.train.lr, float) and settings.train.lr == pytest.approx(1e-5)
    assert settings.train.weight_decay == pytest.approx(5e-4)
    assert resolve_model(
        write_params(tmp_path, {"train": {"lr": "1e-07"}, "models": {"net2": {}}}), "net2", MODEL_NAMES
    ).train.lr == pytest.approx(1e-7)
