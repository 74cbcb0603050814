//! `Report`, the only thing that leaves a device, and its versioned bincode codec.
//!
//! Wire format, version 2: one version byte (`2`), then the bincode 2 encoding
//! of the value with the *standard* configuration (little endian, variable-length
//! integers: reports are mostly small integers, and varints keep a day's
//! upload under a few hundred bytes). A batch is the version byte and a bincode
//! `Vec<Report>`. Decoding always runs with a byte limit, so a hostile length
//! prefix cannot make the decoder allocate more than the limit, rejects
//! trailing bytes, and validates every value's shape. Golden-bytes tests pin
//! the format. Version 2 added each metric's `epsilon_perm` (reports became
//! two-layer); version 1 reports are refused with [`CodecError::Version`].

use serde::{Deserialize, Serialize};

use hush_ldp::{FrequencyOutput, GridPoint, MAX_DOMAIN, MAX_EPSILON, OlhOutput, PackedBits};

use crate::CatalogHash;

/// The wire format version this build writes and reads.
pub const WIRE_VERSION: u8 = 2;

/// The most bytes one encoded report may take.
pub const MAX_REPORT_BYTES: usize = 64 * 1024;

/// The most bytes one encoded batch may take.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// The most reports in one batch.
pub const MAX_BATCH_REPORTS: usize = 1000;

/// The most metrics one report may carry.
pub const MAX_METRICS_PER_REPORT: usize = 64;

/// The longest agent version string.
pub const MAX_AGENT_VERSION_LEN: usize = 32;

/// A report's identifier: the period (big-endian, so ids sort by period and
/// insert in order) followed by 12 random bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReportId(pub [u8; 16]);

impl ReportId {
    /// The period encoded in the id's first four bytes.
    pub fn period(&self) -> u32 {
        u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }
}

impl std::fmt::Display for ReportId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// One metric's privatized value, as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Privatized {
    /// A frequency oracle's single reported index (GRR value, HR index).
    Value(u32),
    /// A unary encoding's bits.
    Bits {
        /// Number of bits.
        len: u32,
        /// The bits, 64 per word.
        words: Vec<u64>,
    },
    /// An OLH report.
    Hashed {
        /// The hash seed.
        seed: u64,
        /// The randomized hash value.
        value: u32,
    },
    /// A numeric mechanism's grid point.
    Grid {
        /// Which affine grid.
        branch: u8,
        /// The position on it.
        index: i64,
    },
}

impl Privatized {
    /// Converts a frequency oracle's output.
    pub fn from_frequency(out: FrequencyOutput) -> Self {
        match out {
            FrequencyOutput::Value(v) => Privatized::Value(v),
            FrequencyOutput::Bits(b) => Privatized::Bits {
                len: b.len(),
                words: b.words().to_vec(),
            },
            FrequencyOutput::Hashed(h) => Privatized::Hashed {
                seed: h.seed,
                value: h.value,
            },
        }
    }

    /// Converts a numeric mechanism's output.
    pub fn from_grid(p: GridPoint) -> Self {
        Privatized::Grid {
            branch: p.branch,
            index: p.index,
        }
    }

    /// The frequency-oracle output this value encodes, if it is one (and well formed).
    pub fn as_frequency(&self) -> Option<FrequencyOutput> {
        match self {
            Privatized::Value(v) => Some(FrequencyOutput::Value(*v)),
            Privatized::Bits { len, words } => {
                PackedBits::from_words(words.clone(), *len).map(FrequencyOutput::Bits)
            }
            Privatized::Hashed { seed, value } => Some(FrequencyOutput::Hashed(OlhOutput {
                seed: *seed,
                value: *value,
            })),
            Privatized::Grid { .. } => None,
        }
    }

    /// The grid point this value encodes, if it is one.
    pub fn as_grid(&self) -> Option<GridPoint> {
        match self {
            Privatized::Grid { branch, index } => Some(GridPoint {
                branch: *branch,
                index: *index,
            }),
            _ => None,
        }
    }

    fn well_formed(&self) -> bool {
        match self {
            Privatized::Bits { len, words } => {
                *len <= MAX_DOMAIN && PackedBits::from_words(words.clone(), *len).is_some()
            }
            Privatized::Grid { branch, .. } => *branch <= 1,
            Privatized::Value(_) | Privatized::Hashed { .. } => true,
        }
    }
}

