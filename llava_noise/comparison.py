"""LLaVA-1.5 in ``python -m mung.compare``: which recipe trains each kind of tuning, and the tiny-world settings.

Recipes keep the paper's settings on real models (their defaults); on the tiny world the comparison sets one
learning rate per tuning (below: the rates ``--lr-search`` chose) and the same steps and batch for all.
"""

from mung.compare.recipes import ComparisonRecipes, Recipe, TinyWorldSettings

COMPARISON = ComparisonRecipes(
    recipes={
        "base": Recipe("scripts/v1_5/finetune.sh"),
        "full": Recipe("scripts/v1_5/finetune.sh"),
        "lora": Recipe("scripts/v1_5/finetune_lora.sh"),
        "dora": Recipe("scripts/v1_5/finetune_lora.sh", flags=("--lora_use_dora", "True")),
        "noise": Recipe("scripts/v1_5/finetune_noise.sh"),
        "noise_lora": Recipe("scripts/v1_5/finetune_noise_lora.sh"),
    },
    lora_alpha_per_rank=2,  # r 128 / alpha 256 in LLaVA-1.5's LoRA recipe
    eval_module="llava_noise.eval.model_vqa_loader",
    eval_flags=("--conv-mode", "vicuna_v1"),
    # The start is a whole LLaVA model; a pretrained projector for it comes through start_projector_flag only.
    env={"PRETRAIN_MM_MLP_ADAPTER": ""},
    start_projector_flag="--pretrain_mm_mlp_adapter",
    tiny=TinyWorldSettings(
        start_model="llava_llm",
        base_data="llava_train_json",
        train_data="llava_shift_train_json",
        distractor_train_data="llava_distractor_train_json",
        env={"VISION_TOWER": "llava_vision_tower"},
        base_steps=1200,
        base_lr=2e-3,
        connector_lr=1e-2,
        connector_lr_flag="--mm_projector_lr",
        # Chosen on the shift split's validation questions by ``rates_chosen_by`` (docs/results.md); MuNG+LoRA's
        # generator stays at its LoRA rate, the ratio the search keeps.
        learning_rates={"full": 3e-3, "lora": 2e-3, "dora": 1e-2, "noise": 3e-2, "noise_lora": 2e-3},
        generator_lr=2e-3,
        rates_chosen_by="python -m mung.compare --backbone llava --plan main --lr-search --fast --seeds 3 "
                        "--out outputs/compare/llava-shift",
        eval_batch=32,
    ),
)
