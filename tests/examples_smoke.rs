//! Smoke tests of `examples/`: each example runs at its `--quick` sizes, and what it
//! prints or writes is checked against the theory, loosely.
//!
//! The examples are built by cargo with the profile of this test (cargo test
//! builds them too, so this is usually a no-op) and the binary cargo reports is
//! run directly. Tolerances come from the number of trials: a variance from T
//! trials has relative standard error about sqrt(2/(T-1)). The examples print
//! 80 to 100 such ratios each, so the band is 5 standard errors wide: even with
//! the chi-square's heavier upper tail a false alarm somewhere in a table has
//! probability about 1e-3, while a wrong formula or estimator is off by far more.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::path::{Path, PathBuf};
use std::process::Command;

/// How many standard errors a ratio may stray from 1 (see the header).
const BAND: f64 = 5.0;

/// The cargo profile this test was built with, from the directory of the `hush` binary.
fn profile() -> String {
    let exe = Path::new(env!("CARGO_BIN_EXE_hush"));
    let dir = exe.parent().and_then(Path::file_name).unwrap();
    match dir.to_str().unwrap() {
        "debug" => "dev".to_owned(),
        other => other.to_owned(),
    }
}

/// Builds an example with this test's profile and returns its executable.
fn example(name: &str) -> PathBuf {
    let out = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "--example", name, "--profile"])
        .arg(profile())
        .arg("--message-format=json-render-diagnostics")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building example {name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reported no executable for example {name}"))
}

