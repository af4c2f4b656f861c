"""The HTTP service: our job API, an OpenAI-compatible images API, and the web page, on one job store.

``create_app(data_dir)`` builds the FastAPI app; ``instructedit serve`` runs it with uvicorn. Edits are jobs:
accepted (202) after the same checks the CLI makes, run by workers that keep their models warm, persisted in
SQLite so a restart loses nothing finished. The OpenAPI schema (``/openapi.json``, ``/docs``) is the contract.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from ..errors import InstructEditError, InvalidImageError, InvalidMaskError
from ..inputs import DEFAULT_MAX_PIXELS
from ..types import DEFAULT_METHOD
from .store import DONE, FINAL, BlobStore, Job, SQLiteJobStore
from .worker import wait_for

STATIC = Path(__file__).resolve().parent / "static"


@dataclass
class ServiceSettings:
    """Limits and options of one service (each a ``serve`` flag)."""

    data: Path
    api_keys: frozenset[str] = frozenset()
    workers: int = 1
    max_queue: int = 64
    max_upload_bytes: int = 20 * 2**20
    max_pixels: int = DEFAULT_MAX_PIXELS
    sync_timeout_s: float = 600.0
    retry_after_s: int = 5
    cors_origins: tuple[str, ...] = ()
    make_editor: Callable[[Any], Any] | None = field(default=None, repr=False)


class ServiceError(Exception):
    """An HTTP error with the one-line message and the request field it is about."""

    def __init__(self, status: int, message: str, field: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers or {}


def _error_body(message: str, field: str | None, status: int) -> dict[str, Any]:
    # The OpenAI error shape, which their SDKs parse; "param" names the request field.
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": field, "code": status}}


def create_app(data: str | Path, **options: Any) -> FastAPI:
    """The service over the data folder ``data`` (created if missing); ``options`` are :class:`ServiceSettings`
    fields. Workers start with the app (its lifespan) and stop with it."""
    settings = ServiceSettings(data=Path(data), **options)
    settings.data.mkdir(parents=True, exist_ok=True)
    store = SQLiteJobStore(settings.data / "jobs.sqlite3")
    blobs = BlobStore(settings.data / "files")
    workers = _Workers(settings, store, blobs)
    from ..editor import Editor

    checker = Editor(max_pixels=settings.max_pixels)  # checks requests; never loads a model

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        requeued, failed = store.recover()
        app.state.recovered = {"requeued": requeued, "failed": failed}
        workers.start()
        try:
            yield
        finally:
            workers.stop()

    app = FastAPI(title="instructedit", version=_version(), lifespan=lifespan,
                  description="Edit images with words: jobs, an OpenAI-compatible images API and a web page.")
    app.state.store, app.state.blobs, app.state.settings = store, blobs, settings
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["*"],
                           allow_headers=["*"])

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(_error_body(exc.message, exc.field, exc.status), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _form_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        name = ".".join(where) or None
        message = f"{name or 'the request'}: {first.get('msg', 'invalid')}".replace("\n", " ")
        return JSONResponse(_error_body(message, name, 422), 422)

    @app.middleware("http")
    async def _guard(request: Request, call_next):
        path = request.url.path
        if settings.api_keys and path.startswith("/v1/"):
            given = request.headers.get("authorization", "")
            token = given[7:].strip() if given.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
            if not any(hmac.compare_digest(token, key) for key in settings.api_keys):
                return JSONResponse(_error_body("missing or wrong API key: send 'Authorization: Bearer KEY'",
                                                "authorization", 401), 401, headers={"WWW-Authenticate": "Bearer"})
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_upload_bytes + 65536:
            return JSONResponse(_error_body(f"the request is {int(length)} bytes, over the limit of "
                                            f"{settings.max_upload_bytes}: send a smaller image", "image", 413), 413)
        return await call_next(request)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """Liveness: the store answers; queue length and live workers."""
        return {"ok": True, "queued": store.queued(), "workers": workers.alive()}

    @app.get("/v1/methods")
    def methods() -> dict[str, Any]:
        """What ``instructedit methods`` prints, as JSON: methods with their parameters, backends, captioners."""
        from ..captioning import CAPTIONERS
        from ..grounding import GROUNDERS
        from ..methods import available_methods

        return {"methods": [m.describe() for m in available_methods()], "grounders": GROUNDERS,
                "captioners": CAPTIONERS, "planners": ["rules"]}

    examples: list[tuple[str, bytes]] = []

    def _examples() -> list[tuple[str, bytes]]:
        if not examples:
            from ..domain import generate_samples
            from ..inputs.files import encode_png

            for sample in generate_samples("test", 4, seed=0, heldout_fraction=1.0):
                examples.append((sample.instruction, encode_png(sample.source_image())))
        return examples

    @app.get("/v1/examples")
    def list_examples() -> list[dict[str, Any]]:
        """Built-in example images (held-out scenes of the reference domain) with an instruction for each."""
        return [{"id": i, "url": f"/v1/examples/{i}.png", "instruction": text} for i, (text, _) in
                enumerate(_examples())]

    @app.get("/v1/examples/{index}.png", response_class=Response)
    def example(index: int) -> Response:
        if not 0 <= index < len(_examples()):
            raise ServiceError(404, f"no example {index}: see GET /v1/examples", "index")
        return Response(_examples()[index][1], media_type="image/png")

    @app.post("/v1/edits", status_code=202)
    async def submit_edit(
        image: Annotated[UploadFile, File(description="the image to edit")],
        mask: Annotated[UploadFile | None, File(description="white = edit")] = None,
        instruction: Annotated[str | None, Form()] = None,
        source: Annotated[str | None, Form()] = None,
        target: Annotated[str | None, Form()] = None,
        method: Annotated[str, Form()] = DEFAULT_METHOD,
        params: Annotated[str, Form(description="JSON object of method parameters")] = "{}",
        seed: Annotated[int | None, Form()] = 0,
        model: Annotated[str | None, Form()] = None,
        plan: Annotated[bool | None, Form()] = None,
        ground: Annotated[str | None, Form()] = None,
        session: Annotated[str | None, Form(description="a session id from POST /v1/sessions")] = None,
    ) -> JSONResponse:
        """Queue an edit: ``202`` with the job (poll ``/v1/jobs/{id}``), ``422`` for a request that cannot run,
        ``413`` for an upload over the limits, ``429`` when the queue is full."""
        fields = {"instruction": instruction, "source": source, "target": target, "method": method,
                  "params": _json_object(params, "params"), "seed": seed, "model": model, "plan": plan,
                  "ground": ground or None}
        if session is not None and not store.has_session(session):
            raise ServiceError(404, f"no session {session!r}: create one with POST /v1/sessions", "session")
        job = _accept(settings, checker, store, blobs, await _upload(image, settings, "image"),
                      await _upload(mask, settings, "mask") if mask is not None else None, fields, session)
        return JSONResponse(job.to_public(), 202, headers={"Location": f"/v1/jobs/{job.id}"})

    @app.get("/v1/jobs/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        """The job's state, progress, record and error."""
        return _job_or_404(store, job_id).to_public()

    @app.delete("/v1/jobs/{job_id}")
    def cancel_job(job_id: str) -> dict[str, Any]:
        """Cancel a queued job, or stop a running one at its next step; a finished job stays as it is."""
        _job_or_404(store, job_id)
        return store.cancel(job_id).to_public()

    @app.get("/v1/jobs/{job_id}/image", response_class=FileResponse)
    def job_image(job_id: str) -> FileResponse:
        """The edited image: a PNG with the edit record in its text chunks, as the CLI writes it."""
        job = _done_or_409(store, job_id)
        return FileResponse(blobs.path(job.result), media_type="image/png", filename=f"{job_id}.png")

    @app.get("/v1/jobs/{job_id}/mask", response_class=FileResponse)
    def job_mask(job_id: str) -> FileResponse:
        """The mask the edit used or produced (404 when it used none)."""
        job = _done_or_409(store, job_id)
        if job.result_mask is None:
            raise ServiceError(404, f"job {job_id} used no mask", "job_id")
        return FileResponse(blobs.path(job.result_mask), media_type="image/png", filename=f"{job_id}-mask.png")

    @app.get("/v1/jobs/{job_id}/input", response_class=Response)
    def job_input(job_id: str) -> Response:
        """The uploaded image, as it was sent."""
        job = _job_or_404(store, job_id)
        return Response(blobs.read(job.image), media_type="application/octet-stream")

    @app.get("/v1/jobs/{job_id}/events")
    async def job_events(job_id: str) -> StreamingResponse:
        """Server-Sent Events: the job (as ``GET /v1/jobs/{id}``) whenever its state or progress changes, until
        it is finished."""
        _job_or_404(store, job_id)

        async def events():
            last = None
            while True:
                job = store.get(job_id)
                current = json.dumps(job.to_public())
                if current != last:
                    yield f"event: job\ndata: {current}\n\n"
                    last = current
                if job.state in FINAL:
                    return
                await asyncio.sleep(0.05)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.post("/v1/sessions", status_code=201)
    def new_session() -> dict[str, Any]:
        """A multi-turn session: pass its id with each edit; its history survives reloads and restarts."""
        return {"id": store.new_session(), "turns": []}

    @app.get("/v1/sessions/{session}")
    def get_session(session: str) -> dict[str, Any]:
        """The session's turns, oldest first (undone turns left out)."""
        if not store.has_session(session):
            raise ServiceError(404, f"no session {session!r}", "session")
        return {"id": session, "turns": [j.to_public() for j in store.session_jobs(session)]}

    @app.post("/v1/sessions/{session}/undo")
    def undo(session: str) -> dict[str, Any]:
        """Take the last turn out of the session's history."""
        if not store.has_session(session):
            raise ServiceError(404, f"no session {session!r}", "session")
        undone = store.undo(session)
        if undone is None:
            raise ServiceError(409, "the session has no turn to undo", "session")
        return {"id": session, "undone": undone.id, "turns": [j.to_public() for j in store.session_jobs(session)]}

    @app.post("/v1/images/edits")
    async def openai_images_edit(
        request: Request,
        image: Annotated[UploadFile, File()],
        prompt: Annotated[str, Form()],
        mask: Annotated[UploadFile | None, File()] = None,
        model: Annotated[str | None, Form(description=f"an instructedit method name; default {DEFAULT_METHOD}")
                         ] = None,
        n: Annotated[int, Form(ge=1, le=4)] = 1,
        size: Annotated[str | None, Form(description="WIDTHxHEIGHT of the output, or auto")] = None,
        response_format: Annotated[str, Form()] = "b64_json",
    ) -> dict[str, Any]:
        """OpenAI's images API (``client.images.edit``), answered synchronously in its JSON shape. The mask
        follows OpenAI's convention: transparent pixels are the ones to edit."""
        from ..methods import get_method

        if response_format not in ("b64_json", "url"):
            raise ServiceError(422, f"response_format must be b64_json or url, got {response_format!r}",
                               "response_format")
        try:
            method = get_method(model or DEFAULT_METHOD).name
        except InstructEditError as exc:
            raise ServiceError(422, str(exc), "model") from None
        out_size = _size(size)
        data = await _upload(image, settings, "image")
        mask_data = _openai_mask(await _upload(mask, settings, "mask")) if mask is not None else None
        jobs = [_accept(settings, checker, store, blobs, data, mask_data,
                        {"instruction": prompt, "method": method, "params": {}, "seed": seed}, None)
                for seed in range(n)]
        items = []
        for job in jobs:
            finished = await asyncio.to_thread(wait_for, store, job.id, settings.sync_timeout_s)
            if finished.state != DONE:
                raise ServiceError(500 if finished.state != "queued" else 504,
                                   finished.error or f"the edit did not finish in {settings.sync_timeout_s} s",
                                   finished.error_field)
            png = blobs.read(finished.result)
            if out_size is not None:
                png = _resized_png(png, out_size)
            if response_format == "url":
                items.append({"url": str(request.base_url) + f"v1/jobs/{job.id}/image", "revised_prompt": prompt})
            else:
                items.append({"b64_json": base64.b64encode(png).decode("ascii"), "revised_prompt": prompt})
        return {"created": int(time.time()), "data": items}

    if STATIC.is_dir():
        app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
    return app


