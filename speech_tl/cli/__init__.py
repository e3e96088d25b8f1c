"""The ``speech-tl`` command: a thin wrapper around the package's functions.

Heavy imports (torch, soundfile) happen inside the commands, so ``--help`` is quick.
Errors a user can act on are printed as one ``error:`` line (exit status 2), no traceback.
"""

from __future__ import annotations

import functools

import click


class UserError(click.ClickException):
    exit_code = 2


def user_errors(fn):
    """Turn the package's expected errors into clean one-line messages."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ..audio import AudioError
        from ..manifest import ManifestError
        from ..prepare.tts import ToolMissing

        try:
            return fn(*args, **kwargs)
        except (ManifestError, AudioError, ToolMissing, FileNotFoundError, ValueError, RuntimeError) as e:
            raise UserError(str(e)) from None

    return wrapper


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
def main() -> None:
    """speech-tl: adapt English-pretrained speech models to new tasks.

    Stages: prepare manifests -> train (adapt) -> evaluate -> report.
    """


# the command groups register themselves on ``main``
from . import manifest, prepare, probe, report, speakers, tasks  # noqa: E402,F401