/// One metric in a report: which, at what epsilons, and its privatized value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricReport {
    metric: u16,
    epsilon: f64,
    epsilon_perm: f64,
    value: Privatized,
}

impl MetricReport {
    pub(crate) fn new(metric: u16, epsilon: f64, epsilon_perm: f64, value: Privatized) -> Self {
        MetricReport {
            metric,
            epsilon,
            epsilon_perm,
            value,
        }
    }

    /// Index of the metric in the report's catalog.
    pub fn metric(&self) -> u16 {
        self.metric
    }

    /// The per-report epsilon (`epsilon_1`) its mechanism was built for.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// The permanent epsilon (`epsilon_perm`) its mechanism was built for.
    pub fn epsilon_perm(&self) -> f64 {
        self.epsilon_perm
    }

    /// The privatized value.
    pub fn value(&self) -> &Privatized {
        &self.value
    }
}

/// A privatized report: everything a device ever sends.
///
/// Its fields are private and its only constructor is the privatizer
/// ([`crate::privatize`]), which applies an epsilon-LDP mechanism to every
/// value; decoding bytes that were such a report is the only other way to get
/// one. Compile-fail tests prove a `Report` cannot be built by hand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    catalog: CatalogHash,
    catalog_version: u16,
    agent_version: String,
    period: u32,
    period_seconds: u32,
    id: ReportId,
    epsilon: f64,
    metrics: Vec<MetricReport>,
}

/// Why bytes could not be decoded into reports.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    /// Nothing to decode.
    #[error("empty body: expected a version byte")]
    Empty,
    /// A version this build does not speak.
    #[error("unknown wire version {found}; this build reads version {WIRE_VERSION}")]
    Version {
        /// The version byte found.
        found: u8,
    },
    /// Longer than the limit.
    #[error("{len} bytes exceed the limit of {limit}")]
    TooLarge {
        /// Bytes given.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// bincode refused the bytes (truncated, wrong shape, or a length past the limit).
    #[error("malformed report: {0}")]
    Malformed(String),
    /// Bytes left over after the value.
    #[error("{0} trailing bytes after the report")]
    Trailing(usize),
    /// Decoded, but a value is out of range.
    #[error("invalid report: {0}")]
    Invalid(&'static str),
}

impl Report {
    /// Assembles a report; crate-private so the privatizer is the only producer.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn assemble(
        catalog: CatalogHash,
        catalog_version: u16,
        agent_version: String,
        period: u32,
        period_seconds: u32,
        id: ReportId,
        epsilon: f64,
        metrics: Vec<MetricReport>,
    ) -> Self {
        Report {
            catalog,
            catalog_version,
            agent_version,
            period,
            period_seconds,
            id,
            epsilon,
            metrics,
        }
    }

    /// The catalog the report was made with.
    pub fn catalog_hash(&self) -> CatalogHash {
        self.catalog
    }

    /// The catalog's version.
    pub fn catalog_version(&self) -> u16 {
        self.catalog_version
    }

    /// The agent that made it.
    pub fn agent_version(&self) -> &str {
        &self.agent_version
    }

    /// The period it covers: `period * period_seconds` seconds after the Unix epoch.
    pub fn period(&self) -> u32 {
        self.period
    }

    /// The period length in seconds (86400 for days).
    pub fn period_seconds(&self) -> u32 {
        self.period_seconds
    }

    /// Its identifier.
    pub fn id(&self) -> ReportId {
        self.id
    }

    /// The total per-report epsilon of its metrics (basic composition).
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// The privatized metrics.
    pub fn metrics(&self) -> &[MetricReport] {
        &self.metrics
    }

    /// Encodes one report: version byte, then bincode.
    pub fn encode(&self) -> Vec<u8> {
        encode_envelope(self)
    }

    /// Decodes and validates one report.
    pub fn decode(bytes: &[u8]) -> Result<Report, CodecError> {
        let report: Report = decode_envelope::<_, MAX_REPORT_BYTES>(bytes)?;
        report.validate()?;
        Ok(report)
    }

    /// Encodes a batch of reports for one upload.
    pub fn encode_batch(reports: &[Report]) -> Vec<u8> {
        encode_envelope(reports)
    }

    /// Decodes and validates a batch; at most [`MAX_BATCH_REPORTS`] reports in
    /// at most [`MAX_BATCH_BYTES`] bytes.
    pub fn decode_batch(bytes: &[u8]) -> Result<Vec<Report>, CodecError> {
        let reports: Vec<Report> = decode_envelope::<_, MAX_BATCH_BYTES>(bytes)?;
        if reports.is_empty() || reports.len() > MAX_BATCH_REPORTS {
            return Err(CodecError::Invalid("a batch holds 1 to 1000 reports"));
        }
        for r in &reports {
            r.validate()?;
        }
        Ok(reports)
    }

    /// Structural checks that need no catalog.
    fn validate(&self) -> Result<(), CodecError> {
        let eps_ok = |e: f64| e.is_finite() && e > 0.0 && e <= MAX_EPSILON;
        if self.agent_version.len() > MAX_AGENT_VERSION_LEN {
            return Err(CodecError::Invalid("agent version longer than 32 bytes"));
        }
        if self.metrics.is_empty() || self.metrics.len() > MAX_METRICS_PER_REPORT {
            return Err(CodecError::Invalid("a report carries 1 to 64 metrics"));
        }
        if self.period_seconds == 0 {
            return Err(CodecError::Invalid("period length is zero"));
        }
        if self.id.period() != self.period {
            return Err(CodecError::Invalid(
                "report id does not start with its period",
            ));
        }
        if !(self.epsilon.is_finite()
            && self.epsilon > 0.0
            && self.epsilon <= MAX_EPSILON * MAX_METRICS_PER_REPORT as f64)
        {
            return Err(CodecError::Invalid("report epsilon out of range"));
        }
        for m in &self.metrics {
            if !eps_ok(m.epsilon) || !eps_ok(m.epsilon_perm) || m.epsilon > m.epsilon_perm {
                return Err(CodecError::Invalid("metric epsilons out of range"));
            }
            if !m.value.well_formed() {
                return Err(CodecError::Invalid("malformed privatized value"));
            }
        }
        let total: f64 = self.metrics.iter().map(|m| m.epsilon).sum();
        if (total - self.epsilon).abs() > 1e-9 * total.max(1.0) {
            return Err(CodecError::Invalid(
                "report epsilon is not the sum of its metrics'",
            ));
        }
        Ok(())
    }
}

