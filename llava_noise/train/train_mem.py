from mung.commands import run_command
from mung.training.distributed import close_process_group

from llava_noise.train.train import train

if __name__ == "__main__":
    run_command(train, attn_implementation="flash_attention_2")
    close_process_group(end_process=True)
