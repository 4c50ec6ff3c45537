"""nexec's user-facing face: ``import nexec`` is the Python client of the HTTP API
(docs/client.md), ``nexec.cli`` the ``nexec`` command."""
