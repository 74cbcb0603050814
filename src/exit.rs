//! How a command's failure becomes a message and an exit code, shared by the
//! `hush` and `hush-agent` binaries: 2 for bad arguments, 1 for failures.

use std::process::ExitCode;

use hush_ldp::LdpError;
use hush_stats::StatsError;

/// An argument combination that is wrong in a way clap cannot see; exits with code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// Prints an error and picks the exit code: 2 for bad arguments, 1 for failures.
pub fn report_error(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    let usage = err.chain().any(|e| {
        e.is::<Usage>()
            || e.is::<LdpError>()
            || matches!(
                e.downcast_ref::<StatsError>(),
                Some(
                    StatsError::Argument { .. }
                        | StatsError::Level(_)
                        | StatsError::Population(_)
                        | StatsError::Distribution(_)
                        | StatsError::Ldp(_)
                )
            )
    });
    if usage {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}
