//! The agent's command line: preview, enroll, run, status, sent, pause, resume,
//! forget, config. Compiled into both `hush` (as `hush agent ...`) and the
//! agent-only `hush-agent` binary, which links none of the collector's,
//! exporter's or simulator's code and so keeps a laptop's resident memory small.

mod args;
mod preview;
mod ui;

pub use args::{AgentCommand, PreviewArgs};

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use hush_agent::outbox::{SentStatus, read_sent};
use hush_agent::{Agent, AgentConfig, AgentPaths, Enrollment, consent_text, control};
use hush_capture::{Epoch, OsSource, ScriptedSource};
use hush_report::Catalog;

use crate::exit::Usage;
use args::HomeArg;

fn paths(home: &HomeArg) -> anyhow::Result<AgentPaths> {
    Ok(match &home.home {
        Some(dir) => AgentPaths::in_home(dir),
        None => AgentPaths::platform()?,
    })
}

fn confirm(prompt: &str) -> anyhow::Result<bool> {
    print!("{prompt} Type yes to continue: ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().eq_ignore_ascii_case("yes"))
}

/// A period length in words.
fn period_words(seconds: u32) -> String {
    match seconds {
        86_400 => "day".to_owned(),
        s if s % 3600 == 0 => format!("{} hours (development periods)", s / 3600),
        s => format!("{s} seconds (development periods)"),
    }
}

/// Runs an agent subcommand. `prefix` is what this binary needs before a
/// subcommand's name (`["agent"]` for `hush`, nothing for `hush-agent`), for
/// the commands that run the binary again as a child.
pub fn run(cmd: AgentCommand, prefix: &'static [&'static str]) -> anyhow::Result<ExitCode> {
    match cmd {
        AgentCommand::Preview(a) => preview::run(&a),
        AgentCommand::Ui(a) => ui::run(&a, prefix),
        AgentCommand::Config => {
            print!("{}", AgentConfig::example());
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Enroll(a) => {
            let paths = paths(&a.home)?;
            let config = AgentConfig::load(&paths.config)?;
            // A running agent keeps the terms it started with: enrolling again
            // (new terms, new consent) takes effect on a stopped agent only.
            let _lock = hush_agent::lock::HomeLock::acquire(&paths)?;
            let offer = control::offer(&config, &a.collector)?;
            let catalog = Catalog::builtin();
            // What a year may reveal is counted per measure (a count's mean
            // and distribution share one cap on new values).
            let measures = catalog.measures().len();
            if !a.yes {
                let change =
                    catalog.epsilon_change(offer.terms.epsilon_perm, offer.terms.epsilon_1)?;
                println!(
                    "{}\n",
                    consent_text(&offer.terms, &config, measures, change)
                );
                if !confirm("Do you agree?")? {
                    eprintln!("not enrolled: nothing will be measured");
                    return Ok(ExitCode::from(1));
                }
            }
            let e = control::enroll(&paths, &offer, &a.token)?;
            let t = e.terms;
            println!(
                "enrolled with {} on these terms: epsilon {} per report, {} per unchanged value, at most {} in any 365 days; one report every {}; data in {}",
                e.collector,
                t.epsilon_1,
                t.epsilon_perm,
                t.per_year(&config, measures),
                period_words(t.period_seconds),
                paths.data.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Run(a) => {
            let paths = paths(&a.home)?;
            let config = AgentConfig::load(&paths.config)?;
            let enrollment = Enrollment::load(&paths)?.ok_or_else(|| {
                Usage("not enrolled: run `hush agent enroll --collector URL --token T` first; nothing is captured before that".into())
            })?;
            init_logging(a.log_format);
            let stop = Arc::new(AtomicBool::new(false));
            stop_on_signals(Arc::clone(&stop))?;
            let agent = Agent {
                paths,
                config,
                enrollment,
            };
            let epoch = Epoch::now();
            match &a.replay {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let source = ScriptedSource::parse(&text)?.paced(epoch, a.repeat);
                    agent.run(source, stop)?;
                }
                None => {
                    if let Some(note) = OsSource::wayland_note() {
                        tracing::warn!("{note}");
                    }
                    agent.run(OsSource::new(epoch), stop)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Status(a) => {
            let paths = paths(&a.home)?;
            let config = AgentConfig::load(&paths.config)?;
            let s = control::status(&paths, &config)?;
            if a.json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                match &s.enrolled {
                    Some(url) => println!("enrolled with   {url}"),
                    None => println!("enrolled with   nobody (run `hush agent enroll`)"),
                }
                println!("paused          {}", if s.paused { "yes" } else { "no" });
                if s.development_periods {
                    println!(
                        "periods         DEVELOPMENT PERIODS: one report every {} s, not once a day",
                        s.period_seconds
                    );
                }
                if let (Some(one), Some(perm), Some(cap)) = (
                    s.epsilon_per_report,
                    s.epsilon_per_value,
                    s.epsilon_per_year_cap,
                ) {
                    println!(
                        "privacy         what the collector can learn about you, at most (smaller is more private):"
                    );
                    println!("                one report reveals                  epsilon {one}");
                    println!("                all reports of one unchanged value  epsilon {perm}");
                    println!(
                        "                the last 365 days' reports          epsilon {} so far (at most {cap}: {} values per measure)",
                        hush_agent::control::epsilon_text(s.epsilon_past_year),
                        s.max_values_per_year
                    );
                    for d in s.draws.iter().filter(|d| d.values > 0) {
                        println!(
                            "                  {:<18} {} value{} in the last 365 days, epsilon {}",
                            d.metric,
                            d.values,
                            if d.values == 1 { "" } else { "s" },
                            hush_agent::control::epsilon_text(d.epsilon)
                        );
                    }
                }
                println!(
                    "this period     {}",
                    if s.reported_this_period {
                        "its report is made"
                    } else {
                        "its report is made when it ends"
                    }
                );
                println!("queued reports  {}", s.queued);
                println!(
                    "sent reports    {} ({} refused by the collector)",
                    s.sent, s.refused
                );
                println!(
                    "last upload     {}",
                    s.last_upload
                        .map_or_else(|| "never".to_owned(), hush_report::utc_minute)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Sent(a) => {
            let paths = paths(&a.home)?;
            // Each report is described with the catalog it was made with.
            let ranges = hush_agent::ranges::Ranges::load(&paths)?;
            let describe = |r: &hush_report::Report| ranges.describe(r);
            let entries = read_sent(&paths)?;
            if a.json {
                let rows: Vec<_> = entries
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "report": e.report.id().to_string(),
                            "status": match e.status { SentStatus::Sent => "sent", SentStatus::Refused => "refused" },
                            "at": e.at,
                            "period": e.report.period(),
                            "epsilon": e.report.epsilon(),
                            "bytes": e.report.encode().len(),
                            "metrics": describe(&e.report).iter().map(|l| serde_json::json!({
                                "metric": l.name, "mechanism": l.mechanism, "epsilon": l.epsilon, "epsilon_perm": l.epsilon_perm, "value": l.in_words,
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string(&rows)?);
            } else if entries.is_empty() {
                println!("nothing has been sent yet");
            } else {
                for e in &entries {
                    let verb = match e.status {
                        SentStatus::Sent => "sent",
                        SentStatus::Refused => "REFUSED by the collector",
                    };
                    println!(
                        "{} {verb}: report {} for period {} ({} bytes)",
                        hush_report::utc_minute(e.at),
                        e.report.id(),
                        e.report.period(),
                        e.report.encode().len()
                    );
                    for l in describe(&e.report) {
                        println!(
                            "    {}: {}  [{}, epsilon {} per report, {} per value]",
                            l.name, l.in_words, l.mechanism, l.epsilon, l.epsilon_perm
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Pause(h) => {
            control::pause(&paths(&h)?)?;
            println!("paused: nothing is measured until `hush agent resume`");
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Resume(h) => {
            control::resume(&paths(&h)?)?;
            println!("resumed");
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Forget(a) => {
            let paths = paths(&a.home)?;
            if !a.yes
                && !confirm(
                    "Delete this device's secret (future reports start from new random answers) and all queued reports? What was already spent stays counted.",
                )?
            {
                eprintln!("nothing deleted");
                return Ok(ExitCode::from(1));
            }
            let by = match control::forget(&paths, std::time::Duration::from_secs(15))? {
                control::Forgotten::Now => "",
                control::Forgotten::ByTheRunningAgent => " (by the running agent)",
            };
            println!(
                "forgotten{by}: the device secret and queued reports are deleted; the spending history stays, so forgetting cannot reset what a year reveals"
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Logs to stderr (the journal under systemd), `info` unless RUST_LOG says
/// otherwise. The HTTP and TLS libraries are capped at `warn` whatever RUST_LOG
/// says: at debug and trace they print request headers, the device token among them.
fn init_logging(format: crate::logging::LogFormat) {
    crate::logging::init(
        format,
        "info",
        &[
            "ureq=warn",
            "ureq_proto=warn",
            "rustls=warn",
            "hyper=warn",
            "h2=warn",
        ],
        true,
    );
}

/// Sets `stop` on SIGINT or SIGTERM. signal-hook's flag handler only stores to
/// an atomic (async-signal-safe), so the agent needs no extra thread or runtime
/// for it: the main loop polls the flag several times a second.
fn stop_on_signals(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .with_context(|| format!("installing the handler for signal {signal}"))?;
    }
    Ok(())
}
