"""A rank of the two-process ZeRO-3 TRL run (``test_trl_zero3.py``): ``vlm_noise.train.trl_sft`` with the given
flags, then every rank computes the trained model's logits on a fixed batch (collective under ZeRO-3) in noise mode
mean, and rank 0 writes them to ``--logits_file``.

    python tests/trl_zero3_run.py --logits_file F --world_dir W [trl_sft flags ...]
"""

import argparse

import torch

from mung.training.distributed import close_process_group
from noise_generator import noise_mode
from vlm_helpers import chat_batch
from vlm_noise.train.trl_sft import main as trl_main

QUESTIONS = ["What color is the shape?", "How many circles are there in this picture?"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--logits_file", required=True)
    parser.add_argument("--image", action="append", required=True)
    args, flags = parser.parse_known_args()
    trainer = trl_main(flags)
    from PIL import Image

    processor = trainer.processing_class
    batch = chat_batch(processor, [Image.open(path).convert("RGB") for path in args.image], QUESTIONS)
    model = trainer.model_wrapped if hasattr(trainer, "model_wrapped") else trainer.model
    model.eval()
    with torch.no_grad(), noise_mode(trainer.model, "mean"):
        logits = model(**batch).logits
    if torch.distributed.get_rank() == 0:
        torch.save(logits, args.logits_file)
    close_process_group()


if __name__ == "__main__":
    main()
