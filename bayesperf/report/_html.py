"""HTML building blocks of the report: one page template, tables, figures, notes.

Plain :class:`string.Template` and :func:`html.escape`: the page is one static file with
its style inline and its figures as base64 PNG ``data:`` URIs, so it opens anywhere
(a browser, a CI artifact viewer, an e-mail attachment) with nothing beside it.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from string import Template
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Figure", "page", "section", "table", "figure", "note", "fmt_ms", "fmt_num"]

#: A table cell formatter: value -> text.
Formatter = Callable[[Any], str]

_STYLE = """
:root { --ok: #1a7f37; --fail: #b42318; --muted: #57606a; --line: #d0d7de; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 0; color: #1f2328; background: #fff; }
header { background: #f6f8fa; border-bottom: 1px solid var(--line); padding: 1rem 2rem; }
header h1 { margin: 0 0 .3rem 0; font-size: 1.5rem; }
nav a { margin-right: 1rem; }
main { padding: 0 2rem 3rem 2rem; max-width: 1500px; }
section { margin-top: 2rem; }
h2 { border-bottom: 1px solid var(--line); padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .6rem 0 1rem 0; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: .2rem .5rem; text-align: right;
         white-space: nowrap; }
th { background: #f6f8fa; position: sticky; top: 0; }
td.text, th.text { text-align: left; }
tr.fail td { background: #fdecea; }
tr.chosen td { background: #e6f4ea; }
td.bad { color: var(--fail); font-weight: 600; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 13px; max-width: 1100px; }
.banner { padding: .6rem 1rem; border-radius: 6px; margin: 1rem 0; font-weight: 600; }
.banner.ok { background: #e6f4ea; color: var(--ok); }
.banner.fail { background: #fdecea; color: var(--fail); }
.note { color: var(--muted); }
p.bad { color: var(--fail); font-weight: 600; }
.missing { border: 1px dashed var(--fail); padding: .6rem 1rem; color: var(--fail); }
.wide { max-width: 100%; overflow-x: auto; }
.scroll { max-height: 32rem; overflow: auto; display: inline-block; }
code { background: #f6f8fa; padding: 0 .2rem; }
"""

_PAGE = Template(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="bayesperf $version">
<title>$title</title>
<style>$style</style>
</head>
<body>
<header>
<h1>$title</h1>
<div class="note">$subtitle</div>
<nav>$nav</nav>
</header>
<main>
$banner
$body
</main>
</body>
</html>
"""
)


class Figure:
    """A rendered figure: PNG bytes, the file it was also written to, and a caption."""

    def __init__(self, key: str, png: bytes, caption: str, filename: str) -> None:
        self.key = key
        self.png = png
        self.caption = caption
        self.filename = filename


def page(
    *,
    title: str,
    subtitle: str,
    sections: Sequence[tuple[str, str, str]],
    banner: str,
    version: str,
) -> str:
    """The whole document; ``sections`` are ``(id, heading, inner html)``."""
    nav = "".join(f'<a href="#{sid}">{html.escape(heading)}</a>' for sid, heading, _ in sections)
    body = "\n".join(section(sid, heading, inner) for sid, heading, inner in sections)
    return _PAGE.substitute(
        title=html.escape(title),
        subtitle=subtitle,
        nav=nav,
        banner=banner,
        body=body,
        style=_STYLE,
        version=html.escape(version),
    )


def section(sid: str, heading: str, inner: str) -> str:
    """One ``<section>`` with an anchor id (the navigation links to it)."""
    return f'<section id="{sid}">\n<h2>{html.escape(heading)}</h2>\n{inner}\n</section>'


def note(text: str, cls: str = "note") -> str:
    """A paragraph of escaped text."""
    return f'<p class="{cls}">{html.escape(text)}</p>'


def figure(fig: Figure) -> str:
    """A ``<figure>`` with the PNG inline (base64) and its caption."""
    data = base64.b64encode(fig.png).decode("ascii")
    return (
        f'<figure id="fig-{fig.key}" data-figure="{fig.key}">'
        f'<img alt="{html.escape(fig.caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(fig.caption)} "
        f'(also <a href="{html.escape(fig.filename)}">{html.escape(fig.filename)}</a>)'
        "</figcaption></figure>"
    )


def missing_figure(key: str, reason: str) -> str:
    """Placeholder for a figure that could not be drawn, saying why."""
    return (
        f'<div class="missing" data-missing-figure="{key}">figure {html.escape(key)} not '
        f"drawn: {html.escape(reason)}</div>"
    )


def fmt_num(x: Any, digits: int = 3) -> str:
    """Numbers with ``digits`` significant digits, integers with thousands separators."""
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return ""
    if isinstance(x, bool | np.bool_):
        return "yes" if x else "no"
    if isinstance(x, int | np.integer):
        return f"{int(x):,}"
    if isinstance(x, float | np.floating):
        x = float(x)
        if math.isinf(x):
            return "∞" if x > 0 else "-∞"
        if x != 0 and (abs(x) >= 1e6 or abs(x) < 1e-3):
            return f"{x:.{digits}g}"
        if abs(x) >= 10 ** (digits - 1):
            return f"{x:,.0f}"
        return f"{x:.{digits}g}"
    return str(x)


def fmt_ms(x: Any) -> str:
    """A latency in ms, three significant digits (blank when missing)."""
    return fmt_num(x, 3)


def fmt_interval(median: float, lower: float, upper: float) -> str:
    """``median [lower, upper]`` with three significant digits."""
    return f"{fmt_num(median)} [{fmt_num(lower)}, {fmt_num(upper)}]"


def table(
    frame: pd.DataFrame,
    *,
    formats: Mapping[str, Formatter] | None = None,
    row_class: Iterable[str] | None = None,
    bad_cells: Mapping[str, Iterable[bool]] | None = None,
    index: bool = True,
    max_rows: int | None = None,
    table_id: str | None = None,
    scroll_rows: int = 25,
) -> str:
    """An HTML table of ``frame`` (escaped), with per-row classes and flagged cells.

    Parameters
    ----------
    frame : pandas.DataFrame
        The table; index levels become leading text columns when ``index``.
    formats : mapping, optional
        Column -> formatter; numbers default to :func:`fmt_num`, the rest to ``str``.
    row_class : iterable of str, optional
        A CSS class per row (``"fail"``, ``"chosen"`` or ``""``).
    bad_cells : mapping, optional
        Column -> booleans per row: those cells are shown in the failure colour.
    max_rows : int, optional
        Show the first ``max_rows`` rows and say how many more there are.
    table_id : str, optional
        The table's ``id``.
    scroll_rows : int, default 25
        Longer tables scroll within a box (with a sticky header).
    """
    formats = dict(formats or {})
    shown = frame if max_rows is None else frame.head(max_rows)
    classes = list(row_class) if row_class is not None else [""] * len(frame)
    bad = {k: list(v) for k, v in (bad_cells or {}).items()}
    names = [n if n is not None else "" for n in shown.index.names] if index else []
    head = "".join(f'<th class="text">{html.escape(str(n))}</th>' for n in names)
    head += "".join(
        f'<th class="{_cls(shown[c])}">{html.escape(str(c))}</th>' for c in shown.columns
    )
    rows = []
    for i, (key, row) in enumerate(zip(shown.index, shown.itertuples(index=False), strict=True)):
        cells = []
        if index:
            keys = key if isinstance(key, tuple) else (key,)
            cells += [f'<td class="text">{html.escape(_text(k))}</td>' for k in keys]
        for col, value in zip(shown.columns, row, strict=True):
            text = formats[col](value) if col in formats else _default(value)
            cls = [_cls(shown[col])]
            if col in bad and bad[col][i]:
                cls.append("bad")
            cells.append(f'<td class="{" ".join(c for c in cls if c)}">{html.escape(text)}</td>')
        rc = f' class="{classes[i]}"' if classes[i] else ""
        rows.append(f"<tr{rc}>{''.join(cells)}</tr>")
    tid = f' id="{table_id}"' if table_id else ""
    wrap = "wide scroll" if len(rows) > scroll_rows else "wide"
    out = f'<div class="{wrap}"><table{tid}><thead><tr>{head}</tr></thead><tbody>'
    out += "\n".join(rows) + "</tbody></table></div>"
    if max_rows is not None and len(frame) > max_rows:
        out += note(f"first {max_rows} of {len(frame):,} rows shown; all are in the CSV")
    return out


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _default(value: Any) -> str:
    if isinstance(value, int | float | np.integer | np.floating | bool | np.bool_):
        return fmt_num(value)
    return _text(value)


def _cls(series: pd.Series) -> str:
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    return "" if numeric else "text"
