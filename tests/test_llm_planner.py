"""The language-model planner against a real local HTTP server that speaks the chat-completions protocol."""

from __future__ import annotations

import json
import socket
import threading
import time
import warnings
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from instructedit.errors import InstructEditError, InvalidRequestError
from instructedit.instructions.llm import (
    LLMPlanner,
    PlannerError,
    PlannerFallbackWarning,
    chat_completions_url,
    parse_plans,
    planner_from_url,
)
from instructedit.instructions.plan import MAX_PLANS, EditPlan

INSTRUCTION = "make the circle blue"
CAPTION = "a red circle on a white background"
GOOD_PLAN = {"type": "colour", "instruction": "make the red circle blue", "entity": "the circle", "value": "blue",
             "old_value": "red"}
EXPECTED = [EditPlan(type="colour", instruction="make the red circle blue", entity="the circle", value="blue",
                     old_value="red", source_caption=CAPTION, text=INSTRUCTION)]


def completion(content: str, **extra) -> dict:
    """A chat-completions response body carrying ``content``."""
    return {"id": "cmpl-1", "object": "chat.completion", "model": "tiny",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}, **extra}


@dataclass
class Reply:
    status: int = 200
    body: object = None  # a dict/list (sent as JSON), str or bytes
    headers: dict = field(default_factory=dict)
    delay: float = 0.0


def ok(content: str) -> Reply:
    return Reply(body=completion(content))


def plans_json(*plans: dict) -> str:
    return json.dumps({"plans": list(plans)})


class ScriptedServer:
    """A local chat-completions server answering each request with the next scripted :class:`Reply`."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = list(replies)
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server spelling
                self._answer()

            def do_GET(self) -> None:  # noqa: N802
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = raw
                outer.requests.append({"method": self.command, "path": self.path,
                                       "headers": dict(self.headers.items()), "json": body})
                reply = outer.replies.pop(0) if outer.replies else Reply(500, {"error": {"message": "no script"}})
                if reply.delay:
                    time.sleep(reply.delay)
                payload = reply.body
                if isinstance(payload, dict | list):
                    payload = json.dumps(payload)
                if isinstance(payload, str):
                    payload = payload.encode()
                payload = payload or b""
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve():
    servers: list[ScriptedServer] = []

    def start(*replies: Reply) -> ScriptedServer:
        server = ScriptedServer(list(replies))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("INSTRUCTEDIT_PLANNER_MODEL", "INSTRUCTEDIT_PLANNER_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


class FakeFallback:
    """A stand-in for the rule-based planner that records its calls."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def plan(self, instruction: str, *, caption: str | None = None) -> list[EditPlan]:
        self.calls.append((instruction, caption))
        return [EditPlan(type="style", instruction="fallback plan", value="fallback", text=instruction)]


def planner(server: ScriptedServer, **options) -> LLMPlanner:
    options.setdefault("fallback", None)
    options.setdefault("backoff", 0.0)
    return LLMPlanner(server.base_url, **options)


# --- the protocol ---------------------------------------------------------------------------------------------


def test_request_shape_and_valid_answer(serve, monkeypatch):
    monkeypatch.setenv("INSTRUCTEDIT_PLANNER_MODEL", "tiny-model")
    monkeypatch.setenv("INSTRUCTEDIT_PLANNER_API_KEY", "sk-test-123")
    server = serve(ok(plans_json(GOOD_PLAN)))
    llm = planner(server)
    plans = llm.plan(INSTRUCTION, caption=CAPTION)
    assert plans == EXPECTED
    (request,) = server.requests
    assert request["method"] == "POST"
    assert request["path"] == "/v1/chat/completions"
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["authorization"] == "Bearer sk-test-123"
    assert headers["content-type"] == "application/json"
    body = request["json"]
    assert body["model"] == "tiny-model"
    assert body["stream"] is False
    assert body["temperature"] == 0
    assert body["response_format"] == {"type": "json_object"}
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user"]
    system, user = (m["content"] for m in body["messages"])
    assert '"plans"' in system and "colour" in system and "maxItems" in system
    assert INSTRUCTION in user and CAPTION in user
    assert llm.name == f"llm:tiny-model@127.0.0.1:{server.port}"
    assert llm.last_planner == llm.name
    assert llm.last_requests == 1 and llm.requests_made == 1
    assert llm.last_usage == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    assert llm.last_error is None


