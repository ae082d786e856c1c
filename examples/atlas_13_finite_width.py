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
# # Atlas 13: Beyond the limit — finite width
#
# The 1/n effective theory of finite-width nets (Yaida 2020; Roberts, Yaida, Hanin 2022,
# ch. 4–5; Hanin & Nica 2019): the excess kurtosis of one output across nets, n·κ against
# width converging to the four-point recursion's prediction; κ and the NTK's relative
# variance against the depth-to-width ratio L/n for ReLU, tanh and erf at criticality,
# linear at small L/n and bending away where the expansion fails (with the exact ReLU
# product law and its log-normal limit); the Edgeworth density against the Gaussian.
#
# This notebook calls the same functions as `widelimit atlas finite_width` (module
# `widelimit.atlas.finite_width`): `show_page` runs `compute` (a dataclass of every plotted
# number, returned as `res`), draws the `figures` and prints the `content`. Quick sizes by
# default; set the environment variable `WIDELIMIT_ATLAS_FULL=1` for the full sizes.
#
# Run as a plain script (`python examples/atlas_13_finite_width.py`) it prints the page as
# text and saves its figures under `./widelimit-examples/finite_width/`
# (or `$WIDELIMIT_EXAMPLES_DIR/finite_width/`).

# %%
from widelimit.atlas.notebook import show_page

res = show_page("finite_width")  # quick sizes unless WIDELIMIT_ATLAS_FULL=1

# %% [markdown]
# The measured n·κ of every activation against the prediction (the headline uses tanh):

# %%
for act, (a, se, _, _) in res.conv_fit.items():
    print(f"{act}: predicted {res.predicted[act]:.4g}, extrapolated {a:.4g} ± {se:.2g}")
