"""Many replicas, one view: three real ``coda-lite serve`` behind one real Prometheus.

Prometheus finds the replicas through file-based discovery (the committed prometheus.yml with
its static target swapped for a ``file_sd_configs`` file). Each replica serves a different number
of turns; every dashboard expression must then return data with all replicas selected and with
each one alone, the totals must add up over the three, every rule must evaluate on series of
every replica, each replica's spans must name it, and killing one replica must fire
``CodaScrapeTargetMissing`` for that instance only while the others go on.

The replicas are lean (echo LLM, no speech, hashing embeddings): each starts in about a second,
so three cost little more than one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.prometheus_harness import (
    ALERTS_YML,
    SCRAPE_JOB,
    ManagedProcess,
    PrometheusAPI,
    alert_rules,
    dashboard_queries,
    http_json,
    prometheus_test_config,
    rules_with_short_for,
    variable_queries,
    wait_until,
    write_file_sd,
)
from tests.service_harness import coda_service
from tests.support import free_port, require_tool

pytestmark = [pytest.mark.slow, pytest.mark.stack]

REPLICAS = 3
LEAN_CONFIG = """\
stt: {backend: none}
tts: {backend: none}
embeddings: {backend: hashing}
telemetry: {health_interval: 0.5, cache_stats_interval: 0.5}
"""
TEXTS = [
    "Remember that my favourite colour is green.",
    "What is my favourite colour?",
    "What is my favourite colour?",  # a repeat: the caches get a hit
]


@dataclass
class Replicas:
    urls: list[str]  # base URLs, replica i served i + 1 turns
    instances: list[str]  # Prometheus's instance label of each
    processes: list[ManagedProcess]
    homes: list[Path]
    prom: PrometheusAPI
    prometheus: ManagedProcess

    @property
    def turns(self) -> int:
        return sum(range(1, len(self.urls) + 1))


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    prometheus_bin = require_tool("prometheus")
    tmp = tmp_path_factory.mktemp("replicas")
    processes: list[ManagedProcess] = []
    with ExitStack() as stack:
        urls, homes = [], []
        for i in range(REPLICAS):
            home = tmp / f"replica-{i}"
            home.mkdir()
            env = {
                "OTEL_TRACES_EXPORTER": "file",
                "OTEL_BSP_SCHEDULE_DELAY": "200",
                # As the Kubernetes Deployment sets it from the downward API.
                "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id=replica-{i},k8s.pod.name=pod-{i}",
            }
            urls.append(
                stack.enter_context(
                    coda_service(home, config=LEAN_CONFIG, env=env, started=processes)
                ).base
            )
            homes.append(home)
        instances = [url.removeprefix("http://") for url in urls]
        file_sd = write_file_sd(tmp / "targets.json", instances)
        rules = rules_with_short_for(ALERTS_YML, tmp / "alerts.yml")
        config = prometheus_test_config(tmp / "prometheus.yml", file_sd=file_sd, rules=rules)
        prom_port = free_port()
        prometheus = stack.enter_context(
            ManagedProcess(
                [
                    prometheus_bin,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                tmp / "prometheus.log",
            )
        )
        prom = PrometheusAPI(f"http://127.0.0.1:{prom_port}")
        wait_until(prom.ready, 30, "prometheus ready", prometheus)
        for i, url in enumerate(urls):
            for text in TEXTS[: i + 1]:
                status, body = http_json(
                    f"{url}/v1/turns", {"text": text, "session_id": f"s{i}"}, timeout=60
                )
                assert status == 200, body
        total = sum(range(1, REPLICAS + 1))
        wait_until(
            lambda: prom.query(f'sum(coda_conversations_total{{job="{SCRAPE_JOB}"}}) == {total}'),
            30,
            "every replica's turns to be scraped",
            prometheus,
        )
        # Enough samples after the turns for every rate() window, and rules evaluated.
        wait_until(
            lambda: (
                prom.query(f'count(count_over_time(up{{job="{SCRAPE_JOB}"}}[1m]) >= 8) == 3')
                and prom.query("count(coda:pipeline_stage_duration_seconds:p95_5m)")
            ),
            60,
            "more scrapes and a rule evaluation",
            prometheus,
        )
        yield Replicas(urls, instances, processes, homes, prom, prometheus)


def test_prometheus_discovers_every_replica(replicas: Replicas) -> None:
    up = replicas.prom.query(f'up{{job="{SCRAPE_JOB}"}} == 1')
    assert sorted(s["metric"]["instance"] for s in up) == sorted(replicas.instances)


def test_totals_add_up_over_the_replicas(replicas: Replicas) -> None:
    """The Turns (total) panel sums the three replicas' counters."""
    total = next(q for q in QUERIES if q.panel == "Turns (total)")
    [sample] = replicas.prom.query(total.expr)
    assert float(sample["value"][1]) == replicas.turns
    per_replica = replicas.prom.query(
        f'sum by (instance) (coda_conversations_total{{job="{SCRAPE_JOB}"}})'
    )
    by_instance = {s["metric"]["instance"]: float(s["value"][1]) for s in per_replica}
    assert by_instance == {inst: i + 1.0 for i, inst in enumerate(replicas.instances)}


