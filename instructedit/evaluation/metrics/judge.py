"""A vision-language judge of edits, as GEdit-Bench scores them (VIEScore, Ku et al. 2024; Step1X-Edit's
``GEdit-Bench/viescore``): semantic consistency and perceptual quality from 0 to 10, overall = sqrt(SC * PQ).

Two requests per edit to any OpenAI-compatible chat-completions endpoint serving a vision model (a local vLLM or
llama.cpp server with Qwen2.5-VL, or a hosted provider such as GPT-4.1, GEdit-Bench's judge):

* SC: the VIEScore context, its two-image editing rules and its "editing success / over-editing" rules with the
  instruction, then the input and the edited image; the score is the minimum of the two numbers;
* PQ: the context and the naturalness/artifacts rules, then the edited image alone; again the minimum.

Images go as JPEG data URLs, the edited one resized to the input's size (as ``test_gedit_score.py`` does). The
answer is parsed as VIEScore's ``mllm_output_to_dict`` does (its delimiters, else the outermost ``{...}``, else a
bare ``[a, b]`` list or number); an answer that cannot be parsed is asked once more, and then the edit gets no
score. VIEScore instead *guesses a random score* at that point; we never invent a judgement. Judgements are
cached by (model, prompt, image bytes), in memory and, with ``cache_file``, in a JSON-lines file that a rerun
reads back, so an interrupted benchmark pays for no judgement twice. No judge model ships with instructedit: the
endpoint is configured by ``INSTRUCTEDIT_JUDGE_URL`` (and ``INSTRUCTEDIT_JUDGE_MODEL``, the key in
``INSTRUCTEDIT_JUDGE_API_KEY`` or ``OPENAI_API_KEY``) or the benchmark's ``--judge-url``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ...errors import InstructEditError, InvalidRequestError

URL_ENV, MODEL_ENV, KEY_ENVS = "INSTRUCTEDIT_JUDGE_URL", "INSTRUCTEDIT_JUDGE_MODEL", ("INSTRUCTEDIT_JUDGE_API_KEY",
                                                                                      "OPENAI_API_KEY")

# VIEScore's prompts (TIGER-AI-Lab/VIEScore, MIT licence; as used by GEdit-Bench), verbatim: scores are only
# comparable with the published ones under the same wording.
CONTEXT = """You are a professional digital artist. You will have to evaluate the effectiveness of the AI-generated image(s) based on given rules.
All the input images are AI-generated. All human in the images are AI-generated too. so you need not worry about the privacy confidentials.

You will have to give your output in this way (Keep your reasoning concise and short.):
{
"score" : [...],
"reasoning" : "..."
}"""  # noqa: E501

TWO_IMAGE_EDIT_RULE = """RULES:

Two images will be provided: The first being the original AI-generated image and the second being an edited version of the first.
The objective is to evaluate how successfully the editing instruction has been executed in the second image.

Note that sometimes the two images might look identical due to the failure of image edit.
"""  # noqa: E501

EDIT_RULE_SC = """
From scale 0 to 10: 
A score from 0 to 10 will be given based on the success of the editing. (0 indicates that the scene in the edited image does not follow the editing instruction at all. 10 indicates that the scene in the edited image follow the editing instruction text perfectly.)
A second score from 0 to 10 will rate the degree of overediting in the second image. (0 indicates that the scene in the edited image is completely different from the original. 10 indicates that the edited image can be recognized as a minimal edited yet effective version of original.)
Put the score in a list such that output score = [score1, score2], where 'score1' evaluates the editing success and 'score2' evaluates the degree of overediting.

Editing instruction: <instruction>
"""  # noqa: E501, W291

RULE_PQ = """RULES:

The image is an AI-generated image.
The objective is to evaluate how successfully the image has been generated.

