//! Command-line arguments of every `hush` subcommand, with validation that names
//! the argument and its valid range (clap exits with code 2 on a bad value).

use clap::{Args, Parser, Subcommand};
use hush_ldp::{FrequencyKind, MAX_DOMAIN, MAX_EPSILON, NumericKind};
use hush_stats::{Distribution, Population};

/// Hush: locally differentially private interaction metrics.
///
/// Research commands: simulate mechanisms and their estimators, sample raw
/// mechanism outputs, and audit the privacy loss empirically.
#[derive(Debug, Parser)]
#[command(name = "hush", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run many trials of a mechanism and its estimator; compare with the theory.
    #[command(subcommand)]
    Simulate(SimulateCommand),
    /// Print raw perturbed outputs of one input, one per line.
    Sample(SampleArgs),
    /// Empirically lower-bound a mechanism's privacy loss (it must not exceed the claim).
    Audit(AuditArgs),
    /// Time the batch noising kernels against naive Rust and the RNG bound (about 20 s).
    Bench(BenchArgs),
    /// The laptop agent: enroll, see what it measures, run it, pause or forget.
    #[command(subcommand)]
    Agent(crate::agent_cli::AgentCommand),
    /// The collector: receive reports, keep aggregates, release estimates and datasets.
    #[command(subcommand)]
    Collector(CollectorCommand),
    /// The whole pipeline on embedded defaults: a simulated fleet reports to an
    /// in-process collector; estimates are compared with the truth.
    Demo(DemoArgs),
    /// Predict every metric's 95% half-width per day and per working week for a
    /// fleet size, and the fleet a target precision needs (no reports involved).
    Plan(PlanArgs),
}

/// `hush plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Fleet size: laptops reporting every day.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub devices: u64,
    /// What one report reveals (epsilon per report), in (0, 20].
    #[arg(long, default_value_t = 2.0, value_parser = parse_epsilon)]
    pub epsilon: f64,
    /// What all reports about one unchanged value reveal, above --epsilon
    /// [default: twice --epsilon].
    #[arg(long, value_parser = parse_epsilon)]
    pub epsilon_perm: Option<f64>,
    /// Target precision for the fleet-size column: a 95% half-width of this
    /// share of the value, in (0, 1].
    #[arg(long, default_value_t = 0.10, value_parser = parse_share)]
    pub target: f64,
    /// Simulated people whose working weeks stand in for the fleet (the
    /// demo's population, `hush_capture::synthetic`).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(2..=1_000_000))]
    pub people: u64,
    /// Seed of the simulated people.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also print the sampling weights that would give every metric the same
    /// relative precision (what the built-in catalog's weights come from).
    #[arg(long)]
    pub weights: bool,
    /// Print CSV (one row per metric, half-widths as shares of the truth)
    /// instead of the table.
    #[arg(long)]
    pub csv: bool,
}

fn parse_share(s: &str) -> Result<f64, String> {
    let x: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if x > 0.0 && x <= 1.0 {
        Ok(x)
    } else {
        Err(format!("must be in (0, 1], got {x}"))
    }
}

/// `hush demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Simulated laptops.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub devices: u64,
    /// Simulated days, ending yesterday.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=365))]
    pub days: u32,
    /// What one report reveals (epsilon per report), in (0, 20]; the collector asks exactly this.
    #[arg(long, default_value_t = 2.0, value_parser = parse_epsilon)]
    pub epsilon: f64,
    /// What all reports about one unchanged value reveal (epsilon per value), above
    /// --epsilon and at most 20 [default: twice --epsilon].
    #[arg(long, value_parser = parse_epsilon)]
    pub epsilon_perm: Option<f64>,
    /// Seed of the simulated people and of the noise (the demo is reproducible).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output folder for the dataset, the chart and the summary.
    #[arg(long, default_value = "hush-demo")]
    pub out: std::path::PathBuf,
    /// Simulation threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Then keep the collector running on the demo's data, with every
    /// simulated day released, and print its dashboard's address and a
    /// one-time sign-in link; ctrl-c stops it (and deletes the data).
    #[arg(long)]
    pub serve: bool,
    /// With --serve: the address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8600", requires = "serve")]
    pub listen: std::net::SocketAddr,
}

