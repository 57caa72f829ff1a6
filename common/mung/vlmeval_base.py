"""VLMEvalKit's model contract for MuNG models, whatever the backbone.

VLMEvalKit's runner (``vlmeval/inference.py``, ``infer_data``) drives every local model the same way: once per
dataset ``set_dump_image(dataset.dump_image)``; then per sample ``use_custom_prompt(dataset_name)`` (when True,
``build_prompt(line, dataset=...)`` makes the message, which may call ``dump_image(line, dataset)``; otherwise the
dataset makes it) and ``generate(message=..., dataset=dataset_name)``. Multi-turn benchmarks
(``vlmeval/inference_mt.py``) need a ``chat_inner`` method and call ``chat(messages, dataset=...)`` with the turns so
far, ``[{"role": "user" | "assistant", "content": <message>}, ...]``.

A message is a ``str``, one ``{"type", "value"}`` dict, a list of ``str`` (an existing image file counts as an
image, anything else as text) or a list of ``{"type", "value"}`` dicts; ``generate`` turns it into the last form and
checks it before ``generate_inner`` sees it.

``MungVLM`` subclasses VLMEvalKit's own ``BaseModel`` when ``vlmeval`` is importable, so VLMEvalKit's checks and
helpers are the ones that run. Without VLMEvalKit, ``StandaloneBaseModel`` keeps the same contract (ValueError with
the item and the fix instead of bare asserts), so the model classes can be used and tested on their own.
A backbone implements one method, ``answer(turns, images)``.
"""

from __future__ import annotations

import ast
import base64
import binascii
import io
import mimetypes
import os
import warnings
from typing import Any, Callable, Mapping, Optional, Sequence

from PIL import Image, UnidentifiedImageError

from .backbones import IMAGE_PLACEHOLDER
from .paths import missing_reason

MESSAGE_SHAPES = ("str", "dict", "liststr", "listdict")
REMOTE_PREFIXES = ("http://", "https://", "data:image/")
ROLES = ("user", "assistant")


# ----------------------------------------------------------------------------------------------------- files
def file_kind(value: Any) -> Optional[str]:
    """The MIME major type ('image', 'video', 'text', ...) of an existing file from its suffix, 'unknown' for a file
    of unknown type, None when ``value`` is not a path to an existing file (so it is text)."""
    if not isinstance(value, str) or value == "." or not os.path.exists(value):
        return None
    if not os.path.isfile(value):
        raise ValueError(f"{value} is a folder; a message item holds text or the path of one file.")
    suffix = os.path.splitext(value)[1].lower()
    mime = "image/webp" if suffix == ".webp" else mimetypes.types_map.get(suffix)
    return mime.split("/")[0] if mime else "unknown"


def readable_image(path: str) -> bool:
    """True when ``path`` is an image file PIL can open with a positive size (an earlier dump can be reused)."""
    if not os.path.isfile(path):
        return False
    try:
        with Image.open(path) as image:
            return image.size[0] > 0 and image.size[1] > 0
    except (UnidentifiedImageError, OSError):
        return False


def write_base64_image(data: str, path: str, where: str) -> None:
    """Decode a base64 image and save it at ``path`` (format from the suffix; palette/alpha images become RGB)."""
    try:
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        image.load()
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{where}: the 'image' field is not a base64-encoded image ({err}).") from err
    if image.mode in ("RGBA", "P", "LA"):
        image = image.convert("RGB")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    image.save(path)


