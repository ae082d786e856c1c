"""The documentation site builds in strict mode: a broken link, anchor, nav entry or API
reference (a ``:::`` block naming a module that no longer exists) fails the suite.

Needs the ``docs`` extra (``pip install -e ".[docs]"``; the ``dev`` extra includes it).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python", "material")


def _missing() -> list[str]:
    out = []
    for name in NEEDED:
        try:
            if importlib.util.find_spec(name) is None:
                out.append(name)
        except ModuleNotFoundError:
            out.append(name)
    return out


needs_mkdocs = pytest.mark.skipif(
    bool(_missing()),
    reason="mkdocs/mkdocstrings/mkdocs-material not installed: pip install -e '.[docs]'",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
         "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


@needs_mkdocs
def test_docs_build_strict(site: Path) -> None:
    for page in ("index.html", "kernels/index.html", "api/layers/index.html"):
        assert (site / page).is_file(), f"{page} missing from the built site"
    # the API reference really rendered docstrings (not an empty page)
    layers = (site / "api/layers/index.html").read_text(encoding="utf-8")
    assert "widelimit.layers.dense.Dense" in layers


@needs_mkdocs
def test_getting_started_page_opens_in_chromium(site: Path) -> None:
    """A newcomer's first page, opened as a browser does: no console error (nothing loaded
    from other hosts: the theme's web fonts are off), its title and the set-up commands, and
    every image on it loads (the page has none today; the demo report's images are checked
    in tests/test_atlas.py)."""
    from cdp_pipe import Browser, find_chromium

    chromium = find_chromium()
    if chromium is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install -y chromium)")
    page = site / "getting-started" / "index.html"
    with Browser(chromium) as browser:
        check = browser.check(page)
    assert "Getting started" in check.title, check.title
    assert check.errors == [], check.errors  # e.g. a resource from another host (fonts)
    bad = [(alt, ok, w) for alt, ok, w in check.images if not ok or w <= 0]
    assert bad == [], (check.url, bad)
    text = page.read_text(encoding="utf-8")
    assert "widelimit demo" in text and "python -m pytest" in text


def test_docstrings_cite_pages_that_exist() -> None:
    """Docstrings cite ``docs/<page>.md`` (in the repository), never files outside it."""
    import re

    cited: dict[str, list[str]] = {}
    outside = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        rel = str(path.relative_to(ROOT))
        for page in re.findall(r"docs/([\w/-]+\.md)", text):
            cited.setdefault(page, []).append(rel)
        if re.search(r"\b(DESIGN|STYLE)\.md\b", text):
            outside.append(rel)
    assert not outside, f"cite docs/ pages instead of DESIGN.md/STYLE.md in: {outside}"
    assert cited, "no docstring cites a docs/ page"
    missing = {p: files for p, files in cited.items() if not (ROOT / "docs" / p).is_file()}
    assert not missing, f"docstrings cite docs pages that do not exist: {missing}"
