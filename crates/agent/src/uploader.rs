//! The uploader: batches queued reports to the collector over HTTPS (or loopback
//! HTTP), removes them only once acknowledged, and backs off when it cannot; and
//! the thread that runs it beside the daemon's main loop.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use hush_report::Report;
use rand::CryptoRng;

use crate::daemon::unix_now;
use crate::outbox::{Outbox, SentStatus, log_sent};
use crate::{AgentConfig, AgentError, AgentPaths, Enrollment};

/// Reports per upload request.
pub const BATCH: usize = 100;

/// What one upload request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadOutcome {
    /// Stored (or already stored) by the collector.
    Acknowledged,
    /// Refused for good (4xx): the reports must not be sent again as they are.
    Refused {
        /// HTTP status.
        status: u16,
        /// The collector's reason.
        reason: String,
    },
    /// Not stored now (network error, 5xx, 429): try again later.
    Retry(String),
}

/// An HTTP client bound to one collector and device token.
#[derive(Debug, Clone)]
pub struct Uploader {
    agent: ureq::Agent,
    url: String,
    token: String,
}

impl Uploader {
    /// A client for the enrolled collector, trusting the extra CA in `ca_cert` if given.
    pub fn new(enrollment: &Enrollment, ca_cert: Option<&Path>) -> Result<Uploader, AgentError> {
        Ok(Uploader {
            agent: http_agent(ca_cert)?,
            url: enrollment.collector.trim_end_matches('/').to_owned(),
            token: enrollment.token.clone(),
        })
    }

    /// Sends one batch.
    pub fn upload(&self, reports: &[Report]) -> UploadOutcome {
        let body = Report::encode_batch(reports);
        let response = self
            .agent
            .post(format!("{}/v1/reports", self.url))
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", "application/octet-stream")
            .send(&body[..]);
        match response {
            Ok(mut r) => {
                let status = r.status().as_u16();
                let text = r.body_mut().read_to_string().unwrap_or_default();
                match status {
                    200..=299 => UploadOutcome::Acknowledged,
                    408 | 429 => UploadOutcome::Retry(format!("{status}: {text}")),
                    400..=499 => UploadOutcome::Refused {
                        status,
                        reason: text,
                    },
                    _ => UploadOutcome::Retry(format!("{status}: {text}")),
                }
            }
            Err(e) => UploadOutcome::Retry(e.to_string()),
        }
    }
}

/// An HTTP client with certificate verification against the web PKI roots, or
/// against the given PEM roots for a private collector.
pub fn http_agent(ca_cert: Option<&Path>) -> Result<ureq::Agent, AgentError> {
    let mut builder = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)));
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path)
            .map_err(|e| AgentError::Config(format!("ca_cert {}: {e}", path.display())))?;
        let certs: Vec<_> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(AgentError::Config(format!(
                "ca_cert {}: no certificate in it",
                path.display()
            )));
        }
        builder = builder.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                .build(),
        );
    }
    Ok(builder.build().into())
}

/// What a flush did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushSummary {
    /// Reports acknowledged and logged as sent.
    pub sent: usize,
    /// Reports refused for good and dropped.
    pub refused: usize,
    /// Reports still queued.
    pub pending: usize,
    /// Why the flush stopped early, if it did.
    pub retry: Option<String>,
}

/// Uploads everything queued, oldest first. An acknowledged report is logged as
/// sent before it is removed from the outbox, so a crash in between causes a
/// harmless retry (the collector acknowledges a known id without recounting).
pub fn flush(
    uploader: &Uploader,
    outbox: &Outbox,
    paths: &AgentPaths,
    now: u64,
) -> Result<FlushSummary, AgentError> {
    let mut summary = FlushSummary::default();
    let ids = outbox.ids()?;
    for chunk in ids.chunks(BATCH) {
        let mut reports = Vec::with_capacity(chunk.len());
        for &id in chunk {
            if let Some(r) = outbox.load(id)? {
                reports.push(r);
            }
        }
        if reports.is_empty() {
            continue;
        }
        match uploader.upload(&reports) {
            UploadOutcome::Acknowledged => {
                for r in &reports {
                    log_sent(paths, now, SentStatus::Sent, r)?;
                    outbox.remove(r.id())?;
                }
                summary.sent += reports.len();
            }
            UploadOutcome::Refused { status, reason } if reports.len() > 1 => {
                // One bad report must not block the rest: send them one by one.
                tracing::warn!(
                    status,
                    "batch refused ({reason}); retrying report by report"
                );
                for r in &reports {
                    match uploader.upload(std::slice::from_ref(r)) {
                        UploadOutcome::Acknowledged => {
                            log_sent(paths, now, SentStatus::Sent, r)?;
                            outbox.remove(r.id())?;
                            summary.sent += 1;
                        }
                        UploadOutcome::Refused { status, reason } => {
                            refuse(paths, outbox, now, r, status, &reason)?;
                            summary.refused += 1;
                        }
                        UploadOutcome::Retry(why) => {
                            summary.retry = Some(why);
                            break;
                        }
                    }
                }
            }
            UploadOutcome::Refused { status, reason } => {
                refuse(paths, outbox, now, &reports[0], status, &reason)?;
                summary.refused += 1;
            }
            UploadOutcome::Retry(why) => {
                summary.retry = Some(why);
            }
        }
        if summary.retry.is_some() {
            break;
        }
    }
    summary.pending = outbox.ids()?.len();
    Ok(summary)
}