From scale 0 to 10: 
A score from 0 to 10 will be given based on image naturalness. 
(
    0 indicates that the scene in the image does not look natural at all or give a unnatural feeling such as wrong sense of distance, or wrong shadow, or wrong lighting. 
    10 indicates that the image looks natural.
)
A second score from 0 to 10 will rate the image artifacts. 
(
    0 indicates that the image contains a large portion of distortion, or watermark, or scratches, or blurred faces, or unusual body parts, or subjects not harmonized. 
    10 indicates the image has no artifacts.
)
Put the score in a list such that output score = [naturalness, artifacts]
"""  # noqa: E501, W291

SC_PROMPT = "\n".join([CONTEXT, TWO_IMAGE_EDIT_RULE, EDIT_RULE_SC])
PQ_PROMPT = "\n".join([CONTEXT, RULE_PQ])
DELIMITER = "||V^=^V||"


class JudgeError(InstructEditError, RuntimeError):
    """The judge endpoint failed (unreachable, HTTP errors after retries, not a chat-completions answer)."""

    def __init__(self, message: str = "", *, field: str | None = "judge_url", suggest: dict | None = None) -> None:
        super().__init__(message, field=field, suggest=suggest)


def parse_scores(answer: str) -> list[float] | None:
    """The scores in a judge's answer, read as VIEScore reads them; ``None`` when there are none."""
    text = answer.strip()
    if text.count(DELIMITER) == 2:
        text = text[text.find(DELIMITER) + len(DELIMITER): text.rfind(DELIMITER)]
    start, end = text.find("{"), text.rfind("}") + 1
    if start != -1 and end > start:
        body = text[start:end].replace("\n", "")
        try:
            data = json.loads(body)
        except json.JSONDecodeError:
            found = re.search(r'"?score"?\s*:\s*\[([^\]]*)\]', body)
            data = {"score": json.loads(f"[{found.group(1)}]")} if found else None
        scores = data.get("score") if isinstance(data, dict) else None
    else:
        listed = re.search(r"\[\s*\d+(?:\.\d+)?\s*(?:,\s*\d+(?:\.\d+)?\s*)*\]", text)
        scores = json.loads(listed.group(0)) if listed else (int(text) if re.fullmatch(r"\d+", text) else None)
    if isinstance(scores, int | float) and not isinstance(scores, bool):
        scores = [scores]
    if not isinstance(scores, list) or not scores:
        return None
    values = [float(s) for s in scores if isinstance(s, int | float) and not isinstance(s, bool)]
    if len(values) != len(scores) or not all(0 <= v <= 10 for v in values):
        return None
    return values


@dataclass(frozen=True)
class JudgeScores:
    """One edit's judgement: ``semantics`` (SC), ``quality`` (PQ) and ``overall`` = sqrt(SC * PQ), 0 to 10."""

    semantics: float
    quality: float

    @property
    def overall(self) -> float:
        return math.sqrt(self.semantics * self.quality)


def _data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


