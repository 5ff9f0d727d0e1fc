#!/usr/bin/env python3
"""Reads criterion's estimates for the shipper-core benchmark and prints each
pipeline's throughput as a ratio of the gunzip baseline measured in the same run."""

import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
rows = []
for group in sorted(root.glob("shipper_core_*")):
    def mean_ns(name):
        est = json.loads((group / name / "new" / "estimates.json").read_text())
        return est["mean"]["point_estimate"]
    bench = json.loads((group / "gunzip_split_timestamps_batch" / "new" / "benchmark.json").read_text())
    size = bench["throughput"]["Bytes"]
    base, core = mean_ns("baseline_flate2_gunzip"), mean_ns("gunzip_split_timestamps_batch")
    rows.append((group.name, size / base * 1e3, size / core * 1e3, base / core))
print(f"{'input':<22}{'gunzip MB/s':>13}{'core MB/s':>12}{'core/gunzip':>13}")
for name, b, c, r in rows:
    print(f"{name:<22}{b:>13.0f}{c:>12.0f}{r:>12.2f}x")
