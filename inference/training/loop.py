"""The shared training loop: seeded sampling, AdamW + cosine schedule, weight EMA, bf16 autocast on CUDA,
a checkpoint after every epoch (``--resume`` continues from it, bit-identical on CPU), tqdm progress."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from dermnode.kernel.errors import InferenceError
from inference.models.devices import resolve_device
from inference.training.data import VALIDATION_IDS

#: Loss of one batch given the model, the batch's row indices and the augmentation generator.
LossFn = Callable[[nn.Module, torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (the CLI flags of ``dermnode train classify|segment``)."""

    data: Path
    out: Path
    epochs: int
    device: str = "auto"
    seed: int = 0
    image_size: int = 96
    resume: bool = False
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    ema_decay: float = 0.995
    cache_dir: Path | None = Path("pack")
    checkpoint: Path | None = None
    validation_ids: Path = VALIDATION_IDS
    threads: int | None = None
    max_minutes: float | None = None
    version: str = "1.0.0"
    command: str = ""
    progress: bool = True
    #: The recipe's architecture (see :mod:`inference.training.recipes`).
    arch: str = "scratch"
    #: ``labels.csv`` sources left out of training and calibration (leave-one-source-out runs).
    exclude_sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2 (batch norm), got {self.batch_size}")

    @property
    def checkpoint_path(self) -> Path:
        return self.checkpoint or Path("runs") / self.out.name / "checkpoint.pt"


@dataclass(frozen=True)
class TrainResult:
    """The EMA model after training and what the run measured about itself."""

    model: nn.Module
    epochs_done: int
    images_seen: int
    train_seconds: float
    final_loss: float
    history: tuple[str, ...] = ()

    @property
    def images_per_second(self) -> float:
        return self.images_seen / self.train_seconds if self.train_seconds > 0 else 0.0


def run_record(config: TrainConfig, result: TrainResult) -> dict[str, object]:
    """How a bundle was trained (command, settings, speed, history): the run part of its training record."""
    return {
        "command": config.command,
        "seed": config.seed,
        "epochs": result.epochs_done,
        "image_size": config.image_size,
        "batch_size": config.batch_size,
        "device": config.device,
        "arch": config.arch,
        "images_per_second": round(result.images_per_second, 1),
        "train_minutes": round(result.train_seconds / 60, 1),
        "final_loss": round(result.final_loss, 4),
        "history": list(result.history),
    }


def seeded_generator(seed: int) -> torch.Generator:
    """Seed torch globally (weights init) and return the CPU generator used for sampling and augmentation."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA; full fp32 on CPU (deterministic and as fast for these small nets)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train(
    config: TrainConfig,
    model: nn.Module,
    sample_weights: torch.Tensor,
    loss_fn: LossFn,
    gen: torch.Generator,
) -> TrainResult:
    """Train ``model`` for ``config.epochs`` epochs of ``len(sample_weights)`` weighted draws each."""
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    model.to(device)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n = len(sample_weights)
    steps = max(1, n // config.batch_size)
    total = steps * config.epochs
    warmup = min(steps, total // 10 + 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda step: (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * step / total)),
    )
    start_epoch, seen, spent, loss_value = 0, 0, 0.0, float("nan")
    history: list[str] = []
    path = config.checkpoint_path
    if config.resume and path.is_file():
        state = torch.load(path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, seen, spent = state["epoch"], state["images_seen"], state["train_seconds"]
        loss_value = state["loss"]
        history = list(state.get("history", []))
    elif config.resume:
        print(f"no checkpoint at {path}; starting from epoch 1")
    first_epoch = start_epoch
    for epoch in range(start_epoch, config.epochs):
        if config.max_minutes is not None and spent / 60 >= config.max_minutes:
            print(f"stopping after {epoch} epochs: the {config.max_minutes} minute budget is spent")
            break
        began = time.perf_counter()
        model.train()
        order = torch.multinomial(sample_weights, steps * config.batch_size, replacement=True, generator=gen)
        bar = tqdm(
            order.view(steps, config.batch_size),
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not config.progress,
            mininterval=10,
        )
        running = 0.0
        for i, rows in enumerate(bar):
            with autocast(device):
                loss = loss_fn(model, rows, gen)
            if not torch.isfinite(loss):
                raise InferenceError(f"Training loss became {loss.item()} at epoch {epoch + 1}; lower --lr.")
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            ema.update_parameters(model)
            running += float(loss.item())
            bar.set_postfix(loss=f"{running / (i + 1):.4f}")
        loss_value = running / steps
        seen += steps * config.batch_size
        spent += time.perf_counter() - began
        print(f"epoch {epoch + 1}: loss {loss_value:.4f}, {seen / spent:.1f} images/s", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        run = [f"epochs {first_epoch + 1}-{epoch + 1}: {config.command or 'train'}"]
        torch.save(
            {
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "optimiser": optimiser.state_dict(),
                "schedule": schedule.state_dict(),
                "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "epoch": epoch + 1,
                "images_seen": seen,
                "train_seconds": spent,
                "loss": loss_value,
                "history": [*history, *run],
            },
            path.with_suffix(".tmp"),
        )
        path.with_suffix(".tmp").replace(path)
        start_epoch = epoch + 1
    if start_epoch > first_epoch:
        history.append(f"epochs {first_epoch + 1}-{start_epoch}: {config.command or 'train'}")
    final = ema.module
    final.eval()
    return TrainResult(final, start_epoch, seen, spent, loss_value, tuple(history))
