"""A page template for `dvc plots show` and `dvc plots diff` that draws the plots with no network.

DVC's own page loads vega, vega-lite and vega-embed from a CDN, so on an offline machine it stays
blank. This template carries the three libraries inline, as the locked vl-convert-python package
ships them:

    python -m imgcls.evaluate.plots_page data/plots_page.html
    dvc plots show --html-template data/plots_page.html -o dvc_plots
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import vl_convert

from imgcls.core import atomic
from imgcls.core.cli import stage_main
from imgcls.core.errors import ImgclsError

# DVC's plot templates are Vega-Lite v5 specs; the v6 compiler warns on each one and may draw them differently.
VEGA_LITE_VERSION = "5.21"

# dvc_render replaces these anywhere in the template's text. `{scripts}` is where it puts its CDN
# <script src> tags, so the page leaves it out; the bundle must hold none of them.
_DVC_PLACEHOLDERS = ("{plot_divs}", "{refresh_tag}", "{scripts}")

# Inside <script>, `</script` ends the element and `<!--` can swallow the rest of the page.
_UNSAFE_IN_SCRIPT = ("</script", "<!--")

# dvc_render's default page, with the libraries inline where it has `{scripts}`.
_PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <script>
{vega_script}
    </script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def vega_script() -> str:
    """vega, vega-lite and vega-embed as one classic script that defines only `vega`, `vegaLite` and `vegaEmbed` on
    `window`."""
    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE_VERSION)
    found = [s for s in (*_DVC_PLACEHOLDERS, *_UNSAFE_IN_SCRIPT) if s in bundle.lower()]
    if found:
        raise ImgclsError(
            f"vl-convert-python {version('vl-convert-python')}: its Vega bundle contains {found}, which would break "
            f"the page; "
            "install the version requirements.lock pins (make install)"
        )
    # A classic script, not type="module": DVC's per-plot scripts call vegaEmbed while the page is parsed,
    # before any module runs. The bundle is a flattened ES module, so the function keeps its minified
    # top-level names out of the global scope (where DVC's `var spec` could collide with them), and
    # "use strict" gives it the semantics it had as a module.
    return f'(function () {{\n"use strict";\n{bundle}\n}})();'


def page_template() -> str:
    """The HTML template, with `{plot_divs}` and `{refresh_tag}` left for DVC to fill."""
    return _PAGE.replace("{vega_script}", vega_script())


def write_page_template(path: Path) -> None:
    atomic.write_text(path, page_template())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "template", type=Path, help="where to write the template (pass it to dvc plots show/diff --html-template)"
    )
    args = parser.parse_args(argv)
    stage_main(lambda: write_page_template(args.template))


if __name__ == "__main__":
    main()