/// Collector subcommands.
#[derive(Debug, Subcommand)]
pub enum CollectorCommand {
    /// Run the HTTP service until ctrl-c or SIGTERM.
    Serve(ServeArgs),
    /// Wait until a running collector is ready (`/readyz` answers 200): for
    /// service managers and deployment scripts. Exits 0 once ready, 1 if not
    /// within --wait.
    Ready(ReadyArgs),
    /// Create or revoke bearer tokens (stored hashed; shown once).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print an example configuration file with every setting explained.
    Config,
    /// Push real reports at a collector on this machine and measure throughput.
    Loadgen(LoadgenArgs),
    /// Write the released estimates as a dataset (Parquet, CSV or JSON Lines), one
    /// `period=YYYY-MM-DD` directory per period, with a data dictionary.
    Export(ExportArgs),
    /// Delete the stored reports of closed periods before a date; the released
    /// estimates stay.
    Prune(PruneArgs),
    /// Manage enrolled devices.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Copy a collector's SQLite database into a new PostgreSQL database
    /// (devices, tokens, range revisions, reports and cells), checked before
    /// it commits; then point `database` at the URL. Stop the collector first.
    Migrate(MigrateArgs),
}

/// `hush collector migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The SQLite database file to copy (left as it is).
    #[arg(long)]
    pub from: std::path::PathBuf,
    /// The PostgreSQL database to copy into, as a `postgres://` URL; it must
    /// hold no collector data yet (its schema is created if missing).
    #[arg(long)]
    pub to: String,
}

/// `hush collector prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The configuration (its database, period length and grace window).
    #[command(flatten)]
    pub config: ConfigArg,
    /// Delete the reports of periods that end by this UTC date YYYY-MM-DD (or
    /// below this raw period id); refused if any of them is still open.
    #[arg(long)]
    pub before: hush_collector::export::PeriodBound,
}

/// `hush collector device`.
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Erase a device: its stored reports, its token, and its contributions to
    /// every aggregate, released ones included (a person's right to be forgotten).
    Erase {
        /// The configuration.
        #[command(flatten)]
        config: ConfigArg,
        /// The device's token, or its id as `hush collector token create` printed it.
        device: String,
    },
    /// Rewrite the SQLite database file so it keeps no copy of deleted rows
    /// (finishes an erasure whose rewrite failed or was interrupted).
    ///
    /// `erase` does this itself once an erasure has committed: the file is
    /// rewritten with the rows it keeps (the transient copy in memory) and
    /// its log emptied. Uploads wait meanwhile and past 10 s get 503 and
    /// retry; a running export holds the log and makes it fail.
    Rewrite {
        /// The configuration.
        #[command(flatten)]
        config: ConfigArg,
    },
}

/// `hush collector export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The configuration (its database, period length and min_devices).
    #[command(flatten)]
    pub config: ConfigArg,
    /// File format: parquet, csv or jsonl.
    #[arg(long, default_value = "parquet")]
    pub format: hush_collector::export::Format,
    /// Output directory (created if missing); gets `period=<start>/part-0.<format>` and a data dictionary, _README.md.
    #[arg(long)]
    pub out: std::path::PathBuf,
    /// First period to export: a UTC date YYYY-MM-DD or a raw period id.
    #[arg(long)]
    pub from: Option<hush_collector::export::PeriodBound>,
    /// Last period to export (inclusive): a UTC date YYYY-MM-DD or a raw period id.
    #[arg(long)]
    pub to: Option<hush_collector::export::PeriodBound>,
    /// Replace part files that already exist (each is replaced whole, never half-written).
    #[arg(long)]
    pub force: bool,
    /// Which rows: `day` (one per period), `week` (Monday to Sunday) and
    /// `month`, comma-separated. Weeks and months pool every report of their
    /// days with standard errors clustered by device, and are written once
    /// wholly closed and inside --from/--to.
    #[arg(long, value_delimiter = ',', default_value = "day,week,month")]
    pub windows: Vec<hush_collector::estimate::Window>,
}

/// Where the collector's configuration comes from.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Configuration file (TOML); defaults apply to anything it leaves out,
    /// and without it everything is default (database in the current directory).
    #[arg(long, short)]
    pub config: Option<std::path::PathBuf>,
}

/// `hush collector serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The configuration.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Listen address, overriding the file (port 0 picks a free port).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Database file, overriding the file.
    #[arg(long)]
    pub database: Option<String>,
    /// How the log on stderr is written: `text` for people, `json` (one
    /// object per line, the event's fields as keys) for a log pipeline.
    #[arg(long, value_enum, default_value_t, env = "HUSH_LOG_FORMAT")]
    pub log_format: crate::logging::LogFormat,
}

/// `hush collector ready`.
#[derive(Debug, Args)]
pub struct ReadyArgs {
    /// The collector's base URL: its `listen` address, or its `metrics_listen` one.
    #[arg(long, default_value = "http://127.0.0.1:8600")]
    pub url: String,
    /// Seconds to keep asking before giving up (0: ask once).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub wait: u64,
}

/// `hush collector token`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a device token (or an admin token with --admin) and print it once.
    Create {
        /// The configuration.
        #[command(flatten)]
        config: ConfigArg,
        /// Cohort of the device (a team or group to split estimates by).
        #[arg(long, default_value = "default")]
        cohort: String,
        /// Create an admin token (reads estimates) instead of a device token.
        #[arg(long)]
        admin: bool,
    },
    /// Revoke a token; it is refused with 401 from then on.
    Revoke {
        /// The configuration.
        #[command(flatten)]
        config: ConfigArg,
        /// The token to revoke.
        token: String,
    },
}

