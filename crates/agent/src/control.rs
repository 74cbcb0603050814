//! The person's controls: enroll (on the person's terms), status, pause, resume, forget.

use hush_report::Catalog;

use crate::daemon::{period_of, unix_now};
use crate::durable::{atomic_write, sync_dir};
use crate::enrollment::{CONSENT_VERSION, Policy, Terms};
use crate::outbox::{Outbox, SentStatus, read_sent};
use crate::uploader::http_agent;
use crate::{AgentConfig, AgentError, AgentPaths, Enrollment, Ledger};

/// Whether development periods (shorter than a day) are allowed: only with
/// `HUSH_AGENT_DEV_PERIODS=1` in the agent's own environment, for tests and
/// demos. `status` and every log line then say so.
pub fn dev_periods() -> bool {
    std::env::var_os("HUSH_AGENT_DEV_PERIODS").is_some_and(|v| v == "1")
}

/// The shortest period the agent accepts without development periods: a day.
pub const MIN_PERIOD_SECONDS: u32 = 86_400;

/// Checks a collector URL: `https://`, or plain `http://` only when the parsed
/// host is a loopback address or exactly `localhost`. No user information
/// (`user@host`), which would hide the real host from a prefix check.
pub fn check_collector_url(collector: &str) -> Result<String, AgentError> {
    let bad = |why: &str| {
        AgentError::Config(format!(
            "collector must be an https:// URL (plain http only on this computer's loopback): {collector} {why}"
        ))
    };
    let url = collector.trim().trim_end_matches('/');
    let uri: ureq::http::Uri = url.parse().map_err(|_| bad("is not a URL"))?;
    let authority = uri.authority().ok_or_else(|| bad("has no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("names a user before its host"));
    }
    // The whole authority must be the host and port the parser found, so a
    // name the parser reads partly (`[::1].attacker.example`) is refused.
    let rebuilt = match authority.port() {
        Some(port) => format!("{}:{}", authority.host(), port.as_str()),
        None => authority.host().to_owned(),
    };
    if rebuilt != authority.as_str() {
        return Err(bad("has a host that does not parse cleanly"));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("https") => Ok(url.to_owned()),
        Some("http") if loopback => Ok(url.to_owned()),
        Some("http") => Err(bad("is plain http to another computer")),
        _ => Err(bad("has neither https nor http")),
    }
}

/// Checks a collector's policy against the person's own terms, and returns the
/// terms to enroll under. The person's caps win whatever the policy says.
pub fn accept_policy(policy: &Policy, config: &AgentConfig) -> Result<Terms, AgentError> {
    let refuse = |why: String| {
        Err(AgentError::Config(format!(
            "refused the collector's terms: {why}"
        )))
    };
    let valid = |e: f64| e.is_finite() && e > 0.0;
    if !valid(policy.epsilon_1)
        || !valid(policy.epsilon_perm)
        || policy.epsilon_1 >= policy.epsilon_perm
    {
        return refuse(format!(
            "epsilon {} per report and {} per value are not valid two-layer terms",
            policy.epsilon_1, policy.epsilon_perm
        ));
    }
    if policy.epsilon_1 > config.max_epsilon_per_report * (1.0 + 1e-12) {
        return refuse(format!(
            "it asks epsilon {} per report; your cap is {} (max_epsilon_per_report)",
            policy.epsilon_1, config.max_epsilon_per_report
        ));
    }
    if policy.epsilon_perm > config.max_epsilon_per_value * (1.0 + 1e-12) {
        return refuse(format!(
            "it asks epsilon {} per value; your cap is {} (max_epsilon_per_value)",
            policy.epsilon_perm, config.max_epsilon_per_value
        ));
    }
    if policy.period_seconds == 0 {
        return refuse("a period of 0 seconds".into());
    }
    if policy.period_seconds < MIN_PERIOD_SECONDS && !dev_periods() {
        return refuse(format!(
            "it asks for a report every {} seconds; Hush reports at most once a day, because every report reveals up to epsilon {} more (HUSH_AGENT_DEV_PERIODS=1 allows short periods for tests and demos)",
            policy.period_seconds, policy.epsilon_1
        ));
    }
    Ok(Terms {
        epsilon_1: policy.epsilon_1,
        epsilon_perm: policy.epsilon_perm,
        period_seconds: policy.period_seconds,
    })
}

/// Fetches a collector's policy.
pub fn fetch_policy(config: &AgentConfig, url: &str) -> Result<Policy, AgentError> {
    crate::uploader::get_policy(&http_agent(config.ca_cert.as_deref())?, url)
}

/// A collector's checked offer: where, and the terms the person will be asked to consent to.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// The collector's base URL, checked.
    pub collector: String,
    /// Its terms, within the person's caps.
    pub terms: Terms,
}

