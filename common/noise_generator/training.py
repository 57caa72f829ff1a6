"""Training-side helpers shared by the backbones: command-line flags, ZeRO-3-safe saving, optimizer groups, DeepSpeed
on CPU, the newest complete checkpoint to resume from (and whether the run in ``--output_dir`` is already finished),
and a per-rank record of data-parallel runs."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional

import torch
from torch import nn
from transformers import TrainerCallback

from .config import NoiseGeneratorConfig
from .generator import NoiseGenerator
from .io import save_noise_generator

logger = logging.getLogger(__name__)

RANK_LOG_ENV = "MUNG_RANK_LOG_DIR"
TRAINER_STATE_FILE = "trainer_state.json"  # the Trainer writes it last into checkpoint-N; save_state() at the end
CHECKPOINT_RE = re.compile(r"checkpoint-(\d+)")
OVERWRITE_OUTPUT_DIR_HELP = (
    "Train from scratch into --output_dir, removing the checkpoint-N folders and trainer_state.json of an earlier "
    "run there. Without it an unfinished run there is resumed and a finished one is left as it is (nothing to do)."
)


@dataclass
class NoiseGeneratorArguments:
    """The ``--ng_*`` flags; one per ``NoiseGeneratorConfig`` field, plus the generator's learning rate."""

    ng_kind: str = field(default="cross_attn", metadata={"help": "cross_attn (paper) | mlp | gaussian (ablations)."})
    ng_heads: int = field(default=8, metadata={"help": "Attention heads of the cross-attention generator."})
    ng_injection: str = field(default="add", metadata={"help": "add (paper) | mul (ablation)."})
    ng_sample_noise: bool = field(
        default=True, metadata={"help": "False injects mu without sampling ('cross-attention only' ablation)."}
    )
    ng_num_samples: int = field(default=1, metadata={"help": "m: noise draws per example; loss averaged over them."})
    ng_inference_mode: str = field(
        default="sample", metadata={"help": "Noise at inference stored in the checkpoint: sample | mean | off."}
    )
    ng_condition_on_answer: bool = field(
        default=True, metadata={"help": "Answer tokens are keys/values during training (paper)."}
    )
    ng_log_sigma_min: float = field(default=-10.0, metadata={"help": "Lower clamp of log sigma."})
    ng_log_sigma_max: float = field(default=2.0, metadata={"help": "Upper clamp of log sigma."})
    ng_gaussian_std: float = field(default=0.1, metadata={"help": "Noise std for --ng_kind gaussian."})
    ng_init: str = field(
        default="xavier",
        metadata={
            "help": "xavier (what the authors' module asks for) | normal (N(0, ng_init_std^2): what their runs "
            "actually started from) | zero (start from the unchanged base model)."
        },
    )
    ng_init_std: float = field(
        default=0.02, metadata={"help": "Weight std of --ng_init normal (0.02: Qwen2.5-VL's initializer_range)."}
    )
    ng_lr: Optional[float] = field(
        default=None, metadata={"help": "Learning rate of the generator; default: the run's --learning_rate."}
    )

    def to_config(self, hidden_size: int, base_model_type: Optional[str] = None) -> NoiseGeneratorConfig:
        return NoiseGeneratorConfig(
            hidden_size=hidden_size,
            num_heads=self.ng_heads,
            kind=self.ng_kind,
            injection=self.ng_injection,
            sample_noise=self.ng_sample_noise,
            num_samples=self.ng_num_samples,
            inference_mode=self.ng_inference_mode,
            condition_on_answer=self.ng_condition_on_answer,
            log_sigma_min=self.ng_log_sigma_min,
            log_sigma_max=self.ng_log_sigma_max,
            gaussian_std=self.ng_gaussian_std,
            init=self.ng_init,
            init_std=self.ng_init_std,
            base_model_type=base_model_type,
        )


def find_noise_generator(model: nn.Module) -> Optional[NoiseGenerator]:
    """The generator inside ``model`` (through peft / DeepSpeed wrappers), or None."""
    for module in model.modules():
        if isinstance(module, NoiseGenerator):
            return module
    return None


def _is_partitioned(module: nn.Module) -> bool:
    return any(hasattr(p, "ds_id") for p in module.parameters())


