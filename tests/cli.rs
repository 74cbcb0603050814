//! End-to-end tests of the `hush` research commands: real process, real arguments,
//! exit codes, JSON fields and the distribution of `hush sample` output.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::process::{Command, Output};

use statrs::distribution::{ChiSquared, ContinuousCDF};

fn hush(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hush"))
        .args(args)
        .output()
        .expect("the hush binary runs")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

#[test]
fn simulate_frequency_json_agrees_with_theory() {
    let v = json(&hush(&[
        "simulate",
        "frequency",
        "--mechanism",
        "oue",
        "--epsilon",
        "1",
        "--domain",
        "16",
        "--users",
        "5000",
        "--trials",
        "200",
        "--seed",
        "1",
        "--json",
    ]));
    for key in [
        "mechanism",
        "epsilon",
        "domain",
        "users",
        "trials",
        "empirical_variance",
        "theoretical_variance",
        "bias",
        "ci_coverage",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["mechanism"], "oue");
    assert_eq!(v["domain"], 16);
    let ratio =
        v["empirical_variance"].as_f64().unwrap() / v["theoretical_variance"].as_f64().unwrap();
    // 200 trials: relative standard error sqrt(2/199) = 0.1; four of them.
    assert!((ratio - 1.0).abs() < 0.4, "{v}");
    // OUE at eps = 1, n = 5000: q(1-q)/(n(p-q)^2) = 4e/(e-1)^2/n = 7.37e-4.
    let theory = v["theoretical_variance"].as_f64().unwrap();
    assert!((theory / 7.365e-4 - 1.0).abs() < 0.05, "{theory}");
}

#[test]
fn simulate_frequency_prints_a_table() {
    let out = hush(&[
        "simulate",
        "frequency",
        "-m",
        "grr",
        "-e",
        "2",
        "-d",
        "4",
        "-n",
        "1000",
        "-t",
        "20",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for row in [
        "empirical variance",
        "theoretical variance",
        "paper variance",
        "CI coverage",
    ] {
        assert!(text.contains(row), "{text}");
    }
}

#[test]
fn simulate_mean_json_has_the_fields() {
    let v = json(&hush(&[
        "simulate",
        "mean",
        "--mechanism",
        "piecewise",
        "--epsilon",
        "2",
        "--users",
        "2000",
        "--trials",
        "50",
        "--seed",
        "3",
        "--population",
        "beta:2,5",
        "--json",
    ]));
    for key in [
        "mechanism",
        "epsilon",
        "users",
        "trials",
        "empirical_variance",
        "theoretical_variance",
        "bias",
        "ci_coverage",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["population"], "beta:2,5");
}

#[test]
fn bad_arguments_exit_2_and_name_the_argument() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["simulate", "frequency", "-m", "grr", "-e", "0", "-d", "4"],
            "--epsilon",
        ),
        (
            &["simulate", "frequency", "-m", "grr", "-e", "nan", "-d", "4"],
            "--epsilon",
        ),
        (
            &["simulate", "frequency", "-m", "grr", "-e", "1", "-d", "1"],
            "--domain",
        ),
        (
            &[
                "simulate",
                "frequency",
                "-m",
                "rappor9",
                "-e",
                "1",
                "-d",
                "4",
            ],
            "--mechanism",
        ),
        (
            &[
                "simulate",
                "frequency",
                "-m",
                "grr",
                "-e",
                "1",
                "-d",
                "4",
                "-t",
                "1",
            ],
            "--trials",
        ),
        (
            &[
                "simulate",
                "mean",
                "-m",
                "duchi",
                "-e",
                "1",
                "--population",
                "beta:0,1",
            ],
            "--population",
        ),
        (&["sample", "-m", "grr", "-e", "1", "-i", "0"], "--domain"),
        (
            &["sample", "-m", "grr", "-e", "1", "-d", "4", "-i", "4"],
            "outside the domain",
        ),
        (
            &["sample", "-m", "duchi", "-e", "1", "-i", "abc"],
            "--input",
        ),
        (&["audit", "-m", "oue", "-e", "25", "-d", "4"], "--epsilon"),
    ];
    for (args, needle) in cases {
        let out = hush(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: stderr lacks {needle}: {err}"
        );
    }
}

#[test]
fn sample_is_reproducible_and_well_formed() {
    let run = || {
        hush(&[
            "sample", "-m", "oue", "-e", "1", "-d", "32", "-i", "5", "-c", "200", "-s", "9",
        ])
    };
    let a = run();
    assert!(a.status.success());
    assert_eq!(a.stdout, run().stdout);
    let text = String::from_utf8(a.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 200);
    for line in lines {
        for idx in line.split(',').filter(|s| !s.is_empty()) {
            assert!(idx.parse::<u32>().unwrap() < 32, "{line}");
        }
    }
    // Without a seed the operating system's randomness is used: two runs differ.
    let os = || {
        hush(&[
            "sample", "-m", "laplace", "-e", "1", "-i", "0.5", "-c", "50",
        ])
        .stdout
    };
    assert_ne!(os(), os());
}

/// Chi-square goodness of fit of `hush sample` GRR output against the exact
/// probabilities p = e^eps/(e^eps+d-1) and q = 1/(e^eps+d-1); the test fails a
/// correct implementation with probability 1e-4.
#[test]
fn sample_output_follows_the_grr_distribution() {
    let (d, eps, n) = (5usize, 1.0f64, 50_000usize);
    let out = hush(&[
        "sample", "-m", "grr", "-e", "1", "-d", "5", "-i", "2", "-c", "50000", "-s", "4",
    ]);
    assert!(out.status.success());
    let mut counts = vec![0f64; d];
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        counts[line.parse::<usize>().unwrap()] += 1.0;
    }
    let e = eps.exp();
    let p = e / (e + d as f64 - 1.0);
    let q = 1.0 / (e + d as f64 - 1.0);
    let chi2: f64 = counts
        .iter()
        .enumerate()
        .map(|(v, &c)| {
            let expected = n as f64 * if v == 2 { p } else { q };
            (c - expected).powi(2) / expected
        })
        .sum();
    let p_value = 1.0 - ChiSquared::new((d - 1) as f64).unwrap().cdf(chi2);
    assert!(
        p_value > 1e-4,
        "chi2 = {chi2}, p = {p_value}, counts {counts:?}"
    );
}

#[test]
fn audit_json_reports_a_bound_below_the_claim() {
    let v = json(&hush(&[
        "audit",
        "--mechanism",
        "grr",
        "--epsilon",
        "1",
        "--domain",
        "2",
        "--samples",
        "1000000",
        "--seed",
        "1",
        "--json",
    ]));
    let lb = v["epsilon_lower_bound"].as_f64().unwrap();
    assert!(lb > 0.9 && lb <= 1.0, "{v}");
    assert_eq!(v["violation"], false);
}

#[test]
fn help_explains_every_command() {
    let out = hush(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["simulate", "sample", "audit"] {
        assert!(text.contains(cmd), "{text}");
    }
    let out = hush(&["simulate", "frequency", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(0, 20]") && text.contains("zipf"), "{text}");
}
