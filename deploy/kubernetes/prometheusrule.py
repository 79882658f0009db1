"""Write deploy/kubernetes/base/prometheusrule.yaml from deploy/prometheus/alerts.yml.

The Prometheus Operator's PrometheusRule holds the same rule groups as the plain rule file that
docker-compose's Prometheus loads; this script is the only way the former is made::

    python deploy/kubernetes/prometheusrule.py           # rewrite the PrometheusRule
    python deploy/kubernetes/prometheusrule.py --check   # exit 1 if it is out of date

Only PyYAML is needed. Multi-line strings (expressions, runbooks) stay YAML block scalars.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ALERTS_YML = HERE.parent / "prometheus" / "alerts.yml"
PROMETHEUS_RULE = HERE / "base" / "prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/prometheus/alerts.yml by deploy/kubernetes/prometheusrule.py: edit the
# rule file, then run the script (tests/test_kubernetes.py fails while the two differ).
"""


class _BlockDumper(yaml.SafeDumper):
    """A SafeDumper that writes multi-line strings as ``|`` blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def prometheus_rule(rules: dict[str, Any]) -> dict[str, Any]:
    """The PrometheusRule object holding ``rules``'s groups, unchanged."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "coda-lite"},
        "spec": {"groups": rules["groups"]},
    }


def render(alerts_yml: Path = ALERTS_YML) -> str:
    rules = yaml.safe_load(alerts_yml.read_text(encoding="utf-8"))
    body = yaml.dump(
        prometheus_rule(rules), Dumper=_BlockDumper, sort_keys=False, width=100, allow_unicode=True
    )
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args(argv)
    text = render()
    current = PROMETHEUS_RULE.read_text(encoding="utf-8") if PROMETHEUS_RULE.exists() else ""
    if args.check:
        if current != text:
            print(f"{PROMETHEUS_RULE} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    PROMETHEUS_RULE.write_text(text, encoding="utf-8")
    print(f"wrote {PROMETHEUS_RULE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
