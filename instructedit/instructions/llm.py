"""A language-model planner: any OpenAI-compatible chat-completions endpoint turns an instruction into edit plans.

The endpoint may be a local llama.cpp (``llama-server``) or vLLM server, or a hosted provider: anything that
speaks ``POST {base}/chat/completions``. The model is asked for JSON that follows :func:`plan_schema`
(``{"plans": [...]}``), with ``"response_format": {"type": "json_object"}`` (JSON mode, understood by vLLM,
llama.cpp's server and OpenAI; a server that refuses it is asked again without it), ``"stream": false`` and
temperature 0. The answer is validated with :meth:`EditPlan.from_dict`; an invalid answer is sent back with the
validation error and the model asked to correct it. When the endpoint cannot give a valid answer (an HTTP error,
a timeout, no server, invalid JSON after every retry) the planner falls back to the rule-based planner with a
:class:`PlannerFallbackWarning`, or raises :class:`PlannerError` when it has no fallback.

Configured by ``--planner URL`` on the command line (see :func:`planner_from_url`); the model name comes from
``INSTRUCTEDIT_PLANNER_MODEL`` and the key from ``INSTRUCTEDIT_PLANNER_API_KEY`` (else ``OPENAI_API_KEY``).
Only the standard library is used.
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from typing import Any, Literal, Protocol

from ..errors import InstructEditError, InvalidRequestError
from .plan import MAX_PLANS, PLAN_TYPES, EditPlan, plan_schema

MODEL_ENV = "INSTRUCTEDIT_PLANNER_MODEL"
"""Environment variable naming the model to ask (else ``"default"``, which llama.cpp's server accepts)."""

API_KEY_ENVS = ("INSTRUCTEDIT_PLANNER_API_KEY", "OPENAI_API_KEY")
"""Environment variables read, in order, for the endpoint's key (sent as ``Authorization: Bearer KEY``)."""

RULES_NAMES = frozenset({"rules", "rule-based", "rule_based"})
"""The ``--planner`` values that name the rule-based planner."""

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
"""Most bytes read from one response: a planner answer is a few kilobytes."""

_RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class PlannerError(InstructEditError, RuntimeError):
    """The language-model planner could not make a valid plan (endpoint unreachable, refused, or invalid answers)."""

    def __init__(self, message: str = "", *, field: str | None = "planner", suggest: dict | None = None) -> None:
        super().__init__(message, field=field, suggest=suggest)


class PlannerFallbackWarning(UserWarning):
    """The language-model planner failed and the fallback (rule-based) planner made the plans instead."""


class _PlanMaker(Protocol):
    def plan(self, instruction: str, *, caption: str | None = None) -> list[EditPlan]: ...


class _Retryable(Exception):
    """A transient endpoint failure (429, 5xx): worth another request after ``delay`` seconds."""

    def __init__(self, message: str, delay: float | None) -> None:
        super().__init__(message)
        self.delay = delay


class _InvalidAnswer(Exception):
    """The model answered, but not with valid plans: worth asking it again with this error."""


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def chat_completions_url(base_url: str) -> str:
    """The chat-completions URL of an endpoint given as a base URL.

    ``http://host:8080/v1`` and ``http://host:8080`` both give ``http://host:8080/v1/chat/completions``; a URL
    already ending in ``/chat/completions`` is kept; a path that already has a version segment (``/openai/v1``,
    ``/v1beta/openai``) gets ``/chat/completions`` appended. Only ``http`` and ``https`` URLs with a host are
    accepted (:class:`InvalidRequestError`, ``field="planner"``, otherwise).
    """
    url = (base_url or "").strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidRequestError(
            f"planner {base_url!r} is not an http(s) URL: give an OpenAI-compatible endpoint such as "
            "http://127.0.0.1:8080/v1, or 'rules' for the rule-based planner", field="planner")
    path = parts.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        if not any(re.fullmatch(r"v\d+\w*", segment) for segment in path.split("/")):
            path += "/v1"
        path += "/chat/completions"
    return urllib.parse.urlunsplit((parts.scheme.lower(), parts.netloc, path, parts.query, ""))


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (requests to them bypass any proxy)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@functools.cache
def _system_prompt() -> str:
    types = {
        "add": "a new object: value = what ('a red star'), location = where; entity = null",
        "remove": "entity = what goes; value = null",
        "replace": "entity becomes value ('a blue heart')",
        "colour": "entity's colour becomes value ('red'); old_value = the old colour when known",
        "attribute": "another attribute (material, texture, expression...): value = the new attribute",
        "size": "entity's size: value = 'bigger', 'smaller' or a size word ('large')",
        "move": "entity goes to value (a position: 'the top left')",
        "background": "the background becomes value ('white', 'a beach'); entity = null",
        "style": "the whole image: value = the style ('a watercolour painting'); entity = null",
    }
    assert set(types) == set(PLAN_TYPES), "the prompt must describe every plan type"
    example_1 = {"plans": [
        {"type": "colour", "instruction": "make the red circle blue", "entity": "the circle", "value": "blue",
         "location": None, "old_value": "red", "reverse": "make the blue circle red",
         "source_caption": "a red circle and a green square on a white background",
         "target_caption": "a blue circle and a green square on a white background",
         "text": "make the circle blue"},
        {"type": "remove", "instruction": "remove the green square", "entity": "the square", "value": None,
         "location": None, "old_value": None, "reverse": "add a green square",
         "source_caption": "a blue circle and a green square on a white background",
         "target_caption": "a blue circle on a white background", "text": "remove the square"},
    ]}
    example_2 = {"plans": [
        {"type": "style", "instruction": "turn the image into a watercolour painting", "entity": None,
         "value": "a watercolour painting", "location": None, "old_value": None, "reverse": None,
         "source_caption": None, "target_caption": None, "text": "turn it into a watercolour"},
    ]}
    lines = [
        "You turn a request to edit an image into edit plans: structured JSON that an image editor applies.",
        "A request may ask for several edits ('make the circle blue and remove the square'): give one plan per "
        f"edit, in the order they are to be applied, at most {MAX_PLANS}.",
        "Plan types:",
        *(f"- {name}: {meaning}" for name, meaning in types.items()),
        "Fields: 'type' and 'instruction' (the edit in plain imperative words, naming the entity) are required. "
        "'entity' is the phrase naming what is edited, as the user wrote it. 'reverse' is the instruction that "
        "undoes the edit, or null when the old state is unknown. 'source_caption'/'target_caption' describe the "
        "image before and after the edit, only when a caption of the image is given (else null). 'text' is the "
        "part of the user's words this plan came from. Every field is a string or null; use no other fields.",
        "Answer with one JSON object and nothing else (no prose, no code fences), following this JSON schema:",
        json.dumps(plan_schema(), separators=(",", ":")),
        "Example. Request: 'make the circle blue and remove the square'. "
        "Caption: 'a red circle and a green square on a white background'. Answer:",
        json.dumps(example_1),
        "Example. Request: 'turn it into a watercolour'. Answer:",
        json.dumps(example_2),
    ]
    return "\n".join(lines)


def _user_message(instruction: str, caption: str | None) -> str:
    text = f"Request: {json.dumps(instruction, ensure_ascii=False)}"
    if caption:
        text += f"\nCaption of the image before the edit: {json.dumps(caption, ensure_ascii=False)}"
    return text + '\nAnswer with the JSON object {"plans": [...]} only.'


_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)


