"""Choosing how a checkpoint decodes: greedy, or beam search with its LM at a tuned weight and word score.

``speech-tl tune-decoder CHECKPOINT DEV_MANIFEST`` computes the CTC posteriors of the dev set
once, decodes them greedily and with beam search at every (``lm_weight``, ``word_score``) of a
grid (the LM and lexicon are loaded once), and writes the setting with the lowest error (CER by
default) among those no worse than greedy decoding in the other measure (WER) into
``decoder.json`` in the checkpoint folder. ``speech-tl evaluate asr`` and ``transcribe`` then decode
that way unless told otherwise (:func:`decoder_settings`). Greedy stays the choice when no beam
setting beats it.

``decoder.json``: ``{"beam": 16 (0: greedy), "lm_weight", "word_score", "metric", "tuned_on",
"num_utterances", "grid": [{"beam", "lm_weight", "word_score", "wer", "cer"}, ...]}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..atomic import atomic_write_text
from ..data import UtteranceDataset
from ..device import resolve_device
from ..errors import InputError
from ..logs import info
from ..manifest import read_manifest
from ..metrics import error_counts
from ..text import normalize

DECODER_FILE = "decoder.json"
DEFAULT_LM_WEIGHTS = (0.5, 1.0, 2.0)
DEFAULT_WORD_SCORES = (0.0, 1.0, 2.0, 3.0)


def decoder_settings(folder: str | Path, config: dict) -> dict:
    """How ``folder`` decodes by default: its tuned ``decoder.json``, else the config's ``decode`` section.

    Returns ``{"beam", "lm_weight", "word_score", "lm_unit", "tuned"}``.
    """
    dec = (config or {}).get("decode") or {}
    out = {"beam": int(dec.get("beam", 0) or 0), "lm_weight": float(dec.get("lm_weight", 0.5)),
           "word_score": float(dec.get("word_score", 0.0)), "lm_unit": dec.get("lm_unit", "word"), "tuned": None}
    tuned = Path(folder) / DECODER_FILE
    if tuned.is_file():
        data = json.loads(tuned.read_text(encoding="utf-8"))
        out.update({k: data[k] for k in ("beam", "lm_weight", "word_score") if k in data})
        out["tuned"] = data.get("tuned_on")
    return out


def posteriors(model, utterances, device, batch_size: int = 16, batch_seconds: float | None = None
               ) -> list[tuple[torch.Tensor, int]]:
    """CTC log-probabilities ``(T', V)`` and valid length of each utterance, in order
    (:func:`speech_tl.asr.infer.ctc_posteriors`: batched, long audio in stitched windows)."""
    from .infer import ctc_posteriors

    out: list[tuple[torch.Tensor, int] | None] = [None] * len(utterances)
    for i, log_probs in ctc_posteriors(model, UtteranceDataset(utterances), device, batch_size, batch_seconds,
                                       desc="posteriors"):
        out[i] = (log_probs, log_probs.shape[0])
    return out  # type: ignore[return-value]


def decode_all(posts: list[tuple[torch.Tensor, int]], decode) -> list[str]:
    """``decode(log_probs (1, T, V), lengths (1,))`` on each utterance's posteriors."""
    return [decode(lp[None], torch.tensor([n]))[0] for lp, n in posts]


def tune_decoder(checkpoint: str | Path, manifest: str | Path, beam: int = 16,
                 lm_weights: tuple[float, ...] = DEFAULT_LM_WEIGHTS,
                 word_scores: tuple[float, ...] = DEFAULT_WORD_SCORES, metric: str = "cer",
                 device: str = "auto", log=info, batch_size: int = 16) -> dict:
    """Grid-search the decoding of ``checkpoint`` on ``manifest``; write and return ``decoder.json``'s content."""
    from .decode import BeamSearchDecoder, greedy_decode
    from .evaluate import load_asr_model

    if metric not in ("cer", "wer"):
        raise InputError(f"--metric must be cer or wer (decode.tune_metric), got {metric!r}")
    if beam <= 0:
        raise InputError(f"--beam must be positive to tune beam search, got {beam}")
    if not lm_weights or not word_scores:
        raise InputError(f"--lm-weights and --word-scores need at least one value each, got {tuple(lm_weights)} and "
                         f"{tuple(word_scores)}")
    dev = resolve_device(device)
    model, vocab, meta = load_asr_model(checkpoint, dev)
    if vocab is None:  # a Whisper decoder: no CTC posteriors, no n-gram LM
        raise InputError(f"{checkpoint}: a Whisper decoder model; tune-decoder tunes a CTC head's beam search with its "
                         "n-gram LM. A decoder model decodes with its own beam search (evaluate asr --beam N)")
    folder = Path(meta["folder"])
    utts = [u for u in read_manifest(manifest) if normalize(u.text)]
    if not utts:
        raise InputError(f"{manifest}: no utterance with a transcript to tune on; give a dev manifest with "
                         "transcripts")
    refs = [normalize(u.text) for u in utts]
    posts = posteriors(model, utts, dev, batch_size)
    lm_path = folder / "lm.arpa"
    unit = ((meta["config"].get("decode") or {}).get("lm_unit")) or "word"

    def score(hyps: list[str]) -> dict:
        c = error_counts(refs, hyps)
        return {"wer": c.words.rate(), "cer": c.chars.rate()}

    grid = [{"beam": 0, "lm_weight": 0.0, "word_score": 0.0, **score(decode_all(posts, lambda lp, n:
                                                                             greedy_decode(lp, n, vocab)))}]
    log(f"greedy: WER {grid[0]['wer']:.4f} CER {grid[0]['cer']:.4f}")
    if lm_path.is_file():
        settings = [(w, s) for w in lm_weights for s in (word_scores if unit == "word" else (0.0,))]
    else:
        log(f"{folder}: no lm.arpa; tuning beam search without an LM")
        settings = [(0.0, 0.0)]
    base = BeamSearchDecoder(vocab, beam_size=beam, lm_path=lm_path if lm_path.is_file() else None,
                             lm_weight=settings[0][0], word_score=settings[0][1], unit=unit)
    for w, s in settings:
        decoder = base.reweighted(w, s)  # the LM and lexicon are loaded once
        row = {"beam": beam, "lm_weight": w, "word_score": s, **score(decode_all(posts, decoder.decode))}
        grid.append(row)
        log(f"beam {beam} lm_weight {w:g} word_score {s:g}: WER {row['wer']:.4f} CER {row['cer']:.4f}")
    other = "wer" if metric == "cer" else "cer"
    # a setting may not buy its metric with the other one: no worse than greedy there (a word score high enough
    # to insert words lowers CER while WER passes 1.0, which no user wants)
    allowed = [r for r in grid if r[other] <= grid[0][other] + 1e-12]
    best = min(allowed, key=lambda r: (r[metric], r[other]))
    result = {"beam": best["beam"], "lm_weight": best["lm_weight"], "word_score": best["word_score"],
              "metric": metric, metric: best[metric], other: best[other], "tuned_on": str(manifest),
              "num_utterances": len(utts), "grid": grid}
    atomic_write_text(folder / DECODER_FILE, json.dumps(result, indent=1))
    return result
