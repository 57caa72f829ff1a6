"""One ZeRO-3 process (CPU, gloo, bf16) for ``test_peft_zero3.py``: load a VLM partitioned, wrap it with a MuNG
adapter through ``get_peft_model`` (peft's default ``autocast_adapter_dtype=True``), then ``load_adapter`` a second
MuNG adapter saved by a plain process. Prints what the test checks as one JSON line.

    python tests/peft_zero3_single.py MODEL_FOLDER ADAPTER_FOLDER
"""

import json
import sys

import torch
from safetensors.torch import load_file

from mung.training.distributed import prepare_cpu_deepspeed

CONFIG = {"bf16": {"enabled": True}, "zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1}


def main(folder: str, adapter: str) -> None:
    prepare_cpu_deepspeed(CONFIG)
    import deepspeed
    from peft import get_peft_model
    from transformers import AutoModelForImageTextToText
    from transformers.integrations import HfDeepSpeedConfig

    from noise_generator.peft_method import MuNGConfig

    zero3 = HfDeepSpeedConfig(CONFIG)  # alive while loading: from_pretrained partitions the model
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.bfloat16)
    model = get_peft_model(model, MuNGConfig(num_heads=4))
    layer = model.get_base_model().get_decoder().mung
    default = list(layer.mung_generator["default"].parameters())
    result = {"partitioned": all(hasattr(p, "ds_id") and p.numel() == 0 for p in default),
              "full_sizes": sorted(int(p.ds_numel) for p in default if hasattr(p, "ds_numel"))}
    model.load_adapter(adapter, adapter_name="other")
    other = layer.mung_generator["other"]
    saved = {k.split(".mung_generator.", 1)[1]: t for k, t in load_file(f"{adapter}/adapter_model.safetensors").items()}
    with deepspeed.zero.GatheredParameters(list(other.parameters())):
        result["loaded_equal"] = all(torch.equal(p, saved[n].to(p.dtype)) for n, p in other.named_parameters())
    print(json.dumps(result))
    del zero3


if __name__ == "__main__":
    main(*sys.argv[1:])
