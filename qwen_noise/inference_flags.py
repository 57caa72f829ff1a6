"""Qwen2.5-VL's own inference flags, importable without torch (the ``mung.inference_flags`` entry point)."""


def add_inference_args(parser) -> None:
    parser.add_argument("--min-pixels", type=int, default=None, help="Qwen2.5-VL: lower bound of image pixels")
    parser.add_argument("--max-pixels", type=int, default=None, help="Qwen2.5-VL: upper bound of image pixels")