def _version() -> str:
    from ..version import __version__

    return __version__


def _json_object(text: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise ServiceError(422, f"{name} must be a JSON object, e.g. {{\"num_inference_steps\": 20}} "
                                f"({exc.msg})", name) from None
    if not isinstance(value, dict):
        raise ServiceError(422, f"{name} must be a JSON object, got {type(value).__name__}", name)
    return value


async def _upload(upload: UploadFile, settings: ServiceSettings, name: str) -> bytes:
    data = await upload.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise ServiceError(413, f"{name} is over the upload limit of {settings.max_upload_bytes} bytes: send a "
                                "smaller file", name)
    if not data:
        raise ServiceError(422, f"{name} is empty: attach an image file", name)
    return data


def _accept(settings: ServiceSettings, checker, store: SQLiteJobStore, blobs: BlobStore, image: bytes,
            mask: bytes | None, fields: dict[str, Any], session: str | None) -> Job:
    """Check a request exactly as the CLI would (no model loaded), store its uploads, queue it."""
    from ..types import EditRequest

    try:
        checker.check(EditRequest(image=image, mask=mask, **fields))
    except (InvalidImageError, InvalidMaskError) as exc:
        upload = "image" if isinstance(exc, InvalidImageError) else "mask"
        if exc.field == "max_pixels":  # the loader's decompression-bomb guard: too large, not malformed
            pixels = exc.suggest.get("max_pixels")
            count = f"{pixels:,} pixels" if pixels else "too many pixels"
            raise ServiceError(413, f"{upload} has {count}, over the service's limit of {settings.max_pixels:,} "
                                    "pixels: downscale it first", upload) from None
        raise ServiceError(422, str(exc), exc.field or upload) from None
    except InstructEditError as exc:
        raise ServiceError(422, str(exc), getattr(exc, "field", None)) from None
    try:
        image_name = blobs.put(image)
        mask_name = blobs.put(mask) if mask is not None else None
    except OSError as exc:
        raise ServiceError(507, f"the service cannot store the upload ({exc.strerror or exc}): try again later",
                           "image") from None
    job = store.submit(fields, image_name, mask_name, session=session, max_queued=settings.max_queue)
    if job is None:
        raise ServiceError(429, f"the queue is full ({settings.max_queue} jobs waiting): retry after "
                                f"{settings.retry_after_s} s", None, {"Retry-After": str(settings.retry_after_s)})
    return job


def _openai_mask(data: bytes) -> bytes:
    """OpenAI masks mark the area to edit by transparency; ours by white. Without alpha the mask is ours."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as mask:
            if "A" not in mask.getbands():
                return data
            alpha = mask.getchannel("A")
    except Exception:  # noqa: BLE001 - the mask loader gives the message
        return data
    out = io.BytesIO()
    alpha.point(lambda a: 255 if a < 128 else 0).save(out, format="PNG")
    return out.getvalue()


def _size(size: str | None) -> tuple[int, int] | None:
    if size in (None, "", "auto"):
        return None
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise ServiceError(422, f"size must be WIDTHxHEIGHT (e.g. 512x512) or auto, got {size!r}", "size") from None
    if not (8 <= width <= 4096 and 8 <= height <= 4096):
        raise ServiceError(422, f"size must be between 8x8 and 4096x4096, got {size!r}", "size")
    return width, height


def _resized_png(png: bytes, size: tuple[int, int]) -> bytes:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        out = io.BytesIO()
        image.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(out, format="PNG")
    return out.getvalue()


def _job_or_404(store: SQLiteJobStore, job_id: str) -> Job:
    job = store.get(job_id)
    if job is None:
        raise ServiceError(404, f"no job {job_id!r}: check the id POST /v1/edits returned", "job_id")
    return job


def _done_or_409(store: SQLiteJobStore, job_id: str) -> Job:
    job = _job_or_404(store, job_id)
    if job.state != DONE:
        detail = f": {job.error}" if job.error else ""
        raise ServiceError(409, f"job {job_id} is {job.state}{detail}; its image exists once it is done", "job_id")
    return job


class _Workers:
    """The service's workers: processes, each with its own editor (models loaded once, kept warm; the HTTP
    server never competes with them for the interpreter), all claiming from the store. With ``make_editor``
    (tests, embedding) one worker thread of this process runs that editor instead."""

    def __init__(self, settings: ServiceSettings, store: SQLiteJobStore, blobs: BlobStore) -> None:
        self.settings, self.store, self.blobs = settings, store, blobs
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._processes: list[Any] = []

    def start(self) -> None:
        from .worker import work

        self._stop.clear()
        if self.settings.make_editor is not None:
            thread = threading.Thread(target=work, daemon=True, name="instructedit-worker", kwargs={
                "store": self.store, "blobs": self.blobs, "stop": self._stop,
                "make_editor": self.settings.make_editor, "max_pixels": self.settings.max_pixels})
            thread.start()
            self._threads.append(thread)
            return
        import multiprocessing
        import os

        context = multiprocessing.get_context("spawn")
        for index in range(self.settings.workers):
            process = context.Process(target=_worker_process, daemon=True, name=f"instructedit-worker-{index}",
                                      args=(str(self.settings.data), self.settings.max_pixels, os.getpid(), index))
            process.start()
            self._processes.append(process)

    def alive(self) -> int:
        return sum(t.is_alive() for t in self._threads) + sum(p.is_alive() for p in self._processes)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        for process in self._processes:
            process.terminate()
            process.join(timeout=10)
        self._threads, self._processes = [], []


def _worker_process(data: str, max_pixels: int | None, parent_pid: int, index: int) -> None:
    """A worker process: its own store connection and editor; exits when the service process is gone."""
    import os

    import torch

    from ..editor import Editor
    from .worker import work

    # one GPU per worker when there are GPUs
    device = f"cuda:{index % torch.cuda.device_count()}" if torch.cuda.is_available() else None
    root = Path(data)
    work(SQLiteJobStore(root / "jobs.sqlite3"), BlobStore(root / "files"), max_pixels=max_pixels,
         parent_pid=parent_pid, name=f"worker-{index}-{os.getpid()}",
         make_editor=lambda progress: Editor(device=device, progress=progress, max_pixels=max_pixels))
