"""``RankLogCallback``: a per-rank record of a (data-parallel) run, to check that the ranks stay in step.

Pass it to a backbone's entry point (``train(argv, callbacks=[RankLogCallback(directory)])``; the multi-process
tests launch ``tests/rank_log_train.py``, which does that). After every optimizer step each rank appends
``{"step", "loss", "digest"}`` to ``<directory>/rank<k>.jsonl``: its own training loss as the Trainer added it to the
logged loss, and a float64 digest (sum, sum of squares) of the full trainable parameters. At the end of training the
main process writes the full trainable tensors to ``<directory>/trainables.pt``. Under ZeRO-3 the parameters are
gathered, so every rank must run it (the Trainer runs callbacks on every rank).

The loss comes from a forward hook on the model (in training mode only), worded as ``Trainer.training_step``
returns it: a loss normalised by the whole batch's token count (``num_items_in_batch``, counted over all ranks) is
multiplied by the number of ranks, as the Trainer does before DDP averages the gradients; a per-batch mean is
divided by the gradient-accumulation steps. A step's loss is the sum over its micro-batches.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from transformers import TrainerCallback

from .distributed import gather_parameters


def _trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(name, param) for name, param in model.named_parameters() if param.requires_grad]


class RankLogCallback(TrainerCallback):
    """See the module docstring."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self._losses: list[float] = []
        self._handle: Optional[Any] = None
        self._scale_for_tokens = 1
        self._accumulation = 1

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._scale_for_tokens = args.world_size if args.average_tokens_across_devices else 1
        self._accumulation = args.gradient_accumulation_steps
        self._handle = model.register_forward_hook(self._record_loss, with_kwargs=True)

    def _record_loss(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if not module.training or loss is None:
            return
        loss = float(loss.detach().float().mean())
        if kwargs.get("num_items_in_batch") is not None:
            self._losses.append(loss * self._scale_for_tokens)
        else:
            self._losses.append(loss / self._accumulation)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        tensors = gather_parameters(_trainable(model))
        digest = [sum(float(t.double().sum()) for t in tensors.values()),
                  sum(float(t.double().pow(2).sum()) for t in tensors.values())]
        loss = sum(self._losses) if self._losses else None
        self._losses = []
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / f"rank{args.process_index}.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": state.global_step, "loss": loss, "digest": digest}) + "\n")

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        tensors = gather_parameters(_trainable(model))
        if args.should_save:
            self.directory.mkdir(parents=True, exist_ok=True)
            torch.save(tensors, self.directory / "trainables.pt")
