"""What mypyc reads in the source of the compiled modules; nothing at run time.

``mypyc_attr(allow_interpreted_subclasses=True)`` lets a Python class subclass a
compiled one (users subclass ``Response``, ``Request``, ``Headers`` ...). mypyc
reads the decorator when it compiles; at run time it only has to exist, so when
``mypy_extensions`` is not installed (it is not a dependency) a decorator that
changes nothing stands in. This module is never compiled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["mypyc_attr"]

T = TypeVar("T")

try:
    from mypy_extensions import mypyc_attr
except ImportError:  # the pure build, or a compiled one where nothing asks for it at run time

    def mypyc_attr(*attrs: str, **kwattrs: object) -> Callable[[T], T]:
        def keep(cls: T) -> T:
            return cls

        return keep
