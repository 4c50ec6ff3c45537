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
from prometheus_client.parser import text_string_to_metric_families

from controller.appkeys import AUDIT, NATS_LINK
from tests.helpers import (
    STARTUP_TIMEOUT_S,
    Controller,
    LiveAgent,
    LiveAgentProcess,
    MakeController,
    RestartableNats,
)

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
