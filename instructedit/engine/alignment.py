"""Which text tokens of two prompts correspond: Prompt-to-Prompt's word and token alignment.

Prompt-to-Prompt carries the source prompt's cross-attention over to the target prompt's tokens. Three maps do it,
as in the authors' ``seq_aligner.py`` (and diffusers' community ``pipeline_prompt2prompt.py``):

* :func:`replacement_mapper` for a word swap (same number of words): a (tokens x tokens) matrix taking each source
  token's attention to the target token(s) in the same place; a word split into a different number of tokens
  shares its attention evenly;
* :func:`refinement_mapper` for added words: a global (Needleman-Wunsch) alignment of the token sequences; target
  tokens with no source counterpart keep their own attention (alpha 0);
* :func:`equalizer` for reweighting: a per-token scale.

Words are the prompt split on spaces; a word's tokens are found by decoding each token and counting characters,
which works for CLIP's BPE and for WordPiece (the built-in models), whose continuation pieces start with ``##``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import InvalidRequestError


def max_tokens(tokenizer) -> int:
    """The text encoder's sequence length (77 for CLIP; the built-in models use 40)."""
    return int(tokenizer.model_max_length)


def word_token_indices(text: str, word: int | str, tokenizer) -> list[int]:
    """Positions (counting the start token as 0) of the tokens of word number ``word`` of ``text``, or of every
    occurrence of the word ``word``; ``[]`` when there is none."""
    words = text.split(" ")
    wanted = {i for i, w in enumerate(words) if w == word} if isinstance(word, str) else {int(word)}
    if not wanted:
        return []
    pieces = [tokenizer.decode([token]).strip("#") for token in tokenizer.encode(text)][1:-1]
    positions, place, length = [], 0, 0
    for index, piece in enumerate(pieces):
        length += len(piece)
        if place in wanted:
            positions.append(index + 1)
        if place < len(words) and length >= len(words[place]):
            place, length = place + 1, 0
    return positions


def replacement_mapper(source: str, target: str, tokenizer) -> torch.Tensor:
    """(tokens, tokens) matrix M with ``target_attention[..., n] = sum_w source_attention[..., w] * M[w, n]``.

    The prompts must have the same number of words; changed words map block to block, the others one to one.
    Unlike the authors' code, tokens after the last changed word map in step (source i to target j) also when a
    changed word has a different token count; theirs map j to j there, shifting those words by the difference.
    """
    source_words, target_words = source.split(" "), target.split(" ")
    if len(source_words) != len(target_words):
        raise InvalidRequestError(
            f"a word swap needs prompts with the same number of words, but the source has {len(source_words)} and "
            f"the target {len(target_words)}: use edit='refine' for prompts that add or remove words",
            field="params.edit",
        )
    size = max_tokens(tokenizer)
    changed = [i for i, (a, b) in enumerate(zip(source_words, target_words, strict=True)) if a != b]
    blocks = [(word_token_indices(source, i, tokenizer), word_token_indices(target, i, tokenizer)) for i in changed]
    mapper = torch.zeros(size, size)
    i = j = 0
    for from_tokens, to_tokens in blocks:
        if not from_tokens or not to_tokens:  # a word the encoder truncated away
            continue
        while i < from_tokens[0] and j < size:
            mapper[i, j] = 1.0
            i, j = i + 1, j + 1
        if len(from_tokens) == len(to_tokens):
            mapper[from_tokens, to_tokens] = 1.0
        else:
            for to_token in to_tokens:
                mapper[from_tokens, to_token] = 1.0 / len(to_tokens)
        i, j = i + len(from_tokens), j + len(to_tokens)
    while i < size and j < size:
        mapper[i, j] = 1.0
        i, j = i + 1, j + 1
    return mapper


def _align(source: Sequence[int], target: Sequence[int]) -> list[int]:
    """For each target token, the source token it aligns to (-1: inserted), by global alignment with the authors'
    scores (match 1, mismatch -1, gap 0) and ties broken as they break them (insertion, deletion, then match)."""
    rows, cols = len(source) + 1, len(target) + 1
    score = [[0] * cols for _ in range(rows)]
    move = [[0] * cols for _ in range(rows)]  # 1 insertion (left), 2 deletion (up), 3 match (diagonal)
    for j in range(1, cols):
        move[0][j] = 1
    for i in range(1, rows):
        move[i][0] = 2
        for j in range(1, cols):
            left, up = score[i][j - 1], score[i - 1][j]
            diagonal = score[i - 1][j - 1] + (1 if source[i - 1] == target[j - 1] else -1)
            best = max(left, up, diagonal)
            score[i][j] = best
            move[i][j] = 1 if best == left else (2 if best == up else 3)
    aligned: list[int] = []
    i, j = len(source), len(target)
    while i > 0 or j > 0:
        step = move[i][j]
        if step == 3:
            i, j = i - 1, j - 1
            aligned.append(i)
        elif step == 1:
            j -= 1
            aligned.append(-1)
        else:
            i -= 1
    return aligned[::-1]


def refinement_mapper(source: str, target: str, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mapper, alphas)``, each of ``tokens`` entries: target token n takes source token ``mapper[n]``'s
    attention where ``alphas[n]`` is 1 and keeps its own where it is 0 (a token the source does not have)."""
    size = max_tokens(tokenizer)
    source_ids, target_ids = tokenizer.encode(source), tokenizer.encode(target)
    aligned = _align(source_ids, target_ids)[:size]
    mapper = torch.arange(size, dtype=torch.int64)  # past the prompt (padding): position to position
    alphas = torch.ones(size)
    mapper[: len(aligned)] = torch.tensor(aligned, dtype=torch.int64)
    alphas[: len(aligned)] = (mapper[: len(aligned)] != -1).float()
    return mapper, alphas


def equalizer(text: str, weights: dict[str, float], tokenizer, *, default: float = 1.0,
              field: str = "params.reweight") -> torch.Tensor:
    """(1, tokens) value per token: ``weights[word]`` on that word's tokens, ``default`` elsewhere (attention
    re-weighting's scale; per-word cross-replace fractions). A word missing from ``text`` is a clear error naming
    ``field``."""
    scale = torch.full((1, max_tokens(tokenizer)), float(default))
    for word, weight in weights.items():
        positions = [p for p in word_token_indices(text, word, tokenizer) if p < scale.shape[1]]
        if not positions:
            verb = "reweight" if field == "params.reweight" else "set"
            raise InvalidRequestError(
                f"cannot {verb} '{word}': it is not a word of the target caption {text!r} "
                "(words are the caption split on spaces)", field=field,
            )
        scale[:, positions] = float(weight)
    return scale


def changed_words(source: str, target: str) -> tuple[list[str], list[str]]:
    """The words of each caption the other lacks (the default local-blend words)."""
    a, b = source.split(" "), target.split(" ")
    return [w for w in a if w not in b], [w for w in b if w not in a]