QUERIES = dashboard_queries()


@pytest.mark.parametrize("index", range(len(QUERIES)), ids=[q.label for q in QUERIES])
def test_dashboard_expression_covers_every_replica(replicas: Replicas, index: int) -> None:
    """With all replicas selected a panel either aggregates them (no instance label left) or
    shows each of them; with one selected it still has data."""
    query = QUERIES[index]
    result = replicas.prom.query(query.expr)
    assert result, f"no data for {query.expr}"
    alone = [dashboard_queries({"instance": i})[index].expr for i in replicas.instances]
    if alone[0] == query.expr:
        return  # a panel about Prometheus itself (firing alerts), not about the replicas
    shown = {s["metric"]["instance"] for s in result if "instance" in s["metric"]}
    assert shown in (set(), set(replicas.instances)), query.expr
    for instance, expr in zip(replicas.instances, alone, strict=True):
        assert replicas.prom.query(expr), f"no data for {instance} alone: {expr}"


@pytest.mark.parametrize(
    ("dashboard", "variable", "selector", "label"),
    variable_queries(),
    ids=[f"{d}:${v}" for d, v, _, _ in variable_queries()],
)
def test_dashboard_variable_has_values(
    replicas: Replicas, dashboard: str, variable: str, selector: str, label: str
) -> None:
    values = replicas.prom.label_values(label, selector)
    assert values, f"{dashboard}: ${variable} has no values"
    if variable == "instance":
        assert sorted(values) == sorted(replicas.instances)


def test_every_rule_evaluates_per_replica(replicas: Replicas) -> None:
    for rule in alert_rules():
        replicas.prom.query(rule["expr"])  # raises on a query error
    loaded = replicas.prom.rule_health()
    assert [(r["name"], r.get("lastError")) for r in loaded if r["health"] == "err"] == []
    p95 = replicas.prom.query("count by (instance) (coda:pipeline_stage_duration_seconds:p95_5m)")
    assert sorted(s["metric"]["instance"] for s in p95) == sorted(replicas.instances)


_RULE_INPUT = re.compile(r"\b([a-z_:][a-z0-9_:]*)\{")


def test_every_rule_reads_series_of_every_replica(replicas: Replicas) -> None:
    """Each alert can fire for each replica: every series a rule reads exists per instance."""
    inputs = {m for rule in alert_rules() for m in _RULE_INPUT.findall(rule["expr"])}
    assert {"up", "coda_component_up", "coda_otel_spans_dropped_total"} <= inputs
    for metric in sorted(inputs):
        found = replicas.prom.query(f'count by (instance) ({metric}{{job="{SCRAPE_JOB}"}})')
        instances = sorted(s["metric"]["instance"] for s in found)
        assert instances == sorted(replicas.instances), metric


def _resources(home: Path) -> list[dict[str, Any]]:
    out = []
    for path in (home / "traces").glob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            for rs in json.loads(line)["resourceSpans"]:
                attrs = rs["resource"]["attributes"]
                out.append({a["key"]: next(iter(a["value"].values())) for a in attrs})
    return out


def test_spans_name_their_replica(replicas: Replicas) -> None:
    for i, home in enumerate(replicas.homes):
        resources = wait_until(lambda home=home: _resources(home), 10, f"replica {i}'s spans")
        assert {(r["service.instance.id"], r["k8s.pod.name"]) for r in resources} == {
            (f"replica-{i}", f"pod-{i}")
        }


def test_killing_one_replica_fires_for_it_alone(replicas: Replicas) -> None:
    """Runs last: it kills the first replica."""
    victim, survivors = replicas.instances[0], replicas.instances[1:]
    process = replicas.processes[0].proc
    assert process is not None
    process.kill()  # a crash, not a clean shutdown

    def firing_for_victim_alone() -> list[dict[str, Any]] | None:
        found = [
            a
            for a in replicas.prom.alerts()
            if a["labels"]["alertname"] == "CodaScrapeTargetMissing" and a["state"] == "firing"
        ]
        return found if [a["labels"].get("instance") for a in found] == [victim] else None

    # Waiting for exactly [victim] rather than taking the first firing set: a survivor whose
    # 1 s scrape times out once on a loaded machine fires for a second and then resolves.
    alerts = wait_until(
        firing_for_victim_alone,
        30,
        f"CodaScrapeTargetMissing firing for {victim} alone",
        replicas.prometheus,
    )
    assert victim in alerts[0]["annotations"]["summary"]

    def up_instances() -> list[str]:
        up = replicas.prom.query(f'up{{job="{SCRAPE_JOB}"}} == 1')
        return sorted(s["metric"]["instance"] for s in up)

    wait_until(lambda: up_instances() == sorted(survivors), 10, "the survivors scraped")
    for url in replicas.urls[1:]:
        status, body = http_json(f"{url}/v1/turns", {"text": "Still there?"}, timeout=60)
        assert status == 200, body
