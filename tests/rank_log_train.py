"""A backbone's training entry point with a ``RankLogCallback``: what the multi-process tests launch (under
``torch.distributed.run``, the ``deepspeed`` launcher or plain ``python``) to record every rank's losses and
parameters.

    python tests/rank_log_train.py --backbone llava|qwen|vlm --rank_log_dir DIR [training flags ...]

Every other argument (the ``--local_rank`` the deepspeed launcher adds included) goes to the backbone's ``train``.
"""

import argparse

from mung.training.distributed import close_process_group
from mung.training.rank_log import RankLogCallback


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--backbone", choices=("llava", "qwen", "vlm"), required=True)
    parser.add_argument("--rank_log_dir", required=True)
    args, training_flags = parser.parse_known_args()
    if args.backbone == "llava":
        from llava_noise.train.train import train
    elif args.backbone == "qwen":
        from qwen_noise.train.train import train
    else:
        from vlm_noise.train.train import train
    train(training_flags, callbacks=[RankLogCallback(args.rank_log_dir)])
    close_process_group()


if __name__ == "__main__":
    main()