def as_path_list(value: Any) -> list[str]:
    """A path or a list of paths; a string holding a Python list (as benchmark TSV files store it) is read as one."""
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError) as err:
            raise ValueError(f"image_path {value[:80]!r} looks like a list but is not a Python list literal.") from err
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def dump_line_images(line: Mapping, image_root: str) -> list[str]:
    """Write a benchmark line's image(s) under ``image_root`` as VLMEvalKit's image datasets do; return the paths.

    ``line`` (a pandas row or a dict): ``image`` a base64 string (saved as ``<index>.jpg``) or a list of them (saved
    under the names in ``image_path``); without ``image``, ``image_path`` is returned as it is. A file already there
    that opens as an image is kept.
    """
    where = f"benchmark line {line['index'] if 'index' in line else '?'}"
    if "image" not in line:
        if "image_path" not in line:
            raise ValueError(f"{where} has neither an 'image' nor an 'image_path' field; it has no image to dump.")
        return as_path_list(line["image_path"])
    images = line["image"]
    if isinstance(images, (list, tuple)):
        if "image_path" not in line:
            raise ValueError(f"{where} holds {len(images)} images but no 'image_path' names to save them under.")
        names = as_path_list(line["image_path"])
        if len(names) != len(images):
            raise ValueError(f"{where} holds {len(images)} images but {len(names)} 'image_path' names.")
        targets = [(data, os.path.join(image_root, name)) for data, name in zip(images, names)]
    else:
        if "index" not in line:
            raise ValueError("a benchmark line with one base64 'image' needs an 'index' to name the file after.")
        targets = [(images, os.path.join(image_root, f"{line['index']}.jpg"))]
    for data, path in targets:
        if not readable_image(path):
            write_base64_image(data, path, where)
    return [path for _, path in targets]


def default_image_root(dataset: Optional[str]) -> str:
    """Where VLMEvalKit keeps a dataset's images: ``$LMUData/images/<dataset>`` (``~/LMUData`` when unset)."""
    if not isinstance(dataset, str) or not dataset:
        raise ValueError("dump_image needs the dataset name (a non-empty str) to choose the image folder.")
    root = os.environ.get("LMUData")
    if not root or not os.path.isdir(root):
        root = os.path.join(os.path.expanduser("~"), "LMUData")
    return os.path.join(root, "images", dataset)


