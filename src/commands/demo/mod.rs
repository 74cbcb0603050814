//! `hush demo`: the whole pipeline on embedded defaults. A real collector runs
//! in-process on loopback; a simulated fleet's days go through the real window
//! aggregator, privatizer, budget ledger, outbox and uploader over HTTP; then the
//! estimates are compared with the truth the simulation knows.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use hush_agent::daemon::unix_now;
use hush_agent::uploader::{Uploader, flush};
use hush_agent::{Agent, AgentConfig, AgentPaths, Outbox, control};
use hush_capture::synthetic::Persona;
use hush_collector::estimate::{Window, estimate_cells, pooled_rows};
use hush_collector::export::{ExportOptions, Format, export_cells};
use hush_collector::{Catalogs, CollectorConfig, TokenKind, new_token, store};
use hush_ldp::NoiseRng;
use hush_report::weekday;
use hush_report::{Catalog, DeviceSecret};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;

use crate::args::DemoArgs;

mod compare;

use compare::{
    Truth, draw_chart, draw_distributions, print_accuracy, print_table, working_day, write_summary,
};

/// Where the simulated laptops keep their files: memory-backed when the system
/// has /dev/shm, because 2,000 simulated agents would otherwise queue some
/// 100,000 fsyncs on one disk (each is durable on a real laptop's own disk).
fn work_dir() -> anyhow::Result<tempfile::TempDir> {
    let shm = Path::new("/dev/shm");
    let builder = tempfile::Builder::new()
        .prefix("hush-demo-")
        .tempdir_in(shm);
    match builder {
        Ok(d) if shm.is_dir() => Ok(d),
        _ => tempfile::Builder::new()
            .prefix("hush-demo-")
            .tempdir()
            .context("creating a temporary directory"),
    }
}

