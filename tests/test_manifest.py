"""Manifests: reading, writing, validation messages, filters, splits and statistics (real files in tmp_path)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest

from speech_tl.manifest import (
    ManifestError,
    Utterance,
    check_audio_files,
    filter_duration,
    filter_vocabulary,
    format_stats,
    iter_manifest,
    manifest_stats,
    read_manifest,
    split_manifest,
    utterance_from_dict,
    write_jsonl,
    write_manifest,
)


def row(i: int | str, **kw) -> dict:
    """A valid manifest row; keyword arguments override or add fields."""
    base = {"id": f"u{i}", "audio": f"clips/u{i}.wav", "duration": 1.5, "text": "Hallo Welt.", "speaker": "s1",
            "language": "de"}
    base.update(kw)
    return base


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def write_rows(path: Path, rows: list[dict]) -> Path:
    return write_lines(path, [json.dumps(r, ensure_ascii=False) for r in rows])


def utt(i: int, speaker: str = "s1", text: str = "a", duration: float = 1.0, language: str = "de") -> Utterance:
    return Utterance(id=f"u{i:04d}", audio=f"clips/u{i}.wav", duration=duration, text=text, speaker=speaker,
                     language=language)


# --------------------------------------------------------------------------- read / write round trip

def test_round_trip_keeps_fields_unicode_and_extras(tmp_path):
    rows = [
        row(1, text="Grüße aus Köln, Straße und Maß: ÄÖÜ äöü ß.", speaker="sprecher-ä"),
        row(2, text="„Zitat“ – ‚halb‘ … ẞ", offset=2.25, sample_rate=48000, domain="news", gender="f"),
        row(3, duration=3, audio="/abs/elsewhere/x.flac"),
    ]
    src = write_rows(tmp_path / "in.jsonl", rows)
    utts = read_manifest(src)
    assert [u.id for u in utts] == ["u1", "u2", "u3"]
    assert utts[0].text == "Grüße aus Köln, Straße und Maß: ÄÖÜ äöü ß."
    assert utts[0].speaker == "sprecher-ä"
    assert utts[1].offset == 2.25 and isinstance(utts[1].offset, float)
    assert utts[1].sample_rate == 48000
    assert utts[1].extra == {"domain": "news", "gender": "f"}
    assert utts[0].offset is None and utts[0].sample_rate is None and utts[0].extra == {}
    assert utts[2].duration == 3.0 and isinstance(utts[2].duration, float)

    out = tmp_path / "out.jsonl"
    assert write_manifest(out, utts) == 3
    raw = out.read_bytes().decode("utf-8")
    # non-ASCII is written verbatim, not as \u escapes
    assert "Grüße aus Köln, Straße und Maß: ÄÖÜ äöü ß." in raw
    assert "„Zitat“ – ‚halb‘ … ẞ" in raw
    assert "\\u" not in raw
    written = [json.loads(line) for line in raw.splitlines()]
    assert written[0] == rows[0]
    assert written[1] == rows[1]  # extras written back unchanged, optional fields kept
    assert "offset" not in written[0] and "sample_rate" not in written[0]
    assert written[2]["audio"] == "/abs/elsewhere/x.flac"

    again = read_manifest(out)
    assert again == utts  # dataclass equality ignores root
    assert [u.audio_path() for u in again] == [u.audio_path() for u in utts]


def test_iter_manifest_is_lazy_and_skips_blank_lines(tmp_path):
    path = write_lines(tmp_path / "m.jsonl", [json.dumps(row(1)), "", "   ", json.dumps(row(2)),
                                              json.dumps(row(3, duration="x"))])
    it = iter_manifest(path)
    assert next(it).id == "u1"
    assert next(it).id == "u2"
    with pytest.raises(ManifestError, match=r"m\.jsonl:5: field 'duration'"):
        next(it)


def test_crlf_line_endings_are_read(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes((json.dumps(row(1)) + "\r\n" + json.dumps(row(2, text="Tschüß")) + "\r\n").encode("utf-8"))
    utts = read_manifest(path)
    assert [u.text for u in utts] == ["Hallo Welt.", "Tschüß"]


def test_relative_audio_resolves_against_manifest_folder_not_cwd(tmp_path, monkeypatch, make_tone):
    corpus = tmp_path / "corpus"
    wav = make_tone(corpus / "clips" / "a.wav")
    manifest = write_rows(corpus / "m.jsonl", [row("a", audio="clips/a.wav"),
                                                row("b", audio="../other/b.wav"),
                                                row("c", audio=str(tmp_path / "abs.wav"))])
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    utts = read_manifest(Path("..") / "corpus" / "m.jsonl")  # a relative manifest path, read from another cwd
    assert utts[0].audio == "clips/a.wav"  # kept exactly as written
    assert utts[0].audio_path().is_absolute()
    assert utts[0].audio_path().resolve() == wav.resolve()
    assert utts[1].audio_path().resolve() == (tmp_path / "other" / "b.wav").resolve()
    assert utts[2].audio_path() == tmp_path / "abs.wav"
    problems = check_audio_files(utts)
    assert [(u.id, msg) for u, msg in problems] == [
        ("ub", f"audio file not found: {utts[1].audio_path()}"),
        ("uc", f"audio file not found: {tmp_path / 'abs.wav'}"),
    ]
    assert manifest.is_file()


def test_audio_path_without_root_is_as_written():
    u = utt(1)
    assert u.audio_path() == Path("clips/u1.wav")
    u.root = Path("/data/corpus")
    assert u.audio_path() == Path("/data/corpus/clips/u1.wav")


def test_write_manifest_relative_under_folder_absolute_elsewhere(tmp_path, make_tone):
    corpus = tmp_path / "corpus"
    make_tone(corpus / "clips" / "a.wav")
    make_tone(corpus / "clips" / "sub" / "b.wav")
    outside = make_tone(tmp_path / "outside" / "c.wav")
    src = write_rows(corpus / "all.jsonl", [row("a", audio="clips/a.wav"), row("b", audio="clips/sub/b.wav"),
                                            row("c", audio=str(outside))])
    utts = read_manifest(src)

    # same folder: relative paths stay relative, absolute path under another folder stays absolute
    write_manifest(corpus / "same.jsonl", utts)
    same = [json.loads(line) for line in (corpus / "same.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["audio"] for r in same] == ["clips/a.wav", "clips/sub/b.wav", str(outside)]

    # a parent folder: the relative paths are rebased, an absolute path under it becomes relative
    write_manifest(tmp_path / "parent.jsonl", utts)
    parent = [json.loads(line) for line in (tmp_path / "parent.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["audio"] for r in parent] == ["corpus/clips/a.wav", "corpus/clips/sub/b.wav", "outside/c.wav"]

    # a sibling folder: nothing is under it, so all paths are absolute
    write_manifest(tmp_path / "splits" / "x.jsonl", utts)
    sib = [json.loads(line) for line in (tmp_path / "splits" / "x.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(Path(r["audio"]).is_absolute() for r in sib)

    # relative=False: everything absolute
    write_manifest(corpus / "abs.jsonl", utts, relative=False)
    ab = [json.loads(line) for line in (corpus / "abs.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(Path(r["audio"]).is_absolute() for r in ab)

    # every rewritten manifest still points at the same files, and they exist
    for name in ("corpus/same.jsonl", "parent.jsonl", "splits/x.jsonl", "corpus/abs.jsonl"):
        back = read_manifest(tmp_path / name)
        assert [u.audio_path().resolve() for u in back] == [u.audio_path().resolve() for u in utts], name
        assert check_audio_files(back) == []


def test_write_manifest_keeps_rootless_relative_paths_and_is_atomic(tmp_path):
    out = tmp_path / "new" / "m.jsonl"
    n = write_manifest(out, [utt(1), utt(2)])
    assert n == 2
    assert [json.loads(line)["audio"] for line in out.read_text(encoding="utf-8").splitlines()] == \
        ["clips/u1.wav", "clips/u2.wav"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.jsonl"]  # no temporary files left
    assert write_manifest(out, []) == 0
    assert out.read_text(encoding="utf-8") == ""
    assert read_manifest(out) == []


def test_write_jsonl_counts_and_keeps_unicode(tmp_path):
    out = tmp_path / "r.jsonl"
    assert write_jsonl(out, ({"k": c} for c in "äöß")) == 3
    assert out.read_text(encoding="utf-8") == '{"k": "ä"}\n{"k": "ö"}\n{"k": "ß"}\n'


# --------------------------------------------------------------------------- validation messages

def _error(tmp_path: Path, lines: list[str]) -> str:
    path = write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(ManifestError) as e:
        read_manifest(path)
    return str(e.value)


def test_missing_manifest_names_file(tmp_path):
    with pytest.raises(ManifestError, match=r"nope\.jsonl: manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path)  # a folder is not a manifest


def test_bad_json_names_file_line_and_column(tmp_path):
    msg = _error(tmp_path, [json.dumps(row(1)), json.dumps(row(2)), '{"id": "u3", "audio": '])
    assert msg.startswith(f"{tmp_path / 'bad.jsonl'}:3: not valid JSON")
    assert "column" in msg and "one JSON object" in msg


def test_non_object_line(tmp_path):
    msg = _error(tmp_path, [json.dumps(row(1)), "[1, 2]"])
    assert msg.startswith(f"{tmp_path / 'bad.jsonl'}:2: ")
    assert "expected a JSON object" in msg and "list" in msg


def test_missing_fields_are_all_named(tmp_path):
    r = row(1)
    del r["speaker"], r["duration"]
    msg = _error(tmp_path, [json.dumps(row(0)), "", json.dumps(r)])
    assert msg.startswith(f"{tmp_path / 'bad.jsonl'}:3: missing field(s) duration, speaker")


@pytest.mark.parametrize("duration_json, shown", [
    ("-1.0", "-1.0"), ("0", "0"), ("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf"), ("true", "True"),
    ("false", "False"), ('"1.5"', "'1.5'"), ("null", "None"), ("[1]", "[1]"),
])
def test_bad_duration(tmp_path, duration_json, shown):
    line = json.dumps(row(1, duration=123456789)).replace("123456789", duration_json)
    msg = _error(tmp_path, [json.dumps(row(0)), line])
    assert msg.startswith(f"{tmp_path / 'bad.jsonl'}:2: field 'duration' must be a positive number")
    assert msg.endswith(f"got {shown}")


@pytest.mark.parametrize("field_name, value", [
    ("speaker", 5), ("speaker", None), ("speaker", ["a"]), ("text", 1.5), ("id", 7), ("audio", False),
    ("language", {"de": 1}),
])
def test_non_string_fields(tmp_path, field_name, value):
    msg = _error(tmp_path, [json.dumps(row(1, **{field_name: value}))])
    assert msg == f"{tmp_path / 'bad.jsonl'}:1: field '{field_name}' must be a string, got {value!r}"


def test_empty_id_and_audio(tmp_path):
    assert "bad.jsonl:1: field 'id' is empty" in _error(tmp_path, [json.dumps(row(1, id=""))])
    assert "bad.jsonl:1: field 'audio' is empty" in _error(tmp_path, [json.dumps(row(1, audio=""))])


@pytest.mark.parametrize("value", [-0.5, "1", True, float("nan")])
def test_bad_offset(tmp_path, value):
    msg = _error(tmp_path, [json.dumps(row(1, offset=value))])
    assert msg.startswith(f"{tmp_path / 'bad.jsonl'}:1: field 'offset' must be a number of seconds >= 0")


@pytest.mark.parametrize("value", [0, -16000, 16000.0, "16000", True])
def test_bad_sample_rate(tmp_path, value):
    msg = _error(tmp_path, [json.dumps(row(1, sample_rate=value))])
    assert msg.startswith(f"{tmp_path / 'bad.jsonl'}:1: field 'sample_rate' must be a positive integer")


def test_offset_zero_is_valid_and_kept(tmp_path):
    utts = read_manifest(write_rows(tmp_path / "m.jsonl", [row(1, offset=0)]))
    assert utts[0].offset == 0.0
    assert utts[0].to_dict()["offset"] == 0.0


def test_duplicate_id_names_both_lines(tmp_path):
    msg = _error(tmp_path, [json.dumps(row(1)), json.dumps(row(2)), "", json.dumps(row(1, text="anders"))])
    assert msg.startswith(f"{tmp_path / 'bad.jsonl'}:4: duplicate id 'u1' (first on line 1)")


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    good = json.dumps(row(1), ensure_ascii=False) + "\n"
    bad = json.dumps(row(2, text="Grüße"), ensure_ascii=False) + "\n"
    path.write_bytes(good.encode("utf-8") + bad.encode("latin-1"))
    with pytest.raises(ManifestError) as e:
        read_manifest(path)
    assert str(e.value).startswith(f"{path}:2: ")
    assert "UTF-8" in str(e.value)


def test_utterance_from_dict_direct():
    u = utterance_from_dict(row(1, duration=2, offset=1, sample_rate=8000, foo=[1]), root=Path("/r"))
    assert (u.duration, u.offset, u.sample_rate, u.extra) == (2.0, 1.0, 8000, {"foo": [1]})
    assert u.audio_path() == Path("/r/clips/u1.wav")
    with pytest.raises(ManifestError, match=r"^x\.jsonl:7: field 'speaker'"):
        utterance_from_dict(row(1, speaker=3), "x.jsonl", 7)
    with pytest.raises(ManifestError, match=r"^<memory>: expected a JSON object"):
        utterance_from_dict("text")


# --------------------------------------------------------------------------- filters

def test_filter_duration_reasons_and_nothing_dropped():
    utts = [utt(i, duration=d) for i, d in enumerate([0.2, 0.5, 1.0, 10.0, 20.0, 20.01, 0.49])]
    kept, rejected = filter_duration(utts, min_s=0.5, max_s=20.0)
    assert [u.duration for u in kept] == [0.5, 1.0, 10.0, 20.0]  # bounds are inclusive, order kept
    assert [(u.duration, why) for u, why in rejected] == [
        (0.2, "shorter than 0.5 s (0.20 s)"),
        (20.01, "longer than 20 s (20.01 s)"),
        (0.49, "shorter than 0.5 s (0.49 s)"),
    ]
    assert Counter(u.id for u in kept) + Counter(u.id for u, _ in rejected) == Counter(u.id for u in utts)


def test_filter_duration_defaults_keep_everything():
    utts = [utt(i, duration=d) for i, d in enumerate([0.01, 1e6])]
    kept, rejected = filter_duration(utts)
    assert kept == utts and rejected == []


def test_filter_vocabulary_reasons_and_normalize():
    texts = ["hallo welt", "Hallo Welt", "grüße", "straße!", ""]
    utts = [utt(i, text=t) for i, t in enumerate(texts)]
    vocab = set("abcdefghijklmnopqrstuvwxyzäöüß ")
    kept, rejected = filter_vocabulary(utts, vocab)
    assert [u.text for u in kept] == ["hallo welt", "grüße", ""]
    assert [(u.text, why) for u, why in rejected] == [
        ("Hallo Welt", "characters outside the vocabulary: 'H' 'W'"),
        ("straße!", "characters outside the vocabulary: '!'"),
    ]
    assert len(kept) + len(rejected) == len(utts)
    assert {u.id for u in kept}.isdisjoint({u.id for u, _ in rejected})

    kept, rejected = filter_vocabulary(utts, vocab, normalize=lambda s: s.lower().replace("!", ""))
    assert [u.text for u in kept] == texts  # the utterance text itself is not changed
    assert rejected == []


def test_filters_accept_generators():
    kept, rejected = filter_duration((utt(i, duration=i) for i in range(1, 5)), 2, 3)
    assert [u.duration for u in kept] == [2, 3] and len(rejected) == 2
    kept, rejected = filter_vocabulary((utt(i, text=t) for i, t in enumerate("ab")), iter("a"))
    assert [u.text for u in kept] == ["a"] and [u.text for u, _ in rejected] == ["b"]


# --------------------------------------------------------------------------- splits

def corpus(n_speakers: int = 20, per_speaker: int = 5, n_texts: int = 30) -> list[Utterance]:
    out = []
    for s in range(n_speakers):
        for k in range(per_speaker):
            i = s * per_speaker + k
            out.append(utt(i, speaker=f"spk{s:02d}", text=f"satz {(i * 7) % n_texts}"))
    return out


FRACTIONS = {"train": 0.8, "dev": 0.1, "test": 0.1}


def _ids(parts):
    return {name: [u.id for u in us] for name, us in parts.items()}


@pytest.mark.parametrize("by", ["speaker", "text", "speaker+text"])
def test_split_is_reproducible_and_seed_dependent(by):
    utts = corpus()
    a, rej_a = split_manifest(utts, FRACTIONS, by=by, seed=3)
    b, rej_b = split_manifest(list(utts), dict(FRACTIONS), by=by, seed=3)
    assert _ids(a) == _ids(b)
    assert [(u.id, w) for u, w in rej_a] == [(u.id, w) for u, w in rej_b]
    # the input order does not matter for which group goes where
    c, _ = split_manifest(list(reversed(utts)), FRACTIONS, by=by, seed=3)
    assert {k: sorted(v) for k, v in _ids(c).items()} == {k: sorted(v) for k, v in _ids(a).items()}
    others = [_ids(split_manifest(utts, FRACTIONS, by=by, seed=s)[0]) for s in range(4, 9)]
    assert any(o != _ids(a) for o in others)
    assert list(a) == ["train", "dev", "test"]


def test_split_by_speaker_disjoint_and_proportional():
    utts = corpus(n_speakers=20)
    parts, rejected = split_manifest(utts, FRACTIONS, by="speaker", seed=0)
    assert rejected == []
    speakers = {name: {u.speaker for u in us} for name, us in parts.items()}
    assert {n: len(s) for n, s in speakers.items()} == {"train": 16, "dev": 2, "test": 2}
    assert speakers["train"].isdisjoint(speakers["dev"] | speakers["test"])
    assert speakers["dev"].isdisjoint(speakers["test"])
    # every utterance placed exactly once, with all of its speaker's utterances
    placed = [u.id for us in parts.values() for u in us]
    assert sorted(placed) == sorted(u.id for u in utts)
    assert {n: len(us) for n, us in parts.items()} == {"train": 80, "dev": 10, "test": 10}


def test_split_by_text_disjoint():
    utts = corpus(n_texts=30)
    parts, rejected = split_manifest(utts, FRACTIONS, by="text", seed=1)
    assert rejected == []
    texts = {name: {u.text for u in us} for name, us in parts.items()}
    assert {n: len(t) for n, t in texts.items()} == {"train": 24, "dev": 3, "test": 3}
    assert texts["train"].isdisjoint(texts["dev"] | texts["test"]) and texts["dev"].isdisjoint(texts["test"])
    assert sorted(u.id for us in parts.values() for u in us) == sorted(u.id for u in utts)


def test_split_by_speaker_and_text_disjoint_with_rejections_explained():
    utts = corpus(n_speakers=20, per_speaker=6, n_texts=40)
    parts, rejected = split_manifest(utts, FRACTIONS, by="speaker+text", seed=2)
    speakers = {name: {u.speaker for u in us} for name, us in parts.items()}
    texts = {name: {u.text for u in us} for name, us in parts.items()}
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert speakers[a].isdisjoint(speakers[b]), (a, b)
            assert texts[a].isdisjoint(texts[b]), (a, b)
    assert rejected, "this corpus mixes speakers and texts, so some utterances cannot be placed"
    placed = [u.id for us in parts.values() for u in us]
    assert sorted(placed + [u.id for u, _ in rejected]) == sorted(u.id for u in utts)  # nothing dropped silently
    assert len(set(placed)) == len(placed)
    for u, why in rejected:
        assert why.startswith("speaker assigned to '") and "but text to '" in why and "speaker+text" in why
        spk_part = why.split("'")[1]
        txt_part = why.split("'")[3]
        assert spk_part != txt_part and {spk_part, txt_part} <= set(names)
        # the reason is true: other placed utterances of that speaker / text sit in those parts
        assert all(spk_part == n for n, s in speakers.items() if u.speaker in s)
        assert all(txt_part == n for n, t in texts.items() if u.text in t)


def test_split_fraction_edge_cases():
    utts = corpus(n_speakers=10, per_speaker=1)
    parts, _ = split_manifest(utts, {"a": 2, "b": 2, "c": 0}, by="speaker")  # normalised shares, an empty part
    assert {n: len(v) for n, v in parts.items()} == {"a": 5, "b": 5, "c": 0}
    parts, _ = split_manifest(utts, {"all": 1.0})
    assert len(parts["all"]) == 10
    parts, rejected = split_manifest([], FRACTIONS)
    assert parts == {"train": [], "dev": [], "test": []} and rejected == []


@pytest.mark.parametrize("fractions, by", [
    ({"a": -0.1, "b": 1.1}, "speaker"), ({}, "speaker"), ({"a": 0, "b": 0}, "speaker"), ({"a": 1}, "language"),
])
def test_split_rejects_bad_arguments(fractions, by):
    with pytest.raises(ValueError, match="split"):
        split_manifest(corpus(2, 1), fractions, by=by)


# --------------------------------------------------------------------------- statistics

def test_manifest_stats_numbers():
    utts = [
        utt(1, speaker="anna", text="Maß", duration=1800.0),
        utt(2, speaker="bert", text="aß a", duration=900.0),
        utt(3, speaker="anna", text="Öl", duration=3.0, language="en"),
        utt(4, speaker="carl", text="", duration=1.25),
        utt(5, speaker="bert", text="ß", duration=0.5),
        utt(6, speaker="anna", text="a", duration=0.25),
    ]
    st = manifest_stats(utts)
    assert st["utterances"] == 6
    assert st["hours"] == pytest.approx((1800 + 900 + 3 + 1.25 + 0.5 + 0.25) / 3600)
    assert st["speakers"] == 3
    assert st["languages"] == {"de": 5, "en": 1}
    assert st["duration_min"] == 0.25 and st["duration_max"] == 1800.0
    assert st["duration_median"] == pytest.approx((1.25 + 3.0) / 2)  # even count: mean of the two middle values
    assert st["per_speaker"] == {
        "anna": {"utterances": 3, "seconds": 1803.25},
        "bert": {"utterances": 2, "seconds": 900.5},
        "carl": {"utterances": 1, "seconds": 1.25},
    }
    assert list(st["per_speaker"]) == ["anna", "bert", "carl"]  # most utterances first
    assert st["characters"] == {"a": 4, "ß": 3, " ": 1, "M": 1, "l": 1, "Ö": 1}
    assert list(st["characters"]) == ["a", "ß", " ", "M", "l", "Ö"]  # by count, then by character
    json.dumps(st)  # JSON-serialisable as is


def test_manifest_stats_odd_median_and_ties():
    st = manifest_stats([utt(i, speaker=s, duration=d) for i, (s, d) in enumerate(
        [("b", 5.0), ("a", 1.0), ("c", 3.0)])])
    assert st["duration_median"] == 3.0
    assert list(st["per_speaker"]) == ["a", "b", "c"]  # ties sorted by name


def test_manifest_stats_empty_and_format():
    st = manifest_stats([])
    assert st["utterances"] == 0 and st["hours"] == 0 and st["speakers"] == 0
    assert st["duration_min"] == st["duration_median"] == st["duration_max"] == 0.0
    assert st["per_speaker"] == {} and st["characters"] == {}
    text = format_stats("empty.jsonl", st)
    assert "utterances  0" in text and "languages   -" in text and "characters (0): " in text


def test_format_stats_lists_speakers_and_inventory():
    utts = [utt(i, speaker=f"s{i:02d}", text="ab c", duration=7200.0 if i == 0 else 1.0) for i in range(25)]
    text = format_stats("m.jsonl", manifest_stats(utts), max_speakers=3)
    lines = text.splitlines()
    assert lines[0] == "m.jsonl"
    assert "  utterances  25" in lines
    assert f"  hours       {(7200 + 24) / 3600:.3f}" in lines
    assert "  speakers    25" in lines
    assert sum(1 for line in lines if line.startswith("    s")) == 3
    assert "    ... and 22 more speakers" in lines
    assert lines[-1] == "  characters (4): ␣abc"


def test_manifest_stats_from_file_matches_content(tmp_path):
    rows = [row(i, speaker=f"s{i % 3}", duration=1.0 + i, text="Grüß Gott") for i in range(7)]
    st = manifest_stats(read_manifest(write_rows(tmp_path / "m.jsonl", rows)))
    assert st["utterances"] == 7
    assert st["hours"] == pytest.approx(sum(1.0 + i for i in range(7)) / 3600)
    assert {s: v["utterances"] for s, v in st["per_speaker"].items()} == {"s0": 3, "s1": 2, "s2": 2}
    assert st["per_speaker"]["s0"]["seconds"] == 1.0 + 4.0 + 7.0
    assert st["characters"]["ß"] == 7 and st["characters"]["ü"] == 7 and st["characters"][" "] == 7
    assert not math.isnan(st["duration_median"])


def test_cap_per_speaker_is_seeded_and_explains_the_rest():
    from speech_tl.manifest import cap_per_speaker

    utts = [Utterance(id=f"{s}{i}", audio="a.wav", duration=1.0, text="", speaker=s, language="und")
            for s in "ab" for i in range(5)] + [Utterance(id="c0", audio="a.wav", duration=1.0, text="",
                                                          speaker="c", language="und")]
    kept, rejected = cap_per_speaker(utts, 2, seed=3)
    assert sorted(u.speaker for u in kept) == ["a", "a", "b", "b", "c"]
    assert len(kept) + len(rejected) == len(utts)
    assert all("more than 2 utterances" in why for _, why in rejected)
    assert [u.id for u in cap_per_speaker(utts, 2, seed=3)[0]] == [u.id for u in kept]
