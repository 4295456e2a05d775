"""The version of cyclehttp, and which build of it runs (a leaf: every layer may import it)."""

from importlib.util import find_spec

__version__ = "0.1.0"


def _compiled() -> bool:
    spec = find_spec("cyclehttp.cycle.connection")
    return spec is not None and spec.origin is not None and not spec.origin.endswith(".py")


COMPILED: bool = _compiled()
"""True when the cycle runs compiled by mypyc, False for the pure-Python build."""

BUILD: str = "compiled" if COMPILED else "pure Python"
"""``compiled`` or ``pure Python``, as the listening line and ``cyclehttp --version`` say it."""
