"""A small phrase-conditioned segmenter: (image, phrase) -> a soft mask of what the phrase names.

A three-level convolutional UNet with (x, y) coordinate channels (phrases name places: "on the left"), whose
features are scaled and shifted (FiLM) at every level by a bag-of-words embedding of the phrase over a fixed
vocabulary (unknown words are dropped). Saved as ``config.json`` (vocabulary, widths) + ``model.safetensors``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

_SPELLING = {"grey": "gray", "centre": "center", "middle": "center", "colour": "color", "larger": "bigger",
             "big": "large", "tiny": "small", "little": "small", "circles": "circle", "squares": "square",
             "triangles": "triangle", "stars": "star", "diamonds": "diamond", "crosses": "cross"}


def phrase_words(phrase: str) -> list[str]:
    """The lower-case words of ``phrase``, one spelling each."""
    return [_SPELLING.get(w, w) for w in re.findall(r"[a-z]+", phrase.lower())]


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())


class PhraseSegmenter(nn.Module):
    """``forward(images in [-1, 1] (B, 3, H, W), token ids (B, L), 0 = padding) -> mask logits (B, 1, H, W)``."""

    def __init__(self, vocabulary: list[str], width: int = 32, embed_dim: int = 64, size: int = 64) -> None:
        super().__init__()
        self.vocabulary, self.width, self.embed_dim, self.size = list(vocabulary), width, embed_dim, size
        self._index = {w: i + 1 for i, w in enumerate(self.vocabulary)}
        widths = (width, width * 2, width * 4)
        self.embed = nn.EmbeddingBag(len(self.vocabulary) + 1, embed_dim, mode="mean", padding_idx=0)
        self.text = nn.Sequential(nn.Linear(embed_dim, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU())
        self.down = nn.ModuleList([_block(5, widths[0]), _block(widths[0], widths[1]), _block(widths[1], widths[2])])
        self.up = nn.ModuleList([_block(widths[2] + widths[1], widths[1]), _block(widths[1] + widths[0], widths[0])])
        self.films = nn.ModuleList([nn.Linear(128, 2 * c) for c in (*widths, widths[1], widths[0])])
        self.head = nn.Conv2d(widths[0], 1, 1)

    def tokenize(self, phrases: list[str]) -> torch.Tensor:
        """Token ids (B, L) of known words, 0-padded; a phrase with no known word is all padding."""
        ids = [[self._index[w] for w in phrase_words(p) if w in self._index] for p in phrases]
        length = max(1, max(len(i) for i in ids))
        return torch.tensor([i + [0] * (length - len(i)) for i in ids], dtype=torch.long)

    def known(self, phrase: str) -> bool:
        """True when ``phrase`` has at least one word of the vocabulary."""
        return any(w in self._index for w in phrase_words(phrase))

    def _film(self, x: torch.Tensor, text: torch.Tensor, level: int) -> torch.Tensor:
        scale, shift = self.films[level](text)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + scale) + shift

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=images.device),
                                torch.linspace(-1, 1, w, device=images.device), indexing="ij")
        x = torch.cat([images, xs.expand(b, 1, h, w), ys.expand(b, 1, h, w)], dim=1)
        text = self.text(self.embed(tokens))
        skips = []
        for level, block in enumerate(self.down):
            x = self._film(block(x if level == 0 else F.avg_pool2d(x, 2)), text, level)
            skips.append(x)
        for level, block in enumerate(self.up):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = self._film(block(torch.cat([x, skips[-2 - level]], dim=1)), text, 3 + level)
        return self.head(x)

    def config(self) -> dict:
        return {"vocabulary": self.vocabulary, "width": self.width, "embed_dim": self.embed_dim, "size": self.size}

    def save_pretrained(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(self.config(), indent=1) + "\n", encoding="utf-8")
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, folder / "model.safetensors")
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> PhraseSegmenter:
        folder = Path(folder)
        model = cls(**json.loads((folder / "config.json").read_text(encoding="utf-8")))
        model.load_state_dict(load_file(folder / "model.safetensors"))
        return model.eval()
