"""Write a :class:`~.document.Document` as one self-contained HTML page or as Markdown.

HTML: inline CSS, figures as ``data:image/png;base64`` URIs, no scripts, fonts, links or requests to
anywhere (a Content-Security-Policy meta tag says so to the browser too). Markdown: the same tables; figures
link PNG files in a folder beside it (``files_dir``, relative).

Values read from the runs are data, never markup: HTML-escaped in the page; in the Markdown written through
:func:`md_text` (escaped text) or :func:`md_code` (a code span), so they render as written in a Markdown viewer.
"""

from __future__ import annotations

import base64
import html
import re

from .document import Aligned, Document, Examples, Figure, Inline, Para, Section, Table

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
    """A str is the report's own prose (text between backticks in it is code); Spans hold data, shown as is."""
    if isinstance(x, str):
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(x))
    out = []
    for s in x:
        t = html.escape(s.text)
        out.append({"b": f"<strong>{t}</strong>", "best": f'<span class="best">{t}</span>',
                    "muted": f'<span class="muted">{t}</span>', "code": f"<code>{t}</code>"}.get(s.kind, t))
    return "".join(out)


def _h_cell(v: Inline) -> str:
    """A table cell: a str is data (escaped, as written), Spans as :func:`_h_inline`."""
    return html.escape(v) if isinstance(v, str) else _h_inline(v)


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
        out.append("<tr>" + "".join(f"<td{c}>{_h_cell(v)}</td>" for v, c in zip(row, cls, strict=False))
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
#
# Every value read from the runs (run and file names, paths, utterance ids, speakers, transcripts, config values)
# reaches the Markdown through md_text or md_code and so renders literally in a CommonMark/GFM viewer: no raw
# HTML, link, image, entity, emphasis or heading can come from the data, and no table row is split by it.

_MD_ESCAPE = re.compile(r"([\\`*_~<>|\[\]#&$])")
_LINE_BREAK = re.compile(r"\r\n|[\r\n]")
_BACKTICKS = re.compile(r"`+")


def md_text(t: str) -> str:
    """``t`` as Markdown text that renders as written: each character Markdown could read as markup (code,
    emphasis, strike-through, raw HTML and autolinks, links and images, entities, headings, table pipes, the
    ``$`` of GitHub's math) is backslash-escaped, and line breaks become spaces (so a table row or a heading
    stays one line)."""
    return _MD_ESCAPE.sub(r"\\\1", _LINE_BREAK.sub(" ", t))


def md_code(t: str, in_table: bool = False) -> str:
    r"""``t`` as one code span that renders as written (CommonMark): fenced by one backtick more than the longest
    run of backticks inside, padded with a space where ``t`` starts or ends with a backtick or with spaces on
    both ends (the parser strips one from each side), line breaks as spaces. ``in_table``: inside a GFM table
    cell, where a pipe must be written ``\|`` even in a code span; GFM implementations read a backslash right
    before a pipe differently, so such a value is written as escaped text instead."""
    t = _LINE_BREAK.sub(" ", t)
    if not t:
        return ""
    if in_table and "|" in t:
        if "\\|" in t:
            return md_text(t)
        t = t.replace("|", "\\|")
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(t)), default=0) + 1)
    pad = " " if t[0] == "`" or t[-1] == "`" or (t[0] == " " and t[-1] == " " and t.strip()) else ""
    return f"{fence}{pad}{t}{pad}{fence}"


def _m_wrap(t: str, mark: str) -> str:
    """``t`` (Markdown) between emphasis marks, its outer spaces outside them (``** x**`` would not be bold)."""
    core = t.strip(" ")
    if not core:
        return t
    lead, trail = t[:len(t) - len(t.lstrip(" "))], t[len(t.rstrip(" ")):]
    return f"{lead}{mark}{core}{mark}{trail}"


