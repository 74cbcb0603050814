//! The uploader: batches queued reports to the collector over HTTPS (or loopback
//! HTTP), removes them only once acknowledged, and backs off when it cannot.

use std::path::Path;
use std::time::Duration;

use hush_report::Report;
use rand::CryptoRng;

use crate::outbox::{Outbox, SentStatus, log_sent};
use crate::{AgentError, AgentPaths, Enrollment};

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
