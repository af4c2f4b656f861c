"""Shared fixtures: tiny random Stable-Diffusion components, built offline once per session."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory):
    """Folders of tiny random pipelines: ``tiny_pipeline_dir(kind, prediction_type)`` -> path (cached)."""
    from instructedit.models.tiny import save_tiny_pipeline

    cache: dict[tuple[str, str], str] = {}
    root = tmp_path_factory.mktemp("tiny-models")

    def get(kind: str = "t2i", prediction_type: str = "epsilon") -> str:
        if (kind, prediction_type) not in cache:
            cache[(kind, prediction_type)] = str(
                save_tiny_pipeline(root / f"{kind}-{prediction_type}", kind=kind, prediction_type=prediction_type)
            )
        return cache[(kind, prediction_type)]

    return get


@pytest.fixture(scope="session")
def test_image() -> Image.Image:
    """A 32x32 RGB image with structure (gradients and a square), deterministic."""
    y, x = np.mgrid[0:32, 0:32]
    array = np.stack([x * 8, y * 8, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    array[8:20, 10:22] = [250, 30, 30]
    return Image.fromarray(array)


class _Judge(BaseHTTPRequestHandler):
    """Answers SC requests (two images) with ``[8, 6]`` between VIEScore's delimiters and PQ requests (one image)
    with bare JSON ``[7, 9]``; ``server.script`` may first fail or answer nonsense."""

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        if self.server.script:
            step = self.server.script.pop(0)
            if isinstance(step, int):
                self.send_response(step)
                self.end_headers()
                return
            answer = step
        else:
            content = body["messages"][0]["content"]
            images = [c for c in content if c["type"] == "image_url"]
            assert all(c["image_url"]["url"].startswith("data:image/jpeg;base64,") for c in images)
            text = content[0]["text"]
            if len(images) == 2:
                assert "Editing instruction: " in text and "overediting" in text
                self.server.instructions.append(text.rsplit("Editing instruction: ", 1)[1].strip())
                answer = '||V^=^V||\n{\n"score" : [8, 6],\n"reasoning" : "ok"\n}\n||V^=^V||'
            else:
                assert "naturalness" in text and "<instruction>" not in text
                answer = '{"score": [7, 9], "reasoning": "fine"}'
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def judge_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    server.requests, server.script, server.instructions = [], [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
