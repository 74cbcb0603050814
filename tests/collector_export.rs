//! `hush collector export` end to end: a real collector receives real reports from
//! enough devices over two days, then the export is run in every format and the
//! files are read back (Parquet with the parquet crate and with Python's pyarrow,
//! the reader an ML team uses) and checked against what was uploaded.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use hush_report::{Catalog, MetricKind, Report};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use serde_json::Value;
use support::{Collector, DAY, client, hush, parse_csv, report, today};

/// Below this many devices a cell is withheld (lowered from 50 so the test stays small).
const MIN_DEVICES: u64 = 5;
/// A cohort name that needs quoting in CSV and escaping in JSON.
const BIG: &str = "eng, \"core\"";
/// A cohort too small to ever be released.
const TINY: &str = "tiny";

const COLUMNS: [&str; 18] = [
    "metric",
    "kind",
    "window",
    "period_id",
    "period_start",
    "cohort",
    "bucket",
    "bucket_index",
    "estimate",
    "std_error",
    "ci_low",
    "ci_high",
    "post_processed",
    "reports",
    "epsilon",
    "epsilon_perm",
    "mechanism",
    "catalog_hash",
];

/// A collector holding two days of reports, and what each cell should contain.
struct Fixture {
    collector: Collector,
    days: [u32; 2],
    /// Reports per (period, metric index, cohort): exactly what the collector counted.
    counts: BTreeMap<(u32, u16, String), u64>,
}

impl Fixture {
    /// `big` devices in one cohort and 3 in a tiny one, each reporting both days.
    fn new(big: u64) -> Fixture {
        let collector = Collector::start(&format!("min_devices = {MIN_DEVICES}\n"));
        let agent = client();
        let catalog = Catalog::builtin();
        let days = [today() - 2, today() - 1];
        let mut counts = BTreeMap::new();
        let cohorts = (0..big).map(|_| BIG).chain((0..3).map(|_| TINY));
        for (i, cohort) in cohorts.enumerate() {
            let reports: Vec<Report> = days
                .iter()
                .enumerate()
                .map(|(d, &day)| report(&catalog, day, 2.0, 10_000 + 2 * i as u64 + d as u64))
                .collect();
            for r in &reports {
                let metric = r.metrics()[0].metric();
                *counts
                    .entry((r.period(), metric, cohort.to_owned()))
                    .or_insert(0) += 1;
            }
            collector.device_uploads(&agent, cohort, &reports);
        }
        // Both days are open now; the export releases them once their grace
        // window is over (`exports_only_closed_periods` checks the boundary).
        collector.set_config("clock_offset_seconds", &(8 * DAY).to_string());
        Fixture {
            collector,
            days,
            counts,
        }
    }

    /// Rows the export must hold per period: a bucket per row for frequency
    /// metrics, one mean row for counts, for every cell with enough devices.
    fn expected_rows(&self) -> BTreeMap<u32, usize> {
        let catalog = Catalog::builtin();
        let mut rows = BTreeMap::new();
        for ((period, metric, _), &n) in &self.counts {
            if n >= MIN_DEVICES {
                let m = &catalog.metrics()[usize::from(*metric)];
                // A distribution adds its quantile rows to its buckets.
                let quantiles = if m.kind == MetricKind::Distribution {
                    hush_collector::estimate::QUANTILES.len()
                } else {
                    0
                };
                *rows.entry(*period).or_insert(0) +=
                    m.domain().map_or(1, |d| d as usize) + quantiles;
            }
        }
        rows
    }

    fn withheld(&self) -> usize {
        self.counts.values().filter(|&&n| n < MIN_DEVICES).count()
    }

    /// Runs the export of day rows (weeks and months close on calendar
    /// boundaries, so whether this fixture's days have one depends on the
    /// date: `collector_http.rs` tests them on a fixed week).
    fn export(&self, args: &[&str]) -> Output {
        hush()
            .args(["collector", "export", "--windows", "day", "--config"])
            .arg(self.collector.config())
            .args(args)
            .output()
            .unwrap()
    }
}