def _extract_json(content: str) -> Any:
    """The JSON value in a model's answer: bare, in a code fence, or after a reasoning block."""
    text = _THINK.sub("", content).strip()
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        start, end = text.find("{"), text.rfind("}")
        if 0 <= start < end and (start, end) != (0, len(text) - 1):
            try:
                return json.loads(text[start:end + 1])
            except json.JSONDecodeError:
                pass
        raise _InvalidAnswer(f"the answer is not valid JSON ({error.msg} at line {error.lineno} column "
                             f"{error.colno})") from None


def parse_plans(content: str, instruction: str, *, caption: str | None = None) -> list[EditPlan]:
    """The plans in a model's answer ``content``, validated against :func:`plan_schema`.

    Accepts ``{"plans": [...]}`` (or a bare list of plans), bare or in a code fence. Each plan's ``text`` is the
    user's ``instruction`` when the model gives none; captions that are not strings are dropped; the first plan's
    ``source_caption`` is ``caption`` when the model gives none. Raises :class:`InvalidRequestError` naming the
    first fault (``plans[1]: ...``) when the answer does not follow the schema.
    """
    try:
        return _parse_plans(content, instruction, caption)
    except _InvalidAnswer as error:
        raise InvalidRequestError(f"planner answer is invalid: {error}", field="planner") from None