/// Runs an example with `args` and returns its standard output.
fn run(name: &str, args: &[&str]) -> String {
    let out = Command::new(example(name)).args(args).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "example {name} {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Relative standard error of a variance estimated from `trials` trials.
fn rse(trials: f64) -> f64 {
    (2.0 / (trials - 1.0)).sqrt()
}

/// The cells of a Markdown table row (`| a | b |` -> `["a", "b"]`).
fn cells(line: &str) -> Vec<&str> {
    line.trim()
        .trim_start_matches('|')
        .trim_end_matches('|')
        .split('|')
        .map(str::trim)
        .collect()
}

/// `eps = 2.345` -> 2.345; `none` -> None.
fn eps_cell(cell: &str) -> Option<f64> {
    cell.strip_prefix("eps = ").map(|x| x.parse().unwrap())
}

#[test]
fn epsilon_sweep_writes_every_point_near_the_theory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    let stdout = run(
        "epsilon_sweep",
        &["--quick", "--out", out.to_str().unwrap()],
    );

    let csv = std::fs::read_to_string(out.join("epsilon_sweep.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (mech, eps, trials, ratio) = (
        col("mechanism"),
        col("epsilon"),
        col("trials"),
        col("empirical_over_realized"),
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    // --quick: 10 epsilons from 0.5 to 5 for each of the 10 mechanisms.
    let names = [
        "grr",
        "sue",
        "oue",
        "olh",
        "hr",
        "laplace",
        "duchi",
        "piecewise",
        "hybrid",
        "onebit",
    ];
    assert_eq!(rows.len(), names.len() * 10, "{csv}");
    for name in names {
        let epsilons: Vec<f64> = rows
            .iter()
            .filter(|r| r[mech] == name)
            .map(|r| r[eps].parse().unwrap())
            .collect();
        let want: Vec<f64> = (1..=10).map(|i| 5.0 * f64::from(i) / 10.0).collect();
        assert_eq!(epsilons, want, "{name}");
    }
    for r in &rows {
        let t: f64 = r[trials].parse().unwrap();
        let q: f64 = r[ratio].parse().unwrap();
        assert!(
            (q - 1.0).abs() < BAND * rse(t),
            "{} at eps {}: empirical/theory {q} with {t} trials",
            r[mech],
            r[eps]
        );
    }

    let svg = std::fs::read_to_string(out.join("epsilon_sweep.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "not an SVG");
    for name in names {
        assert!(svg.contains(name), "the plot's legend lacks {name}");
    }
    assert!(stdout.contains(&out.join("epsilon_sweep.svg").display().to_string()));

    // Crossovers: | name | paper | exact | simulated | se | sign changes |. The
    // simulated one must lie within the band of the exact one; GRR and OUE cross
    // steeply enough that quick sizes always find it.
    let crossovers: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with("| GRR =") || l.starts_with("| Piecewise ="))
        .map(cells)
        .collect();
    assert_eq!(crossovers.len(), 3, "{stdout}");
    for c in &crossovers {
        let exact = eps_cell(c[2]).unwrap();
        let se: f64 = c[4].parse().unwrap();
        match eps_cell(c[3]) {
            Some(sim) => assert!(
                (sim - exact).abs() < BAND * se,
                "{}: simulated {sim}, exact {exact}, se {se}",
                c[0]
            ),
            None => assert!(c[0].starts_with("Piecewise"), "{}: no crossing", c[0]),
        }
    }
    // The papers' crossovers: ln((32 - 2)/3) for GRR against OUE, about 1.29 for PM.
    let paper: Vec<f64> = crossovers.iter().map(|c| eps_cell(c[1]).unwrap()).collect();
    assert!((paper[0] - 10f64.ln()).abs() < 1e-3, "{paper:?}");
    assert!((paper[2] - 1.29).abs() < 0.01, "{paper:?}");
}

#[test]
fn mechanism_table_matches_the_theory() {
    let stdout = run("mechanism_table", &["--quick"]);
    let trials: f64 = stdout
        .split("trials = ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| eps") && !l.contains("---"))
        .map(cells)
        .collect();
    // 4 epsilons x (3 domains x 11 oracles + 6 mean mechanisms), two-layer ones included.
    assert_eq!(rows.len(), 4 * (3 * 11 + 6), "{stdout}");
    let frequency = rows
        .iter()
        .filter(|r| r.len() == 7 && r[1].parse::<u32>().is_ok());
    assert_eq!(frequency.count(), 132, "{stdout}");
    for r in &rows {
        let ratio: f64 = r.last().unwrap().parse().unwrap();
        assert!(
            (ratio - 1.0).abs() < BAND * rse(trials),
            "{r:?}: empirical/exact {ratio} with {trials} trials"
        );
        // Where the paper's formula is exact (SUE is symmetric, so its variance
        // does not depend on the frequency), the realized mechanism must agree with it.
        if r[2] == "sue" {
            let (paper, exact): (f64, f64) = (r[3].parse().unwrap(), r[4].parse().unwrap());
            assert!((paper / exact - 1.0).abs() < 1e-3, "{r:?}");
        }
    }
}

#[test]
fn fleet_library_merges_shards_exactly() {
    let stdout = run("fleet_library", &["--quick"]);
    assert!(
        stdout.contains("merged == single pass:") && stdout.contains("bit-identical estimates"),
        "{stdout}"
    );
    // "largest |estimate - truth| / std error: Z over N estimates"
    let line = stdout
        .lines()
        .find(|l| l.starts_with("largest |estimate - truth|"))
        .unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    let z: f64 = words[words.len() - 4].parse().unwrap();
    let n: usize = words[words.len() - 2].parse().unwrap();
    // Every metric of the default catalog: one mean per count, one row per bucket.
    let rows: u32 = hush_report::Catalog::builtin()
        .metrics()
        .iter()
        .map(|m| m.domain().unwrap_or(1))
        .sum();
    assert_eq!(n, rows as usize, "{stdout}");
    let table_rows = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| metric") && !l.contains("---"))
        .count();
    assert_eq!(table_rows, n, "{stdout}");
    // Each |z| exceeds 5 with probability below 6e-7 under the normal approximation.
    assert!(
        z < BAND,
        "an estimate is {z} standard errors from the truth"
    );
}

#[test]
fn two_layer_table_picks_the_catalogs_mechanisms() {
    let stdout = run("two_layer_table", &["--quick"]);
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.contains("---") && !l.starts_with("| metric"))
        .filter(|l| !l.starts_with("| epsilon"))
        .map(cells)
        .collect();
    let catalog = hush_report::Catalog::builtin();
    // Each catalog metric has a row whose "best" is the mechanism the catalog uses.
    for m in catalog.metrics() {
        let row = rows
            .iter()
            .find(|r| r[0] == m.name)
            .unwrap_or_else(|| panic!("no row for {}\n{stdout}", m.name));
        let best = row[row.len() - 2];
        let expected = if best == "PM + PM" { "l-onebit" } else { best };
        // PM + PM is not implemented; where it wins, it wins by little (asserted
        // below): at the catalog's tight ranges by up to 15% in variance (7.5% in
        // half-width), for active minutes, whose working days fill the range most.
        assert_eq!(m.mechanism_name(), expected, "{}\n{stdout}", m.name);
        if best == "PM + PM" {
            let (onebit, pm): (f64, f64) = (row[4].parse().unwrap(), row[5].parse().unwrap());
            assert!(pm > 0.8 * onebit, "{}: {onebit} vs {pm}", m.name);
        }
    }
}