/// Asks the collector for its policy and checks it against the person's terms
/// and this agent's catalog: what the person then consents to.
pub fn offer(config: &AgentConfig, collector: &str) -> Result<Offer, AgentError> {
    let url = check_collector_url(collector)?;
    let policy = fetch_policy(config, &url)?;
    let ours = Catalog::builtin().hash().to_string();
    if !policy.catalogs.contains(&ours) {
        return Err(AgentError::Config(format!(
            "the collector does not accept this agent's metric catalog {ours}; upgrade one of them"
        )));
    }
    Ok(Offer {
        collector: url,
        terms: accept_policy(&policy, config)?,
    })
}

/// Records an enrollment under an offer the person consented to. Enrolling
/// again (new terms, new collector) needs that consent again; the ledger and
/// its spending history carry over.
pub fn enroll(paths: &AgentPaths, offer: &Offer, token: &str) -> Result<Enrollment, AgentError> {
    if token.trim().is_empty() {
        return Err(AgentError::Config("the device token is empty".into()));
    }
    let enrollment = Enrollment {
        collector: offer.collector.clone(),
        token: token.trim().to_owned(),
        terms: offer.terms,
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
    /// Whether development periods (shorter than a day) are on.
    pub development_periods: bool,
    /// Current period id.
    pub period: u32,
    /// The period length in seconds.
    pub period_seconds: u32,
    /// What one report reveals (`epsilon_1`), if enrolled.
    pub epsilon_per_report: Option<f64>,
    /// What all reports about one unchanged value reveal (`epsilon_perm`), if enrolled.
    pub epsilon_per_value: Option<f64>,
    /// The most all of a year's reports may reveal: every measure's new values at the cap.
    pub epsilon_per_year_cap: Option<f64>,
    /// What the last 365 days of reports can reveal at most: the permanent
    /// draws they can have used (basic composition).
    pub epsilon_past_year: f64,
    /// Per measure: the values the last 365 days of reports can have shown, and their epsilon.
    pub draws: Vec<MetricSpending>,
    /// The person's cap of values per measure in any 365 days of reports.
    pub max_values_per_year: u32,
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

/// One measure's spending over the last 365 days of reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MetricSpending {
    /// The measure (named like its count or bucket metric; a count's
    /// distribution draws under it too).
    pub metric: String,
    /// Values (each a permanent response) those reports can have shown.
    pub values: u32,
    /// Their epsilon together.
    pub epsilon: f64,
}

/// The accounting bucket of today.
fn bucket_now() -> u32 {
    hush_report::bucket_of_day((unix_now() / 86_400) as u32)
}

/// An epsilon as the person reads it: three decimals at most, no trailing
/// zeros (`hush agent status` and the person's page).
pub fn epsilon_text(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Reads the agent's state.
pub fn status(paths: &AgentPaths, config: &AgentConfig) -> Result<Status, AgentError> {
    let enrollment = Enrollment::load(paths)?;
    let period_seconds = enrollment
        .as_ref()
        .map_or(86_400, |e| e.terms.period_seconds);
    let period = period_of(unix_now(), period_seconds);
    let ledger = Ledger::load(paths)?;
    let sent = read_sent(paths)?;
    let catalog = crate::ranges::Ranges::load(paths)?.current_catalog();
    let bucket = bucket_now();
    // Draws are counted per measure: a count's mean and distribution share them.
    let draws = catalog
        .measures()
        .iter()
        .map(|m| MetricSpending {
            metric: m.name().to_owned(),
            values: ledger.lifetime.draws_in_year(m.name(), bucket),
            epsilon: ledger.lifetime.spent_in_year(m.name(), bucket),
        })
        .collect();
    let terms = enrollment.as_ref().map(|e| e.terms);
    Ok(Status {
        enrolled: enrollment.map(|e| e.collector),
        paused: paths.paused().exists(),
        development_periods: period_seconds < MIN_PERIOD_SECONDS,
        period,
        period_seconds,
        epsilon_per_report: terms.map(|t| t.epsilon_1),
        epsilon_per_value: terms.map(|t| t.epsilon_perm),
        epsilon_per_year_cap: terms.map(|t| t.per_year(config, catalog.measures().len())),
        epsilon_past_year: ledger.lifetime.total_in_year(bucket),
        draws,
        max_values_per_year: config.max_values_per_year,
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

/// Deletes the device secret and its draw tags (the next report draws a new
/// secret) and the queued reports. The ledger stays: the spending history and
/// which periods were reported hold no measurements, and keeping them is what
/// makes forgetting unable to reset the yearly budget or to send a second
/// report in a period. The enrollment and the sent log stay too (the sent log
/// records what the collector already has; delete it by hand if wanted).
///
/// A running agent holds the home's lock: then `forget` leaves it a request
/// and waits (up to `wait`) for it to carry it out between two of its own
/// writes, instead of racing them.
pub fn forget(paths: &AgentPaths, wait: std::time::Duration) -> Result<Forgotten, AgentError> {
    if let Some(_lock) = crate::lock::HomeLock::try_acquire(paths)? {
        forget_locked(paths)?;
        // An older request nobody carried out is carried out now.
        remove_request(paths)?;
        return Ok(Forgotten::Now);
    }
    atomic_write(&paths.forget_request(), b"forget\n")?;
    let start = std::time::Instant::now();
    while start.elapsed() < wait {
        if !paths.forget_request().exists() {
            return Ok(Forgotten::ByTheRunningAgent);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The holder may have been a moment's look or an agent that stopped
    // since: with the lock free, carry the request out here rather than
    // leave it for a later agent to find after it made new reports.
    if !paths.forget_request().exists() {
        return Ok(Forgotten::ByTheRunningAgent);
    }
    if let Some(_lock) = crate::lock::HomeLock::try_acquire(paths)? {
        if !paths.forget_request().exists() {
            // Carried out by the agent just before it let go.
            return Ok(Forgotten::ByTheRunningAgent);
        }
        forget_locked(paths)?;
        remove_request(paths)?;
        return Ok(Forgotten::Now);
    }
    Err(AgentError::Config(format!(
        "the running agent did not carry out the request within {} s; it stays in {} and is carried out when the agent next looks",
        wait.as_secs(),
        paths.forget_request().display()
    )))
}

/// Deletes a forget request, if there is one, durably.
fn remove_request(paths: &AgentPaths) -> Result<(), AgentError> {
    match std::fs::remove_file(paths.forget_request()) {
        Ok(()) => Ok(sync_dir(&paths.data)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Who carried out a `forget`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgotten {
    /// This process, no agent running.
    Now,
    /// The running agent, at this process's request.
    ByTheRunningAgent,
}

/// [`forget`]'s deletions, by whoever holds the home's lock.
pub(crate) fn forget_locked(paths: &AgentPaths) -> Result<(), AgentError> {
    crate::device::rotate(paths)?;
    match std::fs::remove_dir_all(paths.outbox()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    if paths.data.exists() {
        sync_dir(&paths.data)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_reaches_this_computer() {
        for ok in [
            "https://collector.example",
            "https://collector.example:8443/",
            "http://localhost:8600",
            "http://127.0.0.1:8600",
            "http://127.9.9.9",
            "http://[::1]:8600",
        ] {
            assert!(check_collector_url(ok).is_ok(), "{ok}");
        }
        // A prefix check passed all of these; the parsed host does not.
        for bad in [
            "http://localhost.attacker.example",
            "http://localhost@attacker.example",
            "http://127.0.0.1@attacker.example",
            "http://127.0.0.1.attacker.example",
            "http://[::1].attacker.example",
            "http://10.0.0.5:8600",
            "https://user@collector.example",
            "ftp://localhost",
            "localhost:8600",
            "",
        ] {
            assert!(check_collector_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_persons_caps_bound_the_terms() {
        let config = AgentConfig::default();
        let policy = |one, perm, period| Policy {
            epsilon_1: one,
            epsilon_perm: perm,
            period_seconds: period,
            catalogs: Vec::new(),
            ranges: None,
        };
        let t = accept_policy(&policy(2.0, 4.0, 86_400), &config).unwrap();
        assert_eq!(
            (t.epsilon_1, t.epsilon_perm, t.period_seconds),
            (2.0, 4.0, 86_400)
        );
        assert!(accept_policy(&policy(2.5, 4.0, 86_400), &config).is_err());
        assert!(accept_policy(&policy(2.0, 5.0, 86_400), &config).is_err());
        assert!(accept_policy(&policy(2.0, 2.0, 86_400), &config).is_err());
        assert!(accept_policy(&policy(f64::NAN, 4.0, 86_400), &config).is_err());
        // Lower terms are fine: more private than the person asked.
        assert!(accept_policy(&policy(1.0, 2.0, 86_400), &config).is_ok());
        if !dev_periods() {
            assert!(accept_policy(&policy(2.0, 4.0, 3_600), &config).is_err());
        }
    }

    #[test]
    fn a_forget_no_agent_carries_out_is_done_here_once_the_lock_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let paths = AgentPaths::in_home(dir.path());
        crate::device::load_or_create_secret(&paths).unwrap();
        // Someone holds the lock for a moment and never looks at requests.
        let held = crate::lock::HomeLock::acquire(&paths).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(held);
        });
        let by = forget(&paths, std::time::Duration::from_secs(1)).unwrap();
        release.join().unwrap();
        assert_eq!(by, Forgotten::Now);
        assert!(!paths.secret().exists(), "the secret is deleted");
        assert!(
            !paths.forget_request().exists(),
            "no request is left for a later agent"
        );
    }
}
