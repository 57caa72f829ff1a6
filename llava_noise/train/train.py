"""Entry point of LLaVA-1.5 (+ MuNG) training: parse flags, prepare the model for the chosen mode
(``prepare.prepare_model``), train, save.

    python -m llava_noise.train.train --model_name_or_path <LLM> --vision_tower <CLIP> --data_path <train.json> \
        --image_folder <images> --output_dir <out> [--noise_generator True --ng_* ...] [any TrainingArguments flag]
"""

from __future__ import annotations

import logging
from typing import Iterable, Optional

from transformers import HfArgumentParser, TrainerCallback

from mung.bad_samples import BadSampleCallback
from mung.commands import run_command
from mung.help_text import description
from mung.paths import check_model_path
from mung.training.distributed import check_deepspeed_lr_groups, train_and_close
from mung.training.entry import train_and_save, training_inputs, training_run
from mung.training.flags import NoiseGeneratorArguments, check_generator_flags
from mung.training.parameters import describe_trainable

from .args import DataArguments, ModelArguments, TrainingArguments, check_flag_combinations
from .data import make_supervised_data_module
from .prepare import prepare_model
from .trainer import LLaVATrainer

logger = logging.getLogger(__name__)


def check_flags(model_args: ModelArguments, training_args: TrainingArguments, ng_args) -> None:
    """Everything the flags alone can show wrong, before any weights load."""
    if not model_args.vision_tower:
        raise ValueError("--vision_tower is required (a local CLIPVisionModel folder).")
    check_model_path(model_args.vision_tower, "--vision_tower")
    check_generator_flags(ng_args)
    check_flag_combinations(model_args, training_args, ng_args)
    check_deepspeed_lr_groups(
        training_args.deepspeed, {"--ng_lr": ng_args.ng_lr, "--mm_projector_lr": training_args.mm_projector_lr}
    )


def train(
    argv: Optional[list[str]] = None,
    callbacks: Iterable[TrainerCallback] = (),
    attn_implementation: Optional[str] = None,
) -> Optional[LLaVATrainer]:
    """Parse ``argv`` (default: the command line), train and save; ``callbacks`` join the Trainer's. Returns the
    Trainer, or None (nothing trained) when --output_dir already holds the finished run."""
    parser = HfArgumentParser(
        (ModelArguments, DataArguments, TrainingArguments, NoiseGeneratorArguments), description=description(__doc__)
    )
    model_args, data_args, training_args, ng_args = parser.parse_args_into_dataclasses(args=argv)
    check_flags(model_args, training_args, ng_args)
    with training_run(training_args, training_inputs(model_args, data_args)) as started:
        if not started:
            return None
        return _train(model_args, data_args, training_args, ng_args, callbacks, attn_implementation)


def _train(model_args, data_args, training_args, ng_args, callbacks, attn_implementation) -> LLaVATrainer:
    """The model, the data and the Trainer of a started run; train and save."""
    model, tokenizer = prepare_model(model_args, data_args, training_args, ng_args, attn_implementation)
    logger.info("LLaVA %s", describe_trainable(model))
    data_module = make_supervised_data_module(tokenizer, data_args, model_args, training_args, model, return_sample_ids=True)
    dataset = data_module["train_dataset"]
    trainer = LLaVATrainer(model=model, processing_class=tokenizer, args=training_args, ng_lr=ng_args.ng_lr,
                           callbacks=[BadSampleCallback(dataset.bad_samples), *callbacks], **data_module)
    train_and_save(trainer)
    if dataset.mismatches:
        logger.warning("%d sample(s) had tokenisation mismatches and were not supervised.", dataset.mismatches)
    return trainer


def main(argv: Optional[list[str]] = None, end_process: bool = False) -> Optional[LLaVATrainer]:
    """Train with ``argv`` (default: the command line); the Trainer, or None when nothing was left to train."""
    return train_and_close(train, argv, end_process)


if __name__ == "__main__":
    run_command(main, end_process=True)