def _parse_plans(content: str, instruction: str, caption: str | None) -> list[EditPlan]:
    data = _extract_json(content)
    if isinstance(data, dict):
        if "plans" not in data:
            raise _InvalidAnswer('the answer has no "plans" list: answer {"plans": [ ... ]}')
        extra = sorted(set(data) - {"plans"})
        if extra:
            raise _InvalidAnswer(f"the answer has unknown top-level field(s) {', '.join(extra)}: "
                                 'answer {"plans": [ ... ]} only')
        items = data["plans"]
    else:
        items = data
    if not isinstance(items, list):
        raise _InvalidAnswer(f'"plans" must be a list of plan objects, got {type(items).__name__}')
    if not items:
        raise _InvalidAnswer('"plans" is empty: give at least one plan')
    if len(items) > MAX_PLANS:
        raise _InvalidAnswer(f'"plans" has {len(items)} plans, more than the {MAX_PLANS} allowed: '
                             "merge edits or keep the first ones")
    plans = []
    for index, item in enumerate(items):
        if isinstance(item, dict):
            item = dict(item)
            for name in ("source_caption", "target_caption"):
                if name in item and not isinstance(item[name], str):
                    item[name] = None
            if not isinstance(item.get("text"), str) or not item.get("text", "").strip():
                item["text"] = instruction
            if index == 0 and caption and not item.get("source_caption"):
                item["source_caption"] = caption
        try:
            plans.append(EditPlan.from_dict(item))
        except InvalidRequestError as error:
            raise _InvalidAnswer(f"plans[{index}]: {error}") from None
    return plans