# ----------------------------------------------------------------------------------------------------- base
class StandaloneBaseModel:
    """What VLMEvalKit's ``BaseModel`` gives the runner, for use without VLMEvalKit installed.

    Differences, all on purpose: failed checks raise ValueError naming the item instead of asserting; URLs and
    ``data:image`` URIs are refused (VLMEvalKit downloads them; here nothing is fetched); ``dump_image`` without
    ``set_dump_image`` writes to ``$LMUData/images/<dataset>`` itself; ``chat`` does not retry with fewer turns when
    ``chat_inner`` fails (VLMEvalKit's does, for API models), so a failure is seen.
    """

    INTERLEAVE = False
    allowed_types = ["text", "image", "video"]

    def __init__(self) -> None:
        self.dump_image_func: Optional[Callable[[Any], Any]] = None

    # --- prompts and images ---------------------------------------------------------------------------------
    def use_custom_prompt(self, dataset: Optional[str]) -> bool:
        """True makes the runner call ``build_prompt`` instead of the dataset's own prompt."""
        return False

    def build_prompt(self, line, dataset: Optional[str]):
        raise NotImplementedError(f"{type(self).__name__} uses the datasets' prompts (use_custom_prompt is False).")

    def set_dump_image(self, dump_image_func: Callable[[Any], Any]) -> None:
        """Called by the runner with ``dataset.dump_image`` before the dataset's first sample."""
        self.dump_image_func = dump_image_func

    def dump_image(self, line, dataset: Optional[str]) -> list[str]:
        """The image paths of a benchmark line, written by the dataset's dump function when the runner set one."""
        if self.dump_image_func is not None:
            return self.dump_image_func(line)
        return dump_line_images(line, default_image_root(dataset))

    # --- messages -------------------------------------------------------------------------------------------
    def check_content(self, msgs: Any) -> str:
        """The shape of a message: 'str', 'dict', 'liststr', 'listdict' or 'unknown'."""
        if isinstance(msgs, str):
            return "str"
        if isinstance(msgs, dict):
            return "dict"
        if isinstance(msgs, list):
            shapes = {self.check_content(m) for m in msgs}
            if shapes == {"str"}:
                return "liststr"
            if shapes == {"dict"}:
                return "listdict"
        return "unknown"

    def preproc_content(self, inputs: Any) -> Optional[list[dict]]:
        """The message as a list of ``{"type", "value"}`` dicts (new dicts; the input is not changed); None when
        its shape is unknown."""
        shape = self.check_content(inputs)
        if shape == "str":
            return [{"type": "text", "value": inputs}]
        if shape == "liststr":
            return [self._string_item(i, s) for i, s in enumerate(inputs)]
        if shape in ("dict", "listdict"):
            items = [inputs] if shape == "dict" else inputs
            return [self._checked_item(i, item) for i, item in enumerate(items)]
        return None

    def _string_item(self, index: int, value: str) -> dict:
        if value.startswith(REMOTE_PREFIXES) and not any(c.isspace() for c in value):
            raise ValueError(f"message item {index} ({value[:60]!r}) is a URL; save the file locally and pass its "
                             "path.")
        kind = file_kind(value)
        if kind is None or kind == "unknown":
            return {"type": "text", "value": value}
        return {"type": kind, "value": value}

    def _checked_item(self, index: int, item: dict) -> dict:
        if "type" not in item or "value" not in item:
            raise ValueError(f"message item {index} {item!r:.120} needs both 'type' and 'value' keys.")
        kind, value = item["type"], item["value"]
        if kind not in self.allowed_types:
            raise ValueError(f"message item {index} has type {kind!r}; {type(self).__name__} takes "
                             f"{' and '.join(map(repr, self.allowed_types))} items.")
        if not isinstance(value, str):
            raise ValueError(f"message item {index}: its value must be a str (text or a file path), got "
                             f"{type(value).__name__}.")
        if kind != "text" and value.startswith(REMOTE_PREFIXES):
            raise ValueError(f"message item {index}: {kind} {value[:60]!r} is a URL; save it locally and pass its "
                             "path.")
        found = file_kind(value)
        if found is None and kind != "text":
            raise ValueError(f"message item {index}: {kind} file {value!r} {missing_reason(value) or 'does not exist'} "
                             "(give the path of a local file, e.g. one returned by dump_image).")
        if found is not None and found != kind:
            raise ValueError(f"message item {index} has type {kind!r} but {value!r} is a file of type {found!r}.")
        return {"type": kind, "value": value}

    def generate(self, message: Any, dataset: Optional[str] = None) -> str:
        """The answer to one message (any accepted shape), through ``generate_inner`` with the checked item list."""
        items = self._message_items(message, "message")
        return self.generate_inner(items, dataset)

    def _message_items(self, message: Any, what: str) -> list[dict]:
        if self.check_content(message) not in MESSAGE_SHAPES:
            raise ValueError(f"{what} {message!r:.120} is not a str, a {{'type', 'value'}} dict, nor a list of "
                             "only str or only such dicts.")
        items = self.preproc_content(message)
        for i, item in enumerate(items):
            if item["type"] not in self.allowed_types:
                raise ValueError(f"{what} item {i} has type {item['type']!r}; {type(self).__name__} takes "
                                 f"{' and '.join(map(repr, self.allowed_types))} items.")
        return items

    def generate_inner(self, message: list[dict], dataset: Optional[str] = None) -> str:
        raise NotImplementedError

    def chat(self, messages: Sequence[dict], dataset: Optional[str] = None) -> str:
        """The next assistant reply to ``[{"role", "content"}, ...]``, each content in any accepted message shape."""
        if not hasattr(self, "chat_inner"):
            raise TypeError(f"{type(self).__name__} has no chat_inner; it cannot chat over several turns.")
        turns = []
        for i, turn in enumerate(messages):
            if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
                raise ValueError(f"chat message {i} {turn!r:.120} must be a dict with 'role' and 'content' keys.")
            turns.append({**turn, "content": self._message_items(turn["content"], f"chat message {i}")})
        return self.chat_inner(turns, dataset=dataset)

    def message_to_promptimg(self, message: list[dict], dataset: Optional[str] = None):
        """(all text items joined by newlines, first image or None): for models that take one image per prompt."""
        if self.INTERLEAVE:
            raise TypeError(f"{type(self).__name__} takes interleaved messages; it does not flatten them.")
        warnings.warn(f"{type(self).__name__} takes one image per prompt: using the first image and all texts.")
        prompt = "\n".join(item["value"] for item in message if item["type"] == "text")
        images = [item["value"] for item in message if item["type"] == "image"]
        return prompt, (images[0] if images else None)


try:
    from vlmeval.vlm.base import BaseModel
except ImportError:  # VLMEvalKit not installed: same contract without it
    BaseModel = StandaloneBaseModel


