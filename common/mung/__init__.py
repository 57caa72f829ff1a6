"""MuNG's app layer shared by every backbone.

``vlmeval_base``: the VLMEvalKit model contract (``MungVLM``); a backbone adapter implements ``answer`` only.
"""
