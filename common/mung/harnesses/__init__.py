"""This project's question files as the evaluation harnesses' own datasets (``python -m mung.harnesses.export``):
an lmms-eval task folder and a VLMEvalKit custom dataset, each scoring answers with the same rule as this
project's scorer."""
