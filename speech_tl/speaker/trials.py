"""Verification trials: which pairs of utterances are compared, and whether they share a speaker.

A trial is ``(enroll_index, test_index, label)``: indices into the evaluated list of utterances, label 1 for a
target trial (same speaker) and 0 for a non-target trial.

* :func:`build_trials` makes them from speaker labels: every target pair, plus a seeded sample of non-target
  pairs (10 per target pair by default, at most all of them). Each unordered pair appears at most once, always
  as ``enroll_index < test_index``, and the list is sorted.
* :func:`read_trial_file` reads a VoxCeleb-style list, one trial per line::

      1 id10270/5r0dWxy17C8/00001.wav id10270/5r0dWxy17C8/00002.wav

  (label, enrolment file, test file). A file is found by utterance id, or else by path suffix: the trial path's
  components must be the last components of exactly one manifest utterance's audio path.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import SpeechTlError

__all__ = ["TrialError", "build_trial_arrays", "build_trials", "count_trials", "read_trial_file"]

Trial = tuple[int, int, int]
_DENSE_FRACTION = 0.25  # sample from the enumerated non-target pairs when asking for at least this share of them


class TrialError(SpeechTlError, ValueError):
    """A trial list that cannot be used; the message names file and line."""


def _speaker_codes(utterances: Sequence) -> np.ndarray:
    """Integer speaker code per utterance; items are objects with ``.speaker`` or plain speaker labels."""
    codes: dict[str, int] = {}
    return np.array([codes.setdefault(u if isinstance(u, str) else u.speaker, len(codes)) for u in utterances],
                    dtype=np.int64)


def count_trials(utterances: Sequence) -> tuple[int, int]:
    """``(target_pairs, nontarget_pairs)``: the number of unordered same- and different-speaker pairs."""
    spk = _speaker_codes(utterances)
    n = spk.size
    sizes = np.bincount(spk) if n else np.zeros(0, dtype=np.int64)
    n_target = int((sizes * (sizes - 1) // 2).sum())
    return n_target, n * (n - 1) // 2 - n_target


def _target_pairs(spk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    groups: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(spk.tolist()):
        groups[s].append(i)
    enroll, test = [], []
    for members in groups.values():
        if len(members) > 1:
            idx = np.asarray(members, dtype=np.int64)
            a, b = np.triu_indices(idx.size, 1)
            enroll.append(idx[a])
            test.append(idx[b])
    if not enroll:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(enroll), np.concatenate(test)


def _nontarget_pairs(spk: np.ndarray, k: int, available: int, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``k`` distinct different-speaker pairs ``i < j``, uniformly without replacement."""
    n = spk.size
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if k >= _DENSE_FRACTION * available:  # a large share: enumerate them all and choose
        i, j = np.triu_indices(n, 1)
        keep = spk[i] != spk[j]
        i, j = i[keep].astype(np.int64), j[keep].astype(np.int64)
        pick = np.sort(rng.choice(i.size, size=k, replace=False))
        return i[pick], j[pick]
    # a small share of many pairs: draw random pairs, keep different-speaker ones, drop repeats (first draw wins)
    total = n * (n - 1) // 2
    codes = np.zeros(0, dtype=np.int64)
    while codes.size < k:
        m = int((k - codes.size) * 1.2 * total / available) + 64
        a, b = rng.integers(0, n, m), rng.integers(0, n, m)
        ok = spk[a] != spk[b]
        lo, hi = np.minimum(a[ok], b[ok]), np.maximum(a[ok], b[ok])
        codes = np.concatenate((codes, lo * n + hi))
        _, first = np.unique(codes, return_index=True)
        codes = codes[np.sort(first)]
    codes = np.sort(codes[:k])
    return codes // n, codes % n


