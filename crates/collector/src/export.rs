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
use rusqlite::Connection;

use crate::CollectorError;
use crate::cells::{CellKey, CellState};
use crate::estimate::{EstimateRow, LEVEL, civil_from_days, estimate_cells};
use crate::store;
use crate::validate::Catalogs;

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

/// (year, month, day) to days since 1970-01-01 (Howard Hinnant's `days_from_civil`,
/// the inverse of [`civil_from_days`]).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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

/// Exports every stored cell in the options' period range: reads the cells from
/// the database, then does what [`export_cells`] does.
pub fn export(
    conn: &Connection,
    catalogs: &Catalogs,
    options: &ExportOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ExportSummary, CollectorError> {
    check_range(options)?;
    let cells = store::all_cells(conn, options.from, options.to)?;
    export_cells(cells, catalogs, options, progress)
}

/// Estimates the cells, withholds those below `min_devices`, and writes one part
/// file per period plus the data dictionary. `progress(done, total)` is called
/// after each file.
///
/// Refuses (with [`CollectorError::Refused`], before writing anything) to replace
/// existing part files unless `force` is set, and to write into a tree that holds
/// part files of another format, which would make the tree unreadable as one dataset.
pub fn export_cells(
    cells: Vec<(CellKey, CellState)>,
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
        let (rows, withheld) = estimate_cells(
            &group,
            catalogs,
            options.period_seconds,
            options.min_devices,
        )?;
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
            let bytes = match options.format {
                Format::Parquet => parquet_bytes(&rows)?,
                Format::Csv => csv_bytes(&rows),
                Format::Jsonl => jsonl_bytes(&rows),
            };
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

/// A cell of one row in one column.
enum Value<'a> {
    Str(&'a str),
    I32(i32),
    I64(i64),
    F64(f64),
}

/// The physical type of a column, shared by every format.
#[derive(Clone, Copy)]
enum Type {
    Str,
    I32,
    I64,
    F64,
}

impl Type {
    /// The Parquet declaration (physical type and logical annotation).
    fn parquet(self) -> &'static str {
        match self {
            Type::Str => "BYTE_ARRAY",
            Type::I32 => "INT32",
            Type::I64 => "INT64",
            Type::F64 => "DOUBLE",
        }
    }

    /// The type name Arrow (pyarrow, Polars, DuckDB) reports when reading the Parquet file.
    fn arrow(self) -> &'static str {
        match self {
            Type::Str => "string",
            Type::I32 => "int32",
            Type::I64 => "int64",
            Type::F64 => "double",
        }
    }
}

/// One column of the dataset: its name, type, unit and meaning (for the data
/// dictionary), and how to read it from a row. The single source of truth for
/// all three formats and the dictionary, so they cannot disagree.
struct Column {
    name: &'static str,
    ty: Type,
    unit: &'static str,
    meaning: &'static str,
    get: fn(&EstimateRow) -> Value<'_>,
}

