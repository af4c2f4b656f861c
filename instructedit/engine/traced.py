"""The UNet's plain forward replayed from a TorchScript trace, recorded once per input signature (CPU).

A small UNet on a CPU spends most of each call in Python (diffusers' module calls, attention-processor dispatch,
argument checks), not in arithmetic: the built-in 2M-parameter UNet takes ~15 ms a call eager and ~9 ms replayed
from a trace, with bit-identical outputs. Editing calls the UNet the same way at every step (same shapes, same
weights), so a trace recorded on the first call serves the rest.

Only calls a trace reproduces exactly are replayed: CPU tensors, no gradients, eval mode, no extra keyword
arguments (attention-processor kwargs, added conditions), no forward hooks on the UNet or any submodule (a
trace would skip them: a user's feature-capturing hook, a test's fault injection), and only diffusers' stock
stateless attention processors (or ones declaring ``traceable = True``): a stateful processor, such as the
attention controllers of :mod:`instructedit.engine.attention`, would run once while recording and never again.
Everything else, and any signature whose tracing fails (``torch.jit.trace`` is deprecated upstream and may go
away), runs the module itself.

A trace is keyed by the input shapes and dtypes, the weights' dtype and the module structure (ids of every
submodule and attention processor), so swapping processors or injecting adapters records a new one; in-place
weight updates are seen by existing traces because they share the module's parameters.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

MAX_TRACES = 32
TRACE_AFTER = 40

_STATELESS_PROCESSORS = ("AttnProcessor", "AttnProcessor2_0", "FusedAttnProcessor2_0", "XFormersAttnProcessor")


def _traceable(processor: object) -> bool:
    """True for processors whose call is a pure function of its inputs and the module's weights."""
    declared = getattr(processor, "traceable", None)
    if declared is not None:
        return bool(declared)
    cls = type(processor)
    return cls.__module__.startswith("diffusers.") and cls.__name__ in _STATELESS_PROCESSORS


class _PlainForward(torch.nn.Module):
    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        return self.unet(sample, timesteps, encoder_hidden_states=hidden, return_dict=False)[0]


def batch_timesteps(timestep: Any, sample: torch.Tensor) -> torch.Tensor:
    """``timestep`` as the UNet itself turns it into one value per batch item (same dtype, so the same result)."""
    if not torch.is_tensor(timestep):
        dtype = torch.float64 if isinstance(timestep, float) else torch.int64
        timestep = torch.tensor([timestep], dtype=dtype, device=sample.device)
    elif timestep.ndim == 0:
        timestep = timestep[None].to(sample.device)
    return timestep.expand(sample.shape[0])


class TracedUNet(torch.nn.Module):
    """Calls like the UNet (``(sample, timestep, encoder_hidden_states=..., return_dict=...)``); see the module
    docstring for when a trace replays the call. Forward hooks registered here (the editor's UNet-call counter)
    see every call, replayed or not."""

    def __init__(self, unet: torch.nn.Module, enabled: bool = True, trace_after: int = TRACE_AFTER) -> None:
        super().__init__()
        object.__setattr__(self, "_unet", unet)  # not a submodule: its hooks fire only on eager calls
        self._traces: dict[tuple, torch.jit.ScriptModule | None] = {}
        self._eager_calls: dict[tuple, int] = {}
        self.enabled = enabled  # False: always the module itself (benchmarks compare both)
        self.trace_after = trace_after  # eager calls of a signature before it is traced (0: trace at once)

    @contextmanager
    def eager(self) -> Iterator[None]:
        """Run the module itself on every call inside the block (benchmarks time both ways)."""
        enabled, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = enabled

    @property
    def unet(self) -> torch.nn.Module:
        return self._unet

    @property
    def config(self):
        return self._unet.config

    def forward(
        self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor | None = None,
        return_dict: bool = True, **kwargs: Any,
    ):
        unet = self._unet
        replayable = (
            self.enabled and not kwargs and sample.device.type == "cpu" and torch.is_tensor(encoder_hidden_states)
            and not unet.training and not torch.is_grad_enabled()
        )
        structure = self._structure() if replayable else None
        trace = None
        if structure is not None:
            timesteps = batch_timesteps(timestep, sample)
            trace = self._trace_for(sample, timesteps, encoder_hidden_states, structure)
        if trace is None:
            return unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=return_dict,
                        **kwargs)
        out = trace(sample, timesteps, encoder_hidden_states)
        if not return_dict:
            return (out,)
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        return UNet2DConditionOutput(sample=out)

    def _structure(self) -> tuple | None:
        """Ids of every submodule and attention processor; ``None`` where a hook would be skipped by a trace.

        A plain walk over ``_modules``: ``Module.modules()`` costs more than the replay saves on a small UNet.
        """
        if torch.nn.modules.module._global_forward_hooks or torch.nn.modules.module._global_forward_pre_hooks:
            return None
        ids: list[int] = []
        stack = [self._unet]
        while stack:
            module = stack.pop()
            if module._forward_hooks or module._forward_pre_hooks or "_hf_hook" in module.__dict__:
                return None  # a hook (accelerate's offloading replaces forward) would be skipped by a trace
            processor = module.__dict__.get("processor")
            if processor is not None and not _traceable(processor):
                return None
            ids += (id(module), id(processor))
            stack.extend(module._modules.values())
        return tuple(ids)

    def _trace_for(self, sample: torch.Tensor, timesteps: torch.Tensor, hidden: torch.Tensor, structure: tuple):
        weights = next(self._unet.parameters())
        key = (tuple(sample.shape), sample.dtype, timesteps.dtype, tuple(hidden.shape), hidden.dtype,
               weights.dtype, structure)
        if key not in self._traces:
            seen = self._eager_calls.get(key, 0)
            if seen < self.trace_after:
                if len(self._eager_calls) >= MAX_TRACES and key not in self._eager_calls:
                    del self._eager_calls[next(iter(self._eager_calls))]
                self._eager_calls[key] = seen + 1
                return None
            self._eager_calls.pop(key, None)
            if len(self._traces) >= MAX_TRACES:  # many image sizes: keep memory bounded, the oldest go first
                del self._traces[next(iter(self._traces))]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # TracerWarnings on shape checks (keyed above) and deprecation
                    self._traces[key] = torch.jit.trace(
                        _PlainForward(self._unet), (sample, timesteps, hidden), check_trace=False
                    )
            except Exception:  # noqa: BLE001 - any tracing failure means: run the module itself
                self._traces[key] = None
        return self._traces[key]
