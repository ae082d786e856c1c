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
# # Atlas 8: Trained ensembles and the NTK Gaussian process
#
# Lee et al. 2019: many finite nets trained by gradient descent against the NTK Gaussian
# process (`widelimit.gradient_descent_mse_ensemble`): the ensemble's test mean and variance
# during and after training, and how their discrepancies fall with width.
#
# This notebook calls the same functions as `widelimit atlas ensembles` (module
# `widelimit.atlas.ensembles`): `show_page` runs `compute` (a dataclass of every plotted
# number, returned as `res`), draws the `figures` and prints the `content`. Quick sizes by
# default; set the environment variable `WIDELIMIT_ATLAS_FULL=1` for the full sizes.
#
# Run as a plain script (`python examples/atlas_8_ensembles.py`) it prints the page as text
# and saves its figures under `./widelimit-examples/ensembles/`
# (or `$WIDELIMIT_EXAMPLES_DIR/ensembles/`).

# %%
from widelimit.atlas.notebook import show_page

res = show_page("ensembles")  # quick sizes unless WIDELIMIT_ATLAS_FULL=1