fn date(period: u32) -> String {
    hush_collector::estimate::period_start(period, 86_400)
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "export failed ({:?}): {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The partition directories and, in each, the names of every file (hidden ones included).
fn tree(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_dir() {
            let mut files: Vec<String> = std::fs::read_dir(entry.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            files.sort();
            out.insert(entry.file_name().into_string().unwrap(), files);
        }
    }
    out
}

type Row = BTreeMap<String, Value>;

fn typed(column: &str, text: &str) -> Value {
    match column {
        "period_id" | "bucket_index" | "reports" => Value::from(text.parse::<i64>().unwrap()),
        // Empty: not finite (a quantile's open end), as JSON's null.
        "estimate" | "std_error" | "ci_low" | "ci_high" | "post_processed" | "epsilon"
        | "epsilon_perm"
            if text.is_empty() || text == "null" =>
        {
            Value::Null
        }
        "estimate" | "std_error" | "ci_low" | "ci_high" | "post_processed" | "epsilon"
        | "epsilon_perm" => text
            .parse::<f64>()
            .map_or_else(|e| panic!("{column} = {text:?}: {e}"), Value::from),
        _ => Value::from(text),
    }
}

fn read_csv(path: &Path) -> Vec<Row> {
    let records = parse_csv(&std::fs::read_to_string(path).unwrap());
    let (header, body) = records.split_first().unwrap();
    assert_eq!(header, &COLUMNS, "CSV header");
    body.iter()
        .map(|r| {
            assert_eq!(r.len(), COLUMNS.len(), "{r:?}");
            COLUMNS
                .iter()
                .zip(r)
                .map(|(c, v)| ((*c).to_owned(), typed(c, v)))
                .collect()
        })
        .collect()
}

fn read_jsonl(path: &Path) -> Vec<Row> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            // Keys in column order: compare the raw key sequence, not just the set.
            let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(line)
                .unwrap()
                .keys()
                .cloned()
                .collect();
            let mut sorted = COLUMNS.map(str::to_owned).to_vec();
            sorted.sort();
            assert_eq!(keys, sorted, "{line}");
            let positions: Vec<usize> = COLUMNS
                .iter()
                .map(|c| line.find(&format!("\"{c}\":")).unwrap())
                .collect();
            assert!(positions.is_sorted(), "keys out of column order: {line}");
            let mut row: Row = serde_json::from_str(line).unwrap();
            // serde_json's default float parser may miss by an ulp; read the numbers' own
            // text with Rust's exact parser. Inside a JSON string every quote is escaped,
            // so `,"name":` only ever matches the key itself.
            for c in [
                "estimate",
                "std_error",
                "ci_low",
                "ci_high",
                "post_processed",
                "epsilon",
                "epsilon_perm",
            ] {
                let key = format!(",\"{c}\":");
                let rest = &line[line.find(&key).unwrap() + key.len()..];
                let text = &rest[..rest.find([',', '}']).unwrap()];
                row.insert(c.to_owned(), typed(c, text));
            }
            row
        })
        .collect()
}

fn read_parquet(path: &Path) -> Vec<Row> {
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let physical: Vec<(String, String)> = schema
        .columns()
        .iter()
        .map(|c| (c.name().to_owned(), format!("{:?}", c.physical_type())))
        .collect();
    let expected: Vec<(String, String)> = COLUMNS
        .iter()
        .map(|&c| {
            let ty = match c {
                "period_id" | "reports" => "INT64",
                "bucket_index" => "INT32",
                "estimate" | "std_error" | "ci_low" | "ci_high" | "post_processed" | "epsilon"
                | "epsilon_perm" => "DOUBLE",
                _ => "BYTE_ARRAY",
            };
            (c.to_owned(), ty.to_owned())
        })
        .collect();
    assert_eq!(physical, expected, "Parquet schema");
    reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| {
            row.unwrap()
                .get_column_iter()
                .map(|(name, field)| {
                    let v = match field {
                        Field::Str(s) => Value::from(s.as_str()),
                        Field::Int(i) => Value::from(*i),
                        Field::Long(i) => Value::from(*i),
                        Field::Double(x) => Value::from(*x),
                        other => panic!("unexpected Parquet field {other:?}"),
                    };
                    (name.clone(), v)
                })
                .collect()
        })
        .collect()
}

