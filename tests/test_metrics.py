"""``GET /metrics``: the Prometheus exposition of a real controller, parsed with
prometheus-client's own parser, after known sequences of requests against real agents
and a real nats-server; and the alert rules in deploy/prometheus/ name only metrics
that exist."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import Mapping
from pathlib import Path

import aiohttp
import yaml
from nats.aio.client import Client
from prometheus_client.parser import text_string_to_metric_families

from controller.appkeys import AUDIT, LIFECYCLE, NATS_LINK
from schemas.messages import ResultStatus
from schemas.subjects import CONTROLLER_SERVICE, Subjects
from tests.helpers import (
    STARTUP_TIMEOUT_S,
    Controller,
    LiveAgent,
    LiveAgentProcess,
    MakeController,
    RestartableNats,
    service_replies,
    until,
)
from tests.test_http_edges import connect, head

DEPLOY = Path(__file__).parent.parent / "deploy" / "prometheus"
EXEC_ROUTE = "/node/{hostname}/command/exec"

Series = Mapping[tuple[str, frozenset[tuple[str, str]]], float]
"""(sample name, its labels) -> value."""


async def scrape_text(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain")
        return await response.text()


def parse(text: str) -> Series:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(url: str) -> Series:
    return parse(await scrape_text(url))


def value(series: Series, name: str, **labels: str) -> float:
    return series.get((name, frozenset(labels.items())), 0.0)


def deltas(before: Series, after: Series, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """The series of ``name`` that changed, by labels, with how much."""
    changed = {
        labels: count - before.get((sample, labels), 0.0)
        for (sample, labels), count in after.items()
        if sample == name
    }
    return {labels: delta for labels, delta in changed.items() if delta}


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


async def test_a_known_sequence_of_requests_gives_exact_counter_deltas(
    make_controller: MakeController,
    live_agent: LiveAgent,
    live_agent_process: LiveAgentProcess,
) -> None:
    controller = await make_controller(delivery_timeout_s=0.5)
    await live_agent(controller, "alive-1")
    doomed = await live_agent_process(controller, "doomed-1")
    os.kill(doomed.pid, signal.SIGKILL)
    await asyncio.to_thread(doomed.popen.wait)
    before = await scrape(controller.url)

    ok = await controller.exec("alive-1", {"command": "true"})
    invalid = await controller.exec("alive-1", {"command": ""})
    unauthorized = await controller.exec("alive-1", {"command": "true"}, key="not-a-key")
    unknown_host = await controller.exec("nowhere-1", {"command": "true"})
    unknown_path = await controller.request("GET", "/no/such/path")
    dead = await controller.exec("doomed-1", {"command": "true", "timeout": 1})
    after = await scrape(controller.url)

    statuses = [r.status for r in (ok, invalid, unauthorized, unknown_host, unknown_path, dead)]
    assert statuses == [202, 400, 401, 404, 404, 202]
    assert [r["status"] for r in dead.body["results"]] == ["no_reply"]
    exec_requests = {
        labels(method="POST", route=EXEC_ROUTE, status=status): count
        for status, count in (("202", 2), ("400", 1), ("401", 1), ("404", 1))
    }
    assert deltas(before, after, "nexec_http_requests_total") == {
        **exec_requests,
        labels(method="GET", route="unmatched", status="404"): 1,
        labels(method="GET", route="/metrics", status="200"): 1,  # the first scrape
    }
    assert deltas(before, after, "nexec_http_request_duration_seconds_count") == {
        labels(route=EXEC_ROUTE): 5,
        labels(route="unmatched"): 1,
        labels(route="/metrics"): 1,
    }
    assert deltas(before, after, "nexec_jobs_total") == {labels(kind="exec"): 2}
    assert deltas(before, after, "nexec_host_results_total") == {
        labels(status="completed"): 1,
        labels(status="no_reply"): 1,
    }
    assert deltas(before, after, "nexec_job_hosts_count") == {labels(): 2}
    assert deltas(before, after, "nexec_job_hosts_sum") == {labels(): 2}
    assert deltas(before, after, "nexec_collection_seconds_count") == {labels(): 2}
    for unchanged in (
        "nexec_rate_limited_total",
        "nexec_audit_records_lost_total",
        "nexec_jetstream_write_failures_total",
        "nexec_nats_reconnects_total",
    ):
        assert deltas(before, after, unchanged) == {}, unchanged
    assert value(after, "nexec_nats_connected") == 1
    assert value(after, "nexec_agents") == 2  # doomed-1 is listed until its entry expires
    assert value(after, "nexec_inflight_requests") == 1  # this scrape


async def test_a_stopped_rollout_counts_its_skipped_hosts(
    controller: Controller, live_agent: LiveAgent
) -> None:
    for host in ("m1", "m2", "m3"):
        await live_agent(controller, host, labels={"pool": "m"}, allow_shell=True)
    before = await scrape(controller.url)

    answer = await controller.request(
        "POST", "/node/pool:m/command/shell",
        json={"command": "false", "rollout": {"batch_size": 1}},
    )  # fmt: skip
    after = await scrape(controller.url)

    assert answer.status == 202, answer.body
    assert [r["status"] for r in answer.body["results"]] == ["completed", "skipped", "skipped"]
    assert deltas(before, after, "nexec_jobs_total") == {labels(kind="shell"): 1}
    assert deltas(before, after, "nexec_job_hosts_sum") == {labels(): 3}
    assert deltas(before, after, "nexec_host_results_total") == {
        labels(status="completed"): 1,
        labels(status="skipped"): 2,
    }


async def test_no_metric_names_a_key_a_host_or_a_command(
    controller: Controller, live_agent: LiveAgent
) -> None:
    await live_agent(controller, "secret-host-1")
    await controller.exec("secret-host-1", {"command": "echo", "args": ["secret-arg"]})
    await controller.exec("_all", {"command": "secret-command"}, key="wrong-secret-key")

    text = await scrape_text(controller.url)

    for secret in (controller.api_key, "wrong-secret-key", "secret-host-1", "secret-"):
        assert secret not in text


async def test_agents_follows_agents_joining_and_leaving(
    controller: Controller, live_agent: LiveAgent
) -> None:
    assert value(await scrape(controller.url), "nexec_agents") == 0
    first = await live_agent(controller, "join-1")
    assert value(await scrape(controller.url), "nexec_agents") == 1
    await live_agent(controller, "join-2")
    assert value(await scrape(controller.url), "nexec_agents") == 2

    await first.stop()
    await controller.registry.wait_until(
        lambda registry: [hb.hostname for hb in registry.live()] == ["join-2"], 10
    )
    assert value(await scrape(controller.url), "nexec_agents") == 1


async def test_nats_connected_and_reconnects_follow_a_nats_restart(
    tmp_path: Path, make_controller: MakeController
) -> None:
    server = RestartableNats(tmp_path / "jetstream")
    try:
        controller = await make_controller(nats_url=server.url)
        link = controller.app[NATS_LINK]
        back = asyncio.Event()

        async def reconnected() -> None:
            back.set()

        link.on_connection_change(lost=lambda: None, back=reconnected)
        before = await scrape(controller.url)

        await asyncio.to_thread(server.stop)
        await asyncio.wait_for(link.disconnected.wait(), STARTUP_TIMEOUT_S)
        down = await scrape(controller.url)
        server.start_again()
        await asyncio.wait_for(back.wait(), 20)
        up = await scrape(controller.url)
    finally:
        server.stop()

    assert value(before, "nexec_nats_connected") == 1
    assert value(down, "nexec_nats_connected") == 0
    assert value(up, "nexec_nats_connected") == 1
    reconnects = "nexec_nats_reconnects_total"
    assert (value(before, reconnects), value(up, reconnects)) == (0, 1)


async def test_metrics_off_answers_404_in_the_error_shape(make_controller: MakeController) -> None:
    controller = await make_controller(metrics_enabled=False)

    response = await controller.request("GET", "/metrics")

    assert response.status == 404
    assert response.body["code"] == 404
    assert "metrics_enabled" in response.body["details"]


async def test_metrics_listen_serves_on_its_own_port_only(
    make_controller: MakeController, unused_tcp_port: int
) -> None:
    controller = await make_controller(metrics_listen=f"127.0.0.1:{unused_tcp_port}")
    await controller.exec("_all", {"command": "true"})  # 404: no agent

    series = await scrape(f"http://127.0.0.1:{unused_tcp_port}")
    on_listen = await controller.request("GET", "/metrics")

    assert (
        value(series, "nexec_http_requests_total", method="POST", route=EXEC_ROUTE, status="404")
        == 1
    )
    assert on_listen.status == 404
    assert "metrics_listen" in on_listen.body["details"]


async def test_a_full_audit_stream_counts_its_lost_records_and_write_failures(
    make_controller: MakeController,
) -> None:
    controller = await make_controller(audit_max_bytes=1024)
    for _ in range(8):  # each 401 is audited; about 350 B a record
        assert (await controller.exec("_all", {"command": "true"}, key="bad")).status == 401
    await controller.app[AUDIT].flushed()

    series = await scrape(controller.url)

    lost = value(series, "nexec_audit_records_lost_total")
    assert lost >= 1
    failures = value(series, "nexec_jetstream_write_failures_total", stream="nexec_audit")
    assert failures == lost
    assert value(series, "nexec_jetstream_write_failures_total", stream="nexec_jobs") == 0


async def test_the_rate_limit_is_counted(make_controller: MakeController) -> None:
    controller = await make_controller(rate_limit_per_s=0.001, rate_limit_burst=1)
    statuses = [(await controller.request("GET", "/node")).status for _ in range(3)]

    series = await scrape(controller.url)

    assert statuses == [200, 429, 429]
    assert value(series, "nexec_rate_limited_total") == 2


METRIC_NAME = re.compile(r"\bnexec_[a-z_]+\b")


def rule_expressions() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "nexec-rules.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exposed_names(text: str) -> set[str]:
    """Every series name the exposition declares, with or without samples yet (a
    labelled counter has none before its first event)."""
    return {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in SUFFIXES.get(family.type, ("",))
    }


async def test_every_metric_the_alert_rules_name_exists(controller: Controller) -> None:
    exposed = exposed_names(await scrape_text(controller.url))
    expressions = rule_expressions()

    named = {name for expr in expressions for name in METRIC_NAME.findall(expr)}

    assert len(expressions) >= 4
    assert {"nexec_agents", "nexec_nats_connected"} <= named
    assert named - exposed == set()


def test_the_scrape_config_loads_the_rules() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert config["rule_files"] == ["nexec-rules.yml"]
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"


DOCS = Path(__file__).parent.parent / "docs" / "operations.md"
METRIC_ROW = re.compile(r"^\| `(nexec_\w+)` \| (\w+) \|([^|]*)\|", re.MULTILINE)


def documented_metrics() -> dict[str, tuple[str, frozenset[str]]]:
    """docs/operations.md's table of metrics: exposed name -> (type, label names)."""
    section = DOCS.read_text().split("### The metrics", 1)[1].split("\n### ", 1)[0]
    return {
        name: (kind, frozenset(re.findall(r"`(\w+)`(?: \([^)]*\))?", labels)))
        for name, kind, labels in METRIC_ROW.findall(section)
    }


