"""German (or any) ASR by transfer: config, the task the training loop runs, and building a model.

``speech-tl train asr CONFIG.yaml key=value ...`` -> :func:`train_asr`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from ..backbones import load_backbone
from ..backbones.base import set_dropout
from ..config import ConfigError, to_dict
from ..data import UtteranceDataset, load_training_manifest
from ..domain import DomainConfusion, mark_target
from ..freeze import FreezePlan
from ..logs import info
from ..text import Vocabulary, normalize
from ..train import Task, Trainer, is_main_process
from .config import AsrConfig, DecodeConfig, ModelConfig  # noqa: F401  (imported from here by recipes and tests)
from .corpus import load_asr_corpus, train_decoder_lm
from .model import CtcModel, ctc_impossible, ctc_loss


def transcribe_batches(model: CtcModel, dataset: UtteranceDataset, vocab: Vocabulary, device: torch.device,
                       batch_seconds: float = 120.0, decoder=None, batch_size: int = 64) -> list[str]:
    """Hypotheses for every utterance of ``dataset``, in order (greedy unless a beam ``decoder`` is given):
    :func:`speech_tl.asr.infer.transcribe_dataset` with batches of at most ``batch_size`` utterances and
    ``batch_seconds`` of padded audio."""
    from .infer import transcribe_dataset

    return transcribe_dataset(model, dataset, vocab, device, decoder, batch_size, batch_seconds)


class AsrTask(Task):
    """The CTC task for :class:`speech_tl.train.Trainer`."""

    name = "asr"
    primary_metric = "wer"
    secondary_metric = "cer"

    def __init__(self, cfg: AsrConfig, log=info):
        self.cfg = cfg
        self.ctc_zeroed: set[int] = set()  # training utterances CTC could not align (zero_infinity zeroed them)
        out = Path(cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        corpus = load_asr_corpus(cfg.data, cfg.language, cfg.train.seed, out, log)
        self.corpus, self.vocab, self.targets = corpus, corpus.vocab, list(corpus.targets)
        train_utts = corpus.train
        self.labelled = len(train_utts)  # utterances [labelled:] are untranscribed target-domain audio
        domain_utts = list(train_utts)
        if cfg.domain.target:
            cfg.domain.check()
            target = load_training_manifest(cfg.domain.target, cfg.data, need_text=False, out_dir=out, name="target")
            domain_utts += mark_target(target, cfg.domain.target_label)
            self.targets += [[] for _ in target]
            log(f"domain.target: {len(target)} untranscribed {cfg.domain.target_label!r} utterances "
                f"({sum(u.duration for u in target) / 3600:.2f} h) from {cfg.domain.target} join training for the "
                "domain loss only")
        self.train_set = UtteranceDataset(domain_utts)
        self.dev_set = corpus.dev
        torch.manual_seed(cfg.train.seed)  # the new head (and a random-init backbone) start the same every run
        backbone = load_backbone(cfg.model.backbone, pretrained=cfg.model.pretrained)
        if cfg.model.backbone_dropout is not None:
            set_dropout(backbone, cfg.model.backbone_dropout)
        self.model = CtcModel(backbone, len(self.vocab), cfg.model.dropout)
        self.plan = FreezePlan(backbone, cfg.freeze)
        self.domain = DomainConfusion.attach(cfg.domain, self.model, backbone.output_dim, domain_utts, cfg.data.train,
                                             log)
        if cfg.data.spec_augment:
            if not hasattr(backbone, "input_augment"):
                raise ConfigError(f"data.spec_augment is not supported for backbone {backbone.source} (it has no "
                                  "input features to mask); set data.spec_augment=false")
            backbone.input_augment = "spec"
        self.lm_path = None
        if cfg.decode.lm_order > 0:
            self.lm_path = train_decoder_lm(corpus, cfg.language, cfg.decode, out / "lm.arpa", log)
        log(f"vocabulary: {len(self.vocab)} symbols; train {len(self.train_set)} utterances "
            f"({sum(self.train_set.durations) / 3600:.2f} h)"
            + (f", dev {len(self.dev_set)}" if self.dev_set is not None else ""))

    def set_progress(self, progress: float) -> None:
        if self.domain is not None:
            self.domain.progress = progress

    def loss(self, output, indices: torch.Tensor) -> torch.Tensor:
        """CTC per target character, plus the domain classifier's loss when domain confusion is on."""
        log_probs, lengths = output
        labelled = indices < self.labelled
        if bool(labelled.all()):
            targets = [self.targets[int(i)] for i in indices]
            self.ctc_zeroed.update(int(indices[b]) for b in ctc_impossible(lengths, targets))
            loss = ctc_loss(log_probs, lengths, targets)
        elif bool(labelled.any()):  # target-domain audio in the batch: CTC on the transcribed part only
            keep = labelled.nonzero().flatten().to(log_probs.device)
            targets = [self.targets[int(i)] for i in indices[labelled]]
            self.ctc_zeroed.update(int(indices[labelled][b]) for b in ctc_impossible(lengths[keep], targets))
            loss = ctc_loss(log_probs[keep], lengths[keep], targets)
        else:
            loss = log_probs.sum() * 0.0  # keeps the head in the graph (DDP)
        if self.domain is not None:
            loss = loss + self.domain.loss(self.model.pooled, indices)
        return loss

    def report(self) -> dict:
        """Utterances whose CTC loss was zeroed (transcript too long for the audio), counted over the run."""
        if not self.ctc_zeroed:
            return {}
        ids = [self.train_set.utterances[i].id for i in sorted(self.ctc_zeroed)]
        return {"ctc_zeroed_utterances": len(ids), "ctc_zeroed_ids": ids[:20]}

    def evaluate(self, model, device) -> dict:
        if self.dev_set is None:
            return {}
        from ..metrics import error_counts

        hyps = transcribe_batches(model, self.dev_set, self.vocab, device, self.cfg.data.batch_seconds)
        refs = [normalize(u.text) for u in self.dev_set.utterances]
        c = error_counts(refs, hyps)
        return {"wer": c.words.rate(), "cer": c.chars.rate()}

    def checkpoint_files(self) -> dict:
        files = {"vocab.json": {"symbols": self.vocab.symbols},
                 "config.yaml": yaml.safe_dump(to_dict(self.cfg), sort_keys=False, allow_unicode=True)}
        if self.lm_path is not None:
            files["lm.arpa"] = self.lm_path
        return files


