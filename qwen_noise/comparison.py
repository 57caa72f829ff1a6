"""Qwen2.5-VL in ``python -m mung.compare``: which recipe trains each kind of tuning, and the tiny-world settings.

Recipes keep the paper's settings on real models (their defaults); on the tiny world the comparison sets one
learning rate per tuning (below: the rates ``--lr-search`` chose) and the same steps and batch for all. The
generator alone needs a higher rate than LoRA there (it starts from noise the frozen model has never seen).
"""

from mung.compare.recipes import ComparisonRecipes, Recipe, TinyWorldSettings

COMPARISON = ComparisonRecipes(
    recipes={
        "base": Recipe("scripts/qwen/finetune_full.sh"),
        "full": Recipe("scripts/qwen/finetune_full.sh"),
        "lora": Recipe("scripts/qwen/finetune_lora.sh"),
        "dora": Recipe("scripts/qwen/finetune_dora.sh"),
        "noise": Recipe("scripts/qwen/finetune_noise.sh"),
        "noise_lora": Recipe("scripts/qwen/finetune_lora.sh", env={"TUNE": "noise_lora"}),
    },
    lora_alpha_per_rank=1,  # r 32 / alpha 32 in the authors' LoRA baseline
    eval_module="qwen_noise.eval.model_vqa_loader",
    tiny=TinyWorldSettings(
        start_model="qwen_model",
        base_data="qwen_train_json",
        train_data="qwen_shift_train_json",
        distractor_train_data="qwen_distractor_train_json",
        env={},
        base_steps=3000,  # 1500 left shape, count and position at chance on white backgrounds (docs/results.md)
        base_lr=2e-3,
        connector_lr=1e-2,
        connector_lr_flag="--merger_lr",
        # Chosen on the shift split's validation questions by ``rates_chosen_by`` (docs/results.md); MuNG+LoRA's
        # generator stays at 10x its LoRA rate, the ratio the search keeps.
        learning_rates={"full": 3e-3, "lora": 1e-2, "dora": 1e-2, "noise": 1e-1, "noise_lora": 1e-2},
        generator_lr=1e-1,
        rates_chosen_by="python -m mung.compare --backbone qwen --plan main --lr-search --fast --seeds 3 "
                        "--out outputs/compare/qwen-shift",
        eval_batch=16,
    ),
)
