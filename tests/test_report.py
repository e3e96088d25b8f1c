"""``speech-tl report``: built from small real runs (a tiny ASR model trained and evaluated here, a speaker
evaluation of resemblyzer on real speech), checked as parsed HTML, as Markdown, and rendered by Chromium.

The Chromium screenshot is kept as an artefact: under ``$SPEECH_TL_ARTIFACTS`` (``report.png``) when that is
set, else in the test's tmp_path. The Chromium tests are skipped when /usr/bin/chromium is missing
(``make test`` installs it).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from speech_tl.asr.evaluate import evaluate_asr
from speech_tl.asr.task import train_asr
from speech_tl.cli import main
from speech_tl.report import write_report
from speech_tl.report.render import md_text
from tests.overwrite_check import refused_unless_overwrite
from tests.tiny_asr import asr_config

FSDD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fsdd" / "recordings"
CHROMIUM = "/usr/bin/chromium"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def quiet(*_a, **_k):
    pass


def _speaker_manifest(folder: Path) -> Path | None:
    """3 speakers x 3 clips of real speech (FSDD), or else of three espeak-ng voices; None when neither exists."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    if FSDD.is_dir():
        speakers = sorted({p.name.split("_")[1] for p in FSDD.glob("*.wav")})[:3]
        for s in speakers:
            for d in range(3):
                path = FSDD / f"{d}_{s}_0.wav"
                rows.append({"id": f"{s}-{d}", "audio": str(path), "duration": sf.info(str(path)).duration,
                             "text": str(d), "speaker": s, "language": "en"})
    else:
        from speech_tl.prepare.tts import ToolMissing, Voice, require_voice, synthesize

        voices = [Voice("espeak", n, "en") for n in ("en+m3", "en+f2", "en+m7")]
        try:
            for v in voices:
                require_voice(v)
        except ToolMissing:
            return None
        texts = ["The train is late today.", "We meet at the station.", "Please close the door."]
        for v in voices:
            for k, text in enumerate(texts):
                wave, sr = synthesize(v, text)
                path = folder / f"{v.id}-{k}.wav"
                sf.write(path, wave, sr)
                rows.append({"id": f"{v.id}-{k}", "audio": str(path), "duration": len(wave) / sr, "text": text,
                             "speaker": v.id, "language": "en"})
    manifest = folder / "speakers.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return manifest


@pytest.fixture(scope="module")
def runs(tone_corpus, tiny_whisper, tmp_path_factory):
    """Two tiny ASR training runs (bottom 1 of 2 layers frozen; all trainable), each evaluated on the dev
    manifest into test.json, and an evaluation-only speaker folder (baseline/test.json) when audio exists."""
    root = tmp_path_factory.mktemp("report_runs")
    dirs = {}
    for name, freeze in (("bottom1", {"mode": "bottom", "bottom_layers": 1}), ("full", {"mode": "full",
                                                                                       "bottom_layers": 0})):
        cfg = asr_config(tone_corpus, tiny_whisper, root / name, max_steps=6, eval_every=3, log_every=2,
                         checkpoint_every=6)
        cfg.freeze.mode, cfg.freeze.bottom_layers = freeze["mode"], freeze["bottom_layers"]
        train_asr(cfg, log=quiet)
        evaluate_asr(root / name, tone_corpus / "dev.jsonl", root / name / "test.json", beam=0, device="cpu")
        dirs[name] = root / name
    # the dev set's telephone twin (real G.711 calls, `prepare channel`): its results carry per-channel rates
    from speech_tl.prepare.channel_twin import prepare_channel_twin

    prepare_channel_twin(tone_corpus / "dev.jsonl", root / "twin" / "dev_phone.jsonl", seed=0, codec="mulaw",
                         workers=1)
    evaluate_asr(root / "full", root / "twin" / "dev_phone.jsonl", root / "full" / "phone.json", beam=0,
                 device="cpu")
    from speech_tl.probe.asr import probe_asr

    probe_asr(tiny_whisper, tone_corpus / "train.jsonl", root / "probe" / "probe.json",
              eval_manifest=tone_corpus / "dev.jsonl", steps=30, log=quiet)
    dirs["probe"] = root / "probe"
    manifest = _speaker_manifest(root / "speaker_audio")
    if manifest is not None:
        from speech_tl.speaker.evaluate import evaluate_speaker

        (root / "baseline").mkdir()
        evaluate_speaker("ge2e:resemblyzer", manifest, root / "baseline" / "test.json", enroll_per_speaker=2)
        dirs["baseline"] = root / "baseline"
    return dirs


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    info = write_report(list(runs.values()), out)
    return out, info


