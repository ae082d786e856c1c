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
# # Atlas 11: Learning curves from the kernel spectrum
#
# The generalisation error of kernel regression against the number of training points,
# predicted from the kernel's eigenvalues by the self-consistent equation of Bordelon,
# Canatar and Pehlevan (2020), against kernel regression measured on sampled training sets
# (NTK of a ReLU net, inputs uniform on a sphere), and the error split by degree
# (spectral bias).
#
# This notebook calls the same functions as `widelimit atlas learning_curves` (module
# `widelimit.atlas.learning_curves`): `show_page` runs `compute` (a dataclass of every
# plotted number, returned as `res`), draws the `figures` and prints the `content`. Quick
# sizes by default; set the environment variable `WIDELIMIT_ATLAS_FULL=1` for the full sizes.
#
# Run as a plain script (`python examples/atlas_11_learning_curves.py`) it prints the page as
# text and saves its figures under `./widelimit-examples/learning_curves/`
# (or `$WIDELIMIT_EXAMPLES_DIR/learning_curves/`).

# %%
from widelimit.atlas.notebook import show_page

res = show_page("learning_curves")  # quick sizes unless WIDELIMIT_ATLAS_FULL=1
