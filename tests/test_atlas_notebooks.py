"""The atlas notebooks (``examples/atlas_*.py``, jupytext percent format) executed at quick
sizes with nbclient + ipykernel: they call the same page functions as ``widelimit atlas``.
A kernel start plus a page costs ~15-45 s on a loaded 2-core machine, so the notebooks run in
the slow suite (CI runs it); the default suite checks that each page has its notebook."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("atlas_*.py"))


def _execute(path: Path) -> None:
    jupytext = pytest.importorskip("jupytext", reason="needs the dev extra (jupytext)")
    nbclient = pytest.importorskip("nbclient", reason="needs the dev extra (nbclient)")
    pytest.importorskip("ipykernel", reason="needs the dev extra (ipykernel)")
    nb = jupytext.read(path)
    env_full = os.environ.pop("WIDELIMIT_ATLAS_FULL", None)  # quick sizes
    try:
        meta = {"metadata": {"path": str(EXAMPLES)}}
        client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3", resources=meta)
        client.execute()
    finally:
        if env_full is not None:
            os.environ["WIDELIMIT_ATLAS_FULL"] = env_full
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "agrees" in text and "DISAGREES" not in text
    assert any("image/png" in o.get("data", {}) for o in outputs)


def test_one_notebook_per_page_numbered_as_the_cli():
    from widelimit.atlas import PAGES

    by_page = {re.fullmatch(r"atlas_(\d+)_(\w+)\.py", p.name).group(2): p for p in NOTEBOOKS}
    assert sorted(by_page) == sorted(PAGES)
    numbers = [int(by_page[p].name.split("_")[1]) for p in PAGES]
    assert numbers == list(range(1, len(PAGES) + 1))
    for page, path in by_page.items():
        assert f'show_page("{page}")' in path.read_text()  # widelimit.atlas.notebook


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path):
    _execute(path)
