"""The nexec agent daemon: takes jobs addressed to its host from NATS and replies.

``agent`` (state, lifecycle, acting on intake), ``intake`` (whether a job is
taken: a pure function), ``dedupe`` (job ids taken), ``heartbeat`` (the registry
entry), ``subscriptions`` and ``connection`` (NATS), ``counters``, ``run/``
(running jobs), ``delivery/`` (answers and results), ``config``, ``main`` (the
command line). Nothing is imported here, so that ``nexec-agentd`` can keep its
imports lean (see ``agentd.entry``).
"""