def test_no_key_no_authorization_header_and_openai_key_fallback(serve, monkeypatch):
    server = serve(ok(plans_json(GOOD_PLAN)), ok(plans_json(GOOD_PLAN)))
    planner(server).plan(INSTRUCTION)
    assert "authorization" not in {k.lower() for k in server.requests[0]["headers"]}
    assert server.requests[0]["json"]["model"] == "default"
    assert CAPTION not in server.requests[0]["json"]["messages"][1]["content"]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    planner(server, model="m").plan(INSTRUCTION)
    headers = {k.lower(): v for k, v in server.requests[1]["headers"].items()}
    assert headers["authorization"] == "Bearer sk-openai"
    assert server.requests[1]["json"]["model"] == "m"


def test_code_fenced_answer_accepted(serve):
    server = serve(ok("Here you go:\n```json\n" + plans_json(GOOD_PLAN) + "\n```\n"))
    assert planner(server).plan(INSTRUCTION, caption=CAPTION) == EXPECTED


def test_text_filled_and_non_string_captions_dropped(serve):
    plan = {**GOOD_PLAN, "text": "the circle part", "target_caption": 3, "source_caption": ["x"]}
    second = {"type": "remove", "instruction": "remove the square", "entity": "the square", "text": None}
    server = serve(ok(plans_json(plan, second)))
    first, other = planner(server).plan(INSTRUCTION)
    assert first.text == "the circle part"
    assert first.source_caption is None and first.target_caption is None
    assert other.text == INSTRUCTION


def test_malformed_json_then_valid_is_retried_with_the_error(serve):
    server = serve(ok('{"plans": [{"type": "colour", '), ok(plans_json(GOOD_PLAN)))
    llm = planner(server)
    assert llm.plan(INSTRUCTION, caption=CAPTION) == EXPECTED
    assert len(server.requests) == 2 and llm.last_requests == 2
    messages = server.requests[1]["json"]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == '{"plans": [{"type": "colour", '
    assert "not valid JSON" in messages[3]["content"]
    assert llm.last_usage["total_tokens"] == 30


def test_schema_error_text_sent_back(serve):
    bad = {"type": "colour", "instruction": "make it blue", "entity": "the circle"}  # no value
    server = serve(ok(plans_json(bad)), ok(plans_json(GOOD_PLAN)))
    assert planner(server).plan(INSTRUCTION, caption=CAPTION) == EXPECTED
    correction = server.requests[1]["json"]["messages"][-1]["content"]
    assert "plans[0]" in correction and "needs the new value" in correction


@pytest.mark.parametrize("answer", [
    plans_json({"type": "recolour", "instruction": "make it blue", "entity": "it", "value": "blue"}),
    plans_json({"type": "colour", "instruction": "make it blue", "entity": "it"}),
    json.dumps({"plans": []}),
    json.dumps({"edits": [GOOD_PLAN]}),
])
def test_invalid_until_retries_exhausted_falls_back(serve, answer):
    server = serve(*[ok(answer)] * 3)
    fallback = FakeFallback()
    llm = planner(server, max_retries=2, fallback=fallback)
    with pytest.warns(PlannerFallbackWarning, match="no valid edit plan in 3 tries"):
        plans = llm.plan(INSTRUCTION, caption=CAPTION)
    assert plans == fallback.plan(INSTRUCTION)
    assert fallback.calls[0] == (INSTRUCTION, CAPTION)
    assert len(server.requests) == 3
    assert llm.last_planner == "fake" and "no valid edit plan" in llm.last_error


def test_invalid_without_fallback_raises(serve):
    server = serve(*[ok("not json at all")] * 2)
    with pytest.raises(PlannerError) as caught:
        planner(server, max_retries=1).plan(INSTRUCTION)
    assert caught.value.field == "planner"
    assert isinstance(caught.value, InstructEditError)
    assert "\n" not in str(caught.value)


def test_too_many_plans_is_invalid(serve):
    many = [{**GOOD_PLAN, "text": f"part {i}"} for i in range(MAX_PLANS + 1)]
    server = serve(ok(plans_json(*many)), ok(plans_json(*many[:MAX_PLANS])))
    plans = planner(server).plan(INSTRUCTION)
    assert len(plans) == MAX_PLANS
    assert f"more than the {MAX_PLANS} allowed" in server.requests[1]["json"]["messages"][-1]["content"]


