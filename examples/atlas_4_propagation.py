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
# # Atlas 4: Signal propagation
#
# Order and chaos: the correlation depth scale ξ_c over (σw², σb²) with the critical line
# (Schoenholz et al. 2017) and the c-map iterates (Poole et al. 2016).
#
# This notebook calls the same functions as `widelimit atlas propagation` (module
# `widelimit.atlas.propagation`): `show_page` runs `compute` (a dataclass of every plotted
# number, returned as `res`), draws the `figures` and prints the `content`. Quick sizes by
# default; set the environment variable `WIDELIMIT_ATLAS_FULL=1` for the full sizes.
#
# Run as a plain script (`python examples/atlas_4_propagation.py`) it prints the page as text
# and saves its figures under `./widelimit-examples/propagation/`
# (or `$WIDELIMIT_EXAMPLES_DIR/propagation/`).

# %%
from widelimit.atlas.notebook import show_page

res = show_page("propagation")  # quick sizes unless WIDELIMIT_ATLAS_FULL=1
