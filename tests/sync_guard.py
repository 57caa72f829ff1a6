"""A ``TorchDispatchMode`` that fails on every ATen op that reads device data on the host (a sync that stalls a GPU
stream) or whose output shape depends on tensor values (which ``torch.compile`` cannot capture in one graph).

The list (by overload packet):
- host reads: ``_local_scalar_dense`` (``.item()``, ``bool(t)``, ``int(t)``, ``.tolist()``), ``equal`` (a Python bool);
- data-dependent shapes: ``nonzero`` (``torch.where(mask)``, ``argwhere``), ``masked_select``, ``unique`` /
  ``_unique`` / ``_unique2`` / ``unique_dim`` / ``unique_consecutive``, ``bincount``, ``repeat_interleave`` with a
  tensor of repeats and no ``output_size``;
- boolean-mask indexing: ``index`` / ``index_put`` / ``_index_put_impl_`` with a bool or uint8 index (``t[mask]``,
  ``t[mask] = v``: a nonzero inside);
- ``masked_scatter``: a fixed output shape, but rows placed by a running count of the mask that must match the source
  (the paths use cumsum / searchsorted index arithmetic and ``index_select`` instead).

On the CPU some host reads never reach the dispatcher (``.tolist()``, ``.cpu()`` and ``.numpy()`` read the memory
directly), so a ``TorchFunctionMode`` beside it fails on the Tensor methods that read or copy to the host: ``tolist``,
``item``, ``cpu``, ``numpy``, ``__bool__``, ``__int__``, ``__float__``, ``__index__`` (on a GPU each is a
device-to-host copy that waits for the stream).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

HOST_READS = {aten._local_scalar_dense, aten.equal}
DATA_DEPENDENT_SHAPES = {aten.nonzero, aten.masked_select, aten.unique_dim, aten._unique, aten._unique2,
                         aten.unique_consecutive, aten.bincount, aten.masked_scatter, aten.masked_scatter_}
INDEXING = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_}
HOST_METHODS = {"tolist", "item", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__"}


def _is_mask(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype in (torch.bool, torch.uint8)


class HostSyncError(AssertionError):
    pass


class _HostMethods(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", None) in HOST_METHODS:
            raise HostSyncError(f"Tensor.{func.__name__} reads the tensor on the host")
        return func(*args, **(kwargs or {}))


class NoHostSync(TorchDispatchMode):
    """Raise ``HostSyncError`` on the first op or Tensor method of the lists above; ``ops`` records every ATen op that
    ran."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []
        self._methods = _HostMethods()

    def __enter__(self):
        self._methods.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self._methods.__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        if packet in HOST_READS or packet in DATA_DEPENDENT_SHAPES:
            raise HostSyncError(f"{func} reads device data on the host or makes a data-dependent shape")
        if packet in INDEXING and any(_is_mask(index) for index in (args[1] or [])):
            raise HostSyncError(f"{func} with a boolean mask index (a nonzero inside)")
        if packet is aten.repeat_interleave and isinstance(args[0], torch.Tensor) and len(args) == 1 \
                and kwargs.get("output_size") is None:
            raise HostSyncError(f"{func} with a tensor of repeats and no output_size")
        self.ops.append(str(func))
        return func(*args, **kwargs)


def guard_calls(monkeypatch, owner: Any, name: str) -> list[NoHostSync]:
    """From now on (the test's end undoes it) every call of ``owner.name`` runs inside a fresh ``NoHostSync``;
    returns the list the modes used are appended to. Patch before a hook captures the bound method."""
    original = getattr(owner, name)
    modes: list[NoHostSync] = []

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        mode = NoHostSync()
        modes.append(mode)
        with mode:
            return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return modes
