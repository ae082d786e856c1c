"""``widelimit demo``: finite networks vs their infinite-width limit on real data.

:func:`run_demo` computes (returns a :class:`DemoResult`), :mod:`.plots` draws,
:func:`write_report` writes ``index.html`` (PNG plots embedded) and ``results.json``.
"""

from widelimit.demo.compute import (
    DEFAULT_NET,
    DemoConfig,
    DemoResult,
    FiniteRun,
    InfiniteResult,
    SlopeFit,
    WidthSummary,
    run_demo,
)
from widelimit.demo.report import summary_rows, write_report

__all__ = [
    "DEFAULT_NET",
    "DemoConfig",
    "DemoResult",
    "FiniteRun",
    "InfiniteResult",
    "SlopeFit",
    "WidthSummary",
    "run_demo",
    "summary_rows",
    "write_report",
]