class Page(HTMLParser):
    """Sections, figures (with their img and figcaption), every img and every src/href of an HTML page."""

    def __init__(self):
        super().__init__()
        self.sections: list[dict] = []
        self.ids: set[str] = set()
        self.figures: list[dict] = []
        self.imgs: list[dict] = []
        self.links: list[str] = []
        self.tags: list[str] = []
        self.token_classes: list[str] = []
        self._fig: dict | None = None
        self._in_caption = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if "id" in a:
            self.ids.add(a["id"])
        for key in ("src", "href"):
            if a.get(key) is not None:
                self.links.append(a[key])
        if tag == "section":
            self.sections.append(a)
        elif tag == "figure":
            self._fig = {"id": a.get("id"), "imgs": [], "caption": ""}
            self.figures.append(self._fig)
        elif tag == "img":
            self.imgs.append(a)
            if self._fig is not None:
                self._fig["imgs"].append(a)
        elif tag == "figcaption":
            self._in_caption = True
        elif tag == "span" and "tok" in (a.get("class") or "").split():
            self.token_classes.append(a["class"].split()[1])

    def handle_endtag(self, tag):
        if tag == "figure":
            self._fig = None
        elif tag == "figcaption":
            self._in_caption = False

    def handle_data(self, data):
        if self._in_caption and self._fig is not None:
            self._fig["caption"] += data


def parse(text: str) -> Page:
    p = Page()
    p.feed(text)
    p.close()
    return p


def expected_ids(runs: dict) -> tuple[set[str], set[str]]:
    """Section ids and figure ids the report must have for the runs of the fixture."""
    sections = {"overview", "contents", "comparison-asr", "run-bottom1", "run-bottom1-training", "run-bottom1-test",
                "run-bottom1-test-speakers", "run-bottom1-test-confusions", "run-bottom1-test-examples", "run-full",
                "run-full-training", "run-full-test", "run-full-test-speakers", "run-full-test-confusions",
                "run-full-test-examples", "run-full-phone", "run-full-phone-channels"}
    figures = {"fig-comparison-asr", "fig-bottom1-training", "fig-full-training"}
    sections |= {"run-probe", "run-probe-probe"}
    figures |= {"fig-probe-probe-probe"}
    if "baseline" in runs:
        sections |= {"comparison-speaker", "run-baseline", "run-baseline-test", "run-baseline-test-speakers"}
        figures |= {"fig-comparison-speaker", "fig-baseline-test-det", "fig-baseline-test-scores"}
    return sections, figures


def test_probe_curve_shows_the_sweep_beside_the_probe(runs, report):
    import json

    from speech_tl.report.build import build_document
    from speech_tl.report.collect import collect_runs

    probe = json.loads((runs["probe"] / "probe.json").read_text())
    text = report[0].read_text(encoding="utf-8")
    assert f"{probe['recommended_freeze_depth']} (recommended)" in text
    assert "Layer probe (asr" in text and "squares: the CER of this report" in text
    collected = collect_runs(list(runs.values()))
    assert {r.name: r.frozen_depth for r in collected if r.task == "asr"} == {"bottom1": 1, "full": 0}
    alone = build_document(collect_runs([runs["probe"]]))  # without the sweep: the curve alone
    captions = [f.caption for f in alone.figures()]
    assert len(captions) == 1 and captions[0].startswith("Probe CER") and "squares" not in captions[0]


