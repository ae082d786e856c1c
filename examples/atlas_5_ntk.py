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
# # Atlas 5: NTK and lazy training
#
# Jacot et al. 2018 Fig. 1 (the NTK on unit-circle inputs at two widths, before and after
# training, with its limit) and Lee et al. 2019 (a trained net beside its linearisation
# `widelimit.linearize` and the analytic NTK flow).
#
# This notebook calls the same functions as `widelimit atlas ntk` (module
# `widelimit.atlas.ntk`): `show_page` runs `compute` (a dataclass of every plotted
# number, returned as `res`), draws the `figures` and prints the `content`. Quick sizes by
# default; set the environment variable `WIDELIMIT_ATLAS_FULL=1` for the full sizes.
#
# Run as a plain script (`python examples/atlas_5_ntk.py`) it prints the page as text
# and saves its figures under `./widelimit-examples/ntk/`
# (or `$WIDELIMIT_EXAMPLES_DIR/ntk/`).

# %%
from widelimit.atlas.notebook import show_page

res = show_page("ntk")  # quick sizes unless WIDELIMIT_ATLAS_FULL=1
