"""The controller as the NATS service ``nexec-controller`` (ADR-32): what ``nats micro
ls``, ``nats micro info`` and ``nats micro stats`` show of it (:mod:`runtime.service`)."""

from __future__ import annotations

import functools
import socket
import time
import uuid

from controller.config import ControllerConfig
from controller.jobs.dispatch import Dispatcher
from controller.registry.view import Registry
from runtime.service import Endpoint, EndpointCounts, ServiceIdentity, ServiceResponder
from schemas import __version__
from schemas.messages import ResultStatus
from schemas.subjects import CONTROLLER_SERVICE


def controller_service(
    config: ControllerConfig, dispatcher: Dispatcher, registry: Registry
) -> ServiceResponder:
    """The responder of one controller process: a new instance id, metadata
    ``hostname``, ``version``, ``subject_prefix`` and ``listen``, and one endpoint
    ``jobs`` counting the jobs it published and collected."""
    subjects = config.subjects
    jobs = Endpoint(
        name="jobs",
        subject=subjects.exec_every(),
        counts=functools.partial(jobs_counts, dispatcher, registry),
        metadata={"acks": subjects.acks_all(), "results": subjects.result_records_all()},
    )
    identity = ServiceIdentity(
        name=CONTROLLER_SERVICE,
        instance_id=uuid.uuid4().hex,
        version=__version__,
        description="nexec controller: the HTTP gateway that publishes jobs and collects results",
        metadata={
            "hostname": socket.gethostname(),
            "version": __version__,
            "subject_prefix": subjects.prefix,
            "listen": config.listen,
        },
    )
    return ServiceResponder(
        subjects,
        identity,
        [jobs],
        started_at=time.time(),
        timeout_s=config.connect_timeout_s,
        limits=config,
    )


def jobs_counts(dispatcher: Dispatcher, registry: Registry) -> EndpointCounts:
    """What the endpoint ``jobs`` counted: the jobs collected or not published
    (requests), those not published (errors), and the controller's own counters."""
    counters = dispatcher.counters
    hosts = counters.hosts
    return EndpointCounts(
        requests=counters.collections + counters.publish_failures,
        errors=counters.publish_failures,
        last_error=counters.last_error,
        processing_ns=counters.collecting_ns,
        data={
            "collected": counters.collections,
            "publish_failures": counters.publish_failures,
            "collecting": len(dispatcher.collectors),
            "dropped": sum(dispatcher.dropped.values()),
            "agents_live": len(registry.live()),
            **{f"hosts_{status.value}": hosts[status] for status in ResultStatus},
        },
    )
