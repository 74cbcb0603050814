//! `hush bench --json --quick` end to end: the real binary runs every workload at
//! tiny sizes and reports every field of every row. Timings are not asserted (they
//! depend on the machine and its load); only their presence and consistency are.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::process::Command;

#[test]
fn bench_quick_json_reports_every_kernel_with_ratios() {
    let out = Command::new(env!("CARGO_BIN_EXE_hush"))
        .args(["bench", "--json", "--quick"])
        .output()
        .expect("the hush binary runs");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["quick"], true);
    assert_eq!(v["rng"]["noise_rng"], "ChaCha8");
    for key in ["noise_ns_per_byte", "chacha12_ns_per_byte"] {
        assert!(v["rng"][key].as_f64().unwrap() > 0.0, "{key} in {v}");
    }
    let rows = v["kernels"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    for expected in [
        "oue-d1024",
        "oue-d16",
        "sue-d1024",
        "rr",
        "grr-d1024",
        "olh-d1024",
        "hr-d1024",
        "laplace",
        "duchi",
        "piecewise",
        "hybrid",
        "l-osue-d1024",
        "l-sue-d16",
        "l-grr-d1024",
        "l-onebit",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    for r in rows {
        for key in [
            "baseline_ns",
            "scalar_ns",
            "kernel_ns",
            "speedup",
            "random_bytes_per_element",
            "rng_ns_per_byte",
            "rng_bound_ns",
            "bound_ratio",
        ] {
            let x = r[key].as_f64().unwrap_or(f64::NAN);
            assert!(x.is_finite() && x > 0.0, "{key} = {x} in {r}");
        }
        assert!(r["elements"].as_u64().unwrap() > 0, "{r}");
        // The ratios are what the verdict rests on; they must agree with the times.
        let speedup = r["baseline_ns"].as_f64().unwrap() / r["kernel_ns"].as_f64().unwrap();
        assert!(
            (r["speedup"].as_f64().unwrap() / speedup - 1.0).abs() < 1e-9,
            "{r}"
        );
        // The bound uses the generator's rate timed beside this kernel.
        let bound = r["random_bytes_per_element"].as_f64().unwrap()
            * r["rng_ns_per_byte"].as_f64().unwrap();
        assert!(
            (r["rng_bound_ns"].as_f64().unwrap() / bound - 1.0).abs() < 1e-9,
            "{r}"
        );
        // A target is judged exactly when one is set.
        let has_target = !r["target_speedup"].is_null() || !r["target_bound_ratio"].is_null();
        assert_eq!(r["meets_targets"].is_boolean(), has_target, "{r}");
    }
    // The bit-sliced kernels draw about one random byte per bit (7.3 bits per lane
    // plus the words that finish the slowest lanes): far below 8 for one u64 per bit.
    let oue = rows.iter().find(|r| r["name"] == "oue-d1024").unwrap();
    let bytes = oue["random_bytes_per_element"].as_f64().unwrap();
    assert!(bytes > 0.8 && bytes < 1.5, "{oue}");
}

#[test]
fn bench_prints_a_table_without_json() {
    let out = Command::new(env!("CARGO_BIN_EXE_hush"))
        .args(["bench", "--quick"])
        .output()
        .expect("the hush binary runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("oue-d1024") && text.contains("RNG bound"),
        "{text}"
    );
}
