//! A bounded load generator for the collector, loopback only: real reports from the
//! real privatizer, uploaded over HTTP by concurrent clients, as devices it mints
//! for the run in a database that holds no one else's devices, and revokes after.

use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hush_ldp::{BudgetAccount, NoiseRng};
use hush_report::{
    Catalog, DeviceMemory, DeviceSecret, KeyClass, PrivatizeRequest, RawMeasurements, Report,
    bucket_of_day, privatize,
};
use rand::SeedableRng;

use crate::tokens::{TokenKind, new_token_from_os};
use crate::{CollectorConfig, CollectorError, store};

/// How long a retried request waits before it is sent again.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Base URLs of the collectors, e.g. `http://127.0.0.1:8600`; loopback
    /// only. Requests go to each in turn (several collectors on one
    /// PostgreSQL database share the load).
    pub urls: Vec<String>,
    /// Resend a request that failed with 503 or no answer (to the next
    /// collector) for this long, as an agent retries its upload; `None`
    /// counts it as failed at once.
    pub retry_for: Option<Duration>,
    /// Total reports.
    pub reports: u64,
    /// Concurrent clients.
    pub concurrency: usize,
    /// Distinct devices (tokens minted for the run); `None` for the fewest that
    /// can send `reports`. A device sends one report per open period, so at
    /// most `grace_periods + 1`.
    pub devices: Option<u64>,
    /// Reports per upload request (at most one device's reports).
    pub batch: usize,
    /// Seed of the synthetic measurements and their noise; `None` draws one
    /// from the operating system, so repeated runs send new report ids.
    pub seed: Option<u64>,
}

/// What happened.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadResult {
    /// Devices minted (and revoked at the end).
    pub devices: u64,
    /// Reports acknowledged as newly stored.
    pub accepted: u64,
    /// Reports acknowledged as already stored.
    pub duplicates: u64,
    /// Reports in requests that failed or were refused.
    pub failed: u64,
    /// Reports not sent because the run was stopped.
    pub unsent: u64,
    /// Wall-clock seconds of the upload phase.
    pub seconds: f64,
    /// Acknowledged reports per second.
    pub reports_per_second: f64,
    /// CPU seconds (user and system) the collector process used during the
    /// upload phase, when it runs on this machine and its `/proc` entry is
    /// readable: unlike reports per second, comparable across machines of
    /// different speed and load.
    pub collector_cpu_seconds: Option<f64>,
    /// The same per 1,000 acknowledged reports.
    pub collector_cpu_seconds_per_1000_reports: Option<f64>,
}

/// The local process listening on the collector's port, whose CPU time the
/// run reads before and after (Linux `/proc`; `None` elsewhere or when the
/// process belongs to another user).
pub fn collector_process(url: &str) -> Option<u32> {
    let port = port_of(url)?;
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is ADDR:PORT in hex; state 0A is LISTEN.
            let listening = fields.get(3) == Some(&"0A");
            let on_port = fields
                .get(1)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                == Some(port);
            if listening
                && on_port
                && let Some(inode) = fields.get(9)
            {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && inodes.iter().any(|i| target.as_os_str() == i.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}

/// User plus system CPU seconds of a process so far, all its threads, from
/// `/proc/PID/stat`.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count from after it.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are the 14th and 15th fields, the 3rd being the first after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ, the unit of /proc's times, is 100 on every Linux architecture
    // Hush builds for.
    Some(ticks as f64 / 100.0)
}

/// The TCP port of an http(s) URL, explicit or the scheme's.
fn port_of(url: &str) -> Option<u16> {
    let (default, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (80, rest)
    } else {
        (443, url.strip_prefix("https://")?)
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    // A bracketed IPv6 host holds colons of its own.
    let after_host = authority.rsplit_once(']').map_or(authority, |(_, p)| p);
    match after_host.rsplit_once(':') {
        Some((_, port)) => port.parse().ok(),
        None => Some(default),
    }
}

/// Refuses any target that is not a loopback address: load is only ever sent to this machine.
pub fn check_loopback(url: &str) -> Result<(), CollectorError> {
    let host = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .and_then(|rest| rest.split('/').next())
        .map(|hp| hp.rsplit_once(':').map_or(hp, |(h, _)| h))
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .ok_or_else(|| CollectorError::Config(format!("not an http(s) URL: {url}")))?;
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(CollectorError::Config(format!(
            "loadgen only targets loopback addresses (127.0.0.0/8, ::1, localhost), not {host}"
        )))
    }
}

/// The fewest devices that can send `reports`: each sends one report per open
/// period, the current one and `grace_periods` before it.
pub fn devices_needed(reports: u64, grace_periods: u32) -> u64 {
    reports.div_ceil(u64::from(grace_periods) + 1)
}

/// The devices a run minted: revoked when the run ends, whether it succeeded,
/// failed or panicked, so no load generator token outlives its run.
struct Minted<'a> {
    config: &'a CollectorConfig,
    ids: Vec<i64>,
    revoked: bool,
}

