"""``python -m cyclehttp``: the same as the ``cyclehttp`` command."""

from cyclehttp.serving.cli import main

raise SystemExit(main())
