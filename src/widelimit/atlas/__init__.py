"""The atlas: every classic result of infinite-width theory as one command.

``widelimit atlas --out DIR [--quick] [PAGE]`` writes ``index.html`` and one standalone
page per topic (PNG figures embedded), each with a ``<page>.json`` of every plotted number.
Each page is a module with ``Config`` (``Config.quick()``), ``compute``, ``figures`` and
``content`` (see :mod:`widelimit.atlas.core`); :func:`run_page` and :func:`write_atlas`
tie them together, and the notebooks under ``examples/`` call the same functions.

Pages (in the order of a course): 1 ``distributions``, 2 ``limit``, 3 ``nngp``,
4 ``propagation``, 5 ``ntk``, 6 ``meanfield``, 7 ``sde``, 8 ``ensembles``, 9 ``trainability``,
10 ``conv``, 11 ``learning_curves``, 12 ``lazy``, 13 ``finite_width``.
"""

from __future__ import annotations

import importlib
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from widelimit.atlas.core import Figure, Headline, PageContent, Published, Table

__all__ = [
    "PAGES",
    "TITLES",
    "AtlasResult",
    "Figure",
    "Headline",
    "PageContent",
    "PageResult",
    "Published",
    "Table",
    "default_jobs",
    "mark_quick",
    "page_module",
    "resolve_page",
    "run_page",
    "write_atlas",
    "write_page",
]

TITLES: dict[str, str] = {
    "distributions": "Distributional representation",
    "limit": "The infinite-width limit",
    "nngp": "NNGP correspondence",
    "propagation": "Signal propagation",
    "ntk": "NTK and lazy training",
    "meanfield": "Mean-field dynamics",
    "sde": "Neural covariance SDE",
    "ensembles": "Trained ensembles and the NTK Gaussian process",
    "trainability": "Trainability phase diagram",
    "conv": "Convolutional kernels",
    "learning_curves": "Learning curves from the kernel spectrum",
    "lazy": "Lazy vs feature learning: the output scale α",
    "finite_width": "Beyond the limit: finite width",
}
PAGES: tuple[str, ...] = tuple(TITLES)


def resolve_page(page: str | int) -> str:
    """A page name (``"nngp"``) or number (``3`` or ``"3"``) → its name; ValueError otherwise."""
    p = str(page).strip().lower()
    if p.isdigit() and 1 <= int(p) <= len(PAGES):
        return PAGES[int(p) - 1]
    if p in PAGES:
        return p
    raise ValueError(
        f"`page` must be one of {list(PAGES)} or a number 1..{len(PAGES)}; got {page!r}"
    )


def page_module(page: str | int) -> ModuleType:
    """The module implementing a page."""
    return importlib.import_module(f"widelimit.atlas.{resolve_page(page)}")


@dataclass(frozen=True)
class PageResult:
    """One computed page: its name, number, the page module's ``Result``, and run time."""

    name: str
    number: int
    quick: bool
    result: object
    headline: Headline
    seconds: float


def run_page(page: str | int, *, quick: bool = False, progress: bool = True) -> PageResult:
    """Compute one page at full (default) or quick sizes."""
    name = resolve_page(page)
    mod = page_module(name)
    cfg = mod.Config.quick() if quick else mod.Config()
    if progress:
        print(f"atlas page {PAGES.index(name) + 1}/{len(PAGES)}: {name}", file=sys.stderr)
    t0 = time.perf_counter()
    res = mod.compute(cfg, progress=progress)
    return PageResult(
        name, PAGES.index(name) + 1, quick, res, res.headline, time.perf_counter() - t0
    )


def _nav() -> list[tuple[str, str]]:
    nav = [("index.html", "index")]
    for i, p in enumerate(PAGES):
        nav.append((f"{p}.html", f"{i + 1}. {TITLES[p]}"))
    return nav


def _environment() -> str:
    import torch

    return (
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch thread(s), {platform.machine()}"
    )


QUICK_MARK = "[QUICK sizes]"


def mark_quick(fig: Figure) -> Figure:
    """Stamp ``QUICK sizes`` into the corner of the PNG and prefix the caption with it."""
    from PIL import Image, ImageDraw

    with Image.open(fig.path) as im:
        im = im.convert("RGB")
        draw = ImageDraw.Draw(im)
        draw.rectangle((0, 0, 120, 16), fill=(255, 230, 120))
        draw.text((4, 2), "QUICK-SIZES", fill=(160, 0, 0))
        im.save(fig.path)
    return Figure(fig.path, f"{QUICK_MARK} {fig.caption}")


