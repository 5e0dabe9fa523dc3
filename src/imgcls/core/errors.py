"""The one exception type a user should ever see from imgcls, and the phrases its messages share."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ImgclsError(Exception):
    """Bad input: the message names the key, file or image and what would be valid."""


def did_you_mean(word: str, known: Iterable[str], n: int = 1) -> str:
    """`did you mean 'x'?` with up to `n` close known names, or "" when none is close, for a typo's error line."""
    close = difflib.get_close_matches(word, list(known), n=n)
    return f"did you mean {', '.join(repr(name) for name in close)}?" if close else ""


def first_of(items: Iterable[str], shown: int = 5, separator: str = ", ") -> str:
    """The first `shown` items and how many more there are: an error line stays one line however long the list."""
    listed = list(items)
    more = f" and {len(listed) - shown} more" if len(listed) > shown else ""
    return separator.join(listed[:shown]) + more