const COLUMNS: &[Column] = &[
    Column {
        name: "metric",
        ty: Type::Str,
        unit: "",
        meaning: "Metric name from the catalog (see the metrics table below).",
        get: |r| Value::Str(&r.metric),
    },
    Column {
        name: "kind",
        ty: Type::Str,
        unit: "",
        meaning: "`count` (one row per cell: the mean), `ratio` or `categorical` (one row per bucket: a distribution).",
        get: |r| Value::Str(&r.kind),
    },
    Column {
        name: "period_id",
        ty: Type::I64,
        unit: "periods",
        meaning: "Period number: seconds since 1970-01-01 UTC divided by the period length; for daily periods, days since 1970-01-01. (The partition column `period` holds its start date; the file keeps the number under another name because readers refuse a file column named like the partition key.)",
        get: |r| Value::I64(i64::from(r.period)),
    },
    Column {
        name: "period_start",
        ty: Type::Str,
        unit: "UTC",
        meaning: "Start of the period: `YYYY-MM-DD` for daily periods, RFC 3339 (`YYYY-MM-DDTHH:MM:SSZ`) otherwise. Equal to the partition value, and present in the file so a single part file stands on its own.",
        get: |r| Value::Str(&r.period_start),
    },
    Column {
        name: "cohort",
        ty: Type::Str,
        unit: "",
        meaning: "Cohort of the reporting devices (set when their tokens were created, e.g. a team). Estimates are never pooled across cohorts.",
        get: |r| Value::Str(&r.cohort),
    },
    Column {
        name: "bucket",
        ty: Type::Str,
        unit: "",
        meaning: "For `ratio` and `categorical` metrics the bucket or category label (bucket 0 is `no typing`, `no input` or `none`: the value was undefined that day); `mean` for `count` metrics.",
        get: |r| Value::Str(&r.bucket),
    },
    Column {
        name: "bucket_index",
        ty: Type::I32,
        unit: "",
        meaning: "Position of the bucket in the metric's domain, 0-based; -1 for a mean.",
        get: |r| Value::I32(r.bucket_index),
    },
    Column {
        name: "estimate",
        ty: Type::F64,
        unit: "fraction of devices (buckets) or metric unit (means)",
        meaning: "Unbiased estimate: the share of the cell's devices whose value fell in the bucket, or the mean over the cell's devices of the metric clipped to its range. Unbiased means it is right on average, so it is what to aggregate, average or regress on; the noise that protects each device makes single values wander, so a frequency can be negative or above 1 and a mean can leave the metric's range.",
        get: |r| Value::F64(r.estimate),
    },
    Column {
        name: "std_error",
        ty: Type::F64,
        unit: "as estimate",
        meaning: "Standard error of `estimate`, from the mechanism's known noise and the observed reports.",
        get: |r| Value::F64(r.std_error),
    },
    Column {
        name: "ci_low",
        ty: Type::F64,
        unit: "as estimate",
        meaning: "Lower end of the 95% confidence interval of `estimate` (normal approximation).",
        get: |r| Value::F64(r.ci_low),
    },
    Column {
        name: "ci_high",
        ty: Type::F64,
        unit: "as estimate",
        meaning: "Upper end of the 95% confidence interval of `estimate`.",
        get: |r| Value::F64(r.ci_high),
    },
    Column {
        name: "post_processed",
        ty: Type::F64,
        unit: "as estimate",
        meaning: "A plausible version of `estimate` for display: a distribution's buckets projected onto the probability simplex (Norm-Sub: never negative, summing to 1 over the cell's buckets), a mean clipped to the metric's range. It is biased; use it for charts and tables, `estimate` for statistics. Post-processing costs no privacy.",
        get: |r| Value::F64(r.post_processed),
    },
    Column {
        name: "reports",
        ty: Type::I64,
        unit: "devices",
        meaning: "Reports in the cell, each from a distinct device (a device reports a metric at most once per period).",
        get: |r| Value::I64(i64::try_from(r.reports).unwrap_or(i64::MAX)),
    },
    Column {
        name: "epsilon",
        ty: Type::F64,
        unit: "log likelihood ratio",
        meaning: "Local differential privacy parameter of every report in the cell. Each device noised its own value before sending it, so that no output is more than e^epsilon times likelier under one true value than under any other: whatever anyone does with this dataset, it reveals at most that much about any one device's value. Smaller is more private and noisier. Cells of different epsilons are never mixed.",
        get: |r| Value::F64(r.epsilon),
    },
    Column {
        name: "mechanism",
        ty: Type::Str,
        unit: "",
        meaning: "The LDP mechanism the devices used (frequency oracles: grr, sue, oue, olh, hr; numeric: laplace, duchi, piecewise, hybrid, onebit).",
        get: |r| Value::Str(&r.mechanism),
    },
    Column {
        name: "catalog_hash",
        ty: Type::Str,
        unit: "hex",
        meaning: "First 16 bytes (32 hex digits) of the SHA-256 of the metric catalog's canonical description: every metric's name, range or buckets, mechanism and epsilon share. Rows with the same hash were measured and noised identically; a new catalog gets a new hash, so never compare across hashes without checking that the metric's definition is the same.",
        get: |r| Value::Str(&r.catalog_hash),
    },
];