impl Minted<'_> {
    fn revoke(&mut self) -> Result<(), CollectorError> {
        if self.revoked || self.ids.is_empty() {
            return Ok(());
        }
        store::open(&self.config.database)?.revoke_devices(&self.ids, self.config.now())?;
        self.revoked = true;
        Ok(())
    }
}

impl Drop for Minted<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.revoke() {
            tracing::error!(
                "could not revoke the load generator's {} device tokens: {e}",
                self.ids.len()
            );
        }
    }
}

/// Mints device tokens, builds reports, and uploads them. Every acknowledged report
/// id is written to `acked` (one hex id per line) as soon as its request succeeds.
/// Setting `stop` ends the run early (the remaining reports are counted as unsent).
///
/// Runs only against a database of its own: one holding any device it did not
/// mint (revoked or not) is refused, so load never mixes with real reports. The
/// tokens come from the operating system's generator and are revoked when the
/// run ends, on every path out of this function.
pub fn run(
    config: &CollectorConfig,
    plan: &LoadPlan,
    acked: Option<&mut (dyn Write + Send)>,
    progress: &(dyn Fn(u64) + Sync),
    stop: &AtomicBool,
) -> Result<LoadResult, CollectorError> {
    if plan.urls.is_empty() {
        return Err(CollectorError::Refused("no collector URL".into()));
    }
    for url in &plan.urls {
        check_loopback(url)?;
    }
    if plan.reports == 0 || plan.batch == 0 || plan.concurrency == 0 || plan.devices == Some(0) {
        return Err(CollectorError::Refused(
            "reports, devices, batch and concurrency must be positive".into(),
        ));
    }
    let needed = devices_needed(plan.reports, config.grace_periods);
    let devices = plan.devices.unwrap_or(needed);
    if devices < needed {
        return Err(CollectorError::Refused(format!(
            "{devices} devices cannot send {} reports: a device sends one report per open period, and {} periods are open (the current one and grace_periods = {} before it); use at least {needed} devices",
            plan.reports,
            u64::from(config.grace_periods) + 1,
            config.grace_periods
        )));
    }
    // Refused before the reports are made, and again when minting, atomically.
    let real = store::open(&config.database)?.real_devices()?;
    if real > 0 {
        return Err(real_devices_refusal(config, real));
    }
    let clock = config.clock();
    let current = clock.current;
    if u64::from(current) < u64::from(config.grace_periods) {
        return Err(CollectorError::Internal(
            "the clock is before the first periods".into(),
        ));
    }
    let seed = match plan.seed {
        Some(s) => s,
        None => {
            let mut bytes = [0u8; 8];
            rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut bytes).map_err(|e| {
                CollectorError::Internal(format!("no operating-system randomness: {e}"))
            })?;
            u64::from_le_bytes(bytes)
        }
    };
    let mut rng = NoiseRng::seed_from_u64(seed);

    // Device d sends its j-th report for period (current - j): one report per
    // device and period, all within the grace window, so none conflicts.
    let catalog = Catalog::builtin();
    let (base, extra) = (plan.reports / devices, plan.reports % devices);
    let mut jobs: Vec<Job> = Vec::new();
    for d in 0..devices {
        let count = (base + u64::from(d < extra)) as u32;
        let mine = device_reports(config, &catalog, current, d, count, &mut rng)?;
        for chunk in mine.chunks(plan.batch) {
            // Encoded before the clock starts: the run measures the collector.
            jobs.push(Job {
                device: d as usize,
                body: Report::encode_batch(chunk),
                ids: chunk.iter().map(|r| r.id().to_string()).collect(),
            });
        }
    }
    // Devices upload in no particular order; sent in the order they were
    // minted, their rows would land side by side in the (device, period)
    // index and flatter the collector.
    rand::seq::SliceRandom::shuffle(&mut jobs[..], &mut rng);

    // Stopped while the reports were being made: mint nothing.
    if stop.load(Ordering::Relaxed) {
        return Ok(LoadResult {
            unsent: plan.reports,
            ..LoadResult::default()
        });
    }
    let mut minted = Minted {
        config,
        ids: Vec::new(),
        revoked: false,
    };
    let tokens = mint(config, devices, &mut minted.ids)?;
    // The collectors on this machine, each counted once.
    let mut servers: Vec<u32> = plan
        .urls
        .iter()
        .filter_map(|u| collector_process(u))
        .collect();
    servers.sort_unstable();
    servers.dedup();
    let cpu_of = |pids: &[u32]| -> Option<f64> {
        pids.iter()
            .map(|&p| process_cpu_seconds(p))
            .sum::<Option<f64>>()
    };
    let cpu_before = cpu_of(&servers).filter(|_| servers.len() == plan.urls.len());
    let result = upload(plan, &tokens, jobs, acked, progress, stop);
    // A collector killed during the run leaves no figure.
    let cpu = cpu_before
        .zip(cpu_of(&servers))
        .map(|(before, after)| after - before);
    drop(tokens);
    minted.revoke()?;
    let acknowledged = result.accepted + result.duplicates;
    Ok(LoadResult {
        devices,
        collector_cpu_seconds: cpu,
        collector_cpu_seconds_per_1000_reports: cpu
            .filter(|_| acknowledged > 0)
            .map(|c| c * 1000.0 / acknowledged as f64),
        ..result
    })
}

