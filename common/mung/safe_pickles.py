"""Pickle-format files (``torch.save``) are checked with the weights-only unpickler before anything reads them.

Loading reads weights only with ``weights_only=True`` already, but its refusal is torch's own text, which advises
``weights_only=False``. Resuming reads more: the Trainer's ``optimizer.pt`` / ``scheduler.pt`` / ``scaler.pt`` /
``rng_state*.pth`` and, under DeepSpeed, ``global_stepN/*.pt``, which DeepSpeed unpickles with the full unpickler (any
object, any code). So every such file is first read by the weights-only unpickler, allowing exactly the types the
Trainer and DeepSpeed write (``RESUME_TYPES``, found by listing the globals of real ZeRO-2/3 checkpoints). Each name
is allowed through a stand-in class, so checking a file imports and runs nothing that the file names. A file that
holds anything else is refused naming the file, what it holds and the flag that trusts it (``--trust_checkpoint``).

The files checked are found the way the loaders find them, never by a pattern of names alone: DeepSpeed's tag (the
text of ``latest`` joined onto the folder), symbolic links followed, and the shards an index's ``weight_map`` names.
A tag, link or shard name that leads out of the checkpoint folder is refused naming it (``OutsideCheckpoint``).
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import pickletools
import zipfile
from pathlib import Path
from typing import Iterable, Optional

import torch

logger = logging.getLogger(__name__)

TRUST_FLAG = "--trust_checkpoint True"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")
# Written beside a checkpoint (the Trainer's copy of the run's flags) and never read by a resume or a load.
NEVER_READ = ("training_args.bin",)
# Besides tensors and plain containers (torch's own allow-list): what the Trainer and DeepSpeed write.
RESUME_TYPES = (
    # rng_state*.pth: numpy's random state (numpy 2 and numpy 1 module paths)
    "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.dtypes.UInt32DType",
    # global_stepN/*optim_states.pt: ZeRO's stage, its loss scaler (LossScaler for bf16/fp32; DynamicLossScaler for
    # fp16, deepspeed.runtime.fp16.loss_scaler.CreateLossScaler) and fragment maps (also under the name DeepSpeed
    # keeps in bf16_optimizer for its older checkpoints)
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
    "deepspeed.utils.tensor_fragment.fragment_address",
    "deepspeed.runtime.bf16_optimizer.fragment_address",
)


class UntrustedPickle(ValueError):
    """A pickle-format file that holds more than the allowed types, or cannot be read; the message says which."""


class _StandIn:
    """What an allowed name becomes while a file is checked: accepts any arguments and state, runs nothing."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


def _stand_ins(names: Iterable[str]) -> list[tuple[type, str]]:
    return [(type(name.rsplit(".", 1)[-1], (_StandIn,), {}), name) for name in names]


def _pickle_bytes(path: Path) -> bytes:
    """The main pickle of a ``torch.save`` file (``data.pkl`` in its zip), else the file itself."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("data.pkl")]
            return archive.read(names[0]) if names else b""
    return path.read_bytes()


def named_globals(path: str | os.PathLike) -> list[str]:
    """The ``module.name`` globals a pickle file names, read from its opcodes (nothing is unpickled)."""
    found, strings = [], []
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(_pickle_bytes(Path(path)))):
            if opcode.name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
    except (ValueError, EOFError, zipfile.BadZipFile, OSError):
        pass  # unreadable past this point: the unpickler's refusal says so
    return sorted(set(found))


def _refusal(path: Path, allowed: tuple[str, ...], trust_hint: Optional[str]) -> UntrustedPickle:
    torch_allowed = set(torch.serialization._weights_only_unpickler._get_allowed_globals())
    unexpected = [name for name in named_globals(path) if name not in allowed and name not in torch_allowed]
    if not unexpected:
        return UntrustedPickle(
            f"Cannot read {path}: it is corrupt, truncated or not a checkpoint file of this project (the weights-only "
            "reader refused it); re-save it from the run that wrote it, or remove it."
        )
    hint = f" If you trust whoever wrote it, pass {trust_hint}." if trust_hint else ""
    return UntrustedPickle(
        f"Refusing to read {path}: it holds objects of types {unexpected[:6]}, which a checkpoint of this project "
        f"never contains, and unpickling it could run code. Re-save it from the run that wrote it, or remove it.{hint}"
    )


def load_weights_only(path: str | os.PathLike, allowed: tuple[str, ...] = (), trust_hint: Optional[str] = None,
                      mmap: bool = False):
    """``torch.load`` of ``path`` with the weights-only unpickler: tensors, plain containers and the ``allowed`` names
    (as stand-ins). Anything else, or a damaged file, is an ``UntrustedPickle`` naming the file (torch's own text,
    which advises the full unpickler, is never shown)."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_stand_ins(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        raise _refusal(path, allowed, trust_hint) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise UntrustedPickle(
            f"Cannot read {path}: the file is corrupt or truncated ({reason}); re-save it from the run that wrote it."
        ) from None


