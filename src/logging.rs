//! Service logs on stderr, for both binaries: human-readable lines on a
//! terminal, or one JSON object per line (`--log-format json`) for a log
//! pipeline, with the tracing fields as keys.

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry, fmt};

/// How service logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people (colours only on a terminal).
    #[default]
    Text,
    /// One JSON object per line: `level`, `target`, `message` and the event's
    /// fields as keys.
    Json,
}

/// Logs at `default_level` unless RUST_LOG says otherwise, with the
/// directives in `capped` (noisy dependencies) added. `with_time` is off for
/// the collector: a line's time could tell when a device's request arrived,
/// which the collector does not keep (a journal adds its own times).
pub fn init(format: LogFormat, default_level: &str, capped: &[&str], with_time: bool) {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    for directive in capped {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer: Box<dyn Layer<Registry> + Send + Sync> = match (format, with_time) {
        (LogFormat::Text, true) => fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .boxed(),
        (LogFormat::Text, false) => fmt::layer()
            .without_time()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .boxed(),
        (LogFormat::Json, true) => fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
        (LogFormat::Json, false) => fmt::layer()
            .json()
            .flatten_event(true)
            .without_time()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    // Already set (a second call in one process) is not an error worth failing for.
    let _ = tracing_subscriber::registry()
        .with(layer)
        .with(filter)
        .try_init();
}
