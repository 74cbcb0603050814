//! Dataset export: the released estimate rows as Parquet, CSV or JSON Lines, one
//! Hive-style partition per period (`period=YYYY-MM-DD/part-0.parquet`), with a
//! data dictionary (`_README.md`) beside them.
//!
//! The layout is the one DuckDB (`read_parquet('out/*/*.parquet', hive_partitioning = true)`),
//! Polars (`scan_parquet(..., hive_partitioning=True)`), Spark and `pyarrow.dataset`
//! (`partitioning="hive"`) read without help. Because the partition key is `period`
//! and those readers refuse (or silently override) a file column of the same name,
//! the files carry the period number as `period_id`; `period` exists only in the path.
//!
//! Parquet is written with the `parquet` crate's column writers rather than through
//! Arrow: sixteen flat, required columns need no Arrow arrays, and leaving Arrow out keeps
//! the build several minutes shorter on a two-core machine. The reader sees the
//! same logical types either way (UTF-8 strings, int32, int64, double).
//!
//! Every file is rendered in memory (a period's rows are small), written under a
//! hidden temporary name in its final directory, synced, and renamed into place:
//! a crash leaves either the previous file or the new one, never half of one, and
//! the readers above skip names that start with a dot.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use hush_report::{Encoding, MetricKind};
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use crate::cells::{CellKey, CellState};
use crate::estimate::{EstimateRow, LEVEL, Window, estimate_cells};
use crate::store::{self, Store};
use crate::validate::Catalogs;
use crate::{CollectorError, PeriodClock};
use hush_report::{civil_from_days, days_from_civil};

/// The data dictionary's file name. The underscore matters: pyarrow.dataset and
/// Spark read every file of the tree except names starting with `_` or `.`, and
/// would fail on a plain `README.md` ("Parquet magic bytes not found").
pub const README_NAME: &str = "_README.md";

/// First line of every data dictionary: how an export directory is recognised,
/// so a file of that name that is not ours is never overwritten without `--force`.
const README_TITLE: &str = "# Hush dataset export";

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Apache Parquet, Snappy-compressed, one row group per file.
    Parquet,
    /// RFC 4180 CSV with a header row, UTF-8, LF line ends.
    Csv,
    /// JSON Lines: one JSON object per row.
    Jsonl,
}

impl Format {
    /// Every format, in the order the command line lists them.
    pub const ALL: [Format; 3] = [Format::Parquet, Format::Csv, Format::Jsonl];

    /// The name on the command line, which is also the file extension.
    pub fn name(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = CollectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                CollectorError::Refused(format!("unknown format '{s}'; use parquet, csv or jsonl"))
            })
    }
}

/// One end of a period range as given on the command line: a UTC calendar date
/// (`YYYY-MM-DD`) or a raw period id (digits only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodBound {
    /// Days since 1970-01-01.
    Date(i64),
    /// A period id as stored: seconds since the epoch divided by the period length.
    Period(u32),
}

impl FromStr for PeriodBound {
    type Err = CollectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || {
            CollectorError::Refused(format!(
                "'{s}' is neither a date YYYY-MM-DD nor a period id (a whole number)"
            ))
        };
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse().map(PeriodBound::Period).map_err(|_| bad());
        }
        let parts: Vec<&str> = s.split('-').collect();
        let [y, m, d] = parts[..] else {
            return Err(bad());
        };
        let digits = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit());
        if !(digits(y, 4) && digits(m, 2) && digits(d, 2)) {
            return Err(bad());
        }
        let (y, m, d) = (
            y.parse::<i64>().map_err(|_| bad())?,
            m.parse::<u32>().map_err(|_| bad())?,
            d.parse::<u32>().map_err(|_| bad())?,
        );
        let days = days_from_civil(y, m, d);
        // Round-tripping through the calendar rejects month 13, February 30 and the like.
        if !(1..=12).contains(&m) || civil_from_days(days) != (y, m, d) {
            return Err(CollectorError::Refused(format!(
                "'{s}' is not a calendar date"
            )));
        }
        if days < 0 {
            return Err(CollectorError::Refused(format!(
                "'{s}' is before 1970-01-01, where periods start"
            )));
        }
        Ok(PeriodBound::Date(days))
    }
}

impl PeriodBound {
    /// The first period a range starting here includes: for a date, the first
    /// period that starts at or after its midnight (UTC).
    pub fn first_period(self, period_seconds: u32) -> Result<u32, CollectorError> {
        match self {
            PeriodBound::Period(p) => Ok(p),
            PeriodBound::Date(days) => {
                let start = days as u64 * 86_400;
                period_id(start.div_ceil(u64::from(period_seconds.max(1))))
            }
        }
    }

