"""Constants shared by the LLaVA-1.5 fork (values as in the original LLaVA, so prompts and checkpoints agree)."""

# Label value ignored by the loss.
IGNORE_INDEX = -100
# Placeholder id for an image inside input_ids; replaced by the image features before the LLM sees the sequence.
IMAGE_TOKEN_INDEX = -200
DEFAULT_IMAGE_TOKEN = "<image>"
DEFAULT_IMAGE_PATCH_TOKEN = "<im_patch>"
DEFAULT_IM_START_TOKEN = "<im_start>"
DEFAULT_IM_END_TOKEN = "<im_end>"
IMAGE_PLACEHOLDER = "<image-placeholder>"
