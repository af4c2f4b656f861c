"""The HTTP service: job API, persistence across kill -9, limits, sessions, the OpenAI images API."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from instructedit import Editor, EditRequest
from instructedit.inputs import read_metadata

fastapi = pytest.importorskip("fastapi")  # declared in the test extra: present in CI
from fastapi.testclient import TestClient  # noqa: E402
from service_process import free_port as _free_port  # noqa: E402
from service_process import serve as _serve  # noqa: E402

from instructedit.serving.app import create_app  # noqa: E402

SCENE = Path(__file__).resolve().parent.parent / "examples" / "scene.png"
EDIT = {"instruction": "make the star blue", "method": "ip2p", "seed": "3", "params": '{"num_inference_steps": 4}'}


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _wait(client, job_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def _submit(client, data=EDIT, image: bytes | None = None, **files) -> object:
    upload = {"image": ("scene.png", image if image is not None else SCENE.read_bytes(), "image/png"), **files}
    return client.post("/v1/edits", data=data, files=upload)


class Gate:
    """An editor that waits for the test to open the gate before each edit (to hold jobs queued or running)."""

    def __init__(self, progress) -> None:
        self.editor, self.open = Editor(progress=progress), threading.Event()

    def edit(self, request):
        assert self.open.wait(60)
        return self.editor.edit(request)


def in_process(progress):
    """A worker thread in the test's process (the service's default is worker processes, tested through
    `instructedit serve` below), so tests can reach into it."""
    return Editor(progress=progress)


@pytest.fixture()
def client(tmp_path):
    with TestClient(create_app(tmp_path / "data", make_editor=in_process)) as client:
        yield client


def test_an_edit_is_a_job_whose_png_equals_the_library_result(client):
    response = _submit(client)
    assert response.status_code == 202 and response.headers["location"] == f"/v1/jobs/{response.json()['id']}"
    job = _wait(client, response.json()["id"])
    assert job["state"] == "done", job
    assert job["record"]["method"] == "ip2p" and job["progress"]["step"] == job["progress"]["total"] == 4
    png = client.get(f"/v1/jobs/{job['id']}/image")
    assert png.headers["content-type"] == "image/png"
    expected = Editor().edit(EditRequest(str(SCENE), instruction="make the star blue", seed=3,
                                         params={"num_inference_steps": 4}))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png.content)).convert("RGB")),
                                  np.asarray(expected.image))
    path = client.app.state.blobs.path(client.app.state.store.get(job["id"]).result)
    assert json.loads(read_metadata(path)["instructedit"])["method"] == "ip2p"  # the record, as the CLI writes it
    assert client.get(f"/v1/jobs/{job['id']}/mask").status_code == 404  # this edit used no mask
    assert client.get("/healthz").json()["ok"] is True


def test_methods_and_openapi_are_served(client):
    from instructedit.methods import available_methods

    listed = client.get("/v1/methods").json()
    assert listed["methods"] == json.loads(json.dumps([m.describe() for m in available_methods()]))
    assert "builtin" in listed["grounders"] and "builtin" in listed["captioners"]
    schema = client.get("/openapi.json").json()
    assert {"/v1/edits", "/v1/jobs/{job_id}", "/v1/images/edits", "/v1/jobs/{job_id}/events"} <= set(schema["paths"])


@pytest.mark.parametrize(("data", "image", "field", "fragment"), [
    ({**EDIT, "instruction": "   "}, None, "instruction", "instruction"),
    ({**EDIT, "method": "nope"}, None, "method", "unknown method"),
    ({**EDIT, "params": "{not json"}, None, "params", "JSON object"),
    ({**EDIT, "params": '{"num_inference_steps": -3}'}, None, "params.num_inference_steps", "num_inference_steps"),
    (EDIT, b"this is not an image", "image", "image"),
    ({"method": "sdedit", "seed": "0"}, None, "target", "target"),
])
def test_bad_requests_get_422_with_the_field_and_no_job(client, data, image, field, fragment):
    response = _submit(client, data, image=image)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == field and fragment in error["message"] and "\n" not in error["message"]
    assert client.app.state.store.queued() == 0


def test_a_mask_of_the_wrong_size_is_422(client):
    mask = _png(Image.new("L", (10, 10), 255))
    response = _submit(client, mask=("m.png", mask, "image/png"))
    assert response.status_code == 422 and response.json()["error"]["param"] == "mask"


def test_malformed_forms_get_the_same_one_line_error(client):
    missing = client.post("/v1/edits", data=EDIT)
    assert missing.status_code == 422 and missing.json()["error"]["param"] == "image"
    bad_seed = _submit(client, {**EDIT, "seed": "many"})
    assert bad_seed.status_code == 422 and bad_seed.json()["error"]["param"] == "seed"


def test_unknown_ids_are_404_and_ids_are_unguessable(client):
    assert client.get("/v1/jobs/nope").status_code == 404
    assert client.get("/v1/jobs/nope/image").json()["error"]["param"] == "job_id"
    assert client.delete("/v1/jobs/nope").status_code == 404
    ids = {_submit(client).json()["id"] for _ in range(3)}
    assert len(ids) == 3 and all(len(i) >= 22 for i in ids)


def test_uploads_over_the_limits_are_413(tmp_path):
    big = _png(Image.effect_noise((200, 200), 60).convert("RGB"))
    app = create_app(tmp_path / "d", max_upload_bytes=10_000, max_pixels=100_000, make_editor=in_process)
    with TestClient(app) as client:
        too_big = _submit(client, image=big)
        assert too_big.status_code == 413 and too_big.json()["error"]["param"] == "image"
    with TestClient(create_app(tmp_path / "e", max_pixels=64 * 64 - 1, make_editor=in_process)) as client:
        too_many = _submit(client)
        assert too_many.status_code == 413 and "pixels" in too_many.json()["error"]["message"]


def test_api_keys_are_required_when_set(tmp_path):
    with TestClient(create_app(tmp_path / "d", api_keys=frozenset({"s3cret"}), make_editor=in_process)) as client:
        assert client.get("/v1/methods").status_code == 401
        assert client.get("/v1/methods", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/v1/methods", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/healthz").status_code == 200  # liveness stays open


def test_cors_is_off_by_default(client):
    preflight = client.options("/v1/edits", headers={"Origin": "http://evil.example",
                                                     "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


def test_a_full_queue_is_429_and_cancel_stops_queued_and_running_jobs(tmp_path):
    gates = []

    def make(progress):
        gates.append(Gate(progress))
        return gates[-1]

    with TestClient(create_app(tmp_path / "d", max_queue=2, make_editor=make)) as client:
        running = _submit(client).json()["id"]
        while client.get(f"/v1/jobs/{running}").json()["state"] != "running":
            time.sleep(0.02)
        queued = [_submit(client).json()["id"] for _ in range(2)]
        full = _submit(client)
        assert full.status_code == 429 and int(full.headers["retry-after"]) > 0
        assert client.delete(f"/v1/jobs/{queued[0]}").json()["state"] == "cancelled"
        assert client.delete(f"/v1/jobs/{running}").json()["state"] == "running"  # asked to stop
        gates[0].open.set()
        assert _wait(client, running)["state"] == "cancelled"
        assert _wait(client, queued[1])["state"] == "done"
        assert client.get(f"/v1/jobs/{queued[0]}/image").status_code == 409


def test_progress_streams_as_server_sent_events(client):
    job_id = _submit(client).json()["id"]
    events = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert events[-1]["state"] == "done" and len(events) >= 2
    steps = [e["progress"].get("step") for e in events if e["progress"]]
    assert steps == sorted(steps)


def test_a_full_disk_fails_the_job_with_a_clear_message(client, monkeypatch):
    blobs = client.app.state.blobs
    original = blobs.put

    def put(data, suffix=""):
        if suffix == ".png":
            raise OSError(28, "No space left on device")
        return original(data, suffix)

    monkeypatch.setattr(blobs, "put", put)
    job = _wait(client, _submit(client).json()["id"])
    assert job["state"] == "failed" and "No space left on device" in job["error"] and "--data" in job["error"]


def test_sessions_keep_turns_and_undo(client):
    session = client.post("/v1/sessions").json()["id"]
    first = _wait(client, _submit(client, {**EDIT, "session": session}).json()["id"])
    second_input = client.get(f"/v1/jobs/{first['id']}/image").content
    second = _wait(client, _submit(client, {**EDIT, "instruction": "remove the circle", "session": session},
                                   image=second_input).json()["id"])
    turns = client.get(f"/v1/sessions/{session}").json()["turns"]
    assert [t["id"] for t in turns] == [first["id"], second["id"]]
    assert client.post(f"/v1/sessions/{session}/undo").json()["undone"] == second["id"]
    assert [t["id"] for t in client.get(f"/v1/sessions/{session}").json()["turns"]] == [first["id"]]
    assert client.post("/v1/sessions/nope/undo").status_code == 404
    assert _submit(client, {**EDIT, "session": "nope"}).status_code == 404


def test_the_openai_client_edits_through_the_images_api(tmp_path):
    openai = pytest.importorskip("openai")
    port = _free_port()
    server = _serve(tmp_path / "d", port)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
        with open(SCENE, "rb") as image:
            response = client.images.edit(image=image, prompt="make the star blue", n=2, size="128x128")
        assert len(response.data) == 2
        first = Image.open(io.BytesIO(__import__("base64").b64decode(response.data[0].b64_json)))
        assert first.size == (128, 128)
        with open(SCENE, "rb") as image:
            linked = client.images.edit(image=image, prompt="make the star blue", response_format="url")
        import httpx

        assert httpx.get(linked.data[0].url).headers["content-type"] == "image/png"
        with pytest.raises(openai.UnprocessableEntityError):
            with open(SCENE, "rb") as image:
                client.images.edit(image=image, prompt="make the star blue", model="dall-e-2")
    finally:
        server.terminate()
        server.wait(10)


def _until(condition, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
    return value


def test_kill_9_loses_no_finished_result_and_reruns_the_interrupted_job_once(tmp_path):
    import sqlite3

    import httpx

    data, port = tmp_path / "d", _free_port()
    server = _serve(data, port)
    base = f"http://127.0.0.1:{port}"
    ids = []
    try:
        for seed in range(4):
            files = {"image": ("scene.png", SCENE.read_bytes(), "image/png")}
            ids.append(httpx.post(f"{base}/v1/edits", data={**EDIT, "seed": str(seed),
                                                            "params": '{"num_inference_steps": 30}'},
                                  files=files).json()["id"])
        state = lambda i: httpx.get(f"{base}/v1/jobs/{i}").json()["state"]  # noqa: E731
        _until(lambda: state(ids[0]) == "done", "the first job")
        _until(lambda: any(state(i) == "running" for i in ids[1:]), "a running job")
        first_png = httpx.get(f"{base}/v1/jobs/{ids[0]}/image").content
    finally:
        os.kill(server.pid, signal.SIGKILL)
        server.wait(10)
    with sqlite3.connect(data / "jobs.sqlite3") as db:  # what the store held at the kill
        interrupted = [row[0] for row in db.execute("SELECT id FROM jobs WHERE state='running'")]
    assert len(interrupted) == 1
    server = _serve(data, port)
    try:
        jobs = [_until(lambda i=i: (j := httpx.get(f"{base}/v1/jobs/{i}").json())["state"] == "done" and j,
                       f"job {i}") for i in ids]
        assert httpx.get(f"{base}/v1/jobs/{ids[0]}/image").content == first_png
        # the interrupted job ran again, once; every other job once
        assert [j["attempts"] for j in jobs] == [2 if j["id"] in interrupted else 1 for j in jobs]
        assert len(list((data / "files").rglob("*.png"))) == 4  # one output file per job, none twice
    finally:
        server.terminate()
        server.wait(10)


def test_upload_names_never_reach_the_filesystem(client, tmp_path):
    upload = {"image": ("../../../escaped.png", SCENE.read_bytes(), "image/png")}
    job = _wait(client, client.post("/v1/edits", data=EDIT, files=upload).json()["id"])
    assert job["state"] == "done"
    assert not list(tmp_path.rglob("escaped*")) and not (tmp_path.parent / "escaped.png").exists()
    assert client.get("/v1/jobs/..%2F..%2Fjobs.sqlite3/image").status_code == 404


def test_workers_in_separate_connections_claim_each_job_exactly_once(tmp_path):
    from instructedit.serving.store import SQLiteJobStore

    path = tmp_path / "jobs.sqlite3"
    submitted = {SQLiteJobStore(path).submit({"n": i}, "0" * 64).id for i in range(40)}
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        store = SQLiteJobStore(path)
        while (job := store.claim(name)) is not None:
            with lock:
                claimed.append(job.id)
            assert store.finish(job.id, {}, "1" * 64 + ".png", None)
            assert not store.finish(job.id, {}, "1" * 64 + ".png", None)  # a second finish changes nothing

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(submitted)


def test_several_worker_processes_share_the_queue(tmp_path):
    import sqlite3

    import httpx

    data, port = tmp_path / "d", _free_port()
    server = _serve(data, port, "--workers", "2")
    base = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: httpx.get(f"{base}/healthz").json()["workers"] == 2, "two workers")
        ids = [httpx.post(f"{base}/v1/edits", data={**EDIT, "seed": str(s), "params": '{"num_inference_steps": 20}'},
                          files={"image": ("s.png", SCENE.read_bytes(), "image/png")}).json()["id"] for s in range(6)]
        for job_id in ids:
            _until(lambda i=job_id: httpx.get(f"{base}/v1/jobs/{i}").json()["state"] == "done", job_id)
    finally:
        server.terminate()
        server.wait(10)
    with sqlite3.connect(data / "jobs.sqlite3") as db:
        rows = db.execute("SELECT worker, attempts FROM jobs").fetchall()
    assert len({w for w, _ in rows}) == 2 and all(a == 1 for _, a in rows)  # both worked, each job ran once
