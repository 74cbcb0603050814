//! The default catalog: its metrics, their values from raw measurements, and its pinned hash.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use hush_report::{
    Catalog, Encoding, KeyClass, MetricKind, MetricMechanism, MetricValue, MouseButton,
    RawMeasurements, Shortcut,
};

#[test]
fn default_catalog_covers_the_required_metrics() {
    let c = Catalog::builtin();
    for name in [
        "active_minutes",
        "keystrokes",
        "clicks",
        "scroll_notches",
        "pointer_travel",
        "typing_speed",
        "correction_rate",
        "keyboard_share",
        "longest_focus",
        "top_shortcut",
    ] {
        let m = c.metric(name).unwrap_or_else(|| panic!("missing {name}"));
        assert!(!m.description.is_empty());
        // Every metric builds its mechanism at a typical per-report epsilon.
        assert!(m.mechanism(4.0, 2.0).is_ok(), "{name}");
    }
    // Each count also has a distribution on doubling buckets, sharing its
    // measure's cap: sixteen metrics over ten measures.
    let counts = c.metrics().iter().filter(|m| m.kind == MetricKind::Count);
    for name in counts.map(|m| m.name) {
        let d = c
            .metric(&format!("{name}_distribution"))
            .unwrap_or_else(|| panic!("no distribution of {name}"));
        assert_eq!(d.kind, MetricKind::Distribution);
        assert_eq!(d.measure, c.metric(name).unwrap().measure);
        let Encoding::Buckets { edges, .. } = &d.encoding else {
            panic!("{name}: a distribution is bucketed");
        };
        assert!(
            edges.windows(2).all(|w| w[1] == 2.0 * w[0]),
            "{name}: {edges:?}"
        );
    }
    assert_eq!(c.metrics().len(), 16);
    assert_eq!(c.measures().len(), 10);
    assert_eq!(c.version(), 5);
    assert_eq!(c.metrics_per_report(), 1);
    assert_eq!(
        c.metric("top_shortcut").unwrap().domain(),
        Some(Shortcut::ALL.len() as u32 + 1)
    );
    assert!(matches!(
        c.metric("keystrokes").unwrap().kind,
        MetricKind::Count
    ));
    assert!(matches!(
        c.metric("top_shortcut")
            .unwrap()
            .mechanism(2.0, 1.0)
            .unwrap(),
        MetricMechanism::Frequency(_)
    ));
}

#[test]
fn no_report_tells_a_collector_much_about_which_known_value_a_day_had() {
    // A collector that learned a device's permanent answers (by averaging a
    // year of its reports) reads each new report against them. At the default
    // terms and at stricter ones, the built-in metrics keep that per-report
    // loss within MAX_CHANGE_FACTOR of the report's epsilon. (At smaller
    // epsilons the fresh layer needs relatively more of the budget: at 3/1.5
    // the loss is 2.15, 1.43 x; the consent text prints the terms' own figure.)
    let c = Catalog::builtin();
    for (perm, one) in [(4.0, 2.0), (6.0, 2.0), (8.0, 2.0), (6.0, 3.0)] {
        let change = c.epsilon_change(perm, one).unwrap();
        assert!(
            change <= hush_report::MAX_CHANGE_FACTOR * one,
            "{perm}/{one}: {change}"
        );
        assert!(change >= one, "{perm}/{one}: {change}");
    }
    // What the unary encodings would have been: far above it.
    let mut shortcut = c.metric("top_shortcut").unwrap().clone();
    shortcut.encoding = match shortcut.encoding {
        Encoding::Categories { labels, .. } => Encoding::Categories {
            mechanism: hush_ldp::FrequencyKind::LSue,
            labels,
        },
        other => other,
    };
    let sue = shortcut
        .mechanism(4.0, 2.0)
        .unwrap()
        .epsilon_change()
        .unwrap();
    assert!(sue > 15.0, "{sue}");
}

/// The hash identifies the catalog on the wire: changing any metric must change it,
/// and it must not change by accident. Update this constant only with a version bump.
#[test]
fn default_catalog_hash_is_pinned() {
    assert_eq!(
        Catalog::builtin().hash().to_string(),
        GOLDEN_HASH,
        "the default catalog changed: bump its version and update the golden hash"
    );
}

const GOLDEN_HASH: &str = "38a2e688976f3bd68cfa41d12cdae1bc";

#[test]
fn hash_changes_with_any_field() {
    let base = Catalog::builtin();
    let mut metrics = base.metrics().to_vec();
    if let Encoding::Numeric { hi, .. } = &mut metrics[0].encoding {
        *hi += 1.0;
    }
    let changed = Catalog::new(base.version(), 1, metrics).unwrap();
    assert_ne!(changed.hash(), base.hash());
    let reweighted = {
        let mut m = base.metrics().to_vec();
        m[3].weight = 2;
        Catalog::new(base.version(), 1, m).unwrap()
    };
    assert_ne!(reweighted.hash(), base.hash());
    // A weight changes how often a metric is sampled, not how its reports
    // decode: the definition that keys the permanent responses stays.
    assert_eq!(
        reweighted.metrics()[3].definition(),
        base.metrics()[3].definition()
    );
    assert_ne!(
        Catalog::new(6, 1, base.metrics().to_vec()).unwrap().hash(),
        base.hash()
    );
}

