"""Find and read what a run folder holds: summary, config, training log, results files, hypotheses.

A RUN_DIR is a training run folder (``summary.json``, ``config.yaml``, ``train_log.jsonl``, results files
written by ``speech-tl evaluate`` beside them) or an evaluation-only folder (results files only, e.g. the
unadapted baseline of the speaker recipe). A results file is any ``*.json`` directly in the folder whose
top level has ``task`` or ``wer``/``eer``. Nothing is computed here; values are read as written, once each
value the report reads has been checked for its kind (:func:`check_shape`: a malformed file is an error naming the
file and the key).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import InputError

FREEZE_LINE = re.compile(r"(\S+): frontend (\w+), (\d+)/(\d+) layers frozen")
TASKS = ("asr", "speaker", "probe")  # probe: a probe.json of `speech-tl probe`


@dataclass
class Result:
    """One results file (``<stem>.json``) and, for ASR, its ``<stem>.hypotheses.jsonl``."""

    path: Path
    data: dict
    task: str
    hypotheses: list[dict] | None = None

    @property
    def name(self) -> str:
        return self.path.stem


@dataclass
class Run:
    path: Path
    name: str
    task: str
    summary: dict | None = None
    config: dict | None = None
    log: list[dict] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checkpoint_meta: dict | None = None  # best/meta.json (or checkpoint/), when the folder holds one

    @property
    def plain_adaptation(self) -> bool:
        """Trained by freezing alone: not interpolated, not multitask, no domain confusion (a freeze-sweep point)."""
        meta = self.checkpoint_meta or {}
        domain = (self.config or {}).get("domain") or {}
        return (self.trained and not meta.get("interpolation") and not meta.get("multitask_run")
                and not (isinstance(domain, dict) and domain.get("weight")))

    # ------------------------------------------------------------------ what the comparison names a run by
    @property
    def freeze(self) -> str:
        """The freeze policy as the trainer logged it (without the parameter counts), or why there is none."""
        text = (self.summary or {}).get("freeze")
        if text is None:
            for r in self.results:
                text = (r.data.get("train") or {}).get("freeze")
                if text:
                    break
        if not text:
            f = (self.config or {}).get("freeze") or {}
            if self.summary is None and isinstance(f, dict) and f.get("mode"):  # a run still training
                return f"{f['mode']}: bottom_layers={f.get('bottom_layers')} (config.yaml)"
            return "not adapted (pretrained model evaluated as is)" if self.pretrained_only else "-"
        return str(text).split(";")[0].removeprefix("freeze ").strip()

    @property
    def trained(self) -> bool:
        """Whether this folder is (or is becoming) a training run, not only evaluations."""
        return self.summary is not None or bool(self.log) or self.config is not None

    @property
    def pretrained_only(self) -> bool:
        """An evaluation folder of an unadapted backbone (e.g. the speaker recipe's baseline): no training cost."""
        if self.trained:
            return False
        for r in self.results:
            model = r.data.get("model")
            if r.task == "asr" or r.data.get("train"):  # ASR is always evaluated from a trained checkpoint
                return False
            if isinstance(model, str) and not re.match(r"[\w.+-]+:", model):  # a checkpoint folder, no source
                return False
        return True

    @property
    def freeze_state(self) -> dict | None:
        """The trainer's freeze state as data (``freeze_state`` in the summary or an evaluation's ``train``);
        for runs written before it existed, read back from the freeze line."""
        state = (self.summary or {}).get("freeze_state")
        for r in self.results:
            state = state or (r.data.get("train") or {}).get("freeze_state")
        if state:
            return state
        m = FREEZE_LINE.match(self.freeze)
        if not m:
            return None
        counts = re.search(r"trainable ([\d,]+) of ([\d,]+)", str((self.summary or {}).get("freeze", "")))
        return {"mode": m[1], "frontend_frozen": m[2] == "frozen", "frozen_layers": int(m[3]), "layers": int(m[4]),
                **({"trainable_parameters": int(counts[1].replace(",", "")),
                    "total_parameters": int(counts[2].replace(",", ""))} if counts else {})}

    @property
    def frozen_depth(self) -> int | None:
        """``k`` of a run with the frontend and bottom ``k`` layers frozen (full: 0)."""
        state = self.freeze_state
        return int(state["frozen_layers"]) if state else None

    @property
    def freeze_short(self) -> str:
        """``bottom, 2/4 layers frozen``, ``full, 0/4 layers frozen``, ``not adapted``: for axis labels."""
        state = self.freeze_state
        if state:
            return f"{state['mode']}, {state['frozen_layers']}/{state['layers']} layers frozen"
        if self.freeze.endswith(" (config.yaml)"):
            return self.freeze.removesuffix(" (config.yaml)") + ", training"
        return "not adapted" if self.freeze.startswith("not adapted") else self.freeze[:32]

    @property
    def backbone(self) -> str:
        if self.summary and self.summary.get("backbone"):
            return str(self.summary["backbone"])
        model = (self.config or {}).get("model") or {}
        if isinstance(model, dict) and model.get("backbone"):
            return str(model["backbone"])
        for r in self.results:
            for key in ("backbone", "model"):
                if r.data.get(key):
                    return str(r.data[key])
        return "-"

    @property
    def train_minutes(self) -> float | None:
        if self.summary is None:
            return 0.0 if self.pretrained_only else None
        return self.summary.get("train_minutes")

    @property
    def trainable_parameters(self) -> int | None:
        if self.summary is not None:
            return self.summary.get("trainable_parameters")
        for r in self.results:  # an evaluation folder of a trained checkpoint
            train = r.data.get("train") or {}
            if (train.get("freeze_state") or {}).get("trainable_parameters") is not None:
                return int(train["freeze_state"]["trainable_parameters"])
            m = re.search(r"trainable ([\d,]+) of", str(train.get("freeze", "")))  # written before freeze_state
            if m:
                return int(m[1].replace(",", ""))
        return 0 if self.pretrained_only else None

    @property
    def total_parameters(self) -> int | None:
        return (self.summary or {}).get("total_parameters")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not valid UTF-8 (byte 0x{e.object[e.start]:02x} at byte {e.start + 1})") from None


def _read_json(path: Path) -> object:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None


# --------------------------------------------------------------------------- the shape of what the report reads

def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


@dataclass(frozen=True)
class Kind:
    """A JSON value the report reads: ``what`` it should be (for the error), ``test`` whether it is."""

    what: str
    test: Callable[[object], bool]


@dataclass(frozen=True)
class Obj:
    """A JSON object: ``fields`` name -> kind (null is accepted unless the name is ``required``), ``each`` the kind
    of every value (speaker -> counts), ``check`` a further test returning ``(key, problem)`` or None."""

    fields: dict = field(default_factory=dict)
    required: tuple[str, ...] = ()
    each: object = None
    check: Callable[[dict], tuple[str, str] | None] | None = None


@dataclass(frozen=True)
class ListOf:
    item: object


NUMBER = Kind("a number", _number)
COUNT = Kind("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool))
TEXT = Kind("a string", lambda v: isinstance(v, str))
PAIR = Kind("a pair of numbers [low, high]", lambda v: isinstance(v, list) and len(v) == 2 and all(map(_number, v)))
NUMBERS = Kind("a list of numbers", lambda v: isinstance(v, list) and all(map(_number, v)))
CONFUSION = Kind("a pair [word, count]", lambda v: isinstance(v, list) and len(v) == 2 and _number(v[1]))


def _same_length(a: str, b: str, extra: int = 0) -> Callable[[dict], tuple[str, str] | None]:
    def check(d: dict) -> tuple[str, str] | None:
        if len(d[a]) != len(d[b]) + extra:
            return a, f"holds {len(d[a])} values but {b} {len(d[b])}; expected {len(d[b]) + extra}"
        return None

    return check


FREEZE_STATE = Obj({"mode": TEXT, "frozen_layers": COUNT, "layers": COUNT, "trainable_parameters": COUNT,
                    "total_parameters": COUNT}, required=("mode", "frozen_layers", "layers"))
TRAIN = Obj({"freeze": TEXT, "freeze_state": FREEZE_STATE})
DET = Obj({"far": NUMBERS, "frr": NUMBERS}, required=("far", "frr"), check=_same_length("far", "frr"))
HISTOGRAM = Obj({"bins": NUMBERS, "target": NUMBERS, "nontarget": NUMBERS}, required=("bins", "target", "nontarget"),
                check=lambda d: _same_length("bins", "target", 1)(d) or _same_length("bins", "nontarget", 1)(d))
SCORES = {"eer": NUMBER, "eer_ci95": PAIR, "min_dcf": NUMBER, "eer_threshold": NUMBER, "det": DET,
          "score_histogram": HISTOGRAM}


def _probe_rows(d: dict) -> tuple[str, str] | None:
    metric = d.get("metric", "eer")
    depths = [row["depth"] for row in d["layers"]]
    for k, row in enumerate(d["layers"]):
        if not _number(row.get(metric)):
            return f"layers[{k}].{metric}", f"expected a number (the probe's metric), found {_found(row.get(metric))}"
    if d.get("best_depth") is not None and d["best_depth"] not in depths:
        return "best_depth", f"is {d['best_depth']}, not one of the depths in layers ({depths})"
    return None


RESULTS = {
    "asr": Obj({"wer": NUMBER, "cer": NUMBER, "wer_ci95": PAIR, "cer_ci95": PAIR, "num_utterances": NUMBER,
                "audio_seconds": NUMBER, "decode_seconds": NUMBER, "train": TRAIN,
                "per_speaker": Obj(each=Obj({"utterances": NUMBER, "wer": NUMBER, "cer": NUMBER})),
                "per_channel": Obj(each=Obj(each=Obj({"utterances": NUMBER, "wer": NUMBER, "cer": NUMBER,
                                                      "chars": NUMBER}))),
                "confusions": Obj({k: ListOf(CONFUSION) for k in ("substitutions", "deletions", "insertions")})}),
    "speaker": Obj({**SCORES, "asnorm": Obj(SCORES), "train": TRAIN,
                    **{k: NUMBER for k in ("num_utterances", "num_speakers", "num_trials", "num_target_trials",
                                           "p_target", "identification_accuracy", "identification_top5_accuracy")},
                    "identification": Obj({k: NUMBER for k in ("num_enrolled_speakers", "enroll_per_speaker",
                                                               "num_tests")}),
                    "per_speaker": Obj(each=Obj({"enroll": NUMBER, "tests": NUMBER, "accuracy": NUMBER}))}),
    "probe": Obj({"metric": TEXT, "best_depth": COUNT, "recommended_freeze_depth": COUNT, "train": TRAIN,
                  "layers": ListOf(Obj({"depth": COUNT, **{k: NUMBER for k in ("cer", "wer", "eer", "eer_no_lda",
                                                                               "dim", "lda_dim")}},
                                       required=("depth",)))},
                 required=("layers",), check=_probe_rows),
}
SUMMARY = Obj({k: NUMBER for k in ("steps", "epochs", "train_minutes", "best_step")}
              | {"trainable_parameters": COUNT, "total_parameters": COUNT, "freeze_state": FREEZE_STATE},
              check=lambda d: next(((k, f"expected a number, found {_found(v)}") for k, v in d.items()
                                    if k.startswith("best_dev_") and v is not None and not _number(v)), None))
HYPOTHESIS = Obj({"ref": TEXT, "hyp": TEXT}, required=("ref", "hyp"))


def _found(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str):
        return f"a string ({v[:40]!r})"
    if isinstance(v, dict):
        return "an object"
    return f"a list of {len(v)}" if isinstance(v, list) else repr(v)[:40]


def _problem(value, spec, key: str) -> tuple[str, str] | None:
    """The first place where ``value`` is not as ``spec`` says: ``(key, problem)``, or None."""
    if isinstance(spec, Kind):
        return None if spec.test(value) else (key, f"expected {spec.what}, found {_found(value)}")
    if isinstance(spec, ListOf):
        if not isinstance(value, list):
            return key, f"expected a list, found {_found(value)}"
        return next((p for k, item in enumerate(value) if (p := _problem(item, spec.item, f"{key}[{k}]"))), None)
    if not isinstance(value, dict):
        return key, f"expected a JSON object, found {_found(value)}"
    at = f"{key}." if key else ""
    for name in spec.required:
        if value.get(name) is None:
            return f"{at}{name}", "missing"
    for name, kind in spec.fields.items():
        if value.get(name) is not None and (p := _problem(value[name], kind, f"{at}{name}")):
            return p
    if spec.each is not None:
        for name, v in value.items():
            if p := _problem(v, spec.each, f"{at}{name}"):
                return p
    if spec.check is not None and (p := spec.check(value)):
        return f"{at}{p[0]}", p[1]
    return None


def check_shape(path: Path | str, data, spec, writer: str) -> None:
    """:class:`InputError` naming ``path`` and the key when ``data`` is not as ``spec`` says (``writer``: the command
    that writes such files, for the advice)."""
    if p := _problem(data, spec, ""):
        key, problem = p
        raise InputError(f"{path}: " + (f"key {key!r}: " if key else "") + f"{problem}; fix the file (as `speech-tl "
                         f"{writer}` writes it) or move it out of the run folder")


def result_task(data: object) -> str | None:
    """``asr``/``speaker`` for a results mapping, another task name, or None when it is not a results file."""
    if not isinstance(data, dict):
        return None
    if "task" in data:
        return str(data["task"])
    if "wer" in data:
        return "asr"
    if "eer" in data:
        return "speaker"
    return None


def read_jsonl(path: Path) -> list[dict]:
    return [row for _, row in _numbered_rows(path)]


def _numbered_rows(path: Path) -> list[tuple[int, dict]]:
    """``(line number, object)`` of each JSON Lines object (a line cut short by a kill is left out: the rest is still
    worth showing)."""
    rows = []
    for k, line in enumerate(_read_text(path).splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append((k, row))
    return rows


def _hypotheses(path: Path) -> list[dict]:
    rows = _numbered_rows(path)
    for line, row in rows:
        check_shape(f"{path}:{line}", row, HYPOTHESIS, "evaluate")
    return [row for _, row in rows]


def _summary_task(summary: dict | None, log: list[dict]) -> str | None:
    keys = set(summary or {}) | {k for r in log for k in r}
    if {"best_dev_wer", "dev_wer", "dev_cer"} & keys:
        return "asr"
    if {"best_dev_eer", "dev_eer"} & keys:
        return "speaker"
    return None


def collect_run(path: str | Path) -> Run:
    """Read one RUN_DIR (see the module docstring); :class:`InputError` when it holds neither a summary nor
    results, or a file that cannot be read."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a folder")
    summary = _read_json(path / "summary.json") if (path / "summary.json").is_file() else None
    if summary is not None and not isinstance(summary, dict):
        raise InputError(f"{path / 'summary.json'}: expected a JSON object")
    if summary is not None:
        check_shape(path / "summary.json", summary, SUMMARY, "train")
    config = None
    if (path / "config.yaml").is_file():
        try:
            config = yaml.safe_load(_read_text(path / "config.yaml"))
        except yaml.YAMLError as e:
            raise InputError(f"{path / 'config.yaml'}: not valid YAML ({e})") from None
        if config is not None and not isinstance(config, dict):
            raise InputError(f"{path / 'config.yaml'}: expected a YAML mapping (the config `speech-tl train` "
                             f"writes), got a {type(config).__name__}")
    log = read_jsonl(path / "train_log.jsonl") if (path / "train_log.jsonl").is_file() else []
    results, notes = [], []
    for p in sorted(path.glob("*.json")):
        if p.name == "summary.json":
            continue
        data = _read_json(p)
        task = result_task(data)
        if task is None:
            if isinstance(data, list) and any(result_task(x) for x in data):
                raise InputError(f"{p}: a JSON list of results; a results file holds one JSON object (as `speech-tl "
                                 "evaluate` writes it): write each result to a file of its own")
            continue
        if task not in TASKS:
            notes.append(f"{p.name}: task {task!r} is not reported")
            continue
        check_shape(p, data, RESULTS[task], "probe" if task == "probe" else "evaluate")
        hyp_path = p.with_name(p.stem + ".hypotheses.jsonl")
        results.append(Result(p, data, task, _hypotheses(hyp_path) if task == "asr" and hyp_path.is_file() else None))
    if summary is None and not results and not log:
        raise InputError(f"{path}: no summary.json, train_log.jsonl or results *.json (with 'task', 'wer' or "
                         "'eer') found")
    if summary is None and log:
        notes.append("Training has not finished: no summary.json yet (curves from train_log.jsonl so far).")
    tasks = {r.task for r in results} | ({t} if (t := _summary_task(summary, log)) else set())
    if config and not tasks:  # a summary of a run that never evaluated: the config's shape says which task
        tasks = {"asr"} if "decode" in config or "language" in config else {"speaker"}
    if len(tasks) > 1:
        raise InputError(f"{path}: results of several tasks ({', '.join(sorted(tasks))}) in one run folder")
    task = tasks.pop() if tasks else "asr"
    # the test results first ("test*"), then the others, each group by name
    results.sort(key=lambda r: (not r.name.startswith("test"), r.name))
    meta = None
    for sub in ("best", "checkpoint"):
        if (path / sub / "meta.json").is_file():
            meta = _read_json(path / sub / "meta.json")
            break
    return Run(path, path.name or str(path), task, summary, config, log, results, notes,
               meta if isinstance(meta, dict) else None)


def collect_runs(paths: list[str | Path]) -> list[Run]:
    """Read every RUN_DIR; runs with the same folder name are told apart by their parent folders."""
    if not paths:
        raise InputError("no run folders given; name at least one RUN_DIR")
    runs = [collect_run(p) for p in paths]
    seen: dict[str, int] = {}
    for r in runs:
        seen[r.name] = seen.get(r.name, 0) + 1
    for r in runs:
        if seen[r.name] > 1:
            parts = r.path.resolve().parts
            r.name = "/".join(parts[-2:]) if len(parts) >= 2 else str(r.path)
    names = [r.name for r in runs]
    for k, r in enumerate(runs):
        if names.count(r.name) > 1:  # same parent too (a folder given twice): number them
            r.name = f"{r.name} ({k + 1})"
    return runs