fn refuse(
    paths: &AgentPaths,
    outbox: &Outbox,
    now: u64,
    r: &Report,
    status: u16,
    reason: &str,
) -> Result<(), AgentError> {
    tracing::error!(report = %r.id(), status, "the collector refused a report for good ({reason}); dropping it");
    log_sent(paths, now, SentStatus::Refused, r)?;
    outbox.remove(r.id())
}

/// Exponential backoff with jitter between failed uploads.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// First retry after about 5 s, doubling to at most an hour.
    const BASE: Duration = Duration::from_secs(5);
    const MAX: Duration = Duration::from_secs(3600);

    /// Records a failure and returns how long to wait: the doubled delay times a
    /// random factor in [0.5, 1.5), so a fleet that lost the collector together
    /// does not come back in lockstep.
    pub fn failed<R: CryptoRng + ?Sized>(&mut self, rng: &mut R) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exp = Self::BASE.saturating_mul(1u32 << self.failures.min(12).saturating_sub(1));
        let jitter = 0.5 + (rng.next_u32() as f64 / f64::from(u32::MAX));
        exp.min(Self::MAX).mul_f64(jitter)
    }

    /// Records a success.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }
}

/// The uploader thread: flushes the outbox every interval, when woken, and once
/// more on shutdown; backs off exponentially with jitter after failures.
///
/// It does not watch the process's stop flag: that is set by a signal, possibly
/// while the main loop is still writing a finished period to the outbox, and a
/// thread that saw it and left would miss that report. It leaves only when
/// [`UploadLoop::finish`] (or drop) asks, after the main loop's last write, and
/// only after one more flush that began after the asking.
pub(crate) struct UploadLoop {
    signal: Arc<(Mutex<Wake>, Condvar)>,
    handle: Option<thread::JoinHandle<()>>,
}

/// What the uploader thread is woken for.
struct Wake {
    /// Something new is in the outbox: flush now rather than at the interval.
    flush: bool,
    /// Flush once more, then exit.
    finish: bool,
}

impl UploadLoop {
    /// Starts the thread for `uploader`, flushing the outbox in `paths`.
    pub(crate) fn start(
        uploader: Uploader,
        paths: AgentPaths,
        config: &AgentConfig,
    ) -> Result<UploadLoop, AgentError> {
        // Jitter that a collector watching arrival times cannot predict.
        let mut rng = crate::daemon::report_rng()?;
        let interval = Duration::from_secs(config.upload_interval_seconds);
        let outbox = Outbox::new(&paths, config.outbox_max_reports);
        // Flush at once on start: reports queued by an earlier run go first.
        let signal = Arc::new((
            Mutex::new(Wake {
                flush: true,
                finish: false,
            }),
            Condvar::new(),
        ));
        let theirs = Arc::clone(&signal);
        let handle = thread::Builder::new().name("hush-upload".into()).spawn(move || {
            let mut backoff = Backoff::default();
            let mut wait = Duration::ZERO;
            loop {
                let (lock, cvar) = &*theirs;
                let Ok(mut wake) = lock.lock() else { return };
                if !wake.flush && !wake.finish {
                    wake = match cvar.wait_timeout(wake, wait) {
                        Ok((g, _)) => g,
                        Err(_) => return,
                    };
                }
                wake.flush = false;
                let last = wake.finish;
                drop(wake);
                match flush(&uploader, &outbox, &paths, unix_now()) {
                    Ok(s) if s.retry.is_none() => {
                        if s.sent > 0 {
                            tracing::info!(sent = s.sent, refused = s.refused, "uploaded");
                        }
                        backoff.succeeded();
                        wait = interval;
                    }
                    Ok(s) => {
                        wait = backoff.failed(&mut rng).min(interval.max(Duration::from_secs(1)) * 6);
                        tracing::warn!(pending = s.pending, retry_in = ?wait, "upload failed: {}", s.retry.unwrap_or_default());
                    }
                    Err(e) => {
                        wait = backoff.failed(&mut rng);
                        tracing::error!("upload error: {e}");
                    }
                }
                if last {
                    return;
                }
            }
        })?;
        Ok(UploadLoop {
            signal,
            handle: Some(handle),
        })
    }

