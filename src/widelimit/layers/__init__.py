"""Layers grouped by family; each file holds a layer's finite module and its kernel rule.

* ``dense.py``: ``Dense`` and the input kernel;
* ``activations.py``: elementwise activations (closed-form and numerical duals);
* ``custom_activations.py``: ``Polynomial``, ``Gabor``, ``ExpNormalized``;
* ``attention.py``: ``GlobalSelfAttention``;
* ``conv.py``: ``Conv1d``, ``Conv2d``;
* ``conv_transpose.py``: ``ConvTranspose1d``, ``ConvTranspose2d``;
* ``local.py``: ``ConvLocal1d``, ``ConvLocal2d`` (locally connected: unshared weights);
* ``pooling.py``: ``AvgPool1d/2d``, ``SumPool1d/2d``, ``GlobalAvgPool``, ``GlobalSumPool``,
  ``Flatten``;
* ``normalization.py``: ``LayerNorm``, ``Dropout``, ``Multiply`` (``Scale``: deprecated);
* ``graph.py``: ``Aggregate`` (graph convolution over a per-example adjacency);
* ``combinators.py``: ``serial``, ``parallel``, ``repeat``, ``FanOut``, ``FanInSum``,
  ``FanInProd``, ``FanInConcat``, ``Identity``.

The public names are exactly the submodules' ``__all__`` lists (no second list here);
``Layer`` comes from ``base.py``.
"""

from widelimit.layers import (
    activations,
    attention,
    combinators,
    conv,
    conv_transpose,
    custom_activations,
    dense,
    graph,
    local,
    normalization,
    pooling,
)
from widelimit.layers.activations import *  # noqa: F403
from widelimit.layers.attention import *  # noqa: F403
from widelimit.layers.base import Layer
from widelimit.layers.combinators import *  # noqa: F403
from widelimit.layers.conv import *  # noqa: F403
from widelimit.layers.conv_transpose import *  # noqa: F403
from widelimit.layers.custom_activations import *  # noqa: F403
from widelimit.layers.dense import *  # noqa: F403
from widelimit.layers.graph import *  # noqa: F403
from widelimit.layers.local import *  # noqa: F403
from widelimit.layers.normalization import *  # noqa: F403
from widelimit.layers.pooling import *  # noqa: F403

__all__ = ["Layer"]
__all__ += activations.__all__
__all__ += attention.__all__
__all__ += combinators.__all__
__all__ += conv.__all__
__all__ += custom_activations.__all__
__all__ += conv_transpose.__all__
__all__ += dense.__all__
__all__ += graph.__all__
__all__ += local.__all__
__all__ += normalization.__all__
__all__ += pooling.__all__
