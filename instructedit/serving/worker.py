"""A worker: claims jobs from the store, runs them on its own :class:`~instructedit.Editor` (models loaded once,
kept warm; the worker owns the device), writes the result PNG with its record, and reports progress.

Run in a thread of the service (``--workers 1``) or as separate processes (``--workers N``), all claiming from
the same store. Cancellation is checked at every denoising step.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import InstructEditError
from .store import BlobStore, Job, JobStore

POLL_SECONDS = 0.02
PROGRESS_SECONDS = 0.1
"""Progress is written at most this often (and at each loop's first and last step); cancellation is checked at
every step."""


class JobCancelled(Exception):
    """Raised inside an edit when its job was cancelled."""


class _Progress:
    """The editor's progress factory, reporting to the store the job being run; stops a cancelled one."""

    def __init__(self, store: JobStore) -> None:
        self.store, self.job_id, self.loop = store, None, 0

    def __call__(self, total: int) -> _Progress._Bar:
        self.loop += 1
        return self._Bar(self, total)

    class _Bar:
        def __init__(self, owner: _Progress, total: int) -> None:
            self.owner, self.total, self.step, self.written = owner, int(total), 0, 0.0
            self._report()

        def _report(self) -> None:
            owner, now = self.owner, time.monotonic()
            if owner.job_id is None:
                return
            write = self.step in (0, self.total) or now - self.written >= PROGRESS_SECONDS
            progress = {"loop": owner.loop, "step": self.step, "total": self.total} if write else None
            if write:
                self.written = now
            if not owner.store.set_progress(owner.job_id, progress):
                raise JobCancelled(owner.job_id)

        def update(self, n: int = 1) -> None:
            self.step += n
            self._report()

        def close(self) -> None:
            pass


def edit_request(job: Job, blobs: BlobStore, max_pixels: int | None):
    """The :class:`~instructedit.EditRequest` a job stands for."""
    from ..inputs import load_image, load_mask
    from ..types import EditRequest

    fields = dict(job.request)
    image = load_image(blobs.read(job.image), max_pixels=max_pixels)
    mask = load_mask(blobs.read(job.mask), size=image.size) if job.mask else None
    return EditRequest(image=image, mask=mask, **fields)


def run_job(editor, store: JobStore, blobs: BlobStore, job: Job, progress: _Progress,
            max_pixels: int | None = None) -> None:
    """Run one claimed job to its end: done with its result, failed with the one-line reason, or cancelled."""
    from ..inputs.files import encode_png

    progress.job_id, progress.loop = job.id, 0
    try:
        result = editor.edit(edit_request(job, blobs, max_pixels))
        record = result.record.to_dict()
        metadata = {"instructedit": result.record.to_json()}
        name = blobs.put(encode_png(result.image, metadata), ".png")
        mask = blobs.put(encode_png(result.mask, metadata), ".png") if result.mask is not None else None
        store.finish(job.id, record, name, mask)
    except JobCancelled:
        store.fail(job.id, "cancelled while running")
    except InstructEditError as exc:
        store.fail(job.id, str(exc), getattr(exc, "field", None))
    except OSError as exc:  # a full disk, a vanished data folder: the job fails, the store stays consistent
        store.fail(job.id, f"could not write the result ({exc.strerror or exc}): free disk space under the "
                   "service's --data folder and submit it again")
    except Exception as exc:  # noqa: BLE001 - one bad job must not take the worker down
        store.fail(job.id, f"internal error ({type(exc).__name__}: {exc}); the job was not finished")
    finally:
        progress.job_id = None


def work(store: JobStore, blobs: BlobStore, *, stop: threading.Event | None = None,
         make_editor: Callable[[Any], Any] | None = None, name: str | None = None,
         max_pixels: int | None = None, parent_pid: int | None = None) -> None:
    """Claim and run jobs until ``stop`` is set (or the parent process ``parent_pid`` is gone)."""
    from ..editor import Editor

    progress = _Progress(store)
    editor = make_editor(progress) if make_editor else Editor(progress=progress, max_pixels=max_pixels)
    name = name or f"worker-{os.getpid()}-{threading.get_ident()}"
    stop = stop or threading.Event()
    if parent_pid is not None:
        _die_with_parent()
    while not stop.is_set():
        if parent_pid is not None and os.getppid() != parent_pid:
            return  # the service was killed: stop, its restart re-queues what was running
        job = store.claim(name)
        if job is None:
            stop.wait(POLL_SECONDS)
            continue
        run_job(editor, store, blobs, job, progress, max_pixels)


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this worker the moment the service process dies (even by kill -9), so no
    orphan finishes a job its restarted service has queued again."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:  # pragma: no cover - no glibc: the getppid check in the loop remains
            pass


def wait_for(store: JobStore, job_id: str, timeout: float) -> Job | None:
    """Poll until the job is final (or ``timeout`` seconds pass): the job as it then is."""
    from .store import FINAL

    deadline = time.monotonic() + timeout
    while True:
        job = store.get(job_id)
        if job is None or job.state in FINAL or time.monotonic() > deadline:
            return job
        time.sleep(POLL_SECONDS)
