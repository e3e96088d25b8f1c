"""`speech-tl report RUN_DIR... --out report.html`: an HTML page (self-contained) and a Markdown twin."""

from __future__ import annotations

from pathlib import Path

import click

from . import check_outputs, main, overwrite_option, user_errors


@main.command("report")
@click.argument("run_dirs", metavar="RUN_DIR...", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="report.html to write; report.md and its figures (report_files/) are written beside it.")
@click.option("--title", default="speech-tl report", show_default=True)
@click.option("--examples", type=click.IntRange(min=0), default=5, show_default=True,
              help="Aligned reference/hypothesis pairs shown per ASR results file.")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="Rows of each most-frequent-error table (substitutions, deletions, insertions).")
@overwrite_option(help_text="Replace the report if it exists: OUT, the .md beside it and its figures (an earlier "
                            "report's figures the new one does not draw are removed; other files there stay).")
@user_errors
def report_cmd(run_dirs, out, title, examples, top, overwrite):
    """Training curves, test results and a comparison of RUN_DIRs (training runs or evaluation folders).

    A RUN_DIR holds summary.json / train_log.jsonl of `speech-tl train` and/or results *.json of
    `speech-tl evaluate` (ASR and speaker); each results file gets its own section, and runs of one task are
    compared in one table and bar chart by freeze policy, backbone and cost.
    """
    from ..report import report_paths, write_report

    check_outputs(report_paths(out), overwrite, what="report output")
    r = write_report(list(run_dirs), out, title, examples, top)
    click.echo(f"{len(r['runs'])} run(s), {r['figures']} figures -> {r['html']} (and {r['markdown']}, "
               f"{r['figures_dir']}/)")