/// The Parquet schema of a part file, in Parquet's message syntax.
fn parquet_schema() -> String {
    let mut s = String::from("message hush_estimates {\n");
    for c in COLUMNS {
        let logical = if matches!(c.ty, Type::Str) {
            " (STRING)"
        } else {
            ""
        };
        let _ = writeln!(s, "  REQUIRED {} {}{logical};", c.ty.parquet(), c.name);
    }
    s.push('}');
    s
}

fn parquet_bytes(rows: &[EstimateRow]) -> Result<Vec<u8>, CollectorError> {
    let err = |e: parquet::errors::ParquetError| CollectorError::Internal(format!("parquet: {e}"));
    let schema = Arc::new(parse_message_type(&parquet_schema()).map_err(err)?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("hush {}", env!("CARGO_PKG_VERSION")))
            .build(),
    );
    let mut out = Vec::new();
    let mut writer = SerializedFileWriter::new(&mut out, schema, props).map_err(err)?;
    let mut group = writer.next_row_group().map_err(err)?;
    let mut columns = COLUMNS.iter();
    while let Some(mut col) = group.next_column().map_err(err)? {
        let c = columns
            .next()
            .ok_or_else(|| CollectorError::Internal("parquet schema has extra columns".into()))?;
        let values = rows.iter().map(|r| (c.get)(r));
        match c.ty {
            Type::Str => {
                let v: Vec<ByteArray> = values
                    .map(|v| match v {
                        Value::Str(s) => ByteArray::from(s),
                        _ => ByteArray::from(""),
                    })
                    .collect();
                col.typed::<ByteArrayType>()
                    .write_batch(&v, None, None)
                    .map_err(err)?;
            }
            Type::I32 => {
                let v: Vec<i32> = values
                    .map(|v| if let Value::I32(x) = v { x } else { 0 })
                    .collect();
                col.typed::<Int32Type>()
                    .write_batch(&v, None, None)
                    .map_err(err)?;
            }
            Type::I64 => {
                let v: Vec<i64> = values
                    .map(|v| if let Value::I64(x) = v { x } else { 0 })
                    .collect();
                col.typed::<Int64Type>()
                    .write_batch(&v, None, None)
                    .map_err(err)?;
            }
            Type::F64 => {
                let v: Vec<f64> = values
                    .map(|v| if let Value::F64(x) = v { x } else { f64::NAN })
                    .collect();
                col.typed::<DoubleType>()
                    .write_batch(&v, None, None)
                    .map_err(err)?;
            }
        }
        col.close().map_err(err)?;
    }
    group.close().map_err(err)?;
    writer.close().map_err(err)?;
    Ok(out)
}

/// A number as JSON writes it (shortest text that reads back to the same f64);
/// `None` for NaN and infinities, which JSON cannot hold.
fn number(x: f64) -> Option<String> {
    x.is_finite()
        .then(|| serde_json::Number::from_f64(x).map(|n| n.to_string()))
        .flatten()
}

/// RFC 4180: a field with a comma, quote, CR or LF is quoted, quotes doubled.
fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

fn csv_bytes(rows: &[EstimateRow]) -> Vec<u8> {
    let mut out = String::new();
    let header: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
    out.push_str(&header.join(","));
    out.push('\n');
    for r in rows {
        for (i, c) in COLUMNS.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match (c.get)(r) {
                Value::Str(s) => csv_field(&mut out, s),
                Value::I32(x) => {
                    let _ = write!(out, "{x}");
                }
                Value::I64(x) => {
                    let _ = write!(out, "{x}");
                }
                // A non-finite number is an empty (null) field.
                Value::F64(x) => out.push_str(&number(x).unwrap_or_default()),
            }
        }
        out.push('\n');
    }
    out.into_bytes()
}

