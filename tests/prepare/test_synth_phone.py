"""`prepare synth-asr --channel phone`: training and dev utterances through phone calls at 8 kHz, the test set
clean at 16 kHz."""

from __future__ import annotations

import pytest
import soundfile as sf
from click.testing import CliRunner

from speech_tl.channel import CODECS
from speech_tl.channel.codecs import codec_available
from speech_tl.cli import main
from speech_tl.manifest import read_manifest
from tests.channel.speech import one_torch_thread  # noqa: F401
from tests.prepare.test_synth import SENTENCES, needs_tts

needs_codecs = pytest.mark.skipif(any(codec_available(c) for c in CODECS),
                                  reason="; ".join(filter(None, (codec_available(c) for c in CODECS))))


@needs_tts
@needs_codecs
def test_synth_asr_phone_channel_gives_8khz_train_and_dev_and_a_clean_test_set(tmp_path):
    sent = tmp_path / "sentences.txt"
    sent.write_text("\n".join(SENTENCES), encoding="utf-8")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["prepare", "synth-asr", "--out-dir", str(out), "--sentences", str(sent),
                                    "--num-utterances", "10", "--channel", "phone", "--name", "synth-phone",
                                    "--workers", "1"])
    assert res.exit_code == 0, res.output
    parts = {s: read_manifest(out / f"synth-phone_de_{s}.jsonl") for s in ("train", "dev", "test")}
    assert [len(parts[s]) for s in ("train", "dev", "test")] == [8, 1, 1]
    for split in ("train", "dev"):
        for u in parts[split]:
            ch = u.extra["channel"]
            assert ch["kind"] == "phone" and ch["codec"]["name"] in CODECS and u.sample_rate == 8000
            info = sf.info(str(u.audio_path()))
            assert info.samplerate == 8000 and abs(info.duration - u.duration) < 1e-3
            assert u.id.startswith("synth-phone-") and u.text in SENTENCES
    assert len({u.extra["channel"]["codec"]["name"] for u in parts["train"]}) > 1  # a mix of codecs
    for u in parts["test"]:
        assert "channel" not in u.extra and u.sample_rate == 16000
        assert sf.info(str(u.audio_path())).samplerate == 16000