def test_real_rule_based_fallback(serve):
    rules = pytest.importorskip("instructedit.instructions.rules")
    server = serve(*[ok("nope")] * 2)
    llm = LLMPlanner(server.base_url, max_retries=1)  # default fallback: the rule-based planner
    with pytest.warns(PlannerFallbackWarning):
        plans = llm.plan(INSTRUCTION, caption=CAPTION)
    assert plans == rules.RuleBasedPlanner().plan(INSTRUCTION, caption=CAPTION)
    assert llm.last_planner == "rules"


# --- HTTP errors ----------------------------------------------------------------------------------------------


def test_500_then_200_is_retried(serve):
    server = serve(Reply(500, {"error": {"message": "overloaded"}}), ok(plans_json(GOOD_PLAN)))
    assert planner(server).plan(INSTRUCTION, caption=CAPTION) == EXPECTED
    assert len(server.requests) == 2
    assert len(server.requests[1]["json"]["messages"]) == 2  # a transport retry sends the same request


def test_429_with_retry_after_is_retried(serve):
    server = serve(Reply(429, {"error": {"message": "rate limited"}}, {"Retry-After": "0"}), ok(plans_json(GOOD_PLAN)))
    start = time.monotonic()
    assert planner(server, backoff=5.0).plan(INSTRUCTION, caption=CAPTION) == EXPECTED
    assert time.monotonic() - start < 2.0  # Retry-After: 0 beats the 5 s backoff
    assert len(server.requests) == 2


def test_persistent_503_gives_up(serve):
    server = serve(*[Reply(503, "busy")] * 3)
    with pytest.raises(PlannerError, match="HTTP 503"):
        planner(server, max_retries=2).plan(INSTRUCTION)
    assert len(server.requests) == 3


def test_401_not_retried_names_the_key(serve):
    server = serve(Reply(401, {"error": {"message": "Incorrect API key provided"}}), ok(plans_json(GOOD_PLAN)))
    with pytest.raises(PlannerError, match="API key") as caught:
        planner(server).plan(INSTRUCTION)
    assert "INSTRUCTEDIT_PLANNER_API_KEY" in str(caught.value)
    assert len(server.requests) == 1


def test_404_not_retried_names_url_and_model(serve):
    server = serve(Reply(404, {"error": {"message": "model 'nope' not found"}}), ok(plans_json(GOOD_PLAN)))
    with pytest.raises(PlannerError) as caught:
        planner(server, model="nope").plan(INSTRUCTION)
    message = str(caught.value)
    assert "404" in message and "URL" in message and "'nope'" in message
    assert len(server.requests) == 1


def test_400_refusing_json_mode_is_asked_without_it(serve):
    refusal = Reply(400, {"error": {"message": "response_format is not supported"}})
    server = serve(refusal, ok(plans_json(GOOD_PLAN)))
    assert planner(server).plan(INSTRUCTION, caption=CAPTION) == EXPECTED
    assert "response_format" in server.requests[0]["json"]
    assert "response_format" not in server.requests[1]["json"]


def test_other_400_not_retried(serve):
    server = serve(Reply(400, {"error": {"message": "bad model"}}), ok(plans_json(GOOD_PLAN)))
    with pytest.raises(PlannerError, match="HTTP 400: bad model"):
        planner(server).plan(INSTRUCTION)
    assert len(server.requests) == 1


def test_http_error_falls_back_with_warning(serve):
    server = serve(Reply(401, "no"))
    fallback = FakeFallback()
    with pytest.warns(PlannerFallbackWarning, match="API key"):
        plans = planner(server, fallback=fallback).plan(INSTRUCTION)
    assert plans[0].instruction == "fallback plan"


def test_non_json_response_body(serve):
    server = serve(Reply(200, "<html>hello</html>"))
    with pytest.raises(PlannerError, match="did not answer with JSON"):
        planner(server).plan(INSTRUCTION)


# --- timeouts and unreachable servers -------------------------------------------------------------------------


