"""Command-line options from the environment: ``CYCLEHTTP_<OPTION>``.

The rule, applied to every option of a parser (so a new flag gets its
variable for free): ``CYCLEHTTP_`` and the option's long name upper-cased,
dashes as underscores. ``--port`` is ``CYCLEHTTP_PORT``, ``--max-body-size``
``CYCLEHTTP_MAX_BODY_SIZE``, ``--no-timing`` ``CYCLEHTTP_NO_TIMING``. The
``module:attr`` target is ``CYCLEHTTP_APP``.

* Precedence: the command line, then the environment, then the default. The
  environment only changes the parser's defaults, so an option given on the
  command line always wins.
* A value is checked by the option's own type function and choices: a bad one
  is the same ``cyclehttp: error:`` (exit 2) as on the command line, naming the
  variable instead of the option.
* A flag (an option without a value) takes a boolean: ``1``, ``true``,
  ``yes``, ``on`` give the flag; ``0``, ``false``, ``no``, ``off`` leave it out
  (any case). Anything else is an error. ``CYCLEHTTP_NO_TIMING=1`` is
  ``--no-timing``; there is no ``CYCLEHTTP_TIMING``: one variable per option.
* An empty variable counts as unset (``CYCLEHTTP_PORT=`` in a compose file).

Variables under the prefix that name no option are left alone (an app may
use the prefix for its own settings), except that one close to an option's
variable, a likely typo, gets a warning.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Mapping
from typing import Final, TextIO

__all__ = ["ENV_PREFIX", "TARGET_VARIABLE", "add_env_help", "apply_environment", "env_name", "parse_bool"]

ENV_PREFIX: Final = "CYCLEHTTP_"
TARGET_VARIABLE: Final = "CYCLEHTTP_APP"
"""The variable of the positional ``module:attr`` (dest ``target``)."""

_POSITIONALS: Final = {"target": TARGET_VARIABLE}
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def parse_bool(text: str) -> bool:
    """``1/true/yes/on`` -> True, ``0/false/no/off`` -> False (any case, spaces ignored)."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected 1/0, true/false, yes/no or on/off, got {text!r}")


def env_name(action: argparse.Action) -> str | None:
    """The variable that sets ``action``, or None (``--help``, ``--version``)."""
    if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
        return None
    if not action.option_strings:
        return _POSITIONALS.get(action.dest, ENV_PREFIX + action.dest.upper())
    long_names = [option for option in action.option_strings if option.startswith("--")]
    if not long_names:
        return None
    return ENV_PREFIX + long_names[0][2:].upper().replace("-", "_")


def _is_flag(action: argparse.Action) -> bool:
    return action.nargs == 0  # store_true / store_false / store_const


def add_env_help(parser: argparse.ArgumentParser) -> None:
    """Append ``(env: CYCLEHTTP_...)`` to the help of every option that has a variable."""
    for action in parser._actions:
        name = env_name(action)
        if name is None or action.help == argparse.SUPPRESS:
            continue
        shown = f"{name}=1" if _is_flag(action) else name
        action.help = f"{action.help} (env: {shown})" if action.help else f"(env: {shown})"


def _convert(action: argparse.Action, text: str) -> object:
    if _is_flag(action):
        return action.const if parse_bool(text) else action.default
    value: object = text
    if action.type is not None:
        if not callable(action.type):
            raise argparse.ArgumentTypeError(f"cannot read a value for {action.dest!r}")
        try:
            value = action.type(text)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, argparse.ArgumentTypeError):
                raise
            raise argparse.ArgumentTypeError(f"invalid value {text!r}") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(repr(choice) for choice in action.choices)
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {choices})")
    return value


def apply_environment(
    parser: argparse.ArgumentParser,
    environ: Mapping[str, str],
    *,
    warn_typos: bool = True,
    warnings: TextIO | None = None,
) -> None:
    """Make the variables in ``environ`` the parser's defaults, checked as the options are.

    A bad value calls ``parser.error`` (``cyclehttp: error: CYCLEHTTP_PORT: ...``, exit 2).
    ``warn_typos``: warn (on ``warnings``, stderr by default) about a variable close to
    one of the parser's (a subcommand with few options passes False).
    """
    defaults: dict[str, object] = {}
    known: list[str] = []
    for action in parser._actions:
        name = env_name(action)
        if name is None:
            continue
        known.append(name)
        text = environ.get(name)
        if text is None or text == "":
            continue
        try:
            defaults[action.dest] = _convert(action, text)
        except argparse.ArgumentTypeError as exc:
            parser.error(f"{name}: {exc}")
    parser.set_defaults(**defaults)
    if warn_typos:
        _warn_near_misses(environ, known, sys.stderr if warnings is None else warnings)


def _warn_near_misses(environ: Mapping[str, str], known: list[str], out: TextIO) -> None:
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in known:
            continue
        close = [
            candidate for candidate in known if candidate == ENV_PREFIX + "NO_" + name[len(ENV_PREFIX) :]
        ]
        close = close or difflib.get_close_matches(name, known, n=1, cutoff=0.85)
        if close:
            print(
                f"cyclehttp: warning: {name} is not an option variable and is ignored; "
                f"did you mean {close[0]}?",
                file=out,
            )
