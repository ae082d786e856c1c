"""What the atlas notebooks under ``examples/`` run: one page, shown inline.

Each notebook is a few lines around :func:`show_page`, so the notebooks and
``widelimit atlas`` share one implementation (the page modules) and one display.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from widelimit.atlas import page_module, resolve_page

__all__ = ["show_page"]


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (which can show Markdown and images inline)."""
    try:
        from IPython import get_ipython
    except ImportError:  # IPython is not a dependency: plain Python
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def show_page(
    page: str | int, *, full: bool | None = None, out: str | os.PathLike | None = None
) -> Any:
    """Compute one atlas page and show its headline, formula, figures, tables and the
    published numbers: inline in a Jupyter notebook, as text elsewhere.

    In a notebook the formula is rendered as Markdown and the figures are shown inline. Run
    as a plain script (``python examples/atlas_1_distributions.py``, or in a terminal
    IPython) the formula is printed as text and the figures are saved as PNG files, each
    printed with its path and caption.

    Args:
        page: page name or number (as for ``widelimit atlas PAGE``).
        full: full sizes; default: quick sizes unless ``WIDELIMIT_ATLAS_FULL=1``.
        out: where figures are saved outside a notebook; default ``$WIDELIMIT_EXAMPLES_DIR``
            or ``./widelimit-examples/``, in a sub-directory named after the page.
    Returns:
        The page module's ``Result`` dataclass (every plotted number).
    """
    notebook = _in_notebook()
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
    if notebook:
        from IPython.display import Markdown, display

        display(Markdown(content.formula))
        fig_dir = Path(tempfile.mkdtemp())
    else:
        print(content.formula)
        base = out if out is not None else os.environ.get("WIDELIMIT_EXAMPLES_DIR")
        fig_dir = Path(base or "widelimit-examples") / resolve_page(page)
        fig_dir.mkdir(parents=True, exist_ok=True)
    if content.falsified_by:
        print(f"What would have falsified the theory: {content.falsified_by}")
    from widelimit.atlas import mark_quick

    for fig in mod.figures(res, fig_dir):
        fig = fig if full else mark_quick(fig)
        if notebook:
            from IPython.display import Image, display

            display(Image(filename=str(fig.path)))
            print(fig.caption)
        else:
            print(f"figure saved to {fig.path}: {fig.caption}")
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
