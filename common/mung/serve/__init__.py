"""Serving a tuned model: the terminal chat (``cli``)."""
