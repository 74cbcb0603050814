"""Times the `hush bench` workloads in pure-ldp, OpenDP and numpy, and prints one table.

Workloads (epsilon 1): GRR and OUE client perturbation of 100k users at d = 1024,
binary randomized response of 10^6 bits, and noise on 10^6 values. Each peer runs
the workload the way its documentation shows (per-user calls for the LDP
libraries, whole arrays for numpy); slow peers run on a subset and are scaled to
the full size. Times are per element (user, bit or value), best of a few runs,
and each ratio is the peer's time over Hush's batch kernel from the same run.

Usage: peers.py HUSH_BENCH_JSON (the output of `hush bench --json`).
"""

import json
import math
import sys
import time

EPS = 1.0
D = 1024
USERS = 100_000
BITS = 1_000_000
VALUES = 1_000_000


def best_ns_per(fn, elements, runs=3):
    """Best wall time of `fn()` over `runs`, in ns per element."""
    best = math.inf
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1e9 / elements


def try_import(name):
    try:
        return __import__(name)
    except Exception as e:  # noqa: BLE001 - any failure means the peer is missing
        return e


def numpy_peers(np):
    rng = np.random.default_rng(1)
    e = math.exp(EPS)
    res = {}
    values = rng.integers(0, D, USERS)

    p = e / (e + D - 1)

    def grr():
        keep = rng.random(USERS) < p
        other = rng.integers(0, D - 1, USERS)
        other += other >= values
        return np.where(keep, values, other)

    res["grr"] = best_ns_per(grr, USERS)

    q = 1 / (e + 1)
    chunk = 2000  # 2000 x 1024 floats at a time keeps memory at 16 MB

    def oue():
        for start in range(0, USERS, chunk):
            v = values[start:start + chunk]
            bits = rng.random((len(v), D)) < q
            bits[np.arange(len(v)), v] = rng.random(len(v)) < 0.5
            np.packbits(bits, axis=1)

    res["oue"] = best_ns_per(oue, USERS, runs=1)

    keep = e / (e + 1)
    x = rng.random(BITS) < 0.3

    def rr():
        return x ^ (rng.random(BITS) >= keep)

    res["rr"] = best_ns_per(rr, BITS)

    xs = rng.uniform(-1, 1, VALUES)

    def laplace():
        return xs + rng.laplace(0.0, 2.0 / EPS, VALUES)

    res["laplace"] = best_ns_per(laplace, VALUES)
    res["laplace_note"] = "float numpy.random.laplace (not exact)"
    return res


def pure_ldp_peers():
    from pure_ldp.frequency_oracles.direct_encoding import DEClient
    from pure_ldp.frequency_oracles.unary_encoding import UEClient
    import random

    random.seed(1)
    res = {}
    ident = lambda v: v  # noqa: E731 - values are already 0..d-1
    grr = DEClient(EPS, D, index_mapper=ident)
    n = 20_000
    vals = [random.randrange(D) for _ in range(n)]
    res["grr"] = best_ns_per(lambda: [grr.privatise(v) for v in vals], n)
    oue = UEClient(EPS, D, use_oue=True, index_mapper=ident)
    n = 5_000
    res["oue"] = best_ns_per(lambda: [oue.privatise(v) for v in vals[:n]], n)
    rr = DEClient(EPS, 2, index_mapper=ident)
    n = 100_000
    bits = [random.randrange(2) for _ in range(n)]
    res["rr"] = best_ns_per(lambda: [rr.privatise(b) for b in bits], n)
    res["laplace"] = None
    res["laplace_note"] = "no numeric mechanisms"
    return res


