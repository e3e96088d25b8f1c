"""Fill the report's document tree from collected runs: comparison per task, then one section per run.

Only values found in the files are shown (rates as percentages); the one thing derived is the word
alignment of a few reference/hypothesis pairs (``jiwer.process_words``), to mark their errors.
"""

from __future__ import annotations

from collections import Counter

from . import plots
from .collect import Result, Run
from .document import Aligned, Document, Examples, Figure, Ids, Para, Section, Span, Table, Token

MAX_SPEAKER_ROWS = 40
PRIMARY = {"asr": ("wer", "cer"), "speaker": ("eer", "min_dcf")}  # ranking metric, tie-break
TASK_TITLE = {"asr": "Speech recognition", "speaker": "Speaker verification and identification"}
PROBE_TASK = {"asr": "asr", "speaker": "speaker"}  # probe kind -> the task whose runs it predicts
PROBE_COLUMNS = {"cer": "CER", "wer": "WER", "eer": "EER", "eer_no_lda": "EER without LDA", "dim": "feature dim",
                 "lda_dim": "LDA dim"}
PROBE_RATES = {"cer", "wer", "eer", "eer_no_lda"}


def pct(v) -> str:
    return "-" if not isinstance(v, int | float) else f"{100 * v:.2f} %"


def ci(c) -> str:
    if not (isinstance(c, list | tuple) and len(c) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in c)):
        return "-"
    return f"[{100 * c[0]:.2f}, {100 * c[1]:.2f}]"


def num(v, digits: int = 4) -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def rate_ci(r: dict, key: str) -> str:
    return f"{pct(r.get(key))} {ci(r.get(f'{key}_ci95'))}" if r.get(f"{key}_ci95") else pct(r.get(key))


# --------------------------------------------------------------------------- comparison

def ranking_stem(runs: list[Run]) -> str | None:
    """The results file most runs have (``test*`` first on ties): the one runs are ranked and charted by."""
    counts = Counter(r.name for run in runs for r in run.results)
    if not counts:
        return None
    return min(counts, key=lambda s: (-counts[s], not s.startswith("test"), s))


def _result(run: Run, stem: str | None) -> Result | None:
    return next((r for r in run.results if r.name == stem), None)


def _value(run: Run, stem: str | None, key: str) -> float | None:
    """``key`` of results file ``stem``; with ``stem`` None the run's best dev value from summary.json."""
    if stem is None:
        v = (run.summary or {}).get(f"best_dev_{key}")
    else:
        r = _result(run, stem)
        v = None if r is None else r.data.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def best_run(runs: list[Run], task: str, stem: str | None) -> tuple[int | None, str | None]:
    """``(index, stem)`` of the run with the lowest ranking metric: on results file ``stem`` when at least two
    runs have it, else on the best dev value of summary.json (stem None); ``(None, stem)`` when nothing ranks."""
    key, second = PRIMARY[task]
    for basis in ([stem] if stem is not None else []) + [None]:
        scored = [(v, _value(run, basis, second) or 0.0, k) for k, run in enumerate(runs)
                  if (v := _value(run, basis, key)) is not None]
        if len(scored) >= 2:
            return min(scored)[2], basis
    return None, stem


