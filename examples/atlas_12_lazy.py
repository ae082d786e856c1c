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
# # Atlas 12: Lazy vs feature learning — the output scale α
#
# Chizat, Oyallon & Bach 2019: one net trained as α·(f(w) − f(w₀)) with the loss scaled by
# 1/α², over decades of α: the weights and the NTK move like 1/α (lazy, NTK-like) at large α
# and by O(1) (feature learning) at small α.
#
# This notebook calls the same functions as `widelimit atlas lazy` (module
# `widelimit.atlas.lazy`): `show_page` runs `compute` (a dataclass of every plotted
# number, returned as `res`), draws the `figures` and prints the `content`. Quick sizes by
# default; set the environment variable `WIDELIMIT_ATLAS_FULL=1` for the full sizes.
#
# Run as a plain script (`python examples/atlas_12_lazy.py`) it prints the page as text
# and saves its figures under `./widelimit-examples/lazy/`
# (or `$WIDELIMIT_EXAMPLES_DIR/lazy/`).

# %%
from widelimit.atlas.notebook import show_page

res = show_page("lazy")  # quick sizes unless WIDELIMIT_ATLAS_FULL=1
