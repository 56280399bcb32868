"""The README's Prometheus material holds: our exposition passes ``promtool check metrics``, and the
Galaxy queries, evaluated by ``promtool test rules`` on a 32-chip host exported by our own
collector, find the one chip that is over 90 % and the cross-chip spread. Skipped without promtool
(Debian's ``prometheus`` package has it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tt_memtop.exporter.collector import render
from tt_memtop.exporter.view import DeviceFigures, MetricsView

ROOT = Path(__file__).resolve().parents[1]
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)")
GiB = 1 << 30
HOT = 7  # the chip at 93.75 % of its DRAM


def _readme_queries() -> list[str]:
    """The README's PromQL: one query per unindented line, indented lines continue it."""
    block = re.search(r"```promql\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    queries: list[str] = []
    for line in block.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace() and queries:
            queries[-1] += " " + line.strip()
        else:
            queries.append(line.strip())
    return queries


def _galaxy() -> bytes:
    devs = []
    for d in range(32):
        dram = 11 * GiB if d == HOT else 4 * GiB
        trace = GiB // 4 if d == HOT else 0
        devs.append(DeviceFigures(d, "wormhole_b0", (dram, GiB // 8, 0, trace, 0, 0),
                                  {"dram": 12 * GiB, "l1": 171 * (1 << 20)}, 10))
    return render(MetricsView("galaxy-01", "serve", True, 0.0, 1000, 0, devs))


def test_exposition_passes_promtool_lint():
    done = subprocess.run([PROMTOOL, "check", "metrics"], input=_galaxy(), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_readme_galaxy_queries_find_the_hot_chip_and_the_spread(tmp_path):
    q = {name: next(x for x in _readme_queries() if key in x) for name, key in
         (("dram", 'pool=~"dram|trace"'), ("l1", 'pool=~"l1|l1_small'), ("spread", "max by (hostname)"),
          ("outlier", "topk(1,"), ("down", "tt_memtop_source_up == 0"))}
    series = [{"series": f"{s.name}{{{','.join(f'{k}={json.dumps(v)}' for k, v in sorted(s.labels.items()))}}}",
               "values": f"{s.value:.0f}x3"}
              for fam in text_string_to_metric_families(_galaxy().decode()) for s in fam.samples]
    hot = {"hostname": "galaxy-01", "device": str(HOT), "arch": "wormhole_b0"}

    def labels(d: dict) -> str:
        return "{" + ", ".join(f"{k}={json.dumps(v)}" for k, v in d.items()) + "}"

    tests = [
        {"expr": q["dram"], "eval_time": "1m", "exp_samples": [{"labels": labels(hot), "value": 0.9375}]},
        {"expr": q["l1"], "eval_time": "1m", "exp_samples": []},
        {"expr": q["spread"], "eval_time": "1m", "exp_samples": [{"labels": '{hostname="galaxy-01"}',
                                                                 "value": 7 * GiB}]},
        {"expr": f"round({q['outlier']})", "eval_time": "1m",  # avg() rounds in the last bit
         "exp_samples": [{"labels": labels({**hot, "pool": "dram"}), "value": 11 * GiB - (11 + 31 * 4) * GiB // 32}]},
        {"expr": q["down"], "eval_time": "1m", "exp_samples": []},
    ]
    spec = {"rule_files": [], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests}]}
    (tmp_path / "t.yml").write_text(json.dumps(spec))
    done = subprocess.run([PROMTOOL, "test", "rules", str(tmp_path / "t.yml")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
