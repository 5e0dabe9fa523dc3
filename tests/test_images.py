import csv
import hashlib
import zipfile

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import archived_image
from imgcls.data.coco import Selected
from imgcls.data.extraction import extract_images
from imgcls.data.images import BadImageError, decode, fit_within, header_info, read_image, to_rgb8, to_square
from imgcls.data.square import normalize_images


def test_grayscale_becomes_three_equal_channels():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    rgb = to_rgb8(gray)
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == gray).all() and (rgb[..., 1] == gray).all() and (rgb[..., 2] == gray).all()


def test_bgr_is_reordered_to_rgb():
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 255  # pure blue in OpenCV's order
    assert to_rgb8(bgr)[0, 0].tolist() == [0, 0, 255]


def test_transparent_pixels_composite_onto_white_and_opaque_keep_colour():
    bgra = np.zeros((1, 3, 4), np.uint8)
    bgra[0, 0] = (0, 0, 255, 0)  # red, fully transparent
    bgra[0, 1] = (0, 0, 255, 255)  # red, opaque
    bgra[0, 2] = (0, 0, 0, 128)  # black, half transparent
    rgb = to_rgb8(bgra)
    assert rgb[0, 0].tolist() == [255, 255, 255]
    assert rgb[0, 1].tolist() == [255, 0, 0]
    assert rgb[0, 2].tolist() == [127, 127, 127]


def test_sixteen_bit_is_scaled_down_not_clipped():
    deep = np.array([[0, 257 * 128, 65535, 1000]], dtype=np.uint16)
    assert to_rgb8(deep)[0, :, 0].tolist() == [0, 128, 255, 4]


def test_palette_png_is_expanded(tmp_path):
    palette = Image.new("P", (4, 2))
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.putdata([0, 1, 0, 1, 1, 0, 1, 0])
    path = tmp_path / "palette.png"
    palette.save(path)
    rgb = to_rgb8(read_image(path))
    assert rgb.shape == (2, 4, 3)
    assert rgb[0, 0].tolist() == [10, 20, 30] and rgb[0, 1].tolist() == [200, 100, 50]


def test_read_image_names_the_file_on_garbage(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"not an image")
    with pytest.raises(Exception, match=r"broken\.png"):
        read_image(path)


def test_fit_within_keeps_aspect_ratio():
    assert fit_within(np.zeros((60, 120, 3), np.uint8), 32).shape == (16, 32, 3)
    assert fit_within(np.zeros((10, 20), np.uint8), 40).shape == (20, 40)


def test_pad_keeps_aspect_and_fills_black_while_stretch_fills_the_square():
    wide = np.full((20, 40, 3), 200, np.uint8)
    padded = to_square(wide, 32, "pad")
    stretched = to_square(wide, 32, "stretch")
    assert padded.shape == stretched.shape == (32, 32, 3)
    assert (padded[:8] == 0).all() and (padded[8:24] == 200).all() and (padded[24:] == 0).all()
    assert (stretched == 200).all()


def test_resize_uses_area_interpolation_when_shrinking():
    checker = (np.indices((96, 96)).sum(axis=0) % 2 * 255).astype(np.uint8)
    small = fit_within(checker, 32)
    # INTER_AREA averages each 3x3 block to gray; nearest or linear would sample single black/white pixels.
    assert small.min() > 100 and small.max() < 160


def test_large_jpeg_decodes_at_reduced_scale_with_area_quality(tmp_path):
    rng = np.random.default_rng(0)
    photo = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 3)
    path = tmp_path / "photo.jpg"
    cv2.imwrite(str(path), photo, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert decode(path, side_px=64)[0].shape == (60, 80, 3)
    assert decode(path, side_px=200)[0].shape == (240, 320, 3)
    assert read_image(path).shape == (480, 640, 3)
    reduced = fit_within(decode(path, side_px=64)[0], 64).astype(int)
    full = fit_within(read_image(path), 64).astype(int)
    assert np.abs(reduced - full).mean() < 2.0


def test_reduced_jpeg_keeps_stored_orientation_like_a_full_decode(tmp_path):
    # EXIF orientation 6 asks viewers to rotate 90 degrees; COCO's width/height describe the stored pixels.
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros((128, 256, 3), np.uint8)).save(path, exif=exif)
    assert read_image(path).shape[:2] == (128, 256)
    assert decode(path, side_px=32)[0].shape[:2] == (16, 32)  # 1/8 scale, not turned to (32, 16)


def test_png_is_never_reduced(tmp_path):
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), np.zeros((400, 300), np.uint16))
    decoded = decode(path, side_px=32)[0]
    assert decoded.shape == (400, 300) and decoded.dtype == np.uint16


def test_extracted_and_normalized_images_are_one_reproducible_archive_each(tmp_path):
    # One file per stage keeps `dvc status` from visiting a file per image; the same inputs must give
    # the same archive bytes, or every rerun would look like a data change to DVC and git.
    rng = np.random.default_rng(0)
    records = []
    for image_id in range(1, 41):
        path = tmp_path / "sources" / f"{image_id}.jpg"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (0, 0), 2))
        records.append(Selected(image_id, ("cat", "dog")[image_id % 2], path, path.name))
    for run in ("a", "b"):
        extract_images(records, tmp_path / run / "extracted", 16)
        normalize_images(tmp_path / run / "extracted", tmp_path / run / "normalized", 16, "pad")
    for stage, shape, beside in (("extracted", (12, 16), []), ("normalized", (16, 16), ["preprocessing.json"])):
        first, second = tmp_path / "a" / stage, tmp_path / "b" / stage
        assert sorted(p.name for p in first.iterdir() if p.suffix != ".csv") == ["images.zip", *beside]
        assert (first / "images.zip").read_bytes() == (second / "images.zip").read_bytes()
        with open(first / "manifest.csv", newline="") as f, zipfile.ZipFile(first / "images.zip") as archive:
            rows = list(csv.DictReader(f))
            assert [hashlib.md5(archive.read(r["file"])).hexdigest() for r in rows] == [r["md5"] for r in rows]
        assert {archived_image(first, r["file"]).shape[:2] for r in rows} == {shape}


@pytest.mark.parametrize(
    "save",
    {
        "baseline": lambda image, path: image.save(path, quality=90),
        "progressive": lambda image, path: image.save(path, progressive=True),
        "with EXIF and a long comment": lambda image, path: image.save(path, exif=Image.Exif(), comment=b"x" * 5000),
        "grayscale": lambda image, path: image.convert("L").save(path),
        "CMYK": lambda image, path: image.convert("CMYK").save(path),
    }.values(),
    ids=["baseline", "progressive", "exif", "grayscale", "cmyk"],
)
def test_jpeg_header_size_matches_pils(tmp_path, save):
    # The size gates decoding (bombs, annotation mismatches), so the fast header walk must agree with PIL's parser.
    path = tmp_path / "photo.jpg"
    save(Image.fromarray(np.zeros((37, 53, 3), np.uint8)), path)
    data = path.read_bytes()
    with Image.open(path) as image:
        assert header_info(data, path) == (*image.size, "JPEG") == (53, 37, "JPEG")


def test_malformed_jpeg_header_is_refused_by_name(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xda" + bytes(64))  # scan data with no frame header before it
    with pytest.raises(BadImageError, match=r"broken\.jpg: not an image in a known format"):
        decode(path)