def comparison(runs: list[Run], task: str, ids: Ids) -> Section:
    """One table (every results file, cost, freeze policy, backbone) and one bar chart of the ranking metric."""
    stems = sorted({r.name for run in runs for r in run.results}, key=lambda s: (not s.startswith("test"), s))
    key = PRIMARY[task][0]
    best, basis = best_run(runs, task, ranking_stem(runs))
    basis_label = f"{basis} {key.upper()}" if basis is not None else f"best dev {key.upper()} (summary.json)"
    metrics = [("wer", "WER", True), ("cer", "CER", True)] if task == "asr" else \
        [("eer", "EER", True), ("min_dcf", "minDCF", False), ("identification_accuracy", "ID acc.", False)]
    headers = ["run", "freeze policy", "backbone", "train min", "trainable params", f"best dev {key.upper()}"]
    headers += [f"{s}: {label}" + (" [95% CI]" if has_ci else "") for s in stems for _, label, has_ci in metrics]
    rows = []
    for k, run in enumerate(runs):
        name: list[Span] = [Span(run.name, "b")] + ([Span(" ★ best", "best")] if k == best else [])
        params = run.trainable_parameters
        cost = "-" if params is None else f"{params:,}"
        if params is not None and run.total_parameters:
            cost += f" of {run.total_parameters:,}"
        row: list = [name, run.freeze, [Span(run.backbone, "code")], num(run.train_minutes, 2), cost,
                     pct(_value(run, None, key))]
        for s in stems:
            r = _result(run, s)
            for m, _, _ci in metrics:
                if r is None:
                    row.append("-")
                elif m in ("wer", "cer", "eer"):
                    row.append(rate_ci(r.data, m))
                elif m == "identification_accuracy":
                    row.append(pct(r.data.get(m)))
                else:
                    row.append(num(r.data.get(m)))
        rows.append(row)
    sec = Section(ids("comparison", task), f"Comparison: {TASK_TITLE[task].lower()} ({len(runs)} run"
                                           f"{'s' if len(runs) != 1 else ''})")
    if best is not None:
        b = runs[best]
        params = "-" if b.trainable_parameters is None else f"{b.trainable_parameters:,}"
        sec.add(Para([Span("Best by "), Span(basis_label, "b"), Span(": "), Span(b.name, "best"),
                      Span(f" ({b.freeze}; {b.backbone}): {pct(_value(b, basis, key))}, trained "
                           f"{num(b.train_minutes, 2)} min with {params} trainable parameters.")]))
    else:
        sec.add(Para("Fewer than two runs have a comparable result, so none is marked best."))
    sec.add(Table(headers, rows, [False, False, False] + [True] * (len(headers) - 3),
                  note="Rates in percent with 95% bootstrap intervals as written by `speech-tl evaluate`; "
                       "cost: training minutes and trainable parameters from each run's summary.json."))
    labels = [f"{run.name}\n{run.freeze_short}" for run in runs]
    chart_stem = basis if best is not None else ranking_stem(runs)
    if chart_stem is not None:
        chosen = metrics[:2] if task == "asr" else metrics[:1]
        series = [(label, [_value(run, chart_stem, m) for run in runs],
                   [(_result(run, chart_stem).data.get(f"{m}_ci95") if has_ci and _result(run, chart_stem) else None)
                    for run in runs]) for m, label, has_ci in chosen]
        what = f"{chart_stem} " + " and ".join(label for _, label, _ in chosen)
        how = "error bars: 95% bootstrap interval"
    else:  # not evaluated on a common results file: the best dev value of each training
        series = [(f"best dev {key.upper()}", [_value(run, None, key) for run in runs], [None] * len(runs))]
        what, how = f"best dev {key.upper()}", "from summary.json"
    png = plots.comparison_bars(labels, series, best, "error rate (fraction)", f"{what} per run")
    sec.add(Figure(ids("fig", "comparison", task), png,
                   alt=f"Bar chart of {what} for each of {len(runs)} {task} runs",
                   caption=f"{what} per run ({how}); "
                           + (f"the best run ({runs[best].name}) has a black edge and the [best] label."
                              if best is not None else "none marked best.")))
    return sec


def task_key(task: str) -> str:
    return PRIMARY[task][0].upper()


# --------------------------------------------------------------------------- one run

def run_info(run: Run) -> Table:
    s = run.summary or {}
    rows = [["folder", [Span(str(run.path), "code")]], ["task", run.task], ["backbone", [Span(run.backbone, "code")]],
            ["freeze policy", run.freeze]]
    if s:
        best_key = next((k for k in s if k.startswith("best_dev_")), None)
        rows += [["steps", num(s.get("steps"))], ["epochs", num(s.get("epochs"), 2)],
                 ["training minutes", num(s.get("train_minutes"), 2)],
                 ["trainable / total parameters", f"{num(s.get('trainable_parameters'))} / "
                                                  f"{num(s.get('total_parameters'))}"]]
        if best_key:
            rows.append([f"best dev {best_key.removeprefix('best_dev_').upper()}",
                         f"{pct(s.get(best_key))} at step {num(s.get('best_step'))}"])
        if s.get("prefix_cache"):
            rows.append(["prefix cache", str(s["prefix_cache"])])
    else:
        rows.append(["training", "none in this folder (evaluation only)"])
    return Table(["", ""], rows, [False, False])


