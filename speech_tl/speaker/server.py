"""``speech-tl serve``: the enrollment tool as an HTTP service with a web page, on FastAPI and uvicorn.

The model stays loaded (:class:`~speech_tl.speaker.service.SpeakerService`), so a request costs the
embedding, not the start of Python and torch. The JSON API gives the shapes the command line prints with
``--json``:

- ``POST /api/enroll`` (multipart: ``speaker``, one or more ``audio`` files) -> ``{"speaker", "created",
  "added", "n_clips"}``
- ``POST /api/identify`` (multipart: ``audio``, optional ``top``, optional ``segments=true`` with optional
  ``open_set=false`` and ``min_score``) -> ``{"speaker", "score", "threshold", "candidates": [{"speaker",
  "score"}]}``, or with ``segments`` ``{"segments": [{"start", "end", "speaker", "score", "cluster"}], "threshold",
  "threshold_origin", "open_set"}``
- ``POST /api/verify`` (multipart: ``speaker``, ``audio``) -> ``{"speaker", "accepted", "score", "threshold"}``
- ``GET /api/speakers`` -> ``{"model_source", ..., "threshold", "speakers": [{"speaker", "clips", "created"}]}``
- ``DELETE /api/speakers/{name}`` -> ``{"speaker", "removed_clips"}``;
  ``POST /api/speakers/{name}/rename`` (form ``new``) -> ``{"speaker", "was"}``
- ``POST /api/calibrate`` (multipart: ``results`` = a speaker evaluation's results.json, optional
  ``target_far``) -> ``{"threshold", "provenance"}``
- ``GET /api/health`` (no token) -> ``{"status": "ok", "model", "auth"}``; ``GET /`` -> the page.

**Access** is checked before any of the request's body is read (:class:`_Guard`). Every ``/api/`` call
but health needs ``Authorization: Bearer TOKEN``: the write token allows everything, the read token
(optional) identify, verify and the speaker list only. Missing or wrong: 401; a read token on a write:
403. ``--no-auth`` is accepted only for a loopback host, and then calls must carry the
``X-Speech-TL-Client`` header and a loopback ``Host`` (other web sites open in the browser cannot).
**Limits.** The request body is counted as it arrives and refused past ``max_upload_bytes`` (413), so a
huge upload is never held whole; each clip is checked against ``max_seconds`` from its header (413) and
like any other audio (422: unreadable, silent, clipped, too short).
**Errors** are JSON ``{"error": message}`` with 400 (bad request), 401, 403, 404 (unknown speaker),
409 (conflict: a clip enrolled twice, a taken name, another model), 413, 422 or 500 (a bug: its
message, with the traceback in the service's log).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import socket
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import InputError, SpeechTlError
from .service import ClipTooLongError, SpeakerService

log = logging.getLogger("speech_tl")
MAX_CLIPS = 20  # clips in one enroll request
TOKEN_ENV, READ_TOKEN_ENV = "SPEECH_TL_TOKEN", "SPEECH_TL_READ_TOKEN"


@dataclass(frozen=True)
class Tokens:
    """Bearer tokens: ``write`` allows every call, ``read`` only the ones that change nothing. Both None:
    no authentication (only on a loopback address)."""

    write: str | None
    read: str | None = None

    @property
    def required(self) -> bool:
        return self.write is not None


def read_token(path: str | os.PathLike | None, env: str) -> str | None:
    """The token in file ``path`` (its first line, stripped), else ``$env``; refused when empty or short."""
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise InputError(f"{p}: cannot read the token file ({e.strerror or e})") from None
        token, where = (text.strip().splitlines() or [""])[0].strip(), str(p)
    else:
        token, where = os.environ.get(env, "").strip(), f"${env}"
        if not token:
            return None
    if len(token) < 16:
        raise InputError(f"{where}: a token must be at least 16 characters (e.g. `python -c \"import secrets; "
                         f"print(secrets.token_urlsafe(32))\"`)")
    return token


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback one (127.0.0.0/8, ::1, ``localhost``)."""
    try:
        addresses = {a[4][0] for a in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


READS = {("GET", "/api/speakers"), ("POST", "/api/identify"), ("POST", "/api/verify")}  # the read token's calls
OPEN = {("GET", "/"), ("GET", "/api/health")}  # no token needed
CLIENT_HEADER = "x-speech-tl-client"  # without a token: a header no cross-site form or simple fetch can send


class _Guard:
    """ASGI middleware in front of the application, so that nothing of a refused request's body is read:

    - access: every ``/api/`` call but health needs the bearer token (the read token: identify, verify and
      the speaker list only): 401 without it or with a wrong one, 403 for a write with the read token.
      Without tokens (``--no-auth``, loopback only) a call must carry ``X-Speech-TL-Client`` and a loopback
      ``Host``, so that other web sites in the user's browser cannot drive the service (a cross-site form or
      simple request cannot set that header; a DNS-rebound name is not a loopback Host);
    - size: a body larger than ``limit`` bytes gets 413, from its declared Content-Length or, streamed, as
      soon as the bytes that arrived pass the limit.
    """

    def __init__(self, app, tokens: Tokens, limit: int):
        self.app, self.tokens, self.limit = app, tokens, limit

    def _refusal(self, scope) -> tuple[int, str, dict] | None:
        method, path = scope["method"], scope["path"]
        if (method, path) in OPEN or not path.startswith("/api/"):
            return None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        if not self.tokens.required:
            host = headers.get("host", "").rsplit(":", 1)[0].strip("[]").lower()
            if host not in ("127.0.0.1", "localhost", "::1") or CLIENT_HEADER not in headers:
                return 403, ("without a token the service answers only loopback requests that carry the "
                             "X-Speech-TL-Client header (the page sends it)"), {}
            return None
        scheme, _, given = headers.get("authorization", "").partition(" ")
        challenge = {"WWW-Authenticate": "Bearer"}
        if scheme.lower() != "bearer" or not given.strip():
            return 401, "missing bearer token: send 'Authorization: Bearer TOKEN'", challenge
        given_b = given.strip().encode()
        if hmac.compare_digest(given_b, self.tokens.write.encode()):
            return None
        if self.tokens.read is not None and hmac.compare_digest(given_b, self.tokens.read.encode()):
            if (method, path) in READS:
                return None
            return 403, "this token may only read (identify, verify, list); changes need the write token", {}
        return 401, "wrong bearer token", challenge

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = self._refusal(scope)
        if refusal is not None:
            return await _answer(send, *refusal)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        seen, started, refused = 0, False, False

        async def counting_receive():
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:  # answer 413 now; the application sees the client leave
                    refused = True
                    if not started:
                        await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if refused:
                return  # the application's own answer to the cut-off request is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not refused:
                raise

    async def _refuse(self, send):
        await _answer(send, 413, f"request body larger than the limit of {self.limit} bytes", {"connection": "close"})


async def _answer(send, status: int, message: str, headers: dict) -> None:
    """A JSON error answered straight from the middleware."""
    import json

    body = json.dumps({"error": message}).encode()
    extra = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": body})


def _status(e: Exception) -> int:
    from ..audio import AudioError
    from .registry import ReadOnlyError, SpeakerConflictError, UnknownSpeakerError

    if isinstance(e, UnknownSpeakerError):
        return 404
    if isinstance(e, ReadOnlyError):
        return 403
    if isinstance(e, SpeakerConflictError):
        return 409
    if isinstance(e, ClipTooLongError):
        return 413
    if isinstance(e, AudioError):
        return 422
    return 400


def page_html() -> str:
    """The self-contained web page (no external scripts, styles or fonts)."""
    return resources.files("speech_tl.speaker").joinpath("page.html").read_text(encoding="utf-8")


def create_app(service: SpeakerService, tokens: Tokens):
    """The FastAPI application around a loaded ``service``."""
    app = FastAPI(title="speech-tl speakers", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(SpeechTlError)
    async def expected(_request, e: SpeechTlError):
        return JSONResponse({"error": str(e)}, status_code=_status(e))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, e: RequestValidationError):
        problems = [f"{'.'.join(str(x) for x in err.get('loc', ())[1:]) or 'request'}: {err.get('msg')}"
                    for err in e.errors()]
        return JSONResponse({"error": "; ".join(problems)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, e: StarletteHTTPException):
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code, headers=e.headers)

    @app.exception_handler(Exception)
    async def bug(_request, e: Exception):
        import sqlite3

        if isinstance(e, sqlite3.Error):  # the database is busy beyond the timeout, full, or gone
            log.error(f"speaker database error: {e}")
            return JSONResponse({"error": "the speaker database is not available just now; try again"},
                                status_code=503)
        log.exception("bug while answering a request")
        return JSONResponse({"error": "internal error (the service's log has the details)"}, status_code=500)

    def upload_name(upload: UploadFile, default: str) -> str:
        name = Path(upload.filename or "").name
        return default if name in ("", ".", "..") else name

    def clip(upload: UploadFile):
        return service.load_bytes(upload.file.read(), upload_name(upload, "upload.wav"))

    @app.get("/", response_class=HTMLResponse)
    def page():
        return HTMLResponse(page_html(), headers={
            "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                                       "connect-src 'self'; media-src 'self' blob:; img-src 'self' data:",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})

    @app.get("/api/health")
    def health():
        return {"status": "ok", "model": service.embedder.source, "auth": tokens.required}

    @app.post("/api/enroll")
    def enroll(speaker: Annotated[str, Form()], audio: Annotated[list[UploadFile], File()]):
        if len(audio) > MAX_CLIPS:
            raise InputError(f"{len(audio)} clips in one request; send at most {MAX_CLIPS}")
        clips, waves = [], []
        for a in audio:  # a clip is known by its content: the same recording twice is refused, another one
            data = a.file.read()  # named alike (every page recording is microphone.wav) is not
            name = upload_name(a, "upload.wav")
            waves.append(service.load_bytes(data, name))
            clips.append(f"upload:{hashlib.sha256(data).hexdigest()[:16]}:{name}")
        return service.enroll(speaker, waves, clips)

    @app.post("/api/identify")
    def identify(audio: Annotated[UploadFile, File()], top: Annotated[int, Form(ge=1, le=100)] = 5,
                 segments: Annotated[bool, Form()] = False, open_set: Annotated[bool, Form()] = True,
                 min_score: Annotated[float | None, Form(allow_inf_nan=False)] = None):
        wave = clip(audio)
        if not segments:
            return service.identify(wave, top)
        return service.segments(wave, open_set=open_set, min_score=min_score)

    @app.post("/api/verify")
    def verify(speaker: Annotated[str, Form()], audio: Annotated[UploadFile, File()]):
        return service.verify(speaker, clip(audio))

    @app.get("/api/speakers")
    def speakers():
        return service.speakers()

    @app.delete("/api/speakers/{name:path}")
    def remove(name: str):
        return service.remove(name)

    @app.post("/api/speakers/{name:path}/rename")
    def rename(name: str, new: Annotated[str, Form()]):
        return service.rename(name, new)

    @app.post("/api/calibrate")
    def calibrate(results: Annotated[UploadFile, File()], target_far: Annotated[float | None, Form()] = None):
        with tempfile.TemporaryDirectory(prefix="speech-tl-calibrate-") as d:
            name = upload_name(results, "results.json")
            path = Path(d) / name
            path.write_bytes(results.file.read())
            return service.calibrate(path, target_far, shown_as=f"upload:{name}")

    return _Guard(app, tokens, service.limits.max_upload_bytes)


def serve(service: SpeakerService, tokens: Tokens, host: str, port: int) -> None:
    """Run the service with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(service, tokens), host=host, port=port, log_level="info", access_log=True,
                timeout_graceful_shutdown=5)