def check_png(data: bytes) -> tuple[int, int]:
    from matplotlib.image import imread
    from PIL import Image

    assert data[:8] == PNG_SIGNATURE
    with Image.open(io.BytesIO(data)) as im:
        im.verify()
    with Image.open(io.BytesIO(data)) as im:
        size = im.size
    arr = imread(io.BytesIO(data), format="png")
    assert arr.shape[:2] == (size[1], size[0]) and arr.std() > 0.01  # a drawn figure, not a flat image
    return size


def data_png(src: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:60]
    return base64.b64decode(src[len(prefix):], validate=True)


# --------------------------------------------------------------------------- the HTML, parsed

def test_html_sections_figures_and_embedded_pngs(runs, report):
    out, info = report
    text = out.read_text(encoding="utf-8")
    page = parse(text)
    want_sections, want_figures = expected_ids(runs)
    section_ids = {s.get("id") for s in page.sections} | ({"contents"} if "contents" in page.ids else set())
    assert all(s.get("id") for s in page.sections), "every <section> has an id"
    assert want_sections <= section_ids, sorted(want_sections - section_ids)
    assert want_figures <= {f["id"] for f in page.figures}, sorted(want_figures - {f["id"] for f in page.figures})
    assert info["figures"] == len(page.figures) == len(page.imgs)
    for f in page.figures:
        assert len(f["imgs"]) == 1 and f["imgs"][0].get("alt", "").strip(), f["id"]
        assert f["caption"].strip().startswith("Figure"), f["id"]
        check_png(data_png(f["imgs"][0]["src"]))
    # self-contained: no external URL anywhere, no scripts, stylesheets or fonts to fetch
    assert not [u for u in page.links if u.lower().startswith(("http:", "https:", "//"))]
    assert all(u.startswith("#") or u.startswith("data:image/png;base64,") for u in page.links), page.links
    assert {u[1:] for u in page.links if u.startswith("#")} <= page.ids  # internal links resolve
    assert not {"script", "link", "iframe", "object"} & set(page.tags)
    assert "http://" not in text and "https://" not in text and "@import" not in text and "url(" not in text


def test_html_holds_the_numbers_of_the_results(runs, report):
    out, _ = report
    text = out.read_text(encoding="utf-8")
    page = parse(text)
    asr = {n: json.loads((runs[n] / "test.json").read_text()) for n in ("bottom1", "full")}
    summaries = {n: json.loads((runs[n] / "summary.json").read_text()) for n in ("bottom1", "full")}
    for n, r in asr.items():
        assert f"{100 * r['wer']:.2f} % [{100 * r['wer_ci95'][0]:.2f}, {100 * r['wer_ci95'][1]:.2f}]" in text
        assert f"{100 * r['cer']:.2f} %" in text
        assert f"{summaries[n]['trainable_parameters']:,}" in text  # the cost column
        assert summaries[n]["freeze"].split(";")[0].removeprefix("freeze ") in text  # named by freeze policy
    assert summaries["bottom1"]["trainable_parameters"] < summaries["full"]["trainable_parameters"]
    # the best run (lowest WER, then CER) is marked in the comparison table
    best = min(("bottom1", "full"), key=lambda n: (asr[n]["wer"], asr[n]["cer"], n != "bottom1"))
    comparison = text.split('id="comparison-asr"')[1].split("</section>")[0]
    assert f"<strong>{best}</strong><span class=\"best\"> ★ best</span>" in comparison
    assert comparison.count("★ best") == 1
    # aligned examples: errors are marked with span classes
    hyps = [json.loads(x) for n in ("bottom1", "full")
            for x in (runs[n] / "test.hypotheses.jsonl").read_text().splitlines()]
    if any(h["ref"].split() != h["hyp"].split() for h in hyps):
        assert {"sub", "del", "ins"} & set(page.token_classes)
    # the telephone twin's results: a table of rates per channel condition, the numbers of phone.json
    phone = json.loads((runs["full"] / "phone.json").read_text())
    channels = text.split('id="run-full-phone-channels"')[1].split("</section>")[0]
    mulaw = phone["per_channel"]["codec"]["mulaw"]
    assert mulaw["utterances"] == phone["num_utterances"]  # every call of the twin went through G.711 mu-law
    assert "<code>mulaw</code>" in channels and f"{100 * mulaw['cer']:.2f} %" in channels
    assert set(phone["per_channel"]) <= {"noise", "snr", "codec", "impairment"}
    if "baseline" in runs:
        s = json.loads((runs["baseline"] / "test.json").read_text())
        assert f"{100 * s['eer']:.2f} %" in text and f"{s['min_dcf']:.4f}" in text
        assert f"{100 * s['identification_accuracy']:.2f} %" in text
        assert "not adapted" in text


