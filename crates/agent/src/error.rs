//! The one error type of hush-agent.

use thiserror::Error;

/// Why an agent operation failed.
#[derive(Debug, Error)]
pub enum AgentError {
    /// Configuration or enrollment is missing or invalid.
    #[error("{0}")]
    Config(String),
    /// A stored file no longer parses.
    #[error("corrupt agent state: {0}")]
    Corrupt(String),
    /// The collector could not be reached or answered wrongly.
    #[error("{0}")]
    Network(String),
    /// Another agent runs on this home (the lock holder, in words).
    #[error("another Hush agent is running on this home ({0}); stop it first (one agent per home)")]
    Running(String),
    /// Reading or writing a file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Capture could not start or stopped.
    #[error(transparent)]
    Capture(#[from] hush_capture::CaptureError),
    /// The privatizer failed for a reason other than the budget.
    #[error(transparent)]
    Privatize(#[from] hush_report::PrivatizeError),
}