    /// Asks for a flush now: something new is in the outbox.
    pub(crate) fn wake(&self) {
        let (lock, cvar) = &*self.signal;
        if let Ok(mut w) = lock.lock() {
            w.flush = true;
            cvar.notify_one();
        }
    }

    /// One last flush of everything queued so far, then join.
    pub(crate) fn finish(self) {
        drop(self);
    }
}

impl Drop for UploadLoop {
    /// An error return from the main loop ends the thread the same way, so no
    /// uploader outlives the agent that started it.
    fn drop(&mut self) {
        let (lock, cvar) = &*self.signal;
        if let Ok(mut w) = lock.lock() {
            w.finish = true;
            cvar.notify_one();
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    use hush_ldp::{BudgetAccount, NoiseRng};
    use hush_report::{
        Catalog, DeviceMemory, DeviceSecret, PrivatizeRequest, RawMeasurements, privatize,
    };
    use rand::SeedableRng;

    use super::*;

    /// A loopback HTTP server that acknowledges every request and tells the
    /// number of reports in each as it arrives; it holds its first answer until
    /// `release` fires.
    fn collector(release: mpsc::Receiver<()>) -> (String, mpsc::Receiver<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (seen, reports) = mpsc::channel();
        thread::spawn(move || {
            let mut first = true;
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut reader = BufReader::new(stream);
                // ureq keeps the connection alive: serve requests until it closes.
                loop {
                    let mut length = 0;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                    }
                    if line != "\r\n" {
                        break;
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    seen.send(Report::decode_batch(&body).unwrap().len())
                        .unwrap();
                    if first {
                        first = false;
                        release.recv().unwrap();
                    }
                    reader
                        .get_mut()
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .unwrap();
                }
            }
        });
        (url, reports)
    }

    fn report(period: u32, seed: u64) -> Report {
        let catalog = Catalog::builtin();
        let request = PrivatizeRequest {
            catalog: &catalog,
            period,
            period_seconds: 60,
            epsilon: 1.0,
            epsilon_perm: 2.0,
            max_draws: 8,
            bucket: 0,
            agent_version: "test",
        };
        let mut budget = BudgetAccount::new(1.0).unwrap();
        let mut rng = NoiseRng::seed_from_u64(seed);
        let mut memory = DeviceMemory::new(DeviceSecret::from_bytes([seed as u8; 32]));
        privatize(
            RawMeasurements::new(1),
            &request,
            &mut memory,
            &mut budget,
            &mut rng,
        )
        .unwrap()
    }

    /// The shutdown race of stop 9: the uploader must not leave before the main
    /// loop's last write. Here a report is queued while a flush is in flight,
    /// then `finish` is called without a wake; it must still be sent.
    #[test]
    fn finish_sends_what_was_queued_while_a_flush_was_in_flight() {
        let home = tempfile::tempdir().unwrap();
        let (release, held) = mpsc::channel();
        let (url, reports) = collector(held);
        let paths = AgentPaths::in_home(home.path());
        let enrollment = Enrollment {
            collector: url,
            token: "t".into(),
            terms: crate::enrollment::Terms {
                epsilon_1: 1.0,
                epsilon_perm: 2.0,
                period_seconds: 60,
            },
            consented_at: 0,
            consent_version: crate::CONSENT_VERSION,
        };
        let outbox = Outbox::new(&paths, 100);
        outbox.push(&report(1, 1)).unwrap();
        let uploader = Uploader::new(&enrollment, None).unwrap();
        let upload = UploadLoop::start(uploader, paths, &AgentConfig::default()).unwrap();
        let next = || reports.recv_timeout(Duration::from_secs(30)).ok();
        assert_eq!(next(), Some(1), "the start-up flush");
        // That flush now waits on the server; queue another report meanwhile.
        outbox.push(&report(2, 2)).unwrap();
        release.send(()).unwrap();
        upload.finish();
        assert_eq!(next(), Some(1), "the report queued during it");
        assert!(outbox.ids().unwrap().is_empty());
    }
}
