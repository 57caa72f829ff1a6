"""Serving LLaVA-1.5 + MuNG: the terminal chat (``python -m llava_noise.serve.cli``)."""
