"""Layers grouped by family; each file holds a layer's finite module and its kernel rule.

* ``dense.py``: ``Dense`` and the input kernel;
* ``activations.py``: elementwise activations (closed-form and numerical duals);
* ``conv.py``: ``Conv1d``, ``Conv2d``;
* ``local.py``: ``ConvLocal1d``, ``ConvLocal2d`` (locally connected: unshared weights);
* ``pooling.py``: ``AvgPool1d/2d``, ``SumPool1d/2d``, ``GlobalAvgPool``, ``GlobalSumPool``,
  ``Flatten``;
* ``normalization.py``: ``LayerNorm``, ``Dropout``, ``Multiply`` (``Scale``: deprecated);
* ``combinators.py``: ``serial``, ``parallel``, ``FanOut``, ``FanInSum``, ``Identity``.

The public names are exactly the submodules' ``__all__`` lists (no second list here);
``Layer`` comes from ``base.py``.
"""

from widelimit.layers import (
    activations,
    combinators,
    conv,
    dense,
    local,
    normalization,
    pooling,
)
from widelimit.layers.activations import *  # noqa: F403
from widelimit.layers.base import Layer
from widelimit.layers.combinators import *  # noqa: F403
from widelimit.layers.conv import *  # noqa: F403
from widelimit.layers.dense import *  # noqa: F403
from widelimit.layers.local import *  # noqa: F403
from widelimit.layers.normalization import *  # noqa: F403
from widelimit.layers.pooling import *  # noqa: F403

__all__ = ["Layer"]
__all__ += activations.__all__
__all__ += combinators.__all__
__all__ += conv.__all__
__all__ += dense.__all__
__all__ += local.__all__
__all__ += normalization.__all__
__all__ += pooling.__all__
