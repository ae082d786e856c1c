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
# # Atlas 1: Distributional representation
#
# Pre-activations of random finite nets against their Gaussian limit N(0, q^l): histograms per
# width and the KS/W1 distances, which shrink like n^-1/2.
#
# This notebook calls the same functions as `widelimit atlas distributions` (module
# `widelimit.atlas.distributions`): `show_page` runs `compute` (a dataclass of every plotted
# number, returned as `res`), draws the `figures` and prints the `content`. Quick sizes by
# default; set the environment variable `WIDELIMIT_ATLAS_FULL=1` for the full sizes.
#
# Run as a plain script (`python examples/atlas_1_distributions.py`) it prints the page as text
# and saves its figures under `./widelimit-examples/distributions/`
# (or `$WIDELIMIT_EXAMPLES_DIR/distributions/`).

# %%
from widelimit.atlas.notebook import show_page

res = show_page("distributions")  # quick sizes unless WIDELIMIT_ATLAS_FULL=1
