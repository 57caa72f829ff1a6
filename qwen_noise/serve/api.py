"""``python -m qwen_noise.serve.api``: the shared OpenAI-compatible API ``mung.serve.api`` (any backbone)."""

from mung.serve.api import main

if __name__ == "__main__":
    main()
