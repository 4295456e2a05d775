"""``python -m cyclehttp``: the same as the ``cyclehttp`` command."""

from .cli import main

raise SystemExit(main())
