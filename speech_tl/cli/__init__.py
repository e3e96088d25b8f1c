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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="speech-tl")
def main() -> None:
    """speech-tl: adapt English-pretrained speech models to new tasks.

    Stages: prepare manifests -> train (adapt) -> evaluate -> report.
    """


# the command groups register themselves on ``main``
from . import manifest, prepare, probe, report, speakers, tasks  # noqa: E402,F401
