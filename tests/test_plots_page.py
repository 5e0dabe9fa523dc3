"""The offline plots page: Vega inline, nothing loaded from a URL, and DVC fills it for show and diff."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import vl_convert

from conftest import run_command
from imgcls.evaluate.plots_page import main, page_template

EXTERNAL_SCRIPT = re.compile(r"<script\b[^>]*\bsrc\s*=", re.IGNORECASE)


def assert_vega_inline(page: str) -> None:
    assert not EXTERNAL_SCRIPT.search(page), "the page loads a script from elsewhere"
    assert f'"{vl_convert.get_vega_version()}"' in page  # vega's own version constant
    assert "window.vegaEmbed=" in page and "window.vegaLite=" in page


@pytest.fixture(scope="module")
def template() -> str:
    """The page as `main` writes it: bundling the Vega libraries takes vl-convert seconds, so once per module."""
    return page_template()


def test_template_has_dvc_placeholders_and_vega_inline(template: str) -> None:
    assert "{plot_divs}" in template and "{refresh_tag}" in template
    assert "{scripts}" not in template  # where dvc_render puts its CDN <script src> tags
    assert_vega_inline(template)


def test_main_writes_the_template(tmp_path: Path, template: str) -> None:
    target = tmp_path / "new" / "page.html"
    main([str(target)])
    assert target.read_text(encoding="utf-8") == template
    assert [p.name for p in target.parent.iterdir()] == ["page.html"]  # no temporary left beside it


@pytest.fixture
def plots_repo(tmp_path: Path, template: str) -> Path:
    """A git + DVC repository with one top-level CSV plot, committed once and then changed in the workspace.

    The page is the one `main` writes (test_main_writes_the_template), put there without bundling Vega again.
    """
    root = tmp_path / "repo"
    root.mkdir()
    (root / "dvc.yaml").write_text("plots:\n  - acc.csv:\n      x: step\n      y: acc\n")
    (root / "acc.csv").write_text("step,acc\n0,0.111\n1,0.222\n")
    for command in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "plots"],
    ):
        run_command(*command, cwd=root, check=True)
    (root / "acc.csv").write_text("step,acc\n0,0.333\n1,0.444\n")
    (root / "page.html").write_text(template, encoding="utf-8")
    return root


def dvc_plots(root: Path, *args: str) -> str:
    run_command("dvc", "plots", *args, "--html-template", "page.html", "-o", "out", cwd=root, check=True, timeout=300)
    return (root / "out" / "index.html").read_text(encoding="utf-8")


@pytest.mark.e2e
def test_dvc_plots_show_fills_the_offline_page(plots_repo: Path) -> None:
    page = dvc_plots(plots_repo, "show")
    assert_vega_inline(page)
    assert "vegaEmbed('#" in page  # DVC's per-plot script, which needs the inline vegaEmbed
    assert "0.333" in page and "0.444" in page
    assert "{plot_divs}" not in page


@pytest.mark.e2e
def test_dvc_plots_diff_fills_the_offline_page(plots_repo: Path) -> None:
    page = dvc_plots(plots_repo, "diff", "HEAD")
    assert_vega_inline(page)
    assert all(value in page for value in ("0.111", "0.222", "0.333", "0.444"))  # HEAD's and the workspace's points
