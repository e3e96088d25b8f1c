"""``speech-tl report`` on hostile input: markup, backticks, pipes, newlines, link syntax and entities in every
value a run folder can carry into the report.

The runs are real: a tiny ASR model is trained into a folder with a hostile name, from a backbone copied into a
hostile folder, and evaluated on a manifest (in a hostile folder) whose utterance ids and speaker names are hostile.
``speech-tl evaluate`` normalises reference and hypothesis texts (punctuation removed), so the hypotheses file and
the confusion lists are then rewritten with hostile words, as a file from another tool or an edit by hand holds
them. A second folder is a run still training whose config.yaml holds a hostile freeze mode, and a results file of
an unknown (hostile) task.

Checked: the HTML parsed (and, when /usr/bin/chromium exists, as Chromium builds its DOM) has no element, attribute
or URL the report did not write itself, and shows every hostile value as text; the Markdown twin keeps each table
row on one line with its cells, and, rendered by markdown-it (CommonMark with GFM tables, raw HTML on, as many
viewers do), has no injected element and shows every hostile value as text.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from speech_tl.asr.evaluate import evaluate_asr
from speech_tl.asr.task import train_asr
from speech_tl.report import write_report
from tests.test_report import _chromium, needs_chromium, quiet
from tests.tiny_asr import asr_config

PWNED = "pwned"  # what an injected script or handler below would write into document.title
HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "a``b",
    "`",
    "|",
    "line\nbreak",
    "[x](javascript:alert(1))",
    "&amp;",
    "Grüße, 東京 ✓ ü",
    "# heading",
    "- item",
    "1. one",
    "*em* _u_ ~~s~~ **b**",
    "back\\slash\\",
    "pipe\\|escaped",
    "<!-- comment -->",
    "``",
    " ` edge ` ",
    f"<img src=x onerror=\"document.title='{PWNED}'\">",
    f"<script>document.title='{PWNED}'</script>",
    "&#60;script&#62;",
    "<https://example.com/x>",
]
# a folder name holds no "/": the closing tags are spelt without it
RUN_NAME = "run <script>alert(1)<\\script> \"><svg onload=alert(1)> a``b | [x](javascript:alert(1)) &amp; é $x_{$"
MODEL_DIR = "model <img src=x onerror=alert(1)> `m`"
DATA_DIR = "data ``|`` <b>x"
RESULTS_STEM = "test `a``b` <i>x"
TRAINING_NAME = "# training - [y](javascript:alert(2))"
FREEZE_MODE = "`bottom` | <script>alert(3)<\\script>\nline two"
OTHER_TASK = "<script>alert(4)</script>"
TITLE = f"report <script>document.title='{PWNED}'</script> a``b | é"


def hostile_words() -> set[str]:
    return {w for s in HOSTILE for w in s.split()}


@pytest.fixture(scope="module")
def hostile_runs(tone_corpus, tiny_whisper, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    model = root / MODEL_DIR
    shutil.copytree(tiny_whisper.removeprefix("hf:"), model)
    run = root / RUN_NAME
    cfg = asr_config(tone_corpus, f"hf:{model}", run, max_steps=4, eval_every=2, log_every=2, checkpoint_every=4)
    train_asr(cfg, log=quiet)

    dev = [json.loads(x) for x in (tone_corpus / "dev.jsonl").read_text().splitlines()]
    rows = []
    for k, uid in enumerate(HOSTILE):
        row = dict(dev[k % len(dev)])
        row.update(id=uid, audio=str(tone_corpus / row["audio"]), speaker=HOSTILE[-1 - k])
        rows.append(row)
    (root / DATA_DIR).mkdir()
    manifest = root / DATA_DIR / "dev <i>.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    results = run / f"{RESULTS_STEM}.json"
    evaluate_asr(run, manifest, results, beam=0, device="cpu")

    hyp_path = run / f"{RESULTS_STEM}.hypotheses.jsonl"
    hyps = [json.loads(x) for x in hyp_path.read_text(encoding="utf-8").splitlines()]
    assert [h["id"] for h in hyps] == HOSTILE
    for k, h in enumerate(hyps):
        h["ref"] = f"{HOSTILE[k]} ok"
        h["hyp"] = f"ok {HOSTILE[(k + 1) % len(HOSTILE)]}"
    hyp_path.write_text("".join(json.dumps(h, ensure_ascii=False) + "\n" for h in hyps), encoding="utf-8")
    data = json.loads(results.read_text(encoding="utf-8"))
    data["confusions"] = {"substitutions": [[f"{a} -> {b}", 2] for a, b in zip(HOSTILE, HOSTILE[1:], strict=False)],
                          "deletions": [[w, 1] for w in HOSTILE], "insertions": [[w, 1] for w in HOSTILE]}
    results.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    training = root / TRAINING_NAME
    training.mkdir()
    shutil.copy(run / "train_log.jsonl", training / "train_log.jsonl")
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    config["freeze"]["mode"] = FREEZE_MODE
    (training / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    (training / "other.json").write_text(json.dumps({"task": OTHER_TASK}), encoding="utf-8")
    return {"run": run, "training": training, "model": model, "manifest": manifest}


@pytest.fixture(scope="module")
def hostile_report(hostile_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile_report") / "report.html"
    info = write_report([hostile_runs["run"], hostile_runs["training"]], out, title=TITLE,
                        examples=len(HOSTILE), top=len(HOSTILE))
    return out, info


def whole_values(runs: dict) -> list[str]:
    """Hostile values the report must show whole (each in one text node or table cell)."""
    return [*HOSTILE, RUN_NAME, TRAINING_NAME, RESULTS_STEM, f"hf:{runs['model']}", str(runs["manifest"]),
            FREEZE_MODE, TITLE, OTHER_TASK]


def flat(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------- HTML as parsed

def dump_dom(page: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """The DOM Chromium builds of ``page``; an ``alert()`` that ran would leave headless Chromium waiting on its
    dialog, so a timeout is reported as a script that ran."""
    try:
        return _chromium(["--dump-dom", page.resolve().as_uri()], tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail(f"Chromium did not finish loading {page.name}: an injected alert() holds it on a dialog")


class Dom(HTMLParser):
    """Every element with its attributes, the text (character references resolved) and the page title."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        self._in_title = tag == "title"

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_title:
            self.title += data

    def handle_comment(self, data):
        self.elements.append(("!--", {"data": data}))


