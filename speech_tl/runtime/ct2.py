"""Whisper in a CTranslate2 folder (``speech-tl export ct2``, or any faster-whisper model folder), run by
CTranslate2 with speech-tl's features, prompt and decoding settings.

:class:`Ct2Whisper` transcribes a dataset as :func:`speech_tl.asr.seq2seq_infer.transcribe_seq2seq` transcribes it
with the torch model: utterances longest first, ``batch_size`` inputs per call; audio longer than 30 s in
consecutive 30 s windows whose texts are joined; the log-mel is speech-tl's
:class:`~speech_tl.backbones.whisper.WhisperLogMel` on the audio padded with silence to 30 s (what a
:class:`~speech_tl.asr.seq2seq.Seq2SeqModel` with ``pad_seconds`` 30 computes); the prompt comes from
:class:`~speech_tl.backbones.whisper_tokens.WhisperTokens` on the folder's ``tokenizer.json``; beam search is
CTranslate2's (``ctranslate2.models.Whisper.generate``) with the token lists speech-tl suppresses (the folder's
``suppress_ids`` and every special token but end-of-text; ``suppress_ids_begin`` at the first step), patience 1,
length penalty 1, no timestamps (CTranslate2 generates at most 224 tokens in a window).
:mod:`speech_tl.asr.whisper_search` follows the same search, so a checkpoint trained with ``model.pad_seconds: 30``
and its CTranslate2 export give the same transcripts, up to float rounding tipping a near tie.

Why CTranslate2's ``Whisper`` model directly and not faster-whisper's ``WhisperModel.transcribe``: faster-whisper
pads the log-mel of a short clip with zeros rather than the audio with silence (SYSTRAN/faster-whisper#1084 kept it
so), computes it with numpy one clip per call, falls back to sampling at higher temperatures and drops segments it
judges silent, so its transcripts are faster-whisper's, not the checkpoint's; given the clip padded with silence to
30 s and temperature 0 only, it gives :class:`Ct2Whisper`'s transcripts (``tests/export/test_hf_ct2_export.py``).

A CTranslate2 folder is told from a speech-tl checkpoint (``meta.json``) and an ONNX export (``export.json``) by
:func:`is_ct2_folder`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..backbones.whisper_tokens import WhisperTokens
from ..errors import InputError

SAMPLE_RATE = 16000
WINDOW_SECONDS = 30.0  # Whisper's input: 3000 log-mel frames
DEFAULT_BEAM = 5


def is_ct2_folder(path: str | Path) -> bool:
    """A CTranslate2 model folder: ``model.bin`` and ``config.json``, and no ``meta.json`` (a speech-tl checkpoint)
    or ``export.json`` (an ONNX export)."""
    p = Path(path)
    return (p.is_dir() and (p / "model.bin").is_file() and (p / "config.json").is_file()
            and not (p / "meta.json").exists() and not (p / "export.json").exists())


def _ct2_device(device: torch.device | str) -> tuple[str, int]:
    """CTranslate2's device name and index for ``cpu``, ``cuda``, ``cuda:N`` or ``auto``."""
    import ctranslate2

    if str(device) == "auto":
        return ("cuda", 0) if ctranslate2.get_cuda_device_count() > 0 else ("cpu", 0)
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"device {device}: CTranslate2 runs on cpu or cuda")
    return device.type, device.index or 0


