"""The ``speech-tl`` command: a thin wrapper around the package's functions.

Heavy imports (torch, soundfile) happen inside the commands, so ``--help`` is quick.

Exit statuses and streams:
- 0: done. Results (JSON with ``--json``, tables, transcripts) go to stdout.
- 1: an expected error (:class:`speech_tl.errors.SpeechTlError`, or a missing/unreadable
  file): one ``error:`` line on stderr, no traceback (``--debug`` shows it).
- 2: a usage error (unknown option, bad value), from click.
- Anything else is a bug: Python prints the traceback and exits 1.

Progress and notes go through :mod:`logging` to stderr (``-v`` for more, ``-q`` for
warnings only); under DDP only rank 0 logs below ERROR.
"""

from __future__ import annotations

import functools
import logging
import os
import sys

import click

log = logging.getLogger("speech_tl")


class UserError(click.ClickException):
    """An expected error at the command line: ``error: <message>`` and exit status 1."""

    exit_code = 1

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _debugging() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().meta.get("speech_tl.debug"))


def user_errors(fn):
    """Turn the package's expected errors (and files that cannot be opened) into one clean line."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ..errors import SpeechTlError

        try:
            return fn(*args, **kwargs)
        except (SpeechTlError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
            if _debugging():
                raise
            message = str(e)
            if isinstance(e, OSError) and e.filename and str(e.filename) not in message:
                message = f"{e.filename}: {e.strerror or message}"
            raise UserError(message) from None

    return wrapper


def overwrite_option(fn=None, *, help_text: str | None = None):
    """``--overwrite``: replace outputs that already exist (without it, a command refuses them)."""
    def deco(f):
        return click.option("--overwrite", is_flag=True,
                            help=help_text or "Replace outputs that already exist (without it an existing output is "
                                         "refused and left as it is).")(f)

    return deco(fn) if fn is not None else deco


def check_outputs(outputs, overwrite: bool, inputs=(), what: str = "output", nested: bool = False) -> None:
    """Refuse, before anything is read or written: an output that is also an input (even with ``--overwrite``:
    it would be replaced while it is read), and, unless ``overwrite``, an output that already exists.
    ``nested``: the outputs are folders replaced as a whole, so one inside an input (or holding one) is
    refused too. Raises the package's expected errors (one line, exit 1)."""
    from pathlib import Path

    from ..errors import check_output

    outs = [Path(p) for p in outputs if p is not None]
    ins = [Path(p) for p in inputs if p is not None]
    for out in outs:
        o = out.resolve()
        for src in ins:
            s = src.resolve()
            if o == s or (nested and (o.is_relative_to(s) or s.is_relative_to(o))):
                raise UserError(f"{out}: this {what} is also an input ({src}); write to another path "
                                "(--overwrite cannot replace what the command reads)")
    for out in outs:
        check_output(out, overwrite, what)


def setup_logging(verbose: int, quiet: bool) -> None:
    """Log records of ``speech_tl`` to stderr; INFO by default, DEBUG with ``-v``, WARNING with ``-q``.
    A DDP rank other than 0 (``RANK`` set by torchrun) logs only errors."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    if os.environ.get("RANK", "0") not in ("", "0"):
        level = logging.ERROR
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is logged (a test runner may swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _device_name(ctx, param, value: str) -> str:
    from ..device import check_device_name

    try:
        return check_device_name(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def device_option(fn):
    """``--device auto|cpu|cuda|cuda:N`` for a command that runs a model (resolved by
    :func:`speech_tl.device.resolve_device`: auto is CUDA when available; cuda without a GPU is an error)."""
    return click.option("--device", default="auto", show_default=True, callback=_device_name,
                        help="Where the model runs: auto (CUDA when available, else CPU), cpu, cuda or cuda:N.")(fn)


def backend_option(fn=None, *, engines: tuple[str, ...] = ("auto", "torch", "onnx")):
    """``--backend auto|torch|onnx[|ct2]``: what runs the model (:func:`speech_tl.runtime.choose_backend`)."""
    def deco(f):
        ct2 = ", a CTranslate2 folder (`export ct2`, faster-whisper) through CTranslate2" if "ct2" in engines else ""
        return click.option("--backend", type=click.Choice(list(engines)), default="auto", show_default=True,
                            help=f"auto: a folder written by `speech-tl export onnx` runs through ONNX Runtime{ct2}, "
                                 "a checkpoint through torch; the others insist on one.")(f)

    return deco(fn) if fn is not None else deco


def batch_size_option(fn=None, *, default: int = 16):
    """``--batch-size N``: utterances (or windows of long audio) per forward pass."""
    def deco(f):
        return click.option("--batch-size", type=click.IntRange(min=1), default=default, show_default=True,
                            help="Utterances per forward pass (ASR: each window of audio longer than the model "
                                 "accepts counts as one). Results do not depend on it; lower it if memory runs "
                                 "out.")(f)

    return deco(fn) if fn is not None else deco


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="speech-tl")
@click.option("-v", "--verbose", count=True, help="More detail in the log (stderr).")
@click.option("-q", "--quiet", is_flag=True, help="Log only warnings and errors.")
@click.option("--debug", is_flag=True, help="Show the traceback of expected errors too.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool, debug: bool) -> None:
    """speech-tl: adapt English-pretrained speech models to new tasks.

    Stages: prepare manifests -> train (adapt) -> evaluate -> report.
    Results go to stdout, the log to stderr. Exit status: 0 done, 1 error, 2 usage error.
    """
    ctx.meta["speech_tl.debug"] = debug
    setup_logging(verbose, quiet)


# the command groups register themselves on ``main``
from . import export, manifest, prepare, probe, report, speakers, tasks  # noqa: E402,F401
