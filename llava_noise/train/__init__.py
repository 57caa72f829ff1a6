"""LLaVA-1.5 (+ MuNG) training: flags (args), data (dataset, preprocessing, collator), trainer, entry point."""
