"""Export a Whisper checkpoint trained with ``model.head: decoder`` as a Hugging Face transformers folder.

``speech-tl export hf CHECKPOINT --out DIR`` writes what ``WhisperForConditionalGeneration.from_pretrained(DIR)``,
``WhisperProcessor.from_pretrained(DIR)`` and ``pipeline("automatic-speech-recognition", model=DIR)`` load:

- ``config.json`` + ``model.safetensors``: the weights of ``model.pt`` under transformers' names (the encoder's
  ``backbone.*`` -> ``model.encoder.*``, the decoder's ``head.*`` -> ``model.decoder.*``), the output projection
  tied to the token embedding as in Whisper;
- ``generation_config.json``: what transformers' Whisper ``generate`` reads: the checkpoint's suppress lists
  (``suppress_tokens``, ``begin_suppress_tokens``), ``decoder_start_token_id``, ``lang_to_id`` / ``task_to_id`` /
  ``is_multilingual`` / ``no_timestamps_token_id`` / ``alignment_heads``, and the checkpoint's language as the
  default ``language`` (``generate(..., language=...)`` overrides it);
- ``tokenizer.json`` + ``tokenizer_config.json`` (transformers' ``WhisperTokenizer`` on the checkpoint's own
  ``tokenizer.json``) and ``preprocessor_config.json`` (``WhisperFeatureExtractor``);
- ``speech_tl_export.json``: where it came from and how closely transformers reproduced speech-tl's logits.

Why transformers' own classes and ``save_pretrained`` rather than writing the files by hand: the folder is then
exactly what transformers (and CTranslate2's converter, :mod:`.ct2`) expect of its version, and the encoder and
decoder blocks already are transformers' modules (:mod:`speech_tl.backbones.whisper_decoder`), so only the names
change. Before anything is written, the exported model is run by transformers on a speech-like signal and its
logits compared with speech-tl's :class:`~speech_tl.asr.seq2seq.Seq2SeqModel`; an export that does not reproduce
them is refused. The folder is written beside ``DIR`` and renamed into place (:func:`speech_tl.atomic.replace_dir`).

transformers runs every input padded with silence to 30 s (as Whisper was pretrained, and as CTranslate2 does); a
checkpoint trained with ``model.pad_seconds`` unset ran its inputs at their own length, so the export notes that its
transcripts may differ from ``speech-tl evaluate asr`` on the checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import torch

from ..errors import InputError
from ..runtime import CT2_INFO_FILE as INFO_FILE  # not export.json: that name marks an ONNX folder
from .onnx import ExportError

FORMAT = "speech-tl-hf"

# transformers' logits against speech-tl's on the check signal: |hf - ours| <= atol + rtol * |ours|
TOLERANCE = {"atol": 2e-3, "rtol": 1e-3}
NOT_DECODER = "export hf/ct2 needs a model.head: decoder checkpoint; CTC models export with `export onnx`"
# model.pt name prefix -> transformers' WhisperForConditionalGeneration name prefix
RENAME = (("backbone.frontend.conv1.", "model.encoder.conv1."), ("backbone.frontend.conv2.", "model.encoder.conv2."),
          ("backbone.frontend.embed_positions.", "model.encoder.embed_positions."),
          ("backbone.layers.", "model.encoder.layers."), ("backbone.layer_norm.", "model.encoder.layer_norm."),
          ("head.", "model.decoder."))
TIED = "proj_out.weight"  # the output projection: the decoder's token embedding


def decoder_checkpoint(checkpoint: str | Path) -> tuple[Path, dict, dict]:
    """The checkpoint folder, its ``meta.json`` and ``config.yaml`` of a ``model.head: decoder`` ASR checkpoint;
    anything else is refused with what to do instead."""
    import yaml

    from ..checkpoint import read_meta, resolve_checkpoint

    if not Path(checkpoint).is_dir():
        raise InputError(f"{checkpoint}: not a checkpoint folder (give the folder written by `speech-tl train asr` "
                         "with model.head: decoder, its best/ or checkpoint/)")
    folder = resolve_checkpoint(checkpoint)
    meta = read_meta(folder)
    if meta.get("task") != "asr":
        raise ExportError(f"{checkpoint}: a {meta.get('task')!r} checkpoint; {NOT_DECODER}")
    cfg = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
    if (cfg.get("model") or {}).get("head") != "decoder":
        raise ExportError(f"{checkpoint}: a CTC checkpoint (model.head: {(cfg.get('model') or {}).get('head', 'ctc')}"
                          f"); {NOT_DECODER}")
    for name in ("model.pt", "tokenizer.json"):
        if not (folder / name).is_file():
            raise ExportError(f"{folder / name}: missing; a decoder checkpoint holds model.pt, tokenizer.json and "
                              "whisper_generation.json (train it again, or copy the file back)")
    _check_tokenizer_file(folder / "tokenizer.json")
    return folder, meta, cfg


def _check_tokenizer_file(path: Path) -> None:
    """A ``tokenizer.json`` the tokenizers library reads; a clear error (not the library's echo of the whole
    4 MB file) otherwise."""
    from tokenizers import Tokenizer

    from ..backbones.whisper_decoder import read_tokenizer_files

    text, _ = read_tokenizer_files(path.parent)
    try:
        Tokenizer.from_str(text)
    except Exception as e:  # noqa: BLE001  (tokenizers raises a bare Exception)
        if text.lstrip().startswith('"'):  # speech-tl before 340e223 JSON-encoded the file's text once more
            raise ExportError(f"{path}: the tokenizer is stored as one JSON string (a checkpoint saved by an older "
                              "speech-tl); unwrap it: python -c 'import json, sys; p = sys.argv[1]; t = "
                              f"json.load(open(p)); open(p, \"w\").write(t)' {path}") from None
        raise ExportError(f"{path}: not a tokenizers file ({str(e)[:80]}); a decoder checkpoint needs the "
                          "tokenizer.json of its Whisper source (whisper-ct2:... folder or hf:... model) as it "
                          "is") from None


def hf_state_dict(state: dict[str, torch.Tensor], where: str = "model.pt") -> dict[str, torch.Tensor]:
    """``model.pt`` of a decoder checkpoint under transformers' ``WhisperForConditionalGeneration`` names (float32;
    the tied output projection is not listed). A key outside the Whisper encoder and decoder is an error."""
    out, unknown = {}, []
    for key, value in state.items():
        for old, new in RENAME:
            if key.startswith(old):
                out[new + key[len(old):]] = value.detach().to(torch.float32)
                break
        else:
            unknown.append(key)
    if unknown:
        raise ExportError(f"{where}: {len(unknown)} weights are not Whisper's encoder or decoder (e.g. "
                          f"{', '.join(sorted(unknown)[:3])}); only a plain model.head: decoder checkpoint exports")
    return out


def special_ids(tokens) -> dict:
    """The special token ids transformers' and CTranslate2's Whisper settings name, from the tokenizer."""
    tid = tokens.tokenizer.token_to_id
    return {"sot": tokens.sot, "eot": tokens.eot, "transcribe": tokens.transcribe, "translate": tid("<|translate|>"),
            "notimestamps": tokens.notimestamps, "startofprev": tid("<|startofprev|>")}


def alignment_heads(meta: dict, decoder_layers: int, decoder_heads: int) -> tuple[list[list[int]], str]:
    """The cross-attention heads that follow the timing of the speech (faster-whisper's word timestamps): those of
    the Whisper source the checkpoint was trained from when its folder is here (``whisper-ct2:`` sources keep them in
    ``config.json``), else CTranslate2's default, every head of the decoder's upper half. Returns (heads, origin)."""
    source = str(meta.get("backbone", ""))
    scheme, _, spec = source.partition(":")
    found = None
    try:
        if scheme == "whisper-ct2":
            from ..backbones.ct2_sources import ct2_files

            config = ct2_files(spec).file("config.json")
            found = json.loads(config.read_text(encoding="utf-8")).get("alignment_heads") if config else None
        elif scheme == "hf" and (Path(spec) / "generation_config.json").is_file():
            found = json.loads((Path(spec) / "generation_config.json").read_text(encoding="utf-8")).get(
                "alignment_heads")
    except (OSError, ValueError, ImportError):  # the source is not installed here: the default below
        found = None
    if found and all(0 <= int(layer) < decoder_layers and 0 <= int(head) < decoder_heads for layer, head in found):
        return [[int(layer), int(head)] for layer, head in found], source
    return ([[layer, head] for layer in range(decoder_layers // 2, decoder_layers) for head in range(decoder_heads)],
            "default: every head of the decoder's upper half (the source's list was not found)")


def generation_settings(tokens, generation: dict, language: str | None, heads: list[list[int]]) -> dict:
    """``generation_config.json`` for transformers' Whisper ``generate`` (no timestamps, the checkpoint's language)."""
    ids = special_ids(tokens)
    settings = {"decoder_start_token_id": ids["sot"], "bos_token_id": ids["eot"], "eos_token_id": ids["eot"],
                "pad_token_id": ids["eot"], "max_length": tokens.max_positions,
                "suppress_tokens": [int(i) for i in generation.get("suppress_ids", [])],
                "begin_suppress_tokens": [int(i) for i in generation.get("suppress_ids_begin", [220, ids["eot"]])],
                "no_timestamps_token_id": ids["notimestamps"], "max_initial_timestamp_index": 50,
                "return_timestamps": False, "is_multilingual": bool(tokens.multilingual), "alignment_heads": heads}
    if ids["startofprev"] is not None:
        settings["prev_sot_token_id"] = ids["startofprev"]
    if tokens.multilingual:
        settings["lang_to_id"] = {f"<|{code}|>": i for code, i in sorted(tokens.languages.items(), key=lambda x: x[1])}
        settings["task_to_id"] = {"transcribe": ids["transcribe"], "translate": ids["translate"]}
        if language:
            tokens.language_token(language)  # a language the tokenizer lacks is an error here
            settings["language"], settings["task"] = language, "transcribe"
    return settings


def _check_signal(seconds: float = 4.0) -> torch.Tensor:
    from .onnx import _check_audio

    return _check_audio(None, seconds)[0]


def _compare_logits(model, hf_model) -> dict:
    """speech-tl's logits (inputs padded to 30 s, as transformers runs them) against transformers' on a speech-like
    signal and a short German prompt; ``{"max_abs_diff", "within_tolerance", "tokens"}``."""
    wave = _check_signal()
    tokens = model.prompt + model.tokens.encode("hallo welt, das ist ein test")
    ids = torch.tensor([tokens])
    backbone = model.backbone
    saved = backbone.pad_seconds
    backbone.pad_seconds = 30.0
    try:
        with torch.no_grad():
            ours, _ = model(wave=wave[None], lengths=torch.tensor([wave.numel()]), tokens=ids)
            padded, lengths = backbone.pad_input(wave[None], torch.tensor([wave.numel()]))
            feats, _ = backbone.frontend.logmel(padded, lengths)
            theirs = hf_model(input_features=feats, decoder_input_ids=ids).logits.float()
    finally:
        backbone.pad_seconds = saved
    diff = (theirs - ours).abs()
    within = bool((diff <= TOLERANCE["atol"] + TOLERANCE["rtol"] * ours.abs()).all())
    worst = float(diff.max())
    return {"max_abs_diff": worst, "within_tolerance": within and worst == worst, "tokens": len(tokens),
            "audio": "a 4 s synthetic speech-like signal, padded to 30 s", "tolerance": TOLERANCE}


def write_hf(checkpoint: str | Path, target: Path, verify: bool = True) -> dict:
    """Write the transformers folder of ``checkpoint`` into the existing empty folder ``target``; returns the
    ``speech_tl_export.json`` written (also for :func:`speech_tl.export.ct2.export_ct2`)."""
    from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    from ..asr.evaluate import load_asr_model
    from ..checkpoint import fingerprint, load_tensors

    folder, meta, cfg = decoder_checkpoint(checkpoint)
    model, _, _ = load_asr_model(folder)
    tokens, language = model.tokens, cfg.get("language") or None
    if not tokens.multilingual:
        language = None  # an English-only Whisper has no language token
    config = WhisperConfig.from_dict(meta["backbone_arch"]["config"])
    ids = special_ids(tokens)
    heads, heads_from = alignment_heads(meta, config.decoder_layers, config.decoder_attention_heads)
    settings = generation_settings(tokens, tokens.generation, language, heads)
    for key in ("decoder_start_token_id", "bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(config, key, settings[key])
    # generation settings live in generation_config.json only (in both, transformers warns on every generate)
    config.suppress_tokens = config.begin_suppress_tokens = config.forced_decoder_ids = None
    config.tie_word_embeddings = True
    config.architectures = ["WhisperForConditionalGeneration"]
    state = load_tensors(folder / "model.pt")
    mapped = hf_state_dict(state, str(folder / "model.pt"))
    hf_model = WhisperForConditionalGeneration(config).eval()
    missing, unexpected = hf_model.load_state_dict(mapped, strict=False)
    missing = [k for k in missing if k != TIED]
    if missing or unexpected:
        raise ExportError(f"{folder / 'model.pt'}: does not fit transformers' Whisper of its meta.json architecture "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    hf_model.tie_weights()
    if hf_model.proj_out.weight.data_ptr() != hf_model.model.decoder.embed_tokens.weight.data_ptr():
        raise ExportError("transformers did not tie the output projection to the token embedding")
    hf_model.generation_config = GenerationConfig(**settings)
    check = _compare_logits(model, hf_model) if verify else None
    if check is not None and not check["within_tolerance"]:
        raise ExportError(f"{checkpoint}: transformers' logits differ from speech-tl's by up to "
                          f"{check['max_abs_diff']:.3g} (tolerance {TOLERANCE['atol']:g} + {TOLERANCE['rtol']:g} x "
                          "|logit|); the export is not written")
    with quiet_progress():
        hf_model.save_pretrained(target)
    _save_tokenizer(tokens, language, target)
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(target)
    pad = (cfg.get("model") or {}).get("pad_seconds")
    notes = []
    if pad != 30:
        trained = "null (inputs at their own length)" if pad is None else f"{pad} (inputs padded to {pad} s)"
        notes.append(f"the checkpoint was trained with model.pad_seconds: {trained}, but transformers and "
                     "CTranslate2 pad every input with silence to 30 s: transcripts can differ from `speech-tl "
                     "evaluate asr` on the checkpoint (train with model.pad_seconds: 30 to match)")
    info = {"format": FORMAT, "source": str(folder.resolve()), "backbone": meta.get("backbone"),
            "fingerprint": meta.get("fingerprint") or fingerprint(state), "step": meta.get("step"),
            "language": language, "multilingual": bool(tokens.multilingual), "vocab_size": tokens.vocab_size,
            "prompt": model.prompt, "special_ids": ids, "alignment_heads_from": heads_from,
            "trained_pad_seconds": pad, "notes": notes, "verified": check, "transformers": _version("transformers"),
            "torch": torch.__version__}
    (target / INFO_FILE).write_text(json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8")
    return info


def _save_tokenizer(tokens, language: str | None, target: Path) -> None:
    """transformers' ``WhisperTokenizer`` on the checkpoint's own ``tokenizer.json``, its prefix (sot, language,
    task, no-timestamps) set to the prompt speech-tl decodes with."""
    from tokenizers import Tokenizer
    from transformers import WhisperTokenizer

    kw = {"language": language, "task": "transcribe"} if tokens.multilingual and language else {}
    tokenizer = WhisperTokenizer(tokenizer_object=Tokenizer.from_str(tokens.tokenizer_json),
                                 pad_token="<|endoftext|>", model_max_length=tokens.max_positions,
                                 predict_timestamps=False, **kw)
    tokenizer.save_pretrained(target)


@contextlib.contextmanager
def quiet_progress():
    """transformers' progress bars off ("Writing model shards", "Loading weights" on every export)."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def readable(folder: Path) -> None:
    """Give ``folder`` (made by mkdtemp: 0700) and its files the permissions plain ``mkdir``/``open`` would: an
    exported model is for others to read."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for f in folder.iterdir():
        if f.is_file():
            os.chmod(f, 0o666 & ~umask)


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def export_hf(checkpoint: str | Path, out: str | Path) -> dict:
    """Export the decoder checkpoint ``checkpoint`` as a transformers Whisper folder ``out``, replacing one that is
    there (the command line refuses an existing ``out`` without ``--overwrite``); returns ``speech_tl_export.json``.
    ``out`` appears only complete."""
    from ..atomic import replace_dir, temporary_dir_beside

    decoder_checkpoint(checkpoint)  # refuse a CTC checkpoint before making anything
    tmp = temporary_dir_beside(out)
    try:
        info = write_hf(checkpoint, tmp)
        readable(tmp)
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info
