"""widelimit: infinite-width neural networks made computable, checkable and fast."""

from widelimit.kernel import Kernel

__version__ = "0.1.0"

__all__ = ["Kernel", "__version__"]
