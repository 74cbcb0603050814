//! The person's controls: enroll, status, pause, resume, forget.

use hush_report::Catalog;

use crate::daemon::{period_of, unix_now};
use crate::durable::{atomic_write, sync_dir};
use crate::enrollment::{CONSENT_VERSION, Policy};
use crate::outbox::{Outbox, SentStatus, read_sent};
use crate::uploader::http_agent;
use crate::{AgentConfig, AgentError, AgentPaths, Enrollment, Ledger};

/// Asks the collector for its policy and records the enrollment. The caller has
/// already obtained the person's consent.
pub fn enroll(
    paths: &AgentPaths,
    config: &AgentConfig,
    collector: &str,
    token: &str,
) -> Result<Enrollment, AgentError> {
    let url = collector.trim_end_matches('/');
    if !(url.starts_with("https://")
        || url.starts_with("http://127.")
        || url.starts_with("http://localhost")
        || url.starts_with("http://[::1]"))
    {
        return Err(AgentError::Config(format!(
            "collector must be an https:// URL (plain http only on loopback), got {collector}"
        )));
    }
    if token.trim().is_empty() {
        return Err(AgentError::Config("the device token is empty".into()));
    }
    let agent = http_agent(config.ca_cert.as_deref())?;
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
    let policy: Policy = serde_json::from_str(&text).map_err(|e| {
        AgentError::Network(format!("{url} did not answer like a Hush collector: {e}"))
    })?;
    let ours = Catalog::default_v1().hash().to_string();
    if !policy.catalogs.contains(&ours) {
        return Err(AgentError::Config(format!(
            "the collector does not accept this agent's metric catalog {ours}; upgrade one of them"
        )));
    }
    if !(policy.epsilon_cap.is_finite() && policy.epsilon_cap > 0.0) || policy.period_seconds == 0 {
        return Err(AgentError::Network(
            "the collector's policy is invalid".into(),
        ));
    }
    let enrollment = Enrollment {
        collector: url.to_owned(),
        token: token.trim().to_owned(),
        epsilon_cap: policy.epsilon_cap,
        period_seconds: policy.period_seconds,
        consented_at: unix_now(),
        consent_version: CONSENT_VERSION,
    };
    enrollment.save(paths)?;
    Ok(enrollment)
}

/// What `hush agent status` shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Status {
    /// Collector URL if enrolled.
    pub enrolled: Option<String>,
    /// Whether capture is paused.
    pub paused: bool,
    /// Current period id.
    pub period: u32,
    /// The per-period budget in force.
    pub epsilon_per_period: f64,
    /// Budget left in the current period.
    pub budget_left: f64,
    /// Whether this period's report was already produced.
    pub reported_this_period: bool,
    /// Reports waiting for upload.
    pub queued: usize,
    /// Reports sent so far.
    pub sent: usize,
    /// Reports the collector refused.
    pub refused: usize,
    /// Unix time of the last acknowledged upload.
    pub last_upload: Option<u64>,
}

/// Reads the agent's state.
pub fn status(paths: &AgentPaths, config: &AgentConfig) -> Result<Status, AgentError> {
    let enrollment = Enrollment::load(paths)?;
    let period_seconds = enrollment.as_ref().map_or(86_400, |e| e.period_seconds);
    let epsilon = enrollment.as_ref().map_or(config.epsilon_per_period, |e| {
        config.epsilon_per_period.min(e.epsilon_cap)
    });
    let period = period_of(unix_now(), period_seconds);
    let ledger = Ledger::load(paths)?;
    let sent = read_sent(paths)?;
    Ok(Status {
        enrolled: enrollment.map(|e| e.collector),
        paused: paths.paused().exists(),
        period,
        epsilon_per_period: epsilon,
        budget_left: ledger.remaining(period, epsilon)?,
        reported_this_period: ledger.reported(period),
        queued: Outbox::new(paths, config.outbox_max_reports).ids()?.len(),
        sent: sent.iter().filter(|e| e.status == SentStatus::Sent).count(),
        refused: sent
            .iter()
            .filter(|e| e.status == SentStatus::Refused)
            .count(),
        last_upload: sent
            .iter()
            .filter(|e| e.status == SentStatus::Sent)
            .map(|e| e.at)
            .max(),
    })
}

/// Pauses capture (takes effect within a second in a running agent).
pub fn pause(paths: &AgentPaths) -> Result<(), AgentError> {
    atomic_write(
        &paths.paused(),
        format!("paused at {}\n", unix_now()).as_bytes(),
    )?;
    Ok(())
}

/// Resumes capture.
pub fn resume(paths: &AgentPaths) -> Result<(), AgentError> {
    match std::fs::remove_file(paths.paused()) {
        Ok(()) => Ok(sync_dir(&paths.data)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the memo, the queued reports and the ledger's history. The current
/// period is then marked as spent, so forgetting cannot be used to send a second
/// report in the same period. The enrollment and the sent log stay (the sent log
/// records what the collector already has; delete it by hand if wanted).
pub fn forget(paths: &AgentPaths, config: &AgentConfig) -> Result<(), AgentError> {
    let enrollment = Enrollment::load(paths)?;
    for file in [paths.memo(), paths.ledger()] {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    match std::fs::remove_dir_all(paths.outbox()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    if let Some(e) = enrollment {
        let epsilon = config.epsilon_per_period.min(e.epsilon_cap);
        Ledger::default().exhaust(paths, period_of(unix_now(), e.period_seconds), epsilon)?;
    }
    if paths.data.exists() {
        sync_dir(&paths.data)?;
    }
    Ok(())
}
