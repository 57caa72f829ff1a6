"""Train MuNG (or MuNG + LoRA) on any transformers VLM with TRL's ``SFTTrainer`` and the peft method
``noise_generator.peft_method.MuNGConfig``: no trainer code of ours, the adapter is saved in peft's format and loads
with ``PeftModel.from_pretrained`` or any command of the project (``--model-path`` the output folder).

    mung train --backbone trl --model_name_or_path $B --data_path $TW/data/qwen_shift_train.json \\
      --image_folder $TW/images --output_dir outputs/gemma3-trl --mung '{"num_heads": 4, "lora_r": 8}' \\
      --max_steps 30 --learning_rate 1e-2 --per_device_train_batch_size 8 --report_to none

``--mung`` is a JSON object of ``MuNGConfig`` settings (every ``NoiseGeneratorConfig`` setting, ``noise_mode`` for
the inference noise, ``lora_r`` / ``lora_alpha`` / ``target_modules`` for LoRA in the same adapter); every other flag
is TRL's ``SFTConfig`` (``TrainingArguments``: ``--deepspeed``, ``--gradient_checkpointing``, ``--bf16``, ...).
Records are the project's conversation records (LLaVA / Qwen JSON or JSONL, converted MMPR items); TRL places a
record's images before its first user turn and trains on the whole conversation (``--assistant_only_loss`` needs a
chat template with generation markers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class ScriptArguments:
    model_name_or_path: str = field(metadata={"help": "A transformers VLM folder (weights, processor, chat template)."})
    data_path: str = field(metadata={"help": "Training JSON / JSONL of conversation records."})
    image_folder: Optional[str] = field(default=None, metadata={"help": "Folder the image paths are relative to."})
    mung: str = field(default="{}", metadata={"help": "MuNGConfig settings as a JSON object, e.g. "
                                                      "'{\"num_heads\": 4, \"lora_r\": 8}'."})
    max_records: Optional[int] = field(default=None, metadata={"help": "Use only the first N records."})


def mung_config(settings: str):
    """``MuNGConfig`` from the ``--mung`` JSON object; a bad value is refused naming the flag."""
    from noise_generator.peft_method import MuNGConfig

    try:
        values = json.loads(settings)
    except json.JSONDecodeError as err:
        raise ValueError(f"--mung is not a JSON object ({err.msg}); write e.g. '{{\"num_heads\": 4}}'.") from None
    if not isinstance(values, dict):
        raise ValueError(f"--mung must be a JSON object of MuNGConfig settings, got {type(values).__name__}.")
    try:
        return MuNGConfig(**values)
    except TypeError as err:
        raise ValueError(f"--mung: {err}".replace("__init__()", "MuNGConfig")) from None


def conversation_dataset(data_path: str, image_folder: Optional[str], max_records: Optional[int] = None):
    """The records as a ``datasets.Dataset`` of TRL's vision form: ``messages`` (text contents; image placeholders
    dropped, TRL puts the images before the first user turn) and ``images``."""
    from datasets import Dataset

    from mung.files import read_records
    from vlm_noise.data.records import read_sample
    from vlm_noise.prompting import IMAGE_PLACEHOLDER

    rows = []
    for index, record in enumerate(read_records(data_path)[:max_records]):
        sample = read_sample(record, image_folder or "", name=f"{data_path} record {index}")
        messages = [{"role": m["role"], "content": "".join(item.get("text", "") for item in m["content"])
                     .replace(IMAGE_PLACEHOLDER, "").strip()} for m in sample.messages]
        rows.append({"messages": messages, "images": sample.images})
    if not rows:
        raise ValueError(f"{data_path} holds no records; pass the training JSON/JSONL file as --data_path.")
    return Dataset.from_list(rows)


def build_trainer(script, sft_config):
    """TRL's ``SFTTrainer`` over the VLM, its processor and the records, with a MuNG adapter (``--mung``)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import SFTTrainer

    peft_config = mung_config(script.mung)  # first: a bad --mung fails before the model loads
    model = AutoModelForImageTextToText.from_pretrained(script.model_name_or_path)
    processor = AutoProcessor.from_pretrained(script.model_name_or_path)
    dataset = conversation_dataset(script.data_path, script.image_folder, script.max_records)
    return SFTTrainer(model=model, args=sft_config, train_dataset=dataset, processing_class=processor,
                      peft_config=peft_config)


def main(argv=None):
    """Parse the flags, train, save the adapter (and the processor) into ``--output_dir``; returns the trainer."""
    from transformers import HfArgumentParser
    from trl import SFTConfig

    from mung.help_text import description
    from mung.training.distributed import prepare_cpu_deepspeed

    parser = HfArgumentParser((ScriptArguments, SFTConfig), description=description(__doc__))
    script, sft_config = parser.parse_args_into_dataclasses(args=argv)
    sft_config.max_length = None  # image tokens are never cut (a cut image breaks the placeholder count)
    sft_config.remove_unused_columns = False
    prepare_cpu_deepspeed(sft_config.deepspeed)  # without GPUs: gloo, open before ZeRO-3 partitions the loading
    trainer = build_trainer(script, sft_config)
    trainer.train()
    trainer.save_model(sft_config.output_dir)  # under ZeRO-3 the adapter is gathered first (every rank calls this)
    return trainer


if __name__ == "__main__":
    from mung.commands import run_command
    from mung.training.distributed import close_process_group

    run_command(main)
    close_process_group(end_process=True)
