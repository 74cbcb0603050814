"""Compares Hush's two-layer (longitudinal) frequency oracles with multi-freq-ldpy 0.2.5.

Workload: domain k = 15 (the size of Hush's top_shortcut metric), eps_perm = 4,
eps_1 = 2, n = 10,000 users with Hush's Zipf population (exponent 1.1; the
exact per-value counts of `Distribution::counts` in crates/stats/src/population.rs,
reproduced in `zipf_counts` below), T = 300 independent trials. Every user
sends one report from a fresh device (both layers drawn anew), which is what
`hush simulate` does and what multi-freq-ldpy's clients do on each call. (The
expected variance averaged over v depends on the population only through n;
the population shapes the per-value variances and so the standard errors.)

Accuracy: the variance across trials of the unbiased frequency estimate
f_hat(v), averaged over the k values (Hush's `empirical_variance`).
multi-freq-ldpy's `*_Aggregator_MI` functions clip the estimate to >= 0 and
renormalize it to sum to 1 (`MI_long` in estimators/Histogram_estimator.py),
which is biased and has a different variance. So for L-GRR, L-OUE, L-OSUE,
L-SUE and L-LH this script calls the library's own aggregator with
`MI_long` replaced, in that mechanism's module, by `UnclippedMiLong`: it
receives the library's own support counts and its own (p1, q1, p2, q2) and
returns MI_long's formula without the clip and renormalization,
(count - n q1 (p2 - q2) - n q2) / (n (p1 - q1)(p2 - q2)). For dBitFlipPM,
whose aggregator clips inline, the script evaluates the aggregator's sum
(b / (n d)) sum_sampled (bit (e^(eps/2) + 1) - 1) / (e^(eps/2) - 1) with numpy,
again without the clip.

The ratio's standard error: each variance has relative standard error
sqrt(2 / (T - 1)) per value (8% at T = 300), and averaging over k values lowers
it. The script measures that by the delete-one-trial jackknife on
multi-freq-ldpy's per-trial estimates, assumes the same relative error for
Hush's (it only prints the average), and shows ratio * sqrt(2) * that.

Privacy actually spent: multi-freq-ldpy's L-GRR (and L-LH, which is L-GRR on a
hash range g) solves its second-round p2 from a two-value ratio, so one
report's composed loss ln(P / Q), P = p1 p2 + (1 - p1) q2,
Q = q1 p2 + (1 - q1) q2, is below the nominal eps_1 for k > 2 (1.84 of 2 at
k = 15). Hush solves p2 so that the composed channel spends exactly eps_1, so
at the same nominal parameters its L-GRR variance is lower; the column "Hush at
mfl's realized eps_1" reruns Hush at the loss multi-freq-ldpy's channel really
has. (L-LH: Hush then picks its optimal hash range for the lower eps_1, which
need not be multi-freq-ldpy's g, so that comparison is close but not channel for
channel.) The unary encodings spend exactly eps_1 in both.

dBitFlipPM: multi-freq-ldpy's is the paper's one-round form (memoization
only: d = 2 sampled bits of a permanent SUE vector at eps_perm, b = k buckets),
so one report reveals eps_perm. Hush's CLI requires eps_1 < eps_perm, so Hush
runs with eps_1 = 0.999 eps_perm, whose instantaneous layer keeps a bit with
probability about 0.999: nearly the one-round form. The two estimators differ:
multi-freq-ldpy's report marks which positions were sampled and its estimator
uses the observed number of times each position was sampled; Hush's report
keeps only the sampled positions whose bit is 1, and its estimator uses the
expected number (n d / b). The checks table shows both estimators on
multi-freq-ldpy's reports and the exact variance of each.

Speed: multi-freq-ldpy's client called once per user in a Python loop, as its
documentation shows (numba-compiled clients are warmed up first), against the
wall time of a single-threaded `hush simulate` run (minus the time of a
2-user, 2-trial run, the process's fixed cost) over users * trials reports.
Hush's time includes aggregation and estimation; multi-freq-ldpy's excludes
its aggregator, whose time is listed separately in the checks table.

Usage: longitudinal.py HUSH_BINARY [--quick]
(--quick: 1,000 users and 30 trials, to check that everything runs.)
"""

