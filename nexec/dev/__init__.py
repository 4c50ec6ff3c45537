"""``nexec dev``: a local NATS, controller and agent, and the processes' care
(start, wait for readiness, stop; children die with their parent)."""