/// `hush collector loadgen`.
#[derive(Debug, Args)]
pub struct LoadgenArgs {
    /// The configuration of the collector under test. Its database receives the
    /// minted device tokens (revoked at the end) and must hold no other devices.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Collector base URL; only loopback addresses are accepted. Repeat it
    /// for several collectors on one PostgreSQL database: requests go to
    /// each in turn, and the CPU figure sums them.
    #[arg(long, default_value = "http://127.0.0.1:8600")]
    pub url: Vec<String>,
    /// Resend a request that got 503 or no answer (to the next --url) for
    /// up to this many seconds, as an agent retries, instead of counting
    /// its reports as failed.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub retry_for: Option<u64>,
    /// Total reports to send.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub reports: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=512))]
    pub concurrency: u64,
    /// Distinct devices [default: the fewest that can send --reports: a device
    /// sends one report per open period, grace_periods + 1 of them].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub devices: Option<u64>,
    /// Reports per upload request (a request carries one device's reports only).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub batch: u64,
    /// Seed of the synthetic measurements and their noise [default: from the
    /// operating system, so every run sends new report ids].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Append the id of every acknowledged report to this file.
    #[arg(long)]
    pub acked: Option<std::path::PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Simulation kinds.
#[derive(Debug, Subcommand)]
pub enum SimulateCommand {
    /// Frequency estimation over a domain 0..D with a frequency oracle.
    Frequency(FrequencyArgs),
    /// Mean estimation on [-1, 1] (onebit: [0, 1]) with a numeric mechanism.
    Mean(MeanArgs),
}

/// Settings shared by the simulations.
#[derive(Debug, Args)]
pub struct TrialArgs {
    /// Privacy parameter epsilon per report, in (0, 20].
    #[arg(long, short, value_parser = parse_epsilon)]
    pub epsilon: f64,
    /// For two-layer mechanisms (l-grr, l-sue, l-oue, l-osue, l-lh, dbitflip-pm,
    /// l-onebit): what all reports about one value reveal, above --epsilon, which is
    /// then what one report reveals [default: twice --epsilon].
    #[arg(long, value_parser = parse_epsilon)]
    pub epsilon_perm: Option<f64>,
    /// Number of simulated users, each sending one report per trial.
    #[arg(long, short = 'n', default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(2..=1_000_000_000))]
    pub users: u64,
    /// Number of independent trials (the variance across trials is what is measured).
    #[arg(long, short, default_value_t = 100, value_parser = clap::value_parser!(u64).range(2..=1_000_000))]
    pub trials: u64,
    /// Seed for every random draw: the same seed gives the same numbers.
    #[arg(long, short, default_value_t = 1)]
    pub seed: u64,
    /// Confidence level of the intervals whose coverage is measured, in (0, 1).
    #[arg(long, default_value_t = 0.95, value_parser = parse_level)]
    pub level: f64,
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threads: Option<u64>,
    /// Print one JSON object instead of a table (and no progress bar).
    #[arg(long)]
    pub json: bool,
}

/// `hush simulate frequency`.
#[derive(Debug, Args)]
pub struct FrequencyArgs {
    /// Frequency oracle: grr, sue, oue, olh, hr, or two-layer l-grr, l-sue, l-oue,
    /// l-osue, l-lh, dbitflip-pm.
    #[arg(long, short, value_parser = parse_frequency_kind)]
    pub mechanism: FrequencyKind,
    /// Domain size D: values are 0..D, D in [2, 1048576].
    #[arg(long, short, value_parser = parse_domain)]
    pub domain: u64,
    /// How the users' values are spread: zipf (exponent 1.1) or uniform.
    #[arg(long, default_value = "zipf", value_parser = parse_distribution)]
    pub distribution: Distribution,
    /// Shared simulation settings.
    #[command(flatten)]
    pub trials: TrialArgs,
}

/// `hush simulate mean`.
#[derive(Debug, Args)]
pub struct MeanArgs {
    /// Numeric mechanism: laplace, duchi, piecewise, hybrid, onebit, or two-layer l-onebit.
    #[arg(long, short, value_parser = parse_numeric_kind)]
    pub mechanism: NumericKind,
    /// The users' values: constant:X, uniform, or beta:A,B (stretched over the range).
    #[arg(long, default_value = "uniform", value_parser = parse_population)]
    pub population: Population,
    /// Shared simulation settings.
    #[command(flatten)]
    pub trials: TrialArgs,
}

/// `hush sample`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Any mechanism: grr, sue, oue, olh, hr, l-grr, l-sue, l-oue, l-osue, l-lh,
    /// dbitflip-pm, laplace, duchi, piecewise, hybrid, onebit, l-onebit.
    #[arg(long, short)]
    pub mechanism: String,
    /// Privacy parameter epsilon (per report, for a two-layer mechanism), in (0, 20].
    #[arg(long, short, value_parser = parse_epsilon)]
    pub epsilon: f64,
    /// For two-layer mechanisms (l-grr, l-sue, l-oue, l-osue, l-lh, dbitflip-pm,
    /// l-onebit): what all reports about one value reveal, above --epsilon, which is
    /// then what one report reveals [default: twice --epsilon].
    #[arg(long, value_parser = parse_epsilon)]
    pub epsilon_perm: Option<f64>,
    /// All samples from one simulated device (two-layer mechanisms): one permanent
    /// response, drawn once, and a fresh instantaneous randomization per sample.
    #[arg(long)]
    pub same_device: bool,
    /// Domain size for frequency oracles, in [2, 1048576].
    #[arg(long, short, value_parser = parse_domain)]
    pub domain: Option<u64>,
    /// The input: a value in 0..D for frequency oracles, a number for numeric ones (clipped).
    #[arg(long, short, allow_hyphen_values = true)]
    pub input: String,
    /// How many outputs to print.
    #[arg(long, short, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub count: u64,
    /// Seed; without it the operating system's randomness is used, as in production.
    #[arg(long, short)]
    pub seed: Option<u64>,
}

