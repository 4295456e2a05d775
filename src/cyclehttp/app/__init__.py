"""What a user declares at start-up: the App, error handlers, request hooks, the
lifespan hooks, static directories and the route-table view.
"""
