"""Prompt encoding with a cache: the same text is encoded once per model, whatever the number of edits."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

import torch

from .memory import execution_device

logger = logging.getLogger(__name__)


def encode_text(tokenizer, text_encoder, text: str) -> torch.Tensor:
    """Hidden states of ``text``, tokenized as diffusers' ``encode_prompt`` does (padded to the encoder's length),
    uncached; differentiable outside ``no_grad`` (DAC trains a LoRA through it)."""
    tokens = tokenizer([text], padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                       return_tensors="pt")
    use_mask = getattr(text_encoder.config, "use_attention_mask", False)
    device = execution_device(text_encoder)
    attention_mask = tokens.attention_mask.to(device) if use_mask else None
    hidden = text_encoder(tokens.input_ids.to(device), attention_mask=attention_mask)[0]
    return hidden.to(text_encoder.dtype)


class PromptEncoder:
    """Text -> hidden states of the text encoder, tokenized as diffusers' ``encode_prompt`` does.

    Each string is encoded on its own and cached (least recently used out first), so the empty prompt of
    classifier-free guidance and a caption reused across a strength sweep cost one encoder call in all.
    """

    def __init__(self, tokenizer, text_encoder, cache_size: int = 256) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.cache_size = cache_size
        self.calls = 0
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def _encode(self, text: str) -> torch.Tensor:
        full_length = len(self.tokenizer(text).input_ids)
        if full_length > self.tokenizer.model_max_length:
            logger.warning("text longer than %d tokens is truncated: %r", self.tokenizer.model_max_length, text)
        self.calls += 1
        with torch.no_grad():
            return encode_text(self.tokenizer, self.text_encoder, text)

    def __call__(self, texts: list[str] | str) -> torch.Tensor:
        """A batch of embeddings, one row per text, in the given order."""
        texts = [texts] if isinstance(texts, str) else texts
        rows = []
        for text in texts:
            with self._lock:
                cached = self._cache.get(text)
                if cached is not None:
                    self._cache.move_to_end(text)
            if cached is None:
                cached = self._encode(text)
                with self._lock:
                    self._cache[text] = cached
                    while len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
            rows.append(cached)
        return torch.cat(rows)