class Ct2Whisper:
    """A CTranslate2 Whisper folder as a transcriber: ``Ct2Whisper(folder, device, language).transcribe(dataset)``.

    ``language``: the speech's language (a two-letter code); default: the one the export recorded
    (``speech_tl_export.json``), required for a multilingual model without one. ``compute_type``: CTranslate2's
    (``default`` keeps the folder's quantization). ``threads``: CTranslate2's ``intra_threads`` (default: torch's
    thread count, so both runtimes get the same)."""

    sample_rate = SAMPLE_RATE
    max_input_seconds = WINDOW_SECONDS

    def __init__(self, folder: str | Path, device: torch.device | str = "cpu", language: str | None = None,
                 compute_type: str = "default", threads: int | None = None):
        import ctranslate2

        self.folder = Path(folder)
        if not is_ct2_folder(self.folder):
            raise InputError(f"{self.folder}: not a CTranslate2 Whisper folder (expected model.bin and config.json, "
                             "as `speech-tl export ct2` or faster-whisper's converter writes them)")
        if not (self.folder / "tokenizer.json").is_file():
            raise InputError(f"{self.folder}: has no tokenizer.json; copy the model's tokenizer.json beside model.bin "
                             "(`ct2-transformers-converter --copy_files tokenizer.json` does)")
        dev, index = _ct2_device(device)
        self.device = dev
        try:
            self.model = ctranslate2.models.Whisper(str(self.folder), device=dev, device_index=index,
                                                    compute_type=compute_type,
                                                    intra_threads=threads or torch.get_num_threads())
        except (RuntimeError, ValueError) as e:
            raise InputError(f"{self.folder}: CTranslate2 cannot load it as Whisper ({e})") from None
        config = json.loads((self.folder / "config.json").read_text(encoding="utf-8"))
        generation = {k: [int(x) for x in config[k]] for k in ("suppress_ids", "suppress_ids_begin") if k in config}
        tokenizer_json = (self.folder / "tokenizer.json").read_text(encoding="utf-8")
        self.tokens = WhisperTokens(tokenizer_json, self._vocab_size(tokenizer_json), generation)
        if self.tokens.multilingual != self.model.is_multilingual:
            raise InputError(f"{self.folder}: tokenizer.json is {'' if self.tokens.multilingual else 'not '}"
                             f"multilingual but model.bin is {'' if self.model.is_multilingual else 'not '}"
                             "multilingual; the tokenizer belongs to another Whisper")
        self.info = self._export_info()
        language = language or self.info.get("language")
        if self.tokens.multilingual and not language:
            raise InputError(f"{self.folder} is multilingual: give the language of the speech (--language de)")
        self.language = language if self.tokens.multilingual else None
        self.prompt = self.tokens.prompt(self.language)
        from ..backbones.whisper import WhisperLogMel

        self.logmel = WhisperLogMel(self.model.n_mels).eval()

    def _vocab_size(self, tokenizer_json: str) -> int:
        """The model's output size: ``vocabulary.json`` / ``vocabulary.txt`` (the converter pads it with the
        timestamp tokens), else the tokenizer's size with its added tokens."""
        for name in ("vocabulary.json", "vocabulary.txt"):
            path = self.folder / name
            if path.is_file():
                text = path.read_text(encoding="utf-8")
                return len(json.loads(text)) if name.endswith(".json") else len(text.splitlines())
        from tokenizers import Tokenizer

        return Tokenizer.from_str(tokenizer_json).get_vocab_size(with_added_tokens=True)

    def _export_info(self) -> dict:
        from . import CT2_INFO_FILE as INFO_FILE

        path = self.folder / INFO_FILE
        try:
            return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except ValueError as e:
            raise InputError(f"{path}: not valid JSON ({e}); export the folder again") from None

    def features(self, waves: list[torch.Tensor]) -> torch.Tensor:
        """Log-mel ``(B, n_mels, 3000)`` of waves of at most 30 s, each padded with silence to 30 s."""
        n = int(WINDOW_SECONDS * SAMPLE_RATE)
        batch = torch.zeros(len(waves), n)
        for b, w in enumerate(waves):
            if w.numel() > n:
                raise InputError(f"an input of {w.numel() / SAMPLE_RATE:.1f} s is longer than Whisper's 30 s window")
            batch[b, :w.numel()] = w.float()
        with torch.no_grad():
            feats, _ = self.logmel(batch, torch.full((len(waves),), n, dtype=torch.long))
        return feats

    def generate(self, feats: torch.Tensor, beam: int = DEFAULT_BEAM) -> list[list[int]]:
        """CTranslate2's beam search on log-mels ``(B, n_mels, 3000)`` -> generated ids (no prompt, no end token)."""
        import ctranslate2
        import numpy as np

        storage = ctranslate2.StorageView.from_array(np.ascontiguousarray(feats.numpy(), dtype=np.float32))
        results = self.model.generate(storage, [list(self.prompt)] * feats.shape[0], beam_size=max(1, int(beam)),
                                      patience=1.0, length_penalty=1.0, max_length=self.tokens.max_positions,
                                      suppress_blank=True, suppress_tokens=self.tokens.suppressed())
        return [[i for i in r.sequences_ids[0] if i < self.tokens.eot] for r in results]

    def transcribe(self, dataset, beam: int = DEFAULT_BEAM, batch_size: int = 8, window_seconds: float | None = None,
                   desc: str | None = None) -> list[str]:
        """Hypotheses for every utterance of ``dataset`` (``dataset[i]`` = ``(wave (T,), i)`` at 16 kHz, with
        ``dataset.durations``), in order: :func:`speech_tl.runtime.windows.transcribe_in_windows` with CTranslate2's
        beam search."""
        from .windows import transcribe_in_windows

        def decode(waves: list[torch.Tensor]) -> list[str]:
            return [self.tokens.decode(ids) for ids in self.generate(self.features(waves), beam)]

        window = int(min(window_seconds or WINDOW_SECONDS, WINDOW_SECONDS) * SAMPLE_RATE)
        return transcribe_in_windows(dataset, decode, batch_size, window, desc)

    def eval(self) -> Ct2Whisper:  # the torch models' idiom, so callers may treat both alike
        return self
