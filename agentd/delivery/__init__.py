"""What an agent tells the requester and the job record about its jobs.

``outbox`` (acknowledgements, refusals, live output chunks and results),
``recorder`` (results written to JetStream until it takes them), ``replies``
(a result cut to fit one NATS message), ``running_report`` (the jobs held, every
interval).
"""
