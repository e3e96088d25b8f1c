"""A preparation run again into the same --out-dir with other parameters: refused unless --overwrite."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from speech_tl.cli import main


def files_of(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def assert_other_parameters_refused_unless_overwrite(args: list[str], out: Path, manifest: Path):
    """``speech-tl ARGS`` differs in its parameters from the preparation already in ``out``: it exits 1 with one
    line naming ``manifest`` and --overwrite, leaves every file of ``out`` as it was; with --overwrite it runs.
    Returns the result of the run with --overwrite."""
    before = files_of(out)
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1, res.output
    (line,) = res.output.strip().splitlines()
    assert line.startswith("error: ") and str(manifest) in line and "--overwrite" in line, line
    assert "other parameters" in line, line
    assert files_of(out) == before
    res = CliRunner().invoke(main, [*args, "--overwrite"])
    assert res.exit_code == 0 and "already prepared" not in res.output, res.output
    return res
