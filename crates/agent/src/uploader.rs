//! The uploader: batches queued reports to the collector over HTTPS (or loopback
//! HTTP), removes them only once acknowledged, and backs off when it cannot; and
//! the thread that runs it beside the daemon's main loop.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use hush_report::Report;

use crate::daemon::unix_now;
use crate::enrollment::Terms;
use crate::outbox::{Outbox, SentStatus, log_sent};
use crate::schedule::{Schedule, Step};
use crate::{AgentConfig, AgentError, AgentPaths, Enrollment, Policy};

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

    /// The collector's published policy.
    pub fn policy(&self) -> Result<Policy, AgentError> {
        get_policy(&self.agent, &self.url)
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

/// Whether a policy asks exactly the terms an enrollment consented to.
fn same_terms(policy: &Policy, terms: &Terms) -> bool {
    let same = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
    same(policy.epsilon_1, terms.epsilon_1)
        && same(policy.epsilon_perm, terms.epsilon_perm)
        && policy.period_seconds == terms.period_seconds
}

/// An HTTP client with certificate verification against the web PKI roots, or
/// against the given PEM roots for a private collector. It follows no
/// redirects: the URL the person enrolled with was checked (https, no
/// userinfo), and a redirect could lead anywhere, over plain http too.
pub fn http_agent(ca_cert: Option<&Path>) -> Result<ureq::Agent, AgentError> {
    let mut builder = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
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

/// Fetches a collector's policy (`GET /v1/policy`).
pub fn get_policy(agent: &ureq::Agent, url: &str) -> Result<Policy, AgentError> {
    let mut response = agent
        .get(format!("{url}/v1/policy"))
        .call()
        .map_err(|e| AgentError::Network(format!("cannot reach the collector at {url}: {e}")))?;
    if response.status().as_u16() != 200 {
        return Err(AgentError::Network(format!(
            "{url}/v1/policy answered {}",
            response.status()
        )));
    }
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| AgentError::Network(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| {
        AgentError::Network(format!("{url} did not answer like a Hush collector: {e}"))
    })
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

/// The uploader thread: uploads what is queued at the moments [`Schedule`]
/// draws, and after a failure tries again at a random moment of the next period.
///
/// It does not flush on shutdown: an upload when the agent stops would tell
/// the collector when the person logged out. Queued reports stay in the
/// durable outbox for the next run. It leaves when [`UploadLoop::finish`] (or
/// drop) asks.
pub(crate) struct UploadLoop {
    signal: Arc<(Mutex<Wake>, Condvar)>,
    handle: Option<thread::JoinHandle<()>>,
}

/// What the uploader thread is told.
struct Wake {
    /// Periods whose reports were queued since it last looked.
    queued: Vec<u32>,
    /// Exit.
    finish: bool,
}

/// The longest the thread sleeps at once: a suspended laptop's wall clock
/// jumps, and the thread must notice within this.
const LONGEST_SLEEP: Duration = Duration::from_secs(30);

/// Unix time in milliseconds.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl UploadLoop {
    /// Starts the thread for `uploader`, uploading the outbox in `paths` for
    /// an enrollment with periods of `period_seconds`.
    pub(crate) fn start(
        uploader: Uploader,
        paths: AgentPaths,
        config: &AgentConfig,
        terms: Terms,
    ) -> Result<UploadLoop, AgentError> {
        let period_seconds = terms.period_seconds;
        // Moments and jitter that a collector watching arrival times cannot predict.
        let mut rng = crate::daemon::report_rng()?;
        let outbox = Outbox::new(&paths, config.outbox_max_reports);
        let mut schedule = Schedule::new(period_seconds);
        if !outbox.ids()?.is_empty() {
            schedule.pending(now_ms(), &mut rng);
        }
        let signal = Arc::new((
            Mutex::new(Wake {
                queued: Vec::new(),
                finish: false,
            }),
            Condvar::new(),
        ));
        let theirs = Arc::clone(&signal);
        let handle = thread::Builder::new().name("hush-upload".into()).spawn(move || {
            let (lock, cvar) = &*theirs;
            loop {
                let Ok(mut wake) = lock.lock() else { return };
                if wake.finish {
                    return;
                }
                for period in wake.queued.drain(..) {
                    schedule.queued(period, now_ms(), &mut rng);
                }
                let wait = match schedule.step(now_ms(), &mut rng) {
                    Step::Idle => Some(LONGEST_SLEEP),
                    Step::Wait(d) => Some(d.min(LONGEST_SLEEP)),
                    Step::Send => None,
                };
                if let Some(wait) = wait {
                    let _ = cvar.wait_timeout(wake, wait);
                    continue;
                }
                drop(wake);
                // The terms are checked at the upload's own random moment (a
                // check at start-up would tell when the laptop started).
                match uploader.policy() {
                    Ok(policy) if !same_terms(&policy, &terms) => {
                        tracing::error!(
                            "the collector changed its terms (epsilon {} per report, {} per value, a report every {} s); nothing is sent until you consent again with `hush agent enroll`",
                            policy.epsilon_1, policy.epsilon_perm, policy.period_seconds
                        );
                        schedule.retry(now_ms(), &mut rng);
                        continue;
                    }
                    // New ranges take effect at the next report (a period boundary).
                    Ok(policy) => match crate::ranges::Ranges::offer(&paths, &policy) {
                        Ok(true) => tracing::info!("the collector offers new count ranges; the next report uses them"),
                        Ok(false) => {}
                        Err(e) => tracing::warn!("ignoring the collector's ranges: {e}"),
                    },
                    Err(_) => {}
                }
                match flush(&uploader, &outbox, &paths, unix_now()) {
                    Ok(s) if s.retry.is_none() => {
                        if s.sent > 0 {
                            tracing::debug!(sent = s.sent, refused = s.refused, "uploaded");
                        }
                        schedule.sent();
                    }
                    Ok(s) => {
                        tracing::warn!(pending = s.pending, "upload failed, retrying in the next period: {}", s.retry.unwrap_or_default());
                        schedule.retry(now_ms(), &mut rng);
                    }
                    Err(e) => {
                        tracing::error!("upload error, retrying in the next period: {e}");
                        schedule.retry(now_ms(), &mut rng);
                    }
                }
            }
        })?;
        Ok(UploadLoop {
            signal,
            handle: Some(handle),
        })
    }

    /// Tells the thread that `period`'s report is in the outbox.
    pub(crate) fn queued(&self, period: u32) {
        let (lock, cvar) = &*self.signal;
        if let Ok(mut w) = lock.lock() {
            w.queued.push(period);
            cvar.notify_one();
        }
    }

    /// Stops the thread (without a last upload) and joins it.
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

    #[test]
    fn a_redirect_is_not_followed() {
        // The enrolled collector answers with a redirect to another server
        // (plain http here); the agent must not go there.
        let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
        elsewhere.set_nonblocking(true).unwrap();
        let target = elsewhere.local_addr().unwrap();
        let collector = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", collector.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut stream, _) = collector.accept().unwrap();
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            write!(
                stream,
                "HTTP/1.1 302 Found\r\nLocation: http://{target}/v1/policy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
        });
        let err = get_policy(&http_agent(None).unwrap(), &url).unwrap_err();
        server.join().unwrap();
        assert!(err.to_string().contains("302"), "{err}");
        assert!(
            elsewhere.accept().is_err(),
            "the agent followed the redirect"
        );
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

    /// A loopback HTTP server that acknowledges every request and tells the
    /// number of reports in each as it arrives.
    fn collector() -> (String, mpsc::Receiver<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (seen, reports) = mpsc::channel();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut reader = BufReader::new(stream);
                // ureq keeps the connection alive: serve requests until it closes.
                loop {
                    let mut length = 0;
                    let mut line = String::new();
                    let mut get = false;
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        get |= line.starts_with("GET ");
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
                    if get {
                        // No policy here: the uploader goes ahead on its enrolled terms.
                        reader
                            .get_mut()
                            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                            .unwrap();
                        continue;
                    }
                    seen.send(Report::decode_batch(&body).unwrap().len())
                        .unwrap();
                    reader
                        .get_mut()
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .unwrap();
                }
            }
        });
        (url, reports)
    }

    /// Two-second periods: a report for the period that just ended leaves within
    /// the current one, everything queued together; stopping sends nothing.
    #[test]
    fn the_thread_uploads_at_the_drawn_moment_and_not_on_shutdown() {
        let home = tempfile::tempdir().unwrap();
        let (url, reports) = collector();
        let paths = AgentPaths::in_home(home.path());
        let enrollment = Enrollment {
            collector: url,
            token: "t".into(),
            terms: crate::enrollment::Terms {
                epsilon_1: 1.0,
                epsilon_perm: 2.0,
                period_seconds: 2,
            },
            consented_at: 0,
            consent_version: crate::CONSENT_VERSION,
        };
        let outbox = Outbox::new(&paths, 100);
        let current = (now_ms() / 2000) as u32;
        outbox.push(&report(current - 1, 1)).unwrap();
        outbox.push(&report(current - 2, 2)).unwrap();
        let uploader = Uploader::new(&enrollment, None).unwrap();
        let upload = UploadLoop::start(
            uploader,
            paths.clone(),
            &AgentConfig::default(),
            enrollment.terms,
        )
        .unwrap();
        upload.queued(current - 1);
        let got = reports.recv_timeout(Duration::from_secs(8)).unwrap();
        assert_eq!(got, 2, "one upload takes everything queued");
        // A report whose moment is far away: finishing does not send it.
        outbox.push(&report(current + 1000, 3)).unwrap();
        upload.queued(current + 1000);
        upload.finish();
        assert!(reports.recv_timeout(Duration::from_millis(300)).is_err());
        assert_eq!(
            outbox.ids().unwrap().len(),
            1,
            "it stays queued for the next run"
        );
    }
}
