"""The records of a run (:class:`RunLog`): ``train_log.jsonl``, TensorBoard scalars, lines for people."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..logs import info


class RunLog:
    """Records of a run: ``train_log.jsonl`` (one JSON object per line), TensorBoard scalars under
    ``tensorboard/`` when the package is installed, and lines for people through ``log``. Only rank 0
    writes."""

    def __init__(self, out_dir: Path, main: bool, log=info, tensorboard: bool = True):
        self.path = out_dir / "train_log.jsonl"
        self.tb_dir = out_dir / "tensorboard"
        self.main, self.want_tb = main, tensorboard
        self.say = log if main else (lambda *a, **k: None)
        self.writer = None

    def start(self, resumed_at: int | None) -> None:
        """A new run (``resumed_at`` None) drops the old records. A run resumed at a step keeps the records up
        to that step and drops later ones (steps a kill lost, which the resumed run redoes), and a last
        line a kill cut short."""
        if not self.main:
            return
        if resumed_at is None:
            self.path.unlink(missing_ok=True)
            shutil.rmtree(self.tb_dir, ignore_errors=True)
        elif self.path.is_file():
            kept, dropped = [], 0
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    step = json.loads(line)["step"]
                except (ValueError, KeyError, TypeError):
                    dropped += 1
                    continue
                if step <= resumed_at:
                    kept.append(line)
                else:
                    dropped += 1
            if dropped:
                from ..atomic import atomic_write_text

                atomic_write_text(self.path, "".join(line + "\n" for line in kept))
                self.say(f"{self.path.name}: dropped {dropped} record(s) after step {resumed_at}, which the "
                         "resumed run redoes")
        if self.want_tb:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: the JSON-lines log is enough
                return
            # purge_step drops events a killed run wrote after the checkpoint it resumes from
            self.writer = SummaryWriter(str(self.tb_dir), purge_step=None if resumed_at is None else resumed_at + 1)

    def record(self, rec: dict) -> None:
        if not self.main:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        if self.writer is not None:
            for key, value in rec.items():
                if key not in ("step", "epoch") and isinstance(value, int | float):
                    self.writer.add_scalar(key.replace("dev_", "dev/", 1) if key.startswith("dev_")
                                           else f"train/{key}", value, rec["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