def _m_inline(x: Inline, in_table: bool = False) -> str:
    """A str is the report's own prose (text between backticks in it is code); Spans hold data, shown as is."""
    if isinstance(x, str):
        parts = re.split(r"(`[^`]+`)", x)
        return "".join(md_code(p[1:-1], in_table) if len(p) > 1 and p[0] == p[-1] == "`" else md_text(p)
                       for p in parts)
    out = []
    for s in x:
        if s.kind == "code":
            out.append(md_code(s.text, in_table))
        else:
            t = md_text(s.text)
            out.append({"b": _m_wrap(t, "**"), "best": _m_wrap(t, "**"), "muted": _m_wrap(t, "*")}.get(s.kind, t))
    return "".join(out)


def _m_cell(v: Inline) -> str:
    """A table cell: a str is data (as written), Spans as :func:`_m_inline`."""
    return (md_text(v) if isinstance(v, str) else _m_inline(v, in_table=True)).strip() or " "


def _m_paragraph(t: str) -> str:
    """Markdown of a paragraph whose start must not read as a list item, an indented code block or a setext
    underline (``#``, ``>``, ``*`` and the like are escaped already)."""
    t = t.lstrip(" \t")
    m = re.match(r"\d{1,9}(?=[.)])", t)
    if m:
        return f"{t[:m.end()]}\\{t[m.end():]}"
    return f"\\{t}" if t[:1] in ("-", "+", "=") else t


def _m_table(t: Table) -> str:
    num = t.numeric or [False] * len(t.headers)
    head = "| " + " | ".join(md_text(h).strip() or " " for h in t.headers) + " |"
    rule = "|" + "|".join("---:" if n else "---" for n in num) + "|"
    rows = ["| " + " | ".join(_m_cell(v) for v in row) + " |" for row in t.rows]
    return "\n".join([head, rule, *rows]) + (f"\n\n{_m_wrap(_m_inline(t.note), '*')}" if t.note else "")


def _m_aligned(a: Aligned) -> str:
    words = []
    for t in a.tokens:
        r, h = md_text(t.ref), md_text(t.hyp)
        words.append({"ok": r, "sub": f"~~{r}~~→**{h}**", "del": f"~~{r}~~", "ins": f"**{h}**"}[t.kind])
    return " ".join(words)


def _m_blocks(blocks, counter: list[int], files_dir: str) -> list[str]:
    out = []
    for b in blocks:
        if isinstance(b, Para):
            out.append(_m_paragraph(_m_inline(b.content)))
        elif isinstance(b, Table):
            out.append(_m_table(b))
        elif isinstance(b, Figure):
            counter[0] += 1
            out.append(f"![{md_text(b.alt)}]({files_dir}/{b.filename})\n\n"
                       f"{_m_wrap(f'Figure {counter[0]}. {md_text(b.caption)}', '*')}")
        elif isinstance(b, Examples):
            out.append("Marks: ~~deleted~~ reference word, ~~reference~~→**hypothesis** substitution, "
                       "**inserted** word.\n\n| utterance | speaker | aligned reference → hypothesis |\n|---|---|---|\n"
                       + "\n".join(f"| {md_code(a.uid, in_table=True) or ' '} | {md_text(a.speaker) or ' '} | "
                                   f"{_m_aligned(a) or ' '} |" for a in b.items))
    return out


def _m_section(s: Section, depth: int, counter: list[int], files_dir: str) -> list[str]:
    out = [f'<a id="{s.id}"></a>\n\n{"#" * min(6, depth + 2)} {md_text(s.title)}']
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
                toc.append(f"{'  ' * depth}- [{md_text(x.title)}](#{x.id})")
    parts = [f"# {md_text(doc.title)}", '<a id="overview"></a>\n\n## Overview', *_m_blocks(doc.intro, [0], files_dir),
             "\n".join(toc)]
    for s in doc.sections:
        parts += _m_section(s, 0, counter, files_dir)
    return "\n\n".join(parts) + "\n"
