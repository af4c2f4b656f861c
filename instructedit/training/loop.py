"""The training loop shared by every trainer, on accelerate (so ``accelerate launch`` runs it on many GPUs).

A :class:`TrainingTask` says what to train (its modules, dataset and loss, and how to save the result); :func:`train`
does the rest: AdamW + learning-rate schedule, gradient accumulation and clipping, optional EMA, mixed precision,
checkpoints every N steps, exact resumption, a JSONL loss log and a tqdm progress bar.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..errors import InvalidRequestError, NumericalError
from .checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint
from .data import collate
from .loss_log import LossLog
from .sampling import StepBatchSampler, step_generator


@dataclass
class TrainingConfig:
    """Optimisation and bookkeeping settings (the names follow diffusers' example scripts)."""

    output_dir: Path
    max_train_steps: int = 1000
    train_batch_size: int = 32
    learning_rate: float = 1e-4
    lr_scheduler: str = "constant"
    lr_warmup_steps: int = 0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    gradient_accumulation_steps: int = 1
    seed: int = 0
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = 2
    resume: bool = False
    mixed_precision: str = "no"
    use_ema: bool = False
    ema_decay: float = 0.9999
    dataloader_num_workers: int = 0
    progress_bar: bool = True

    def validate(self) -> None:
        """Raise InvalidRequestError for settings that cannot work."""
        positive = ("max_train_steps", "train_batch_size", "gradient_accumulation_steps", "checkpointing_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise InvalidRequestError(f"{name} must be ≥ 1, got {getattr(self, name)}.", field=name)
        if not self.learning_rate > 0:
            raise InvalidRequestError(f"learning_rate must be > 0, got {self.learning_rate}.", field="learning_rate")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise InvalidRequestError(f"mixed_precision must be no, fp16 or bf16, got '{self.mixed_precision}'.",
                                      field="mixed_precision")
        if not 0 <= self.ema_decay < 1:
            raise InvalidRequestError(f"ema_decay must be in [0, 1), got {self.ema_decay}.", field="ema_decay")


@dataclass
class TrainingResult:
    """What a finished run produced."""

    output: Path
    global_step: int
    last_loss: float | None
    seconds_per_step: float | None
    resumed_from: int = 0
    extra: dict = field(default_factory=dict)


class TrainingTask(ABC):
    """One kind of training (VAE, text-to-image, InstructPix2Pix)."""

    name: str = "task"

    @abstractmethod
    def dataset(self) -> Dataset:
        """The training samples (dicts; collated with :func:`instructedit.training.data.collate`)."""

    @abstractmethod
    def trainable_modules(self) -> dict[str, torch.nn.Module]:
        """Modules whose parameters are optimised, by name (order matters for checkpoints)."""

    def prepare(self, accelerator: Accelerator) -> None:  # noqa: B027 - optional hook
        """Move frozen modules to the device, precompute caches. Called once before the first step."""

    @abstractmethod
    def compute_loss(
        self, modules: dict[str, torch.nn.Module], batch: dict, generator: torch.Generator, accelerator: Accelerator
    ) -> torch.Tensor:
        """Loss of one micro-batch; all randomness must come from ``generator``."""

    @abstractmethod
    def save_final(self, modules: dict[str, torch.nn.Module], output_dir: Path) -> Path:
        """Save the trained model (``modules`` are unwrapped, EMA weights already copied in); return its path."""

    def describe(self) -> dict:
        """JSON-serialisable settings stored with checkpoints."""
        return {}


def train(task: TrainingTask, config: TrainingConfig) -> TrainingResult:
    """Run ``task`` for ``config.max_train_steps`` optimizer steps (resuming from the latest checkpoint when
    ``config.resume``), then save the final model with ``task.save_final``."""
    config.validate()
    output_dir = Path(config.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps, mixed_precision=config.mixed_precision
    )
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)

    dataset = task.dataset()
    modules = task.trainable_modules()
    for module in modules.values():
        module.train()
    params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    if not params:
        raise InvalidRequestError(f"the {task.name} task has nothing to train: unfreeze at least one module.")
    optimizer = torch.optim.AdamW(
        params,
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.adam_weight_decay,
        eps=config.adam_epsilon,
    )
    lr_scheduler = get_scheduler(
        config.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=config.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=config.max_train_steps * accelerator.num_processes,
    )
    prepared = accelerator.prepare(*modules.values(), optimizer, lr_scheduler)
    wrapped = dict(zip(modules, prepared[: len(modules)], strict=True))
    optimizer, lr_scheduler = prepared[len(modules) :]
    ema = None
    if config.use_ema:
        ema = EMAModel(params, decay=config.ema_decay)
        ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)
    task.prepare(accelerator)

    state = {"task": task.name, "settings": task.describe(), "config": _jsonable(asdict(config))}
    global_step = 0
    checkpoint = latest_checkpoint(output_dir) if config.resume else None
    if checkpoint is not None:
        global_step = int(load_checkpoint(accelerator, checkpoint, task.name)["global_step"])
        accelerator.print(f"resuming from {checkpoint} (step {global_step})")
    resumed_from = global_step

    accumulation = config.gradient_accumulation_steps
    remaining = max(0, config.max_train_steps - global_step)
    sampler = StepBatchSampler(
        len(dataset),
        config.train_batch_size,
        config.seed,
        start=global_step * accumulation,
        count=remaining * accumulation,
        num_processes=accelerator.num_processes,
        process_index=accelerator.process_index,
    )
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=config.dataloader_num_workers)
    log = LossLog(output_dir, keep_until=global_step, enabled=accelerator.is_main_process)
    progress = tqdm(
        total=config.max_train_steps,
        initial=global_step,
        desc=f"train {task.name}",
        disable=not (config.progress_bar and accelerator.is_local_main_process),
    )

    micro_step = global_step * accumulation
    step_loss, last_loss, started = 0.0, None, time.perf_counter()
    for batch in loader:
        generator = step_generator(config.seed, micro_step, accelerator.process_index)
        with accelerator.accumulate(*wrapped.values()):
            loss = task.compute_loss(wrapped, batch, generator, accelerator)
            if not torch.isfinite(loss):
                raise NumericalError(
                    f"{task.name} loss became {loss.item()} at step {global_step + 1}: lower the learning rate, "
                    "check the data, or resume from an earlier checkpoint."
                )
            accelerator.backward(loss)
            if accelerator.sync_gradients and config.max_grad_norm > 0:
                accelerator.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        step_loss += accelerator.gather(loss.detach()[None]).mean().item() / accumulation
        micro_step += 1
        if not accelerator.sync_gradients:
            continue
        if ema is not None:
            ema.step(params)
        global_step += 1
        last_loss, step_loss = step_loss, 0.0
        lr = lr_scheduler.get_last_lr()[0]
        log.write(step=global_step, loss=last_loss, lr=lr, seconds=round(time.perf_counter() - started, 3))
        progress.update(1)
        progress.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}")
        if global_step % config.checkpointing_steps == 0 or global_step == config.max_train_steps:
            save_checkpoint(accelerator, output_dir, global_step, state, config.checkpoints_total_limit)
    progress.close()
    elapsed = time.perf_counter() - started
    done = global_step - resumed_from

    accelerator.wait_for_everyone()
    output = output_dir
    if accelerator.is_main_process:
        unwrapped = {name: accelerator.unwrap_model(module) for name, module in wrapped.items()}
        if ema is not None:
            ema.copy_to(params)
        for module in unwrapped.values():
            module.eval()
        output = task.save_final(unwrapped, output_dir)
    accelerator.end_training()
    return TrainingResult(
        output=output,
        global_step=global_step,
        last_loss=last_loss,
        seconds_per_step=elapsed / done if done else None,
        resumed_from=resumed_from,
    )


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def save_from_checkpoint(
    task: TrainingTask, checkpoint: str | Path, output_dir: str | Path, use_ema: bool = True
) -> Path:
    """Save the model of an intermediate checkpoint of ``task`` as ``train`` saves its final one.

    Useful when a run is stopped early: the weights (with ``use_ema``, the checkpoint's EMA weights, which is what
    ``train`` would have saved) go through ``task.save_final`` into ``output_dir``.
    """
    from safetensors.torch import load_file

    checkpoint = Path(checkpoint)
    modules = task.trainable_modules()
    for i, module in enumerate(modules.values()):  # accelerate names the prepared models in order
        weights = checkpoint / ("model.safetensors" if i == 0 else f"model_{i}.safetensors")
        if not weights.is_file():
            raise InvalidRequestError(f"'{checkpoint}' is not a checkpoint of {task.name} (no {weights.name}).")
        module.load_state_dict(load_file(weights))
    if use_ema:
        ema_file = checkpoint / "custom_checkpoint_0.pkl"
        if not ema_file.is_file():
            raise InvalidRequestError(f"'{checkpoint}' holds no EMA weights: pass use_ema=False.",
                                      field="use_ema", suggest={"use_ema": False})
        params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
        ema = EMAModel(params)
        ema.load_state_dict(torch.load(ema_file, map_location="cpu", weights_only=False))
        ema.copy_to(params)
    for module in modules.values():
        module.eval()
    return task.save_final(modules, Path(output_dir))