async def test_every_documented_metric_is_served_with_its_type_and_labels(
    controller: Controller, live_agent: LiveAgent
) -> None:
    """The table in docs/operations.md is what ``/metrics`` serves: each name (counters
    with ``_total``), its type and label names, and nothing served is missing there."""
    await live_agent(controller, "m1")
    await controller.exec("m1", {"command": "true"})  # every labelled family has a sample
    await controller.request("POST", "/node/m1/command/exec", json={"command": ""})
    served: dict[str, tuple[str, frozenset[str]]] = {}
    for family in text_string_to_metric_families(await scrape_text(controller.url)):
        name = f"{family.name}_total" if family.type == "counter" else family.name
        names = {k for sample in family.samples for k in sample.labels if k not in ("le",)}
        served[name] = (family.type, frozenset(names))
    documented = documented_metrics()
    assert set(served) == set(documented)
    assert served == documented


async def test_a_client_leaving_mid_request_leaves_nothing_in_flight(
    controller: Controller,
) -> None:
    """A client that leaves mid-body is counted once as 499, and the in-flight gauge
    comes back to the scrape alone; so does it after a request that failed."""
    lifecycle = controller.app[LIFECYCLE]
    before = await scrape(controller.url)
    reader, writer = await connect(controller)
    writer.write(
        head("POST", EXEC_ROUTE.replace("{hostname}", "h1"),
             f"Authorization: Bearer {controller.api_key}", "Content-Type: application/json",
             "Content-Length: 1000", "Expect: 100-continue")
    )  # fmt: skip
    async with asyncio.timeout(STARTUP_TIMEOUT_S):  # the handler is reading the body now
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")
    assert lifecycle.in_flight == 1
    writer.write(b'{"command"')
    writer.close()
    await until(lambda: lifecycle.in_flight == 0)
    failed = await controller.exec("nowhere-1", {"command": "true"})
    assert failed.status == 404
    after = await scrape(controller.url)

    assert value(after, "nexec_inflight_requests") == 1  # this scrape
    assert deltas(before, after, "nexec_http_requests_total") == {
        labels(method="POST", route=EXEC_ROUTE, status="499"): 1,
        labels(method="POST", route=EXEC_ROUTE, status="404"): 1,
        labels(method="GET", route="/metrics", status="200"): 1,
    }


