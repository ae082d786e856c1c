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
# # Atlas 6: Mean-field dynamics
#
# SGD on two-layer nets at several N beside the exact mean-field PDE (Mei, Montanari, Nguyen
# 2018) and the SP/NTK/MF/μP coordinate check (Yang & Hu 2021).
#
# This notebook calls the same functions as `widelimit atlas meanfield` (module
# `widelimit.atlas.meanfield`): `show_page` runs `compute` (a dataclass of every plotted
# number, returned as `res`), draws the `figures` and prints the `content`. Quick sizes by
# default; set the environment variable `WIDELIMIT_ATLAS_FULL=1` for the full sizes.
#
# Run as a plain script (`python examples/atlas_6_meanfield.py`) it prints the page as text
# and saves its figures under `./widelimit-examples/meanfield/`
# (or `$WIDELIMIT_EXAMPLES_DIR/meanfield/`).

# %%
from widelimit.atlas.notebook import show_page

res = show_page("meanfield")  # quick sizes unless WIDELIMIT_ATLAS_FULL=1
