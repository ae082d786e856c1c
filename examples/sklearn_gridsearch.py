"""A widelimit scikit-learn estimator in a Pipeline, tuned by GridSearchCV.

Shows: ``NNGPRegressor`` (the Bayesian posterior of an infinitely wide ReLU network) after a
``StandardScaler`` in a ``sklearn.pipeline.Pipeline``, with ``GridSearchCV`` choosing the
weight scale ``w_std`` (through the net description) and the ridge ``diag_reg`` by 5-fold
cross-validation on scikit-learn's bundled diabetes data; the tuned model's held-out R² is
compared with a plain ``RidgeCV`` on the same split. Saves ``gridsearch.png`` (CV score per
grid point).

Run: ``python examples/sklearn_gridsearch.py [OUT_DIR]`` (figures go to ``OUT_DIR``, else
``$WIDELIMIT_EXAMPLES_DIR``, else ``./widelimit-examples/``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write files; no window
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from widelimit import NNGPRegressor

out_dir = Path(
    sys.argv[1]
    if len(sys.argv) > 1
    else os.environ.get("WIDELIMIT_EXAMPLES_DIR", "widelimit-examples")
)
out_dir.mkdir(parents=True, exist_ok=True)

x, y = load_diabetes(return_X_y=True)  # (442, 10), a disease-progression score
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
y_mean, y_std = y_train.mean(), y_train.std()  # the GP prior has mean 0: centre the targets

w_stds = [0.5, 1.0, 1.5, 2.0]
nets = [f"Dense(512, w_std={w}, b_std=0.1) -> ReLU -> Dense(1, w_std={w})" for w in w_stds]
diag_regs = [0.1, 0.3, 1.0, 3.0]
pipe = Pipeline([("scale", StandardScaler()), ("gp", NNGPRegressor())])
search = GridSearchCV(pipe, {"gp__net": nets, "gp__diag_reg": diag_regs}, cv=5, scoring="r2")
search.fit(x_train, (y_train - y_mean) / y_std)

best = search.best_params_
r2 = search.score(x_test, (y_test - y_mean) / y_std)
ridge = RidgeCV(alphas=np.geomspace(1e-3, 1e3, 13)).fit(x_train, y_train)
r2_ridge = ridge.score(x_test, y_test)
print(f"best grid point: net {best['gp__net']!r}, diag_reg {best['gp__diag_reg']:g}")
print(f"cross-validated R² {search.best_score_:.3f} (5 folds)")
print(f"held-out test R² {r2:.3f} for the tuned NNGP pipeline vs {r2_ridge:.3f} for RidgeCV")

scores = search.cv_results_["mean_test_score"].reshape(len(nets), len(diag_regs))
fig, ax = plt.subplots(figsize=(5, 3.5))
for j, reg in enumerate(diag_regs):
    ax.plot(w_stds, scores[:, j], "o-", label=f"diag_reg={reg:g}")
ax.set_xlabel("w_std")
ax.set_ylabel("mean CV R²")
ax.set_title("GridSearchCV over an NNGPRegressor")
ax.legend(fontsize=8)
fig.tight_layout()
path = out_dir / "gridsearch.png"
fig.savefig(path, dpi=100)
print(f"figure saved to {path}")
