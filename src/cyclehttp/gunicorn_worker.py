"""``cyclehttp.gunicorn_worker.CycleWorker``: the worker class gunicorn command lines name.

It lives in ``cyclehttp.serving.gunicorn``; ``gunicorn -k cyclehttp.gunicorn_worker.CycleWorker``
keeps working.
"""

from cyclehttp.serving.gunicorn import CycleWorker

__all__ = ["CycleWorker"]