def check_pickle(path: str | os.PathLike, allowed: tuple[str, ...] = (), trust_hint: Optional[str] = None) -> None:
    """Read ``path`` with the weights-only unpickler (tensor data memory-mapped, not read) and drop the result; raise
    ``UntrustedPickle`` naming the file when it holds anything but tensors, containers and ``allowed``."""
    load_weights_only(path, allowed, trust_hint, mmap=zipfile.is_zipfile(path))


class OutsideCheckpoint(UntrustedPickle):
    """A name the loader would follow (DeepSpeed's ``latest`` tag, a symbolic link, an index's shard) leads out of
    the checkpoint folder; the message names the file, the name and where it leads."""


DEEPSPEED_TAG_FILES = ("latest", "latest_universal")
# The index of pickle-format shards (each shard it names is checked, whatever its name), and the index of
# safetensors shards (read without unpickling: its names are only held inside the folder).
PICKLE_INDEX = "pytorch_model.bin.index.json"
SAFETENSORS_INDEX = "model.safetensors.index.json"


def _inside(root: Path, path: Path, named_by: str) -> Path:
    """``path`` with every symbolic link resolved, which must lie in ``root`` (itself resolved); else refused."""
    real = Path(os.path.realpath(path))
    if real != root and root not in real.parents:
        raise OutsideCheckpoint(
            f"{named_by} leads to {real}, outside the checkpoint folder {root}: the loader would read (and unpickle) "
            f"files from there. Copy what belongs to the checkpoint into {root} and name it from there, or remove it."
        )
    return real


def _walk(root: Path, start: Path, named_by: str) -> list[Path]:
    """Every pickle-format file under ``start`` (symbolic links followed, each checked to stay in ``root``)."""
    found, seen, stack = [], set(), [(start, named_by)]
    while stack:
        folder, why = stack.pop()
        real = _inside(root, folder, why)
        if real in seen:
            continue
        seen.add(real)
        for entry in sorted(folder.iterdir()):
            if entry.is_symlink():
                _inside(root, entry, f"the symbolic link {entry}")
            if entry.is_dir():
                stack.append((entry, f"the folder {entry}"))
            elif entry.is_file() and entry.suffix in PICKLE_SUFFIXES and entry.name not in NEVER_READ:
                found.append(entry)
    return found


def deepspeed_tag_folders(folder: str | os.PathLike) -> list[Path]:
    """The folders DeepSpeed resumes from, resolved as it resolves them: when the folder holds a ``global_step*``
    entry (the Trainer's test for a DeepSpeed checkpoint), the text of ``latest`` (or ``latest_universal``) joined
    onto the folder, symbolic links followed. A tag leading out of the folder (an absolute path, ``../``, a link
    elsewhere) is refused naming the file and the tag."""
    folder = Path(folder)
    root = Path(os.path.realpath(folder))
    if not any(folder.glob("global_step*")):
        return []
    tags = []
    for name in DEEPSPEED_TAG_FILES:
        latest = folder / name
        if latest.is_file():
            tag = latest.read_text(encoding="utf-8", errors="replace").strip()
            tags.append(_inside(root, Path(os.path.join(folder, tag)), f"{latest} (DeepSpeed's tag {tag!r})"))
    return tags


