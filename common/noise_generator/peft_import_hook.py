"""Register MuNG with peft the moment peft is imported, when ``noise_generator`` was imported first.

``import noise_generator`` must stay light (no peft, no transformers), yet a script that imports it and then peft
expects ``PeftModel.from_pretrained`` to know a MuNG adapter. A finder on ``sys.meta_path`` waits for peft's own
import, lets peft's loader run it, then imports ``noise_generator.peft_method`` (which registers the method). It
removes itself at its first use; a peft already imported is handled by the caller.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings


class _RegisterAfterPeft(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "peft":
            return None
        sys.meta_path.remove(self)  # first: the search below and any later import skip this finder
        spec = importlib.util.find_spec(name)  # every other finder, as the import would (editable installs too)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _ThenRegister(spec.loader)
        return spec


class _ThenRegister(importlib.abc.Loader):
    """peft's loader, then the registering import once peft's module is complete."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        try:
            importlib.import_module("noise_generator.peft_method")
        except (ImportError, AttributeError, TypeError, ValueError) as err:  # never break `import peft` itself
            warnings.warn(f"MuNG could not register with this peft ({type(err).__name__}: {err}); MuNG adapters "
                          "will not load. Import noise_generator.peft_method to see the whole error.", stacklevel=2)

    def __getattr__(self, name):  # get_resource_reader, is_package, ... as peft's own loader answers them
        return getattr(self.loader, name)


def register_when_peft_loads() -> None:
    """Install the finder once (a reload of ``noise_generator`` does not add a second)."""
    if not any(isinstance(finder, _RegisterAfterPeft) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterPeft())
