"""GE2E speaker encoder (Wan et al. 2018) with the weights the PyPI package ``resemblyzer`` ships.

Architecture: 40-channel mel power spectrogram (25 ms window, 10 ms hop, 16 kHz) -> 3-layer
LSTM (hidden 256) -> Linear 256->256 + ReLU -> L2 normalisation. An utterance embedding is
the normalised mean of the embeddings of 1.6 s partial windows (rate 1.3 per second, the last
window kept if at least 75 % covered), exactly as ``VoiceEncoder.embed_utterance``.

The three LSTM layers are separate ``layers`` (bottom first) so the bottom N can be frozen;
``finish`` is the pretrained Linear + ReLU applied per frame.

The weights are resemblyzer's ``pretrained.pt``; the package itself is not a dependency (it requires
``webrtcvad``, which PyPI has only as source code needing a C compiler). They are found, without
importing anything, in an installed ``resemblyzer`` package, else in the user cache, where

    python -m speech_tl.backbones.ge2e fetch

puts them: it downloads the resemblyzer 0.1.4 wheel with pip and keeps only ``pretrained.pt`` (checked
against its SHA-256), in ``$SPEECH_TL_CACHE`` or ``$XDG_CACHE_HOME/speech-tl`` (default ``~/.cache/speech-tl``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .base import Backbone, BackboneError

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s

RESEMBLYZER = "resemblyzer==0.1.4"
WEIGHTS_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"  # resemblyzer 0.1.4's pretrained.pt
FETCH_COMMAND = "python -m speech_tl.backbones.ge2e fetch"


class WeightsMissing(BackboneError):
    """GE2E's pretrained weights are neither installed nor fetched; the message names the command that fetches them."""


