#!/usr/bin/env python3
"""Reads a `hush collector export --format parquet` tree the way an ML team would,
with pyarrow.dataset and Hive partitioning, and checks its schema and values.

Usage: check_export.py DIR --rows N --periods YYYY-MM-DD[,...] --min-devices M [--cohort NAME]
Exits 0 when every check passes, 1 on a failed check, 2 when pyarrow is missing.
Run by tests/collector_export.rs; CI installs pyarrow in .ci/run.
"""

import argparse
import datetime
import math
import re
import sys
from collections import defaultdict

try:
    import pyarrow as pa
    import pyarrow.dataset as ds
except ImportError as e:  # The test must fail loudly, not skip: CI installs pyarrow.
    print(f"pyarrow is not installed ({e}); run: python3 -m pip install pyarrow", file=sys.stderr)
    sys.exit(2)

# The file columns in order, then the partition key, with the Arrow types the
# data dictionary promises.
EXPECTED_SCHEMA = [
    ("metric", pa.string()),
    ("kind", pa.string()),
    ("window", pa.string()),
    ("period_id", pa.int64()),
    ("period_start", pa.string()),
    ("cohort", pa.string()),
    ("bucket", pa.string()),
    ("bucket_index", pa.int32()),
    ("estimate", pa.float64()),
    ("std_error", pa.float64()),
    ("ci_low", pa.float64()),
    ("ci_high", pa.float64()),
    ("post_processed", pa.float64()),
    ("reports", pa.int64()),
    ("epsilon", pa.float64()),
    ("epsilon_perm", pa.float64()),
    ("mechanism", pa.string()),
    ("catalog_hash", pa.string()),
    ("period", pa.string()),
]
# Every name of FrequencyKind::NAMES and NumericKind::NAMES (crates/ldp/src/kind.rs).
MECHANISMS = {
    "grr", "sue", "oue", "olh", "hr", "l-grr", "l-sue", "l-oue", "l-osue", "l-lh", "dbitflip-pm",
    "laplace", "duchi", "piecewise", "hybrid", "onebit", "l-onebit",
}

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--periods", required=True)
    parser.add_argument("--min-devices", type=int, required=True)
    parser.add_argument("--cohort")
    args = parser.parse_args()
    periods = sorted(args.periods.split(","))

    dataset = ds.dataset(args.dir, format="parquet", partitioning="hive")
    schema = dataset.schema
    actual = [(f.name, f.type) for f in schema]
    check(actual == EXPECTED_SCHEMA, f"schema: {actual}")
    for field in schema:
        # Every file column is REQUIRED in Parquet: no nulls anywhere.
        if field.name != "period":
            check(not field.nullable, f"{field.name} should not be nullable")

    table = dataset.to_table()
    check(table.num_rows == args.rows, f"{table.num_rows} rows, expected {args.rows}")
    rows = table.to_pylist()
    check(sorted({r["period"] for r in rows}) == periods, f"periods {sorted({r['period'] for r in rows})}")

    # Partition pruning: a filter on the partition key reads one directory.
    first = dataset.to_table(filter=ds.field("period") == periods[0])
    check(first.num_rows == sum(r["period"] == periods[0] for r in rows), "filter on period")
    check(set(first.column("period").to_pylist()) == {periods[0]}, "filtered periods")

    epoch = datetime.date(1970, 1, 1)
    cells = defaultdict(list)
    quantiles = defaultdict(list)
    for r in rows:
        where = f"{r['metric']} {r['period']} {r['bucket']}"
        check(r["window"] in ("day", "week", "month"), f"{where}: window {r['window']}")
        check(r["period_start"] == r["period"], f"{where}: period_start {r['period_start']}")
        day = datetime.date.fromisoformat(r["period"])
        check(r["period_id"] == (day - epoch).days, f"{where}: period_id {r['period_id']}")
        check(r["reports"] >= args.min_devices, f"{where}: {r['reports']} reports were released")
        check(r["ci_low"] <= r["estimate"] <= r["ci_high"], f"{where}: interval")
        # A distribution's p50 and p90 rows: their delta-method error is
        # infinite where the distribution function is flat.
        quantile = r["kind"] == "distribution" and r["bucket_index"] == -1
        finite = quantile or math.isfinite(r["std_error"])
        check(r["std_error"] > 0 and finite, f"{where}: std_error")
        check(r["epsilon"] > 0, f"{where}: epsilon")
        check(r["epsilon_perm"] > r["epsilon"], f"{where}: epsilon_perm")
        check(r["mechanism"] in MECHANISMS, f"{where}: mechanism {r['mechanism']}")
        check(re.fullmatch(r"[0-9a-f]{32}", r["catalog_hash"]) is not None, f"{where}: hash")
        check(r["post_processed"] >= 0, f"{where}: post_processed is negative")
        if args.cohort is not None:
            check(r["cohort"] == args.cohort, f"{where}: cohort {r['cohort']!r}")
        if r["kind"] == "count":
            check(r["bucket"] == "mean" and r["bucket_index"] == -1, f"{where}: a mean row")
        elif quantile:
            check(r["bucket"] in ("p50", "p90"), f"{where}: a quantile row")
            key = (r["metric"], r["window"], r["period"], r["cohort"], r["epsilon"], r["epsilon_perm"], r["catalog_hash"])
            quantiles[key].append(r["bucket"])
        else:
            key = (r["metric"], r["window"], r["period"], r["cohort"], r["epsilon"], r["epsilon_perm"], r["catalog_hash"])
            cells[key].append(r)
    check(len(cells) > 0, "no frequency cell was released")
    for key, labels in quantiles.items():
        check(sorted(labels) == ["p50", "p90"], f"{key}: quantile rows {labels}")
        check(key in cells, f"{key}: quantiles without their buckets")
    for key, buckets in cells.items():
        indices = sorted(b["bucket_index"] for b in buckets)
        check(indices == list(range(len(buckets))), f"{key}: bucket indices {indices}")
        check(len({b["reports"] for b in buckets}) == 1, f"{key}: buckets disagree on reports")
        total = sum(b["post_processed"] for b in buckets)
        check(abs(total - 1.0) < 1e-9, f"{key}: post_processed sums to {total}")

    if failures:
        for f in failures[:50]:
            print(f"FAIL: {f}", file=sys.stderr)
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {table.num_rows} rows in {len(periods)} partitions, {len(cells)} distributions")


if __name__ == "__main__":
    main()
