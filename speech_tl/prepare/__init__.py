"""Corpus preparers: one module per layout, each writing ``<corpus>_<lang>_<split>.jsonl``."""

from .common import PrepareResult, Rejection
from .commonvoice import prepare_commonvoice
from .folder import prepare_folder
from .kaldi import export_kaldi, prepare_kaldi
from .librispeech import prepare_librispeech
from .mailabs import prepare_mailabs
from .synth import prepare_synth_asr, prepare_synth_crosslingual, prepare_synth_speakers
from .voxceleb import prepare_voxceleb

__all__ = ["PrepareResult", "Rejection", "prepare_commonvoice", "prepare_librispeech", "prepare_voxceleb",
           "prepare_mailabs", "prepare_folder", "prepare_kaldi", "export_kaldi", "prepare_synth_asr",
           "prepare_synth_speakers", "prepare_synth_crosslingual"]
