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

The same teacher can also teach at the decoder's output (``model.channel_teacher_kd_weight``): the frozen pretrained
decoder, reading the teacher encoder's output on the clean audio and teacher-forced on the transcript, gives a
distribution over the next token at every position; the student, reading the call, is pulled toward it by the
Kullback-Leibler divergence (knowledge distillation, Hinton, Vinyals and Dean 2015, on parallel clean and noisy
speech as in Li et al. 2017). Beside the one right token of the transcript, the target says which other tokens the
zero-shot model found plausible on clean speech: a richer target per token, and on a clean line (its own source) a
pull toward the zero-shot model's behaviour where it is good.

No maintained library implements this for Whisper encoders with parallel audio; the losses are a few lines.
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
    """The frozen pretrained encoder (and decoder, for the decoder-output term) and the clean source of every
    training utterance.

    ``encoder``, ``decoder``: the student's before training (copied here; the copies never change). ``weight``: of
    the encoder-output term; ``kd_weight``: of the decoder-output term. ``manifest``: the training manifest, named in
    errors.
    """

    def __init__(self, encoder: nn.Module, utterances: list[Utterance], weight: float, decoder: nn.Module | None = None,
                 kd_weight: float = 0.0, manifest: str = "the training manifest"):
        self.encoder = copy.deepcopy(encoder).eval().requires_grad_(False)
        if kd_weight > 0 and decoder is None:
            raise ValueError("ChannelTeacher: kd_weight needs the pretrained decoder")
        # the decoder before training, for the decoder-output term (None when that term is off)
        self.decoder = copy.deepcopy(decoder).eval().requires_grad_(False) if kd_weight > 0 else None
        self.kd_weight = kd_weight
        self.sources = [clean_source(u) for u in utterances]
        from pathlib import Path

        from ..errors import InputError

        missing = [(u, s["audio"]) for u, s in zip(utterances, self.sources, strict=True)
                   if not Path(s["audio"]).is_file()]
        if missing:  # found now, not at the step that first draws the line
            u, path = missing[0]
            raise InputError(f"{manifest}:{u.line}: the clean source of {u.id!r} ({path}) is not there "
                             f"({len(missing)} such); the channel teacher encodes it (model.channel_teacher_weight "
                             "and model.channel_teacher_kd_weight): prepare the twin again or set both weights to 0")
        self.weight = weight
        self.paired = sum(1 for u in utterances if u.extra.get("source_audio"))

    def targets(self, indices: list[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's output ``(B, T', D)`` on the clean sources of ``indices``, and how many of its frames hold
        speech ``(B,)`` (an encoder frame is 20 ms; inputs padded to 30 s give 1,500 frames, mostly silence)."""
        hidden, frames, _ = self._run(indices, device, None)
        return hidden, frames

    def all_targets(self, indices: list[int], device: torch.device, tokens: torch.Tensor, labelled: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """:meth:`targets` and, with the decoder-output term on, the pretrained decoder's log-probabilities
        ``(N, V)`` (float32) at the ``N`` labelled positions (``labelled (B, L)``, True where a token is predicted)
        of its run on its encoding of the clean sources, teacher-forced on ``tokens (B, L)`` (the student's decoder
        input); one teacher encoder pass for both."""
        return self._run(indices, device, tokens, labelled)

    def _run(self, indices: list[int], device: torch.device, tokens: torch.Tensor | None,
             labelled: torch.Tensor | None = None):
        from ..audio import load_audio
        from ..data import pad_waves
        from .seq2seq import run_decoder

        waves = [load_audio(s["audio"], offset=s["offset"], duration=s["duration"])
                 for s in (self.sources[int(i)] for i in indices)]
        wave, lengths = pad_waves(waves)
        if next(self.encoder.parameters()).device != device:
            self.encoder.to(device)
        log_probs = None
        with torch.no_grad():
            hidden, enc_lengths = self.encoder(wave.to(device), lengths.to(device))
            if self.decoder is not None and tokens is not None:
                if next(self.decoder.parameters()).device != device:
                    self.decoder.to(device)
                logits = run_decoder(self.decoder, tokens.to(device), hidden, enc_lengths)
                log_probs = logits[labelled.to(device)].float().log_softmax(-1)  # only where the loss reads them
        return hidden.float(), speech_frames(lengths), log_probs

    @staticmethod
    def kd_loss(logits: torch.Tensor, teacher_log_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """KL(teacher || student) per predicted token, averaged over the tokens that have a label: ``logits (B, L,
        V)`` the student's, ``labels (B, L)`` with -100 where nothing is predicted (prompt, padding),
        ``teacher_log_probs (N, V)`` at the ``N`` labelled positions in row-major order (:meth:`all_targets`)."""
        mask = labels.to(logits.device) != -100
        student = logits[mask].float().log_softmax(-1)
        teacher = teacher_log_probs.to(logits.device)
        if teacher.shape != student.shape:
            raise ValueError(f"kd_loss: teacher log-probabilities {tuple(teacher.shape)} for {tuple(student.shape)} "
                             "labelled positions of the student")
        return nn.functional.kl_div(student, teacher, log_target=True, reduction="sum") / max(1, student.shape[0])

    def loss(self, student: torch.Tensor, target: torch.Tensor, speech_frames: torch.Tensor) -> torch.Tensor:
        """Mean squared error between ``student`` and ``target`` ``(B, T', D)`` over the first ``speech_frames``
        ``(B,)`` frames of each (the padding to 30 s is left out)."""
        frames = min(student.shape[1], target.shape[1])
        n = speech_frames.to(student.device).clamp(max=frames)
        mask = (torch.arange(frames, device=student.device)[None, :] < n[:, None]).unsqueeze(-1)
        diff = (student[:, :frames].float() - target[:, :frames].to(student.device)) ** 2
        return (diff * mask).sum() / (mask.sum() * student.shape[-1]).clamp(min=1)
