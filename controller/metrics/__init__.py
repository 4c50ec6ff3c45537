"""The controller's Prometheus metrics: what is counted where it happens
(:mod:`controller.metrics.instruments`), what is read from the controller's state
when scraped (:mod:`controller.metrics.state`), and the exposition
(docs/operations.md, "Monitoring")."""
