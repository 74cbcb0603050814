//! The three file formats of an export (Parquet through its column writers, CSV,
//! JSON Lines) from one column table, and the data dictionary generated from it.

use super::*;

/// A cell of one row in one column.
pub(super) enum Value<'a> {
    Str(&'a str),
    I32(i32),
    I64(i64),
    F64(f64),
}

/// The physical type of a column, shared by every format.
#[derive(Clone, Copy)]
pub(super) enum Type {
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
pub(super) struct Column {
    pub(super) name: &'static str,
    ty: Type,
    unit: &'static str,
    meaning: &'static str,
    get: fn(&EstimateRow) -> Value<'_>,
}

pub(super) const COLUMNS: &[Column] = &[
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
        meaning: "`count` (one row per cell: the mean), `ratio` or `categorical` (one row per bucket: a distribution), or `distribution` (a count's spread: one row per doubling bucket, then its median `p50` and 90th percentile `p90`).",
        get: |r| Value::Str(&r.kind),
    },
    Column {
        name: "window",
        ty: Type::Str,
        unit: "",
        meaning: "What the row covers: `day` (the period itself), `week` (Monday to Sunday, in the partition of its Monday) or `month` (in the partition of its first day). Week and month rows pool every report of their days, with standard errors clustered by device (a device's reports on different days share permanent responses, so they are not independent); they are written only for windows wholly closed and inside the export's range.",
        get: |r| Value::Str(&r.window),
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
        meaning: "For `ratio` and `categorical` metrics the bucket or category label (bucket 0 is `no typing`, `no input` or `none`: the value was undefined that day); `mean` for `count` metrics; for `distribution` metrics the bucket label (bucket 0, `no value`, is always empty) or `p50` / `p90` for a quantile.",
        get: |r| Value::Str(&r.bucket),
    },
    Column {
        name: "bucket_index",
        ty: Type::I32,
        unit: "",
        meaning: "Position of the bucket in the metric's domain, 0-based; -1 for a mean or a quantile.",
        get: |r| Value::I32(r.bucket_index),
    },
    Column {
        name: "estimate",
        ty: Type::F64,
        unit: "fraction of devices (buckets) or metric unit (means, quantiles)",
        meaning: "Unbiased estimate: the share of the cell's devices whose value fell in the bucket, or the mean over the cell's devices of the metric clipped to its range. Unbiased means it is right on average, so it is what to aggregate, average or regress on; the noise that protects each device makes single values wander, so a frequency can be negative or above 1 and a mean can leave the metric's range. A quantile is read off the cell's estimated distribution function (made non-decreasing), interpolated inside its bucket by a monotone cubic in the logarithm of the value (Fritsch-Carlson); it is infinite (an empty field in CSV, null in JSON Lines) when it lies above the last bucket edge.",
        get: |r| Value::F64(r.estimate),
    },
    Column {
        name: "std_error",
        ty: Type::F64,
        unit: "as estimate",
        meaning: "Standard error of `estimate`, from the mechanism's known noise and the observed reports; for a quantile, the delta method's (the distribution function's error there over its slope), a guide only: use the interval.",
        get: |r| Value::F64(r.std_error),
    },
    Column {
        name: "ci_low",
        ty: Type::F64,
        unit: "as estimate",
        meaning: "Lower end of the 95% confidence interval of `estimate` (normal approximation). For a quantile, the interval inverts the distribution function's pointwise band, so it is not symmetric around `estimate`.",
        get: |r| Value::F64(r.ci_low),
    },
    Column {
        name: "ci_high",
        ty: Type::F64,
        unit: "as estimate",
        meaning: "Upper end of the 95% confidence interval of `estimate`; infinite (an empty field in CSV, null in JSON Lines) for a quantile whose band does not reach it below the last bucket edge: too few reports to bound it.",
        get: |r| Value::F64(r.ci_high),
    },
    Column {
        name: "post_processed",
        ty: Type::F64,
        unit: "as estimate",
        meaning: "A plausible version of `estimate` for display: a distribution's buckets projected onto the probability simplex (Norm-Sub: never negative, summing to 1 over the cell's buckets), a mean clipped to the metric's range, a quantile as is. It is biased; use it for charts and tables, `estimate` for statistics. Post-processing costs no privacy.",
        get: |r| Value::F64(r.post_processed),
    },
    Column {
        name: "reports",
        ty: Type::I64,
        unit: "reports",
        meaning: "Reports in the cell. For a `day` row each is from a distinct device (a device reports a metric at most once per period); a `week` or `month` row counts every report of its days, several from some devices.",
        get: |r| Value::I64(i64::try_from(r.reports).unwrap_or(i64::MAX)),
    },
    Column {
        name: "epsilon",
        ty: Type::F64,
        unit: "log likelihood ratio",
        meaning: "What one report reveals (epsilon_1): each device noised its value on the device, so that no report is more than e^epsilon times likelier under one true value than under any other. Whatever anyone does with this dataset, one report reveals at most that much about one device's value. Smaller is more private and noisier. Cells of different epsilons are never mixed.",
        get: |r| Value::F64(r.epsilon),
    },
    Column {
        name: "epsilon_perm",
        ty: Type::F64,
        unit: "log likelihood ratio",
        meaning: "What all of one device's reports about one unchanged value reveal together (epsilon_perm): every report is a fresh randomization of one permanent, memoized randomized response of the value, so repeating the value for a year reveals no more than this.",
        get: |r| Value::F64(r.epsilon_perm),
    },
    Column {
        name: "mechanism",
        ty: Type::Str,
        unit: "",
        meaning: "The two-layer LDP mechanism the devices used: l-grr, l-sue, l-oue, l-osue or dbitflip-pm for buckets and categories, l-onebit (1BitMean with alpha-point rounding) for counts.",
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
pub(super) fn parquet_schema() -> String {
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

pub(super) fn parquet_bytes(rows: &[EstimateRow]) -> Result<Vec<u8>, CollectorError> {
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
pub(super) fn number(x: f64) -> Option<String> {
    x.is_finite()
        .then(|| serde_json::Number::from_f64(x).map(|n| n.to_string()))
        .flatten()
}

/// RFC 4180: a field with a comma, quote, CR or LF is quoted, quotes doubled.
pub(super) fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

pub(super) fn csv_bytes(rows: &[EstimateRow]) -> Vec<u8> {
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

pub(super) fn jsonl_bytes(rows: &[EstimateRow]) -> Vec<u8> {
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
pub(super) fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The data dictionary: the layout, every column, the metrics, what was withheld.
pub(super) fn data_dictionary(
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
        "A *cell* is one (metric, period, cohort, epsilons, catalog): the reports it holds \
         give one row per bucket (and a distribution's two quantiles), or one row for a mean. A cell with fewer than \
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
         Reading the numbers: for a distribution, the bucket rows of one cell (same metric, period, \
         cohort, epsilon and catalog_hash) share `reports`; their `estimate` values sum to \
         about 1 and their `post_processed` values to exactly 1 (up to rounding). To combine \
         cells (say two cohorts), weight each `estimate` by its share of the `reports`; \
         the combined variance is the sum of (weight × `std_error`)², because the cells' \
         noises are independent. Quantiles do not combine that way: combine the bucket \
         rows, then read the quantile off the combined distribution.\n\n",
    );

    s.push_str("## Privacy\n\n");
    s.push_str(
        "Every report has two layers. Its value is a fresh randomization of a permanent \
         randomized response that the device drew once for that value and derives again \
         whenever the value recurs. `epsilon` (per report) bounds what one report \
         reveals about the device's true value, against anyone holding this dataset and \
         any other information; `epsilon_perm` bounds what all of a device's reports about \
         one unchanged value reveal together, however many there are. A value that changes \
         costs `epsilon_perm` for each new value, and each device caps its new values per \
         measure and year (the person's agent shows the sum). The noise was drawn on the \
         device and cannot be removed from the released numbers. Because a device's reports \
         of an unchanged value share their permanent response, the noise of one device's \
         days is correlated, and averaging `day` rows (or their intervals) across days \
         does not give an honest interval: use the `week` and `month` rows, which pool the \
         reports themselves with standard errors clustered by device. Withholding small cells and post-processing are not privacy mechanisms; \
         they only keep the release useful and unsurprising.\n\n",
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
