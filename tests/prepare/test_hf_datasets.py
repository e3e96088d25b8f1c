"""Hugging Face datasets folders (prepare hf-datasets): corpora written by the datasets library itself, with
save_to_disk and as Parquet files, import into the same utterances and the same audio samples."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from datasets import Audio, Dataset, DatasetDict

from speech_tl.audio import read_audio
from speech_tl.cli import main
from speech_tl.manifest import read_manifest
from speech_tl.prepare.hf_datasets import prepare_hf_datasets
from tests.prepare.rerun import assert_other_parameters_refused_unless_overwrite
from tests.tiny_asr import spell

# train: audio files on disk (paths); id, sentence, client_id, gender as Common Voice on the hub has them
TRAIN = [  # id, word spelled by the audio, sentence, speaker, sample rate, format
    ("cv-001", "abc", "Guten Morgen, Anna!", "spk-a", 16000, "WAV"),
    ("cv-002", "cab", "Grüße aus Köln.", "spk-a", 16000, "FLAC"),
    ("cv-003", "ba", "  zwei  Leerzeichen ", "spk-b", 8000, "WAV"),
    ("cv-004", "cc", "Dritter Satz.", "spk-b", 22050, "WAV"),
    ("cv-005", "aa", "", "spk-b", 16000, "WAV"),  # empty text: rejected
    ("cv-001", "bb", "Doppelte Kennung.", "spk-c", 16000, "WAV"),  # duplicate id: rejected
]


def audio_bytes(word: str, sr: int, fmt: str = "WAV", seed: int = 0) -> tuple[bytes, np.ndarray]:
    """``word`` spelled as audio, encoded as ``fmt`` in memory; the samples as soundfile reads them back."""
    buf = io.BytesIO()
    sf.write(buf, spell(word, sr=sr, seed=seed), sr, format=fmt, subtype="PCM_16")
    data = buf.getvalue()
    return data, sf.read(io.BytesIO(data), dtype="float32", always_2d=True)[0]


@pytest.fixture
def corpus(tmp_path) -> dict:
    """A DatasetDict (train: paths to files on disk; test: audio bytes in the rows) and the samples of each
    utterance, by id."""
    files = tmp_path / "clips"
    files.mkdir()
    samples, train_paths = {}, []
    for i, (uid, word, _, _, sr, fmt) in enumerate(TRAIN):
        data, x = audio_bytes(word, sr, fmt, seed=i)
        path = files / f"clip{i}.{fmt.lower()}"
        path.write_bytes(data)
        train_paths.append(str(path))
        samples.setdefault(uid, x)
    train = Dataset.from_dict({
        "id": [t[0] for t in TRAIN], "audio": train_paths, "sentence": [t[2] for t in TRAIN],
        "client_id": [t[3] for t in TRAIN], "gender": ["female", "female", "male", "male", "male", "male"],
    }).cast_column("audio", Audio())

    emb, x = audio_bytes("abcabc", 16000, seed=7)
    samples["anruf"] = x
    mp3 = io.BytesIO()
    sf.write(mp3, spell("cba", sr=16000, seed=8), 16000, format="MP3")
    samples["t-2"] = sf.read(io.BytesIO(mp3.getvalue()), dtype="float32", always_2d=True)[0]
    test = Dataset.from_dict({
        "id": [None, "t-2", "t-3", "t-4"],
        "audio": [{"bytes": emb, "path": "anruf.wav"},                      # embedded WAV; id from the name
                  {"bytes": mp3.getvalue(), "path": "common_voice_de_2.mp3"},  # embedded MP3
                  None,                                                     # no audio
                  {"bytes": b"RIFF\x00\x00garbage", "path": "kaputt.wav"}],  # bytes no decoder reads
        "sentence": ["Ein Anruf.", "Eine MP3.", "Ohne Ton.", "Kaputt."],
        "client_id": ["spk-c", "spk-c", "spk-c", "spk-c"],
        "gender": ["", "", "", ""],
    }).cast_column("audio", Audio())
    return {"dict": DatasetDict({"train": train, "test": test}), "samples": samples}


EXPECTED_REJECTED = {
    ("train[4]", "cv-005"): "empty transcript",
    ("train[5]", "cv-001"): "duplicate id",
    ("test[2]", "t-3"): "no audio",
    ("test[3]", "t-4"): "unreadable audio",
}


def imported(out: Path, name: str = "hf_de") -> tuple[dict, dict]:
    """Utterances by split as comparable tuples with their samples, and the rejected rows."""
    splits = {}
    for split in ("train", "test"):
        utts = read_manifest(out / f"{name}_{split}.jsonl")
        splits[split] = {u.id: ((u.text, u.speaker, u.language, u.duration, u.sample_rate, u.extra.get("gender")),
                                read_audio(u.audio_path())[0]) for u in utts}
    rejected = [json.loads(x) for x in (out / f"{name}_rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    return splits, {(r["source"], r["id"]): r for r in rejected}


def check(out: Path, samples: dict) -> dict:
    splits, rejected = imported(out)
    meta = {split: {k: v[0] for k, v in utts.items()} for split, utts in splits.items()}
    sr_of = {t[0]: t[4] for t in TRAIN}
    assert meta["train"] == {
        "cv-001": ("Guten Morgen, Anna!", "spk-a", "de", pytest.approx(3 * 0.12, abs=1e-4), 16000, "female"),
        "cv-002": ("Grüße aus Köln.", "spk-a", "de", pytest.approx(3 * 0.12, abs=1e-4), 16000, "female"),
        "cv-003": ("  zwei  Leerzeichen ", "spk-b", "de", pytest.approx(2 * 0.12, abs=1e-3), 8000, "male"),
        "cv-004": ("Dritter Satz.", "spk-b", "de", pytest.approx(2 * 0.12, abs=1e-4), 22050, "male"),
    }
    assert {k: v[4] for k, v in meta["train"].items()} == {k: sr_of[k] for k in meta["train"]}
    assert meta["test"] == {
        "anruf": ("Ein Anruf.", "spk-c", "de", pytest.approx(6 * 0.12, abs=1e-4), 16000, None),
        "t-2": ("Eine MP3.", "spk-c", "de", pytest.approx(3 * 0.12, abs=0.06), 16000, None),
    }
    for split in splits.values():  # the very samples that were stored (no re-encoding, not even of the MP3, which
        for uid, (_, x) in split.items():  # mpg123 decodes from a file and from memory within float rounding)
            np.testing.assert_allclose(x, samples[uid], rtol=0, atol=1e-6)
    assert {k: r["reason"] for k, r in rejected.items()} == EXPECTED_REJECTED
    assert "Format not recognised" in rejected[("test[3]", "t-4")]["detail"]
    assert rejected[("train[5]", "cv-001")]["detail"] == "id already used at train[0]"
    return splits


def test_save_to_disk_and_parquet_give_the_same_utterances(tmp_path, corpus):
    saved = tmp_path / "saved"
    corpus["dict"].save_to_disk(str(saved))  # embeds the train split's files as bytes, as save_to_disk does
    res = CliRunner().invoke(main, ["prepare", "hf-datasets", str(saved), "--out-dir", str(tmp_path / "a"),
                                    "--lang", "de", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert re.search(r"train\s+kept\s+4 utterances", res.output) and re.search(r"rejected\s+4 rows", res.output)
    from_disk = check(tmp_path / "a", corpus["samples"])
    written = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a" / "hf_de_audio").rglob("*.*"))
    assert written == ["hf_de_audio/test/anruf.wav", "hf_de_audio/test/t-2.mp3", "hf_de_audio/train/cv-001.wav",
                       "hf_de_audio/train/cv-002.flac", "hf_de_audio/train/cv-003.wav", "hf_de_audio/train/cv-004.wav"]

    # Parquet as datasets writes it: the train split keeps its paths, the test split its bytes
    plain = tmp_path / "parquet"
    for split, ds in corpus["dict"].items():
        ds.to_parquet(str(plain / "data" / f"{split}-00000-of-00001.parquet"))
    prepare_hf_datasets(plain, tmp_path / "b", language="de", workers=1)
    from_parquet = check(tmp_path / "b", corpus["samples"])
    assert not (tmp_path / "b" / "hf_de_audio" / "train").exists()  # files on disk are used where they are
    assert str(read_manifest(tmp_path / "b" / "hf_de_train.jsonl")[0].audio_path()).startswith(str(tmp_path / "clips"))

    # Parquet as the hub stores it: every row's audio embedded (here: the save_to_disk folder's splits written out)
    hub = tmp_path / "hub"
    for split, ds in datasets.load_from_disk(str(saved)).items():
        ds.to_parquet(str(hub / "data" / f"{split}-00000-of-00001.parquet"))
    prepare_hf_datasets(hub, tmp_path / "c", language="de", workers=1)
    from_hub = check(tmp_path / "c", corpus["samples"])
    for a, b, c in zip(from_disk.values(), from_parquet.values(), from_hub.values(), strict=True):
        assert {k: v[0] for k, v in a.items()} == {k: v[0] for k, v in b.items()} == {k: v[0] for k, v in c.items()}


def test_a_single_dataset_without_text_and_named_columns(tmp_path):
    """A save_to_disk Dataset (one split: all), a speaker corpus without transcripts, columns named by option."""
    rows = {"utt": ["u1", "u2"], "wav": [], "who": ["anna", "bert"]}
    for i, word in enumerate(("ab", "abc")):
        path = tmp_path / f"{word}.wav"
        sf.write(path, spell(word, seed=i), 16000)
        rows["wav"].append(str(path))
    ds = Dataset.from_dict(rows).cast_column("wav", Audio(sampling_rate=8000))  # resampling only when decoded
    ds.save_to_disk(str(tmp_path / "single"))
    out = tmp_path / "out"
    result = prepare_hf_datasets(tmp_path / "single", out, name="spk", workers=1, id_column="utt",
                                 speaker_column="who")
    assert list(result.splits) == ["all"]
    assert {u.id: (u.speaker, u.text, u.sample_rate, u.duration) for u in read_manifest(out / "spk_und_all.jsonl")} \
        == {"u1": ("anna", "", 16000, pytest.approx(0.24)), "u2": ("bert", "", 16000, pytest.approx(0.36))}
    assert not result.rejected

    res = CliRunner().invoke(main, ["prepare", "hf-datasets", str(tmp_path / "single"), "--out-dir",
                                    str(tmp_path / "out2"), "--text-column", "transcript"])
    assert res.exit_code == 1
    assert "no column 'transcript' for the text (columns: utt, wav, who)" in res.output


def test_plain_parquet_with_paths_relative_to_the_folder_and_urls(tmp_path):
    """A Parquet file written by pyarrow alone (no datasets metadata: the audio column is a plain {bytes, path}
    struct) whose rows hold paths: one relative to the dataset's folder, one a URL (rejected: speech-tl downloads
    nothing), one of a file that is not there."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "ds"
    (folder / "clips").mkdir(parents=True)
    (folder / "data").mkdir()
    sf.write(folder / "clips" / "a.wav", spell("ab"), 16000)
    paths = ("clips/a.wav", "https://example.org/b.wav", str(tmp_path / "gone.wav"))
    audio = [{"bytes": None, "path": p} for p in paths]
    pq.write_table(pa.table({"audio": audio, "text": ["eins", "zwei", "drei"]}),
                   folder / "data" / "train-00000-of-00001.parquet")
    result = prepare_hf_datasets(folder, tmp_path / "out", workers=1)
    (u,) = result.splits["train"]
    assert (u.id, u.text, u.audio) == ("a", "eins", str((folder / "clips" / "a.wav").resolve()))
    assert {(r.source, r.id): r.reason for r in result.rejected} == {
        ("train[1]", "b"): "source not a file", ("train[2]", "gone"): "missing audio file"}
    (url,) = [r for r in result.rejected if r.id == "b"]
    assert "https://example.org/b.wav" in url.detail and "download it" in url.detail


