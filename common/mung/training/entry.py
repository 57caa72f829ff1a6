"""The steps every training entry point takes around its backbone's own (parsing, the model, the data, the Trainer):
before anything loads, and once the Trainer is built."""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator, Optional

from transformers import Trainer, set_seed

from ..commands import check_launch_environment
from ..safe_pickles import check_resume_files
from .distributed import prepare_cpu_deepspeed
from .output_dir import disk_full_reported, locked_output_dir
from .runs import checkpoint_to_resume, finished_or_cleared, last_complete_checkpoint
from .shared_folder import check_output_dir_shared
from .trainer import check_resume_generator

logger = logging.getLogger(__name__)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


# The flags whose paths a training run reads (every backbone names them alike); --output_dir must stay clear of them.
INPUT_FLAGS = ("model_name_or_path", "vision_tower", "pretrain_mm_mlp_adapter", "data_path", "image_folder",
               "video_folder")


def training_inputs(*flag_groups) -> dict[str, str]:
    """``{"--flag": path}`` of the paths a run reads, from its parsed flag dataclasses."""
    return {f"--{name}": getattr(group, name) for group in flag_groups for name in INPUT_FLAGS
            if getattr(group, name, None)}


@contextlib.contextmanager
def training_run(training_args, inputs: Optional[dict[str, str]] = None) -> Iterator[bool]:
    """The life of a training run, around everything a backbone's entry point does: logging (INFO on the process
    that logs, warnings elsewhere), the process group (so the ranks can agree; on CPU under DeepSpeed it must exist
    before ZeRO-3 partitions while loading), then ``--output_dir`` found writable and locked against other runs
    until the block ends (an exception and SIGTERM included; ``output_dir.locked_output_dir``; first, it must not be,
    contain or sit inside one of the ``inputs``: ``training_inputs``) and seen by every rank (one folder for all
    nodes: ``shared_folder.check_output_dir_shared``), then ``start_run``, whose answer the block gets (False: nothing
    to do)."""
    check_launch_environment()  # also when train() is called in a process of its own
    logging.basicConfig(format=LOG_FORMAT, level=logging.INFO if training_args.should_log else logging.WARNING)
    prepare_cpu_deepspeed(training_args.deepspeed)
    with locked_output_dir(training_args, inputs or {}):
        check_output_dir_shared(training_args)
        yield start_run(training_args)


def start_run(training_args) -> bool:
    """Before any weights load. False when ``--output_dir`` already holds this finished run (the message is printed
    on the main process; nothing else happens). Otherwise ``--overwrite_output_dir`` has cleared an earlier run and
    the seed is set (the fresh generator's, projector's and LoRA's weights); True."""
    finished = finished_or_cleared(training_args)
    if finished:
        if training_args.should_log:
            print(finished, flush=True)
        return False
    set_seed(training_args.seed)
    return True


def train_and_save(trainer: Trainer) -> None:
    """Resume from the newest complete checkpoint (or ``--resume_from_checkpoint``) unless ``--overwrite_output_dir``,
    train, then write the final state and model into ``--output_dir`` (collective under ZeRO-3), with the KV cache
    switched back on in the saved config for inference. The pickle files of the checkpoint resumed from are checked
    with the weights-only reader first (``safe_pickles.check_resume_files``) unless ``--trust_checkpoint``, and its
    generator settings must be this run's (``trainer.check_resume_generator``)."""
    args = trainer.args
    resume = checkpoint_to_resume(args.resume_from_checkpoint, args.output_dir, args.overwrite_output_dir)
    if resume:
        check_resume_files(resume, trusted=getattr(args, "trust_checkpoint", False))
        check_resume_generator(trainer.model, resume)
    trainer.train(resume_from_checkpoint=resume)
    with disk_full_reported(args.output_dir, "the final model", earlier=last_complete_checkpoint(args.output_dir)):
        trainer.save_state()
        trainer.model.config.use_cache = True
        trainer.save_model(args.output_dir)