def align(ref: str, hyp: str) -> list[Token]:
    """Word alignment of one pair by ``jiwer.process_words``."""
    import jiwer

    r, h = ref.split(), hyp.split()
    if not r:
        return [Token("ins", "", w) for w in h]
    out = jiwer.process_words(" ".join(r), " ".join(h))
    rw, hw = out.references[0], out.hypotheses[0]
    tokens = []
    for ch in out.alignments[0]:
        refs, hyps = rw[ch.ref_start_idx:ch.ref_end_idx], hw[ch.hyp_start_idx:ch.hyp_end_idx]
        if ch.type == "equal":
            tokens += [Token("ok", a, b) for a, b in zip(refs, hyps, strict=True)]
        elif ch.type == "substitute":
            tokens += [Token("sub", a, b) for a, b in zip(refs, hyps, strict=True)]
        elif ch.type == "delete":
            tokens += [Token("del", a, "") for a in refs]
        else:
            tokens += [Token("ins", "", b) for b in hyps]
    return tokens


def asr_result(run: Run, res: Result, ids: Ids, examples: int, top: int) -> Section:
    d = res.data
    sec = Section(ids("run", run.name, res.name), f"{res.name} ({d.get('decoding', '?')})")
    sec.add(Table(["measure", "value"], [
        ["WER [95% CI]", rate_ci(d, "wer")], ["CER [95% CI]", rate_ci(d, "cer")],
        ["utterances", num(d.get("num_utterances"))], ["decoding", str(d.get("decoding", "-"))],
        ["manifest", [Span(str(d.get("manifest", "-")), "code")]],
        ["audio / decode seconds", f"{num(d.get('audio_seconds'), 1)} / {num(d.get('decode_seconds'), 1)}"],
    ], [False, True]))
    per = d.get("per_speaker") or {}
    if per:
        items = list(per.items())
        rows = [[[Span(spk, "code")], num(v.get("utterances")), pct(v.get("wer")), pct(v.get("cer"))]
                for spk, v in items[:MAX_SPEAKER_ROWS]]
        more = [Span(f"{len(items) - MAX_SPEAKER_ROWS} more speakers in {res.path.name}")] \
            if len(items) > MAX_SPEAKER_ROWS else ""
        sec.children.append(Section(ids(sec.id, "speakers"), "Per speaker").add(
            Table(["speaker", "utterances", "WER", "CER"], rows, [False, True, True, True], note=more)))
    chan = d.get("per_channel") or {}
    if chan:  # a telephone twin: rates per noise kind, SNR band, codec and impairment (speech_tl.asr.channel_errors)
        rows = [[group, [Span(value, "code")], num(v.get("utterances")), num(v.get("chars")), pct(v.get("wer")),
                 pct(v.get("cer"))] for group, values in chan.items() for value, v in values.items()]
        sec.children.append(Section(ids(sec.id, "channels"), "Per channel condition").add(
            Table(["group", "condition", "utterances", "characters", "WER", "CER"], rows,
                  [False, False, True, True, True, True])))
    conf = d.get("confusions") or {}
    if conf:
        c = Section(ids(sec.id, "confusions"), f"Most frequent word errors (top {top})")
        for key, head in (("substitutions", "substitution (reference -> hypothesis)"),
                          ("deletions", "deleted reference word"), ("insertions", "inserted word")):
            pairs = conf.get(key) or []
            rows = [[[Span(str(w), "code")], num(n)] for w, n in pairs[:top]]
            c.add(Table([head, "count"], rows or [["(none)", "0"]], [False, True]))
        sec.children.append(c)
    if res.hypotheses is not None:
        wrong = [h for h in res.hypotheses if str(h.get("ref", "")).split() != str(h.get("hyp", "")).split()]
        shown = [Aligned(str(h.get("id", "?")), str(h.get("speaker", "")), align(str(h["ref"]), str(h["hyp"])))
                 for h in wrong[:examples]]
        ex = Section(ids(sec.id, "examples"), "Aligned reference and hypothesis")
        ex.add(Para([Span(f"The first {len(shown)} of the {len(wrong)} utterances (of {len(res.hypotheses)}) with "
                          "word errors in "), Span(f"{res.name}.hypotheses.jsonl", "code"),
                     Span("; aligned with jiwer. Marked: substitutions, deletions (reference word missing) and "
                          "insertions.")]))
        if shown:
            ex.add(Examples(shown))
        sec.children.append(ex)
    return sec