def test_markdown_has_the_same_tables_and_linked_pngs(runs, report):
    out, info = report
    md = out.with_suffix(".md").read_text(encoding="utf-8")
    files = out.with_name(out.stem + "_files")
    want_sections, want_figures = expected_ids(runs)
    for sid in want_sections - {"contents"}:
        assert f'<a id="{sid}"></a>' in md, sid
    links = [line.split("](", 1)[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]
    assert len(links) == info["figures"] and {Path(x).stem for x in links} >= want_figures
    for link in links:
        assert link.startswith(f"{files.name}/")
        check_png((out.parent / link).read_bytes())
    html_page = out.read_text(encoding="utf-8")
    for header in ("train min", "trainable params", "test: WER [95% CI]", "speaker", "utterances"):
        assert md_text(header) in md and header in html_page  # brackets escaped: no link syntax from the data
    assert "~~" in md or "**" in md
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]  # atomic writes left nothing behind


# --------------------------------------------------------------------------- rendered by Chromium

def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                    reason=f"{CHROMIUM} not installed (make test installs the chromium package)")


@needs_chromium
def test_chromium_screenshot_is_not_blank(report, tmp_path):
    out, _ = report
    keep = Path(os.environ.get("SPEECH_TL_ARTIFACTS") or tmp_path)
    keep.mkdir(parents=True, exist_ok=True)
    shot = tmp_path / "report.png"
    res = _chromium([f"--screenshot={shot}", "--window-size=1280,4000", out.resolve().as_uri()], tmp_path)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    if keep != tmp_path:
        shutil.copy(shot, keep / "report.png")
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 4000)
        pixels = np.asarray(im.convert("L"), dtype=np.float32)
    assert pixels.std() > 10  # text, tables and figures, not a blank page
    top = pixels[:1000]
    assert (top < 128).mean() > 0.005 and (top > 200).mean() > 0.5  # dark ink on a light page


@needs_chromium
def test_chromium_dom_has_the_sections(runs, report, tmp_path):
    out, info = report
    res = _chromium(["--dump-dom", out.resolve().as_uri()], tmp_path)
    assert res.returncode == 0 and "<html" in res.stdout, res.stderr[-2000:]
    page = parse(res.stdout)
    want_sections, want_figures = expected_ids(runs)
    assert want_sections <= page.ids, sorted(want_sections - page.ids)
    assert want_figures <= {f["id"] for f in page.figures}
    assert len(page.imgs) == info["figures"] and all(i["src"].startswith("data:image/png;base64,")
                                                     for i in page.imgs)


# --------------------------------------------------------------------------- the command

