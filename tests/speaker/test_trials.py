"""Verification trials: every target pair, sampled non-target pairs, VoxCeleb trial files."""

from __future__ import annotations

import json
from math import comb

import pytest

from speech_tl.manifest import read_manifest
from speech_tl.speaker.trials import TrialError, build_trials, count_trials, read_trial_file


def _check(trials, speakers):
    pairs = [(e, t) for e, t, _ in trials]
    assert len(set(pairs)) == len(pairs), "a pair appears twice"
    assert all(e < t for e, t in pairs)
    assert all(label == int(speakers[e] == speakers[t]) for e, t, label in trials)
    assert trials == sorted(trials)


def test_all_targets_and_capped_nontargets():
    speakers = ["a"] * 3 + ["b"] * 4 + ["c"] * 2  # targets 3 + 6 + 1 = 10, non-targets 36 - 10 = 26
    assert count_trials(speakers) == (10, 26)
    trials = build_trials(speakers)  # 10 x 10 = 100 wanted, only 26 exist
    _check(trials, speakers)
    assert sum(label for *_, label in trials) == 10
    assert len(trials) == 36  # every pair once


def test_sampled_nontargets_are_distinct_seeded_and_counted():
    speakers = [f"s{k // 10}" for k in range(500)]  # 50 speakers x 10 utterances
    n_target, n_nontarget = count_trials(speakers)
    assert (n_target, n_nontarget) == (50 * comb(10, 2), comb(500, 2) - 50 * comb(10, 2))
    trials = build_trials(speakers, max_nontarget_per_target=3, seed=1)  # sparse: rejection sampling
    _check(trials, speakers)
    assert sum(label for *_, label in trials) == n_target
    assert len(trials) == n_target + 3 * n_target
    assert trials == build_trials(speakers, max_nontarget_per_target=3, seed=1)
    assert trials != build_trials(speakers, max_nontarget_per_target=3, seed=2)
    dense = build_trials(speakers, num_nontarget=n_nontarget - 7, seed=0)  # almost all of them: enumerated
    _check(dense, speakers)
    assert len(dense) == n_target + n_nontarget - 7


def test_single_utterance_speakers_give_no_targets():
    trials = build_trials(["a", "b", "c"])
    assert trials == []  # 10 x 0 targets
    assert len(build_trials(["a", "b", "c"], num_nontarget=5)) == 3  # capped at all 3 pairs
    with pytest.raises(ValueError, match="max_nontarget_per_target"):
        build_trials(["a", "a"], max_nontarget_per_target=-1)


@pytest.fixture
def vox_manifest(tmp_path):
    rows = []
    for spk in ("id10270", "id10271"):
        for video in ("5r0dWxy17C8", "zjwijMp0Qyw"):
            for k in (1, 2):
                rows.append({"id": f"{spk}-{video}-{k}", "audio": f"wav/{spk}/{video}/0000{k}.wav", "duration": 2.0,
                             "text": "", "speaker": spk, "language": "en"})
    rows.append({"id": "dup", "audio": "other/id10270/5r0dWxy17C8/00001.wav", "duration": 2.0, "text": "",
                 "speaker": "id10270", "language": "en"})
    path = tmp_path / "vox.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return read_manifest(path)


def test_read_trial_file_matches_path_suffix_and_ids(tmp_path, vox_manifest):
    trial_file = tmp_path / "trials.txt"
    trial_file.write_text("# VoxCeleb1-O style\n"
                          "1 wav/id10270/5r0dWxy17C8/00001.wav id10270/zjwijMp0Qyw/00002.wav\n"
                          "\n"
                          "0 id10271/5r0dWxy17C8/00002.wav id10270-5r0dWxy17C8-2\n", encoding="utf-8")
    trials = read_trial_file(trial_file, vox_manifest)
    ids = [u.id for u in vox_manifest]
    assert [(ids[e], ids[t], label) for e, t, label in trials] == [
        ("id10270-5r0dWxy17C8-1", "id10270-zjwijMp0Qyw-2", 1), ("id10271-5r0dWxy17C8-2", "id10270-5r0dWxy17C8-2", 0)]


@pytest.mark.parametrize("line, message", [
    ("1 id10270/5r0dWxy17C8/00009.wav id10270/5r0dWxy17C8/00002.wav", "is not in the manifest"),
    ("1 id10270/5r0dWxy17C8/00001.wav id10270/5r0dWxy17C8/00002.wav", "ambiguous"),  # wav/... and other/...
    ("yes wav/id10270/5r0dWxy17C8/00001.wav id10270/5r0dWxy17C8/00002.wav", "label must be 1"),
    ("1 id10270/5r0dWxy17C8/00002.wav", "expected 3 fields"),
])
def test_trial_file_errors_name_file_and_line(tmp_path, vox_manifest, line, message):
    trial_file = tmp_path / "bad.txt"
    trial_file.write_text(f"0 id10271/5r0dWxy17C8/00002.wav id10270/zjwijMp0Qyw/00002.wav\n{line}\n",
                          encoding="utf-8")
    with pytest.raises(TrialError, match=message) as e:
        read_trial_file(trial_file, vox_manifest)
    assert str(e.value).startswith(f"{trial_file}:2: ")
    with pytest.raises(TrialError, match="not found"):
        read_trial_file(tmp_path / "missing.txt", vox_manifest)
