"""Sockets and processes: the server, listeners, workers, reload, the gunicorn worker,
the command line, app loading and environment variables.
"""
