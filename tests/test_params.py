import difflib
import typing
from collections.abc import Iterator

import pytest
import yaml
from pydantic import BaseModel

from conftest import REPO
from imgcls.core.errors import ImgclsError
from imgcls.core.params import PARAM_SECTIONS, ModelOptions, load_params, parse_section

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


@pytest.mark.parametrize(
    ("key", "values", "message"),
    [
        ("normalize_mean", [123.7, 116.3, 103.5], r"train\.normalize_mean: .*0-1 pixel scale \(0 <= mean <= 1\)"),
        ("normalize_std", [0.5, 0.0, 0.5], r"train\.normalize_std: .*0-1 pixel scale \(0 < std <= 1\)"),
        ("normalize_std", [0.5, 0.5], r"train\.normalize_std: too few values, item 2 \(counting from 0\) is missing"),
    ],
)
def test_normalisation_statistics_must_be_three_on_the_unit_scale(key, values, message):
    with pytest.raises(ImgclsError, match=message):
        parse_section("train", {key: values})


def test_normalisation_statistics_written_by_dvc_as_strings_are_numbers():
    assert parse_section("train", {"normalize_mean": ["5e-01", 0.5, 0.5]}).normalize_mean == (0.5, 0.5, 0.5)


def test_a_bootstrap_of_fewer_than_a_thousand_resamples_is_refused():
    with pytest.raises(ImgclsError, match=r"evaluate\.bootstrap_resamples: .*greater than or equal to 1000 \(got 100"):
        parse_section("evaluate", {"bootstrap_resamples": 100})


def test_missing_required_key_is_named():
    with pytest.raises(ImgclsError, match=r"extract\.images: required key is missing"):
        parse_section("extract", {"annotations": "a.json", "categories": ["a", "b"]})


def test_wrong_literal_lists_valid_values():
    with pytest.raises(ImgclsError, match=r"normalize\.resize: .*'pad' or 'stretch'"):
        parse_section("normalize", {"resize": "crop"})


# DVC's run cache leaves keys with these names out of its key (treeverse/dvc#10296): a change to one
# would restore stale outputs from the cache instead of rerunning the stage.
DVC_IGNORED_KEY_NAMES = {"size", "nfiles"}


def _schema_keys(schema: type[BaseModel], prefix: str) -> Iterator[str]:
    for name, info in schema.model_fields.items():
        yield f"{prefix}{name}"
        for nested in typing.get_args(info.annotation) or (info.annotation,):
            if isinstance(nested, type) and issubclass(nested, BaseModel):
                yield from _schema_keys(nested, f"{prefix}{name}.")


def _yaml_keys(mapping: dict, prefix: str = "") -> Iterator[str]:
    for key, value in mapping.items():
        yield f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _yaml_keys(value, f"{prefix}{key}.")


def test_no_params_key_is_one_the_dvc_run_cache_ignores():
    schema_keys = [key for name, schema in PARAM_SECTIONS.items() for key in _schema_keys(schema, f"{name}.")]
    schema_keys += list(_schema_keys(ModelOptions, "models.<name>."))
    shipped_keys = list(_yaml_keys(yaml.safe_load((REPO / "params.yaml").read_text())))
    assert len(schema_keys) > 50 and len(shipped_keys) > 50
    offending = [k for k in schema_keys + shipped_keys if k.rsplit(".", 1)[-1] in DVC_IGNORED_KEY_NAMES]
    assert not offending, f"DVC's run cache ignores these keys: {offending}"


def test_the_old_size_key_points_to_its_new_name(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"extract": {**EXTRACT, "size": 32}}))
    with pytest.raises(ImgclsError, match=r"extract\.size: renamed to extract\.side_px"):
        load_params(path, "extract")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.lr=0.0001", ["-  lr: 0.001", "+  lr: 0.0001"]),
        ("augment.scale=[0.8,1.2]", ["-  - 0.9", "-  - 1.1", "+  - 0.8", "+  - 1.2"]),
        ("split.per_class=[10,2]", ["+  - 10", "+  - 2"]),
    ],
)
def test_dvc_exp_run_set_param_changes_only_the_lines_it_sets(tmp_path, override, expected):
    """`dvc exp run -S` rewrites params.yaml through ruamel; a reviewer's diff must show the change, not a reformat."""
    from dvc.utils.hydra import apply_overrides

    shipped = (REPO / "params.yaml").read_text().splitlines()
    path = tmp_path / "params.yaml"
    path.write_text("\n".join(shipped) + "\n")
    apply_overrides(path, [override])
    diff = difflib.unified_diff(shipped, path.read_text().splitlines(), lineterm="", n=0)
    changed = [line.split("#")[0].rstrip() for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == expected