async def test_a_flood_of_scrapes_makes_one_exposition_per_interval(
    make_controller: MakeController,
) -> None:
    """``/metrics`` needs no key and a scrape costs milliseconds of CPU: scrapes within
    ``metrics_cache_s`` of the one that made the exposition get the same text (here,
    its own count of scrapes stays where the first one left it)."""
    controller = await make_controller(metrics_cache_s=60)
    first = await scrape_text(controller.url)
    for _ in range(20):
        assert await scrape_text(controller.url) == first
    fresh = await make_controller(metrics_cache_s=0)
    assert await scrape_text(fresh.url) != await scrape_text(fresh.url)


async def test_each_host_is_counted_once_for_any_and_a_rollout_with_a_dead_host(
    make_controller: MakeController,
    live_agent: LiveAgent,
    live_agent_process: LiveAgentProcess,
    nc: Client,
) -> None:
    """``_any`` counts its one host; a rollout counts each host once, as its copy is
    decided (a dead host's ``no_reply`` too), and ``$SRV.STATS`` reads the same."""
    controller = await make_controller(delivery_timeout_s=0.5)
    await live_agent(controller, "a1", labels={"pool": "m"})
    doomed = await live_agent_process(controller, "d1", "--labels", "pool:m")
    os.kill(doomed.pid, signal.SIGKILL)
    await asyncio.to_thread(doomed.popen.wait)
    before = await scrape(controller.url)

    any_host = await controller.exec("_any", {"command": "true"})
    rollout = await controller.request(
        "POST", "/node/pool:m/command/exec",
        json={"command": "true", "timeout": 1, "rollout": {"batch_size": 1, "max_failures": 1}},
    )  # fmt: skip
    after = await scrape(controller.url)

    assert (any_host.status, rollout.status) == (202, 202), rollout.body
    assert [r["status"] for r in any_host.body["results"]] in (["completed"], ["no_reply"])
    assert [r["status"] for r in rollout.body["results"]] == ["completed", "no_reply"]
    counted = deltas(before, after, "nexec_host_results_total")
    assert sum(counted.values()) == 3
    assert counted[labels(status="completed")] >= 1
    assert counted[labels(status="no_reply")] >= 1
    [stats] = await service_replies(
        nc, Subjects.service_request("STATS", CONTROLLER_SERVICE), expected=1
    )
    data = stats["endpoints"][0]["data"]
    for status in ResultStatus:
        assert data[f"hosts_{status}"] == value(after, "nexec_host_results_total", status=status)
