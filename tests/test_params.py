import pytest
import yaml

from imgcls.errors import ImgclsError
from imgcls.params import load_params, parse_section

EXTRACT = {"annotations": "a.json", "images": "imgs", "categories": ["cat", "dog"]}


def test_typo_in_a_key_fails_and_suggests_the_real_one():
    with pytest.raises(ImgclsError, match=r"extract\.per_categroy: unknown key; did you mean 'per_category'\?"):
        parse_section("extract", {**EXTRACT, "per_categroy": 5})


def test_unknown_section_is_an_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"extrct": EXTRACT}))
    with pytest.raises(ImgclsError, match="extrct: unknown section; did you mean 'extract'"):
        load_params(path, "extract")


def test_numbers_written_as_strings_by_dvc_exp_run_are_numbers(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("augment:\n  rotation_deg: 1e-07\n  scale: ['9e-01', 1.1]\n")
    assert yaml.safe_load(path.read_text())["augment"]["rotation_deg"] == "1e-07"  # why the schema must coerce
    (augment,) = load_params(path, "augment")
    assert augment.rotation_deg == pytest.approx(1e-7) and augment.scale == (0.9, 1.1)


@pytest.mark.parametrize(
    ("fractions", "message"),
    [([0.7, 0.2, 0.2], "must sum to 1"), ([1.2, -0.1, -0.1], "must be > 0"), ([0.5, 0.5], "split.fractions")],
)
def test_bad_split_fractions_name_the_key(fractions, message):
    with pytest.raises(ImgclsError, match=message):
        parse_section("split", {"fractions": fractions})


def test_missing_required_key_is_named():
    with pytest.raises(ImgclsError, match=r"extract\.images: required key is missing"):
        parse_section("extract", {"annotations": "a.json", "categories": ["a", "b"]})


def test_wrong_literal_lists_valid_values():
    with pytest.raises(ImgclsError, match=r"normalize\.resize: .*'pad' or 'stretch'"):
        parse_section("normalize", {"resize": "crop"})
