"""speech-tl: transfer learning for speech (English-pretrained models adapted to new tasks)."""

__version__ = "0.1.0"