class MelPower(nn.Module):
    """librosa's ``melspectrogram`` (power, Slaney mel, centred frames): ``(B, T)`` -> ``(B, T // 160 + 1, 40)``."""

    def __init__(self):
        super().__init__()
        import librosa

        mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)
        self.register_buffer("mel_filters", torch.from_numpy(mel.astype(np.float32)), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # librosa >= 0.10 pads the centre frames with zeros, which is also what padding in a batch gives
        spec = torch.stft(wave.float(), N_FFT, HOP, window=self.window, center=True, pad_mode="constant",
                          return_complex=True).abs() ** 2
        mel = (self.mel_filters @ spec).transpose(1, 2)
        frames = torch.div(lengths, HOP, rounding_mode="floor") + 1
        return mel, frames.clamp(max=mel.shape[1])


class Ge2eBackbone(Backbone):
    """GE2E behind the Backbone interface: features ``(B, T, 256)`` after Linear + ReLU, per frame."""

    def __init__(self, source: str):
        super().__init__()
        self.source = source
        self.output_dim = 256
        self.frontend = MelPower()
        self.layers = nn.ModuleList([nn.LSTM(N_MELS if i == 0 else 256, 256, 1, batch_first=True)
                                     for i in range(3)])
        self.linear = nn.Linear(256, 256)

    def arch(self) -> dict:
        return {"kind": "ge2e"}

    def embed(self, wave, lengths):
        return self.frontend(wave, lengths)

    def run_layer(self, index, hidden, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(hidden, lengths.cpu().clamp(min=1), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.layers[index](packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=hidden.shape[1])
        return out

    def finish(self, hidden):
        return torch.relu(self.linear(hidden))

    def load_resemblyzer_state(self, state: dict) -> None:
        """Map ``lstm.weight_ih_l{k}`` ... of the 3-layer LSTM onto the three 1-layer LSTMs."""
        mapped = {"linear.weight": state["linear.weight"], "linear.bias": state["linear.bias"]}
        for k in range(3):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                mapped[f"layers.{k}.{name}_l0"] = state[f"lstm.{name}_l{k}"]
        missing, unexpected = self.load_state_dict(mapped, strict=False)
        if [m for m in missing if not m.startswith("frontend.")] or unexpected:
            raise BackboneError(f"{self.source}: weights do not fit GE2E (missing {missing}, unexpected {unexpected})")


def partial_slices(n_samples: int, rate: float = 1.3, min_coverage: float = 0.75) -> list[tuple[int, int]]:
    """Frame ranges ``[(start, stop)]`` of the 1.6 s partial windows, as resemblyzer computes them."""
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    frame_step = int(np.round((SAMPLE_RATE / rate) / HOP))
    steps = max(1, n_frames - PARTIAL_FRAMES + frame_step + 1)
    slices = [(i, i + PARTIAL_FRAMES) for i in range(0, steps, frame_step)]
    start = slices[-1][0] * HOP
    coverage = (n_samples - start) / (PARTIAL_FRAMES * HOP)
    if coverage < min_coverage and len(slices) > 1:
        slices = slices[:-1]
    return slices


def embed_utterance(backbone: Ge2eBackbone, wave: torch.Tensor) -> torch.Tensor:
    """One utterance ``(T,)`` at 16 kHz -> L2-normalised embedding ``(256,)`` (mean of partial windows)."""
    slices = partial_slices(wave.numel())
    need = slices[-1][1] * HOP
    if need >= wave.numel():
        wave = torch.nn.functional.pad(wave, (0, need - wave.numel()))
    mel, _ = backbone.frontend(wave[None], torch.tensor([wave.numel()]))
    windows = torch.stack([mel[0, a:b] for a, b in slices])  # (W, 160, 40)
    lengths = torch.full((windows.shape[0],), PARTIAL_FRAMES, dtype=torch.long)
    hidden = windows
    for i in range(len(backbone.layers)):
        hidden = backbone.run_layer(i, hidden, lengths)
    partial = backbone.finish(hidden[:, -1])
    partial = partial / partial.norm(dim=1, keepdim=True)
    mean = partial.mean(0)
    return mean / mean.norm()


def cache_dir() -> Path:
    """``$SPEECH_TL_CACHE``, else ``$XDG_CACHE_HOME/speech-tl``, else ``~/.cache/speech-tl``."""
    if os.environ.get("SPEECH_TL_CACHE"):
        return Path(os.environ["SPEECH_TL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "speech-tl"


def cached_weights_path() -> Path:
    return cache_dir() / "ge2e" / "resemblyzer-0.1.4-pretrained.pt"


def resemblyzer_weights() -> Path:
    """``resemblyzer/pretrained.pt`` of an installed resemblyzer (found without importing it), else the fetched copy."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "pretrained.pt"
        if path.is_file():
            return path
    path = cached_weights_path()
    if path.is_file():
        return path
    raise WeightsMissing(f"ge2e:resemblyzer: GE2E's pretrained weights are not here ({path} is missing and the "
                         f"resemblyzer package is not installed); fetch them once with `{FETCH_COMMAND}` "
                         "(downloads the resemblyzer 0.1.4 wheel from PyPI with pip, about 16 MB, and keeps only its "
                         "pretrained.pt); `make venv` does this")


def fetch_resemblyzer_weights(dest: Path | None = None) -> Path:
    """Download resemblyzer's wheel with pip (no dependencies) and keep its ``pretrained.pt`` at ``dest``."""
    dest = Path(dest) if dest is not None else cached_weights_path()
    if dest.is_file() and sha256(dest) == WEIGHTS_SHA256:
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
               "--dest", tmp, RESEMBLYZER]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise BackboneError(f"ge2e:resemblyzer: `{' '.join(cmd[2:])}` failed (no network or no pip?):\n"
                                f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open("resemblyzer/pretrained.pt") as src, open(part, "wb") as f:
            while chunk := src.read(1 << 20):
                f.write(chunk)
    if sha256(part) != WEIGHTS_SHA256:
        part.unlink()
        raise BackboneError(f"ge2e:resemblyzer: the downloaded pretrained.pt is not the expected file "
                            f"(SHA-256 {WEIGHTS_SHA256})")
    part.replace(dest)
    return dest


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def load_ge2e(spec: str, pretrained: bool = True) -> Ge2eBackbone:
    """``ge2e:resemblyzer`` (the package's weights) or ``ge2e:<path to a checkpoint with model_state>``."""
    source = f"ge2e:{spec}"
    backbone = Ge2eBackbone(source)
    if not pretrained:
        return backbone
    path = resemblyzer_weights() if spec == "resemblyzer" else Path(spec)
    if not path.is_file():
        raise BackboneError(f"{source}: {path} not found")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get("model_state", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or "lstm.weight_ih_l0" not in state:
        raise BackboneError(f"{source}: {path} holds no GE2E weights (expected model_state with lstm.* keys)")
    backbone.load_resemblyzer_state(state)
    return backbone


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m speech_tl.backbones.ge2e",
                                     description="GE2E's pretrained weights (resemblyzer 0.1.4's pretrained.pt).")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help=f"download them with pip into {cached_weights_path()} (once; about 16 MB)")
    sub.add_parser("where", help="print the weights file ge2e:resemblyzer loads; exit 1 when there is none")
    args = parser.parse_args(argv)
    try:
        path = fetch_resemblyzer_weights() if args.command == "fetch" else resemblyzer_weights()
    except BackboneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())


GE2E_CONTEXT = 200  # samples of STFT context on each side of a partial window (n_fft // 2)


def waveform_windows(wave: torch.Tensor) -> torch.Tensor:
    """One utterance ``(T,)`` -> its GE2E partial windows ``(W, 25840)`` with STFT context, cut where
    :func:`speech_tl.speaker.model.ge2e_windows` takes its mel frames (resemblyzer's windows)."""
    slices = partial_slices(wave.numel())
    need = slices[-1][1] * HOP
    if need >= wave.numel():
        wave = torch.nn.functional.pad(wave, (0, need - wave.numel()))
    padded = torch.nn.functional.pad(wave, (GE2E_CONTEXT, GE2E_CONTEXT))
    span = (PARTIAL_FRAMES - 1) * HOP + 2 * GE2E_CONTEXT
    return torch.stack([padded[a * HOP: a * HOP + span] for a, _ in slices])
