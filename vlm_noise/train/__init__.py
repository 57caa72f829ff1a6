"""Training entry point, flags, model preparation and Trainer of the generic backbone (any transformers VLM + MuNG)."""
