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
# # Atlas 2: The infinite-width limit
#
# The outputs of finite nets approach a Gaussian process: QQ plots, the joint law at two inputs
# against the NNGP ellipses, and the empirical output kernel concentrating on the NNGP.
#
# This notebook calls the same functions as `widelimit atlas limit` (module
# `widelimit.atlas.limit`): `show_page` runs `compute` (a dataclass of every plotted
# number, returned as `res`), draws the `figures` and prints the `content`. Quick sizes by
# default; set the environment variable `WIDELIMIT_ATLAS_FULL=1` for the full sizes.
#
# Run as a plain script (`python examples/atlas_2_limit.py`) it prints the page as text
# and saves its figures under `./widelimit-examples/limit/`
# (or `$WIDELIMIT_EXAMPLES_DIR/limit/`).

# %%
from widelimit.atlas.notebook import show_page

res = show_page("limit")  # quick sizes unless WIDELIMIT_ATLAS_FULL=1