fn jsonl_bytes(rows: &[EstimateRow]) -> Vec<u8> {
    let mut out = String::new();
    for r in rows {
        out.push('{');
        for (i, c) in COLUMNS.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            // Column names are plain identifiers; values go through serde_json for escaping.
            let _ = write!(out, "\"{}\":", c.name);
            match (c.get)(r) {
                Value::Str(s) => out.push_str(&serde_json::Value::from(s).to_string()),
                Value::I32(x) => {
                    let _ = write!(out, "{x}");
                }
                Value::I64(x) => {
                    let _ = write!(out, "{x}");
                }
                Value::F64(x) => out.push_str(&number(x).unwrap_or_else(|| "null".into())),
            }
        }
        out.push_str("}\n");
    }
    out.into_bytes()
}

/// Escapes `|` so free text cannot break a Markdown table row.
fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The data dictionary: the layout, every column, the metrics, what was withheld.
fn data_dictionary(
    options: &ExportOptions,
    summary: &ExportSummary,
    hashes: &BTreeSet<String>,
    catalogs: &Catalogs,
) -> String {
    let ext = options.format.name();
    let mut s = String::new();
    let _ = writeln!(s, "{README_TITLE}\n");
    let _ = writeln!(
        s,
        "Population estimates released by a Hush collector, written by `hush collector export` \
         (hush {}). Every number here was computed from reports that each device noised on \
         its own before sending (local differential privacy); no raw measurement of any \
         device ever reached the collector.\n",
        env!("CARGO_PKG_VERSION")
    );

    s.push_str("## This export\n\n");
    let range = |p: Option<u32>, open: &str| {
        p.map_or(open.to_owned(), |p| {
            format!(
                "{} (period {p})",
                crate::estimate::period_start(p, options.period_seconds)
            )
        })
    };
    let _ = writeln!(s, "| setting | value |\n| --- | --- |");
    let _ = writeln!(s, "| format | {ext} |");
    let _ = writeln!(
        s,
        "| periods requested | {} to {} |",
        range(options.from, "the first"),
        range(options.to, "the last")
    );
    let _ = writeln!(s, "| period length | {} s |", options.period_seconds);
    let _ = writeln!(s, "| confidence level | {} |", LEVEL);
    let _ = writeln!(s, "| min_devices | {} |", options.min_devices.max(2));
    let _ = writeln!(s, "| rows | {} |", summary.rows);
    let _ = writeln!(s, "| cells released | {} |", summary.released_cells);
    let _ = writeln!(s, "| cells withheld | {} |\n", summary.withheld_cells);
    let _ = writeln!(
        s,
        "A *cell* is one (metric, period, cohort, epsilon, catalog): the reports it holds \
         give one row per bucket, or one row for a mean. A cell with fewer than \
         `min_devices` = {} reports (distinct devices) is **withheld**: none of its rows \
         is written, because an estimate from a handful of devices is mostly noise and \
         says more about those few people than a population statistic should. This export \
         withheld {} of {} cells; the table below lists them per period. A period whose \
         cells were all withheld has no directory.\n",
        options.min_devices.max(2),
        summary.withheld_cells,
        summary.withheld_cells + summary.released_cells
    );
    let _ = writeln!(
        s,
        "| period | file | rows | cells released | cells withheld |\n| --- | --- | --- | --- | --- |"
    );
    for p in &summary.partitions {
        let file = p
            .file
            .as_ref()
            .and_then(|f| f.strip_prefix(&options.out_dir).ok())
            .map_or("(none)".to_owned(), |f| format!("`{}`", f.display()));
        let _ = writeln!(
            s,
            "| {} | {file} | {} | {} | {} |",
            p.period_start, p.rows, p.released_cells, p.withheld_cells
        );
    }
    s.push('\n');

    s.push_str("## Layout\n\n");
    let _ = writeln!(
        s,
        "One Hive-style partition per period: `period=<start>/part-0.{ext}`, where `<start>` \
         is the period's first day (`YYYY-MM-DD`), or for periods shorter than a day its \
         start time with `:` written `%3A`. The partition key `period` becomes a column \
         when the tree is read as a dataset; the files themselves hold the columns below. \
         Files are replaced whole (written under a hidden `.` name, then renamed), so a \
         reader never sees half of one. This file is named `_README.md` because dataset \
         readers skip names starting with `_`; it describes the most recent export into \
         this directory, and partitions outside its range may come from earlier runs.\n"
    );
    match options.format {
        Format::Parquet => s.push_str(
            "Parquet, Snappy-compressed, one row group per file, every column required (no nulls).\n\n\
             ```python\n\
             import pyarrow.dataset as ds\n\
             table = ds.dataset(\"EXPORT_DIR\", format=\"parquet\", partitioning=\"hive\").to_table()\n\
             ```\n\n\
             ```sql\n\
             -- DuckDB\n\
             SELECT * FROM read_parquet('EXPORT_DIR/*/*.parquet', hive_partitioning = true);\n\
             ```\n\n\
             ```python\n\
             import polars as pl\n\
             df = pl.scan_parquet(\"EXPORT_DIR/*/*.parquet\", hive_partitioning=True).collect()\n\
             ```\n\n\
             Spark: `spark.read.parquet(\"EXPORT_DIR\")` discovers the partitions itself.\n\n",
        ),
        Format::Csv => s.push_str(
            "CSV (RFC 4180): UTF-8, a header row, `,` separators, LF line ends; a field holding \
             a comma, a quote or a line break is quoted and its quotes doubled. Numbers are \
             written in their shortest exact form (`1e-7` style for very small ones); an \
             empty numeric field is a value that was not finite.\n\n\
             ```sql\n\
             -- DuckDB\n\
             SELECT * FROM read_csv('EXPORT_DIR/*/*.csv', hive_partitioning = true);\n\
             ```\n\n",
        ),
        Format::Jsonl => s.push_str(
            "JSON Lines: one JSON object per line, UTF-8, keys in the column order below; a \
             number that was not finite is `null`.\n\n\
             ```sql\n\
             -- DuckDB\n\
             SELECT * FROM read_json('EXPORT_DIR/*/*.jsonl', hive_partitioning = true);\n\
             ```\n\n",
        ),
    }

    s.push_str("## Columns\n\n");
    let _ = writeln!(
        s,
        "| column | type | unit | meaning |\n| --- | --- | --- | --- |\n\
         | period (partition) | string | UTC | The partition value: the period's start, as in `period_start` (pyarrow reads it as a string; DuckDB and Spark infer a date for daily periods). |"
    );
    for c in COLUMNS {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            c.name,
            c.ty.arrow(),
            md(c.unit),
            md(c.meaning)
        );
    }
    s.push('\n');
    s.push_str(
        "Types are as Arrow-based readers (pyarrow, Polars, DuckDB) report them for Parquet. \
         Reading the numbers: for a distribution, the rows of one cell (same metric, period, \
         cohort, epsilon and catalog_hash) share `reports`; their `estimate` values sum to \
         about 1 and their `post_processed` values to exactly 1 (up to rounding). To combine \
         cells (say two cohorts), weight each `estimate` by its share of the `reports`; \
         the combined variance is the sum of (weight × `std_error`)², because the cells' \
         noises are independent.\n\n",
    );

    s.push_str("## Privacy\n\n");
    s.push_str(
        "`epsilon` bounds what the reports of one device for one metric in one period \
         reveal about that device's true value, against anyone holding this dataset and \
         any other information. Across metrics and periods the bounds add up (basic \
         composition): a device's agent never spends more than its configured budget per \
         period (epsilon 2 per day by default) over all the metrics it reports. The noise \
         was drawn on the device from a cryptographic generator and cannot be removed from \
         the released numbers; averaging many cells reduces it, as it should, without \
         weakening anyone's bound. Withholding small cells and post-processing are not \
         privacy mechanisms; they only keep the release useful and unsurprising.\n\n",
    );

    s.push_str("## Metrics\n\n");
    if hashes.is_empty() {
        s.push_str("No rows were released, so no metric appears in this export.\n");
    }
    for hash in hashes {
        let Some(catalog) = catalogs
            .all()
            .iter()
            .find(|c| c.hash().to_string() == *hash)
        else {
            continue;
        };
        let _ = writeln!(
            s,
            "Catalog `{hash}` (version {}; each report carries {} metric(s), so a cell holds \
             about 1/{} of the devices that reported that period):\n",
            catalog.version(),
            catalog.metrics_per_report(),
            (catalog.metrics().len() / usize::from(catalog.metrics_per_report()).max(1)).max(1)
        );
        let _ = writeln!(
            s,
            "| metric | kind | unit | encoding | meaning |\n| --- | --- | --- | --- | --- |"
        );
        for m in catalog.metrics() {
            let encoding = match &m.encoding {
                Encoding::Numeric { mechanism, lo, hi } => {
                    format!("{mechanism}, value clipped to [{lo}, {hi}]; rows are means")
                }
                Encoding::Buckets {
                    mechanism, labels, ..
                }
                | Encoding::Categories { mechanism, labels } => {
                    format!("{mechanism}, buckets: {}", labels.join("; "))
                }
            };
            let unit = match (m.kind, m.unit) {
                (MetricKind::Count, u) => u.to_owned(),
                (_, "") => "fraction of devices".to_owned(),
                (_, u) => format!("fraction of devices (buckets in {u})"),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                m.name,
                m.kind.name(),
                md(&unit),
                md(&encoding),
                md(m.description)
            );
        }
        s.push('\n');
    }
    s
}

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
        };
        let cell = |n: u64| {
            CellState::Frequency(hush_stats::FrequencyAggregate::from_counts(
                n,
                vec![n / 2; 9],
            ))
        };
        let cells = vec![(key(100), cell(40)), (key(101), cell(3))];
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
        let summary = export_cells(cells.clone(), &catalogs, &options, &mut |_, _| {}).unwrap();
        assert_eq!(
            (summary.rows, summary.released_cells, summary.withheld_cells),
            (9, 1, 1)
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
        assert_eq!(csv.lines().count(), 10);
        assert!(csv.contains(",\"a,\"\"b\"\"\","), "{csv}");

        // A second run is refused, changes nothing, and goes through with force.
        let again = export_cells(cells.clone(), &catalogs, &options, &mut |_, _| {});
        assert!(
            matches!(again, Err(CollectorError::Refused(_))),
            "{again:?}"
        );
        let forced = ExportOptions {
            force: true,
            ..options.clone()
        };
        export_cells(cells.clone(), &catalogs, &forced, &mut |_, _| {}).unwrap();

        // Raising min_devices withholds the remaining cell; a forced export then removes
        // the partition an earlier run wrote, rather than leave rows the policy now withholds.
        let stricter = ExportOptions {
            min_devices: 50,
            ..forced.clone()
        };
        let summary = export_cells(cells.clone(), &catalogs, &stricter, &mut |_, _| {}).unwrap();
        assert_eq!((summary.rows, summary.withheld_cells), (0, 2));
        assert!(!options.out_dir.join("period=1970-04-11").exists());
        export_cells(cells.clone(), &catalogs, &forced, &mut |_, _| {}).unwrap();

        // Another format in the same tree is refused even with force.
        let jsonl = ExportOptions {
            format: Format::Jsonl,
            ..forced.clone()
        };
        let mixed = export_cells(cells.clone(), &catalogs, &jsonl, &mut |_, _| {});
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
        let refused = export_cells(cells, &catalogs, &theirs, &mut |_, _| {});
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