# ----------------------------------------------------------------------------------------------------- MuNG
class MungVLM(BaseModel):
    """A MuNG model for VLMEvalKit; a backbone implements ``answer(turns, images)``.

    ``generate_inner`` answers one user message; ``chat_inner`` answers the last user turn of a conversation. Both
    hand the backbone (role, text) turns whose text has an ``<image>`` where each image stands, and the image paths
    in order.
    """

    INSTALL_REQ = False
    INTERLEAVE = True
    allowed_types = ["text", "image"]
    is_api = False  # the runner drives local models sample by sample (API models go to a thread pool)

    def __init__(self) -> None:
        super().__init__()
        self.dump_image_func = None  # VLMEvalKit's older BaseModel has no __init__ to set it

    def answer(self, turns: list[tuple[str, str]], images: list[str]) -> str:
        """The assistant's reply to ``turns`` (ending with a user turn); the backbone's own prompt and decoding."""
        raise NotImplementedError

    def generate_inner(self, message: list[dict], dataset: Optional[str] = None) -> str:
        text, images = self.message_to_turn(message)
        return self.answer([("user", text)], images)

    def chat_inner(self, messages: list[dict], dataset: Optional[str] = None) -> str:
        turns, images = self.messages_to_turns(messages)
        return self.answer(turns, images)

    @staticmethod
    def message_to_turn(message: list[dict]) -> tuple[str, list[str]]:
        """The turn's text (an ``<image>`` where each image stands) and the image paths, in order."""
        text, images = "", []
        for i, item in enumerate(message):
            kind, value = item.get("type"), item.get("value")
            if kind == "image":
                text += IMAGE_PLACEHOLDER
                images.append(value)
            elif kind == "text":
                if IMAGE_PLACEHOLDER in value:
                    raise ValueError(f"message item {i} contains the text {IMAGE_PLACEHOLDER!r}; give images as "
                                     "{'type': 'image', 'value': path} items instead.")
                # As in training data: a newline between an image and the text that follows it.
                text += ("\n" if text.endswith(IMAGE_PLACEHOLDER) else "") + value
            else:
                raise ValueError(f"message item {i} {item!r:.120}: expected type 'image' or 'text'.")
        return text, images

    @classmethod
    def messages_to_turns(cls, messages: Sequence[dict]) -> tuple[list[tuple[str, str]], list[str]]:
        """(role, text) turns alternating user/assistant and ending with a user turn, and all images in order."""
        turns, images = [], []
        for i, turn in enumerate(messages):
            role = turn.get("role")
            expected = ROLES[i % 2]
            if role != expected:
                raise ValueError(f"chat message {i} has role {role!r}; turns must alternate 'user' and 'assistant', "
                                 "starting with 'user'.")
            text, turn_images = cls.message_to_turn(turn["content"])
            turns.append((role, text))
            images.extend(turn_images)
        if not turns or turns[-1][0] != "user":
            raise ValueError("a chat must end with a user turn (the one to answer).")
        return turns, images


class CheckpointVLM(MungVLM):
    """Any MuNG checkpoint of any installed backbone, answered greedily by the shared answering path, so a benchmark
    question gets the answer ``model_vqa_loader`` gives it. ``backbone_args`` are the backbone's own inference
    flags by attribute name (e.g. Qwen's ``min_pixels`` / ``max_pixels``)."""

    def __init__(
        self,
        model_path: str,
        model_base: Optional[str] = None,
        noise_mode: Optional[str] = None,
        max_new_tokens: int = 512,
        conv_mode: Optional[str] = None,
        device: Optional[str] = None,
        seed: int = 0,
        backbone_args: Optional[Mapping[str, Any]] = None,
    ):
        from argparse import Namespace

        from transformers import set_seed

        from .generation import GenerationSettings
        from .loading import LoadOptions, load

        super().__init__()
        set_seed(seed)
        self.loaded = load(model_path, model_base, LoadOptions(device=device), noise_mode=noise_mode, template=conv_mode)
        self.loaded.backbone.configure(self.loaded, Namespace(**dict(backbone_args or {})))
        self.settings = GenerationSettings(temperature=0, max_new_tokens=max_new_tokens)

    def answer(self, turns: list[tuple[str, str]], images: list[str]) -> str:
        from .answering import answer_prompt
        from .backbones import Prompt
        from .images import load_image

        return answer_prompt(self.loaded, Prompt(list(turns), [load_image(p) for p in images]), self.settings)[0]
