"""``speech-tl report RUN_DIR... --out report.html``: one self-contained HTML page and a Markdown twin.

Formats the results of training runs and evaluations; computes no metric. Modules:

* :mod:`.collect`: read run folders (summary.json, config.yaml, train_log.jsonl, results ``*.json``,
  ``<stem>.hypotheses.jsonl``);
* :mod:`.build`: the document (comparison per task, one section per run);
* :mod:`.plots`: training curves, comparison bars, DET curve, score histogram (PNG);
* :mod:`.render`: HTML (figures as data URIs) and Markdown (figures as PNGs in ``<out stem>_files/``).

Every file is written atomically; the HTML last, so a finished ``report.html`` means the rest is there.
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

from ..atomic import atomic_open, atomic_write_text
from ..errors import InputError
from .build import build_document
from .collect import Run, collect_run, collect_runs
from .render import to_html, to_markdown

__all__ = ["Run", "collect_run", "collect_runs", "build_document", "to_html", "to_markdown", "write_report"]


def report_paths(out: str | Path) -> tuple[Path, Path, Path]:
    """``(report.html, report.md, report_files/)`` for ``--out report.html``."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"{out}: the report is written as HTML; name it *.html (report.md is written beside it)")
    return out, out.with_suffix(".md"), out.with_name(out.stem + "_files")


def write_report(run_dirs: list[str | Path], out: str | Path, title: str = "speech-tl report", examples: int = 5,
                 top: int = 10) -> dict:
    """Write the HTML report ``out``, the Markdown beside it and its PNGs; returns what was written.

    ``examples``: aligned reference/hypothesis pairs shown per ASR results file; ``top``: rows per confusion
    table.
    """
    html_path, md_path, files = report_paths(out)
    runs = collect_runs(list(run_dirs))
    doc = build_document(runs, title, examples, top)
    figures = doc.figures()
    for f in figures:
        with atomic_open(files / f.filename, "wb") as fh:
            fh.write(f.png)
    _remove_stale_figures(files, {f.filename for f in figures})
    atomic_write_text(md_path, to_markdown(doc, urllib.parse.quote(files.name)))
    atomic_write_text(html_path, to_html(doc))
    return {"html": str(html_path), "markdown": str(md_path), "figures_dir": str(files), "figures": len(figures),
            "runs": [r.name for r in runs], "sections": [s.id for s in doc.sections]}


FIGURE_NAME = re.compile(r"fig-[a-z0-9-]+\.png")  # what a figure's id (document.Ids) makes its file name


def _remove_stale_figures(files: Path, written: set[str]) -> None:
    """Remove the figures of an earlier report in ``files`` that this one did not write (only names a report's
    figure can have; other files stay), and the folder when nothing is left in it."""
    if not files.is_dir() or files.is_symlink():
        return
    for p in files.iterdir():
        if p.name not in written and FIGURE_NAME.fullmatch(p.name) and p.is_file() and not p.is_symlink():
            p.unlink()
    if not any(files.iterdir()):
        files.rmdir()
