"""The CLIP BPE tokenizer, built offline from the vocabulary that ships inside the `open-clip-torch` wheel.

Hub ids such as ``openai/clip-vit-large-patch14`` carry ``vocab.json`` and ``merges.txt``; offline we rebuild the
same two files from ``bpe_simple_vocab_16e6.txt.gz`` (the identical BPE that OpenAI released), so the
tokenizer's ids equal those of the hub tokenizers.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from functools import lru_cache
from pathlib import Path

from ..errors import ModelNotFoundError

_NUM_MERGES = 49152 - 256 - 2


def _bytes_to_unicode() -> dict[int, str]:
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes), strict=True))


def bpe_vocabulary_path() -> Path:
    """Path of ``bpe_simple_vocab_16e6.txt.gz`` inside the installed ``open_clip`` package (not imported)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the CLIP BPE vocabulary is not installed: run `pip install --no-deps open-clip-torch`, "
            "or pass a tokenizer folder from the hub"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"
    if not path.exists():
        raise ModelNotFoundError(
            f"{path} is missing: reinstall open-clip-torch (`pip install --no-deps open-clip-torch`)"
        )
    return path


@lru_cache(maxsize=1)
def _vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    lines = gzip.open(bpe_vocabulary_path()).read().decode("utf-8").split("\n")
    merges = lines[1 : _NUM_MERGES + 1]
    base = list(_bytes_to_unicode().values())
    tokens = base + [token + "</w>" for token in base] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}, merges


def write_clip_tokenizer_files(folder: str | Path) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` of the CLIP BPE tokenizer into ``folder``; return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = _vocab_and_merges()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return folder


def build_clip_tokenizer(folder: str | Path, model_max_length: int = 77):
    """A ``transformers.CLIPTokenizer`` equal to the hub's CLIP tokenizer, saved in ``folder`` and returned."""
    from transformers import CLIPTokenizer

    folder = write_clip_tokenizer_files(folder)
    vocab, merges = _vocab_and_merges()
    pairs = [tuple(merge.split()) for merge in merges]
    tokenizer = CLIPTokenizer(vocab=dict(vocab), merges=pairs, model_max_length=model_max_length)
    tokenizer.save_pretrained(folder)
    return tokenizer