def test_rerun_skips_and_other_parameters_are_refused(tmp_path, corpus):
    saved = tmp_path / "saved"
    corpus["dict"].save_to_disk(str(saved))
    out = tmp_path / "out"
    args = ["prepare", "hf-datasets", str(saved), "--out-dir", str(out), "--lang", "de", "--workers", "1"]
    assert CliRunner().invoke(main, args).exit_code == 0
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0 and "already prepared with the same parameters, reused" in res.output
    res = assert_other_parameters_refused_unless_overwrite([*args, "--speaker-column", "gender"], out,
                                                           out / "hf_de_train.jsonl")
    assert {u.speaker for u in read_manifest(out / "hf_de_train.jsonl")} == {"female", "male"}


def test_not_a_dataset_folder(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no data here")
    res = CliRunner().invoke(main, ["prepare", "hf-datasets", str(tmp_path / "notes"), "--out-dir",
                                    str(tmp_path / "o")])
    assert res.exit_code == 1
    (line,) = res.output.strip().splitlines()
    assert line.startswith(f"error: {tmp_path / 'notes'}: neither a datasets save_to_disk folder")
    broken = tmp_path / "broken"
    (broken / "data").mkdir(parents=True)
    (broken / "data" / "train-00000-of-00001.parquet").write_bytes(b"PAR1 not really")
    res = CliRunner().invoke(main, ["prepare", "hf-datasets", str(broken), "--out-dir", str(tmp_path / "o")])
    assert res.exit_code == 1 and str(broken) in res.output and "datasets" in res.output, res.output


def audio_files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def leftovers(out: Path) -> list[str]:
    """Hidden entries of ``out`` other than the done-marker: temporary folders or files a run left behind."""
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".") and not p.name.endswith(".done"))


