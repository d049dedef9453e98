"""A short soak: bench/run.py's mixed load, 10 clients for 3 s, must see 0 errors.

Why: the full soak (50 clients, 30 s; `python bench/run.py --only soak`) prints figures and
is too slow for every run; this short one runs the same code in CI so a regression that
drops connections or answers non-200 under concurrency (pool refusals, connection limits,
a handler that fails when interleaved) fails here.  No timing is asserted: the machine is
shared, so only counts are.  Loopback only, bounded in time.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bench():
    spec = importlib.util.spec_from_file_location("memtype_bench_run", ROOT / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_short_soak_has_no_errors(capsys) -> None:
    bench = _bench()
    result = bench.bench_soak(clients=10, seconds=3.0)
    out = capsys.readouterr().out
    assert result["errors"] == 0, out
    labels = {label for label, _ in bench._soak_mix()}
    assert set(result["endpoints"]) == labels
    # Every endpoint of the mix was exercised, and every request counted once.
    for label, (n, errors, _p50, _p99) in result["endpoints"].items():
        assert n > 0 and errors == 0, (label, out)
    assert sum(n for n, *_ in result["endpoints"].values()) == result["requests"]
    assert {"resolve", "map", "zap", "diff", "healthz", "app.js", "page"} <= {
        w for label in labels for w in label.replace("/", " ").replace("(", " ").replace(")", " ").split()}
    for line in out.splitlines():
        assert len(line) <= 72, line