def write_page(pr: PageResult, out: str | Path) -> Path:
    """Write ``<name>.html`` (figures embedded), ``<name>.json`` and ``<name>/*.png``."""
    from widelimit.atlas.html import page_html, write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mod = page_module(pr.name)
    figs = mod.figures(pr.result, out / pr.name)
    if pr.quick:
        figs = [mark_quick(f) for f in figs]
    content = mod.content(pr.result)
    facts = [
        ("sizes", "quick (--quick)" if pr.quick else "full"),
        ("run time", f"{pr.seconds:.1f} s (compute; figures not included)"),
        ("machine", _environment()),
        ("configuration", repr(pr.result.config)),
    ]
    html_path = out / f"{pr.name}.html"
    html_path.write_text(
        page_html(pr.name, pr.number, content, pr.headline, figs, facts, _nav()),
        encoding="utf-8",
    )
    write_json(
        {
            "page": pr.name,
            "number": pr.number,
            "quick": pr.quick,
            "seconds": pr.seconds,
            "headline": pr.headline,
            "headline_ok": pr.headline.ok,
            "content": content,
            "result": pr.result,
        },
        out / f"{pr.name}.json",
    )
    return html_path


@dataclass(frozen=True)
class AtlasResult:
    """Pages written by :func:`write_atlas`, the index path and the total time."""

    out: Path
    index: Path
    pages: list[PageResult]
    seconds: float


def _page_job(name: str, quick: bool, out: str) -> PageResult:
    """Worker of :func:`write_atlas`: compute and write one page with one torch thread; the
    returned :class:`PageResult` carries ``result=None`` (the page is on disk)."""
    import torch

    torch.set_num_threads(1)
    pr = run_page(name, quick=quick, progress=False)
    write_page(pr, out)
    return PageResult(pr.name, pr.number, pr.quick, None, pr.headline, pr.seconds)


def default_jobs() -> int:
    """Pages computed at once by default: the cores this process may use."""
    from widelimit._cpus import cores

    return cores()


def write_atlas(
    out: str | Path = "widelimit-atlas",
    *,
    pages: list[str | int] | None = None,
    quick: bool = False,
    progress: bool = True,
    jobs: int | None = None,
) -> AtlasResult:
    """Compute and write the given pages (default: all) and an index of every page written
    so far in ``out`` (a page computed by an earlier run stays listed).

    ``jobs``: pages computed at once, each in its own process with one torch thread
    (default: the usable cores, :func:`default_jobs`). The pages' finite networks are small
    matrices, where torch's threads inside each operation wait for one another and lose badly
    to one thread as soon as another process uses a core (measured: the ntk page at quick
    sizes, load 4 on 2 cores: 19 s with one thread, 25–71 s with two), so the cores go to
    whole pages instead. ``jobs=1`` computes in this process at torch's current threads, and
    keeps each page's ``result`` in the returned :class:`PageResult` (``None`` otherwise).
    """
    import json

    from widelimit._validation import check_positive_int
    from widelimit.atlas.html import index_html, write_json

    out = Path(out)
    t0 = time.perf_counter()
    names = list(PAGES) if pages is None else [resolve_page(p) for p in pages]
    jobs = min(default_jobs() if jobs is None else check_positive_int("jobs", jobs), len(names))
    done: list[PageResult] = []
    if jobs <= 1:
        for name in names:
            pr = run_page(name, quick=quick, progress=progress)
            write_page(pr, out)
            done.append(pr)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        out.mkdir(parents=True, exist_ok=True)
        if progress:
            print(
                f"atlas: {len(names)} page(s), {jobs} at a time (one process and one torch "
                "thread each)",
                file=sys.stderr,
            )
        ctx = multiprocessing.get_context("spawn")  # torch's thread pools do not survive fork
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = {pool.submit(_page_job, n, quick, str(out)): n for n in names}
            for k, fut in enumerate(as_completed(futures), 1):
                pr = fut.result()
                done.append(pr)
                if progress:
                    verdict = "agrees" if pr.headline.ok else "DISAGREES"
                    print(
                        f"atlas page {pr.number}/{len(PAGES)} {pr.name}: {verdict} "
                        f"({pr.seconds:.1f} s; {k}/{len(names)} done)",
                        file=sys.stderr,
                    )
        done.sort(key=lambda p: names.index(p.name))
    rows = []
    for i, name in enumerate(PAGES):  # index: every page present in `out`
        path = out / f"{name}.json"
        if not path.exists():
            continue
        d = json.loads(path.read_text())
        h = Headline(**{k: (float("nan") if v is None else v) for k, v in d["headline"].items()})
        rows.append(
            {
                "file": f"{name}.html",
                "title": f"{i + 1}. {TITLES[name]}",
                "headline": h,
                "seconds": d["seconds"],
                "quick": d["quick"],
            }
        )
    total = time.perf_counter() - t0
    facts = [
        ("this run", f"{', '.join(names)}: {total:.1f} s ({'quick' if quick else 'full'})"),
        ("machine", _environment()),
    ]
    index = out / "index.html"
    index.write_text(index_html(rows, facts), encoding="utf-8")
    write_json({"pages": rows, "seconds": total, "quick": quick}, out / "atlas.json")
    return AtlasResult(out, index, done, total)
