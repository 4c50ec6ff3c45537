"""The numeric limits of the contract that more than one module enforces: the HTTP
bodies, the wire messages, the agents' checks and the NATS permissions all read them
from here. (A limit that only one type checks stays next to that type, e.g.
``schemas.registry_entry``.)"""

from __future__ import annotations

MIN_TIMEOUT_S = 1
MAX_TIMEOUT_S = 300
"""The longest a command may run: a request's ``timeout``, a job's ``timeout_s``."""
DEFAULT_TIMEOUT_S = 30

MAX_DELIVERY_MARGIN_S = 60
"""A controller's ``delivery_margin_s`` at most: how far past its timeout a job's
deadline may lie."""
MAX_DEADLINE_AHEAD_S = MAX_TIMEOUT_S + MAX_DELIVERY_MARGIN_S
"""A job's deadline may be at most this far ahead of its receipt (agents refuse others);
also how long an agent may answer on a job's reply subject (its NATS permission)."""

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
"""``limit`` of a listing (``GET /job``, ``GET /audit``)."""

MISSED_HEARTBEATS_BEFORE_EXPIRY = 3
"""An agent's registry entry lasts this many of its ``heartbeat_interval_s``: the TTL
the agent gives each entry, and when a controller's view expires it."""
MAX_ROLLOUT_PAUSE_S = 3600
"""A rollout's ``pause_s`` at most."""
MAX_ROLLOUT_ANSWER_S = MAX_TIMEOUT_S
"""A rollout's HTTP answer comes after at most this long; the rollout goes on."""
