"""Mean-field training dynamics of two-layer nets (docs/meanfield.md).

- :mod:`.problems`: isotropic Gaussians (MMN 2018) and a ReLU teacher–student problem;
- :mod:`.network`: finite mean-field nets trained by online SGD / full-batch GD;
- :mod:`.pde`: the distributional-dynamics PDE (radial and general particle solvers);
- :mod:`.experiment`: finite N beside the PDE (risk, W1, gap slopes);
- :mod:`.parameterizations`: SP / NTK / MF / μP compared across width;
- :mod:`.plots`: figures.
"""

from widelimit.meanfield.experiment import MeanFieldComparison, compare_with_pde
from widelimit.meanfield.network import TrainResult, train
from widelimit.meanfield.parameterizations import (
    PARAMETERIZATIONS,
    WidthStudy,
    layer_rules,
    width_study,
)
from widelimit.meanfield.pde import PDESolution, solve_particles, solve_radial, wasserstein1_1d
from widelimit.meanfield.piecewise import PiecewiseLinear
from widelimit.meanfield.plots import plot_comparison, plot_width_study
from widelimit.meanfield.problems import IsotropicGaussians, TeacherStudent, relu_kernel

__all__ = [
    "PARAMETERIZATIONS",
    "IsotropicGaussians",
    "MeanFieldComparison",
    "PDESolution",
    "PiecewiseLinear",
    "TeacherStudent",
    "TrainResult",
    "WidthStudy",
    "compare_with_pde",
    "layer_rules",
    "plot_comparison",
    "plot_width_study",
    "relu_kernel",
    "solve_particles",
    "solve_radial",
    "train",
    "wasserstein1_1d",
    "width_study",
]
