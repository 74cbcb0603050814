//! Privacy over months, end to end: one device reporting one unchanged value for
//! 1,000 periods, an adversary who averages a year of reports, and every file an
//! agent writes after weeks of canary days.
//!
//! Statistical tolerances: chi-square at p >= 1e-4 (as the mechanism tests), and
//! the auditor's Clopper-Pearson bounds at 99% confidence, so a correct privatizer
//! fails one of these on a fresh seed with probability about 1e-2 at most.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::collections::BTreeSet;

use hush_agent::{Agent, AgentConfig, AgentPaths, Enrollment, Terms};
use hush_ldp::{
    AnyFrequencyOracle, BudgetAccount, FrequencyBatch, FrequencyKind, LGrr, NoiseRng, TwoLayer,
};
use hush_report::{
    Catalog, DeviceMemory, DeviceSecret, DrawTags, Encoding, KeyClass, MetricMechanism,
    MetricValue, PrivatizeRequest, RawMeasurements, Report, context_of, privatize,
};
use hush_stats::audit::audit_frequency;
use rand::{Rng, SeedableRng};
use statrs::distribution::{ChiSquared, ContinuousCDF};

/// A catalog of one metric, typing speed in seven buckets through L-GRR, so that
/// every report is about it.
fn typing_only() -> Catalog {
    let m = Catalog::builtin().metric("typing_speed").unwrap().clone();
    assert!(matches!(
        m.encoding,
        Encoding::Buckets {
            mechanism: FrequencyKind::LGrr,
            ..
        }
    ));
    Catalog::new(7, 1, vec![m]).unwrap()
}

/// A day with 400 text keys in 2 typing minutes: 200 keys a minute, bucket "200-250".
fn same_day() -> RawMeasurements {
    let mut raw = RawMeasurements::new(1440);
    for _ in 0..400 {
        raw.record_key(KeyClass::Letter);
    }
    raw.set_minutes(1440, 10, 2, 10);
    raw
}

#[test]
fn one_unchanged_value_for_1000_periods_is_fresh_noise_around_one_permanent_response() {
    let catalog = typing_only();
    let metric = &catalog.metrics()[0];
    let mut rng = NoiseRng::seed_from_u64(0x1000);
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let mut memory = DeviceMemory::new(DeviceSecret::from_bytes(secret));
    let d = metric.domain().unwrap() as usize;
    let mut counts = vec![0u64; d];
    let mut reports = Vec::new();
    for period in 0..1000u32 {
        let request = PrivatizeRequest {
            catalog: &catalog,
            period: 20_000 + period,
            period_seconds: 86_400,
            epsilon: 2.0,
            epsilon_perm: 4.0,
            max_draws: 8,
            bucket: (20_000 + period) / 30,
            agent_version: "test",
        };
        let mut budget = BudgetAccount::new(2.0).unwrap();
        let r = privatize(same_day(), &request, &mut memory, &mut budget, &mut rng).unwrap();
        let y = r.metrics()[0].value().as_frequency().unwrap();
        let hush_ldp::FrequencyOutput::Value(y) = y else {
            panic!("L-GRR reports one value")
        };
        counts[y as usize] += 1;
        reports.push(r);
    }
    // Not all identical: the instantaneous layer re-randomizes every report.
    let distinct: BTreeSet<Vec<u8>> = reports.iter().map(value_bytes).collect();
    assert!(distinct.len() > 1);
    // One permanent draw for the one value, however many reports.
    assert_eq!(memory.lifetime.draws_in_window(metric.name, 0), 1);

    // The permanent response the device derives (never stored), and the
    // instantaneous channel applied to it: the reports' exact law.
    let MetricMechanism::Frequency(AnyFrequencyOracle::LGrr(m)) =
        metric.mechanism(4.0, 2.0).unwrap()
    else {
        panic!("typing speed is L-GRR");
    };
    let context = context_of(metric, 4.0);
    let coarse = 4; // bucket "200-250"
    assert_eq!(metric.describe(MetricValue::Category(coarse)), "200-250");
    let permanent = m
        .permanent(coarse, &mut memory.secret.permanent_rng(&context, coarse))
        .unwrap();
    let inst = m.instantaneous_layer();
    let probs: Vec<f64> = (0..d as u32)
        .map(|y| {
            if y == permanent {
                inst.keep_probability()
            } else {
                inst.other_probability()
            }
        })
        .collect();
    let statistic: f64 = counts
        .iter()
        .zip(&probs)
        .map(|(&o, &p)| (o as f64 - 1000.0 * p).powi(2) / (1000.0 * p))
        .sum();
    let p_value = ChiSquared::new((d - 1) as f64).unwrap().sf(statistic);
    assert!(
        p_value > 1e-4,
        "chi-square {statistic}, counts {counts:?}, permanent {permanent}"
    );

    // What one report reveals, from fresh devices: the auditor's bound stays at epsilon_1.
    let oracle = AnyFrequencyOracle::LGrr(m.clone());
    let audit = audit_frequency(&oracle, 200_000, 0.99, &mut rng).unwrap();
    assert!(audit.epsilon_lower_bound <= 2.0, "{audit:?}");
    assert!(audit.claimed_epsilon <= 2.0 * (1.0 + 1e-9), "{audit:?}");
}