def index_shards(folder: str | os.PathLike, index_name: str) -> list[Path]:
    """The shard files an index (``pytorch_model.bin.index.json`` …) of ``folder`` names in its ``weight_map``,
    whatever their names: each must be a plain relative name inside the folder (no absolute path, no ``..``)."""
    index = Path(folder) / index_name
    if not index.is_file():
        return []
    from .files import read_json  # files imports paths, which imports this module

    content = read_json(index)
    weight_map = content.get("weight_map") if isinstance(content, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ValueError(f"{index}: 'weight_map' must be an object of tensor name -> shard file name; re-save the "
                         "checkpoint.")
    shards = []
    for name in sorted(set(weight_map.values())):
        if os.path.isabs(name) or ".." in Path(name).parts or not name.strip():
            raise OutsideCheckpoint(f"{index} names the shard {name!r}, which is not a file inside {folder}; the "
                                    "loader would read it from elsewhere. Re-save the checkpoint.")
        shard = Path(folder) / name
        if not shard.exists():
            raise FileNotFoundError(f"{index} names the shard {name}, which does not exist in {folder}; copy the "
                                    "whole checkpoint.")
        shards.append(shard)
    return shards


def _shard_pickles(folder: Path) -> list[Path]:
    """The shards of the pickle index; the safetensors index's names are checked to stay in the folder."""
    index_shards(folder, SAFETENSORS_INDEX)
    return index_shards(folder, PICKLE_INDEX)


def resume_files(folder: str | os.PathLike) -> list[Path]:
    """Every pickle-format file a resume from ``folder`` may read, found as the loaders find them: the Trainer's
    files and every other pickle of the folder (symbolic links followed and kept inside it), the shards its indexes
    name, and DeepSpeed's tag folder (``deepspeed_tag_folders``); ``training_args.bin`` is never read."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    root = Path(os.path.realpath(folder))
    files = []
    for tag_folder in deepspeed_tag_folders(folder):  # first: a tag leading elsewhere is named as the tag
        if tag_folder.is_dir():
            files += _walk(root, tag_folder, f"DeepSpeed's tag folder {tag_folder}")
    files += _walk(root, folder, f"the checkpoint folder {folder}")
    for shard in _shard_pickles(folder):
        _inside(root, shard, f"the shard {shard}")
        files.append(shard)
    unique: dict[str, Path] = {}
    for path in files:  # a file reached twice (through a link) is checked once, under its first name
        unique.setdefault(os.path.realpath(path), path)
    return sorted(unique.values())


def check_resume_files(folder: str | os.PathLike, trusted: bool = False) -> list[Path]:
    """Before resuming from ``folder``: check each file a resume may read (``resume_files``; ``RESUME_TYPES``
    allowed); returns them. ``trusted`` (``--trust_checkpoint``) skips the pickle check, with a warning; a name
    leading out of the folder is refused either way."""
    files = resume_files(folder)
    if trusted:
        if files:
            logger.warning("%s: not checking %d pickle file(s) of %s before resuming.", TRUST_FLAG, len(files), folder)
        return files
    for path in files:
        check_pickle(path, RESUME_TYPES, trust_hint=f"{TRUST_FLAG} (it trusts every file of {folder})")
    return files


WEIGHT_PICKLE_NAMES = ("adapter_model.bin", "mm_projector.bin", "non_lora_trainables.bin")


def weight_pickles(folder: str | os.PathLike) -> list[Path]:
    """The pickle-format weight files a load reads from ``folder``: transformers' ``pytorch_model*.bin`` and every
    shard its index names (any name), peft's ``adapter_model.bin``, LLaVA's ``mm_projector.bin`` and
    ``non_lora_trainables.bin``. Symbolic links are followed (a hub cache links its files to blobs elsewhere): the
    file checked is the file read."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    named = [p for p in folder.iterdir()
             if p.is_file() and (p.name in WEIGHT_PICKLE_NAMES or (p.name.startswith("pytorch_model") and p.suffix == ".bin"))]
    unique = {os.path.realpath(p): p for p in named + _shard_pickles(folder)}
    return sorted(unique.values())


def check_weight_pickles(folder: str | os.PathLike) -> None:
    """Before loading from ``folder``: its pickle-format weight files hold tensors only (else a clear refusal)."""
    for path in weight_pickles(folder):
        check_pickle(path)