def test_timeout_is_bounded(serve):
    server = serve(Reply(delay=1.0, body=completion(plans_json(GOOD_PLAN))))
    fallback = FakeFallback()
    start = time.monotonic()
    with pytest.warns(PlannerFallbackWarning, match="did not answer within 0.2 s"):
        plans = planner(server, timeout=0.2, fallback=fallback).plan(INSTRUCTION)
    assert time.monotonic() - start < 0.9
    assert plans[0].instruction == "fallback plan"
    assert len(server.requests) == 1  # a timeout is not retried


def test_timeout_without_fallback_raises(serve):
    server = serve(Reply(delay=1.0, body=completion(plans_json(GOOD_PLAN))))
    start = time.monotonic()
    with pytest.raises(PlannerError, match="timeout"):
        planner(server, timeout=0.2).plan(INSTRUCTION)
    assert time.monotonic() - start < 0.9


def test_connection_refused_is_a_clear_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(PlannerError, match="connection refused") as caught:
        LLMPlanner(f"http://127.0.0.1:{port}/v1", fallback=None, timeout=2.0).plan(INSTRUCTION)
    assert time.monotonic() - start < 2.0
    assert caught.value.field == "planner"
    assert "start the server or fix the URL" in str(caught.value)


def test_fallback_warning_not_raised_on_success(serve):
    server = serve(ok(plans_json(GOOD_PLAN)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        planner(server, fallback=FakeFallback()).plan(INSTRUCTION)


# --- configuration --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [
    ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1/chat/completions"),
    ("http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080/v1/chat/completions"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1/chat/completions"),
    ("https://api.example.com/v1/chat/completions", "https://api.example.com/v1/chat/completions"),
    ("https://api.example.com/openai/v1", "https://api.example.com/openai/v1/chat/completions"),
    ("HTTPS://host/v1beta/openai", "https://host/v1beta/openai/chat/completions"),
])
def test_chat_completions_url(given, expected):
    assert chat_completions_url(given) == expected


def test_planner_with_url_without_v1(serve):
    server = serve(ok(plans_json(GOOD_PLAN)))
    LLMPlanner(f"http://127.0.0.1:{server.port}", fallback=None).plan(INSTRUCTION)
    assert server.requests[0]["path"] == "/v1/chat/completions"


@pytest.mark.parametrize("bad", ["ftp://host/v1", "file:///tmp/x", "127.0.0.1:8080", "http://", "", "llama"])
def test_planner_from_url_refuses_non_http(bad):
    with pytest.raises(InvalidRequestError) as caught:
        planner_from_url(bad)
    assert caught.value.field == "planner"


def test_planner_from_url_gives_llm_planner(monkeypatch):
    monkeypatch.setenv("INSTRUCTEDIT_PLANNER_MODEL", "qwen")
    made = planner_from_url("http://localhost:8000/v1", timeout=3.0)
    assert isinstance(made, LLMPlanner)
    assert made.name == "llm:qwen@localhost:8000" and made.timeout == 3.0


def test_name_never_shows_credentials():
    assert LLMPlanner("https://user:secret@api.example.com/v1", model="m").name == "llm:m@api.example.com"


@pytest.mark.parametrize("name", [None, "rules", "rule-based", " Rules "])
def test_planner_from_url_gives_rule_based(name):
    rules = pytest.importorskip("instructedit.instructions.rules")
    made = planner_from_url(name)
    assert isinstance(made, rules.RuleBasedPlanner)
    assert made.name == "rules"


def test_parse_plans_public_helper():
    assert parse_plans(plans_json(GOOD_PLAN), INSTRUCTION, caption=CAPTION) == EXPECTED
    assert parse_plans(json.dumps([GOOD_PLAN]), INSTRUCTION, caption=CAPTION) == EXPECTED  # a bare list
    with pytest.raises(InvalidRequestError, match="not valid JSON"):
        parse_plans("{", INSTRUCTION)


def test_bad_options_refused():
    with pytest.raises(InvalidRequestError):
        LLMPlanner("http://127.0.0.1:1/v1", timeout=0)
    with pytest.raises(InvalidRequestError):
        LLMPlanner("http://127.0.0.1:1/v1", max_retries=-1)
    with pytest.raises(InvalidRequestError, match="instruction is empty"):
        LLMPlanner("http://127.0.0.1:1/v1").plan("  ")
