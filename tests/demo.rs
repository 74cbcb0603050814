//! The README's first command, `hush demo`, end to end on a small fleet: it
//! finishes, and what it writes is readable by name, as a researcher reads it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod support;

use std::collections::HashMap;

use support::{hush, parse_csv, run_ok};

#[test]
fn the_demo_writes_a_summary_readable_by_header_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    run_ok(hush().args([
        "demo",
        "--devices",
        "700",
        "--days",
        "2",
        "--threads",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]));

    let records = parse_csv(&std::fs::read_to_string(out.join("estimates.csv")).unwrap());
    let (header, rows) = records.split_first().expect("a header line");
    let column: HashMap<&str, usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| (h.as_str(), i))
        .collect();
    assert_eq!(
        column.len(),
        header.len(),
        "header names are unique: {header:?}"
    );
    assert!(!rows.is_empty(), "some cells reach the release threshold");
    let catalog = hush_report::Catalog::builtin();
    for row in rows {
        assert_eq!(
            row.len(),
            header.len(),
            "every row has one field per header name: {row:?}"
        );
        let get = |name: &str| {
            row[*column
                .get(name)
                .unwrap_or_else(|| panic!("no column {name}"))]
            .as_str()
        };
        let date = get("period_start");
        assert!(
            date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-',
            "period_start is a date: {date}"
        );
        assert!(catalog.metric(get("metric")).is_some(), "{row:?}");
        let number = |name: &str| -> f64 {
            get(name)
                .parse()
                .unwrap_or_else(|e| panic!("{name} = {:?}: {e}", get(name)))
        };
        let (lo, estimate, hi) = (number("ci_low"), number("estimate"), number("ci_high"));
        assert!(lo <= estimate && estimate <= hi, "{row:?}");
        let truth = number("truth");
        let covered = get("covered");
        assert_eq!(covered == "true", lo <= truth && truth <= hi, "{row:?}");
        assert!(number("reports") >= 50.0, "only released cells: {row:?}");
        assert!(number("epsilon") > 0.0);
    }
    for artefact in [
        "estimates.svg",
        "dataset-parquet/_README.md",
        "dataset-csv/_README.md",
    ] {
        assert!(out.join(artefact).is_file(), "{artefact} written");
    }
}