/// The version byte, then the value in bincode's standard configuration.
fn encode_envelope<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Room for one report (about 80 bytes) up front: grown field by field
    // from one byte, the collector's writer spent 3% of its time in
    // reallocations storing each report's encoding.
    let mut out = Appender(Vec::with_capacity(128));
    out.0.push(WIRE_VERSION);
    match bincode::serde::encode_into_writer(value, &mut out, bincode::config::standard()) {
        Ok(()) => out.0,
        // Writing plain data into a Vec cannot fail.
        Err(e) => panic!("encoding into memory failed: {e}"),
    }
}

/// Appends bincode's output to a vector, without `std::io::Write`'s
/// per-call error plumbing.
struct Appender(Vec<u8>);

impl bincode::enc::write::Writer for Appender {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Checks the envelope, decodes at most `LIMIT` bytes (a length prefix past the
/// limit is refused before anything is allocated), and refuses trailing bytes.
fn decode_envelope<T: serde::de::DeserializeOwned, const LIMIT: usize>(
    bytes: &[u8],
) -> Result<T, CodecError> {
    let body = envelope(bytes, LIMIT)?;
    let config = bincode::config::standard().with_limit::<LIMIT>();
    let (value, used): (T, usize) = bincode::serde::decode_from_slice(body, config)
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Trailing(body.len() - used));
    }
    Ok(value)
}

fn envelope(bytes: &[u8], limit: usize) -> Result<&[u8], CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != WIRE_VERSION {
        return Err(CodecError::Version { found: version });
    }
    if bytes.len() > limit + 1 {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            limit: limit + 1,
        });
    }
    Ok(body)
}