def opendp_peers(np):
    import opendp.prelude as dp

    dp.enable_features("contrib")
    res = {}
    e = math.exp(EPS)
    rng = np.random.default_rng(2)
    grr = dp.m.make_randomized_response(list(range(D)), e / (e + D - 1))
    n = 2_000
    vals = [int(v) for v in rng.integers(0, D, n)]
    res["grr"] = best_ns_per(lambda: [grr(v) for v in vals], n, runs=1)
    # OpenDP's unary encoding is RAPPOR's (symmetric): each bit kept with 1 - f/2.
    f = 2 / (math.exp(EPS / 2) + 1)
    ue = dp.m.make_randomized_response_bitvec(
        dp.bitvector_domain(max_weight=1), dp.discrete_distance(), f=f
    )
    n = 300
    onehot = []
    for v in vals[:n]:
        b = np.zeros(D // 8, dtype=np.uint8)
        b[v // 8] = 1 << (v % 8)
        onehot.append(b)
    res["oue"] = best_ns_per(lambda: [ue(b) for b in onehot], n, runs=1)
    res["oue_note"] = "RAPPOR bit vector (SUE-like), 300 users"
    # Binary randomized response on a whole bit vector in one call (far faster per
    # bit than one make_randomized_response_bool call per bit).
    rr = dp.m.make_randomized_response_bitvec(
        dp.bitvector_domain(max_weight=BITS), dp.discrete_distance(), f=2 / (e + 1)
    )
    packed = np.packbits(rng.integers(0, 2, BITS).astype(bool))
    res["rr"] = best_ns_per(lambda: rr(packed), BITS, runs=1)
    res["rr_note"] = "bit vector, one call"
    lap = dp.m.make_laplace(
        dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int), scale=1024.0 / EPS
    )
    n = 100_000
    xs = [int(v) for v in rng.integers(0, 1025, n)]
    res["laplace"] = best_ns_per(lambda: lap(xs), n, runs=1)
    res["laplace_note"] = "exact discrete Laplace on integers, scale 1024 (as Hush's grid)"
    return res


def main():
    hush = json.load(open(sys.argv[1]))
    rows = {r["name"]: r for r in hush["kernels"]}
    # Per element of each workload: a user (GRR, OUE), a bit (RR) or a value (noise).
    hush_ns = {
        "grr": rows["grr-d1024"]["kernel_ns"],
        "oue": rows["oue-d1024"]["kernel_ns"] * D,
        "rr": rows["rr"]["kernel_ns"],
        "laplace": rows["laplace"]["kernel_ns"],
    }
    np = try_import("numpy")
    peers = {}
    for name, run in [
        ("numpy", lambda: numpy_peers(np)),
        ("pure-ldp", pure_ldp_peers),
        ("OpenDP", lambda: opendp_peers(np)),
    ]:
        print(f"timing {name}...", file=sys.stderr)
        try:
            if isinstance(np, Exception):
                raise np
            peers[name] = run()
        except Exception as e:  # noqa: BLE001 - report and keep going
            peers[name] = {"error": f"{type(e).__name__}: {e}"}

    workloads = [
        ("grr", f"GRR d={D}, eps=1, per user (100k users)"),
        ("oue", f"OUE d={D}, eps=1, per user (100k users)"),
        ("rr", "binary randomized response, per bit (10^6 bits)"),
        ("laplace", "noise on 10^6 values, per value"),
    ]
    names = list(peers)
    print()
    print(f"Hush kernels with {hush['rng']['noise_rng']} at "
          f"{hush['rng']['noise_ns_per_byte']:.3f} ns/byte; times in ns per element; "
          "ratio = peer time / Hush time")
    print()
    header = f"| workload | Hush batch | " + " | ".join(f"{n} (ratio)" for n in names) + " |"
    print(header)
    print("|" + " --- |" * (2 + len(names)))
    for key, label in workloads:
        cells = []
        for n in names:
            r = peers[n]
            if "error" in r:
                cells.append("not installed")
                continue
            ns = r.get(key)
            if ns is None:
                cells.append("n/a (" + r.get(f"{key}_note", "") + ")")
            else:
                note = r.get(f"{key}_note")
                ratio = ns / hush_ns[key]
                shown = f"{ratio:.1f}" if ratio < 10 else f"{ratio:,.0f}"
                cells.append(f"{ns:,.1f} ({shown}x)" + (f" [{note}]" if note else ""))
        print(f"| {label} | {hush_ns[key]:,.2f} | " + " | ".join(cells) + " |")
    for n, r in peers.items():
        if "error" in r:
            print(f"\n{n}: {r['error']}")


if __name__ == "__main__":
    main()