#[test]
fn invalid_catalogs_are_refused() {
    let base = Catalog::builtin();
    let mut dup = base.metrics().to_vec();
    dup.push(dup[0].clone());
    assert!(Catalog::new(1, 1, dup).is_err());
    assert!(Catalog::new(1, 0, base.metrics().to_vec()).is_err());
    // At most one metric of each measure per report.
    let measures = u8::try_from(base.measures().len()).unwrap();
    assert!(Catalog::new(1, measures, base.metrics().to_vec()).is_ok());
    assert!(Catalog::new(1, measures + 1, base.metrics().to_vec()).is_err());
    let mut bad_edges = base.metrics().to_vec();
    if let Encoding::Buckets { edges, .. } = &mut bad_edges[6].encoding {
        edges.swap(0, 1);
    }
    assert!(Catalog::new(1, 1, bad_edges).is_err());
    // Every metric needs two layers, and none whose reports carry a per-device constant.
    for (kind, what) in [
        (hush_ldp::FrequencyKind::Oue, "one layer"),
        (hush_ldp::FrequencyKind::LLh, "a seed constant per device"),
    ] {
        let mut m = base.metrics().to_vec();
        if let Encoding::Buckets { mechanism, .. } = &mut m[6].encoding {
            *mechanism = kind;
        }
        let err = Catalog::new(1, 1, m).unwrap_err().to_string();
        assert!(err.contains("two-layer"), "{what}: {err}");
    }
    let mut one_layer = base.metrics().to_vec();
    if let Encoding::Numeric { mechanism, .. } = &mut one_layer[0].encoding {
        *mechanism = hush_ldp::NumericKind::Hybrid;
    }
    assert!(Catalog::new(1, 1, one_layer).is_err());
    // A distribution's quantiles need reports that support one bucket each
    // (L-GRR), and edges above 0 (its ladder doubles from the first).
    let distribution = base
        .metrics()
        .iter()
        .position(|m| m.kind == MetricKind::Distribution)
        .unwrap();
    for change in [0, 1, 2] {
        let mut m = base.metrics().to_vec();
        if let Encoding::Buckets {
            mechanism, edges, ..
        } = &mut m[distribution].encoding
        {
            match change {
                0 => *mechanism = hush_ldp::FrequencyKind::LOue,
                1 => edges[0] = 0.0,
                _ => {}
            }
        }
        if change == 2 {
            // Typing speed can be undefined: its "no value" bucket is real.
            m[distribution].measure = hush_report::Measure::TypingSpeed;
        }
        let err = Catalog::new(1, 1, m).unwrap_err().to_string();
        assert!(err.contains("distribution"), "{err}");
    }
}

fn sample_day() -> RawMeasurements {
    let mut raw = RawMeasurements::new(1440);
    for _ in 0..900 {
        raw.record_key(KeyClass::Letter);
    }
    for _ in 0..100 {
        raw.record_key(KeyClass::Edit);
    }
    for _ in 0..4 {
        raw.record_chord(Some(Shortcut::Paste));
    }
    raw.record_chord(Some(Shortcut::Copy));
    for _ in 0..95 {
        raw.record_click(MouseButton::Left);
    }
    raw.record_scroll(1);
    raw.record_pointer_travel(123_456);
    raw.set_minutes(1440, 50, 8, 25);
    raw
}

#[test]
fn values_are_read_clipped_and_bucketed() {
    let c = Catalog::builtin();
    let raw = sample_day();
    let v = |name: &str| c.metric(name).unwrap().value(&raw);
    assert_eq!(v("active_minutes"), MetricValue::Number(50.0));
    assert_eq!(v("keystrokes"), MetricValue::Number(1005.0));
    assert_eq!(v("clicks"), MetricValue::Number(95.0));
    assert_eq!(v("pointer_travel"), MetricValue::Number(123.456));
    assert_eq!(v("longest_focus"), MetricValue::Number(25.0));
    // 1000 text keys over 8 typing minutes = 125/min: bucket "100-150" (index 2).
    assert_eq!(v("typing_speed"), MetricValue::Category(2));
    // 100 of 1000 text keys were corrections = 10%: bucket "9-12%" (index 4).
    assert_eq!(v("correction_rate"), MetricValue::Category(4));
    // 1005 keys of 1005 + 95 + 1 inputs = 91.3%: bucket "90-95%" (index 2).
    assert_eq!(v("keyboard_share"), MetricValue::Category(2));
    // Paste (index 2 in the allow-list) was used most: category 3.
    assert_eq!(v("top_shortcut"), MetricValue::Category(3));
    let idle = RawMeasurements::new(1440);
    for name in [
        "typing_speed",
        "correction_rate",
        "keyboard_share",
        "top_shortcut",
    ] {
        assert_eq!(
            c.metric(name).unwrap().value(&idle),
            MetricValue::Category(0),
            "{name}"
        );
    }
    let mut heavy = RawMeasurements::new(1440);
    heavy.record_pointer_travel(10_000_000_000);
    assert_eq!(
        c.metric("pointer_travel").unwrap().value(&heavy),
        MetricValue::Number(1700.0)
    );
}

#[test]
fn preview_speaks_plain_words() {
    let c = Catalog::builtin();
    let lines = c.preview(&sample_day());
    assert_eq!(lines.len(), c.metrics().len());
    let words = |name: &str| {
        lines
            .iter()
            .find(|l| l.name == name)
            .unwrap()
            .in_words
            .clone()
    };
    assert_eq!(words("keystrokes"), "1005 keys");
    assert_eq!(words("typing_speed"), "100-150");
    assert_eq!(words("top_shortcut"), "paste");
    assert_eq!(words("pointer_travel"), "123.46 thousand pixels");
}
