"""The frozen CLIP vision tower. Its weights always come from ``mm_vision_tower`` (never from a LLaVA checkpoint)."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

from mung.safe_pickles import check_weight_pickles


class CLIPVisionTower(nn.Module):
    """Wraps ``CLIPVisionModel`` and picks LLaVA's features: hidden state ``select_layer``, CLS dropped (``patch``).

    Built empty (``is_loaded`` False) so a LLaVA checkpoint can be constructed without touching the tower; call
    ``load_model()`` to read the weights from ``vision_tower_name``. The tower is frozen.
    """

    def __init__(self, vision_tower_name: str, select_layer: int = -2, select_feature: str = "patch"):
        super().__init__()
        if select_feature not in ("patch", "cls_patch"):
            raise ValueError(f"mm_vision_select_feature={select_feature!r}; use 'patch' or 'cls_patch'.")
        self.vision_tower_name = vision_tower_name
        self.select_layer = select_layer
        self.select_feature = select_feature
        self.is_loaded = False
        self.image_processor: Optional[CLIPImageProcessor] = None
        self._config: Optional[CLIPVisionConfig] = None

    def load_model(self, device: Optional[torch.device | str] = None, dtype: Optional[torch.dtype] = None) -> None:
        """Load the CLIP weights and image processor from ``vision_tower_name`` (idempotent)."""
        if self.is_loaded:
            if device is not None or dtype is not None:
                self.vision_tower.to(device=device, dtype=dtype)
            return
        check_weight_pickles(self.vision_tower_name)  # a local folder's pickle weights hold tensors only
        try:
            self.image_processor = CLIPImageProcessor.from_pretrained(self.vision_tower_name)
            tower = CLIPVisionModel.from_pretrained(self.vision_tower_name, dtype=dtype or torch.float32)
        except OSError as err:
            raise OSError(
                f"Cannot load the CLIP vision tower from {self.vision_tower_name!r} (mm_vision_tower / --vision_tower): "
                f"{err}. Point it at a local CLIPVisionModel folder."
            ) from err
        tower.requires_grad_(False)
        if device is not None:
            tower.to(device)
        self.vision_tower = tower
        self._config = tower.config
        self.is_loaded = True

    def feature_select(self, hidden_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
        features = hidden_states[self.select_layer]
        return features[:, 1:] if self.select_feature == "patch" else features

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` [N, 3, H, W] → features [N, num_patches, hidden] in the tower's dtype."""
        if not self.is_loaded:
            raise RuntimeError(
                f"The vision tower {self.vision_tower_name!r} is not loaded; call model.get_vision_tower().load_model()."
            )
        out = self.vision_tower(pixel_values=images.to(device=self.device, dtype=self.dtype), output_hidden_states=True)
        return self.feature_select(out.hidden_states)

    # --- properties -------------------------------------------------------------------------------------------
    @property
    def config(self) -> CLIPVisionConfig:
        if self._config is None:
            self._config = CLIPVisionConfig.from_pretrained(self.vision_tower_name)
        return self._config

    @property
    def dtype(self) -> torch.dtype:
        return self.vision_tower.dtype

    @property
    def device(self) -> torch.device:
        return self.vision_tower.device

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def num_patches_per_side(self) -> int:
        return self.config.image_size // self.config.patch_size

    @property
    def num_patches(self) -> int:
        return self.num_patches_per_side**2


def build_vision_tower(config: Any) -> CLIPVisionTower:
    """An unloaded tower as ``config`` describes it (``mm_vision_tower`` or ``vision_tower`` attribute)."""
    name = getattr(config, "mm_vision_tower", None) or getattr(config, "vision_tower", None)
    if not name:
        raise ValueError("No vision tower configured (mm_vision_tower / --vision_tower is empty).")
    return CLIPVisionTower(
        name,
        select_layer=getattr(config, "mm_vision_select_layer", -2),
        select_feature=getattr(config, "mm_vision_select_feature", "patch"),
    )
