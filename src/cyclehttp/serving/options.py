"""Numbers on the command line: one argparse ``type=`` factory for every numeric option.

``number(int, minimum=1)`` is a function argparse calls with the text the user
typed (on the command line or, through :mod:`cyclehttp.serving.envvars`, in a
``CYCLEHTTP_*`` variable). It returns the number, or raises
``argparse.ArgumentTypeError`` with a message that says what was expected, which
argparse prints as ``cyclehttp: error: argument --backlog: ...`` (exit 2).

The messages have two shapes, so every option words its mistakes alike::

    expected a whole number, got 'x'          the text is not a number of the kind
    expected a number >= 1, got 0             the number is out of range
    port must be a number, got 'abc'          the same two, with name="port"
    port must be from 0 to 65535, got 70000

NaN is never a number here (every comparison with it is false, so no range
could hold); infinity only where the caller allows it.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

__all__ = ["number"]

N = TypeVar("N", int, float)


def number(
    kind: type[N],
    *,
    minimum: N | None = None,
    maximum: N | None = None,
    what: str | None = None,
    name: str | None = None,
    allow_inf: bool = False,
) -> Callable[[str], N]:
    """An argparse type function reading an ``int`` or ``float`` from ``minimum`` to ``maximum`` (inclusive).

    ``what`` describes a valid value (``"seconds"``, ``"a file descriptor number"``);
    by default ``"a whole number"`` for ``int`` when the text is not one, and
    ``"a number"`` before a range. ``name`` words the messages as
    ``"<name> must be ..."`` instead of ``"expected ..."``. ``allow_inf``: a float
    option accepts ``inf`` (a timeout that never fires).
    """
    not_a_number = what or ("a whole number" if kind is int else "a number")
    in_range = what or "a number"
    lead = "expected" if name is None else f"{name} must be"
    if minimum is not None and maximum is not None:
        bounds = f"from {minimum} to {maximum}"
    elif minimum is not None:
        bounds = f">= {minimum}"
    elif maximum is not None:
        bounds = f"<= {maximum}"
    else:
        bounds = ""  # no range: never said
    out_of_range = f"{lead} {bounds}" if name is not None else f"{lead} {in_range} {bounds}"

    def convert(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{lead} {not_a_number}, got {text!r}") from None
        if isinstance(value, float) and (math.isnan(value) or (math.isinf(value) and not allow_inf)):
            raise argparse.ArgumentTypeError(f"{lead} {not_a_number}, got {text!r}")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"{out_of_range}, got {text.strip()}")
        return value

    return convert
