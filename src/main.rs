//! The `hush` command line: a thin layer that parses arguments, calls the crates and prints.

mod agent_cli;
mod args;
mod commands;
mod exit;
mod logging;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, CollectorCommand, Command, SimulateCommand};

fn main() -> ExitCode {
    // Before any thread can open a database: SQLite takes a page cache
    // only before it starts, and its configuration calls are not thread-safe.
    hush_collector::store::sqlite::install_page_cache();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(SimulateCommand::Frequency(a)) => commands::simulate::frequency(&a),
        Command::Simulate(SimulateCommand::Mean(a)) => commands::simulate::mean(&a),
        Command::Sample(a) => commands::sample::run(&a),
        Command::Audit(a) => commands::audit::run(&a),
        Command::Bench(a) => commands::bench::run(&a),
        Command::Agent(cmd) => agent_cli::run(cmd, &["agent"]),
        Command::Demo(a) => commands::demo::run(&a),
        Command::Plan(a) => commands::plan::run(&a),
        Command::Collector(CollectorCommand::Serve(a)) => commands::collector::serve(&a),
        Command::Collector(CollectorCommand::Ready(a)) => commands::collector::ready(&a),
        Command::Collector(CollectorCommand::Token(t)) => commands::collector::token(&t),
        Command::Collector(CollectorCommand::Config) => commands::collector::example_config(),
        Command::Collector(CollectorCommand::Loadgen(a)) => commands::collector::loadgen(&a),
        Command::Collector(CollectorCommand::Export(a)) => commands::collector::export(&a),
        Command::Collector(CollectorCommand::Prune(a)) => commands::collector::prune(&a),
        Command::Collector(CollectorCommand::Device(d)) => commands::collector::device(&d),
        Command::Collector(CollectorCommand::Migrate(a)) => commands::collector::migrate(&a),
    };
    match result {
        Ok(code) => code,
        Err(err) => exit::report_error(&err),
    }
}
