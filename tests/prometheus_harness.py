"""Helpers for the stack tests: the repo's stack files, real subprocesses, Prometheus's HTTP API.

Reads the committed configs (deploy/, grafana/), writes test copies of them into a temporary
directory, starts real processes (the app, the Debian ``prometheus``) and queries them::

    rules = rules_with_short_for(ALERTS_YML, tmp / "alerts.yml")
    config = prometheus_test_config(tmp / "prometheus.yml", target="127.0.0.1:8765", rules=rules)
    with ManagedProcess([prom, f"--config.file={config}", ...], tmp / "prom.log") as proc:
        api = PrometheusAPI(f"http://127.0.0.1:{port}")
        wait_until(api.ready, 30, "prometheus ready", proc)
        api.query('up{job="coda-lite"}')
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from coda_otel import testing

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS_YML = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST_YML = DEPLOY / "prometheus" / "alerts.test.yml"
ALERTMANAGER_YML = DEPLOY / "alertmanager" / "alertmanager.yml"
JAEGER_YAML = DEPLOY / "jaeger" / "config.yaml"
COMPOSE_YML = REPO / "docker-compose.yml"
GRAFANA = REPO / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DATASOURCES_DIR = GRAFANA / "provisioning" / "datasources"
DASHBOARD_PROVIDERS_DIR = GRAFANA / "provisioning" / "dashboards"

SCRAPE_JOB = "coda-lite"
DASHBOARD_UIDS = {"coda-pipeline", "coda-memory", "coda-cache", "coda-health"}

#: Grafana's built-in variables, as the test Prometheus (1 s scrapes) would see them.
GRAFANA_BUILTINS = {"__rate_interval": "10s", "__range": "5m", "__interval": "2s"}
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard JSON under grafana/dashboards, keyed by file name."""
    return {
        p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARDS.glob("*.json"))
    }


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """All panels, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def template_variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def substitute(expr: str, dashboard: dict[str, Any], values: dict[str, str] | None = None) -> str:
    """Replace Grafana variables the way Grafana would with its defaults selected.

    A variable with "All" stands for its ``allValue``; a single-value one (``$job``) for its
    default; ``values`` overrides either (``{"instance": "127.0.0.1:8765"}``). Raises KeyError
    for a variable the dashboard does not define.
    """
    variables = template_variables(dashboard)

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if values and name in values:
            return values[name]
        if name in GRAFANA_BUILTINS:
            return GRAFANA_BUILTINS[name]
        var = variables[name]
        if var.get("includeAll"):
            return str(var.get("allValue") or ".*")
        return str(var["current"]["value"])

    return _VARIABLE.sub(value, expr)


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str  # variables substituted
    exemplar: bool = False  # Grafana asks for exemplars with this query

    @property
    def label(self) -> str:
        return f"{self.dashboard}:{self.panel}:{self.ref_id}"


def dashboard_queries(values: dict[str, str] | None = None) -> list[PanelQuery]:
    """Every PromQL expression of every dashboard panel, variables substituted."""
    out = []
    for dashboard in load_dashboards().values():
        for panel in iter_panels(dashboard):
            for target in panel.get("targets", []):
                if "expr" in target:
                    out.append(
                        PanelQuery(
                            dashboard["uid"],
                            panel["title"],
                            target["refId"],
                            substitute(target["expr"], dashboard, values),
                            bool(target.get("exemplar")),
                        )
                    )
    return out


_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def variable_queries() -> list[tuple[str, str, str, str]]:
    """(dashboard uid, variable, series selector, label) for each label_values() variable."""
    out = []
    for dashboard in load_dashboards().values():
        for name, var in template_variables(dashboard).items():
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            match = _LABEL_VALUES.match(query.strip())
            if match is None:
                raise ValueError(f"{dashboard['uid']}: ${name} is not label_values(): {query!r}")
            selector = substitute(match["selector"], dashboard)
            out.append((dashboard["uid"], name, selector, match["label"]))
    return out


def alert_rules(path: Path = ALERTS_YML) -> list[dict[str, Any]]:
    return [rule for group in load_yaml(path)["groups"] for rule in group["rules"]]


def rules_with_short_for(src: Path, dest: Path, duration: str = "0s") -> Path:
    """Copy a rule file with every ``for`` cut to ``duration`` (so alerts fire in a test)."""
    doc = load_yaml(src)
    for group in doc["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = duration
    dest.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return dest


def prometheus_test_config(
    dest: Path, *, target: str | None = None, file_sd: Path | None = None, rules: Path
) -> Path:
    """The committed prometheus.yml aimed at ``target`` or at the targets listed in the
    ``file_sd`` file (see :func:`write_file_sd`): 1 s scrapes, no Alertmanager."""
    if (target is None) == (file_sd is None):
        raise ValueError("give one of target and file_sd")
    doc = load_yaml(PROMETHEUS_YML)
    doc["global"].update(scrape_interval="1s", evaluation_interval="1s")
    doc.pop("alerting", None)
    doc["rule_files"] = [str(rules)]
    jobs = [job for job in doc["scrape_configs"] if job["job_name"] == SCRAPE_JOB]
    if len(jobs) != 1:
        raise ValueError(f"{PROMETHEUS_YML}: expected one {SCRAPE_JOB!r} job, found {len(jobs)}")
    jobs[0]["scrape_interval"] = "1s"
    if file_sd is not None:
        del jobs[0]["static_configs"]
        jobs[0]["file_sd_configs"] = [{"files": [str(file_sd)], "refresh_interval": "1s"}]
    else:
        jobs[0]["static_configs"] = [{"targets": [target]}]
    doc["scrape_configs"] = jobs
    dest.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return dest


def prometheus_argv(binary: str, config: Path, tmp: Path, port: int) -> list[str]:
    """The command line of a test Prometheus on 127.0.0.1:``port``, its data under ``tmp``."""
    return [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--enable-feature=exemplar-storage",
    ]


def write_file_sd(dest: Path, targets: list[str]) -> Path:
    """A Prometheus file-based discovery file listing ``targets`` (written atomically)."""
    tmp = dest.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"targets": targets, "labels": {}}]), encoding="utf-8")
    tmp.replace(dest)
    return dest


class ManagedProcess:
    """A subprocess whose output goes to a log file; always terminated (then killed) on exit."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.log = log
        self.env = env  # runs in the log's directory, so nothing lands in the checkout
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ManagedProcess:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=self.log.parent
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.argv[0]} exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def wait_until(
    check: Callable[[], Any],
    timeout: float,
    what: str,
    *processes: ManagedProcess,
    interval: float = 0.5,
) -> Any:
    """Call ``check`` until it returns something truthy; fail early if a process died, and
    with the processes' logs on timeout."""

    def attempt() -> Any:
        for proc in processes:
            proc.check_alive()
        return check()

    try:
        return testing.wait_until(
            attempt,
            timeout,
            interval=interval,
            what=what,
            ignore=(OSError, urllib.error.URLError, ValueError),
        )
    except AssertionError as exc:
        logs = "\n".join(f"--- {p.argv[0]} log:\n{p.tail()}" for p in processes)
        raise TimeoutError(f"{exc}\n{logs}") from None


