"""The cycle: the hot path of one connection, and only that.

The connection (parser callbacks, the pipelining queue, the write), request
framing, uploads, long bodies, the router, the request, the response and its wire
form. Imports nothing from the app, serving or testing layers.
"""
