"""Which measures a count's distribution better under LDP: the Square Wave
mechanism with EM smoothing (Li, Wang, Lopuhaa-Zwakenberg, Li, Skoric, Szabo,
"Estimating Numerical Distributions under Local Differential Privacy", SIGMOD
2020), or a flat histogram over a few buckets through generalized randomized
response (what Hush's distribution metrics are, one layer here)?

Both are run at the same epsilon, one report per device, on a heavy-tailed
population shaped like a working day's keystrokes (lognormal, mean 28,000,
standard deviation 18,000, clipped at 90,000 as Hush's catalog clips it). The
figure is the error of the median and of the 90th percentile, as a share of
the true value, averaged over trials; and how often each method's estimate
lands within 10% of the truth.

Usage: python3 benches/peers/distributions.py [--reports 2000] [--trials 200]
(needs numpy; benches/peers/run.sh makes a virtual environment with it).
"""

import argparse
import math

import numpy as np

HI = 90_000.0


def population(n, rng):
    mean, sd = 28_000.0, 18_000.0
    sigma2 = math.log(1 + (sd / mean) ** 2)
    mu = math.log(mean) - sigma2 / 2
    return np.minimum(rng.lognormal(mu, math.sqrt(sigma2), n), HI)


def quantiles_from_cdf(edges, cdf, ps):
    """Linear interpolation of a CDF given at `edges` (cdf[0] = 0 at edges[0])."""
    out = []
    for p in ps:
        k = int(np.searchsorted(cdf, p))
        k = min(max(k, 1), len(edges) - 1)
        lo, hi = cdf[k - 1], cdf[k]
        t = 0.0 if hi <= lo else (p - lo) / (hi - lo)
        out.append(edges[k - 1] + t * (edges[k] - edges[k - 1]))
    return out


def norm_sub(f):
    """Projects estimates onto the simplex the way Hush's norm_sub does."""
    f = np.array(f, dtype=float)
    for _ in range(len(f)):
        pos = f > 0
        delta = (1.0 - f[pos].sum()) / max(pos.sum(), 1)
        f = np.where(pos, f + delta, 0.0)
        if (f >= 0).all():
            break
    return np.maximum(f, 0)


def grr_histogram(x, eps, edges, rng):
    d = len(edges) - 1
    true = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, d - 1)
    p = math.exp(eps) / (math.exp(eps) + d - 1)
    q = 1 / (math.exp(eps) + d - 1)
    # GRR: with probability p the true bucket, else one of the other d - 1 uniformly.
    other = (true + 1 + rng.integers(0, d - 1, len(x))) % d
    report = np.where(rng.random(len(x)) < p, true, other)
    counts = np.bincount(report, minlength=d) / len(x)
    f = norm_sub((counts - q) / (p - q))
    return np.concatenate([[0.0], np.cumsum(f)])


def square_wave_ems(x, eps, rng, bins=256, iters=2000, tol=1e-3):
    u = x / HI
    e = math.exp(eps)
    b = (eps * e - e + 1) / (2 * e * (e - 1 - eps))
    p = e / (2 * b * e + 1)
    q = 1 / (2 * b * e + 1)
    # Report: uniform in [u - b, u + b] with total prob 2bp, else uniform on the rest of [-b, 1 + b].
    near = rng.random(len(u)) < 2 * b * p
    y_near = u - b + 2 * b * rng.random(len(u))
    # The far part has length 1 (the whole output range 1 + 2b minus the window 2b).
    r = rng.random(len(u))
    y_far = np.where(r < u, -b + r, u + b + (r - u))
    y = np.where(near, y_near, y_far)
    # EMS on `bins` input bins and `bins` output bins (Li et al., Section 5).
    out_edges = np.linspace(-b, 1 + b, bins + 1)
    obs = np.histogram(y, out_edges)[0].astype(float)
    centers = (np.arange(bins) + 0.5) / bins
    oc = (out_edges[:-1] + out_edges[1:]) / 2
    width = out_edges[1] - out_edges[0]
    m = np.where(np.abs(oc[:, None] - centers[None, :]) <= b, p, q) * width
    m /= m.sum(axis=0, keepdims=True)
    theta = np.full(bins, 1.0 / bins)
    kernel = np.array([1, 2, 1]) / 4.0
    last = -np.inf
    for _ in range(iters):
        denom = m @ theta
        theta = theta * (m.T @ (obs / np.maximum(denom, 1e-300))) / obs.sum()
        theta = np.convolve(np.pad(theta, 1, mode="edge"), kernel, mode="valid")
        theta /= theta.sum()
        ll = (obs * np.log(np.maximum(m @ theta, 1e-300))).sum()
        if abs(ll - last) < tol:
            break
        last = ll
    edges = np.linspace(0, HI, bins + 1)
    return edges, np.concatenate([[0.0], np.cumsum(theta)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reports", type=int, default=2000)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--epsilon", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    ps = [0.5, 0.9]
    # Hush's buckets: the population's deciles (fitted once, from a separate sample).
    fit = np.sort(population(200_000, rng))
    deciles = [fit[int(len(fit) * k / 10)] for k in range(1, 10)]
    hist_edges = np.array([0.0] + deciles + [HI])
    err = {"histogram": [], "square wave + EMS": []}
    within = {k: [0, 0] for k in err}
    for _ in range(args.trials):
        x = population(args.reports, rng)
        truth = np.quantile(x, ps)
        estimates = {
            "histogram": quantiles_from_cdf(hist_edges, grr_histogram(x, args.epsilon, hist_edges, rng), ps),
            "square wave + EMS": quantiles_from_cdf(*square_wave_ems(x, args.epsilon, rng), ps),
        }
        for name, est in estimates.items():
            rel = [abs(e - t) / t for e, t in zip(est, truth)]
            err[name].append(rel)
            within[name][0] += rel[0] < 0.1
            within[name][1] += rel[1] < 0.1
    print(f"# Quantiles of a count at epsilon {args.epsilon}, {args.reports} reports, {args.trials} trials")
    print()
    print("| method | median: mean error | median within 10% | p90: mean error | p90 within 10% |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, e in err.items():
        e = np.array(e)
        t = args.trials
        print(
            f"| {name} | {100 * e[:, 0].mean():.1f}% | {100 * within[name][0] / t:.0f}% "
            f"| {100 * e[:, 1].mean():.1f}% | {100 * within[name][1] / t:.0f}% |"
        )


if __name__ == "__main__":
    main()