import argparse
import json
import math
import subprocess
import sys
import time

try:
    import numpy as np
    from numba import njit

    import multi_freq_ldpy  # noqa: F401

    @njit
    def _numba_seed(seed):
        np.random.seed(seed)

    MISSING = None
except Exception as e:  # noqa: BLE001 - main() reports it
    MISSING = f"{type(e).__name__}: {e}"

K = 15
EPS_PERM = 4.0
EPS_1 = 2.0
USERS = 10_000
TRIALS = 300
SEED = 1
D_BITS = 2
# Hush's dBitFlipPM needs eps_1 < eps_perm; this keeps its fresh layer near the identity.
DBIT_EPS_1 = EPS_PERM * 0.999
ZIPF_EXPONENT = 1.1


def zipf_counts(domain, users):
    """Hush's `Distribution::Zipf.counts`: weights 1 / (v + 1)^1.1, expected counts
    floored, the remainder given one each by largest fractional part (stable order)."""
    weights = [(v + 1.0) ** -ZIPF_EXPONENT for v in range(domain)]
    total = sum(weights)
    exact = [w / total * users for w in weights]
    counts = [math.floor(e) for e in exact]
    rest = users - sum(counts)
    order = sorted(range(domain), key=lambda i: exact[i] - math.floor(exact[i]), reverse=True)
    i = 0
    while rest > 0:
        counts[order[i % domain]] += 1
        rest -= 1
        i += 1
    return counts


def hush(binary, mechanism, eps_1, eps_perm, users, trials):
    """One single-threaded `hush simulate frequency` run: (its JSON, wall seconds)."""
    cmd = [binary, "simulate", "frequency", "--mechanism", mechanism,
           "--epsilon", repr(float(eps_1)), "--epsilon-perm", repr(float(eps_perm)),
           "--domain", str(K), "--users", str(users), "--trials", str(trials),
           "--seed", str(SEED), "--distribution", "zipf", "--threads", "1", "--json"]
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out), time.perf_counter() - t


def hush_fixed_cost(binary):
    """Best of 3 wall times of a 2-user, 2-trial run: process start and set-up."""
    return min(hush(binary, "l-grr", EPS_1, EPS_PERM, 2, 2)[1] for _ in range(3))


class UnclippedMiLong:
    """Stands in for multi-freq-ldpy's `MI_long`: records the library's counts and
    parameters and returns the unbiased estimate (MI_long without clip and renormalization)."""

    def __init__(self):
        self.params = None

    def __call__(self, count_report, n, p1, q1, p2, q2):
        self.params = tuple(float(x) for x in (p1, q1, p2, q2))
        count = np.asarray(count_report, dtype=float)
        return (count - n * q1 * (p2 - q2) - n * q2) / (n * (p1 - q1) * (p2 - q2))


def count_variance(p, q, counts, n):
    """Exact variance of (C(v)/n - q)/(p - q) averaged over v, for a fixed population
    where a holder of v supports it with p and anyone else with q (as Hush's theory)."""
    return sum((c * p * (1 - p) + (n - c) * q * (1 - q)) / (n * (p - q)) ** 2
               for c in counts) / len(counts)


def variance_and_se(est):
    """Variance across trials (rows) averaged over values (columns), and its
    delete-one-trial jackknife standard error."""
    t = est.shape[0]
    avg = est.var(axis=0, ddof=1).mean()
    s1, s2 = est.sum(axis=0), (est ** 2).sum(axis=0)
    m = (s1 - est) / (t - 1)
    loo = ((s2 - est ** 2 - (t - 1) * m ** 2) / (t - 2)).mean(axis=1)
    se = math.sqrt((t - 1) / t * ((loo - loo.mean()) ** 2).sum())
    return avg, se


def seed_all(seed):
    """Seeds NumPy's global generator and numba's (numba-compiled clients draw from
    their own, which only compiled code can seed)."""
    np.random.seed(seed)
    _numba_seed(seed)


