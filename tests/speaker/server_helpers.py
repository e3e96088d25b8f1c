"""A real `speech-tl serve` process on a free port, for the HTTP and web page tests."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    url: str
    db: Path
    token: str
    read_token: str
    log: Path

    def auth(self, token: str | None = None) -> dict:
        return {"Authorization": f"Bearer {token or self.token}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(folder: Path, *extra: str, db: Path | None = None, auth: bool = True):
    """Start ``speech-tl serve`` with a write and a read token in ``folder`` (``auth=False``: ``--no-auth``);
    yield a :class:`Server` once it answers; stop it (SIGTERM, then SIGKILL) afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    token, read = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    (folder / "token").write_text(token + "\n")
    (folder / "read-token").write_text(read + "\n")
    db = db or folder / "speakers.db"
    port = free_port()
    log = folder / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("SPEECH_TL_TOKEN", None)
    with open(log, "w") as out:
        access = ["--token-file", str(folder / "token"), "--read-token-file", str(folder / "read-token")] if auth \
            else ["--no-auth"]
        proc = subprocess.Popen([sys.executable, "-m", "speech_tl.cli", "serve", "--db", str(db), "--port", str(port),
                                 *access, *extra], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    server = Server(f"http://127.0.0.1:{port}", db, token, read, log)
    try:
        import httpx

        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"speech-tl serve ended with {proc.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{server.url}/api/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"speech-tl serve did not answer in 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
