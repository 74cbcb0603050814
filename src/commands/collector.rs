//! `hush collector ...`: serve, tokens, example config, load generation, dataset export.

use std::process::ExitCode;

use anyhow::Context;
use hush_collector::{
    Catalogs, CollectorConfig, CollectorError, TokenKind, export, loadgen, new_token, store,
};
use hush_ldp::NoiseRng;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;

use crate::args::{ConfigArg, ExportArgs, LoadgenArgs, ServeArgs, TokenCommand};

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

/// Runs the service.
pub fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = load(&args.config)?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = &args.database {
        config.database.clone_from(d);
    }
    config.validate()?;
    let scheme = if config.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let database = config.database.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(hush_collector::server::serve(config, |addr| {
        // The first line names the address, so scripts and tests can find a port picked by the OS.
        println!(
            "listening on {scheme}://{addr} (database {})",
            database.display()
        );
    }))?;
    eprintln!("collector stopped");
    Ok(ExitCode::SUCCESS)
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
            let conn = store::open(&config.database)?;
            let kind = if *admin {
                TokenKind::Admin
            } else {
                TokenKind::Device
            };
            let mut rng = NoiseRng::try_from_rng(&mut rand::rngs::SysRng)
                .context("reading the operating system's randomness")?;
            let token = new_token(kind, &mut rng);
            store::add_token(&conn, kind, &token, cohort, now())?;
            println!("{token}");
            eprintln!(
                "this {} token is shown once and stored only as a hash in {}",
                if *admin { "admin" } else { "device" },
                config.database.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke { config, token } => {
            let config = load(config)?;
            let conn = store::open(&config.database)?;
            if store::revoke_token(&conn, token, now())? {
                eprintln!("revoked");
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
    loadgen::check_loopback(&args.url).map_err(|e| super::Usage(e.to_string()))?;
    let plan = loadgen::LoadPlan {
        url: args.url.clone(),
        reports: args.reports,
        concurrency: args.concurrency as usize,
        devices: args.devices,
        batch: args.batch as usize,
        seed: args.seed,
    };
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
    )?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!(
            "{} reports acknowledged ({} new, {} duplicates), {} failed, in {:.2} s: {:.0} reports/s",
            result.accepted + result.duplicates,
            result.accepted,
            result.duplicates,
            result.failed,
            result.seconds,
            result.reports_per_second
        );
    }
    Ok(if result.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Writes the released estimates as a partitioned dataset with its data dictionary.
pub fn export(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.config)?;
    // A refusal the user can fix (a date, a range, existing files) exits with 2.
    let usage = |e: CollectorError| match e {
        CollectorError::Refused(m) => anyhow::Error::new(super::Usage(m)),
        other => other.into(),
    };
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
    // Opening a missing database would create an empty one and export nothing, silently.
    if !config.database.exists() {
        anyhow::bail!(
            "no collector database at {} (check --config)",
            config.database.display()
        );
    }
    let conn = store::open(&config.database)?;
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
    let summary = export::export(&conn, &Catalogs::builtin(), &options, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .map_err(usage)?;
    bar.finish_and_clear();
    let files = summary
        .partitions
        .iter()
        .filter(|p| p.file.is_some())
        .count();
    println!(
        "{} rows in {files} {} file(s) under {}: {} cells released, {} withheld (fewer than {} devices); data dictionary {}",
        summary.rows,
        summary.format,
        args.out.display(),
        summary.released_cells,
        summary.withheld_cells,
        config.min_devices.max(2),
        summary.readme.display()
    );
    Ok(ExitCode::SUCCESS)
}