def run_mi(clients, aggregate, module, values, trials):
    """Per-trial unbiased estimates through the library's aggregator, with times."""
    capture = UnclippedMiLong()
    module.MI_long = capture
    clients(values[:10])  # numba compilation
    seed_all(SEED)
    rows, t_client, t_agg = [], 0.0, 0.0
    for _ in range(trials):
        t = time.perf_counter()
        reports = clients(values)
        t_client += time.perf_counter() - t
        t = time.perf_counter()
        rows.append(aggregate(reports))
        t_agg += time.perf_counter() - t
    return np.array(rows), capture.params, t_client, t_agg


def mfl_mechanisms():
    from multi_freq_ldpy.long_freq_est import L_GRR, L_LH, L_OSUE, L_OUE, L_SUE

    return [
        # (Hush name, label, module, clients, aggregator, how its eps_1 is computed)
        ("l-grr", "L-GRR", L_GRR,
         lambda vs: [L_GRR.L_GRR_Client(v, K, EPS_PERM, EPS_1) for v in vs],
         lambda r: L_GRR.L_GRR_Aggregator_MI(r, K, EPS_PERM, EPS_1), "grr"),
        ("l-sue", "L-SUE", L_SUE,
         lambda vs: [L_SUE.L_SUE_Client(v, K, EPS_PERM, EPS_1) for v in vs],
         lambda r: L_SUE.L_SUE_Aggregator_MI(r, EPS_PERM, EPS_1), "unary"),
        ("l-oue", "L-OUE", L_OUE,
         lambda vs: [L_OUE.L_OUE_Client(v, K, EPS_PERM, EPS_1) for v in vs],
         lambda r: L_OUE.L_OUE_Aggregator_MI(r, EPS_PERM, EPS_1), "unary"),
        ("l-osue", "L-OSUE", L_OSUE,
         lambda vs: [L_OSUE.L_OSUE_Client(v, K, EPS_PERM, EPS_1) for v in vs],
         lambda r: L_OSUE.L_OSUE_Aggregator_MI(r, EPS_PERM, EPS_1), "unary"),
        ("l-lh", "L-LH (L-OLH)", L_LH,
         lambda vs: [L_LH.L_LH_Client(v, K, EPS_PERM, EPS_1) for v in vs],
         lambda r: L_LH.L_LH_Aggregator_MI(r, K, EPS_PERM, EPS_1), "lh"),
    ]


def realized_epsilon(kind, p1, q1, p2, q2):
    """One report's composed loss from the library's parameters."""
    if kind == "lh":
        # L_LH_Aggregator_MI passes q1 = 1/g (the server's support rate); the
        # client's GRR over the g hash values has q1 = (1 - p1)/(g - 1).
        g = round(1 / q1)
        q1 = (1 - p1) / (g - 1)
    big_p, big_q = p1 * p2 + (1 - p1) * q2, q1 * p2 + (1 - q1) * q2
    if kind == "unary":  # two inputs differ in two bits
        return math.log(big_p * (1 - big_q) / ((1 - big_p) * big_q))
    return math.log(big_p / big_q)


def run_dbitflip(values, trials, counts):
    from multi_freq_ldpy.long_freq_est.dBitFlipPM import dBitFlipPM_Client

    n, b, d = len(values), K, D_BITS
    c = math.exp(EPS_PERM / 2)
    clients = lambda vs: [dBitFlipPM_Client(v, K, b, d, EPS_PERM) for v in vs]  # noqa: E731
    clients(values[:10])
    seed_all(SEED)
    rows, rows_hush_style, t_client = [], [], 0.0
    s, big_p, big_q = d / b, c / (c + 1), 1 / (c + 1)
    for _ in range(trials):
        t = time.perf_counter()
        reports = clients(values)
        t_client += time.perf_counter() - t
        r = np.array(reports)  # -1 marks a position that was not sampled
        h = np.where(r >= 0, (r * (c + 1) - 1) / (c - 1), 0.0).sum(axis=0)
        rows.append(h * b / (n * d))  # dBitFlipPM_Aggregator_MI before its clip
        ones = (r == 1).sum(axis=0)  # what Hush's report keeps
        rows_hush_style.append((ones / n - s * big_q) / (s * (big_p - big_q)))
    # Exact variance of the library's estimator: per user X = [sampled] Y(bit), with
    # Y(1) = c/(c - 1), Y(0) = -1/(c - 1), and f_hat = sum X / (n s).
    y1, y0 = c / (c - 1), -1 / (c - 1)

    def var_x(p_bit):
        ex = s * (p_bit * y1 + (1 - p_bit) * y0)
        ex2 = s * (p_bit * y1 ** 2 + (1 - p_bit) * y0 ** 2)
        return ex2 - ex ** 2

    theory = sum((cv * var_x(big_p) + (n - cv) * var_x(big_q)) / (n * s) ** 2
                 for cv in counts) / len(counts)
    theory_hush_style = count_variance(s * big_p, s * big_q, counts, n)
    return (np.array(rows), np.array(rows_hush_style), t_client, theory,
            theory_hush_style, 2 * math.log(c))


