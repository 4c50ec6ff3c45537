"""The nexec agent daemon: takes jobs addressed to its host from NATS and replies.

Modules: ``agent`` (subscriptions, intake, heartbeats), ``executor`` (running a
process), ``output`` (capped capture), ``config``, ``main`` (the command line).
Nothing is imported here, so that ``nexec-agentd`` can keep its imports lean
(see ``agentd.entry``).
"""
