"""Fine-tune Qwen2.5-VL with MuNG (or a LoRA / DoRA / QLoRA / full baseline).

    python -m qwen_noise.train.train --model_name_or_path <Qwen2.5-VL> --data_path <train.json> \
        --image_folder <images> --output_dir <out> [--tune noise|noise_lora|lora|dora|full] [--ng_* ...] \
        [any transformers TrainingArguments flag]
"""

import logging
import sys
from typing import Optional

from transformers import AutoProcessor, HfArgumentParser, set_seed

from mung.bad_samples import BadSampleCallback
from noise_generator import describe_trainable
from noise_generator.guards import check_deepspeed_lr_groups, check_generator_flags
from noise_generator.training import (
    NoiseGeneratorArguments,
    checkpoint_to_resume,
    close_process_group,
    compute_dtype,
    find_noise_generator,
    finished_or_cleared,
    prepare_cpu_deepspeed,
)

from ..data import QwenDataCollator, QwenSupervisedDataset
from ..model.builder import load_model, noise_config
from .args import DataArguments, ModelArguments, TrainingArguments
from .trainer import NoiseTrainer

BASE_MODEL_TYPE = "qwen2_5_vl"


def build_model(model_args: ModelArguments, ng_args: NoiseGeneratorArguments, training_args: TrainingArguments):
    """Load the base, attach the generator and/or LoRA, and set which parameters train."""
    generator_config = None
    if model_args.uses_generator:
        hidden_size = noise_config(model_args.model_name_or_path).text_config.hidden_size
        generator_config = ng_args.to_config(hidden_size, base_model_type=BASE_MODEL_TYPE)
    device_map = None
    if model_args.bits != 16:
        device_map = {"": training_args.device.index if training_args.device.type == "cuda" else "cpu"}
    model = load_model(
        model_args.model_name_or_path,
        generator=generator_config,
        generator_may_be_missing=True,
        announce_new_generator=True,
        dtype=compute_dtype(training_args),
        device_map=device_map,
        bits=model_args.bits,
    )
    model.config.use_cache = False
    model.requires_grad_(False)

    if model_args.bits != 16:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=training_args.gradient_checkpointing
        )
    if model_args.tune == "full":
        model.model.language_model.requires_grad_(True)
        model.lm_head.requires_grad_(True)
        model.model.visual.merger.requires_grad_(True)
        if model_args.tune_vision_tower:
            model.model.visual.requires_grad_(True)
    if model_args.uses_lora:
        from peft import LoraConfig, get_peft_model

        lora_config = LoraConfig(
            r=model_args.lora_r,
            lora_alpha=model_args.lora_alpha,
            lora_dropout=model_args.lora_dropout,
            target_modules=model_args.lora_target_regex(),
            use_dora=model_args.tune == "dora",
            bias="none",
        )
        model = get_peft_model(model, lora_config)
        if training_args.gradient_checkpointing:
            model.enable_input_require_grads()
    generator = find_noise_generator(model)
    if generator is not None:
        generator.requires_grad_(True)
    return model


def check_group_lr_flags(model_args: ModelArguments, training_args: TrainingArguments) -> None:
    """--merger_lr / --vision_lr only mean something when that part trains; refuse them rather than ignore them."""
    if training_args.merger_lr is not None and model_args.tune != "full":
        raise ValueError(
            f"--merger_lr applies to --tune full only (the merger is frozen with --tune {model_args.tune})."
        )
    if training_args.vision_lr is not None and not (model_args.tune == "full" and model_args.tune_vision_tower):
        raise ValueError(
            "--vision_lr needs --tune full --tune_vision_tower True (the vision tower is frozen otherwise)."
        )


def train(argv: Optional[list[str]] = None) -> Optional[NoiseTrainer]:
    """Parse ``argv``, train and save; None (nothing trained) when --output_dir already holds the finished run."""
    parser = HfArgumentParser((ModelArguments, DataArguments, NoiseGeneratorArguments, TrainingArguments))
    model_args, data_args, ng_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    check_generator_flags(ng_args)  # before any weights load
    check_group_lr_flags(model_args, training_args)
    check_deepspeed_lr_groups(
        training_args.deepspeed,
        {"--ng_lr": ng_args.ng_lr, "--merger_lr": training_args.merger_lr, "--vision_lr": training_args.vision_lr},
    )
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if training_args.should_log else logging.WARNING,
    )
    finished = finished_or_cleared(training_args)
    if finished:
        if training_args.should_log:
            print(finished, flush=True)
        return None
    prepare_cpu_deepspeed(training_args.deepspeed)
    set_seed(training_args.seed)

    processor = AutoProcessor.from_pretrained(model_args.model_name_or_path)
    model = build_model(model_args, ng_args, training_args)
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
        callbacks=[BadSampleCallback(dataset.bad_samples)],
    )
    resume = checkpoint_to_resume(
        training_args.resume_from_checkpoint, training_args.output_dir, training_args.overwrite_output_dir
    )
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_state()
    trainer.save_model(training_args.output_dir)
    return trainer


def main() -> None:
    train(sys.argv[1:])
    close_process_group()


if __name__ == "__main__":
    main()
