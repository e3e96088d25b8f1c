"""Batched CTC inference and long audio in stitched windows (speech_tl.asr.infer), with a model whose output
frames say which input sample they stand for, and the device helper."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from speech_tl.asr.infer import ctc_posteriors, seams, stitch, window_spans
from speech_tl.device import check_device_name, resolve_device

SR = 16000


class FrameProbe(nn.Module):
    """Whisper's frame grid (320 samples a frame, ``((T // 160) + 1) // 2`` frames, at most 30 s) with an output
    that is the input sample at each frame's start: stitched outputs must read back the input exactly."""

    def __init__(self, max_seconds: float = 30.0):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.sample_rate, self.backbone.frame_samples = SR, 320
        self.backbone.max_input_seconds = max_seconds
        self.calls: list[tuple[int, int]] = []  # (batch, padded samples) of every forward pass

    def forward(self, wave, lengths):
        self.calls.append(tuple(wave.shape))
        assert wave.shape[1] <= self.backbone.max_input_seconds * SR, "input longer than the model accepts"
        frames = torch.div(torch.div(lengths, 160, rounding_mode="floor") + 1, 2, rounding_mode="floor")
        idx = torch.arange(int(frames.max())) * 320
        out = wave[:, idx.clamp(max=wave.shape[1] - 1)]
        return out[..., None].repeat(1, 1, 3), frames


class Ramps:
    """Item ``i``: a ramp of ``lengths[i]`` samples whose values are the sample indices (+ an offset per item)."""

    def __init__(self, seconds: list[float]):
        self.lengths = [int(s * SR) for s in seconds]
        self.durations = list(seconds)

    def __len__(self):
        return len(self.lengths)

    def __getitem__(self, i):
        return torch.arange(self.lengths[i], dtype=torch.float64) + 2e6 * i, i


@pytest.mark.parametrize("n", [1, 319, 48_000, 480_000, 480_001, 1_120_000, 1_123_457, 5_000_000])
def test_windows_cover_the_audio_overlap_and_sit_on_the_frame_grid(n):
    window, overlap = 480_000, 80_000
    spans = window_spans(n, window, overlap, align=320)
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(0 < b - a <= window for a, b in spans)
    assert all(a % 320 == 0 for a, _ in spans)
    for (a0, b0), (a1, _) in zip(spans, spans[1:], strict=False):
        assert a0 < a1 and b0 - a1 >= overlap  # overlapping by at least `overlap`: no gap
    for cut, (_, b0), (a1, _) in zip(seams(spans, 320), spans, spans[1:], strict=False):
        assert cut % 320 == 0 and a1 < cut < b0  # every seam inside its overlap


@pytest.mark.parametrize("batch_size", [1, 2, 16])
def test_stitched_posteriors_have_the_frames_of_one_pass_over_the_whole_audio(batch_size):
    seconds = [70.0, 3.2, 30.0, 95.37, 0.5, 31.0]
    model = FrameProbe()
    data = Ramps(seconds)
    got = dict(ctc_posteriors(model, data, "cpu", batch_size=batch_size))
    assert sorted(got) == list(range(len(seconds)))
    for i, n in enumerate(data.lengths):
        frames = (n // 160 + 1) // 2  # what one pass over the whole audio would give
        expected = torch.arange(frames, dtype=torch.float32) * 320 + 2e6 * i
        assert got[i].shape == (frames, 3)
        assert torch.equal(got[i][:, 0], expected), f"utterance {i} ({seconds[i]} s): frames out of place"
    assert all(b <= batch_size for b, _ in model.calls)
    windows = sum(len(window_spans(n, 480_000, 80_000, 320)) for n in data.lengths)
    assert sum(b for b, _ in model.calls) == windows  # every window ran once
    assert len(model.calls) == -(-windows // batch_size)


def test_batch_seconds_caps_the_padded_audio_and_shorter_windows_can_be_asked_for():
    model = FrameProbe()
    got = dict(ctc_posteriors(model, Ramps([20.0, 12.0, 4.0, 4.0]), "cpu", batch_size=8, batch_seconds=25.0,
                              window_seconds=10.0, overlap_seconds=2.0))
    assert all(b * n <= 25 * SR for b, n in model.calls) and max(n for _, n in model.calls) <= 10 * SR
    assert torch.equal(got[0][:, 0], torch.arange((320_000 // 160 + 1) // 2, dtype=torch.float32) * 320)


def test_stitch_estimates_the_frame_rate_when_the_backbone_does_not_say():
    spans = window_spans(1000, 400, 100)
    pieces = [torch.arange(a, b, 10, dtype=torch.float32) for a, b in spans]  # 10 samples a frame
    assert torch.equal(stitch(pieces, spans), torch.arange(0, 1000, 10, dtype=torch.float32))


def test_overlap_must_be_shorter_than_the_window():
    with pytest.raises(ValueError, match="overlap"):
        list(ctc_posteriors(FrameProbe(), Ramps([40.0]), "cpu", overlap_seconds=30.0))
    with pytest.raises(ValueError, match="batch size"):
        list(ctc_posteriors(FrameProbe(), Ramps([1.0]), "cpu", batch_size=0))


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "cuda:x", "", "tpu"):
        with pytest.raises(ValueError, match="expected auto, cpu, cuda or cuda:N"):
            check_device_name(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is available"):
            resolve_device("cuda")


def test_whisper_takes_70_seconds_in_30_second_windows_stitched_frame_by_frame(tiny_whisper):
    """A real (tiny, random) Whisper encoder with Whisper's 30 s position table: the stitched posteriors are, frame
    for frame, those of the window each frame is taken from, and there are as many as 70 s have."""
    import numpy as np

    from speech_tl.asr.model import CtcModel
    from speech_tl.backbones import load_backbone

    torch.manual_seed(0)
    model = CtcModel(load_backbone(tiny_whisper), 5).eval()
    assert model.backbone.max_input_seconds == 30.0 and model.backbone.frame_samples == 320
    n = 70 * SR + 12_345
    wave = torch.from_numpy((0.1 * np.random.default_rng(0).standard_normal(n)).astype(np.float32))

    class One:
        durations = [n / SR]

        def __len__(self):
            return 1

        def __getitem__(self, i):
            return wave, i

    [(index, stitched)] = list(ctc_posteriors(model, One(), "cpu", batch_size=2))
    assert index == 0 and stitched.shape == ((n // 160 + 1) // 2, 5)
    spans = window_spans(n, 30 * SR, 5 * SR, 320)
    assert len(spans) == 3
    edges = [0] + [c // 320 for c in seams(spans, 320)] + [stitched.shape[0]]
    with torch.no_grad():
        for k, (a, b) in enumerate(spans):
            alone, frames = model(wave=wave[None, a:b], lengths=torch.tensor([b - a]))
            lo, hi = edges[k] - a // 320, edges[k + 1] - a // 320
            assert 0 <= lo < hi <= int(frames[0])
            assert torch.allclose(stitched[edges[k]:edges[k + 1]], alone[0, lo:hi], atol=1e-4), k
        with pytest.raises(ValueError, match="longer than Whisper's 30 s"):  # what a single pass would do
            model(wave=wave[None], lengths=torch.tensor([n]))
