import resource
from collections.abc import Callable

import numpy as np
import pytest

from conftest import STAGE_PARAMS, assert_one_line_error, run_augment, striped_processed, write_params
from imgcls.core.errors import ImgclsError
from imgcls.data.augment import check_fits_in_memory, oversample, random_affine
from imgcls.data.packed import PackedSplit


def train_split(counts):
    labels = np.concatenate([np.full(n, i) for i, n in enumerate(counts)]).astype(np.int64)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(len(labels), 16, 16, 3), dtype=np.uint8)
    return PackedSplit(images, labels, np.arange(100, 100 + len(labels), dtype=np.int64))


def run(split, target=None, seed=0):
    return oversample(split, target, rotation_deg=20, scale=(0.9, 1.1), hflip=True, seed=seed, first_new_id=10_000)


def test_every_class_reaches_the_majority_count_by_default():
    result, _ = run(train_split([30, 7, 12]))
    assert np.bincount(result.labels).tolist() == [30, 30, 30]


def test_explicit_target_oversamples_every_class_below_it():
    result, _ = run(train_split([30, 7, 12]), target=40)
    assert np.bincount(result.labels).tolist() == [40, 40, 40]


def test_provenance_points_at_train_images_of_the_same_class():
    split = train_split([30, 7, 12])
    result, sources = run(split)
    originals = dict(zip(split.ids.tolist(), split.labels.tolist()))
    assert (result.ids[: len(split.ids)] == sources[: len(split.ids)]).all()
    new = slice(len(split.ids), None)
    assert set(sources[new].tolist()) <= set(originals)
    assert all(originals[s] == label for s, label in zip(sources[new].tolist(), result.labels[new].tolist()))
    assert len(set(result.ids.tolist())) == len(result.ids) and result.ids[new].min() == 10_000
    # Round-robin: the 23 copies of class 1 reuse each of its 7 originals 3 or 4 times.
    reuse = np.bincount(sources[new][result.labels[new] == 1] - 100)
    assert set(reuse[reuse > 0].tolist()) <= {3, 4}


def test_originals_are_unchanged_and_copies_are_transformed():
    split = train_split([10, 3])
    result, sources = run(split)
    assert (result.images[:13] == split.images).all()
    for image, source in zip(result.images[13:], sources[13:]):
        assert not (image == split.images[source - 100]).all()


def test_same_seed_same_samples():
    split = train_split([10, 3])
    (a, _), (b, _), (c, _) = run(split, seed=1), run(split, seed=1), run(split, seed=2)
    assert (a.images == b.images).all() and not (a.images == c.images).all()


def test_balanced_input_passes_through():
    split = train_split([5, 5])
    result, sources = run(split)
    assert result is split and (sources == split.ids).all()


def test_identity_affine_is_lossless():
    image = np.random.default_rng(1).integers(0, 256, (9, 9, 3), dtype=np.uint8)
    assert (random_affine(image, 0.0, 1.0, False) == image).all()
    assert (random_affine(image, 0.0, 1.0, True) == image[:, ::-1]).all()


def test_heavy_oversampling_is_warned_about_by_class_and_factor(tmp_path):
    out = tmp_path / "out"
    result = run_augment(
        write_params(tmp_path, STAGE_PARAMS), striped_processed(tmp_path, train_per_class=(30, 6, 5)), out
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: augment:")]
    assert len(warnings) == 1, result.stderr  # 'b' grows exactly 5x: not more than 5x
    assert "class 'c' is oversampled 6.0x (5 -> 30 images)" in warnings[0]


def _memory_limit(limit: int) -> Callable[[], None]:
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.slow
def test_an_absurd_augment_target_is_refused_before_any_work(tmp_path):
    out = tmp_path / "out"
    result = run_augment(
        write_params(tmp_path, "augment:\n  target: 1000000000000\n"),
        striped_processed(tmp_path),
        out,
        # A regression must not take the shared machine's memory: it fails within these 4 GiB instead.
        preexec_fn=_memory_limit(4 * 2**30),
        timeout=120,
    )
    assert_one_line_error(
        result,
        "error: augment.target: 1000000000000 per class makes 3000000000000 train images of 16x16x3",
        "use at most",
    )
    assert not out.exists()


def test_the_augment_target_must_fit_in_half_the_memory():
    sizes, shape = [1000] * 10, (32, 32, 3)  # 30 MiB of images
    check_fits_in_memory(1000, sizes, shape, memory_bytes=64 * 2**20)
    message = (
        r"augment.target: 1000 per class makes 10000 train images of 32x32x3 \(0.03 GiB\), "
        r"more than half of .* 0.05 GiB .*use at most 853"
    )
    with pytest.raises(ImgclsError, match=message):
        check_fits_in_memory(1000, sizes, shape, memory_bytes=50 * 2**20)