def gathered_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """Full CPU copies of ``module``'s tensors. Under ZeRO-3 this gathers partitions: call it on every rank."""
    if _is_partitioned(module):
        import deepspeed  # only needed when ZeRO-3 partitioned the parameters

        params = [p for p in module.parameters() if hasattr(p, "ds_id")]
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            return {name: t.detach().cpu().clone() for name, t in module.state_dict().items()}
    return {name: t.detach().cpu().clone() for name, t in module.state_dict().items()}


def save_generator_from_model(
    model: nn.Module, directory: str | os.PathLike, is_main_process: bool = True
) -> Optional[Path]:
    """Write the generator-only checkpoint of ``model`` into ``directory`` (no-op without a generator).

    Collective under ZeRO-3: every rank must call it; only the main process writes.
    """
    generator = find_noise_generator(model)
    if generator is None:
        return None
    state = gathered_state_dict(generator)
    if not is_main_process:
        return None
    return save_noise_generator(generator, directory, state_dict=state)


def optimizer_groups(
    model: nn.Module, weight_decay: float, lr_overrides: Optional[Mapping[str, Optional[float]]] = None
) -> list[dict]:
    """Parameter groups for the trainable parameters of ``model``.

    Biases and other 1-D tensors (norm weights) get no weight decay. A parameter whose name contains a key of
    ``lr_overrides`` with a non-None value goes into a group with that learning rate (first matching key wins);
    the others use the optimizer's default learning rate.
    """
    active = {key: lr for key, lr in (lr_overrides or {}).items() if lr is not None}
    buckets: dict[tuple[Optional[str], bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        owner = next((key for key in active if key in name), None)
        decay = param.ndim >= 2
        buckets.setdefault((owner, decay), []).append(param)
    groups = []
    for (owner, decay), params in buckets.items():
        group = {"params": params, "weight_decay": weight_decay if decay else 0.0}
        if owner is not None:
            group["lr"] = active[owner]
        groups.append(group)
    return groups


def gather_parameters(named: Iterable[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Full CPU copies of ``named`` tensors; ZeRO-3 partitions are gathered (collective: call on every rank)."""
    named = list(named)
    partitioned = [p for _, p in named if hasattr(p, "ds_id")]
    if partitioned:
        import deepspeed

        with deepspeed.zero.GatheredParameters(partitioned, modifier_rank=None):
            return {name: p.detach().cpu().clone() for name, p in named}
    return {name: p.detach().cpu().clone() for name, p in named}


def prepare_cpu_deepspeed(deepspeed_config: Optional[str | dict]) -> None:
    """DeepSpeed without GPUs: open the gloo process group before ``from_pretrained`` (ZeRO-3 partitions while
    loading and needs it then). A single plain ``python`` process gets a one-rank world.

    DeepSpeed builds its shared-memory all-reduce op with g++ the first time a process group opens on CPU (30 s to
    minutes); training never uses it (only DeepSpeed's inference all-reduce does), so it is marked unavailable here
    and gloo carries every collective.
    """
    if not deepspeed_config or torch.cuda.is_available():
        return
    for key, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1"),
                       ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29511")):
        os.environ.setdefault(key, value)
    import deepspeed
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend="gloo", auto_mpi_discovery=False)


def compute_dtype(training_args) -> torch.dtype:
    """The dtype models are loaded in for training: ``--bf16`` / ``--fp16`` (transformers flags), else float32."""
    if training_args.bf16:
        return torch.bfloat16
    if training_args.fp16:
        return torch.float16
    return torch.float32


def close_process_group() -> None:
    """End of a training process: wait for every rank (rank 0 may still be writing files), then tear the process
    group down. Left to interpreter shutdown, gloo can destroy a worker thread that is still joinable, which aborts a
    rank that had finished cleanly ("terminate called without an active exception", exit -6)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def last_complete_checkpoint(output_dir: str | os.PathLike) -> Optional[str]:
    """The newest ``checkpoint-N`` in ``output_dir`` that was written to the end (holds trainer_state.json, which
    the Trainer writes last), or None. Newer incomplete ones (a run killed while saving) are skipped with a warning."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    steps = []
    for path in folder.iterdir():
        match = CHECKPOINT_RE.fullmatch(path.name)
        if match and path.is_dir():
            steps.append((int(match.group(1)), path))
    for _, path in sorted(steps, reverse=True):
        if (path / TRAINER_STATE_FILE).is_file():
            return str(path)
        logger.warning(
            "Not resuming from %s: it has no %s (the run stopped while saving it).", path, TRAINER_STATE_FILE
        )
    return None


class RankLogCallback(TrainerCallback):
    """Per-rank record of a (data-parallel) run, to check that the ranks stay in step.

    After every optimizer step each rank appends ``{"step", "loss", "digest"}`` to ``<directory>/rank<k>.jsonl``:
    its own training loss (the mean over its micro-batches, as the Trainer computed it) and a float64 digest (sum,
    sum of squares) of the full trainable parameters. At the end of training the main process writes the full
    trainable tensors to ``<directory>/trainables.pt``. Under ZeRO-3 the parameters are gathered, so every rank must
    run it (the Trainer runs callbacks on every rank). The trainers enable it when ``MUNG_RANK_LOG_DIR`` is set.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self._losses: list[float] = []

    @classmethod
    def from_env(cls) -> Optional["RankLogCallback"]:
        directory = os.environ.get(RANK_LOG_ENV)
        return cls(directory) if directory else None

    def record_loss(self, loss: torch.Tensor) -> None:
        self._losses.append(float(loss.detach().float().mean()))

    @staticmethod
    def _trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        return [(name, param) for name, param in model.named_parameters() if param.requires_grad]

    def on_step_end(self, args, state, control, model=None, **kwargs):
        tensors = gather_parameters(self._trainable(model))
        digest = [sum(float(t.double().sum()) for t in tensors.values()),
                  sum(float(t.double().pow(2).sum()) for t in tensors.values())]
        loss = sum(self._losses) / len(self._losses) if self._losses else None
        self._losses = []
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / f"rank{args.process_index}.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": state.global_step, "loss": loss, "digest": digest}) + "\n")

    def on_train_end(self, args, state, control, model=None, **kwargs):
        tensors = gather_parameters(self._trainable(model))
        if args.should_save:
            self.directory.mkdir(parents=True, exist_ok=True)
            torch.save(tensors, self.directory / "trainables.pt")


class RankLogMixin:
    """Trainer mixin: with ``MUNG_RANK_LOG_DIR`` set, adds a ``RankLogCallback`` and hands it every training step's
    loss. Put it before ``Trainer`` in the bases."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rank_log = RankLogCallback.from_env()
        if self.rank_log is not None:
            self.add_callback(self.rank_log)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.rank_log is not None:
            self.rank_log.record_loss(loss)
        return loss


def _names_a_checkpoint(resume_from_checkpoint: Optional[str]) -> bool:
    """``--resume_from_checkpoint PATH`` (rather than ``last``/``true``/nothing: the newest one in output_dir)."""
    return bool(resume_from_checkpoint) and resume_from_checkpoint.lower() not in ("last", "true")


def check_overwrite_flags(resume_from_checkpoint: Optional[str], overwrite_output_dir: bool) -> None:
    if overwrite_output_dir and _names_a_checkpoint(resume_from_checkpoint):
        raise ValueError(
            f"--overwrite_output_dir starts from scratch but --resume_from_checkpoint {resume_from_checkpoint} asks to "
            "continue a run; pass one of them."
        )


def checkpoint_to_resume(
    resume_from_checkpoint: Optional[str], output_dir: str | os.PathLike, overwrite_output_dir: bool = False
) -> Optional[str]:
    """What to resume from: ``--resume_from_checkpoint PATH`` as given; ``last``/``true`` or nothing: the newest
    complete ``checkpoint-N`` in ``--output_dir`` if there is one (as LLaVA users expect), else None (fresh start).
    ``--overwrite_output_dir``: None (start from scratch)."""
    check_overwrite_flags(resume_from_checkpoint, overwrite_output_dir)
    if overwrite_output_dir:
        return None
    if _names_a_checkpoint(resume_from_checkpoint):
        if not Path(resume_from_checkpoint, TRAINER_STATE_FILE).is_file():
            raise FileNotFoundError(
                f"--resume_from_checkpoint {resume_from_checkpoint}: no {TRAINER_STATE_FILE} there; pass a complete "
                "checkpoint-N folder of an earlier run (or leave the flag out to resume from the newest one in "
                "--output_dir)."
            )
        return resume_from_checkpoint
    found = last_complete_checkpoint(output_dir)
    if found:
        logger.info("Resuming from %s (the newest complete checkpoint in %s).", found, output_dir)
    return found


@dataclass(frozen=True)
class RunProgress:
    """Where a run stood when ``folder``'s trainer_state.json was written."""

    folder: Path
    global_step: int
    max_steps: int

    @property
    def finished(self) -> bool:
        return 0 < self.max_steps <= self.global_step


def read_progress(folder: str | os.PathLike) -> Optional[RunProgress]:
    """The progress recorded in ``folder/trainer_state.json``, or None without one (or without step counts)."""
    path = Path(folder, TRAINER_STATE_FILE)
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path} is not valid JSON (line {err.lineno}: {err.msg}); delete that folder's {TRAINER_STATE_FILE} or "
            "pass --overwrite_output_dir True to start again."
        ) from None
    step, total = state.get("global_step"), state.get("max_steps")
    if not isinstance(step, int) or not isinstance(total, int):
        return None
    return RunProgress(Path(folder), step, total)


