"""Runtime code the controller and the agent share: the NATS connection, JetStream
writes and setup, job signatures, settings loading, retries. The wire contract itself
is ``schemas``."""