def build_trial_arrays(utterances: Sequence, max_nontarget_per_target: float = 10.0, seed: int = 0,
                       num_nontarget: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`build_trials` as three int64 arrays ``(enroll (T,), test (T,), label (T,))``, sorted by pair."""
    if max_nontarget_per_target < 0 or not math.isfinite(max_nontarget_per_target):
        raise TrialError(f"max_nontarget_per_target (--nontarget-per-target) must be a finite number >= 0, got "
                         f"{max_nontarget_per_target!r}")
    if num_nontarget is not None and (int(num_nontarget) != num_nontarget or num_nontarget < 0):
        raise ValueError(f"num_nontarget must be an integer >= 0, got {num_nontarget!r}")
    spk = _speaker_codes(utterances)
    t_enroll, t_test = _target_pairs(spk)
    n_target, available = count_trials(utterances)
    wanted = int(num_nontarget) if num_nontarget is not None else int(round(max_nontarget_per_target * n_target))
    n_enroll, n_test = _nontarget_pairs(spk, min(wanted, available), available, np.random.default_rng(seed))
    enroll = np.concatenate((t_enroll, n_enroll))
    test = np.concatenate((t_test, n_test))
    label = np.concatenate((np.ones(t_enroll.size, dtype=np.int64), np.zeros(n_enroll.size, dtype=np.int64)))
    order = np.lexsort((test, enroll))
    return enroll[order], test[order], label[order]


def build_trials(utterances: Sequence, max_nontarget_per_target: float = 10.0, seed: int = 0,
                 num_nontarget: int | None = None) -> list[Trial]:
    """All target pairs and a seeded sample of non-target pairs: ``[(enroll_index, test_index, label)]``.

    ``utterances``: manifest :class:`~speech_tl.manifest.Utterance` objects (anything with ``.speaker``) or
    plain speaker labels. Target trials are all pairs ``i < j`` of the same speaker. Non-target trials are
    ``num_nontarget`` (default ``round(max_nontarget_per_target * targets)``) different-speaker pairs drawn
    uniformly without replacement with ``seed``, at most all of them. No pair appears twice; the list is
    sorted by ``(enroll_index, test_index)``.

    >>> build_trials(["a", "a", "b", "b"], max_nontarget_per_target=1)
    [(0, 1, 1), (0, 3, 0), (1, 2, 0), (2, 3, 1)]
    """
    enroll, test, label = build_trial_arrays(utterances, max_nontarget_per_target, seed, num_nontarget)
    return list(zip(enroll.tolist(), test.tolist(), label.tolist(), strict=True))


def _parts(path: str) -> tuple[str, ...]:
    p = path.replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return PurePosixPath(p).parts


def read_trial_file(path: str | os.PathLike, manifest_utts: Sequence) -> list[Trial]:
    """Read a VoxCeleb-style trial list against the evaluated manifest: ``[(enroll_index, test_index, label)]``.

    Each non-blank line (``#`` starts a comment) is ``LABEL ENROLL TEST`` with LABEL 1 (same speaker) or 0.
    ENROLL and TEST are an utterance id of ``manifest_utts`` or a path whose components end the audio path of
    exactly one utterance (``id10270/5r0dWxy17C8/00001.wav`` matches ``/data/vox1/wav/id10270/5r0dWxy17C8/00001.wav``).
    Unknown or ambiguous paths, bad labels and malformed lines raise :class:`TrialError` naming ``file:line``.
    Trials are returned in file order, as given.
    """
    path = Path(path)
    if not path.is_file():
        raise TrialError(f"{path}: trial file not found")
    by_id = {u.id: k for k, u in enumerate(manifest_utts)}
    by_name: dict[str, list[tuple[int, tuple[str, ...]]]] = defaultdict(list)
    for k, u in enumerate(manifest_utts):
        parts = _parts(u.audio_path().as_posix())
        if parts:
            by_name[parts[-1]].append((k, parts))
    cache: dict[str, int] = {}

    def find(token: str, lineno: int) -> int:
        if token in cache:
            return cache[token]
        if token in by_id:
            cache[token] = by_id[token]
            return cache[token]
        want = _parts(token)
        hits = [k for k, parts in by_name.get(want[-1] if want else "", ()) if parts[-len(want):] == want]
        if not hits:
            raise TrialError(f"{path}:{lineno}: {token!r} is not in the manifest (no utterance has this id, and no "
                             f"audio path ends with it); evaluate the manifest the trial list was made for")
        if len(hits) > 1:
            ids = ", ".join(repr(manifest_utts[k].id) for k in hits[:3])
            raise TrialError(f"{path}:{lineno}: {token!r} is ambiguous: it ends the audio paths of {len(hits)} "
                             f"utterances ({ids}{', ...' if len(hits) > 3 else ''}); give more of the path or ids")
        cache[token] = hits[0]
        return hits[0]

    trials: list[Trial] = []
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            fields = line.split()
            if len(fields) != 3:
                raise TrialError(f"{path}:{lineno}: expected 3 fields 'LABEL ENROLL TEST' (e.g. "
                                 f"'1 id10270/x/00001.wav id10270/x/00002.wav'), got {len(fields)}: {line!r}")
            if fields[0] not in ("0", "1"):
                raise TrialError(f"{path}:{lineno}: label must be 1 (same speaker) or 0 (different), "
                                 f"got {fields[0]!r}")
            trials.append((find(fields[1], lineno), find(fields[2], lineno), int(fields[0])))
    if not trials:
        raise TrialError(f"{path}: no trials (the file is empty)")
    return trials
