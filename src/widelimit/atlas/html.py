"""A small standalone-HTML writer for the atlas: PNGs embedded as base64, no scripts,
no external resources, so a page opens in any browser from any folder.

The style follows the demo report (:mod:`widelimit.demo.report`): one ``<table>`` of
facts, figures with captions, and the raw numbers in a JSON file beside the HTML.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

from widelimit.atlas.core import Figure, Headline, PageContent, Table
from widelimit.serialization import jsonable

__all__ = ["STYLE", "figure_html", "index_html", "page_html", "write_json"]

STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.4}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
    "text-align:left;vertical-align:top}img{max-width:100%}figure{margin:1.5em 0}"
    "figcaption{color:#444}.ok{color:#060}.bad{color:#a00}.formula{background:#f6f6f6;"
    "padding:.6em 1em;border-left:3px solid #999}nav a{margin-right:1em}"
)


def write_json(obj: Any, path: Path) -> Path:
    path.write_text(json.dumps(jsonable(obj), indent=1), encoding="utf-8")
    return path


def _cell(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def table_html(t: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t.columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>" for r in t.rows)
    title = f"<h3>{html.escape(t.title)}</h3>" if t.title else ""
    return f"{title}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure_html(fig: Figure) -> str:
    b64 = base64.b64encode(fig.path.read_bytes()).decode()
    alt = html.escape(fig.path.stem)
    return (
        f'<figure><img alt="{alt}" src="data:image/png;base64,{b64}">'
        f"<figcaption>{html.escape(fig.caption)}</figcaption></figure>"
    )


def headline_html(h: Headline) -> str:
    verdict = "agrees" if h.ok else "DISAGREES"
    cls = "ok" if h.ok else "bad"
    se = f" ± {h.stderr:.3g}" if math.isfinite(h.stderr) else ""
    return (
        f"<p><b>Headline:</b> {html.escape(h.name)} = <b>{h.value:.4g}</b>{html.escape(se)}; "
        f"theory {h.theory:.4g}; tolerance {h.tolerance:.3g} ({html.escape(h.rule)}): "
        f'<span class="{cls}">{verdict}</span>.</p>'
    )


def page_html(
    slug: str,
    number: int,
    content: PageContent,
    headline: Headline,
    figures: list[Figure],
    facts: list[tuple[str, str]],
    nav: list[tuple[str, str]],
) -> str:
    """One standalone page (``nav``: ``(file name, label)`` links to the other pages)."""
    links = "".join(f'<a href="{html.escape(f)}">{html.escape(lab)}</a>' for f, lab in nav)
    facts_html = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts
    )
    paras = "".join(f"<p>{html.escape(p)}</p>" for p in content.paragraphs)
    if content.falsified_by:
        paras += (
            "<p><b>What would have falsified the theory:</b> "
            f"{html.escape(content.falsified_by)}</p>"
        )
    pub = ""
    if content.published:
        pub_t = Table(
            "",
            ["quantity", "published (as printed)", "error bar (as printed)", "source",
             "table / figure", "ours ± error", "conditions that differ"],
            [[p.quantity, p.published, p.error_bar, p.source, p.where, p.ours, p.conditions]
             for p in content.published],
        )  # fmt: skip
        pub = "<h2>Published numbers beside ours</h2>" + table_html(pub_t)
    tables = "".join(table_html(t) for t in content.tables)
    figs = "".join(figure_html(f) for f in figures)
    title = f"{number}. {content.title}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>widelimit atlas: {html.escape(title)}</title>
<style>{STYLE}</style></head><body>
<nav>{links}</nav>
<h1>{html.escape(title)}</h1>
<p class="formula">{html.escape(content.formula)}</p>
{headline_html(headline)}
<table>{facts_html}</table>
{paras}
{figs}
{pub}
<h2>Numbers</h2>
{tables}
<p>Every plotted number: <code>{html.escape(slug)}.json</code> beside this page.</p>
</body></html>
"""


def index_html(rows: list[dict[str, Any]], facts: list[tuple[str, str]]) -> str:
    """The atlas index: one row per page (``file``, ``title``, ``headline``, ``quick``,
    ``seconds``); a page run at quick sizes is marked QUICK."""
    body = []
    for r in rows:
        h: Headline = r["headline"]
        cls = "ok" if h.ok else "bad"
        body.append(
            f'<tr><td><a href="{html.escape(r["file"])}">{html.escape(r["title"])}</a></td>'
            f"<td>{html.escape(h.name)}</td><td>{h.value:.4g}</td><td>{h.theory:.4g}</td>"
            f'<td class="{cls}">{"agrees" if h.ok else "DISAGREES"}</td>'
            f"<td>{'QUICK' if r['quick'] else 'full'}</td>"
            f"<td>{r['seconds']:.1f} s</td></tr>"
        )
    facts_html = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>widelimit atlas</title>
<style>{STYLE}</style></head><body>
<h1>The widelimit atlas: infinite-width theory, finite networks beside their limits</h1>
<p>Each page states the result in a sentence, shows finite networks beside the limit,
prints the numbers it plots (JSON beside the page) and quotes the published numbers with
the conditions under which ours differ.</p>
<table>{facts_html}</table>
<table><thead><tr><th>page</th><th>headline</th><th>ours</th><th>theory</th><th>check</th>
<th>sizes</th><th>run time</th></tr></thead><tbody>{"".join(body)}</tbody></table>
<p>Summary of every page: <code>atlas.json</code>.</p>
</body></html>
"""
