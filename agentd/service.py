"""The agent as the NATS service ``nexec-agent`` (ADR-32): what ``nats micro ls``,
``nats micro info`` and ``nats micro stats`` show of it (:mod:`runtime.service`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

from agentd.config import AgentConfig
from agentd.counters import AgentCounters
from runtime.service import Endpoint, EndpointCounts, ServiceIdentity, ServiceResponder
from schemas import __version__
from schemas.messages import ResultStatus
from schemas.subjects import AGENT_SERVICE, ANY_QUEUE_GROUP

FINAL_STATUSES = (
    ResultStatus.COMPLETED,
    ResultStatus.FAILED,
    ResultStatus.TIMEOUT,
    ResultStatus.CANCELLED,
)
"""The statuses an agent answers with (``no_reply`` and ``skipped`` are controllers')."""


def agent_service(
    config: AgentConfig,
    counters: AgentCounters,
    *,
    instance_id: str,
    started_at: float,
    jobs_running: Callable[[], int],
    record_counts: Callable[[], Mapping[str, int]],
) -> ServiceResponder:
    """The responder of one agent process: instance ``instance_id`` (its heartbeats'),
    metadata ``hostname``, ``labels`` (``k:v,k2:v2``), ``version``, ``subject_prefix``,
    and one endpoint ``jobs`` counting the job messages it received (``record_counts``:
    its results' writes to JetStream, as its shutdown summary counts them)."""
    subjects = config.subjects
    labels = sorted(config.labels.items())
    identity = ServiceIdentity(
        name=AGENT_SERVICE,
        instance_id=instance_id,
        version=__version__,
        description="nexec agent: runs the commands of jobs addressed to its host",
        metadata={
            "hostname": config.hostname,
            "labels": ",".join(f"{key}:{value}" for key, value in labels),
            "version": __version__,
            "subject_prefix": subjects.prefix,
        },
    )
    return ServiceResponder(
        subjects,
        identity,
        [jobs_endpoint(config, counters, jobs_running, record_counts)],
        started_at=started_at,
        timeout_s=config.connect_timeout_s,
        limits=config,
    )


def jobs_endpoint(
    config: AgentConfig,
    counters: AgentCounters,
    jobs_running: Callable[[], int],
    record_counts: Callable[[], Mapping[str, int]],
) -> Endpoint:
    """The endpoint ``jobs``: the job subjects the agent listens on (its host's, its
    labels', all and any, with the queue group of any) and what it counted."""
    subjects = config.subjects
    listens = [
        subjects.exec_host(config.hostname),
        *(subjects.exec_label(key, value) for key, value in sorted(config.labels.items())),
        subjects.exec_all(),
        subjects.exec_any(),
    ]
    return Endpoint(
        name="jobs",
        subject=subjects.exec_every(),
        counts=functools.partial(jobs_counts, counters, jobs_running, record_counts),
        metadata={"subjects": ",".join(listens), "any_queue_group": ANY_QUEUE_GROUP},
    )


def jobs_counts(
    counters: AgentCounters,
    jobs_running: Callable[[], int],
    record_counts: Callable[[], Mapping[str, int]],
) -> EndpointCounts:
    """What the endpoint ``jobs`` counted: the job messages received (requests), those
    answered ``failed`` (errors: refusals included), and the agent's own counters,
    every one of its shutdown summary's among them."""
    answered = counters.answered
    return EndpointCounts(
        requests=counters.received,
        errors=answered[ResultStatus.FAILED],
        last_error=counters.last_error,
        processing_ns=counters.processing_ns,
        data={
            "received": counters.received,
            "started": counters.started,
            "refused": counters.refused,
            "duplicates": counters.duplicates,
            "replies_lost": counters.replies_lost,
            "running": jobs_running(),
            **record_counts(),
            **{status.value: answered[status] for status in FINAL_STATUSES},
        },
    )
