"""Public names of a package imported on first use (PEP 562), so that light entry points such as
`smart-hf --help` do not pay for torch and diffusers."""

import importlib
import sys
from types import ModuleType
from typing import Any


class LazyExportsModule(ModuleType):
    """A package whose public names (`_lazy_exports`: name -> the module defining it) import on first access.

    Importing a submodule named like a public name (`smart_hf.evaluation.precision_recall`, a module and its
    function) does not bind the module over that name, which stays the function, as with eager imports.
    """

    _lazy_exports: dict[str, str]

    def __getattr__(self, name: str) -> Any:
        exports = self.__dict__.get("_lazy_exports", {})
        if name not in exports:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(self, name, value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, ModuleType) and name in self.__dict__.get("_lazy_exports", {}):
            return
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self._lazy_exports})


def export_lazily(module_name: str, exports: dict[str, str]) -> None:
    """Make the names `exports` (name -> the module defining it) of the module `module_name` lazy."""
    module = sys.modules[module_name]
    module._lazy_exports = exports
    module.__class__ = LazyExportsModule
