"""Write the chart's alert rules as a plain Prometheus rules file (monitoring/prometheus/).

The PrometheusRule in the chart is the single source: this renders it with the default values
and a ``job="turbomode-serving"`` selector (what a plain Prometheus scrape job labels the
service with), and writes its ``spec`` as a file Prometheus loads with ``rule_files``.
``--check`` fails when the committed file differs from what the chart renders now.

    python tools/render_rules.py [--helm .tools/bin/helm] [--check]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "turbomode"
TARGET = ROOT / "monitoring" / "prometheus" / "turbomode-rules.yml"
SERVING_SELECTOR = 'job="turbomode-serving"'
HEADER = (
    "# TurboMode's alert rules for a Prometheus without the operator (rule_files).\n"
    "# Generated from charts/turbomode/templates/prometheusrule.yaml by tools/render_rules.py:\n"
    "# edit the chart, then run `make rules`. Serving metrics are selected by\n"
    f"# {SERVING_SELECTOR} (see prometheus.yml beside this file).\n"
)


def render(helm: str) -> str:
    """The rules file text as the chart renders it now."""
    out = subprocess.run(
        [
            helm,
            "template",
            "turbomode",
            str(CHART),
            "--namespace",
            "turbomode",
            "--show-only",
            "templates/prometheusrule.yaml",
            "--set-string",
            f"monitoring.prometheusRule.servingSelector={SERVING_SELECTOR}",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    spec = yaml.safe_load(out)["spec"]
    return HEADER + yaml.safe_dump(spec, sort_keys=False, width=1000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--helm", default=str(ROOT / ".tools" / "bin" / "helm"))
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args()
    text = render(args.helm)
    if args.check:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET.relative_to(ROOT)} is out of date: run `make rules`", file=sys.stderr)
            return 1
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
