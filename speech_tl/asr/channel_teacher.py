"""Teacher-student channel adaptation: the encoder's output on a phone call pulled toward what the pretrained
encoder made of the same speech before the call.

Parallel data make this possible: every line of a telephone twin (``prepare channel``) names the clean recording it
was made from (``source_audio``, and ``source_offset`` / ``source_duration`` for a segment), and a pack of such lines
(``prepare pack``) names the clean pack with the same pauses. The frozen pretrained encoder (the teacher) encodes
the clean audio; the encoder being trained (the student) encodes the call; their outputs, frame by frame over the
speech, are brought together by a mean squared error added to the transcript's cross-entropy with weight
``model.channel_teacher_weight``. A clean line is its own source: there the term keeps the student where the
pretrained encoder was, so what worked on clean speech is not traded away for the phone. This is the
teacher-student domain adaptation of Li, Seltzer, Wang, Zhao and Gong (Interspeech 2017, "Large-scale domain
adaptation via teacher-student learning"), applied to the encoder's output rather than to senone posteriors,
because Whisper's decoder reads the encoder's output. A dense target (1,500 frames of 512 numbers per 30 s
window, against a few dozen tokens) teaches the channel in far fewer steps than transcripts alone.

No maintained library implements this for Whisper encoders with parallel audio; the loss is a few lines.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..manifest import Utterance, clean_source

FRAME_SAMPLES = 320  # one Whisper encoder frame: 20 ms at 16 kHz (two 10 ms feature frames, stride-2 convolution)


def speech_frames(lengths: torch.Tensor) -> torch.Tensor:
    """Encoder frames of ``lengths`` samples of speech, as the encoder counts them (whole 10 ms feature frames, then
    the stride-2 convolution rounding up): ``ceil(floor(n / 160) / 2)``, at least 1. Not ``ceil(n / 320)``, which is
    one more for half the lengths (a frame of padding)."""
    features = torch.div(lengths, FRAME_SAMPLES // 2, rounding_mode="floor").clamp(min=1)
    return torch.div(features + 1, 2, rounding_mode="floor")


class ChannelTeacher:
    """The frozen pretrained encoder and the clean source of every training utterance.

    ``encoder``: the student's encoder before training (copied here; the copy never changes).
    """

    def __init__(self, encoder: nn.Module, utterances: list[Utterance], weight: float):
        self.encoder = copy.deepcopy(encoder).eval().requires_grad_(False)
        self.sources = [clean_source(u) for u in utterances]
        from pathlib import Path

        from ..errors import InputError

        missing = [(u, s["audio"]) for u, s in zip(utterances, self.sources, strict=True)
                   if not Path(s["audio"]).is_file()]
        if missing:  # found now, not at the step that first draws the line
            u, path = missing[0]
            raise InputError(f"line {u.line} of the training manifest: the clean source of {u.id!r} ({path}) is "
                             f"not there ({len(missing)} such); the channel teacher encodes it "
                             "(model.channel_teacher_weight): prepare the twin again or set the weight to 0")
        self.weight = weight
        self.paired = sum(1 for u in utterances if u.extra.get("source_audio"))

    def targets(self, indices: list[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's output ``(B, T', D)`` on the clean sources of ``indices``, and how many of its frames hold
        speech ``(B,)`` (an encoder frame is 20 ms; inputs padded to 30 s give 1,500 frames, mostly silence)."""
        from ..audio import load_audio
        from ..data import pad_waves

        waves = [load_audio(s["audio"], offset=s["offset"], duration=s["duration"])
                 for s in (self.sources[int(i)] for i in indices)]
        wave, lengths = pad_waves(waves)
        if next(self.encoder.parameters()).device != device:
            self.encoder.to(device)
        with torch.no_grad():
            hidden, _ = self.encoder(wave.to(device), lengths.to(device))
        return hidden.float(), speech_frames(lengths)

    def loss(self, student: torch.Tensor, target: torch.Tensor, speech_frames: torch.Tensor) -> torch.Tensor:
        """Mean squared error between ``student`` and ``target`` ``(B, T', D)`` over the first ``speech_frames``
        ``(B,)`` frames of each (the padding to 30 s is left out)."""
        frames = min(student.shape[1], target.shape[1])
        n = speech_frames.to(student.device).clamp(max=frames)
        mask = (torch.arange(frames, device=student.device)[None, :] < n[:, None]).unsqueeze(-1)
        diff = (student[:, :frames].float() - target[:, :frames].to(student.device)) ** 2
        return (diff * mask).sum() / (mask.sum() * student.shape[-1]).clamp(min=1)