/// The reports one synthetic device `d` sends: real reports from the real
/// privatizer, one for each of the `count` periods up to `current` (the
/// current one first), of a day with a number of keystrokes that varies
/// with the device and the period. The load generator and `benches/ingest.rs`
/// both send these.
pub fn device_reports(
    config: &CollectorConfig,
    catalog: &Catalog,
    current: u32,
    d: u64,
    count: u32,
    rng: &mut NoiseRng,
) -> Result<Vec<Report>, CollectorError> {
    let mut secret = [0u8; 32];
    rand::Rng::fill_bytes(rng, &mut secret);
    let mut memory = DeviceMemory::new(DeviceSecret::from_bytes(secret));
    let mut reports = Vec::with_capacity(count as usize);
    for j in 0..count {
        let mut raw = RawMeasurements::new(1440);
        for _ in 0..(u64::from(j) * 7 + d) % 3000 {
            raw.record_key(KeyClass::Letter);
        }
        let request = PrivatizeRequest {
            catalog,
            period: current.checked_sub(j).ok_or_else(|| {
                CollectorError::Internal("the clock is before the first periods".into())
            })?,
            period_seconds: config.period_seconds,
            epsilon: config.epsilon_per_report,
            epsilon_perm: config.epsilon_per_value,
            max_draws: u32::MAX,
            bucket: bucket_of_day(
                (u64::from(current) * u64::from(config.period_seconds) / 86_400) as u32,
            ),
            agent_version: "loadgen",
        };
        let mut budget = BudgetAccount::new(config.epsilon_per_report)
            .map_err(|e| CollectorError::Internal(e.to_string()))?;
        reports.push(
            privatize(raw, &request, &mut memory, &mut budget, rng)
                .map_err(|e| CollectorError::Internal(e.to_string()))?,
        );
    }
    Ok(reports)
}

/// Why a database that holds `real` devices the load generator did not mint is refused.
fn real_devices_refusal(config: &CollectorConfig, real: u64) -> CollectorError {
    CollectorError::Refused(format!(
        "{} holds {real} device(s) that loadgen did not create; loadgen sends load only to a database of its own, so give it a collector configuration with a new database",
        config.database
    ))
}

/// Mints `devices` loadgen tokens in one transaction, after checking (in the
/// same transaction) that the database holds no device of anyone else's.
fn mint(
    config: &CollectorConfig,
    devices: u64,
    ids: &mut Vec<i64>,
) -> Result<Vec<String>, CollectorError> {
    let tokens = (0..devices)
        .map(|_| new_token_from_os(TokenKind::Device))
        .collect::<Result<Vec<_>, _>>()?;
    match store::open(&config.database)?.mint_loadgen_devices(&tokens, config.now())? {
        Ok(new_ids) => {
            *ids = new_ids;
            Ok(tokens)
        }
        Err(real) => Err(real_devices_refusal(config, real)),
    }
}

/// One upload request: a device's reports, encoded, and their ids.
struct Job {
    device: usize,
    body: Vec<u8>,
    ids: Vec<String>,
}

