"""The NaN/inf guard of training steps, for every backbone's Trainer.

- ``NonFiniteGuardMixin`` (in ``MungTrainerMixin``): a NaN/inf in the generator's output or in the loss is caught at
  the step it appears and reported with the global step and the ids of the batch's samples (the collator's
  ``sample_ids`` key), instead of being trained on. ``--on_nonfinite raise`` (default) stops the run; ``skip_step``
  drops that batch (no gradient from it) and counts it in the logs. A run whose every batch was dropped trained
  nothing: it fails at its last step, before the final checkpoint is written (counted over all ranks). Skipped bad
  samples of the dataset (``dataset.skipped``) are logged the same way.
- fp16 with a gradient scaler needs float32 master weights: trainable float16 parameters are upcast (the generator
  computes in its own dtype and hands back the inputs' dtype, so the frozen fp16 model is unaffected).
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import torch
from torch import nn
from transformers import TrainerCallback

from noise_generator import NoiseGenerator, PaddedNoiseOutput, find_noise_generator

from .flags import check_on_nonfinite

logger = logging.getLogger(__name__)

SAMPLE_IDS_KEY = "sample_ids"


class NonFiniteError(FloatingPointError):
    """A NaN or inf in the generator's output or the loss during training; the message names the step and samples."""


class GeneratorOutputMonitor:
    """Forward hook on a ``NoiseGenerator`` that remembers whether any output tensor held a NaN/inf.

    The flag stays a device tensor (no host sync per call); ``pop()`` returns it (or None) and resets it.
    """

    def __init__(self, generator: NoiseGenerator):
        self._flag: Optional[torch.Tensor] = None
        self._handle = generator.register_forward_hook(self._record)

    def _record(self, module: nn.Module, args: tuple, output: Any) -> None:
        groups = (output.image_embeds, output.noise, output.mu, output.log_sigma)
        if isinstance(output, PaddedNoiseOutput):  # [B, N, d] tensors: only the image rows are the generator's
            rows = output.image_mask[..., None]
            tensors = [~torch.isfinite(t.detach()) & rows for t in groups if t is not None and t.numel()]
        else:
            tensors = [~torch.isfinite(t.detach()) for group in groups if group for t in group if t.numel()]
        if not tensors:
            return
        bad = torch.stack([t.any() for t in tensors]).any()
        self._flag = bad if self._flag is None else self._flag | bad.to(self._flag.device)

    def pop(self) -> Optional[torch.Tensor]:
        flag, self._flag = self._flag, None
        return flag

    def remove(self) -> None:
        self._handle.remove()


def upcast_trainable_half_params(model: nn.Module) -> int:
    """Cast trainable float16 parameters to float32 (a gradient scaler cannot unscale fp16 gradients); returns how
    many were cast."""
    count = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype == torch.float16:
            param.data = param.data.float()
            count += 1
    return count


def _describe_ids(sample_ids: Optional[list]) -> str:
    if not sample_ids:
        return "unknown (the collator did not pass sample_ids)"
    return ", ".join(str(x) for x in sample_ids)


