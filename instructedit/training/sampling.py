"""Deterministic data order and randomness: everything a training step draws is a pure function of
(seed, step, process), so a run resumed from a checkpoint continues exactly as if it had never stopped.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

_MASK64 = (1 << 63) - 1


def mix_seed(*values: int) -> int:
    """Combine integers into one 63-bit seed (a SplitMix64-style hash, so nearby inputs give unrelated seeds)."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (value & _MASK64)) * 0xBF58476D1CE4E5B9 & _MASK64
        state ^= state >> 31
        state = state * 0x94D049BB133111EB & _MASK64
        state ^= state >> 29
    return state


def step_generator(seed: int, micro_step: int, process_index: int = 0) -> torch.Generator:
    """The CPU generator for one micro-batch: noise, timesteps, dropout and crops of that step come from it."""
    return torch.Generator().manual_seed(mix_seed(seed, micro_step, process_index))


class StepBatchSampler:
    """Yields the dataset indices of micro-batches ``start, start+1, …, start+count−1``.

    The data are shuffled once per epoch with a permutation seeded by (seed, epoch); the global batch of
    ``batch_size × num_processes`` samples at micro-batch k covers positions [k·B, (k+1)·B) of the concatenated
    epoch permutations, and process p takes its slice of it. Batches may straddle epochs, so every batch is full.
    """

    def __init__(
        self,
        dataset_size: int,
        batch_size: int,
        seed: int,
        start: int,
        count: int,
        num_processes: int = 1,
        process_index: int = 0,
    ) -> None:
        if dataset_size < 1 or batch_size < 1:
            raise ValueError("dataset_size and batch_size must be positive")
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.seed = seed
        self.start = start
        self.count = max(0, count)
        self.num_processes = num_processes
        self.process_index = process_index
        self._epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    def __len__(self) -> int:
        return self.count

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch, 0x5EED))
            self._perm = torch.randperm(self.dataset_size, generator=generator)
            self._epoch = epoch
        return self._perm

    def batch(self, k: int) -> list[int]:
        """Indices of micro-batch ``k`` for this process."""
        global_size = self.batch_size * self.num_processes
        first = k * global_size + self.process_index * self.batch_size
        indices = []
        for position in range(first, first + self.batch_size):
            epoch, offset = divmod(position, self.dataset_size)
            indices.append(int(self._permutation(epoch)[offset]))
        return indices

    def __iter__(self) -> Iterator[list[int]]:
        for k in range(self.start, self.start + self.count):
            yield self.batch(k)
