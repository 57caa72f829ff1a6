"""The quickstart's transformers VLM families: ``bash scripts/quickstart.sh --backbone gemma3`` (or any family of
``tiny_world.families``; transformers' LLaVA format is ``llava_hf``) runs the same stages as for LLaVA and Qwen
through the generic backbone.

1. base   the tiny random family checkpoint (``python -m tiny_world --families``, built into the world on demand),
          fully fine-tuned on the white-background train split (``scripts/vlm/finetune_full.sh``: language model,
          head and connector; vision encoder frozen), the "pretrained" model a user starts from;
2. MuNG   from that base, generator only with the VLM frozen (``scripts/vlm/finetune_noise.sh``), on the dark noisy
          domain-shift train split, beside the control: LoRA r32 without generator (``scripts/vlm/finetune_lora.sh``);
3-5.      ``python -m mung.eval.model_vqa_loader`` and ``python -m mung.serve.cli`` (``--model-base`` = the base).

The numbers here are what ``scripts/quickstart.py`` turns into its ``Backbone`` and ``Plan`` entries, so that file
keeps one table of backbones.
"""

from __future__ import annotations

from typing import Optional

# Fields of the quickstart's Backbone (all families share the generic recipes and commands).
RECIPES = {
    "base_recipe": "scripts/vlm/finetune_full.sh",
    "mung_recipe": "scripts/vlm/finetune_noise.sh",
    "control_recipe": "scripts/vlm/finetune_lora.sh",
    "lora_alpha": 32,  # of the control's LoRA r32 (alpha r, as the Qwen recipes)
    "mung_label": "noise generator only (VLM frozen)",
    "eval_module": "mung.eval.model_vqa_loader",
    "cli_module": "mung.serve.cli",
    "train_json": "qwen_train_json",  # conversation records, text-only and multi-image ones included
    "shift_train_json": "qwen_shift_train_json",
}
# Stage sizes (steps, per-device batch, lr; the generator's lr) sized like the LLaVA and Qwen plans (whose bases take
# 1200-1500 steps): on tiny world v3 a 400-step Gemma 3 base answered one word per question kind (white eval 27.7%);
# 1200 steps learn colour and shape from the image (49.3%), about two minutes on two CPU cores.
PLAN = {
    "base": {"steps": 1200, "batch": 16, "lr": 2e-3},
    "mung": {"steps": 300, "batch": 16, "lr": 1e-2},
    "control": {"steps": 300, "batch": 16, "lr": 1e-3},  # LoRA r32, no generator: the same steps and data
    "eval_questions": None,
    "eval_batch": 16,
    "seeds": 1,
}


# The quickstart's own backbones keep their names: a family of the same name (transformers' LLaVA format) gets "_hf".
BESPOKE = ("llava", "qwen")


def families() -> dict[str, str]:
    """{quickstart backbone name: tiny_world family name} of every family."""
    from tiny_world import family_names

    return {f"{name}_hf" if name in BESPOKE else name: name for name in family_names()}


def start_model(backbone: str, world_dir: str) -> Optional[str]:
    """The tiny checkpoint of the family behind quickstart ``backbone`` (built into ``world_dir/families`` the first
    time), or None for a backbone that is not a family."""
    name = families().get(backbone)
    if name is None:
        return None
    from tiny_world import build_families

    built = build_families(world_dir, [name], verbose=False)
    if name not in built:  # a processor dependency is missing (e.g. num2words for SmolVLM)
        from tiny_world.family_specs import FAMILIES

        missing = " ".join(FAMILIES[name].missing_modules())
        raise RuntimeError(f"the {name} family needs `pip install {missing}` for its processor.")
    return built[name]
