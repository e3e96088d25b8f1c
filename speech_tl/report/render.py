"""Write a :class:`~.document.Document` as one self-contained HTML page or as Markdown.

HTML: inline CSS, figures as ``data:image/png;base64`` URIs, no scripts, fonts, links or requests to
anywhere (a Content-Security-Policy meta tag says so to the browser too). Markdown: the same tables; figures
link PNG files in a folder beside it (``files_dir``, relative).
"""

from __future__ import annotations

import base64
import html
import re

from .document import Aligned, Document, Examples, Figure, Inline, Para, Section, Span, Table

CSS = """
:root { color-scheme: light; }
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 0 24px 48px; color: #1b1f24; background: #fff; line-height: 1.45; font-size: 15px; }
header { border-bottom: 3px solid #1f77b4; margin-bottom: 12px; }
h1 { font-size: 26px; margin: 22px 0 6px; }
h2 { font-size: 21px; margin: 34px 0 8px; padding-top: 8px; border-top: 1px solid #d0d7de; }
h3 { font-size: 17px; margin: 22px 0 6px; }
h4 { font-size: 15px; margin: 16px 0 4px; color: #444; }
section { margin-left: 0; }
section section { margin-left: 10px; }
nav ul { columns: 2; padding-left: 18px; margin: 4px 0; }
nav li { font-size: 14px; }
nav a { color: #0b5cad; text-decoration: none; }
table { border-collapse: collapse; margin: 8px 0 4px; font-size: 13.5px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; vertical-align: top; text-align: left; }
th { background: #f2f5f8; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafbfc; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
p.note { font-size: 12.5px; color: #57606a; margin: 2px 0 10px; }
.best { color: #0a7c2f; font-weight: bold; }
.muted { color: #57606a; }
figure { margin: 12px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid #e1e4e8; }
figcaption { font-size: 13px; color: #333; margin-top: 4px; }
.examples { margin: 6px 0 12px; }
.aligned { border: 1px solid #e1e4e8; border-radius: 4px; padding: 6px 8px; margin: 6px 0; }
.aligned .uid { font-size: 12px; color: #57606a; margin-bottom: 2px; }
.tok { display: inline-flex; flex-direction: column; margin: 0 5px 4px 0; vertical-align: top;
       font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px; }
.tok .r, .tok .h { padding: 0 2px; min-height: 1.2em; }
.tok .h { border-top: 1px dotted #d0d7de; }
.sub .r, .sub .h { background: #fff1c2; }
.sub .h { font-weight: bold; }
.del .r { background: #ffd7d5; text-decoration: line-through; }
.ins .h { background: #d2f4d3; font-weight: bold; }
.gap { color: #a0a7b0; }
.legend span { margin-right: 12px; }
.flex { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


# --------------------------------------------------------------------------- HTML

def _h_inline(x: Inline) -> str:
    if isinstance(x, str):
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(x))
    out = []
    for s in x:
        t = html.escape(s.text)
        out.append({"b": f"<strong>{t}</strong>", "best": f'<span class="best">{t}</span>',
                    "muted": f'<span class="muted">{t}</span>', "code": f"<code>{t}</code>"}.get(s.kind, t))
    return "".join(out)


def _h_table(t: Table) -> str:
    num = t.numeric or [False] * len(t.headers)
    cls = [' class="num"' if n else "" for n in num]
    out = ["<table>"]
    if any(t.headers):
        out.append("<thead><tr>" + "".join(f"<th{c}>{html.escape(h)}</th>" for h, c in zip(t.headers, cls,
                                                                                           strict=False))
                   + "</tr></thead>")
    out.append("<tbody>")
    for row in t.rows:
        out.append("<tr>" + "".join(f"<td{c}>{_h_inline(v)}</td>" for v, c in zip(row, cls, strict=False))
                   + "</tr>")
    out.append("</tbody></table>")
    if t.note:
        out.append(f'<p class="note">{_h_inline(t.note)}</p>')
    return "\n".join(out)


def _h_token(kind: str, ref: str, hyp: str) -> str:
    def side(cls: str, w: str) -> str:
        return f'<span class="{cls}">{html.escape(w)}</span>' if w else f'<span class="{cls} gap">***</span>'

    title = {"sub": f"substitution: {ref} -> {hyp}", "del": f"deletion: {ref}", "ins": f"insertion: {hyp}"}
    t = f' title="{html.escape(title[kind])}"' if kind in title else ""
    return f'<span class="tok {kind}"{t}>{side("r", ref)}{side("h", hyp)}</span>'


def _h_examples(e: Examples) -> str:
    out = ['<div class="examples"><p class="legend note"><span>top line: reference, bottom line: hypothesis;</span>'
           '<span class="tok sub"><span class="r">substitution</span></span>'
           '<span class="tok del"><span class="r">deletion</span></span>'
           '<span class="tok ins"><span class="h">insertion</span></span></p>']
    for a in e.items:
        toks = " ".join(_h_token(t.kind, t.ref, t.hyp) for t in a.tokens)
        out.append(f'<div class="aligned"><div class="uid">{html.escape(a.uid)}'
                   f'{" · speaker " + html.escape(a.speaker) if a.speaker else ""}</div>{toks}</div>')
    out.append("</div>")
    return "\n".join(out)


def _h_figure(f: Figure, n: int) -> str:
    data = base64.b64encode(f.png).decode("ascii")
    return (f'<figure id="{f.id}"><img src="data:image/png;base64,{data}" alt="{html.escape(f.alt)}">'
            f"<figcaption>Figure {n}. {html.escape(f.caption)}</figcaption></figure>")


def _h_blocks(blocks, counter: list[int]) -> str:
    out = []
    tables_run: list[str] = []  # consecutive small tables (e.g. the three confusion lists) side by side
    for b in blocks:
        if isinstance(b, Table) and len(b.headers) <= 2:
            tables_run.append(_h_table(b))
            continue
        if tables_run:
            out.append('<div class="flex">' + "".join(f"<div>{t}</div>" for t in tables_run) + "</div>")
            tables_run = []
        if isinstance(b, Para):
            out.append(f"<p>{_h_inline(b.content)}</p>")
        elif isinstance(b, Table):
            out.append(_h_table(b))
        elif isinstance(b, Figure):
            counter[0] += 1
            out.append(_h_figure(b, counter[0]))
        elif isinstance(b, Examples):
            out.append(_h_examples(b))
    if tables_run:
        out.append('<div class="flex">' + "".join(f"<div>{t}</div>" for t in tables_run) + "</div>")
    return "\n".join(out)


def _h_section(s: Section, depth: int, counter: list[int]) -> str:
    h = min(6, depth + 2)
    inner = _h_blocks(s.blocks, counter)
    kids = "\n".join(_h_section(c, depth + 1, counter) for c in s.children)
    return f'<section id="{s.id}">\n<h{h}>{html.escape(s.title)}</h{h}>\n{inner}\n{kids}\n</section>'


def to_html(doc: Document) -> str:
    counter = [0]
    toc = []
    for s in doc.sections:
        for depth, x in s.walk():
            if depth <= 1:
                toc.append(f'<li style="margin-left:{12 * depth}px"><a href="#{x.id}">{html.escape(x.title)}</a></li>')
    body = "\n".join(_h_section(s, 0, counter) for s in doc.sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(doc.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f'<header><h1>{html.escape(doc.title)}</h1></header>\n'
            f'<section id="overview">\n<h2>Overview</h2>\n{_h_blocks(doc.intro, [0])}\n</section>\n'
            f'<nav id="contents"><h2>Contents</h2><ul>{"".join(toc)}</ul></nav>\n<main>\n{body}\n</main>\n'
            "</body>\n</html>\n")


# --------------------------------------------------------------------------- Markdown

_MD_SPECIAL = re.compile(r"([\\`*_~<>|])")


def _m_text(t: str) -> str:
    """Escape what Markdown would read as markup (brackets only where they could start a link)."""
    return _MD_SPECIAL.sub(r"\\\1", t).replace("](", "\\](").replace("![", "!\\[").replace("\n", " ")


def _m_code(t: str) -> str:
    fence = "``" if "`" in t else "`"
    return f"{fence}{t.replace('|', chr(92) + '|')}{fence}"


def _m_inline(x: Inline) -> str:
    if isinstance(x, str):  # `...` in prose stays code
        parts = re.split(r"(`[^`]+`)", x)
        return "".join(p if p.startswith("`") and p.endswith("`") and len(p) > 1 else _m_text(p) for p in parts)
    out = []
    for s in x:
        t = _m_text(s.text)
        out.append({"b": f"**{t}**", "best": f"**{t}**", "muted": f"*{t}*", "code": _m_code(s.text)}.get(s.kind, t)
                   if s.text.strip() else s.text)
    return "".join(out)


def _m_table(t: Table) -> str:
    num = t.numeric or [False] * len(t.headers)
    head = "| " + " | ".join(_m_text(h) or " " for h in t.headers) + " |"
    rule = "|" + "|".join("---:" if n else "---" for n in num) + "|"
    rows = ["| " + " | ".join(_m_inline(v) for v in row) + " |" for row in t.rows]
    return "\n".join([head, rule, *rows]) + (f"\n\n*{_m_inline(t.note)}*" if t.note else "")


def _m_aligned(a: Aligned) -> str:
    words = []
    for t in a.tokens:
        r, h = _m_text(t.ref), _m_text(t.hyp)
        words.append({"ok": r, "sub": f"~~{r}~~→**{h}**", "del": f"~~{r}~~", "ins": f"**{h}**"}[t.kind])
    return " ".join(words)


def _m_blocks(blocks, counter: list[int], files_dir: str) -> list[str]:
    out = []
    for b in blocks:
        if isinstance(b, Para):
            out.append(_m_inline(b.content))
        elif isinstance(b, Table):
            out.append(_m_table(b))
        elif isinstance(b, Figure):
            counter[0] += 1
            out.append(f"![{_m_text(b.alt)}]({files_dir}/{b.filename})\n\n*Figure {counter[0]}. {_m_text(b.caption)}*")
        elif isinstance(b, Examples):
            rows = [[[Span(a.uid, "code")], a.speaker, _m_aligned(a)] for a in b.items]
            out.append("Marks: ~~deleted~~ reference word, ~~reference~~→**hypothesis** substitution, "
                       "**inserted** word.\n\n| utterance | speaker | aligned reference → hypothesis |\n|---|---|---|\n"
                       + "\n".join(f"| {_m_inline(r[0])} | {_m_text(r[1])} | {r[2]} |" for r in rows))
    return out


def _m_section(s: Section, depth: int, counter: list[int], files_dir: str) -> list[str]:
    out = [f'<a id="{s.id}"></a>\n\n{"#" * min(6, depth + 2)} {_m_text(s.title)}']
    out += _m_blocks(s.blocks, counter, files_dir)
    for c in s.children:
        out += _m_section(c, depth + 1, counter, files_dir)
    return out


def to_markdown(doc: Document, files_dir: str) -> str:
    """Markdown with the same sections and tables; figures link ``files_dir/<figure id>.png``."""
    counter = [0]
    toc = ["## Contents", ""]
    for s in doc.sections:
        for depth, x in s.walk():
            if depth <= 1:
                toc.append(f"{'  ' * depth}- [{_m_text(x.title)}](#{x.id})")
    parts = [f"# {_m_text(doc.title)}", '<a id="overview"></a>\n\n## Overview', *_m_blocks(doc.intro, [0], files_dir),
             "\n".join(toc)]
    for s in doc.sections:
        parts += _m_section(s, 0, counter, files_dir)
    return "\n\n".join(parts) + "\n"
