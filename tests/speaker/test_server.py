"""`speech-tl serve` over a real socket: a real process, the real GE2E model, real voices, httpx as the client."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.speaker.enroll_helpers import (  # noqa: F401  (fixtures)
    ENROLLED,
    STRANGER,
    voice_clips,
    voice_id,
    write_bad_clips,
)
from tests.speaker.server_helpers import REPO, running_server

MAX_SECONDS = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("serve"), "--max-upload-mb", "1", "--max-seconds",
                        str(MAX_SECONDS)) as s:
        yield s


def files(*paths: Path, field: str = "audio") -> list:
    return [(field, (p.name, p.read_bytes(), "audio/wav")) for p in paths]


def post(server, path: str, data=None, paths=(), token=None, **kw) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", data=data, files=files(*paths) if paths else None,
                      headers=server.auth(token), timeout=120, **kw)


def test_every_api_call_needs_the_token_and_reads_cannot_write(server, voice_clips):  # noqa: F811
    clip = voice_clips[voice_id(ENROLLED[0])][0]
    assert httpx.get(f"{server.url}/api/health").json()["auth"] is True
    for method, path, kw in (("GET", "/api/speakers", {}), ("POST", "/api/identify", {"files": files(clip)}),
                             ("POST", "/api/enroll", {"data": {"speaker": "x"}, "files": files(clip)}),
                             ("DELETE", "/api/speakers/x", {})):
        for headers in ({}, {"Authorization": "Bearer not-the-token-at-all"}, {"Authorization": server.token}):
            r = httpx.request(method, f"{server.url}{path}", headers=headers, **kw)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer" and "token" in r.json()["error"]
    # refused before the body is read: a huge declared body without a token gets 401, not 413
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=30) as conn:
        conn.sendall(b"POST /api/enroll HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x"
                     b"\r\nContent-Length: 10737418240\r\n\r\n")
        assert conn.recv(4096).startswith(b"HTTP/1.1 401 ")
    # the read token reads, and is refused (403) on every change
    assert httpx.get(f"{server.url}/api/speakers", headers=server.auth(server.read_token)).status_code == 200
    r = post(server, "/api/enroll", {"speaker": "x"}, [clip], token=server.read_token)
    assert r.status_code == 403 and "may only read" in r.json()["error"]
    r = httpx.delete(f"{server.url}/api/speakers/x", headers=server.auth(server.read_token))
    assert r.status_code == 403


def test_enroll_identify_verify_segments_rename_remove(server, voice_clips, tmp_path):  # noqa: F811
    a, b = voice_id(ENROLLED[0]), voice_id(ENROLLED[1])
    r = post(server, "/api/enroll", {"speaker": " Anna "}, voice_clips[a][:2])
    assert r.status_code == 200, r.text
    assert r.json() == {"speaker": "Anna", "created": True, "added": 2, "n_clips": 2}
    assert post(server, "/api/enroll", {"speaker": "Bert"}, voice_clips[b][:2]).status_code == 200
    # the same clip again: a conflict, nothing added
    r = post(server, "/api/enroll", {"speaker": "Anna"}, voice_clips[a][:1])
    assert r.status_code == 409 and "already enrolled" in r.json()["error"]

    r = post(server, "/api/identify", {"top": "2"}, voice_clips[a][3:4], token=server.read_token)
    got = r.json()
    assert r.status_code == 200 and set(got) == {"speaker", "score", "threshold", "candidates"}, got
    assert got["speaker"] == "Anna" and [c["speaker"] for c in got["candidates"]] == ["Anna", "Bert"]
    assert got["score"] == got["candidates"][0]["score"] > got["threshold"] > got["candidates"][1]["score"]
    r = post(server, "/api/verify", {"speaker": "Bert"}, voice_clips[a][3:4], token=server.read_token)
    assert r.json() == {"speaker": "Bert", "accepted": False, "score": pytest.approx(got["candidates"][1]["score"],
                                                                                       abs=1e-5),
                        "threshold": got["threshold"]}

    # who spoke when: Anna, a pause, Bert
    wa, sr = sf.read(voice_clips[a][2], dtype="float32")
    wb, _ = sf.read(voice_clips[b][2], dtype="float32")
    mix = tmp_path / "mix.wav"
    sf.write(mix, np.concatenate([wa, np.zeros(sr // 2, np.float32), wb]), sr)
    r = post(server, "/api/identify", {"segments": "true"}, [mix])
    segs = r.json()["segments"]
    assert [s["speaker"] for s in segs] == ["Anna", "Bert"], segs
    assert abs(segs[1]["start"] - len(wa) / sr) < 0.6
    assert r.json()["open_set"] is True and r.json()["threshold_origin"] in ("shipped", "enrolled", "user")
    # closed set names every voice; a min_score no voice reaches names none
    r = post(server, "/api/identify", {"segments": "true", "open_set": "false", "min_score": "0.999"}, [mix])
    assert r.json()["open_set"] is False and [s["speaker"] for s in r.json()["segments"]] == ["Anna", "Bert"]
    r = post(server, "/api/identify", {"segments": "true", "min_score": "0.999"}, [mix])
    assert r.json()["threshold"] == 0.999 and {s["speaker"] for s in r.json()["segments"]} == {"unknown"}

    r = httpx.post(f"{server.url}/api/speakers/Bert/rename", data={"new": "Bertha/B"}, headers=server.auth())
    assert r.json() == {"speaker": "Bertha/B", "was": "Bert"}
    r = httpx.delete(f"{server.url}/api/speakers/Bertha%2FB", headers=server.auth())  # a name with a slash
    assert r.json() == {"speaker": "Bertha/B", "removed_clips": 2}
    r = httpx.delete(f"{server.url}/api/speakers/Bertha%2FB", headers=server.auth())
    assert r.status_code == 404 and "no speaker 'Bertha/B'" in r.json()["error"]
    # the threshold from an uploaded evaluation, named as uploaded (not by a temporary file)
    r = httpx.post(f"{server.url}/api/calibrate", headers=server.auth(), timeout=60,
                   files=[("results", ("eval.json", b'{"eer_threshold": 0.61, "eer": 0.1}', "application/json"))])
    assert r.status_code == 200 and r.json()["threshold"] == 0.61, r.text
    listed = httpx.get(f"{server.url}/api/speakers", headers=server.auth()).json()
    assert listed["threshold_provenance"] == "EER threshold of upload:eval.json (EER 0.1000)"
    r = httpx.post(f"{server.url}/api/calibrate", headers=server.auth(), files=[("results", ("x.json", b"{", "a/b"))])
    assert r.status_code == 400 and "upload:x.json: not a readable JSON file" in r.json()["error"]
    listed = httpx.get(f"{server.url}/api/speakers", headers=server.auth()).json()
    assert [(s["speaker"], s["clips"]) for s in listed["speakers"]] == [("Anna", 2)]


def test_bad_requests_get_json_errors_with_the_right_status(server, voice_clips, tmp_path):  # noqa: F811
    bad = write_bad_clips(tmp_path / "bad")
    for kind, status, words in (("silent", 422, "silence"), ("clipped", 422, "clipped"),
                                ("unreadable", 422, "unreadable")):
        r = post(server, "/api/identify", None, [bad[kind]])
        assert r.status_code == status and words in r.json()["error"], (kind, r.text)
        assert r.json()["error"].startswith(f"{bad[kind].name}: ")  # named as uploaded, not by a temporary file
    # a clip longer than --max-seconds, refused from its header
    long = tmp_path / "long.wav"
    sf.write(long, np.zeros(16000 * (MAX_SECONDS + 5), np.int16), 16000, subtype="PCM_16")
    r = post(server, "/api/identify", None, [long])
    assert r.status_code == 413 and f"limit of {MAX_SECONDS} s" in r.json()["error"], r.text
    # a body over --max-upload-mb: 413 before it is read (declared length) and while it streams (chunked)
    big = tmp_path / "big.wav"
    big.write_bytes(b"\0" * (2 << 20))
    r = post(server, "/api/identify", None, [big])
    assert r.status_code == 413 and "larger than the limit" in r.json()["error"]

    def chunks():  # a well-formed multipart upload of 4 MB, sent without a Content-Length
        yield (b'--x\r\nContent-Disposition: form-data; name="audio"; filename="big.wav"\r\n'
               b"Content-Type: audio/wav\r\n\r\n")
        for _ in range(64):
            yield b"\1" * 65536
        yield b"\r\n--x--\r\n"

    r = httpx.post(f"{server.url}/api/identify", content=chunks(), timeout=60,
                   headers={**server.auth(), "content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413
    # missing fields, unknown speaker, a wrong option value
    r = post(server, "/api/enroll", {"speaker": "x"})
    assert r.status_code == 422 and "audio" in r.json()["error"]
    r = post(server, "/api/verify", {"speaker": "nobody"}, voice_clips[voice_id(STRANGER)][:1])
    assert r.status_code in (404, 400) and "nobody" in r.json()["error"]
    r = post(server, "/api/identify", {"top": "0"}, voice_clips[voice_id(STRANGER)][:1])
    assert r.status_code == 422 and "top" in r.json()["error"]
    # the service is still there
    assert httpx.get(f"{server.url}/api/health").status_code == 200


def test_parallel_clients_enroll_and_identify_and_the_database_stays_whole(server, voice_clips):  # noqa: F811
    voices = [voice_id(s) for s in ENROLLED]

    def client(k: int) -> list[str]:
        problems = []
        with httpx.Client(base_url=server.url, headers=server.auth(), timeout=120) as c:
            name = f"client{k}"
            for i, clip in enumerate(voice_clips[voices[k % 3]][:3]):
                r = c.post("/api/enroll", data={"speaker": name},
                           files=[("audio", (f"{k}-{i}.wav", clip.read_bytes(), "audio/wav"))])
                if r.status_code != 200 or r.json()["n_clips"] != i + 1:
                    problems.append(f"enroll {name} {i}: {r.status_code} {r.text}")
                r = c.post("/api/identify", files=files(voice_clips[voices[k % 3]][3]))
                if r.status_code != 200 or "candidates" not in r.json():
                    problems.append(f"identify {name}: {r.status_code} {r.text}")
        return problems

    with ThreadPoolExecutor(4) as pool:
        problems = [p for ps in pool.map(client, range(4)) for p in ps]
    assert problems == []
    listed = httpx.get(f"{server.url}/api/speakers", headers=server.auth()).json()
    clients = {s["speaker"]: s["clips"] for s in listed["speakers"] if s["speaker"].startswith("client")}
    assert clients == {f"client{k}": 3 for k in range(4)}
    with sqlite3.connect(f"{server.db.resolve().as_uri()}?mode=ro", uri=True) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = con.execute("SELECT s.name, count(e.id) FROM speakers s JOIN embeddings e ON e.speaker_id = s.id "
                           "WHERE s.name LIKE 'client%' GROUP BY s.id").fetchall()
    con.close()
    assert dict(rows) == clients


def test_without_a_token_only_the_page_on_loopback_is_answered(tmp_path, voice_clips):  # noqa: F811
    """--no-auth: calls need the page's header and a loopback Host, so other sites in a browser (simple cross-site
    requests, DNS rebinding) cannot drive the service."""
    with running_server(tmp_path / "open", auth=False) as s:
        assert httpx.get(f"{s.url}/api/health").json()["auth"] is False
        page = {"X-Speech-TL-Client": "page"}
        assert httpx.get(f"{s.url}/api/speakers", headers=page).status_code == 200
        r = httpx.get(f"{s.url}/api/speakers")  # what a cross-site form or no-cors fetch could send
        assert r.status_code == 403 and "X-Speech-TL-Client header" in r.json()["error"]
        r = httpx.get(f"{s.url}/api/speakers", headers={**page, "Host": "attacker.example:8000"})  # rebinding
        assert r.status_code == 403


def serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "speech_tl.cli", "serve", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})


def test_serve_refuses_to_start_without_a_token_or_with_no_auth_on_a_public_address(tmp_path):
    r = serve("--db", str(tmp_path / "s.db"))
    assert r.returncode == 1 and "no access token" in r.stderr, r.stderr
    r = serve("--db", str(tmp_path / "s.db"), "--no-auth", "--host", "0.0.0.0")
    assert r.returncode == 1 and "--no-auth only on a loopback host" in r.stderr, r.stderr
    (tmp_path / "short").write_text("abc\n")
    r = serve("--db", str(tmp_path / "s.db"), "--token-file", str(tmp_path / "short"))
    assert r.returncode == 1 and "at least 16 characters" in r.stderr, r.stderr
    assert not (tmp_path / "s.db").exists()