def speaker_result(run: Run, res: Result, ids: Ids) -> Section:
    d = res.data
    sec = Section(ids("run", run.name, res.name), f"{res.name} ({d.get('num_utterances', '?')} utterances, "
                                                  f"{d.get('num_speakers', '?')} speakers)")
    rows = []
    for label, v in (("cosine", d), ("AS-Norm", d.get("asnorm"))):
        if isinstance(v, dict) and "eer" in v:
            rows.append([label, pct(v.get("eer")), ci(v.get("eer_ci95")), num(v.get("min_dcf")),
                         num(v.get("eer_threshold")), f"{num(d.get('num_trials'))} ({num(d.get('num_target_trials'))}"
                                                      " target)"])
    sec.add(Table(["score", "EER", "EER 95% CI", f"minDCF (p_target {d.get('p_target', 0.01)})", "EER threshold",
                   "trials"], rows, [False, True, True, True, True, True]))
    ident = d.get("identification") or {}
    sec.add(Table(["identification", "value"], [
        ["top-1 accuracy", pct(d.get("identification_accuracy"))],
        ["top-5 accuracy", pct(d.get("identification_top5_accuracy"))],
        ["enrolled speakers (utterances each)", f"{num(ident.get('num_enrolled_speakers'))} "
                                                f"({num(ident.get('enroll_per_speaker'))})"],
        ["test utterances", num(ident.get("num_tests"))],
        ["model", [Span(str(d.get("model", "-")), "code")]], ["manifest", [Span(str(d.get("manifest", "-")), "code")]],
    ], [False, True]))
    det = d.get("det") or {}
    if det.get("far") and det.get("frr"):
        curves = [("cosine", det["far"], det["frr"], d.get("eer"))]
        a = d.get("asnorm")
        if isinstance(a, dict) and (a.get("det") or {}).get("far"):
            curves.append(("AS-Norm", a["det"]["far"], a["det"]["frr"], a.get("eer")))
        sec.add(Figure(ids("fig", run.name, res.name, "det"), plots.det_curve(curves, f"{run.name}: {res.name}"),
                       alt=f"DET curve of {run.name} on {res.name}: false rejection over false acceptance rate, "
                           "probit axes",
                       caption=f"DET curve ({res.name}), normal-deviate axes; the dot marks the EER "
                               f"({pct(d.get('eer'))})."))
    h = d.get("score_histogram") or {}
    if h.get("bins") and h.get("target") is not None and h.get("nontarget") is not None:
        sec.add(Figure(ids("fig", run.name, res.name, "scores"),
                       plots.score_histogram(h["bins"], h["target"], h["nontarget"], d.get("eer_threshold"),
                                             f"{run.name}: {res.name}"),
                       alt=f"Histogram of target and non-target cosine scores of {run.name} on {res.name} with the "
                           "EER threshold",
                       caption=f"Cosine scores of target (same-speaker) and non-target trials ({res.name}), each as "
                               f"a fraction of its trials; dashed: the EER threshold {num(d.get('eer_threshold'))}."))
    per = d.get("per_speaker") or {}
    if per:
        items = list(per.items())
        rows = [[[Span(spk, "code")], num(v.get("enroll")), num(v.get("tests")), pct(v.get("accuracy"))]
                for spk, v in items[:MAX_SPEAKER_ROWS]]
        more = [Span(f"{len(items) - MAX_SPEAKER_ROWS} more speakers in {res.path.name}")] \
            if len(items) > MAX_SPEAKER_ROWS else ""
        sec.children.append(Section(ids(sec.id, "speakers"), "Identification per speaker").add(
            Table(["speaker", "enrolment utterances", "test utterances", "top-1 accuracy"], rows,
                  [False, True, True, True], note=more)))
    return sec


