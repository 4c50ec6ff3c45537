"""Files an operator generates once: NATS users and permissions, TLS, their modes."""
