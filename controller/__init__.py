"""The nexec controller: an HTTP gateway that turns requests into jobs on NATS.

It re-exports nothing: import from the module that holds a name (``controller.app``,
``controller.config``, ``controller.keys.store``), so that a light module such as the
key store, which ``nexec keys`` uses, loads without aiohttp and nats-py.
"""