/// Sends the jobs with `plan.concurrency` clients.
fn upload(
    plan: &LoadPlan,
    tokens: &[String],
    jobs: Vec<Job>,
    acked: Option<&mut (dyn Write + Send)>,
    progress: &(dyn Fn(u64) + Sync),
    stop: &AtomicBool,
) -> LoadResult {
    let jobs = Arc::new(Mutex::new(jobs.into_iter()));
    let acked = Mutex::new(acked);
    // Which collector the next request goes to.
    let turn = AtomicUsize::new(0);
    let (accepted, duplicates, failed, sent) = (
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    );
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..plan.concurrency {
            s.spawn(|| {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_secs(30)))
                    .http_status_as_error(false)
                    .build()
                    .into();
                loop {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let next = jobs.lock().ok().and_then(|mut j| j.next());
                    let Some(Job { device, body, ids }) = next else {
                        break;
                    };
                    let n = ids.len() as u64;
                    let give_up = plan.retry_for.map(|d| Instant::now() + d);
                    let response = loop {
                        let url =
                            &plan.urls[turn.fetch_add(1, Ordering::Relaxed) % plan.urls.len()];
                        let response = agent
                            .post(format!("{}/v1/reports", url.trim_end_matches('/')))
                            .header("Authorization", &format!("Bearer {}", tokens[device]))
                            .header("Content-Type", "application/octet-stream")
                            .send(&body[..]);
                        let retry = match &response {
                            Ok(r) => r.status() == 503,
                            Err(_) => true,
                        };
                        if retry
                            && give_up.is_some_and(|t| Instant::now() < t)
                            && !stop.load(Ordering::Relaxed)
                        {
                            std::thread::sleep(RETRY_PAUSE);
                            continue;
                        }
                        break response;
                    };
                    match response {
                        Ok(mut r) if r.status() == 200 => {
                            let outcome: serde_json::Value = r
                                .body_mut()
                                .read_to_string()
                                .ok()
                                .and_then(|t| serde_json::from_str(&t).ok())
                                .unwrap_or_default();
                            accepted.fetch_add(
                                outcome["accepted"].as_u64().unwrap_or(0),
                                Ordering::Relaxed,
                            );
                            duplicates.fetch_add(
                                outcome["duplicates"].as_u64().unwrap_or(0),
                                Ordering::Relaxed,
                            );
                            if let Ok(mut guard) = acked.lock()
                                && let Some(w) = guard.as_mut()
                            {
                                for id in &ids {
                                    let _ = writeln!(w, "{id}");
                                }
                                let _ = w.flush();
                            }
                        }
                        _ => {
                            failed.fetch_add(n, Ordering::Relaxed);
                        }
                    }
                    progress(sent.fetch_add(n, Ordering::Relaxed) + n);
                }
            });
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    let unsent: u64 = jobs
        .lock()
        .map(|mut j| j.by_ref().map(|job| job.ids.len() as u64).sum())
        .unwrap_or(0);
    let accepted = accepted.into_inner();
    let duplicates = duplicates.into_inner();
    LoadResult {
        devices: 0,
        accepted,
        duplicates,
        failed: failed.into_inner(),
        unsent,
        seconds,
        reports_per_second: (accepted + duplicates) as f64 / seconds.max(1e-9),
        collector_cpu_seconds: None,
        collector_cpu_seconds_per_1000_reports: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_device_sends_at_most_one_report_per_open_period() {
        assert_eq!(devices_needed(100_000, 7), 12_500);
        assert_eq!(devices_needed(100_001, 7), 12_501);
        assert_eq!(devices_needed(5, 0), 5);
    }

    #[test]
    fn ports_come_from_the_url_or_its_scheme() {
        assert_eq!(port_of("http://127.0.0.1:8600"), Some(8600));
        assert_eq!(port_of("http://[::1]:9000/x"), Some(9000));
        assert_eq!(port_of("http://localhost/"), Some(80));
        assert_eq!(port_of("https://[::1]"), Some(443));
        assert_eq!(port_of("http://127.0.0.1:81?x=1"), Some(81));
        assert_eq!(port_of("ftp://127.0.0.1:21"), None);
    }

    #[test]
    fn the_listening_process_and_its_cpu_time_are_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        assert_eq!(collector_process(&url), Some(std::process::id()));
        // This thread's own CPU time, in nanoseconds, from the scheduler.
        let thread_cpu = || -> f64 {
            let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
            text.split_whitespace()
                .next()
                .unwrap()
                .parse::<f64>()
                .unwrap()
                / 1e9
        };
        let before = process_cpu_seconds(std::process::id()).unwrap();
        let (start, own) = (Instant::now(), thread_cpu());
        // Burn 0.3 s of this thread's CPU, however loaded the machine is.
        let mut x = 0u64;
        while thread_cpu() - own < 0.3 {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        let used = process_cpu_seconds(std::process::id()).unwrap() - before;
        // At least this thread's 0.3 s (less a few 10 ms ticks of sampling),
        // at most every core busy for the whole time.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let most = start.elapsed().as_secs_f64() * cores + 0.05;
        assert!(used >= 0.25 && used <= most, "{used} s, at most {most} s");
        drop(listener);
        assert_eq!(collector_process(&url), None);
    }

    #[test]
    fn only_loopback_targets() {
        for ok in [
            "http://127.0.0.1:8600",
            "http://127.9.9.9:1/x",
            "http://localhost:80",
            "http://[::1]:8600",
        ] {
            assert!(check_loopback(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1:8600",
            "http://192.168.1.4",
            "https://example.com",
            "ftp://127.0.0.1",
        ] {
            assert!(check_loopback(bad).is_err(), "{bad}");
        }
    }
}
