"""Fine-tune any transformers VLM with MuNG (or a LoRA / full fine-tuning baseline).

    python -m vlm_noise.train.train --model_name_or_path <VLM folder> --data_path <train.json> \
        --image_folder <images> --output_dir <out> [--tune noise|noise_lora|lora|full] [--ng_* ...] \
        [any transformers TrainingArguments flag]
"""

from __future__ import annotations

from typing import Iterable, Optional

from transformers import HfArgumentParser, TrainerCallback

from mung.bad_samples import BadSampleCallback
from mung.commands import run_command
from mung.help_text import description
from mung.training.distributed import check_deepspeed_lr_groups, train_and_close
from mung.training.entry import train_and_save, training_inputs, training_run
from mung.training.flags import NoiseGeneratorArguments, check_generator_flags, compute_dtype
from mung.training.parameters import describe_trainable

from ..data import ConversationCollator, ConversationDataset
from .args import DataArguments, ModelArguments, TrainingArguments, check_flag_combinations
from .prepare import prepare_model
from .trainer import VLMTrainer


def parse(argv: Optional[list[str]] = None):
    """(model, data, generator, training) flags of ``argv`` (default: the command line), checked as far as the flags
    alone can show something wrong, before any weights load."""
    parser = HfArgumentParser(
        (ModelArguments, DataArguments, NoiseGeneratorArguments, TrainingArguments), description=description(__doc__)
    )
    model_args, data_args, ng_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    check_generator_flags(ng_args)
    check_flag_combinations(model_args, ng_args)
    check_deepspeed_lr_groups(training_args.deepspeed, {"--ng_lr": ng_args.ng_lr})
    return model_args, data_args, ng_args, training_args


def train(argv: Optional[list[str]] = None, callbacks: Iterable[TrainerCallback] = ()) -> Optional[VLMTrainer]:
    """Parse ``argv`` (default: the command line), train and save; ``callbacks`` join the Trainer's. Returns the
    Trainer, or None (nothing trained) when --output_dir already holds the finished run."""
    model_args, data_args, ng_args, training_args = parse(argv)
    with training_run(training_args, training_inputs(model_args, data_args)) as started:
        if not started:
            return None
        return _train(model_args, data_args, ng_args, training_args, callbacks)


def _train(model_args, data_args, ng_args, training_args, callbacks) -> VLMTrainer:
    """The model, the data and the Trainer of a started run (``--output_dir`` locked); train and save."""
    model, processor = prepare_model(model_args, training_args, ng_args)
    if training_args.should_log:  # on stdout (the recipes' logs and the quickstart read it), once
        print(f"--tune {model_args.tune}: {describe_trainable(model)}", flush=True)
    dataset = ConversationDataset(data_args.data_path, processor, image_folder=data_args.image_folder,
                                  max_length=training_args.model_max_length, on_bad_sample=data_args.on_bad_sample,
                                  max_bad_sample_share=data_args.max_bad_sample_share)
    collator = ConversationCollator(processor, training_args.model_max_length, dtype=compute_dtype(training_args),
                                    return_sample_ids=True)
    trainer = VLMTrainer(model=model, args=training_args, train_dataset=dataset, data_collator=collator,
                         processing_class=processor, tune=model_args.tune, ng_lr=ng_args.ng_lr,
                         callbacks=[BadSampleCallback(dataset.bad_samples), *callbacks])
    train_and_save(trainer)
    return trainer


def main(argv: Optional[list[str]] = None, end_process: bool = False):
    """Train with ``argv`` (default: the command line); the Trainer, or None when nothing was left to train."""
    return train_and_close(train, argv, end_process)


if __name__ == "__main__":
    run_command(main, end_process=True)