def test_cli_report(runs, report, tmp_path):
    out = tmp_path / "cli" / "sweep.html"
    res = CliRunner().invoke(main, ["report", *map(str, runs.values()), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"{len(runs)} run(s)" in res.output and str(out) in res.output
    assert out.is_file() and (tmp_path / "cli" / "sweep.md").is_file()
    assert sorted(p.name for p in (tmp_path / "cli" / "sweep_files").iterdir()) == \
        sorted(p.name for p in report[0].with_name("report_files").iterdir())
    page = parse(out.read_text(encoding="utf-8"))
    assert expected_ids(runs)[0] <= page.ids
    # the same runs give the same page, figures included: nothing depends on the clock
    assert out.read_text(encoding="utf-8") == report[0].read_text(encoding="utf-8")

    empty = tmp_path / "empty"
    empty.mkdir()
    res = CliRunner().invoke(main, ["report", str(empty), "--out", str(tmp_path / "x.html")])
    assert res.exit_code == 1 and "no summary.json, train_log.jsonl or results" in res.output
    res = CliRunner().invoke(main, ["report", str(runs["full"]), "--out", str(tmp_path / "x.md")])
    assert res.exit_code == 1 and "*.html" in res.output
    assert not (tmp_path / "x.html").exists() and not (tmp_path / "x.md").exists()


def test_cli_report_refuses_to_replace_a_report_unless_overwrite(runs, report, tmp_path):
    out = tmp_path / "sweep.html"
    args = ["report", str(runs["full"]), "--out", str(out)]
    refused_unless_overwrite(args, [out, tmp_path / "sweep.md"], tmp_path)  # the Markdown beside it as well
    assert "<html" in out.read_text(encoding="utf-8").lower() and (tmp_path / "sweep.md").is_file()


def speaker_results(folder: Path, curves: bool = True, **changes) -> Path:
    """An evaluation folder holding ``test.json`` as `speech-tl evaluate speaker` writes it (its DET curve and score
    histogram with ``curves``), with ``changes`` applied."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {"task": "speaker", "model": "ge2e:resemblyzer", "manifest": "test.jsonl", "num_utterances": 12,
            "num_speakers": 3, "num_trials": 66, "num_target_trials": 12, "p_target": 0.01, "eer": 0.1,
            "eer_ci95": [0.05, 0.2], "eer_threshold": 0.6, "min_dcf": 0.4, "identification_accuracy": 0.8,
            "identification_top5_accuracy": 1.0, "asnorm": None,
            "identification": {"num_enrolled_speakers": 3, "enroll_per_speaker": 3, "num_tests": 3},
            "per_speaker": {"anna": {"enroll": 3, "tests": 1, "accuracy": 1.0}}}
    if curves:
        data |= {"det": {"far": [1.0, 0.5, 0.1, 0.0], "frr": [0.0, 0.05, 0.2, 1.0]},
                 "score_histogram": {"bins": [0.0, 0.5, 1.0], "target": [2, 10], "nontarget": [40, 14]}}
    (folder / "test.json").write_text(json.dumps(data | changes), encoding="utf-8")
    return folder


def test_cli_report_overwrite_leaves_only_the_new_figures(tmp_path):
    """--overwrite removes the figures of the earlier report that the new one does not draw; other files in the
    figures folder (even PNGs) stay."""
    out = tmp_path / "r.html"
    files = tmp_path / "r_files"
    res = CliRunner().invoke(main, ["report", str(speaker_results(tmp_path / "curves")), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in files.iterdir()) == ["fig-comparison-speaker.png", "fig-curves-test-det.png",
                                                       "fig-curves-test-scores.png"]
    (files / "mine.png").write_bytes(PNG_SIGNATURE)
    (files / "notes.txt").write_text("mine")
    plain = speaker_results(tmp_path / "plain", curves=False)
    res = CliRunner().invoke(main, ["report", str(plain), "--out", str(out), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in files.iterdir()) == ["fig-comparison-speaker.png", "mine.png", "notes.txt"]
    assert "r_files/fig-comparison-speaker.png" in (tmp_path / "r.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("change, key", [
    ({"per_speaker": ["anna", "bert"]}, "per_speaker"),
    ({"eer": "0.1"}, "eer"),
    ({"identification": {"num_tests": "three"}}, "identification.num_tests"),
    ({"det": {"far": [0.1, 0.0]}}, "det.frr"),
    ({"det": {"far": [0.1, 0.0], "frr": [0.5]}}, "det.far"),
    ({"asnorm": {"eer": 0.1, "eer_ci95": [0.1]}}, "asnorm.eer_ci95"),
    ({"train": "bottom 2"}, "train"),
    ({"train": {"freeze_state": {"mode": "bottom"}}}, "train.freeze_state.frozen_layers"),
])
def test_cli_report_names_the_file_and_key_of_a_malformed_results_file(tmp_path, change, key):
    folder = speaker_results(tmp_path / "run", **change)
    res = CliRunner().invoke(main, ["report", str(folder), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 1, res.output
    (line,) = res.output.strip().splitlines()
    assert line.startswith(f"error: {folder / 'test.json'}: key {key!r}: ") and "fix the file" in line, line
    assert not (tmp_path / "r.html").exists()


def test_cli_report_malformed_files_of_every_kind_are_one_error_line(tmp_path):
    """A results list, an ASR results file, its hypotheses, a probe and a summary, each malformed: one error line
    naming the file (and line) and the key, exit status 1, no traceback (a real process)."""
    cases = [
        ("test.json", [{"task": "asr", "wer": 0.2}], "test.json: a JSON list of results"),
        ("test.json", {"task": "asr", "wer": 0.2, "confusions": {"substitutions": [["a -> b"]]}},
         "test.json: key 'confusions.substitutions[0]'"),
        ("test.json", {"task": "asr", "wer": 0.2, "per_speaker": {"anna": {"wer": "high"}}},
         "test.json: key 'per_speaker.anna.wer'"),
        ("probe.json", {"task": "probe", "probe": "asr", "metric": "cer", "best_depth": 0, "layers": [{"cer": 0.5}]},
         "probe.json: key 'layers[0].depth'"),
        ("probe.json", {"task": "probe", "probe": "asr", "metric": "cer", "best_depth": 0, "layers": [{"depth": 0}]},
         "probe.json: key 'layers[0].cer'"),
        ("summary.json", {"steps": 10, "trainable_parameters": "many"}, "summary.json: key 'trainable_parameters'"),
        ("summary.json", {"steps": 10, "best_dev_wer": "0.3"}, "summary.json: key 'best_dev_wer'"),
    ]
    for k, (name, data, want) in enumerate(cases):
        folder = tmp_path / f"run{k}"
        folder.mkdir()
        (folder / name).write_text(json.dumps(data), encoding="utf-8")
        res = subprocess.run([sys.executable, "-m", "speech_tl.cli", "report", str(folder), "--out",
                              str(tmp_path / f"r{k}.html")], capture_output=True, text=True)
        assert res.returncode == 1 and res.stdout == "", res
        (line,) = res.stderr.strip().splitlines()
        assert line.startswith(f"error: {folder / want}"), line
    folder = tmp_path / "hyps"
    folder.mkdir()
    (folder / "test.json").write_text(json.dumps({"task": "asr", "wer": 0.5}), encoding="utf-8")
    (folder / "test.hypotheses.jsonl").write_text('{"id": "u1", "ref": "a b", "hyp": "a"}\n{"id": "u2", "ref": "c"}\n',
                                                  encoding="utf-8")
    res = subprocess.run([sys.executable, "-m", "speech_tl.cli", "report", str(folder), "--out",
                          str(tmp_path / "h.html")], capture_output=True, text=True)
    assert res.returncode == 1, res
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith(f"error: {folder / 'test.hypotheses.jsonl'}:2: key 'hyp': missing"), line


def test_evaluation_only_and_unfinished_folders(runs, tmp_path):
    """An ASR results file copied away from its run still names the freeze policy and the cost it was trained at;
    a run still training (config and log, no summary) is reported with its curves so far."""
    evaluated = tmp_path / "evaluated"
    evaluated.mkdir()
    for name in ("test.json", "test.hypotheses.jsonl"):
        shutil.copy(runs["bottom1"] / name, evaluated / name)
    training = tmp_path / "training"
    training.mkdir()
    for name in ("config.yaml", "train_log.jsonl"):
        shutil.copy(runs["full"] / name, training / name)
    out = tmp_path / "r.html"
    info = write_report([evaluated, training], out, examples=2, top=3)
    text = out.read_text(encoding="utf-8")
    page = parse(text)
    assert {"comparison-asr", "run-evaluated", "run-evaluated-test", "run-training", "run-training-training"} \
        <= page.ids
    assert {"fig-comparison-asr", "fig-training-training"} <= {f["id"] for f in page.figures}
    summary = json.loads((runs["bottom1"] / "summary.json").read_text())
    assert summary["freeze"].split(";")[0].removeprefix("freeze ") in text
    assert f"{summary['trainable_parameters']:,}" in text
    assert "full: bottom_layers=0 (config.yaml)" in text and "Training has not finished" in text
    assert info["figures"] == len(page.imgs) and "not adapted" not in text
