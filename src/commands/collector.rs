//! `hush collector ...`: serve, tokens, example config, load generation, dataset
//! export, pruning and device erasure.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use hush_collector::{
    Catalogs, CollectorConfig, CollectorError, TokenKind, export, loadgen, new_token_from_os, store,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::{
    ConfigArg, DeviceCommand, ExportArgs, LoadgenArgs, MigrateArgs, PruneArgs, ReadyArgs,
    ServeArgs, TokenCommand,
};

fn load(arg: &ConfigArg) -> anyhow::Result<CollectorConfig> {
    match &arg.config {
        Some(path) => Ok(CollectorConfig::load(path)?),
        None => Ok(CollectorConfig::default()),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A refusal the user can fix (a date, a range, existing files, an open
/// period, a database of the wrong kind) exits with 2.
fn usage(e: CollectorError) -> anyhow::Error {
    match e {
        CollectorError::Refused(m) => anyhow::Error::new(super::Usage(m)),
        other => other.into(),
    }
}

/// Runs the service.
pub fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = load(&args.config)?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = &args.database {
        config.database = hush_collector::store::Database::parse(d);
    }
    config.validate()?;
    // Without timestamps (see `logging::init`); keep debug off under a journal.
    crate::logging::init(args.log_format, "info", &[], false);
    let scheme = if config.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let database = config.database.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(hush_collector::server::request_threads())
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(hush_collector::server::serve(config, |addr| {
        // The first line names the address, so scripts and tests can find a port picked by the OS.
        println!("listening on {scheme}://{addr} (database {database})");
    }))?;
    tracing::info!("collector stopped");
    Ok(ExitCode::SUCCESS)
}

/// Asks `/readyz` every half second until it answers 200 or `--wait` runs out.
pub fn ready(args: &ReadyArgs) -> anyhow::Result<ExitCode> {
    let url = format!("{}/readyz", args.url.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(5)))
        .build()
        .into();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(args.wait);
    loop {
        let answer = match agent.get(&url).call() {
            Ok(r) if r.status() == 200 => {
                println!("ready: {url}");
                return Ok(ExitCode::SUCCESS);
            }
            Ok(mut r) => format!(
                "{} {}",
                r.status().as_u16(),
                r.body_mut().read_to_string().unwrap_or_default()
            ),
            Err(e) => e.to_string(),
        };
        if std::time::Instant::now() >= deadline {
            eprintln!("not ready after {} s: {url}: {answer}", args.wait);
            return Ok(ExitCode::FAILURE);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Creates or revokes a token.
pub fn token(cmd: &TokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Create {
            config,
            cohort,
            admin,
        } => {
            let config = load(config)?;
            let mut db = store::open(&config.database)?;
            if *admin {
                let token = new_token_from_os(TokenKind::Admin)?;
                db.add_admin(&token, now())?;
                println!("{token}");
                eprintln!(
                    "this admin token is shown once and stored only as a hash in {}",
                    config.database
                );
            } else {
                let token = new_token_from_os(TokenKind::Device)?;
                let id = db.add_device(&token, cohort, now(), false)?;
                println!("{token}");
                eprintln!(
                    "device {id}: this token is shown once and stored only as a hash in {}",
                    config.database
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke { config, token } => {
            let config = load(config)?;
            if store::open(&config.database)?.revoke_token(token, now())? {
                // The server believes a checked token for TOKEN_TTL; uploads are
                // checked again in the transaction that would store them.
                eprintln!(
                    "revoked: a running collector refuses its uploads at once and its estimate reads within {} s",
                    hush_collector::TOKEN_TTL.as_secs()
                );
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("error: no such active token");
                Ok(ExitCode::from(2))
            }
        }
    }
}

/// Prints the example configuration.
pub fn example_config() -> anyhow::Result<ExitCode> {
    print!("{}", CollectorConfig::example());
    Ok(ExitCode::SUCCESS)
}

/// Runs the load generator.
pub fn loadgen(args: &LoadgenArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.config)?;
    for url in &args.url {
        loadgen::check_loopback(url).map_err(|e| super::Usage(e.to_string()))?;
    }
    let plan = loadgen::LoadPlan {
        urls: args.url.clone(),
        retry_for: args.retry_for.map(std::time::Duration::from_secs),
        reports: args.reports,
        concurrency: args.concurrency as usize,
        devices: args.devices,
        batch: args.batch as usize,
        seed: args.seed,
    };
    // Ctrl-C or SIGTERM ends the run early but still revokes its tokens.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .with_context(|| format!("installing the handler for signal {signal}"))?;
    }
    let mut file = match &args.acked {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?,
        ),
        None => None,
    };
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.reports)
    };
    let result = loadgen::run(
        &config,
        &plan,
        file.as_mut().map(|f| f as &mut (dyn std::io::Write + Send)),
        &|n| bar.set_position(n),
        &stop,
    )
    .map_err(usage)?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!(
            "{} reports acknowledged ({} new, {} duplicates), {} failed, {} unsent, from {} devices (revoked now) in {:.2} s: {:.0} reports/s",
            result.accepted + result.duplicates,
            result.accepted,
            result.duplicates,
            result.failed,
            result.unsent,
            result.devices,
            result.seconds,
            result.reports_per_second
        );
        match (
            result.collector_cpu_seconds,
            result.collector_cpu_seconds_per_1000_reports,
        ) {
            (Some(total), Some(per_1000)) => println!(
                "collector CPU {total:.2} s{}: {per_1000:.4} s per 1,000 reports ({:.1} µs per report)",
                if args.url.len() > 1 {
                    " (all collectors)"
                } else {
                    ""
                },
                per_1000 * 1000.0
            ),
            _ => println!(
                "collector CPU: not measured (not every --url is served by a process of this user on this machine that ran to the end: {})",
                args.url.join(", ")
            ),
        }
    }
    Ok(if result.failed == 0 && result.unsent == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Writes the released estimates as a partitioned dataset with its data dictionary.
pub fn export(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.config)?;
    let from = args
        .from
        .map(|b| b.first_period(config.period_seconds))
        .transpose()
        .map_err(usage)?;
    let to = args
        .to
        .map(|b| b.last_period(config.period_seconds))
        .transpose()
        .map_err(usage)?;
    if let Some((f, t)) = from.zip(to).filter(|(f, t)| f > t) {
        return Err(super::Usage(format!(
            "--from (period {f}) is after --to (period {t}): nothing to export"
        ))
        .into());
    }
    let mut db = store::open_existing(&config.database)?;
    let options = export::ExportOptions {
        format: args.format,
        out_dir: args.out.clone(),
        from,
        to,
        force: args.force,
        period_seconds: config.period_seconds,
        min_devices: config.min_devices,
    };
    // Drawn on stderr only when it is a terminal, so scripts and pipes see just the summary.
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("exporting {bar:30} {pos}/{len} files")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // Only closed periods: a period is exported once its grace window is over,
    // and its cells never change after that.
    let clock = config.clock();
    let catalogs = Catalogs::load(db.as_mut())?;
    let summary = export::export(
        db.as_mut(),
        &catalogs,
        &options,
        &args.windows,
        &clock,
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )
    .map_err(usage)?;
    bar.finish_and_clear();
    let files = summary
        .partitions
        .iter()
        .filter(|p| p.file.is_some())
        .count();
    println!(
        "{} rows in {files} {} file(s) under {}: {} cells released, {} withheld (fewer than {} devices); {}; data dictionary {}",
        summary.rows,
        summary.format,
        args.out.display(),
        summary.released_cells,
        summary.withheld_cells,
        config.min_devices.max(2),
        released_through(&config, &clock),
        summary.readme.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// "periods through YYYY-MM-DD are closed", for messages.
fn released_through(config: &CollectorConfig, clock: &hush_collector::PeriodClock) -> String {
    match clock.last_closed() {
        Some(p) => format!(
            "periods through {} are closed (grace_periods = {})",
            hush_collector::estimate::period_start(p, config.period_seconds),
            config.grace_periods
        ),
        None => "no period is closed yet".to_owned(),
    }
}

/// Deletes the stored reports of closed periods before a date.
pub fn prune(args: &PruneArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.config)?;
    let before = args
        .before
        .periods_before(config.period_seconds)
        .map_err(usage)?;
    let mut db = store::open_existing(&config.database)?;
    let clock = config.clock();
    let pruned = db.prune(&clock, before).map_err(usage)?;
    println!(
        "pruned {pruned} stored reports of periods before {}; released cells are unchanged",
        hush_collector::estimate::period_start(before, config.period_seconds)
    );
    Ok(ExitCode::SUCCESS)
}

/// Device management: erasure.
pub fn device(cmd: &DeviceCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DeviceCommand::Erase { config, device } => {
            let config = load(config)?;
            let which = match device.trim().parse::<i64>() {
                Ok(id) => store::DeviceRef::Id(id),
                Err(_) => store::DeviceRef::Token(device.trim().to_owned()),
            };
            let mut db = store::open_existing(&config.database)?;
            let catalogs = Catalogs::load(db.as_mut())?;
            match db.erase_device(&catalogs, &which)? {
                Some(erased) => {
                    println!(
                        "erased device {}: {} stored reports deleted, {} cells changed, token deleted",
                        erased.device, erased.reports, erased.cells
                    );
                    match erased.residue {
                        store::Residue::Cleared => {
                            println!("the database file was rewritten: it keeps no copy of them");
                            Ok(ExitCode::SUCCESS)
                        }
                        store::Residue::ServerKeeps => {
                            println!(
                                "PostgreSQL keeps old copies of deleted rows in its free space, log and backups until they are reused or expire (docs/PRIVACY.md)"
                            );
                            Ok(ExitCode::SUCCESS)
                        }
                        store::Residue::RewriteFailed(e) => Err(anyhow::anyhow!(
                            "the erasure is done, but the database file is not rewritten clean ({e}): copies of the erased reports may stay in the files until `hush collector device rewrite` succeeds (it needs memory and free disk space about the size of the database, and no export running)"
                        )),
                    }
                }
                None => Err(super::Usage(format!(
                    "no such device in {} (if its erasure was interrupted, `hush collector device rewrite` finishes it)",
                    config.database
                ))
                .into()),
            }
        }
        DeviceCommand::Rewrite { config } => {
            let config = load(config)?;
            let mut db = store::open_existing(&config.database)?;
            match db.clear_residue()? {
                store::Residue::Cleared => {
                    println!(
                        "{} was rewritten and its log emptied: it keeps no copy of deleted rows",
                        config.database
                    );
                    Ok(ExitCode::SUCCESS)
                }
                store::Residue::RewriteFailed(e) => Err(anyhow::anyhow!(
                    "the database file is not rewritten clean: {e}"
                )),
                store::Residue::ServerKeeps => Err(super::Usage(
                    "only a SQLite database is rewritten: PostgreSQL keeps old copies of deleted rows until it reuses their space (docs/PRIVACY.md)".into(),
                )
                .into()),
            }
        }
    }
}

/// Copies a SQLite collector database into PostgreSQL.
pub fn migrate(args: &MigrateArgs) -> anyhow::Result<ExitCode> {
    let to = store::Database::parse(&args.to);
    let store::Database::Postgres(url) = &to else {
        return Err(super::Usage(format!(
            "--to must be a postgres:// or postgresql:// URL, not {to}"
        ))
        .into());
    };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("copying reports {bar:30} {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let done = store::migrate::migrate(&args.from, url, &to.to_string(), &|n, total| {
        bar.set_length(total);
        bar.set_position(n);
    })
    .map_err(usage)?;
    bar.finish_and_clear();
    println!(
        "copied {} devices, {} admin tokens, {} range revisions, {} reports and {} cells from {} to {to}; checked before commit. Set database = \"{to}\" (its password in the URL or in HUSH_DATABASE_PASSWORD) and start the collectors.",
        done.devices,
        done.admins,
        done.ranges,
        done.reports,
        done.cells,
        args.from.display()
    );
    Ok(ExitCode::SUCCESS)
}