    /// The end (exclusive) of the periods wholly before this bound: those that
    /// end by a date's midnight (UTC), or the ids below a period id.
    pub fn periods_before(self, period_seconds: u32) -> Result<u32, CollectorError> {
        match self {
            PeriodBound::Period(p) => Ok(p),
            PeriodBound::Date(days) => {
                period_id(days as u64 * 86_400 / u64::from(period_seconds.max(1)))
            }
        }
    }

    /// The last period a range ending here includes: for a date, the last period
    /// that starts before the date is over, so `--to` a date includes all of it.
    pub fn last_period(self, period_seconds: u32) -> Result<u32, CollectorError> {
        match self {
            PeriodBound::Period(p) => Ok(p),
            PeriodBound::Date(days) => {
                let last_second = (days as u64 + 1) * 86_400 - 1;
                period_id(last_second / u64::from(period_seconds.max(1)))
            }
        }
    }
}

fn period_id(p: u64) -> Result<u32, CollectorError> {
    u32::try_from(p).map_err(|_| CollectorError::Refused("date is past the last period".into()))
}

/// What to export and where.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// File format.
    pub format: Format,
    /// Output directory; created if missing.
    pub out_dir: PathBuf,
    /// First period (inclusive); `None` for the earliest.
    pub from: Option<u32>,
    /// Last period (inclusive); `None` for the latest.
    pub to: Option<u32>,
    /// Replace part files (and a data dictionary) that already exist.
    pub force: bool,
    /// The collector's period length in seconds, for period start times.
    pub period_seconds: u32,
    /// Cells with fewer reports than this are withheld (as in `/v1/estimates`).
    pub min_devices: u64,
}

/// What one period of an export holds.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionSummary {
    /// Period id.
    pub period: u32,
    /// Its start, as in the partition directory name (before escaping).
    pub period_start: String,
    /// The part file written; `None` when every cell of the period was withheld.
    pub file: Option<PathBuf>,
    /// Rows in the part file.
    pub rows: usize,
    /// Cells released (each gives one row per bucket, or one mean row).
    pub released_cells: usize,
    /// Cells withheld for having fewer than `min_devices` reports.
    pub withheld_cells: usize,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSummary {
    /// The format written.
    pub format: Format,
    /// Every period that had cells, in order.
    pub partitions: Vec<PartitionSummary>,
    /// Total rows written.
    pub rows: usize,
    /// Total cells released.
    pub released_cells: usize,
    /// Total cells withheld.
    pub withheld_cells: usize,
    /// The data dictionary.
    pub readme: PathBuf,
}

/// Rows as one file of `format`: what a part file of the export holds, and
/// what the dashboard's download links serve.
pub fn rows_bytes(format: Format, rows: &[EstimateRow]) -> Result<Vec<u8>, CollectorError> {
    Ok(match format {
        Format::Parquet => parquet_bytes(rows)?,
        Format::Csv => csv_bytes(rows),
        Format::Jsonl => jsonl_bytes(rows),
    })
}