def probe_result(run: Run, res: Result, runs: list[Run], ids: Ids) -> Section:
    """Per-depth table and curve of a probe.json; the sweep's fine-tuned runs of that backbone drawn beside it."""
    d = res.data
    metric = str(d.get("metric", "eer"))
    layers = [row for row in d.get("layers") or [] if isinstance(row, dict)]
    sec = Section(ids("run", run.name, res.name), f"Layer probe ({d.get('probe')}, {d.get('backbone')})")
    sec.add(Para([Span(f"Whole backbone frozen; head per depth: {d.get('head', '-')}. Evaluated on "
                       f"{d.get('eval', '-')}. Rule: {d.get('rule', '-')}.")]))
    rec, best = d.get("recommended_freeze_depth"), d.get("best_depth")
    cols = [k for k in PROBE_COLUMNS if any(k in row for row in layers)]
    rows = [[str(row["depth"]) + (" (recommended)" if row["depth"] == rec else ""),
             *[pct(row.get(k)) if k in PROBE_RATES else num(row.get(k)) for k in cols]] for row in layers]
    sec.add(Table(["depth", *[PROBE_COLUMNS[k] for k in cols]], rows, [False, *[True] * len(cols)]))
    per_depth: dict[int, float] = {}  # the best plain bottom-k run of this backbone at each k
    for other in runs:
        if (other.task != PROBE_TASK.get(str(d.get("probe"))) or other.backbone != d.get("backbone")
                or not other.plain_adaptation):
            continue
        k = other.frozen_depth
        stem = ranking_stem([other])
        v = _value(other, stem, metric) if stem else None
        if k is not None and v is not None:
            per_depth[k] = min(v, per_depth.get(k, v))
    finetuned = sorted(per_depth.items())
    if layers and isinstance(rec, int) and isinstance(best, int):
        depths = [int(row["depth"]) for row in layers]
        sec.add(Figure(ids("fig", run.name, res.name, "probe"),
                       plots.probe_curve(depths, [float(row[metric]) for row in layers], metric, rec, best,
                                         finetuned, f"{d.get('backbone')}: {metric.upper()} per depth"),
                       alt=f"Probe {metric.upper()} over freeze depth for {d.get('backbone')}, recommended depth {rec}",
                       caption=f"Probe {metric.upper()} at each depth (frozen backbone) and the recommended freeze "
                               f"depth {rec}" + (f"; squares: the {metric.upper()} of this report's fine-tuned runs "
                                                 "with the bottom k layers frozen" if finetuned else "") + "."))
    return sec


def run_section(run: Run, ids: Ids, examples: int, top: int, runs: list[Run] | None = None) -> Section:
    kind = {"asr": "ASR", "speaker": "speaker", "probe": "probe"}[run.task]
    sec = Section(ids("run", run.name), f"{kind} run {run.name}: {run.freeze_short}")
    sec.add(run_info(run))
    for n in run.notes:
        sec.add(Para([Span(n)]))  # notes name files as found: data, not prose
    if run.log:
        tr = Section(ids("run", run.name, "training"), "Training curves")
        png = plots.training_curves(run.log, f"{run.name} ({run.freeze_short})")
        if png is not None:
            dev = "dev WER and CER" if run.task == "asr" else "dev EER"
            tr.add(Figure(ids("fig", run.name, "training"), png,
                          alt=f"Training loss and {dev} over steps for run {run.name}",
                          caption=f"Training loss (left) and {dev} at each evaluation (right) over steps, from "
                                  "train_log.jsonl."))
        sec.children.append(tr)
    if not run.results:
        sec.add(Para("No results files in this folder (run `speech-tl evaluate` to add test results)."))
    for res in run.results:
        if res.task == "probe":
            sec.children.append(probe_result(run, res, runs or [run], ids))
        else:
            sec.children.append(asr_result(run, res, ids, examples, top) if res.task == "asr"
                                else speaker_result(run, res, ids))
    return sec


def build_document(runs: list[Run], title: str = "speech-tl report", examples: int = 5, top: int = 10) -> Document:
    ids = Ids()
    ids.used.update({"contents", "overview"})
    sections = []
    for task in ("asr", "speaker"):
        group = [r for r in runs if r.task == task]
        if group:
            sections.append(comparison(group, task, ids))
    sections += [run_section(r, ids, examples, top, runs) for r in runs]
    overview = Table(["run", "task", "folder", "results files"],
                     [[[Span(r.name, "b")], r.task, [Span(str(r.path), "code")],
                       ", ".join(x.path.name for x in r.results) or "-"] for r in runs])
    intro = [Para(f"{len(runs)} run folder(s). Every number is read from the runs' summary.json, train_log.jsonl "
                  "and results files written by `speech-tl train` and `speech-tl evaluate`."), overview]
    return Document(title, intro, sections)