/// Checks one export's rows against what was uploaded.
fn check_rows(f: &Fixture, period: u32, rows: &[Row]) {
    let catalog = Catalog::builtin();
    assert_eq!(
        rows.len(),
        f.expected_rows()[&period],
        "rows of {}",
        date(period)
    );
    let mut distributions: BTreeMap<(String, String), Vec<(i64, f64)>> = BTreeMap::new();
    for r in rows {
        let s = |k: &str| r[k].as_str().unwrap().to_owned();
        let x = |k: &str| r[k].as_f64().unwrap();
        assert_eq!(r["period_id"], i64::from(period), "{r:?}");
        assert_eq!(s("period_start"), date(period));
        assert_eq!(s("cohort"), BIG, "only the big cohort has enough devices");
        assert_eq!(s("catalog_hash"), catalog.hash().to_string());
        assert_eq!(x("epsilon"), 2.0);
        assert_eq!(x("epsilon_perm"), 4.0);
        let (index, metric) = catalog
            .metrics()
            .iter()
            .enumerate()
            .find(|(_, m)| m.name == s("metric"))
            .unwrap();
        let reports = f.counts[&(period, index as u16, BIG.to_owned())];
        assert_eq!(r["reports"], reports, "{r:?}");
        if metric.kind == MetricKind::Distribution && r["bucket_index"] == -1 {
            // A quantile's interval inverts a band: it may end at the
            // estimate (a bucket edge) or be unbounded (JSON null).
            let end = |k: &str| r[k].as_f64().unwrap_or(f64::INFINITY);
            assert!(
                end("ci_low") <= end("estimate") && end("estimate") <= end("ci_high"),
                "{r:?}"
            );
            continue;
        }
        assert!(
            x("ci_low") < x("estimate") && x("estimate") < x("ci_high"),
            "{r:?}"
        );
        assert!(x("std_error") > 0.0);
        assert!(x("post_processed") >= 0.0, "{r:?}");
        match metric.domain() {
            None => {
                assert_eq!((s("kind"), s("bucket")), ("count".into(), "mean".into()));
                assert_eq!(r["bucket_index"], -1);
                assert_eq!(s("mechanism"), "l-onebit");
            }
            Some(_) => {
                distributions
                    .entry((s("metric"), s("cohort")))
                    .or_default()
                    .push((r["bucket_index"].as_i64().unwrap(), x("post_processed")));
            }
        }
    }
    assert!(
        !distributions.is_empty(),
        "some frequency cell was released"
    );
    for ((metric, _), buckets) in distributions {
        let domain = catalog.metric(&metric).unwrap().domain().unwrap() as i64;
        let indices: Vec<i64> = buckets.iter().map(|b| b.0).collect();
        assert_eq!(indices, (0..domain).collect::<Vec<_>>(), "{metric}");
        let sum: f64 = buckets.iter().map(|b| b.1).sum();
        assert!(
            (sum - 1.0).abs() < 1e-9,
            "{metric}: post_processed sums to {sum}"
        );
    }
}