/// Exports every releasable row of `windows` in the options' period range:
/// the cells of the periods closed at `clock` (the release rule of
/// [`store::released_cells`], the same as `/v1/estimates`) for `day`, and
/// the weeks and months wholly closed and inside the range, pooled from the
/// stored reports (daily periods only); then does what [`export_cells`] does.
pub fn export(
    db: &mut dyn Store,
    catalogs: &Catalogs,
    options: &ExportOptions,
    windows: &[Window],
    clock: &PeriodClock,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ExportSummary, CollectorError> {
    check_range(options)?;
    let cells = if windows.contains(&Window::Day) {
        store::released_cells(db, clock, options.from, options.to)?
    } else {
        Vec::new()
    };
    let mut pooled = Vec::new();
    for window in [Window::Week, Window::Month] {
        if windows.contains(&window) && options.period_seconds == 86_400 {
            let (rows, _) = crate::estimate::released_rows(
                db,
                catalogs,
                clock,
                window,
                options.from,
                options.to,
                options.period_seconds,
                options.min_devices,
            )?;
            pooled.extend(rows);
        }
    }
    export_cells(cells, pooled, catalogs, options, progress)
}

/// Estimates the cells, withholds those below `min_devices`, and writes one part
/// file per period plus the data dictionary; `pooled` rows (weeks, months) go
/// into the partition of their first period, after its day rows. `progress(done, total)` is called
/// after each file.
///
/// Refuses (with [`CollectorError::Refused`], before writing anything) to replace
/// existing part files unless `force` is set, and to write into a tree that holds
/// part files of another format, which would make the tree unreadable as one dataset.
pub fn export_cells(
    cells: Vec<(CellKey, CellState)>,
    pooled: Vec<EstimateRow>,
    catalogs: &Catalogs,
    options: &ExportOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ExportSummary, CollectorError> {
    check_range(options)?;
    let mut by_period: BTreeMap<u32, Vec<(CellKey, CellState)>> = BTreeMap::new();
    for (key, state) in cells {
        let inside = options.from.is_none_or(|f| key.period >= f)
            && options.to.is_none_or(|t| key.period <= t);
        if inside {
            by_period.entry(key.period).or_default().push((key, state));
        }
    }

    // Where each period's part file goes. A period whose cells are all withheld
    // gets none, and with --force loses a file an earlier export left there, so the
    // tree never shows rows the current min_devices would withhold.
    let part = |period: u32| {
        let start = crate::estimate::period_start(period, options.period_seconds);
        options
            .out_dir
            .join(format!("period={}", escape_partition_value(&start)))
            .join(format!("part-0.{}", options.format.name()))
    };
    let readme = options.out_dir.join(README_NAME);
    let mut pooled_by_period: BTreeMap<u32, Vec<EstimateRow>> = BTreeMap::new();
    for row in pooled {
        let inside = options.from.is_none_or(|f| row.period >= f)
            && options.to.is_none_or(|t| row.period <= t);
        if inside {
            // A window's first day gets a partition even if it had no reports.
            by_period.entry(row.period).or_default();
            pooled_by_period.entry(row.period).or_default().push(row);
        }
    }
    let paths: Vec<PathBuf> = by_period.keys().map(|&p| part(p)).collect();
    preflight(options, &paths, &readme)?;

    fs::create_dir_all(&options.out_dir).map_err(|e| io_at(&options.out_dir, e))?;
    // One period at a time, so memory holds one period's rows, not the whole history.
    let total = by_period.len() + 1;
    progress(0, total);
    let mut partitions = Vec::with_capacity(by_period.len());
    let mut hashes = BTreeSet::new();
    for (done, (period, mut group)) in by_period.into_iter().enumerate() {
        group.sort_by(|a, b| a.0.cmp(&b.0));
        let (mut rows, withheld) = estimate_cells(
            &group,
            catalogs,
            options.period_seconds,
            options.min_devices,
        )?;
        rows.extend(pooled_by_period.remove(&period).unwrap_or_default());
        let path = part(period);
        let file = if rows.is_empty() {
            match fs::remove_file(&path) {
                Ok(()) => {
                    // Only an empty directory goes; anything else in it stays.
                    if let Some(dir) = path.parent() {
                        let _ = fs::remove_dir(dir);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_at(&path, e)),
            }
            None
        } else {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(|e| io_at(dir, e))?;
            }
            let bytes = rows_bytes(options.format, &rows)?;
            write_atomic(&path, &bytes)?;
            Some(path)
        };
        hashes.extend(rows.iter().map(|r| r.catalog_hash.clone()));
        partitions.push(PartitionSummary {
            period,
            period_start: crate::estimate::period_start(period, options.period_seconds),
            file,
            rows: rows.len(),
            released_cells: group.len() - withheld,
            withheld_cells: withheld,
        });
        progress(done + 1, total);
    }

    let summary = ExportSummary {
        format: options.format,
        rows: partitions.iter().map(|p| p.rows).sum(),
        released_cells: partitions.iter().map(|p| p.released_cells).sum(),
        withheld_cells: partitions.iter().map(|p| p.withheld_cells).sum(),
        partitions,
        readme: readme.clone(),
    };
    write_atomic(
        &readme,
        data_dictionary(options, &summary, &hashes, catalogs).as_bytes(),
    )?;
    progress(total, total);
    Ok(summary)
}

fn check_range(options: &ExportOptions) -> Result<(), CollectorError> {
    if let Some((f, t)) = options.from.zip(options.to).filter(|(f, t)| f > t) {
        return Err(CollectorError::Refused(format!(
            "the range is empty: --from is period {f}, after --to, period {t}"
        )));
    }
    if options.period_seconds == 0 {
        return Err(CollectorError::Config(
            "period_seconds must be positive".into(),
        ));
    }
    Ok(())
}

/// Checks, before anything is written, that no part file would be replaced
/// without `force` and that the tree holds no part files of another format.
fn preflight(
    options: &ExportOptions,
    parts: &[PathBuf],
    readme: &Path,
) -> Result<(), CollectorError> {
    let existing: Vec<&PathBuf> = parts.iter().filter(|f| f.exists()).collect();
    if !options.force {
        if let Some(first) = existing.first() {
            return Err(CollectorError::Refused(format!(
                "{} part file(s) already exist, e.g. {}; pass --force to replace them",
                existing.len(),
                first.display()
            )));
        }
        if readme.exists() {
            let ours = fs::read_to_string(readme)
                .map(|t| t.starts_with(README_TITLE))
                .unwrap_or(false);
            if !ours {
                return Err(CollectorError::Refused(format!(
                    "{} exists and is not a Hush data dictionary; pick an empty directory or pass --force",
                    readme.display()
                )));
            }
        }
    }
    let Ok(entries) = fs::read_dir(&options.out_dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let is_partition = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("period="));
        if !is_partition {
            continue;
        }
        for other in Format::ALL.into_iter().filter(|f| *f != options.format) {
            let part = entry.path().join(format!("part-0.{}", other.name()));
            if part.exists() {
                return Err(CollectorError::Refused(format!(
                    "{} holds {other} files ({}); a tree mixing formats is unreadable as one dataset, so export {} into another directory",
                    options.out_dir.display(),
                    part.display(),
                    options.format
                )));
            }
        }
    }
    Ok(())
}

/// Percent-encodes everything but letters, digits, `-`, `_` and `.`, as Hive does:
/// a day is left as it is, and the colons of a sub-day period start (which
/// Hadoop paths forbid) become `%3A`, which the readers decode.
fn escape_partition_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn io_at(path: &Path, e: std::io::Error) -> CollectorError {
    CollectorError::Io(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

/// Writes `bytes` to a hidden temporary file beside `path`, syncs it, renames it
/// over `path`, and syncs the directory, so `path` is always absent, old or complete.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CollectorError> {
    let dir = path
        .parent()
        .ok_or_else(|| CollectorError::Internal(format!("{} has no parent", path.display())))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| CollectorError::Internal(format!("{} has no name", path.display())))?;
    // The process id keeps two concurrent exports from sharing a temporary file.
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        // The rename is durable only once the directory entry is; Windows cannot
        // open a directory, and its rename is already journaled by NTFS.
        #[cfg(unix)]
        fs::File::open(dir)?.sync_all()?;
        Ok(())
    })();
    result.map_err(|e: std::io::Error| {
        let _ = fs::remove_file(&tmp);
        io_at(path, e)
    })
}

