"""``python -m speech_tl.cli`` (used with torchrun)."""

from . import main

main()