def dom(text: str) -> Dom:
    d = Dom()
    d.feed(text)
    d.close()
    return d


REPORT_TAGS = {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "h4", "h5", "h6",
               "section", "nav", "ul", "li", "a", "main", "table", "thead", "tbody", "tr", "th", "td", "p", "code",
               "strong", "span", "div", "figure", "img", "figcaption"}
MARKDOWN_TAGS = {"h1", "h2", "h3", "h4", "h5", "h6", "p", "a", "ul", "li", "table", "thead", "tbody", "tr", "th",
                 "td", "code", "strong", "em", "s", "img"}


def no_injection(d: Dom, allowed: set[str], image_prefix: str) -> None:
    """Only the tags the writer emits; no event handler, no script URL, images only where the writer puts them."""
    tags = {t for t, _ in d.elements}
    assert tags <= allowed, sorted(tags - allowed)
    assert "script" not in tags and "!--" not in tags
    for tag, attrs in d.elements:
        assert not [a for a in attrs if a.lower().startswith("on")], (tag, attrs)
        for key in ("href", "src", "action", "formaction", "xlink:href"):
            v = (attrs.get(key) or "").strip().lower()
            assert "javascript:" not in v and not v.startswith(("http:", "https:", "//")), (tag, attrs)
        if tag == "a":
            assert set(attrs) <= {"id", "href"} and (attrs.get("href") or "#").startswith("#"), attrs
        if tag == "img":
            assert attrs.get("src", "").startswith(image_prefix), attrs


def shows_as_text(d: Dom, runs: dict) -> None:
    text = flat("".join(d.text))
    missing = [v for v in whole_values(runs) if flat(v) not in text]
    assert not missing, missing
    words = [w for w in hostile_words() if w not in text]
    assert not words, words


def test_html_has_no_injected_markup(hostile_runs, hostile_report):
    out, _ = hostile_report
    d = dom(out.read_text(encoding="utf-8"))
    no_injection(d, REPORT_TAGS, "data:image/png;base64,")
    assert d.title == TITLE
    shows_as_text(d, hostile_runs)


@needs_chromium
def test_chromium_builds_no_injected_element(hostile_runs, hostile_report, tmp_path):
    out, _ = hostile_report
    res = dump_dom(out, tmp_path)
    assert res.returncode == 0 and "<html" in res.stdout, res.stderr[-2000:]
    d = dom(res.stdout)
    no_injection(d, REPORT_TAGS | {"html"}, "data:image/png;base64,")
    assert d.title == TITLE  # an injected script that ran would have set it to "pwned"
    shows_as_text(d, hostile_runs)


# --------------------------------------------------------------------------- the Markdown twin

def table_blocks(md: str) -> list[list[str]]:
    """Each GFM table of ``md``: its lines, from the header row to the line before the blank line after it."""
    blocks, lines = [], md.split("\n")
    k = 0
    while k < len(lines):
        if lines[k].startswith("|") and k + 1 < len(lines) and lines[k + 1].startswith("|-"):
            end = k
            while end < len(lines) and lines[end].strip():
                end += 1
            blocks.append(lines[k:end])
            k = end
        k += 1
    return blocks