def finished_run_message(
    output_dir: str | os.PathLike, resume_from_checkpoint: Optional[str] = None, max_steps: int = -1
) -> Optional[str]:
    """What to say (and then stop, successfully) when this run has nothing left to do, else None.

    The run is finished when the newest record of it — the final ``trainer_state.json`` in ``output_dir``
    (``trainer.save_state()``) or that of its newest complete ``checkpoint-N`` (or of ``--resume_from_checkpoint``)
    — has reached its ``max_steps``, and ``--max_steps`` (``max_steps``) does not ask for more steps than that.
    Resuming such a run would train one more step at learning rate 0 and write another checkpoint.
    """
    if _names_a_checkpoint(resume_from_checkpoint):
        records = [read_progress(resume_from_checkpoint)]
        where = f"--resume_from_checkpoint {resume_from_checkpoint} is"
    else:
        newest = last_complete_checkpoint(output_dir)
        if newest and read_progress(newest) is None:
            return None  # its state has no step counts: resume from it as before
        records = [read_progress(output_dir), read_progress(newest) if newest else None]
        where = f"output_dir {output_dir} already holds"
    records = [record for record in records if record is not None]
    if not records:
        return None
    latest = max(records, key=lambda record: record.global_step)
    if not latest.finished or max_steps > latest.global_step:
        return None
    return (
        f"{where} a finished run (step {latest.global_step} of {latest.max_steps}); nothing to do. Use "
        "--overwrite_output_dir True to train again from scratch, or a new --output_dir."
    )


