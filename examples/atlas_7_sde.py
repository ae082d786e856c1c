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
# # Atlas 7: Neural covariance SDE
#
# Finite shaped-ReLU nets with depth d = Tn beside the neural covariance SDE (Li, Nica, Roy
# 2022), and the norm-stability verdict b_* of smooth shaped activations.
#
# This notebook calls the same functions as `widelimit atlas sde` (module
# `widelimit.atlas.sde`): `show_page` runs `compute` (a dataclass of every plotted
# number, returned as `res`), draws the `figures` and prints the `content`. Quick sizes by
# default; set the environment variable `WIDELIMIT_ATLAS_FULL=1` for the full sizes.
#
# Run as a plain script (`python examples/atlas_7_sde.py`) it prints the page as text
# and saves its figures under `./widelimit-examples/sde/`
# (or `$WIDELIMIT_EXAMPLES_DIR/sde/`).

# %%
from widelimit.atlas.notebook import show_page

res = show_page("sde")  # quick sizes unless WIDELIMIT_ATLAS_FULL=1