def http_json(url: str, body: Any = None, timeout: float = 30) -> tuple[int, Any]:
    """GET (or POST ``body`` as JSON); returns (status, parsed JSON or text)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


class PrometheusQueryError(AssertionError):
    pass


class PrometheusAPI:
    """The few endpoints of Prometheus's HTTP API the tests use."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")

    def ready(self) -> bool:
        status, _ = http_json(f"{self.base}/-/ready", timeout=2)
        return status == 200

    def _get(self, path: str, **params: str | list[str]) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        status, doc = http_json(f"{self.base}{path}?{query}", timeout=10)
        if status != 200 or not isinstance(doc, dict) or doc.get("status") != "success":
            raise PrometheusQueryError(f"{path} {params}: HTTP {status}: {doc}")
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; raises PrometheusQueryError on any error. Returns the result list."""
        data = self._get("/api/v1/query", query=expr)
        result = data["result"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        return list(result)

    def label_values(self, label: str, selector: str) -> list[str]:
        return list(self._get(f"/api/v1/label/{label}/values", **{"match[]": [selector]}))

    def exemplars(self, expr: str, window_s: float = 600) -> list[dict[str, Any]]:
        """Exemplars stored for the series ``expr`` selects, over the last ``window_s`` seconds."""
        end = time.time()
        data = self._get(
            "/api/v1/query_exemplars", query=expr, start=str(end - window_s), end=str(end)
        )
        return [ex for series in data for ex in series["exemplars"]]

    def alerts(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/alerts")["alerts"])

    def rule_health(self) -> list[dict[str, Any]]:
        """Every loaded rule with its evaluation health ("ok", "err", "unknown")."""
        groups = self._get("/api/v1/rules")["groups"]
        return [rule for group in groups for rule in group["rules"]]
