"""Testing apps over real sockets: the pytest plugin, the test server and the raw client.

``cyclehttp.testing.plugin`` is the pytest plugin (the ``cyclehttp`` entry point);
``TestServer`` and ``start_test_server`` start an app on 127.0.0.1 for any test.
"""

from cyclehttp.testing.plugin import TestServer, start_test_server

__all__ = ["TestServer", "start_test_server"]
