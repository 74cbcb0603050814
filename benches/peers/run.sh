#!/usr/bin/env bash
# Times the same noising workloads in Python LDP libraries (pure-ldp, OpenDP) and in
# plain numpy, and in `hush bench` in the same run, then prints one table with ratios.
# Then compares Hush's two-layer (longitudinal) frequency oracles with multi-freq-ldpy's,
# variance and speed (longitudinal.py, a few minutes more).
#
# Not part of CI: it installs packages from PyPI into a virtual environment under
# target/ (created on first use) and takes a few minutes. Usage: benches/peers/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=target/peers-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# Each package separately, so that one that cannot be installed is reported and skipped.
# pure-ldp 1.2.0 imports scikit-learn and statsmodels without declaring them.
for pkg in numpy pure-ldp scikit-learn statsmodels opendp; do
    if ! "$venv/bin/pip" install --quiet --disable-pip-version-check "$pkg"; then
        echo "warning: could not install $pkg; its column will say so" >&2
    fi
done
# multi-freq-ldpy 0.2.5 needs numba and xxhash (pip installs both). Its L-LH client hashes
# str values, which xxhash 4 rejects ("Strings must be encoded before hashing"): pin 3.x.
if ! "$venv/bin/pip" install --quiet --disable-pip-version-check multi-freq-ldpy==0.2.5 'xxhash<4'; then
    echo "warning: could not install multi-freq-ldpy; longitudinal.py will say so" >&2
fi

cargo build --release --quiet
echo "running hush bench (about 15 s)..." >&2
./target/release/hush bench --json > target/peers-hush.json
"$venv/bin/python" benches/peers/peers.py target/peers-hush.json
echo "running the longitudinal comparison with multi-freq-ldpy (a few minutes)..." >&2
"$venv/bin/python" benches/peers/longitudinal.py ./target/release/hush
