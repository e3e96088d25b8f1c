"""Shared by the tests of commands that write files: an existing output is refused until --overwrite."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from speech_tl.cli import main


def refused_unless_overwrite(args: list[str], outputs: list[Path], folder: Path):
    """Each of ``outputs`` existing alone in ``folder``: ``speech-tl ARGS`` exits 1 with one ``error:`` line
    naming it and ``--overwrite``, and ``folder`` is left as it was. Then, with the first output there,
    ``ARGS --overwrite`` succeeds; its result is returned."""
    for existing in outputs:
        existing.write_text("mine\n")
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 1, res.output
        (line,) = res.output.strip().splitlines()
        assert line.startswith("error: ") and str(existing) in line and "--overwrite" in line
        assert [(p.name, p.read_text()) for p in folder.iterdir()] == [(existing.name, "mine\n")]
        existing.unlink()
    outputs[0].write_text("mine\n")
    res = CliRunner().invoke(main, [*args, "--overwrite"])
    assert res.exit_code == 0, res.output
    return res