class VLMJudge:
    """A VIEScore judge behind an OpenAI-compatible endpoint (see the module docstring)."""

    def __init__(self, base_url: str | None = None, *, model: str | None = None, api_key: str | None = None,
                 timeout: float = 120.0, max_retries: int = 3, backoff: float = 1.0, max_tokens: int = 1400,
                 cache_file: str | Path | None = None) -> None:
        from ...instructions.llm import chat_completions_url, is_loopback

        base_url = base_url or os.environ.get(URL_ENV)
        if not base_url:
            raise JudgeError(
                "no judge endpoint is configured (no judge model ships with instructedit): serve a vision model "
                "behind an OpenAI-compatible API (e.g. `vllm serve Qwen/Qwen2.5-VL-72B-Instruct-AWQ`) and pass "
                f"--judge-url http://HOST:PORT/v1, or set {URL_ENV}", suggest={"judge_url": "http://127.0.0.1:8000/v1"})
        try:
            self.url = chat_completions_url(base_url)
        except InvalidRequestError as exc:
            raise JudgeError(str(exc).replace("planner", "judge")) from None
        self.model = model or os.environ.get(MODEL_ENV) or "default"
        self._api_key = api_key or next((os.environ[k] for k in KEY_ENVS if os.environ.get(k)), None)
        if timeout <= 0 or max_retries < 0:
            raise InvalidRequestError("judge timeout must be positive and max_retries 0 or more",
                                      field="judge_timeout")
        self.timeout, self.max_retries, self.backoff, self.max_tokens = timeout, max_retries, backoff, max_tokens
        loopback = is_loopback(urllib.parse.urlsplit(self.url).hostname or "")
        self._opener = urllib.request.build_opener(*([urllib.request.ProxyHandler({})] if loopback else []))
        self._cache: dict[str, list[float] | None] = {}
        self._lock = threading.Lock()
        self.cache_file = Path(cache_file) if cache_file else None
        self.requests_made = 0
        if self.cache_file is not None and self.cache_file.is_file():
            for line in self.cache_file.read_text().splitlines():
                try:
                    entry = json.loads(line)
                    self._cache[entry["key"]] = entry["scores"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut by a crash: that judgement is simply asked again

    @property
    def name(self) -> str:
        return f"vlm-judge:{self.model}@{urllib.parse.urlsplit(self.url).netloc.rpartition('@')[2]}"

    def judge(self, source: Image.Image, edited: Image.Image, instruction: str) -> JudgeScores | None:
        """SC and PQ of ``edited`` as an edit of ``source`` by ``instruction``; ``None`` when the model gave no
        parsable score for either after one more try."""
        edited = edited.convert("RGB").resize(source.size) if edited.size != source.size else edited.convert("RGB")
        semantics = self._scores(SC_PROMPT.replace("<instruction>", instruction), [source, edited])
        quality = self._scores(PQ_PROMPT, [edited])
        if semantics is None or quality is None:
            return None
        return JudgeScores(min(semantics), min(quality))

    def _scores(self, prompt: str, images: list[Image.Image]) -> list[float] | None:
        urls = [_data_url(image) for image in images]
        key = hashlib.sha256(json.dumps([self.model, prompt, urls]).encode()).hexdigest()
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        content = [{"type": "text", "text": prompt}] + [{"type": "image_url", "image_url": {"url": u}} for u in urls]
        scores = None
        for _ in range(2):  # VIEScore asks once more when an answer cannot be parsed
            scores = parse_scores(self._ask(content))
            if scores is not None:
                break
        with self._lock:
            self._cache[key] = scores
            if self.cache_file is not None:
                self.cache_file.parent.mkdir(parents=True, exist_ok=True)
                with open(self.cache_file, "a") as handle:
                    handle.write(json.dumps({"key": key, "scores": scores}) + "\n")
        return scores

    def _ask(self, content: list[dict[str, Any]]) -> str:
        body = {"model": self.model, "messages": [{"role": "user", "content": content}],
                "max_tokens": self.max_tokens, "stream": False}
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        problem = ""
        for attempt in range(self.max_retries + 1):
            request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers,
                                             method="POST")
            self.requests_made += 1
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    data = json.loads(response.read())
                return str(data["choices"][0]["message"]["content"] or "")
            except urllib.error.HTTPError as error:
                if error.code in (401, 403, 404):
                    raise JudgeError(f"the judge at {self.url} answered HTTP {error.code}: check the URL, the model "
                                     f"name ({self.model!r}) and the API key") from None
                problem = f"HTTP {error.code}"
            except urllib.error.URLError as error:
                problem = f"cannot reach it ({error.reason})"
            except (TimeoutError, ConnectionError, OSError) as error:
                problem = f"{type(error).__name__}: {error}"
            except (json.JSONDecodeError, KeyError, IndexError, TypeError):
                raise JudgeError(f"the judge at {self.url} did not answer like a chat-completions endpoint: give "
                                 "the URL of an OpenAI-compatible server") from None
            if attempt < self.max_retries:
                time.sleep(self.backoff * 2**attempt)
        raise JudgeError(f"the judge at {self.url} failed {self.max_retries + 1} times ({problem}): check that the "
                         "server is up and serves a vision model")
