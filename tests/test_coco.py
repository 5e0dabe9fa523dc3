from pathlib import Path

import pytest

from conftest import coco_dict
from imgcls.core.errors import ImgclsError
from imgcls.data.coco import classify_images, coco_from_dict, select

CATS = {1: "cat", 3: "dog", 7: "bird"}
IMAGES = Path("images")


def classified(images, crowd="disqualify", other="disqualify", chosen=("cat", "dog")):
    coco = coco_from_dict(coco_dict(images, CATS))
    ids = {name: cid for cid, name in CATS.items() if name in chosen}
    return classify_images(coco, ids, crowd, other)


def eligible(images, crowd="disqualify", other="disqualify", chosen=("cat", "dog")):
    return classified(images, crowd, other, chosen)[0]


def test_image_with_one_chosen_category_is_kept_and_two_are_dropped():
    result = eligible([(1, [(1, 0)]), (2, [(1, 0), (1, 0)]), (3, [(1, 0), (3, 0)]), (4, [(3, 0)])])
    assert result == {"cat": [1, 2], "dog": [4]}


@pytest.mark.parametrize(
    ("rule", "expected"), [("disqualify", {"cat": [2], "dog": []}), ("ignore", {"cat": [1, 2], "dog": []})]
)
def test_crowd_rule(rule, expected):
    assert eligible([(1, [(1, 0), (1, 1)]), (2, [(1, 0)])], crowd=rule) == expected


def test_crowd_only_image_is_never_eligible():
    assert eligible([(1, [(1, 1)])], crowd="ignore") == {"cat": [], "dog": []}


@pytest.mark.parametrize(("rule", "expected"), [("disqualify", []), ("ignore", [1])])
def test_other_categories_rule(rule, expected):
    assert eligible([(1, [(1, 0), (7, 0)])], other=rule)["cat"] == expected


def test_per_category_draw_is_seeded_sorted_and_without_replacement():
    images = [(i, [(1 if i % 2 else 3, 0)]) for i in range(1, 41)]
    coco = coco_from_dict(coco_dict(images, CATS))
    first = select(coco, IMAGES, ["cat", "dog"], 5, seed=3)[0]
    again = select(coco, IMAGES, ["cat", "dog"], 5, seed=3)[0]
    other = select(coco, IMAGES, ["cat", "dog"], 5, seed=4)[0]
    assert first == again
    assert [r.image_id for r in first] != [r.image_id for r in other]
    ids = [r.image_id for r in first]
    assert ids == sorted(ids) and len(set(ids)) == 10
    assert sum(r.category == "cat" for r in first) == 5
    assert all((r.image_id % 2 == 1) == (r.category == "cat") for r in first)


def test_per_category_larger_than_available_says_how_many():
    coco = coco_from_dict(coco_dict([(1, [(1, 0)]), (2, [(3, 0)]), (3, [(3, 0)])], CATS))
    with pytest.raises(ImgclsError, match=r"per_category.*'cat' has only 1"):
        select(coco, IMAGES, ["cat", "dog"], 2, seed=0)


def test_unknown_category_lists_close_matches():
    coco = coco_from_dict(coco_dict([(1, [(1, 0)])], CATS))
    with pytest.raises(ImgclsError, match=r"'dgo' \(did you mean 'dog'\?\)"):
        select(coco, IMAGES, ["cat", "dgo"], None, seed=0)


def test_not_a_coco_file_is_refused():
    with pytest.raises(ImgclsError, match="no 'annotations' list"):
        coco_from_dict({"images": [], "categories": []})


def test_each_removed_image_is_counted_under_the_rule_that_removed_it():
    images = [
        (1, [(1, 0)]),
        (2, [(1, 0), (1, 1)]),
        (3, [(1, 0), (7, 0)]),
        (4, [(1, 0), (3, 0)]),
        (5, [(3, 1)]),
        (6, []),
        (7, [(7, 0)]),
    ]
    _, removed = classified(images)
    assert removed == {
        "cat": {"crowd": 1, "other_categories": 1, "several_categories": 1},
        "dog": {"several_categories": 1, "crowd": 1},
    }
    kept, removed = classified(images, crowd="ignore", other="ignore")
    assert kept == {"cat": [1, 2, 3], "dog": []}
    assert removed == {"cat": {"several_categories": 1}, "dog": {"several_categories": 1, "crowd": 1}}, (
        "a crowd alone is never a label"
    )