/// `hush bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Print one JSON object instead of a table (and no progress bar).
    #[arg(long)]
    pub json: bool,
    /// Tiny sizes and one run each: checks that everything runs, in a second or two
    /// (the timings are not meaningful).
    #[arg(long)]
    pub quick: bool,
    /// Time only these kernels (comma-separated names from the table, e.g.
    /// `laplace,duchi`); all of them when absent.
    #[arg(long, value_delimiter = ',', value_name = "KERNEL")]
    pub only: Vec<String>,
}

/// `hush audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Any mechanism: grr, sue, oue, olh, hr, l-grr, l-sue, l-oue, l-osue, l-lh,
    /// dbitflip-pm, laplace, duchi, piecewise, hybrid, onebit, l-onebit.
    #[arg(long, short)]
    pub mechanism: String,
    /// The epsilon the mechanism is built for (the claim being audited; per report,
    /// from fresh devices, for a two-layer mechanism), in (0, 20].
    #[arg(long, short, value_parser = parse_epsilon)]
    pub epsilon: f64,
    /// For two-layer mechanisms (l-grr, l-sue, l-oue, l-osue, l-lh, dbitflip-pm,
    /// l-onebit): what all reports about one value reveal, above --epsilon, which is
    /// then what one report reveals [default: twice --epsilon].
    #[arg(long, value_parser = parse_epsilon)]
    pub epsilon_perm: Option<f64>,

    /// Domain size for frequency oracles, in [2, 1048576].
    #[arg(long, short, value_parser = parse_domain)]
    pub domain: Option<u64>,
    /// Samples per input in the measurement phase (a pilot run adds a tenth).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(100..=10_000_000_000))]
    pub samples: u64,
    /// Confidence of the lower bound, in (0, 1).
    #[arg(long, default_value_t = 0.99, value_parser = parse_level)]
    pub confidence: f64,
    /// Seed for every random draw.
    #[arg(long, short, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_f64(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .map_err(|_| format!("'{s}' is not a number"))
}

fn parse_epsilon(s: &str) -> Result<f64, String> {
    let e = parse_f64(s)?;
    hush_ldp::check_epsilon(e).map_err(|_| format!("must be a finite number in (0, {MAX_EPSILON}]"))
}

fn parse_level(s: &str) -> Result<f64, String> {
    let l = parse_f64(s)?;
    if l > 0.0 && l < 1.0 {
        Ok(l)
    } else {
        Err("must be in (0, 1), e.g. 0.95".into())
    }
}

fn parse_domain(s: &str) -> Result<u64, String> {
    let d: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a whole number"))?;
    hush_ldp::check_domain(d)
        .map(u64::from)
        .map_err(|_| format!("must be in [2, {MAX_DOMAIN}]"))
}

fn parse_frequency_kind(s: &str) -> Result<FrequencyKind, String> {
    FrequencyKind::from_name(s).map_err(|e| e.to_string())
}

fn parse_numeric_kind(s: &str) -> Result<NumericKind, String> {
    NumericKind::from_name(s).map_err(|e| e.to_string())
}

fn parse_distribution(s: &str) -> Result<Distribution, String> {
    s.parse().map_err(|e: hush_stats::StatsError| e.to_string())
}

fn parse_population(s: &str) -> Result<Population, String> {
    s.parse().map_err(|e: hush_stats::StatsError| e.to_string())
}
