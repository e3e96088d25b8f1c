"""``speech-tl serve``: the enrollment tool as an HTTP service with a web page, on FastAPI and uvicorn.

The model stays loaded (:class:`~speech_tl.speaker.service.SpeakerService`), so a request costs the
embedding, not the start of Python and torch. The JSON API gives the shapes the command line prints with
``--json``:

- ``POST /api/enroll`` (multipart: ``speaker``, one or more ``audio`` files) -> ``{"speaker", "created",
  "added", "n_clips"}``
- ``POST /api/identify`` (multipart: ``audio``, optional ``top``, optional ``segments=true``) ->
  ``{"speaker", "score", "threshold", "candidates": [{"speaker", "score"}]}``, or with ``segments``
  ``{"segments": [{"start", "end", "speaker", "score"}]}``
- ``POST /api/verify`` (multipart: ``speaker``, ``audio``) -> ``{"speaker", "accepted", "score", "threshold"}``
- ``GET /api/speakers`` -> ``{"model_source", ..., "threshold", "speakers": [{"speaker", "clips", "created"}]}``
- ``DELETE /api/speakers/{name}`` -> ``{"speaker", "removed_clips"}``;
  ``POST /api/speakers/{name}/rename`` (form ``new``) -> ``{"speaker", "was"}``
- ``POST /api/calibrate`` (multipart: ``results`` = a speaker evaluation's results.json, optional
  ``target_far``) -> ``{"threshold", "provenance"}``
- ``GET /api/health`` (no token) -> ``{"status": "ok", "model", "auth"}``; ``GET /`` -> the page.

**Access.** Every ``/api/`` call but health needs ``Authorization: Bearer TOKEN``: the write token
allows everything, the read token (optional) identify, verify, list and health only. Missing or wrong:
401; a read token on a write: 403. ``--no-auth`` is accepted only for a loopback host.
**Limits.** The request body is counted as it arrives and refused past ``max_upload_bytes`` (413), so a
huge upload is never held whole; each clip is checked against ``max_seconds`` from its header (413) and
like any other audio (422: unreadable, silent, clipped, too short).
**Errors** are JSON ``{"error": message}`` with 400 (bad request), 401, 403, 404 (unknown speaker),
409 (conflict: a clip enrolled twice, a taken name, another model), 413, 422 or 500 (a bug: its
message, with the traceback in the service's log).
"""

from __future__ import annotations

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

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import InputError, SpeechTlError
from .service import ClipTooLongError, SpeakerService

log = logging.getLogger("speech_tl")
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


class _BodyLimit:
    """ASGI middleware: a request whose body is larger than ``limit`` bytes gets 413 before it is read
    further (the declared Content-Length is checked first, then the bytes as they arrive)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
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
        import json

        body = json.dumps({"error": f"request body larger than the limit of {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _status(e: Exception) -> int:
    from ..audio import AudioError
    from .registry import SpeakerConflictError, UnknownSpeakerError

    if isinstance(e, UnknownSpeakerError):
        return 404
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

    class Refused(Exception):
        def __init__(self, status: int, message: str, headers: dict | None = None):
            self.status, self.message, self.headers = status, message, headers

    @app.exception_handler(Refused)
    async def refused(_request, e: Refused):
        return JSONResponse({"error": e.message}, status_code=e.status, headers=e.headers)

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
        log.exception("bug while answering a request")
        return JSONResponse({"error": f"internal error: {type(e).__name__}: {e}"}, status_code=500)

    def access(write: bool):
        def check(request: Request) -> None:
            if not tokens.required:
                return
            header = request.headers.get("authorization", "")
            scheme, _, given = header.partition(" ")
            challenge = {"WWW-Authenticate": "Bearer"}
            if scheme.lower() != "bearer" or not given.strip():
                raise Refused(401, "missing bearer token: send 'Authorization: Bearer TOKEN'", challenge)
            given = given.strip().encode()
            if hmac.compare_digest(given, tokens.write.encode()):
                return
            if tokens.read is not None and hmac.compare_digest(given, tokens.read.encode()):
                if write:
                    raise Refused(403, "this token may only read (identify, verify, list); changes need the "
                                       "write token")
                return
            raise Refused(401, "wrong bearer token", challenge)

        return check

    reading, writing = Depends(access(write=False)), Depends(access(write=True))

    def clip(upload: UploadFile):
        name = Path(upload.filename or "upload").name or "upload"
        return service.load_bytes(upload.file.read(), name)

    @app.get("/", response_class=HTMLResponse)
    def page():
        return HTMLResponse(page_html(), headers={
            "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                                       "connect-src 'self'; media-src 'self' blob:; img-src 'self' data:",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})

    @app.get("/api/health")
    def health():
        return {"status": "ok", "model": service.embedder.source, "auth": tokens.required}

    @app.post("/api/enroll", dependencies=[writing])
    def enroll(speaker: Annotated[str, Form()], audio: Annotated[list[UploadFile], File()]):
        names = [Path(a.filename or f"upload-{i}").name for i, a in enumerate(audio)]
        waves = [clip(a) for a in audio]
        return service.enroll(speaker, waves, [f"upload:{n}" for n in names])

    @app.post("/api/identify", dependencies=[reading])
    def identify(audio: Annotated[UploadFile, File()], top: Annotated[int, Form(ge=1, le=100)] = 5,
                 segments: Annotated[bool, Form()] = False):
        wave = clip(audio)
        return service.segments(wave) if segments else service.identify(wave, top)

    @app.post("/api/verify", dependencies=[reading])
    def verify(speaker: Annotated[str, Form()], audio: Annotated[UploadFile, File()]):
        return service.verify(speaker, clip(audio))

    @app.get("/api/speakers", dependencies=[reading])
    def speakers():
        return service.speakers()

    @app.delete("/api/speakers/{name}", dependencies=[writing])
    def remove(name: str):
        return service.remove(name)

    @app.post("/api/speakers/{name}/rename", dependencies=[writing])
    def rename(name: str, new: Annotated[str, Form()]):
        return service.rename(name, new)

    @app.post("/api/calibrate", dependencies=[writing])
    def calibrate(results: Annotated[UploadFile, File()], target_far: Annotated[float | None, Form()] = None):
        with tempfile.TemporaryDirectory(prefix="speech-tl-calibrate-") as d:
            path = Path(d) / Path(results.filename or "results.json").name
            path.write_bytes(results.file.read())
            return service.calibrate(path, target_far)

    return _BodyLimit(app, service.limits.max_upload_bytes)


def serve(service: SpeakerService, tokens: Tokens, host: str, port: int) -> None:
    """Run the service with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(service, tokens), host=host, port=port, log_level="info", access_log=True,
                timeout_graceful_shutdown=5)
