"""Export a Whisper checkpoint trained with ``model.head: decoder`` as a CTranslate2 folder, what faster-whisper runs.

``speech-tl export ct2 CHECKPOINT --out DIR [--quantization int8]`` writes ``model.bin``, ``config.json``,
``vocabulary.json``, ``tokenizer.json`` and ``preprocessor_config.json``: ``faster_whisper.WhisperModel(DIR)`` and
``ctranslate2.models.Whisper(DIR)`` load it, and so do ``speech-tl evaluate asr DIR`` / ``transcribe DIR`` (through
:class:`speech_tl.runtime.ct2.Ct2Whisper`).

The conversion is CTranslate2's own: the checkpoint is first exported as a transformers folder (:mod:`.hf`, checked
against speech-tl's logits there) and ``ctranslate2.converters.TransformersConverter`` converts that, as it converts
any fine-tuned Whisper on the hub, so the folder is what CTranslate2 of the installed version expects and
``quantization`` (int8, float16, ...) is its own. Written here rather than through CTranslate2's converter alone: the
``config.json`` faster-whisper reads (``suppress_ids``, ``suppress_ids_begin``, ``lang_ids``, ``alignment_heads``) is
written from the checkpoint's settings, whatever the converter took from the generation config, and the checkpoint's
own ``tokenizer.json`` is copied as it is. Everything is written beside ``DIR`` and renamed into place
(:func:`speech_tl.atomic.replace_dir`); ``speech_tl_export.json`` records the source and the settings.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..errors import InputError
from .hf import INFO_FILE, decoder_checkpoint, quiet_progress, readable, write_hf
from .onnx import ExportError

FORMAT = "speech-tl-ct2"
# CTranslate2's weight types (ctranslate2.converters.Converter.convert); None keeps float32
QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16", "float32")
COPIED = ("preprocessor_config.json",)  # from the transformers folder; tokenizer.json comes from the checkpoint


def ct2_config(info: dict, generation: dict, hf_generation: dict) -> dict:
    """The settings faster-whisper and CTranslate2's Whisper read from ``config.json``."""
    eot = info["special_ids"]["eot"]
    lang_ids = sorted(int(i) for i in (hf_generation.get("lang_to_id") or {}).values())
    return {"suppress_ids": [int(i) for i in generation.get("suppress_ids", [])],
            "suppress_ids_begin": [int(i) for i in generation.get("suppress_ids_begin", [220, eot])],
            "lang_ids": lang_ids, "alignment_heads": hf_generation["alignment_heads"]}


def export_ct2(checkpoint: str | Path, out: str | Path, quantization: str | None = None) -> dict:
    """Export the decoder checkpoint ``checkpoint`` as a CTranslate2 Whisper folder ``out`` (weights quantized as
    ``quantization`` says; None: float32), replacing one that is there (the command line refuses an existing ``out``
    without ``--overwrite``); returns ``speech_tl_export.json``. ``out`` appears only complete."""
    from ..atomic import replace_dir, temporary_dir_beside
    from ..backbones.whisper_decoder import read_tokenizer_files

    if quantization is not None and quantization not in QUANTIZATIONS:
        raise InputError(f"quantization {quantization!r}: CTranslate2 takes one of {', '.join(QUANTIZATIONS)}")
    folder, _, _ = decoder_checkpoint(checkpoint)  # refuse a CTC checkpoint before making anything
    try:
        from ctranslate2.converters import TransformersConverter
    except ImportError as e:
        raise ExportError(f"export ct2 needs the ctranslate2 package ({e}); `pip install ctranslate2`") from None
    work = temporary_dir_beside(out, "work")
    try:
        hf, ct2 = work / "hf", work / "ct2"
        hf.mkdir()
        info = write_hf(folder, hf)
        converter = TransformersConverter(str(hf), copy_files=list(COPIED), low_cpu_mem_usage=True)
        try:
            with quiet_progress():
                converter.convert(str(ct2), quantization=quantization, force=True)
        except Exception as e:  # noqa: BLE001  (the converter raises whatever transformers or numpy raise)
            raise ExportError(f"{checkpoint}: CTranslate2's converter failed on the transformers export: "
                              f"{type(e).__name__}: {e}") from e
        tokenizer_json, generation = read_tokenizer_files(folder)
        (ct2 / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
        hf_generation = json.loads((hf / "generation_config.json").read_text(encoding="utf-8"))
        config = json.loads((ct2 / "config.json").read_text(encoding="utf-8")) if (ct2 / "config.json").is_file() \
            else {}
        config.update(ct2_config(info, generation, hf_generation))
        (ct2 / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
        import ctranslate2

        info = {**info, "format": FORMAT, "quantization": quantization or "float32",
                "ctranslate2": ctranslate2.__version__}
        info["verified"] = {"transformers": info.pop("verified")}  # the ct2 weights are the converter's
        (ct2 / INFO_FILE).write_text(json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8")
        readable(ct2)
        replace_dir(ct2, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return info
