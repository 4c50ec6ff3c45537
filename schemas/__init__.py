"""nexec's wire contract: the NATS messages and HTTP bodies (msgspec), subject names,
targets, limits and their total decoders.

This is the only package that both ``controller`` and ``agentd`` import. It re-exports
nothing: import each name from the module that holds it (``schemas.messages``,
``schemas.api``, ``schemas.subjects``, ``schemas.targets``, ``schemas.decoding``,
``schemas.limits``), so that a program loads only what it uses.
"""

__version__ = "0.1.0"