class NonFiniteGuardMixin:
    """Trainer mixin: pops ``sample_ids`` from the batch, stops (or skips) on a non-finite generator output or loss,
    logs skip counts, and keeps fp16 master weights in float32. Reads ``args.on_nonfinite`` (default ``raise``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        check_on_nonfinite(self._on_nonfinite)
        self.nonfinite_skipped = 0
        self.nonfinite_checked = 0
        self.add_callback(_TrainedSomethingCheck(self))
        self._generator_monitor: Optional[GeneratorOutputMonitor] = None
        self._monitor_ready = False
        if getattr(self.accelerator, "scaler", None) is not None:
            cast = upcast_trainable_half_params(self.model)
            if cast:
                logger.info("fp16 with loss scaling: %d trainable float16 parameters kept in float32.", cast)

    @property
    def _on_nonfinite(self) -> str:
        return getattr(self.args, "on_nonfinite", "raise")

    def _monitor(self) -> Optional[GeneratorOutputMonitor]:
        if not self._monitor_ready:
            generator = find_noise_generator(self.model)
            self._generator_monitor = GeneratorOutputMonitor(generator) if generator is not None else None
            self._monitor_ready = True
        return self._generator_monitor

    def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
        sample_ids = inputs.pop(SAMPLE_IDS_KEY, None)
        monitor = self._monitor()
        if monitor is not None:
            monitor.pop()  # forget outputs of calls outside the training loop
        result = super().compute_loss(model, inputs, return_outputs=return_outputs, **kwargs)
        if not model.training:
            return result
        loss = result[0] if return_outputs else result
        generator_bad = monitor.pop() if monitor is not None else None
        loss_bad = ~torch.isfinite(loss.detach()).all()
        flags = torch.stack([loss_bad, generator_bad.to(loss_bad.device)]) if generator_bad is not None else loss_bad[None]
        flags = flags.tolist()  # the one host sync per step
        self.nonfinite_checked += 1
        if not any(flags):
            return result
        what = " and ".join(
            name for name, bad in zip(("loss", "noise generator output"), flags) if bad
        )
        step = self.state.global_step + 1
        message = (
            f"Non-finite (NaN/inf) {what} at global step {step} (epoch {self.state.epoch or 0:.2f}); "
            f"samples in this batch: {_describe_ids(sample_ids)}."
        )
        if self._on_nonfinite == "raise":
            raise NonFiniteError(
                message + " Check these samples, lower the learning rate, prefer bf16 over fp16, tighten "
                "--ng_log_sigma_max, or pass --on_nonfinite skip_step to drop such batches."
            )
        self.nonfinite_skipped += 1
        logger.warning("%s Batch dropped (--on_nonfinite skip_step; %d so far).", message, self.nonfinite_skipped)
        dropped = self._dropped_loss(model, loss)
        return (dropped, result[1]) if return_outputs else dropped

    def _dropped_loss(self, model: nn.Module, loss: torch.Tensor) -> torch.Tensor:
        """A zero loss that adds no gradient. One process: a leaf, so parameters get no gradient at all and the
        optimizer leaves them untouched if the whole step is dropped. Several processes / DeepSpeed: zero times
        every trainable parameter, so gradient collectives still line up across ranks."""
        if self.args.world_size > 1 or self.is_deepspeed_enabled:
            trainable = [p for p in model.parameters() if p.requires_grad]
            return sum((p.sum() * 0.0 for p in trainable), torch.zeros((), device=loss.device)).float()
        return torch.zeros((), device=loss.device, dtype=torch.float32, requires_grad=True)

    def check_trained_something(self) -> None:
        """Fail when every batch this run looked at (on every rank) was dropped for a NaN/inf: nothing was trained,
        and a checkpoint would only look finished."""
        counts = torch.tensor([self.nonfinite_checked, self.nonfinite_skipped], dtype=torch.long)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            counts = counts.to(self.args.device)
            torch.distributed.all_reduce(counts)
        checked, skipped = counts.tolist()
        if checked and skipped == checked:
            raise NonFiniteError(
                f"Every one of the {checked} batches of this run had a NaN/inf loss or generator output and was "
                "dropped (--on_nonfinite skip_step): nothing was trained, so no final checkpoint is written. Look at "
                "the warnings above: lower the learning rate, prefer bf16 over fp16, check the data."
            )

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        skipped = getattr(self.train_dataset, "skipped", 0)
        if skipped:
            logs["skipped_samples"] = skipped
        if self.nonfinite_skipped:
            logs["nonfinite_skipped_batches"] = self.nonfinite_skipped
        super().log(logs, *args, **kwargs)


class _TrainedSomethingCheck(TrainerCallback):
    """Runs ``check_trained_something`` once, at the last optimizer step (before the Trainer saves the final
    checkpoint) or at the end of training (every rank gets there, so its all-reduce lines up)."""

    def __init__(self, trainer: NonFiniteGuardMixin):
        self.trainer, self.done = trainer, False

    def _check(self) -> None:
        if not self.done:
            self.done = True
            self.trainer.check_trained_something()

    def on_step_end(self, args, state, control, **kwargs):
        if state.max_steps > 0 and state.global_step >= state.max_steps:
            self._check()

    def on_train_end(self, args, state, control, **kwargs):
        self._check()