def cells(row: str) -> int:
    """Cells of a table row, read as GFM's cell scanner does: left to right, a backslash escapes the next
    character (``\\\\|`` is an escaped backslash and a cell boundary), every other pipe ends a cell. The row must
    start and end with a boundary."""
    inner = row.strip()
    assert inner.startswith("|"), row
    n, k, last = 0, 1, 0
    while k < len(inner):
        if inner[k] == "\\":
            k += 2
            continue
        if inner[k] == "|":
            n, last = n + 1, k
        k += 1
    assert last == len(inner) - 1, row
    return n


def test_markdown_tables_keep_their_rows_and_cells(hostile_report):
    out, _ = hostile_report
    md = out.with_suffix(".md").read_text(encoding="utf-8")
    blocks = table_blocks(md)
    assert len(blocks) >= 6
    for block in blocks:
        width = cells(block[0])
        for line in block:
            assert cells(line) == width, (block[0], line)
    examples = next(b for b in blocks if b[0].startswith("| utterance |"))
    assert len(examples) == 2 + len(HOSTILE), examples  # one line per utterance: newlines did not split a row


def rendered_markdown(md: str) -> str:
    markdown_it = pytest.importorskip("markdown_it")
    return markdown_it.MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(md)


def test_markdown_renders_no_injected_markup(hostile_runs, hostile_report):
    out, _ = hostile_report
    md = out.with_suffix(".md").read_text(encoding="utf-8")
    d = dom(rendered_markdown(md))
    no_injection(d, MARKDOWN_TAGS, out.stem + "_files/")
    shows_as_text(d, hostile_runs)


@pytest.mark.parametrize("value", [*HOSTILE, RUN_NAME, FREEZE_MODE, "$x$", "a\r\nb", "\\", "x]: y",
                                   "[x]: javascript:y", "    indented", "+ plus", "2) two", "===", "> quote"])
def test_markdown_helpers_render_each_value_as_written(value):
    """``md_text`` and ``md_code`` (in a paragraph and in a table cell) render to exactly the value."""
    from speech_tl.report.render import _m_paragraph, md_code, md_text

    want = " ".join(value.replace("\r\n", "\n").split("\n"))  # a line break shows as a space
    for md, in_code in ((_m_paragraph(md_text(value)), False), (md_code(value), True),
                        (f"| h |\n|---|\n| {md_code(value, in_table=True)} |", None),
                        (f"| h |\n|---|\n| {md_text(value).strip() or ' '} |", False)):
        d = dom(rendered_markdown(md))
        tags = {t for t, _ in d.elements}
        assert tags <= {"p", "code", "table", "thead", "tbody", "tr", "th", "td"}, (md, tags)
        text = "".join(d.text).replace("\n", "")
        if in_code is None:  # a code span, or escaped text where a code span cannot hold the value in a table
            in_code = "code" in tags
        got = text.removeprefix("h") if md.startswith("| h |") else text
        assert (got if in_code else got.strip()) == (want if in_code else want.strip()), (value, md, got)


@needs_chromium
def test_chromium_runs_nothing_from_the_rendered_markdown(hostile_report, tmp_path):
    """The Markdown as a viewer without a sanitiser shows it (no Content-Security-Policy): nothing runs."""
    out, _ = hostile_report
    page = tmp_path / "md.html"
    body = rendered_markdown(out.with_suffix(".md").read_text(encoding="utf-8"))
    page.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>md</title></head><body>{body}</body>"
                    "</html>", encoding="utf-8")
    res = dump_dom(page, tmp_path)
    assert res.returncode == 0 and "<html" in res.stdout, res.stderr[-2000:]
    d = dom(res.stdout)
    assert d.title == "md"  # an injected script or handler that ran would have set it to "pwned"
    no_injection(d, MARKDOWN_TAGS | {"html", "head", "meta", "title", "body"}, out.stem + "_files/")


# --------------------------------------------------------------------------- files that cannot be read

def test_unreadable_files_are_input_errors_naming_the_file(tmp_path):
    from speech_tl.errors import InputError
    from speech_tl.report.collect import collect_run

    bad = tmp_path / "bad <b>"
    bad.mkdir()
    (bad / "test.json").write_bytes(b'{"wer": 0.1, "note": "\xff"}')
    with pytest.raises(InputError, match=r"bad <b>/test\.json: not valid UTF-8 \(byte 0xff"):
        collect_run(bad)
    (bad / "test.json").write_text("{", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad <b>/test\.json: not valid JSON"):
        collect_run(bad)
    (bad / "test.json").unlink()
    (bad / "config.yaml").write_text("- a list\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad <b>/config\.yaml: expected a YAML mapping"):
        collect_run(bad)
    (bad / "config.yaml").unlink()
    with pytest.raises(InputError, match=r"bad <b>: no summary\.json"):
        collect_run(bad)
    with pytest.raises(InputError, match=r"report\.md: the report is written as HTML"):
        write_report([bad], tmp_path / "report.md")