def test_embedded_audio_file_names_never_collide_and_only_kept_rows_have_files(tmp_path):
    """Ids whose file names would meet ("utt?" and "utt" both make "utt", whose "-<index>" is another row's id;
    "Utt" and "utt" are one file where case is ignored) each get a file of their own. Rows rejected after their
    audio was written (an empty WAV, bytes named .m4a that no decoder reads) leave no file behind: the audio folder
    holds exactly what the manifest names."""
    ids = ["utt-2", "utt", "utt?", "Utt", "leer", "kaputt", "utt"]
    samples, audio = {}, []
    for i, uid in enumerate(ids):
        if uid == "leer":
            buf = io.BytesIO()
            sf.write(buf, np.zeros(0, np.float32), 16000, format="WAV")
            audio.append({"bytes": buf.getvalue(), "path": "leer.wav"})
        elif uid == "kaputt":
            audio.append({"bytes": b"\x00\x00\x00\x20ftypM4A not really", "path": "kaputt.m4a"})
        else:
            data, x = audio_bytes("abc"[: 1 + i % 3] + "cab"[i % 3:], 16000, seed=i)
            samples.setdefault(uid, x)
            audio.append({"bytes": data, "path": f"clip{i}.wav"})
    saved = tmp_path / "saved"
    Dataset.from_dict({"id": ids, "audio": audio}).cast_column("audio", Audio()).save_to_disk(str(saved))
    out = tmp_path / "out"
    result = prepare_hf_datasets(saved, out, workers=1)
    utts = read_manifest(out / "hf_und_all.jsonl")
    assert sorted(u.id for u in utts) == sorted(["utt-2", "utt", "utt?", "Utt"])
    paths = [u.audio_path() for u in utts]
    assert len({p.name.casefold() for p in paths}) == 4  # four files, even where case is ignored
    for u in utts:  # each row's own samples, none overwritten by another's
        np.testing.assert_allclose(read_audio(u.audio_path())[0], samples[u.id], rtol=0, atol=1e-6)
    reasons = {(r.source, r.id): r.reason for r in result.rejected}
    assert reasons.pop(("all[5]", "kaputt")) in ("unreadable audio", "ffmpeg not installed")  # ffprobe, or none
    assert reasons == {("all[4]", "leer"): "empty audio", ("all[6]", "utt"): "duplicate id"}
    assert audio_files(out / "hf_und_audio") == set(paths)
    assert leftovers(out) == []

    # --overwrite with another dataset of fewer rows: the earlier run's files do not linger beside the new ones
    fewer = tmp_path / "fewer"
    Dataset.from_dict({"id": ["neu"], "audio": [audio[0]]}).cast_column("audio", Audio()).save_to_disk(str(fewer))
    res = CliRunner().invoke(main, ["prepare", "hf-datasets", str(fewer), "--out-dir", str(out), "--workers", "1",
                                    "--overwrite"])
    assert res.exit_code == 0, res.output
    (u,) = read_manifest(out / "hf_und_all.jsonl")
    assert audio_files(out / "hf_und_audio") == {u.audio_path()} and u.audio_path().name == "neu.wav"
    assert leftovers(out) == []

    # a dataset of paths only: no embedded audio, so no audio folder (the earlier one named nothing any more)
    sf.write(tmp_path / "on-disk.wav", spell("ab"), 16000)
    paths_only = tmp_path / "paths-only"
    Dataset.from_dict({"audio": [str(tmp_path / "on-disk.wav")]}).save_to_disk(str(paths_only))
    prepare_hf_datasets(paths_only, out, workers=1, overwrite=True)
    assert not (out / "hf_und_audio").exists() and leftovers(out) == []