def clear_earlier_run(output_dir: str | os.PathLike) -> list[str]:
    """``--overwrite_output_dir``: remove the earlier run's ``checkpoint-N`` folders and final trainer_state.json,
    so that neither this run nor a later resume picks them up (other files are overwritten by the new saves).
    Returns what was removed; call it on the main process only."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if path.is_dir() and CHECKPOINT_RE.fullmatch(path.name):
            shutil.rmtree(path)
            removed.append(path.name)
    if (folder / TRAINER_STATE_FILE).is_file():
        (folder / TRAINER_STATE_FILE).unlink()
        removed.append(TRAINER_STATE_FILE)
    if removed:
        logger.info("--overwrite_output_dir: removed the earlier run's %s from %s.", ", ".join(removed), folder)
    return removed


def finished_or_cleared(training_args) -> Optional[str]:
    """Before anything loads: the message of ``finished_run_message`` when this run has nothing to do (the entry
    point prints it and returns), else None; with ``--overwrite_output_dir`` the earlier run is cleared first (main
    process) and None is returned."""
    if training_args.overwrite_output_dir:
        check_overwrite_flags(training_args.resume_from_checkpoint, True)
        if training_args.should_save:
            clear_earlier_run(training_args.output_dir)
        return None
    return finished_run_message(training_args.output_dir, training_args.resume_from_checkpoint, training_args.max_steps)