def train_asr(cfg: AsrConfig, log=info, before_start=None) -> dict:
    """Adapt a backbone to ASR as configured; returns the training summary (see ``summary.json``).
    ``before_start``: called once the run is set up, just before it starts (e.g. --overwrite's removal)."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg.model.check()
    if cfg.model.head == "decoder":
        from .seq2seq_task import Seq2SeqTask

        if cfg.decode.lm_order or cfg.decode.tune_on:
            raise ConfigError("decode.lm_order / decode.tune_on tune a CTC head's beam search with an n-gram LM; a "
                              "Whisper decoder has its own language model: leave them unset with model.head=decoder")
        task = Seq2SeqTask(cfg, log)
        summary = Trainer(task, cfg.train, out, cfg.data, log).run(before_start=before_start)
        if "start_dev" in summary and cfg.model.pretrained and is_main_process():
            # the whole pretrained Whisper before any step is the zero-shot model: say whether adapting beat it
            from ..atomic import atomic_write_text

            summary["zero_shot_dev"] = summary["start_dev"]
            summary["beats_zero_shot"] = not summary["best_is_start"]
            best = json.loads((out / "best" / "meta.json").read_text(encoding="utf-8")).get("metrics", {}) \
                if (out / "best" / "meta.json").is_file() else {}
            summary["best_dev"] = best

            def show(m: dict) -> str:
                return ", ".join(f"{k.upper()} {m[k]:.4f}" for k in ("cer", "wer") if k in m)

            log("the adapted model " + ("beats" if summary["beats_zero_shot"] else "does NOT beat") + " zero-shot on "
                f"the dev set {cfg.data.dev} (CER first, WER breaks ties): best (step {summary['best_step']}) "
                f"{show(best)}; zero-shot {show(summary['start_dev'])}"
                + ("" if summary["beats_zero_shot"] else "; the checkpoint kept is the zero-shot model"))
            atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
        return summary
    task = AsrTask(cfg, log)
    summary = Trainer(task, cfg.train, out, cfg.data, log).run(before_start=before_start)
    if cfg.decode.tune_on and not Path(cfg.decode.tune_on).is_file():
        log(f"decode.tune_on: {cfg.decode.tune_on} not found; the decoder is not tuned and decodes as decode.* says "
            "(prepare the real dev set first, e.g. recipes/asr_de/run.sh --stage 0 --stop-stage 0)")
    elif cfg.decode.tune_on and is_main_process():
        from .tune import tune_decoder

        tuned = tune_decoder(out, cfg.decode.tune_on, cfg.decode.beam or 16, metric=cfg.decode.tune_metric,
                             device=cfg.train.device, log=log)
        summary["decoder"] = {k: tuned[k] for k in ("beam", "lm_weight", "word_score", "wer", "cer", "tuned_on")}
        from ..atomic import atomic_write_text

        atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    return summary