/// The demo's epsilon per value: as given, or twice the epsilon per report.
fn epsilon_perm(args: &DemoArgs) -> anyhow::Result<f64> {
    super::epsilon_perm(args.epsilon, args.epsilon_perm)
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    hush_ldp::check_epsilon(args.epsilon).map_err(|e| super::Usage(format!("--epsilon: {e}")))?;
    let work = work_dir()?;
    let catalog = Catalog::builtin();
    let out = args.out.clone();
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    // A real collector, in-process, on a loopback port the OS picks.
    let config = CollectorConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        database: store::Database::Sqlite(work.path().join("collector.sqlite")),
        epsilon_per_report: args.epsilon,
        epsilon_per_value: epsilon_perm(args)?,
        device_requests_per_minute: 100_000,
        // The demo uploads its simulated past days at once; a fleet would
        // have sent each within a day, so the window covers them all.
        grace_periods: args.days + 1,
        ..CollectorConfig::default()
    };
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_config = config.clone();
    let server = std::thread::Builder::new()
        .name("hush-demo-collector".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(hush_collector::server::serve_until(
                server_config,
                move |addr| {
                    let _ = addr_tx.send(addr);
                },
                async move {
                    let _ = stop_rx.await;
                },
            ))?;
            anyhow::Ok(())
        })?;
    let addr = addr_rx
        .recv()
        .context("the in-process collector did not start")?;
    let url = format!("http://{addr}");

    // Device tokens, minted as `hush collector token create` would.
    let mut rng = NoiseRng::seed_from_u64(args.seed);
    let tokens: Vec<String> = (0..args.devices)
        .map(|_| new_token(TokenKind::Device, &mut rng))
        .collect();
    store::open(&config.database)?.add_devices(&tokens, "fleet", unix_now() as i64)?;

    let today = (unix_now() / 86_400) as u32;
    let first = today - args.days;
    let total = args.devices * u64::from(args.days);
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} simulated device-days {pos}/{len} [{bar:30}] {elapsed} (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let done = AtomicU64::new(0);
    let truth = Mutex::new(Truth::new(&catalog, first, args.days));
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
        .max(1);
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for worker in 0..threads {
            let (tokens, truth, done, bar, failures, catalog, url, work) = (
                &tokens,
                &truth,
                &done,
                &bar,
                &failures,
                &catalog,
                &url,
                work.path(),
            );
            s.spawn(move || {
                let mut local = Truth::new(catalog, first, args.days);
                for device in (worker as u64..args.devices).step_by(threads) {
                    let result = simulate_device(
                        args,
                        device,
                        &tokens[device as usize],
                        url,
                        work,
                        first,
                        catalog,
                        &mut local,
                        done,
                        bar,
                    );
                    if let Err(e) = result {
                        if let Ok(mut f) = failures.lock() {
                            f.push(format!("device {device}: {e:#}"));
                        }
                        return;
                    }
                }
                if let Ok(mut t) = truth.lock() {
                    t.merge(&local);
                }
            });
        }
    });
    bar.finish_and_clear();
    let failures = failures.into_inner().unwrap_or_default();
    if let Some(f) = failures.first() {
        bail!("the simulation failed: {f}");
    }
    let truth = truth
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a simulation thread panicked"))?;
    let simulated = started.elapsed();

    // Estimates from the collector's own aggregates, one set per day. Days are
    // not pooled here: a device whose value did not change reuses its
    // permanent (first-layer) response, so its reports on different days are
    // correlated, and a pooled interval that assumed independent reports
    // would be too narrow.
    let mut db = store::open(&config.database)?;
    let stored = db.report_count()?;
    let cells = db.all_cells(None, None)?;
    let catalogs = Catalogs::load(db.as_mut())?;
    let (rows, withheld) =
        estimate_cells(&cells, &catalogs, config.period_seconds, config.min_devices)?;
    // Pooled estimates, with errors clustered by device: the working days of
    // the run together, and any calendar week wholly inside it (for the dataset).
    let last = first + args.days - 1;
    let reports = db.stored_reports(first, last)?;
    let first_working = (first..=last).find(|&p| working_day(p));
    let (pooled, _) = pooled_rows(
        &reports,
        &catalogs,
        "working days",
        &|p| first_working.filter(|_| working_day(p)),
        config.period_seconds,
        config.min_devices,
    )?;
    let (weeks, _) = pooled_rows(
        &reports,
        &catalogs,
        Window::Week.name(),
        &|p| {
            let (start, end) = Window::Week.span(p);
            (start >= first && end <= last).then_some(start)
        },
        config.period_seconds,
        config.min_devices,
    )?;
    drop(reports);
    let _ = stop_tx.send(());
    match server.join() {
        Ok(r) => r?,
        Err(_) => bail!("the in-process collector panicked"),
    }

    print_table(&catalog, &truth, &rows, args, stored, withheld);
    print_accuracy(&catalog, &truth, &rows, &pooled, args.devices);
    let summary_path = out.join("estimates.csv");
    let mut summary_rows = rows.clone();
    summary_rows.extend(pooled.iter().cloned());
    write_summary(&summary_path, &catalog, &truth, &summary_rows)?;
    // The dataset an ML team would get from `hush collector export`, in two formats.
    let mut datasets = Vec::new();
    for format in [Format::Parquet, Format::Csv] {
        let options = ExportOptions {
            format,
            out_dir: out.join(format!("dataset-{}", format.name())),
            from: None,
            to: None,
            force: true,
            period_seconds: config.period_seconds,
            min_devices: config.min_devices,
        };
        let summary = export_cells(
            cells.clone(),
            weeks.clone(),
            &catalogs,
            &options,
            &mut |_, _| {},
        )?;
        datasets.push((options.out_dir, summary.rows));
    }
    let chart = out.join("estimates.svg");
    draw_chart(&chart, &catalog, &truth, &rows, args.days)?;
    let distributions = out.join("distributions.svg");
    draw_distributions(&distributions, &catalog, &truth, &pooled)?;
    println!();
    println!(
        "{} devices x {} days simulated and uploaded in {:.1} s; {} reports stored; total {:.1} s",
        args.devices,
        args.days,
        simulated.as_secs_f64(),
        stored,
        started.elapsed().as_secs_f64()
    );
    println!(
        "every day's estimates (and the working days pooled) beside the real truth and the share clipped: {}",
        summary_path.display()
    );
    println!(
        "chart of the daily estimates with 95% intervals against the truth: {}",
        chart.display()
    );
    println!(
        "chart of the distributions over the working days, with their medians and p90s: {}",
        distributions.display()
    );
    for (dir, rows) in &datasets {
        println!(
            "dataset ({rows} rows, partitioned by day, data dictionary in _README.md): {}",
            dir.display()
        );
    }
    if args.serve {
        serve(&config, args.listen)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Serves the demo's database until ctrl-c: the same collector, its grace
/// window shut so every simulated day is released, and an admin token minted
/// for a one-time sign-in link (signing in revokes it).
fn serve(config: &CollectorConfig, listen: std::net::SocketAddr) -> anyhow::Result<()> {
    let config = CollectorConfig {
        listen,
        grace_periods: 0,
        ..config.clone()
    };
    let admin = hush_collector::new_token_from_os(TokenKind::Admin)?;
    store::open(&config.database)?.add_admin(&admin, unix_now() as i64)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(hush_collector::server::serve(config, |addr| {
        println!();
        println!("the demo's collector is serving its data: http://{addr}/dashboard");
        println!("sign in once with: http://{addr}/dashboard/login?once={admin}");
        println!("ctrl-c stops it and deletes the demo's database");
    }))?;
    Ok(())
}

/// One simulated laptop: enroll, then each day generate input, fold it into
/// windows, privatize at the day's end, and upload every other day and at the end.
#[allow(clippy::too_many_arguments)]
fn simulate_device(
    args: &DemoArgs,
    device: u64,
    token: &str,
    url: &str,
    work: &Path,
    first: u32,
    catalog: &Catalog,
    truth: &mut Truth,
    done: &AtomicU64,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let mut life = NoiseRng::seed_from_u64(args.seed ^ 0x5EED_F1EE7);
    life.set_stream(device);
    let mut noise = NoiseRng::seed_from_u64(args.seed ^ 0x0015_E000);
    noise.set_stream(device);
    let persona = Persona::sample(&mut life);
    let paths = AgentPaths::in_home(&work.join("devices").join(device.to_string()));
    let config = AgentConfig {
        max_epsilon_per_report: args.epsilon,
        max_epsilon_per_value: epsilon_perm(args)?,
        ..AgentConfig::default()
    };
    // A reproducible device secret: the demo's permanent responses follow the seed.
    let mut secret = [0u8; 32];
    rand::Rng::fill_bytes(&mut noise, &mut secret);
    hush_agent::device::install_secret(&paths, &DeviceSecret::from_bytes(secret))?;
    let enrollment = control::enroll(&paths, &control::offer(&config, url)?, token)?;
    let uploader = Uploader::new(&enrollment, None)?;
    let outbox = Outbox::new(&paths, config.outbox_max_reports);
    let agent = Agent {
        paths: paths.clone(),
        config,
        enrollment,
    };
    for day in 0..args.days {
        let period = first + day;
        let raw = persona.measured_day(weekday(period), &mut life);
        truth.add(catalog, day as usize, &raw);
        agent.produce_with(period, raw, &mut noise)?;
        if day % 2 == 1 || day + 1 == args.days {
            let s = flush(&uploader, &outbox, &paths, unix_now())?;
            if let Some(why) = s.retry {
                bail!("upload failed: {why}");
            }
            if s.refused > 0 {
                bail!("the collector refused {} reports", s.refused);
            }
        }
        bar.set_position(done.fetch_add(1, Ordering::Relaxed) + 1);
    }
    Ok(())
}