def fmt_var(v):
    return f"{v:.3e}"


def fmt_ratio(r, rse):
    return f"{r:.3f} ± {r * rse:.3f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("hush", help="path to the hush binary")
    ap.add_argument("--quick", action="store_true", help="1,000 users and 30 trials")
    args = ap.parse_args()
    users, trials = (1_000, 30) if args.quick else (USERS, TRIALS)

    if MISSING:
        print(f"\nmulti-freq-ldpy not available ({MISSING}); skipping the longitudinal comparison")
        return

    counts = zipf_counts(K, users)
    values = [v for v, c in enumerate(counts) for _ in range(c)]
    fixed = hush_fixed_cost(args.hush)
    reports = users * trials

    def hush_timed(mechanism, eps_1):
        res, secs = hush(args.hush, mechanism, eps_1, EPS_PERM, users, trials)
        return res, max(secs - fixed, 0.0) * 1e6 / reports

    rows, checks, errors = [], [], []
    for hname, label, module, clients, aggregate, kind in mfl_mechanisms():
        print(f"running {label}...", file=sys.stderr)
        try:
            est, params, t_client, t_agg = run_mi(clients, aggregate, module, values, trials)
        except Exception as e:  # noqa: BLE001 - report and keep going
            errors.append(f"{label}: multi-freq-ldpy failed: {type(e).__name__}: {e}")
            continue
        mfl_var, mfl_se = variance_and_se(est)
        rse = math.sqrt(2) * mfl_se / mfl_var
        p1, q1, p2, q2 = params
        big_p, big_q = p1 * p2 + (1 - p1) * q2, q1 * p2 + (1 - q1) * q2
        mfl_theory = count_variance(big_p, big_q, counts, users)
        mfl_eps = realized_epsilon(kind, *params)
        h, h_us = hush_timed(hname, EPS_1)
        if abs(mfl_eps - EPS_1) > 1e-6:
            h2, _ = hush(args.hush, hname, mfl_eps, EPS_PERM, users, trials)
            r2 = h2["empirical_variance"] / mfl_var
            at_real = f"{fmt_var(h2['empirical_variance'])} (ratio {fmt_ratio(r2, rse)})"
            theory_real = h2["theoretical_variance"] / mfl_theory
        else:
            at_real, theory_real = "same channel (realized = nominal)", None
        mfl_us = t_client * 1e6 / reports
        ratio = h["empirical_variance"] / mfl_var
        rows.append([label, fmt_var(h["empirical_variance"]), fmt_var(mfl_var),
                     fmt_ratio(ratio, rse), f"{mfl_eps:.4f}", at_real,
                     f"{h_us:.3f}", f"{mfl_us:.2f}", f"{mfl_us / h_us:,.0f}x"])
        checks.append([label, f"{h['realized_epsilon']:.4f}",
                       f"{h['empirical_variance'] / h['theoretical_variance']:.3f}",
                       f"{mfl_var / mfl_theory:.3f}",
                       f"{h['theoretical_variance'] / mfl_theory:.4f}",
                       "-" if theory_real is None else f"{theory_real:.4f}",
                       f"{t_agg * 1e6 / reports:.2f}"])

    print("running dBitFlipPM...", file=sys.stderr)
    try:
        est, est_hs, t_client, theory, theory_hs, mfl_eps = run_dbitflip(values, trials, counts)
        mfl_var, mfl_se = variance_and_se(est)
        hs_var = est_hs.var(axis=0, ddof=1).mean()
        rse = math.sqrt(2) * mfl_se / mfl_var
        h, h_us = hush_timed("dbitflip-pm", DBIT_EPS_1)
        mfl_us = t_client * 1e6 / reports
        ratio = h["empirical_variance"] / mfl_var
        label = f"dBitFlipPM (d={D_BITS}, b={K}; Hush eps_1={DBIT_EPS_1:g})"
        rows.append([label, fmt_var(h["empirical_variance"]), fmt_var(mfl_var),
                     fmt_ratio(ratio, rse), f"{mfl_eps:.4f} (one round)",
                     "n/a (the CLI needs eps_1 < eps_perm)",
                     f"{h_us:.3f}", f"{mfl_us:.2f}", f"{mfl_us / h_us:,.0f}x"])
        checks.append([label, f"{h['realized_epsilon']:.4f}",
                       f"{h['empirical_variance'] / h['theoretical_variance']:.3f}",
                       f"{mfl_var / theory:.3f}",
                       f"{h['theoretical_variance'] / theory:.4f}", "-",
                       "n/a (numpy, above)"])
        dbit_note = (
            f"dBitFlipPM: multi-freq-ldpy's reports through Hush's estimator (ones only, "
            f"expected sampling count): variance {fmt_var(hs_var)}, exact {fmt_var(theory_hs)} "
            f"(empirical/exact {hs_var / theory_hs:.3f}); through the library's estimator "
            f"(observed sampling count): exact {fmt_var(theory)}. "
            f"Exact ratio of the two: {theory_hs / theory:.4f}.")
    except Exception as e:  # noqa: BLE001 - report and keep going
        errors.append(f"dBitFlipPM: multi-freq-ldpy failed: {type(e).__name__}: {e}")
        dbit_note = None

    print()
    print(f"Longitudinal frequency oracles, Hush ({args.hush}) vs multi-freq-ldpy 0.2.5: "
          f"k = {K}, eps_perm = {EPS_PERM:g}, eps_1 = {EPS_1:g}, Zipf(1.1) population of "
          f"{users:,} users (identical counts), {trials} trials, one fresh report per user. "
          "Variance = variance across trials of the unbiased f_hat(v), averaged over v; "
          "ratio = Hush / multi-freq-ldpy (± 1 s.e., jackknife over trials; the per-value "
          f"bound sqrt(2/(T-1)) would be {math.sqrt(2 / (trials - 1)):.1%} per variance); "
          "speed ratio = mfl time / Hush time."
          + (" QUICK RUN: numbers are noisy." if args.quick else ""))
    print()
    print("| mechanism | Hush variance | mfl variance | ratio (± 1 s.e.) | mfl realized eps_1 "
          "| Hush at mfl's realized eps_1 | Hush µs/report | mfl µs/report | speed ratio |")
    print("|" + " --- |" * 9)
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    print("Checks: each side's empirical variance over its exact variance (fixed "
          "population), and the exact variances' ratio (Hush / multi-freq-ldpy).")
    print()
    print("| mechanism | Hush realized eps_1 | Hush emp/exact | mfl emp/exact "
          "| exact Hush/mfl | exact at mfl's eps_1 | mfl aggregator µs/report |")
    print("|" + " --- |" * 7)
    for r in checks:
        print("| " + " | ".join(r) + " |")
    print()
    print(f"Hush times: single-threaded `hush simulate` wall time minus a 2-user run's "
          f"({fixed * 1e3:.1f} ms), over {reports:,} reports, including aggregation and "
          "estimation. mfl times: its client in a Python loop, one call per user.")
    if dbit_note:
        print()
        print(dbit_note)
    for e in errors:
        print()
        print(e)


if __name__ == "__main__":
    main()
