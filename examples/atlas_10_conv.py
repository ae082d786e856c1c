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
# # Atlas 10: Convolutional kernels
#
# Novak et al. 2019 (a CNN with many channels is a Gaussian process; with and without
# global average pooling) and Arora et al. 2019 (the convolutional NTK): NNGP and NTK kernel
# regression of a CNN with global average pooling, the same CNN with Flatten, and a fully
# connected net of the same depth on scikit-learn's 8×8 digits (a small data set: a pool of a
# few hundred of its 1,797 images), and finite CNNs of growing channel count converging to
# the analytic kernel at the rate n^-1/2.
#
# This notebook calls the same functions as `widelimit atlas conv` (module
# `widelimit.atlas.conv`): `show_page` runs `compute` (a dataclass of every plotted
# number, returned as `res`), draws the `figures` and prints the `content`. Quick sizes by
# default; set the environment variable `WIDELIMIT_ATLAS_FULL=1` for the full sizes.
#
# Run as a plain script (`python examples/atlas_10_conv.py`) it prints the page as text
# and saves its figures under `./widelimit-examples/conv/`
# (or `$WIDELIMIT_EXAMPLES_DIR/conv/`).

# %%
from widelimit.atlas.notebook import show_page

res = show_page("conv")  # quick sizes unless WIDELIMIT_ATLAS_FULL=1
