"""The ASR run's configuration as typed dataclasses (read from YAML by :func:`speech_tl.config.load_config`):
the model (backbone, CTC or Whisper-decoder head), the decoder (beam, n-gram LM, tuning) and the whole run.

Its own module so that the corpus, the tasks and the recipes read it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..backbones import DEFAULT_ASR_BACKBONE
from ..config import ConfigError
from ..data import DataConfig
from ..domain import DomainConfig
from ..freeze import FreezeConfig
from ..train.config import TrainConfig


@dataclass
class ModelConfig:
    backbone: str = DEFAULT_ASR_BACKBONE
    pretrained: bool = True  # false: the same architecture from random initialisation
    dropout: float = 0.1  # before the head
    backbone_dropout: float | None = None  # dropout inside the backbone's layers (None: as pretrained)
    # ctc: a new character head on the encoder; decoder: Whisper's own decoder and tokenizer (speech_tl.asr.seq2seq)
    head: str = "ctc"
    # decoder head: pad every input with silence to this many seconds (30: as Whisper was trained); None: each input
    # at its own length
    pad_seconds: float | None = None
    # decoder head: weight of the teacher-student channel loss (speech_tl.asr.channel_teacher): the encoder's output
    # on a phone twin pulled toward the pretrained encoder's on its clean source; 0: off
    channel_teacher_weight: float = 0.0
    # decoder head: weight of the same teacher's decoder-output term (KL from the pretrained model's next-token
    # distributions on the clean source to the student's on the call); 0: off
    channel_teacher_kd_weight: float = 0.0

    def check(self) -> None:
        for key in ("channel_teacher_weight", "channel_teacher_kd_weight"):
            if getattr(self, key) < 0:
                raise ConfigError(f"model.{key} must be >= 0, got {getattr(self, key)}")
            if getattr(self, key) and self.head != "decoder":
                raise ConfigError(f"model.{key} needs model.head=decoder")
        if self.head not in ("ctc", "decoder"):
            raise ConfigError(f"model.head must be ctc or decoder, got {self.head!r}")
        if self.head == "decoder" and not self.backbone.startswith(("whisper-ct2:", "hf:")):
            raise ConfigError(f"model.head=decoder needs a Whisper source (whisper-ct2:... or hf:...), got "
                              f"{self.backbone!r}")
        if self.pad_seconds is not None and not 0 < self.pad_seconds <= 30:
            raise ConfigError(f"model.pad_seconds must be in (0, 30] or null, got {self.pad_seconds}")


@dataclass
class DecodeConfig:
    beam: int = 0  # how `evaluate` and `transcribe` decode by default: 0 greedy, N beam search of width N
    lm_order: int = 0  # n-gram LM trained on the training text (0: none)
    lm_unit: str = "word"  # word | char
    lm_weight: float = 0.5
    word_score: float = 0.0
    lm_texts: list[str] = field(default_factory=list)  # more LM text: "fortunes-de" or files (see asr/lm_text.py)
    lm_unigrams: str = ""  # "wordfreq": background unigram distribution (and lexicon) from the wordfreq package
    lm_vocab_size: int = 200_000  # most frequent background words kept
    tune_on: str = ""  # a dev manifest: after training, choose greedy/beam, lm_weight and word_score on it
    tune_metric: str = "cer"

    def check(self) -> None:
        if self.lm_unit not in ("word", "char"):
            raise ConfigError(f"decode.lm_unit must be word or char, got {self.lm_unit!r}")
        if self.beam < 0 or self.lm_order < 0:
            raise ConfigError("decode.beam and decode.lm_order must be >= 0")
        if self.lm_unigrams not in ("", "wordfreq"):
            raise ConfigError(f"decode.lm_unigrams must be '' or 'wordfreq', got {self.lm_unigrams!r}")
        if self.lm_unigrams and self.lm_unit != "word":
            raise ConfigError("decode.lm_unigrams needs a word LM (decode.lm_unit=word)")
        if (self.lm_texts or self.lm_unigrams) and self.lm_order <= 0:
            raise ConfigError("decode.lm_texts / decode.lm_unigrams need an LM: set decode.lm_order (e.g. 3)")
        if self.tune_metric not in ("cer", "wer"):
            raise ConfigError(f"decode.tune_metric must be cer or wer, got {self.tune_metric!r}")


@dataclass
class AsrConfig:
    out_dir: str = "exp/asr"
    language: str = "de"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    domain: DomainConfig = field(default_factory=DomainConfig)  # domain confusion on the encoder output (off)
