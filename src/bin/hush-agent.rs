//! `hush-agent`: the laptop agent alone, for installing as a service.
//!
//! The same commands as `hush agent ...`, in a binary that links only the
//! agent's code: a laptop keeps less of it in memory (the kernel maps a
//! binary's pages in runs around the code it touches, so a smaller binary
//! means a smaller resident set).

#[path = "../agent_cli/mod.rs"]
mod agent_cli;
#[path = "../exit.rs"]
mod exit;
#[path = "../logging.rs"]
mod logging;

use std::process::ExitCode;

use clap::Parser;

/// Locally differentially private interaction metrics: the laptop agent.
#[derive(Debug, Parser)]
#[command(name = "hush-agent", version)]
struct Cli {
    #[command(subcommand)]
    command: agent_cli::AgentCommand,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match agent_cli::run(cli.command, &[]) {
        Ok(code) => code,
        Err(err) => exit::report_error(&err),
    }
}