class LLMPlanner:
    """Plans edits by asking an OpenAI-compatible chat-completions endpoint for JSON following the plan schema.

    ``base_url``: the endpoint, e.g. ``http://127.0.0.1:8080/v1`` (a llama.cpp or vLLM server) or
    ``https://api.openai.com/v1``; without ``/v1`` it is appended; a full ``.../chat/completions`` URL is kept
    (see :func:`chat_completions_url`). ``model``: the model name (default ``$INSTRUCTEDIT_PLANNER_MODEL``, else
    ``"default"``). ``api_key``: sent as ``Authorization: Bearer``, default ``$INSTRUCTEDIT_PLANNER_API_KEY``
    else ``$OPENAI_API_KEY``; none is sent when neither is set. ``timeout``: seconds per request (connect and
    each read). ``max_retries``: the most further requests after the first in one :meth:`plan` call, whatever
    the reason (an invalid answer, asked again with its validation error; HTTP 429 or 5xx, after ``backoff``
    seconds doubling, or the server's ``Retry-After`` up to ``max_backoff``). HTTP 400, 401, 403 and 404,
    timeouts and unreachable servers are not retried. ``fallback``: the planner used, with a
    :class:`PlannerFallbackWarning`, when this one fails: ``"rules"`` (default) for the rule-based planner,
    any object with ``plan(instruction, *, caption=None)``, or ``None`` to raise :class:`PlannerError` instead.

    After each :meth:`plan` call, ``last_planner`` names who made the plans (:attr:`name`, or the fallback's
    name), ``last_requests`` counts the requests it made, ``last_usage`` sums the token ``usage`` the endpoint
    reported and ``last_error`` holds the failure reason when it fell back (else ``None``); ``requests_made``
    counts every request. These attributes describe the latest call: one planner shared between threads should
    not rely on them.
    """

    def __init__(self, base_url: str, *, model: str | None = None, api_key: str | None = None,
                 timeout: float = 30.0, max_retries: int = 2, fallback: _PlanMaker | Literal["rules"] | None = "rules",
                 temperature: float = 0, max_tokens: int | None = None, backoff: float = 0.5,
                 max_backoff: float = 5.0) -> None:
        self.url = chat_completions_url(base_url)
        self.model = model or os.environ.get(MODEL_ENV) or "default"
        if api_key is None:
            api_key = next((os.environ[name] for name in API_KEY_ENVS if os.environ.get(name)), None)
        self._api_key = api_key or None
        if timeout <= 0:
            raise InvalidRequestError(f"planner timeout must be positive, got {timeout}", field="timeout")
        if max_retries < 0:
            raise InvalidRequestError(f"planner max_retries must be 0 or more, got {max_retries}",
                                      field="max_retries")
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.backoff = max(0.0, float(backoff))
        self.max_backoff = max(0.0, float(max_backoff))
        self._fallback = fallback
        host = urllib.parse.urlsplit(self.url).hostname or ""
        handlers = [urllib.request.ProxyHandler({})] if is_loopback(host) else []
        self._opener = urllib.request.build_opener(*handlers)
        self.requests_made = 0
        self.last_requests = 0
        self.last_usage: dict[str, int] = {}
        self.last_planner: str | None = None
        self.last_error: str | None = None

    @property
    def name(self) -> str:
        """Which planner this is, for records: ``llm:<model>@<host[:port]>`` (never the key)."""
        return f"llm:{self.model}@{urllib.parse.urlsplit(self.url).netloc.rpartition('@')[2]}"

    @property
    def fallback(self) -> _PlanMaker | None:
        """The planner used when this one fails (the rule-based planner by default), or ``None``."""
        if self._fallback == "rules":
            from .rules import RuleBasedPlanner  # imported late: rules may import this module

            self._fallback = RuleBasedPlanner()
        return self._fallback  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"LLMPlanner({self.url!r}, model={self.model!r})"

    def plan(self, instruction: str, *, caption: str | None = None) -> list[EditPlan]:
        """The edit plans for ``instruction`` (and the source image's ``caption`` when known).

        Falls back to :attr:`fallback` with a :class:`PlannerFallbackWarning` when the endpoint fails; raises
        :class:`PlannerError` when there is no fallback.
        """
        if not isinstance(instruction, str) or not instruction.strip():
            raise InvalidRequestError("instruction is empty: say what to change, e.g. 'make the circle blue'",
                                      field="instruction")
        self.last_requests, self.last_usage, self.last_error, self.last_planner = 0, {}, None, None
        try:
            plans = self._ask(instruction, caption)
        except PlannerError as error:
            fallback = self.fallback
            if fallback is None:
                raise
            self.last_error = str(error)
            fallback_name = getattr(fallback, "name", type(fallback).__name__)
            warnings.warn(f"language-model planner {self.name} failed: {error}; using the {fallback_name} "
                          "planner instead", PlannerFallbackWarning, stacklevel=2)
            plans = fallback.plan(instruction, caption=caption)
            self.last_planner = fallback_name
            return plans
        self.last_planner = self.name
        return plans

    def _ask(self, instruction: str, caption: str | None) -> list[EditPlan]:
        messages: list[dict[str, str]] = [{"role": "system", "content": _system_prompt()},
                                          {"role": "user", "content": _user_message(instruction, caption)}]
        json_mode = True
        invalid: str | None = None
        for attempt in range(self.max_retries + 1):
            body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature,
                                    "stream": False}
            if json_mode:
                body["response_format"] = {"type": "json_object"}
            if self.max_tokens is not None:
                body["max_tokens"] = self.max_tokens
            last = attempt == self.max_retries
            try:
                response = self._post(body)
            except _Retryable as error:
                if last:
                    raise PlannerError(f"{error} after {attempt + 1} requests: check the server's state and load, "
                                       "or plan with the rule-based planner ('rules')") from None
                delay = self.backoff * 2 ** attempt if error.delay is None else error.delay
                time.sleep(min(max(delay, 0.0), self.max_backoff))
                continue
            except _NoJsonMode:
                if last:
                    raise PlannerError(f"{self.url} refused JSON mode (response_format) and no retry was left: "
                                       "raise max_retries or use a server that accepts it") from None
                json_mode = False
                continue
            content, finish = self._content(response)
            try:
                return _parse_plans(content, instruction, caption)
            except _InvalidAnswer as error:
                invalid = str(error)
                if finish == "length":
                    invalid += " (the answer was cut off at the token limit: give a shorter answer)"
                messages = [*messages, {"role": "assistant", "content": content},
                            {"role": "user", "content": f"Your answer is not valid: {invalid}. Answer again with "
                                                        'only the corrected JSON object {"plans": [...]} that '
                                                        "follows the schema."}]
        raise PlannerError(f"model {self.model!r} gave no valid edit plan in {self.max_retries + 1} tries "
                           f"(last: {_one_line(invalid or '')}): use a stronger instruction-following model, "
                           "raise max_retries, or plan with the rule-based planner ('rules')")

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """One request; the decoded response, or :class:`_Retryable` / :class:`_NoJsonMode` / PlannerError."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        self.requests_made += 1
        self.last_requests += 1
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                raw = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as error:
            self._http_error(error, json_mode="response_format" in body)
        except urllib.error.URLError as error:
            reason = error.reason
            if isinstance(reason, TimeoutError):
                raise self._timeout() from None
            if isinstance(reason, ConnectionRefusedError):
                raise PlannerError(f"no planner server answers at {self.url} (connection refused): start the "
                                   "server or fix the URL") from None
            raise PlannerError(f"cannot reach the planner at {self.url} ({_one_line(str(reason), 120)}): check "
                               "the URL and the network") from None
        except TimeoutError:
            raise self._timeout() from None
        except (http.client.HTTPException, ConnectionError, OSError) as error:
            raise PlannerError(f"the planner connection to {self.url} failed ({type(error).__name__}: "
                               f"{_one_line(str(error), 120)}): check the server") from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise PlannerError(f"the planner at {self.url} sent more than {MAX_RESPONSE_BYTES} bytes: it is not a "
                               "chat-completions endpoint, or set max_tokens")
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise PlannerError(f"the planner at {self.url} did not answer with JSON ({_one_line(repr(raw[:80]))}): "
                               "give the URL of an OpenAI-compatible chat-completions endpoint") from None
        if not isinstance(data, dict):
            raise PlannerError(f"the planner at {self.url} answered JSON that is not a chat completion: give the "
                               "URL of an OpenAI-compatible chat-completions endpoint")
        usage = data.get("usage")
        if isinstance(usage, dict):
            for key, value in usage.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    self.last_usage[key] = self.last_usage.get(key, 0) + value
        return data

    def _timeout(self) -> PlannerError:
        return PlannerError(f"the planner at {self.url} did not answer within {self.timeout:g} s: raise the timeout "
                            "or use a faster model or server")

    def _http_error(self, error: urllib.error.HTTPError, *, json_mode: bool) -> None:
        status = error.code
        try:
            detail_raw = error.read(64 * 1024).decode("utf-8", "replace")
        except Exception:  # noqa: BLE001 - the body only adds detail
            detail_raw = ""
        detail = detail_raw
        try:
            parsed = json.loads(detail_raw)
            if isinstance(parsed, dict):
                inner = parsed.get("error", parsed)
                detail = inner.get("message", detail_raw) if isinstance(inner, dict) else str(inner)
        except (json.JSONDecodeError, ValueError):
            pass
        detail = _one_line(str(detail), 200)
        said = f": {detail}" if detail else ""
        if status in _RETRY_STATUSES:
            raise _Retryable(f"the planner at {self.url} answered HTTP {status}{said}",
                             _retry_after(error.headers.get("Retry-After") if error.headers else None))
        if status in (401, 403):
            raise PlannerError(f"the planner at {self.url} refused the API key (HTTP {status}{said}): set "
                               f"{API_KEY_ENVS[0]} (or {API_KEY_ENVS[1]}) to a valid key") from None
        if status == 404:
            raise PlannerError(f"the planner answered HTTP 404 for {self.url} with model {self.model!r}{said}: check "
                               f"the URL (it should end in /v1) and the model name ({MODEL_ENV})") from None
        if status == 400 and json_mode and "response_format" in detail_raw:
            raise _NoJsonMode() from None
        if status in (400, 422):
            raise PlannerError(f"the planner at {self.url} rejected the request (HTTP {status}{said}): check the "
                               f"model name {self.model!r} ({MODEL_ENV}) and the server's options") from None
        raise PlannerError(f"the planner at {self.url} answered HTTP {status}{said}: check the URL and the "
                           "server") from None

    def _content(self, response: dict[str, Any]) -> tuple[str, str | None]:
        choices = response.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise PlannerError(f"the planner at {self.url} answered with no choices: give the URL of an "
                               "OpenAI-compatible chat-completions endpoint")
        choice = choices[0]
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if not isinstance(content, str):
            content = ""
        finish = choice.get("finish_reason")
        return content, finish if isinstance(finish, str) else None


class _NoJsonMode(Exception):
    """The server refused ``response_format`` (HTTP 400 naming it): ask again without it."""


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds; ``None`` when absent or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None


def planner_from_url(url: str | None, **options: Any) -> _PlanMaker:
    """The planner ``--planner`` names: the rule-based planner for ``None``, ``"rules"`` or ``"rule-based"``; an
    :class:`LLMPlanner` for an ``http(s)://`` URL (``options`` go to it: ``model``, ``timeout``, ``fallback``...).

    Anything else raises :class:`InvalidRequestError` with ``field="planner"``.
    """
    if url is None or (isinstance(url, str) and url.strip().lower() in RULES_NAMES):
        from .rules import RuleBasedPlanner

        return RuleBasedPlanner()
    if not isinstance(url, str):
        raise InvalidRequestError(f"planner must be a URL or 'rules', got {type(url).__name__}", field="planner")
    return LLMPlanner(url, **options)


__all__ = ["API_KEY_ENVS", "MODEL_ENV", "LLMPlanner", "PlannerError", "PlannerFallbackWarning",
           "chat_completions_url", "parse_plans", "planner_from_url"]
