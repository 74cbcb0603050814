//! A bounded load generator for the collector, loopback only: real reports from the
//! real privatizer, uploaded over HTTP by concurrent clients.

use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hush_ldp::{BudgetAccount, NoiseRng};
use hush_report::{
    Catalog, DeviceMemory, DeviceSecret, KeyClass, PrivatizeRequest, RawMeasurements, Report,
    bucket_of_day, privatize,
};
use rand::SeedableRng;

use crate::tokens::{TokenKind, new_token};
use crate::{CollectorConfig, CollectorError, store};

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Base URL of the collector, e.g. `http://127.0.0.1:8600`; must be loopback.
    pub url: String,
    /// Total reports.
    pub reports: u64,
    /// Concurrent clients.
    pub concurrency: usize,
    /// Distinct devices (tokens minted for the run).
    pub devices: u64,
    /// Reports per upload request.
    pub batch: usize,
    /// Seed for the privatizer.
    pub seed: u64,
}

/// What happened.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadResult {
    /// Reports acknowledged as newly stored.
    pub accepted: u64,
    /// Reports acknowledged as already stored.
    pub duplicates: u64,
    /// Reports in requests that failed or were refused.
    pub failed: u64,
    /// Wall-clock seconds of the upload phase.
    pub seconds: f64,
    /// Acknowledged reports per second.
    pub reports_per_second: f64,
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

/// Mints device tokens, builds reports, and uploads them. Every acknowledged report
/// id is written to `acked` (one hex id per line) as soon as its request succeeds.
pub fn run(
    config: &CollectorConfig,
    plan: &LoadPlan,
    acked: Option<&mut (dyn Write + Send)>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<LoadResult, CollectorError> {
    check_loopback(&plan.url)?;
    if plan.devices == 0 || plan.batch == 0 || plan.concurrency == 0 {
        return Err(CollectorError::Config(
            "devices, batch and concurrency must be positive".into(),
        ));
    }
    let mut rng = NoiseRng::seed_from_u64(plan.seed);
    let conn = store::open(&config.database)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let current = (now / u64::from(config.period_seconds)) as u32;
    let tokens: Vec<String> = (0..plan.devices)
        .map(|_| {
            let t = new_token(TokenKind::Device, &mut rng);
            store::add_token(&conn, TokenKind::Device, &t, "loadgen", now as i64).map(|()| t)
        })
        .collect::<Result<_, _>>()?;
    drop(conn);

    // Device d sends its j-th report for period (current - j): one report per
    // device and period, so none conflicts.
    let catalog = Catalog::builtin();
    let per_device = plan.reports.div_ceil(plan.devices);
    if per_device > u64::from(current) {
        return Err(CollectorError::Config(
            "too many reports per device for the period range".into(),
        ));
    }
    let mut jobs: Vec<(usize, Vec<Report>)> = Vec::new();
    for d in 0..plan.devices {
        let mut mine = Vec::new();
        let mut secret = [0u8; 32];
        rand::Rng::fill_bytes(&mut rng, &mut secret);
        let mut memory = DeviceMemory::new(DeviceSecret::from_bytes(secret));
        for j in 0..per_device {
            if d * per_device + j >= plan.reports {
                break;
            }
            let mut raw = RawMeasurements::new(1440);
            for _ in 0..(j * 7 + d) % 3000 {
                raw.record_key(KeyClass::Letter);
            }
            let request = PrivatizeRequest {
                catalog: &catalog,
                period: current - j as u32,
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
            mine.push(
                privatize(raw, &request, &mut memory, &mut budget, &mut rng)
                    .map_err(|e| CollectorError::Internal(e.to_string()))?,
            );
        }
        for chunk in mine.chunks(plan.batch) {
            jobs.push((d as usize, chunk.to_vec()));
        }
    }

    let jobs = Arc::new(Mutex::new(jobs.into_iter()));
    let acked = Mutex::new(acked);
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
                    let next = jobs.lock().ok().and_then(|mut j| j.next());
                    let Some((device, reports)) = next else { break };
                    let n = reports.len() as u64;
                    let body = Report::encode_batch(&reports);
                    let response = agent
                        .post(format!("{}/v1/reports", plan.url.trim_end_matches('/')))
                        .header("Authorization", &format!("Bearer {}", tokens[device]))
                        .header("Content-Type", "application/octet-stream")
                        .send(&body[..]);
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
                                for rep in &reports {
                                    let _ = writeln!(w, "{}", rep.id());
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
    let accepted = accepted.into_inner();
    let duplicates = duplicates.into_inner();
    Ok(LoadResult {
        accepted,
        duplicates,
        failed: failed.into_inner(),
        seconds,
        reports_per_second: (accepted + duplicates) as f64 / seconds.max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