/// A report's privatized value, as bytes to compare.
fn value_bytes(r: &Report) -> Vec<u8> {
    format!("{:?}", r.metrics()[0].value()).into_bytes()
}

/// The adversary sees a device's 365 daily reports of one unchanged value and
/// decides between two values by majority vote, which recovers the permanent
/// response almost surely. Its advantage is what the permanent layer allows:
/// the empirical epsilon (Clopper-Pearson at 99%) is at most `epsilon_perm`,
/// and well above `epsilon_1`, so the bound is what binds a year of reports.
#[test]
fn averaging_a_year_of_reports_learns_no_more_than_epsilon_perm() {
    let (perm, one, d) = (4.0, 2.0, 9u64);
    let m = LGrr::new(perm, one, d).unwrap();
    let mut rng = NoiseRng::seed_from_u64(0x365);
    let devices = 4000u64;
    let mut guessed_a = [0u64; 2];
    let mut year = vec![0u32; 365];
    for (h, value) in [(0usize, 2u32), (1, 7)] {
        for _ in 0..devices {
            let permanent = m.permanent(value, &mut rng).unwrap();
            m.instantaneous_layer()
                .perturb_repeated(permanent, &mut year, &mut rng)
                .unwrap();
            let mut votes = [0u32; 9];
            year.iter().for_each(|&y| votes[y as usize] += 1);
            let majority = (0..9).max_by_key(|&y| votes[y]).unwrap() as u32;
            guessed_a[h] += u64::from(majority == 2);
        }
    }
    // "Guessed value 2" under value 2 against under value 7.
    // Each one-sided bound at alpha = 0.005: both hold together with 99% confidence.
    let lower = hush_stats::clopper_pearson_lower(guessed_a[0], devices, 0.005);
    let upper = hush_stats::clopper_pearson_upper(guessed_a[1], devices, 0.005);
    let empirical = (lower / upper).ln();
    let realized = m.epsilon_perm();
    assert!(
        empirical <= realized,
        "{empirical} > epsilon_perm {realized}"
    );
    assert!(
        empirical > one,
        "the attack should beat one report's epsilon_1: {empirical}"
    );
    // And the point estimate sits at the permanent layer's p1/q1.
    let point = (guessed_a[0] as f64 / guessed_a[1] as f64).ln();
    assert!((point - realized).abs() < 0.35, "{point} vs {realized}");
}

