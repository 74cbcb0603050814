//! The agent's command-line arguments, shared by `hush agent ...` and `hush-agent ...`.

use clap::{Args, Subcommand};

/// Agent subcommands.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Watch your keyboard and mouse for a while and show what would be measured,
    /// before any noise, in plain words. Nothing is stored or sent.
    Preview(PreviewArgs),
    /// Connect this laptop to a collector, after you agree to what is measured.
    Enroll(EnrollArgs),
    /// Run the agent: capture, privatize once per period, upload. Stops on ctrl-c or SIGTERM.
    Run(RunArgs),
    /// Enrolled? Paused? Budget left, reports queued, last upload.
    Status(JsonHomeArgs),
    /// Every report that left this laptop, in plain words: exactly what the collector received.
    Sent(JsonHomeArgs),
    /// Stop measuring until `resume` (takes effect within a second).
    Pause(HomeArg),
    /// Measure again after a pause.
    Resume(HomeArg),
    /// Delete the device secret and queued reports; the spending history stays (asks first).
    Forget(ForgetArgs),
    /// A page in your browser: what the agent does, with pause, resume and forget buttons.
    ///
    /// In plain words: enrolled or not, paused or not, the privacy terms, what
    /// would be measured, every report that left. Served on 127.0.0.1 to your
    /// user only, behind a one-time link; stops when you close it.
    Ui(UiArgs),
    /// Print an example configuration file with every setting explained.
    Config,
}

/// `hush agent ui`.
#[derive(Debug, Args)]
pub struct UiArgs {
    /// Where the files are.
    #[command(flatten)]
    pub home: HomeArg,
    /// Print the one-time link without opening a browser (for another
    /// browser, or a machine without a default one).
    #[arg(long)]
    pub no_browser: bool,
    /// Stop when the page has not been shown for this many seconds (the open
    /// page reloads itself three times within it). 5 to 86400.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(5..=86_400))]
    pub idle_seconds: u64,
}

/// Where the agent keeps its files.
#[derive(Debug, Args)]
pub struct HomeArg {
    /// Keep configuration (DIR/agent.toml) and data (DIR/data) under DIR instead of
    /// the platform's standard directories.
    #[arg(long, env = "HUSH_AGENT_HOME")]
    pub home: Option<std::path::PathBuf>,
}

/// `--home` and `--json`.
#[derive(Debug, Args)]
pub struct JsonHomeArgs {
    /// Where the files are.
    #[command(flatten)]
    pub home: HomeArg,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `hush agent enroll`.
#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// Where the files are.
    #[command(flatten)]
    pub home: HomeArg,
    /// The collector's base URL (https://, or http:// on loopback).
    #[arg(long)]
    pub collector: String,
    /// The device token your administrator gave you.
    #[arg(long)]
    pub token: String,
    /// Agree without a prompt (for managed installs whose users consented elsewhere).
    #[arg(long)]
    pub yes: bool,
}

/// `hush agent run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Where the files are.
    #[command(flatten)]
    pub home: HomeArg,
    /// Replay a script of interactions in real time instead of listening to the
    /// keyboard and mouse (lines `AT_MS KIND [ARG]`; see ScriptedSource::parse).
    #[arg(long)]
    pub replay: Option<std::path::PathBuf>,
    /// Repeat the replay forever.
    #[arg(long, requires = "replay")]
    pub repeat: bool,
    /// How the service log on stderr is written: `text` for people, `json`
    /// (one object per line) for a log pipeline.
    #[arg(long, value_enum, default_value_t, env = "HUSH_LOG_FORMAT")]
    pub log_format: crate::logging::LogFormat,
}

/// `hush agent forget`.
#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Where the files are.
    #[command(flatten)]
    pub home: HomeArg,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

/// `hush agent preview`.
#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// Where the files are (read only, for the clipping ranges in use).
    #[command(flatten)]
    pub home: HomeArg,
    /// How long to watch, in seconds (1 to 3600).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub seconds: u64,
    /// Print one JSON object (to this terminal only) instead of text.
    #[arg(long)]
    pub json: bool,
}
