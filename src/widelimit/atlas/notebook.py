"""What the atlas notebooks under ``examples/`` run: one page, shown inline.

Each notebook is a few lines around :func:`show_page`, so the notebooks and
``widelimit atlas`` share one implementation (the page modules) and one display.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from widelimit.atlas import page_module

__all__ = ["show_page"]


def show_page(page: str | int, *, full: bool | None = None) -> Any:
    """Compute one atlas page and display its headline, formula, figures, tables and the
    published numbers in a Jupyter notebook (or print them elsewhere).

    Args:
        page: page name or number (as for ``widelimit atlas PAGE``).
        full: full sizes; default: quick sizes unless ``WIDELIMIT_ATLAS_FULL=1``.
    Returns:
        The page module's ``Result`` dataclass (every plotted number).
    """
    from IPython.display import Image, Markdown, display

    mod = page_module(page)
    if full is None:
        full = os.environ.get("WIDELIMIT_ATLAS_FULL") == "1"
    cfg = mod.Config() if full else mod.Config.quick()
    res = mod.compute(cfg, progress=False)
    h = res.headline
    print(
        f"{h.name}: {h.value:.4g} (theory {h.theory:.4g}, tolerance {h.tolerance:.3g}) ->",
        "agrees" if h.ok else "DISAGREES",
        f"[{res.seconds:.1f} s{'' if full else ', QUICK sizes'}]",
    )
    content = mod.content(res)
    display(Markdown(content.formula))
    if content.falsified_by:
        print(f"What would have falsified the theory: {content.falsified_by}")
    from widelimit.atlas import mark_quick

    for fig in mod.figures(res, Path(tempfile.mkdtemp())):
        fig = fig if full else mark_quick(fig)
        display(Image(filename=str(fig.path)))
        print(fig.caption)
    for table in content.tables:
        print(table.title)
        print(" | ".join(table.columns))
        for row in table.rows:
            print(" | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    for pub in content.published:
        print(
            f"{pub.quantity}: published {pub.published}, error bar: {pub.error_bar} "
            f"({pub.source}, {pub.where}); ours {pub.ours}; {pub.conditions}"
        )
    return res
