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
# # Atlas 9: Trainability phase diagram
#
# Finite tanh nets trained over a grid of (σw², depth) on scikit-learn's digits; the depth
# at which they stop training against the correlation depth scale ξ_c of mean-field theory
# and the 6ξ_c line of Schoenholz, Gilmer, Ganguli and Sohl-Dickstein (2017).
#
# This notebook calls the same functions as `widelimit atlas trainability` (module
# `widelimit.atlas.trainability`): `show_page` runs `compute` (a dataclass of every plotted
# number, returned as `res`), draws the `figures` and prints the `content`. Quick sizes by
# default; set the environment variable `WIDELIMIT_ATLAS_FULL=1` for the full sizes.
#
# Run as a plain script (`python examples/atlas_9_trainability.py`) it prints the page as text
# and saves its figures under `./widelimit-examples/trainability/`
# (or `$WIDELIMIT_EXAMPLES_DIR/trainability/`).

# %%
from widelimit.atlas.notebook import show_page

res = show_page("trainability")  # quick sizes unless WIDELIMIT_ATLAS_FULL=1
