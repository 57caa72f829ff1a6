"""Fine-tune Qwen2.5-VL with MuNG (or a LoRA / DoRA / QLoRA / full baseline).

    python -m qwen_noise.train.train --model_name_or_path <Qwen2.5-VL> --data_path <train.json> \
        --image_folder <images> --output_dir <out> [--tune noise|noise_lora|lora|dora|full] [--ng_* ...] \
        [any transformers TrainingArguments flag]
"""

from typing import Iterable, Optional

from transformers import HfArgumentParser, TrainerCallback

from mung.bad_samples import BadSampleCallback
from mung.commands import run_command
from mung.help_text import description
from mung.training.distributed import check_deepspeed_lr_groups, train_and_close
from mung.training.entry import train_and_save, training_inputs, training_run
from mung.training.flags import NoiseGeneratorArguments, check_generator_flags
from mung.training.parameters import describe_trainable

from ..data import QwenDataCollator, QwenSupervisedDataset
from .args import DataArguments, ModelArguments, TrainingArguments, check_flag_combinations
from .prepare import prepare_model
from .trainer import NoiseTrainer


def check_flags(model_args: ModelArguments, training_args: TrainingArguments, ng_args) -> None:
    """Everything the flags alone can show wrong, before any weights load."""
    check_generator_flags(ng_args)
    check_flag_combinations(model_args, training_args, ng_args)
    check_deepspeed_lr_groups(
        training_args.deepspeed,
        {"--ng_lr": ng_args.ng_lr, "--merger_lr": training_args.merger_lr, "--vision_lr": training_args.vision_lr},
    )


def train(argv: Optional[list[str]] = None, callbacks: Iterable[TrainerCallback] = ()) -> Optional[NoiseTrainer]:
    """Parse ``argv`` (default: the command line), train and save; ``callbacks`` join the Trainer's. Returns the
    Trainer, or None (nothing trained) when --output_dir already holds the finished run."""
    parser = HfArgumentParser(
        (ModelArguments, DataArguments, NoiseGeneratorArguments, TrainingArguments), description=description(__doc__)
    )
    model_args, data_args, ng_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    check_flags(model_args, training_args, ng_args)
    with training_run(training_args, training_inputs(model_args, data_args)) as started:
        if not started:
            return None
        return _train(model_args, data_args, ng_args, training_args, callbacks)


def _train(model_args, data_args, ng_args, training_args, callbacks) -> NoiseTrainer:
    """The model, the data and the Trainer of a started run; train and save."""
    model, processor = prepare_model(model_args, training_args, ng_args)
    if training_args.should_log:  # on stdout (the recipes' logs and the quickstart read it), once
        print(f"--tune {model_args.tune}: {describe_trainable(model)}", flush=True)
    dataset = QwenSupervisedDataset(
        data_args.data_path,
        processor,
        image_folder=data_args.image_folder,
        model_max_length=training_args.model_max_length,
        min_pixels=data_args.min_pixels,
        max_pixels=data_args.max_pixels,
        on_bad_sample=data_args.on_bad_sample,
        max_bad_sample_share=data_args.max_bad_sample_share,
    )
    trainer = NoiseTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        data_collator=QwenDataCollator(pad_token_id=processor.tokenizer.pad_token_id, return_sample_ids=True),
        processing_class=processor,
        tune=model_args.tune,
        ng_lr=ng_args.ng_lr,
        callbacks=[BadSampleCallback(dataset.bad_samples), *callbacks],
    )
    train_and_save(trainer)
    return trainer


def main(argv: Optional[list[str]] = None, end_process: bool = False):
    """Train with ``argv`` (default: the command line); the Trainer, or None when nothing was left to train."""
    return train_and_close(train, argv, end_process)


if __name__ == "__main__":
    run_command(main, end_process=True)