#[test]
fn exports_every_format_partitioned_by_day_with_a_data_dictionary() {
    let f = Fixture::new(110);
    let expected = f.expected_rows();
    assert_eq!(
        expected.keys().copied().collect::<Vec<_>>(),
        f.days.to_vec(),
        "both days have released cells"
    );
    let root = f.collector.dir.path().join("exports");
    let partitions: BTreeSet<String> = f
        .days
        .iter()
        .map(|&d| format!("period={}", date(d)))
        .collect();

    let mut by_format: BTreeMap<&str, Vec<Vec<Row>>> = BTreeMap::new();
    for format in ["parquet", "csv", "jsonl"] {
        let out = root.join(format);
        let stdout = ok(&f.export(&["--format", format, "--out", out.to_str().unwrap()]));
        let total: usize = expected.values().sum();
        assert!(stdout.contains(&format!("{total} rows")), "{stdout}");
        assert!(
            stdout.contains(&format!("{} withheld", f.withheld())),
            "{stdout}"
        );

        // Exactly one visible part file per day, and no temporary file left behind.
        let tree = tree(&out);
        assert_eq!(tree.keys().cloned().collect::<BTreeSet<_>>(), partitions);
        for files in tree.values() {
            assert_eq!(files, &[format!("part-0.{format}")]);
        }
        let mut per_day = Vec::new();
        for &day in &f.days {
            let file = out
                .join(format!("period={}", date(day)))
                .join(format!("part-0.{format}"));
            let rows = match format {
                "parquet" => read_parquet(&file),
                "csv" => read_csv(&file),
                _ => read_jsonl(&file),
            };
            check_rows(&f, day, &rows);
            per_day.push(rows);
        }
        by_format.insert(format, per_day);

        // The data dictionary explains every column and says what was withheld.
        let readme = std::fs::read_to_string(out.join("_README.md")).unwrap();
        assert!(readme.starts_with("# Hush dataset export"));
        for c in COLUMNS {
            assert!(
                readme.contains(&format!("| {c} |")),
                "README lacks column {c}"
            );
        }
        let cells = f.counts.len();
        assert!(
            readme.contains(&format!("withheld {} of {cells} cells", f.withheld())),
            "{readme}"
        );
        assert!(readme.contains("unbiased") || readme.contains("Unbiased"));
        assert!(readme.contains("e^epsilon"));
    }
    // The three formats hold the same numbers, bit for bit (CSV and JSON write the
    // shortest decimal that reads back to the same double).
    assert_eq!(by_format["parquet"], by_format["csv"]);
    assert_eq!(by_format["parquet"], by_format["jsonl"]);

    // Existing part files are refused without --force (exit 2), and left untouched.
    let csv_dir = root.join("csv");
    let part = csv_dir
        .join(format!("period={}", date(f.days[0])))
        .join("part-0.csv");
    let before = std::fs::read(&part).unwrap();
    let again = f.export(&["--format", "csv", "--out", csv_dir.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    ok(&f.export(&[
        "--format",
        "csv",
        "--out",
        csv_dir.to_str().unwrap(),
        "--force",
    ]));
    assert_eq!(
        std::fs::read(&part).unwrap(),
        before,
        "same cells, same file"
    );
    assert_eq!(
        tree(&csv_dir)[&format!("period={}", date(f.days[0]))],
        ["part-0.csv"]
    );

    // A second format in the same tree would make it unreadable as one dataset.
    let mixed = f.export(&[
        "--format",
        "jsonl",
        "--out",
        csv_dir.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(mixed.status.code(), Some(2));

    // --from/--to take dates (or raw period ids) and select whole days.
    let one = root.join("one-day");
    let day = date(f.days[1]);
    ok(&f.export(&[
        "--format",
        "jsonl",
        "--out",
        one.to_str().unwrap(),
        "--from",
        &day,
        "--to",
        &day,
    ]));
    assert_eq!(
        tree(&one).keys().cloned().collect::<Vec<_>>(),
        [format!("period={day}")]
    );
    let by_id = root.join("by-id");
    let id = f.days[0].to_string();
    ok(&f.export(&[
        "--format",
        "csv",
        "--out",
        by_id.to_str().unwrap(),
        "--to",
        &id,
    ]));
    assert_eq!(
        tree(&by_id).keys().cloned().collect::<Vec<_>>(),
        [format!("period={}", date(f.days[0]))]
    );

    // Bad dates and empty ranges are usage errors.
    for args in [
        ["--from", "2025-02-30"].as_slice(),
        &["--to", "last tuesday"],
        &["--from", &day, "--to", &date(f.days[0])],
    ] {
        let mut all = vec!["--out", one.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = f.export(&all);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn exports_only_closed_periods() {
    // Enough devices that each day has cells above MIN_DEVICES.
    let f = Fixture::new(80);
    let out = f.collector.dir.path().join("exports");
    let export_at = |days: i64| {
        f.collector
            .set_config("clock_offset_seconds", &(days * DAY).to_string());
        let dir = out.join(days.to_string());
        ok(&f.export(&["--format", "csv", "--out", dir.to_str().unwrap()]));
        tree(&dir).keys().cloned().collect::<Vec<_>>()
    };
    // Today both days are open: nothing is released, however many devices reported.
    assert!(export_at(0).is_empty());
    // Six days on, the first day's grace window (7 days) has closed, not the second's.
    assert_eq!(export_at(6), [format!("period={}", date(f.days[0]))]);
    assert_eq!(export_at(7).len(), 2);
}

fn python_check_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/check_export.py")
}

/// The Parquet tree as an ML team opens it: `pyarrow.dataset` with Hive partitioning.
/// Ignored on a bare machine; CI installs pyarrow (`.ci/run`) and runs it with
/// `--include-ignored`, where a missing python3 or pyarrow fails it, never skips it.
#[test]
#[ignore = "needs Python 3 with pyarrow (installed by .ci/run)"]
fn pyarrow_reads_the_parquet_export_as_a_dataset() {
    let f = Fixture::new(90);
    let out = f.collector.dir.path().join("parquet");
    ok(&f.export(&["--out", out.to_str().unwrap()]));
    let expected = f.expected_rows();
    let periods: Vec<String> = expected.keys().map(|&p| date(p)).collect();
    let result = std::process::Command::new("python3")
        .arg(python_check_script())
        .arg(&out)
        .args(["--rows", &expected.values().sum::<usize>().to_string()])
        .args(["--periods", &periods.join(",")])
        .args(["--min-devices", &MIN_DEVICES.to_string()])
        .args(["--cohort", BIG])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}): install Python 3 and `python3 -m pip install pyarrow` (.ci/run does)")
        });
    assert!(
        result.status.success(),
        "tests/python/check_export.py failed ({:?}):\n{}{}",
        result.status.code(),
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
}
