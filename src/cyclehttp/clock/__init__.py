"""The clock: what the server measures and keeps (histograms, stats), and how it shows them
(the Prometheus page, shared worker stats, the access log, the ``cyclehttp stats`` view).

Imports nothing from the cycle, app or serving layers.
"""
