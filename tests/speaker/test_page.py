"""The service's web page in headless Chromium with a fake microphone fed from WAV files of real voices.

One browser, its fake microphone playing voice A, enrolls "Anna" from the page; voice B is enrolled
through the API; a second browser, its microphone playing another recording of voice A, identifies it
and must show "Anna". The page is driven by Playwright on the system Chromium (no browser download).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.speaker.enroll_helpers import ENROLLED, voice_clips, voice_id  # noqa: F401  (fixtures)
from tests.speaker.server_helpers import running_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium not installed (make test installs it)")


def microphone_file(clips: list[Path], out: Path) -> Path:
    """The clips joined with short pauses, as the 16-bit WAV Chromium's fake microphone plays (looped)."""
    parts = []
    for c in clips:
        x, sr = sf.read(c, dtype="float32")
        parts += [x, np.zeros(sr // 4, np.float32)]
    sf.write(out, np.concatenate(parts), sr, subtype="PCM_16")
    return out


def record_and(browser_type, url: str, token: str, microphone: Path, profile: Path, action: str, speaker: str = "",
               screenshot: Path | None = None, check: tuple[str, ...] = ()) -> dict:
    """Open the page in a fresh Chromium whose microphone plays ``microphone``; record 3 s; click ``action``;
    return what the page shows."""
    browser = browser_type.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}", "--autoplay-policy=no-user-gesture-required"])
    try:
        page = browser.new_page(viewport={"width": 900, "height": 1100})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.fill("#token", token)
        page.dispatch_event("#token", "change")
        page.fill("#seconds", "3")
        if speaker:
            page.fill("#speaker", speaker)
        page.click("#record")
        # predicates as functions: the page's Content-Security-Policy forbids eval of strings, even Playwright's
        page.wait_for_function("() => document.getElementById('status').textContent.startsWith('recorded')",
                               timeout=30000)
        for box in check:
            page.check(box)
        page.click(f"#{action}")
        done = {"enroll": "enrolled", "identify": "identified", "verify": "accepted", "who": "found"}[action]
        page.wait_for_function(f"() => (s => s.startsWith('{done}') || s.startsWith('rejected') || "
                               "document.getElementById('status').className === 'error')"
                               "(document.getElementById('status').textContent)", timeout=60000)
        status = page.text_content("#status")
        page.click("#refresh")
        page.wait_for_function("() => document.getElementById('status').textContent === 'speakers loaded'",
                               timeout=30000)
        shown = {"status": status, "speaker": page.text_content("#result-speaker"),
                 "score": page.text_content("#result-score"), "threshold": page.text_content("#result-threshold"),
                 "enrolled": page.eval_on_selector_all("#speakers td.speaker",
                                                       "cells => cells.map(c => c.textContent)"),
                 "segments": page.eval_on_selector_all("#segments tbody tr",
                                                       "rows => rows.map(r => r.children[2].textContent)"),
                 "segments_info": page.text_content("#segments-info"), "errors": errors}
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=True)
        return shown
    finally:
        browser.close()


def test_the_page_enrolls_from_the_microphone_and_identifies_the_right_person(tmp_path, voice_clips):  # noqa: F811
    from playwright.sync_api import sync_playwright

    a, b = voice_id(ENROLLED[0]), voice_id(ENROLLED[1])
    first = microphone_file(voice_clips[a][:2], tmp_path / "anna-1.wav")
    second = microphone_file(voice_clips[a][2:4], tmp_path / "anna-2.wav")
    keep = Path(os.environ.get("SPEECH_TL_ARTIFACTS") or tmp_path)
    keep.mkdir(parents=True, exist_ok=True)
    with running_server(tmp_path / "serve") as server, sync_playwright() as pw:
        shown = record_and(pw.chromium, server.url, server.token, first, tmp_path / "p1", "enroll", "Anna")
        assert shown["status"].startswith("enrolled Anna: 1 clip(s)"), shown
        assert shown["enrolled"] == ["Anna"] and shown["errors"] == [], shown
        r = httpx.post(f"{server.url}/api/enroll", data={"speaker": "Bert"}, headers=server.auth(), timeout=120,
                       files=[("audio", (p.name, p.read_bytes(), "audio/wav")) for p in voice_clips[b][:2]])
        assert r.status_code == 200, r.text

        shown = record_and(pw.chromium, server.url, server.token, second, tmp_path / "p2", "identify",
                           screenshot=keep / "serve-page.png")
        assert shown["status"] == "identified" and shown["errors"] == [], shown
        assert shown["speaker"] == "Anna", shown
        assert float(shown["score"]) > float(shown["threshold"]), shown
        assert shown["enrolled"] == ["Anna", "Bert"]
        # the page's recording reached the service: the service identifies it as the page says
        listed = httpx.get(f"{server.url}/api/speakers", headers=server.auth()).json()
        assert [(s["speaker"], s["clips"]) for s in listed["speakers"]] == [("Anna", 1), ("Bert", 2)]

        # who spoke when, closed set (only enrolled people speak): every stretch of Anna's recording is Anna
        shown = record_and(pw.chromium, server.url, server.token, second, tmp_path / "p3", "who",
                           check=("#closed-set",))
        assert shown["status"].startswith("found") and shown["errors"] == [], shown
        assert shown["segments"] and set(shown["segments"]) == {"Anna"}, shown
        assert "closed set: every voice gets its best enrolled match" in shown["segments_info"], shown
