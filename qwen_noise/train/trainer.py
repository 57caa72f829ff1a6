"""The Trainer of Qwen2.5-VL + MuNG: the shared ``MungTrainerMixin`` (NaN/inf guard, optimizer groups, generator
saved and restored) and ``TunedCheckpointsMixin`` (complete checkpoints per ``--tune``), with the merger's and vision
tower's own learning rates.

Every checkpoint directory (``checkpoint-N`` too) holds what inference and resuming need, and nothing more:

- ``--tune noise``: the generator-only files (``noise_generator.safetensors`` + its config) and the processor;
- LoRA / DoRA tunes: the adapter, plus the generator files when there is a generator, and the processor;
- ``--tune full``: the full model (``save_pretrained``) and the processor.
"""

from typing import Optional

from transformers import Trainer

from mung.training.trainer import MungTrainerMixin, TunedCheckpointsMixin


class NoiseTrainer(TunedCheckpointsMixin, MungTrainerMixin, Trainer):
    """`Trainer` that saves generator / adapter / full weights per ``tune`` and gives the generator, the merger and
    the vision tower their own learning rates (``--ng_lr``, ``--merger_lr``, ``--vision_lr``)."""

    def lr_overrides(self) -> dict[str, Optional[float]]:
        # first matching key wins: the merger lives inside the vision tower ("visual.merger.")
        return {
            **super().lr_overrides(),
            "visual.merger.": getattr(self.args, "merger_lr", None),
            "visual.": getattr(self.args, "vision_lr", None),
        }