mod formats;

use formats::*;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

    use super::*;

    #[test]
    fn dates_round_trip_and_bad_ones_are_refused() {
        for days in [0, 1, 59, 60, 365, 11_016, 20_420, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(
            "2025-11-28".parse::<PeriodBound>().unwrap(),
            PeriodBound::Date(20_420)
        );
        assert_eq!(
            "20420".parse::<PeriodBound>().unwrap(),
            PeriodBound::Period(20_420)
        );
        for bad in [
            "2025-02-29",
            "2025-13-01",
            "2025-1-1",
            "1969-12-31",
            "yesterday",
            "",
            "2025-11-29T00:00",
            "99999999999",
        ] {
            assert!(
                matches!(bad.parse::<PeriodBound>(), Err(CollectorError::Refused(_))),
                "{bad}"
            );
        }
        assert!("2024-02-29".parse::<PeriodBound>().is_ok());
    }

    #[test]
    fn dates_cover_whole_days_for_any_period_length() {
        let day = PeriodBound::Date(20_420);
        assert_eq!(day.first_period(86_400).unwrap(), 20_420);
        assert_eq!(day.last_period(86_400).unwrap(), 20_420);
        // Hourly periods: the date's 24 hours.
        assert_eq!(day.first_period(3600).unwrap(), 20_420 * 24);
        assert_eq!(day.last_period(3600).unwrap(), 20_420 * 24 + 23);
        // Weekly periods that straddle midnight: the first one starting on or after it.
        let week = 7 * 86_400;
        assert_eq!(day.first_period(week).unwrap(), 20_420_u32.div_ceil(7));
        // Periods wholly before the date: those ending by its midnight, so a
        // week straddling it is not among them.
        assert_eq!(day.periods_before(86_400).unwrap(), 20_420);
        assert_eq!(day.periods_before(3600).unwrap(), 20_420 * 24);
        assert_eq!(day.periods_before(week).unwrap(), 20_420 / 7);
        assert_eq!(PeriodBound::Period(9).periods_before(week).unwrap(), 9);
        assert_eq!(day.last_period(week).unwrap(), 20_420 / 7);
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let mut s = String::new();
        csv_field(&mut s, "plain");
        s.push('|');
        csv_field(&mut s, "a,b");
        s.push('|');
        csv_field(&mut s, "say \"hi\"\nthen");
        assert_eq!(s, "plain|\"a,b\"|\"say \"\"hi\"\"\nthen\"");
    }

    #[test]
    fn partition_values_are_escaped_like_hive() {
        assert_eq!(escape_partition_value("2025-11-29"), "2025-11-29");
        assert_eq!(
            escape_partition_value("1970-01-01T03:00:00Z"),
            "1970-01-01T03%3A00%3A00Z"
        );
    }

    #[test]
    fn withholds_small_cells_and_never_overwrites_unasked() {
        let catalogs = Catalogs::builtin();
        let catalog = &catalogs.all()[0];
        let metric = catalog
            .metrics()
            .iter()
            .position(|m| m.name == "typing_speed")
            .unwrap() as u16;
        let key = |period| CellKey {
            catalog: catalog.hash(),
            metric,
            period,
            cohort: "a,\"b\"".into(),
            epsilon_bits: 2.0_f64.to_bits(),
            epsilon_perm_bits: 4.0_f64.to_bits(),
        };
        let d = catalog.metrics()[usize::from(metric)].domain().unwrap() as usize;
        let cell = |n: u64| {
            CellState::Frequency(hush_stats::FrequencyAggregate::from_counts(
                n,
                vec![n / 2; d],
            ))
        };
        let cells = vec![(key(100), cell(40)), (key(101), cell(3))];
        let run = |o: &ExportOptions| {
            export_cells(cells.clone(), Vec::new(), &catalogs, o, &mut |_, _| {})
        };
        let dir = tempfile::tempdir().unwrap();
        let options = ExportOptions {
            format: Format::Csv,
            out_dir: dir.path().join("out"),
            from: None,
            to: None,
            force: false,
            period_seconds: 86_400,
            min_devices: 10,
        };
        let summary = run(&options).unwrap();
        assert_eq!(
            (summary.rows, summary.released_cells, summary.withheld_cells),
            (d, 1, 1)
        );
        // The withheld period has no directory at all.
        assert_eq!(summary.partitions[1].file, None);
        let mut dirs: Vec<String> = fs::read_dir(&options.out_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        dirs.sort();
        assert_eq!(dirs, ["_README.md", "period=1970-04-11"]);
        let csv = fs::read_to_string(options.out_dir.join("period=1970-04-11/part-0.csv")).unwrap();
        assert_eq!(csv.lines().count(), d + 1, "a header and a row per bucket");
        assert!(csv.contains(",\"a,\"\"b\"\"\","), "{csv}");

        // A second run is refused, changes nothing, and goes through with force.
        let again = run(&options);
        assert!(
            matches!(again, Err(CollectorError::Refused(_))),
            "{again:?}"
        );
        let forced = ExportOptions {
            force: true,
            ..options.clone()
        };
        run(&forced).unwrap();

        // Raising min_devices withholds the remaining cell; a forced export then removes
        // the partition an earlier run wrote, rather than leave rows the policy now withholds.
        let stricter = ExportOptions {
            min_devices: 50,
            ..forced.clone()
        };
        let summary = run(&stricter).unwrap();
        assert_eq!((summary.rows, summary.withheld_cells), (0, 2));
        assert!(!options.out_dir.join("period=1970-04-11").exists());
        run(&forced).unwrap();

        // Another format in the same tree is refused even with force.
        let jsonl = ExportOptions {
            format: Format::Jsonl,
            ..forced.clone()
        };
        let mixed = run(&jsonl);
        assert!(
            matches!(mixed, Err(CollectorError::Refused(_))),
            "{mixed:?}"
        );

        // A data dictionary name that holds someone else's file is not clobbered.
        let foreign = tempfile::tempdir().unwrap();
        fs::write(foreign.path().join(README_NAME), "my notes").unwrap();
        let theirs = ExportOptions {
            out_dir: foreign.path().to_owned(),
            ..options.clone()
        };
        let refused = export_cells(cells, Vec::new(), &catalogs, &theirs, &mut |_, _| {});
        assert!(matches!(refused, Err(CollectorError::Refused(_))));
        assert_eq!(
            fs::read_to_string(foreign.path().join(README_NAME)).unwrap(),
            "my notes"
        );
    }

    #[test]
    fn schema_parses_and_names_every_column() {
        let schema = parse_message_type(&parquet_schema()).unwrap();
        let names: Vec<&str> = schema.get_fields().iter().map(|f| f.name()).collect();
        let expected: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(names, expected);
    }
}