/// An agent after 60 canary days (distinctive counts every day): the files it
/// wrote are exactly the expected ones, each decodes to a type with no place
/// for a measurement, and no canary count is in any of them in any encoding.
#[test]
fn no_file_in_the_agent_home_holds_a_value() {
    let home = tempfile::tempdir().unwrap();
    let agent = Agent {
        paths: AgentPaths::in_home(home.path()),
        config: AgentConfig::default(),
        enrollment: Enrollment {
            collector: "http://127.0.0.1:1".into(),
            token: "t".into(),
            terms: Terms {
                epsilon_1: 2.0,
                epsilon_perm: 4.0,
                period_seconds: 86_400,
            },
            consented_at: 0,
            consent_version: hush_agent::CONSENT_VERSION,
        },
    };
    agent.enrollment.save(&agent.paths).unwrap();
    let canaries: [u64; 4] = [31_337, 4_242, 27_183, 16_180];
    let mut rng = NoiseRng::seed_from_u64(60);
    for day in 0..60u32 {
        let mut raw = RawMeasurements::new(1440);
        let c = canaries[day as usize % 4] + u64::from(day);
        for _ in 0..c {
            raw.record_key(KeyClass::Letter);
        }
        for _ in 0..c / 10 {
            raw.record_click(hush_report::MouseButton::Left);
        }
        raw.set_minutes(1440, 333, 123, 77);
        agent.produce_with(20_400 + day, raw, &mut rng).unwrap();
    }
    let data = &agent.paths.data;
    let mut names = BTreeSet::new();
    for entry in walk(data) {
        let relative = entry
            .strip_prefix(data)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let bytes = std::fs::read(&entry).unwrap();
        let kind = if relative.starts_with("outbox/") && relative.ends_with(".report") {
            Report::decode(&bytes).unwrap();
            "outbox/*.report"
        } else {
            match relative.as_str() {
                "enrollment.toml" => {
                    let e: toml::Value =
                        toml::from_str(std::str::from_utf8(&bytes).unwrap()).unwrap();
                    let keys: BTreeSet<&str> =
                        e.as_table().unwrap().keys().map(String::as_str).collect();
                    assert_eq!(
                        keys,
                        BTreeSet::from([
                            "collector",
                            "token",
                            "terms",
                            "consented_at",
                            "consent_version"
                        ])
                    );
                }
                "ledger.json" => check_ledger(&serde_json::from_slice(&bytes).unwrap()),
                "secret.key" => assert_eq!(bytes.len(), 32),
                "draws.bin" => {
                    let tags = DrawTags::from_bytes(&bytes).unwrap();
                    assert!(!tags.is_empty());
                }
                other => {
                    panic!("unexpected file {other}: every file the agent writes is listed here")
                }
            }
            entry.file_name().unwrap().to_str().unwrap()
        };
        names.insert(kind.to_owned());
        // A queued report is randomized bits that hold any short byte pattern by
        // chance (its privacy is the Report type's: only privatized values), so
        // it is searched for the counts as text only; every other file in every
        // encoding.
        let report = kind == "outbox/*.report";
        for c in canaries {
            for day in 0..60u64 {
                let needles = encodings(c + day);
                let needles = if report { &needles[..1] } else { &needles[..] };
                for needle in needles {
                    assert!(
                        !contains(&bytes, needle),
                        "{relative} holds the canary count {} ({needle:?})",
                        c + day
                    );
                }
            }
        }
    }
    assert_eq!(
        names,
        BTreeSet::from(
            [
                "draws.bin",
                "enrollment.toml",
                "ledger.json",
                "outbox/*.report",
                "secret.key"
            ]
            .map(String::from)
        )
    );
}

/// The ledger's shape: periods (limit, spent, reported) and the spending
/// history (per metric name: bucket and epsilon units). Nothing else.
fn check_ledger(v: &serde_json::Value) {
    let top: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(top, BTreeSet::from(["periods", "lifetime"]));
    for entry in v["periods"].as_object().unwrap().values() {
        let keys: BTreeSet<&str> = entry
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, BTreeSet::from(["limit", "spent", "reported"]));
    }
    let lifetime: BTreeSet<&str> = v["lifetime"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(lifetime, BTreeSet::from(["draws", "latest_bucket"]));
    let catalog = Catalog::builtin();
    for (metric, draws) in v["lifetime"]["draws"].as_object().unwrap() {
        assert!(catalog.metric(metric).is_some(), "{metric}");
        for d in draws.as_array().unwrap() {
            let keys: BTreeSet<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys, BTreeSet::from(["bucket", "epsilon_units"]));
            assert_eq!(d["epsilon_units"], 4_000_000_000u64);
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A number as text and as little- and big-endian integers of 2, 4 and 8 bytes
/// (those wider than it needs), and as an f64.
fn encodings(n: u64) -> Vec<Vec<u8>> {
    let mut out = vec![
        n.to_string().into_bytes(),
        (n as f64).to_le_bytes().to_vec(),
    ];
    out.push((n as u32).to_le_bytes().to_vec());
    out.push((n as u32).to_be_bytes().to_vec());
    out.push(n.to_le_bytes().to_vec());
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