def test_a_split_failing_midway_leaves_no_audio_behind(tmp_path):
    """The second Parquet file of a split is broken: the run fails naming the dataset, and the audio already
    written from the first file's rows is gone (no folder of orphans, no temporary folder)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "ds"
    (folder / "data").mkdir(parents=True)
    data, _ = audio_bytes("abc", 16000)
    pq.write_table(pa.table({"audio": [{"bytes": data, "path": "a.wav"}], "text": ["eins"]}),
                   folder / "data" / "train-00000-of-00002.parquet")
    (folder / "data" / "train-00001-of-00002.parquet").write_bytes(b"PAR1 not really PAR1")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["prepare", "hf-datasets", str(folder), "--out-dir", str(out), "--workers", "1"])
    assert res.exit_code == 1, res.output
    assert str(folder) in res.output and "datasets stopped reading it after row 1" in res.output, res.output
    assert not (out / "hf_und_audio").exists() and leftovers(out) == []


def test_the_next_run_removes_what_a_killed_run_left(tmp_path):
    """A run SIGKILLed while filling its audio folder, or while writing a manifest or the done-marker, leaves
    temporaries beside them: the next run removes them, also when it skips a finished preparation. Hidden files of
    other names stay."""
    from tests.killed_write import killed_while_writing

    saved = tmp_path / "saved"
    data, _ = audio_bytes("abc", 16000)
    Dataset.from_dict({"id": ["eins"], "audio": [{"bytes": data, "path": "eins.wav"}]}).cast_column(
        "audio", Audio()).save_to_disk(str(saved))
    out = tmp_path / "out"
    args = ["prepare", "hf-datasets", str(saved), "--out-dir", str(out), "--workers", "1"]
    mine = [out / ".hf_und_audio.notes", out / ".hf_und_all.jsonl.orig"]
    for first in (True, False):  # a first run; then a rerun that finds the preparation finished and skips it
        if first:
            out.mkdir()
        left = killed_while_writing(out / "hf_und_audio", "dir") + killed_while_writing(out / "hf_und_all.jsonl")
        left += killed_while_writing(out / ".hf_und.done")
        assert len(left) == 3
        for p in mine:
            p.write_text("mine")
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, res.output
        assert ("already prepared" in res.output) != first
        assert leftovers(out) == sorted(p.name for p in mine)
    (u,) = read_manifest(out / "hf_und_all.jsonl")
    assert u.audio_path().is_file()
