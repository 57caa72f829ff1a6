"""Merge a LLaVA-1.5 (MuNG) LoRA checkpoint into its base and save a full model (generator included).

    python scripts/merge_lora_weights.py --model-path RUN_DIR --model-base BASE --save-model-path OUT

The merge runs on the CPU in float32; the merged weights are saved in --save-dtype (default: the base model's dtype
from its config.json, float32 when it names none).
"""

import argparse
from pathlib import Path

import torch

from llava_noise.mm_utils import get_model_name_from_path
from llava_noise.model.builder import load_pretrained_model
from mung.commands import run_command
from mung.files import check_output_path, write_folder_atomically
from mung.help_text import description
from mung.training.distributed import save_generator_from_model
from mung.training.output_dir import disk_full_reported

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def check_save_path(args: argparse.Namespace) -> None:
    """Before loading: the merged model goes to a new or empty folder that is not, does not contain and is not inside
    --model-path or --model-base (merging over the base would change, silently, every checkpoint trained on it)."""
    check_output_path(args.save_model_path, "--save-model-path",
                      {"--model-path": args.model_path, "--model-base": args.model_base}, kind="folder")
    save = Path(args.save_model_path)
    if save.is_dir() and any(save.iterdir()):
        raise ValueError(f"--save-model-path {save} already holds files, which the merge would overwrite; pass a new "
                         "or empty folder.")


def merge_lora(args: argparse.Namespace) -> None:
    check_save_path(args)
    name = get_model_name_from_path(args.model_path)
    tokenizer, model, _, _ = load_pretrained_model(
        args.model_path, args.model_base, name, device_map="cpu", device="cpu", dtype=torch.float32
    )
    save_dtype = DTYPES[args.save_dtype] if args.save_dtype else getattr(model.config, "dtype", None) or torch.float32
    if isinstance(save_dtype, str):
        save_dtype = DTYPES.get(save_dtype, torch.float32)
    model.to(save_dtype)
    target = Path(args.save_model_path)

    def save(folder: str) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        save_generator_from_model(model, folder)

    with disk_full_reported(target.parent, f"the merged model ({target})"):
        write_folder_atomically(target, save)
    print(f"Merged {args.model_path} over {args.model_base} into {args.save_model_path} ({save_dtype}).")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python scripts/merge_lora_weights.py", description=description(__doc__))
    parser.add_argument("--model-path", type=str, required=True, help="the LoRA run folder")
    parser.add_argument("--model-base", type=str, required=True, help="the base it was trained on")
    parser.add_argument("--save-model-path", type=str, required=True, help="folder to write the merged model to")
    parser.add_argument("--save-dtype", choices=sorted(DTYPES), default=None,
                        help="dtype of the saved weights (default: the checkpoint config's, else float32)")
    run_command(merge_lora, parser.parse_args())
