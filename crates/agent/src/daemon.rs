//! `hush agent run`: capture -> windows -> one privatized report per period ->
//! outbox -> uploader, until stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hush_capture::{CaptureThread, Epoch, EventSource, channel};
use hush_report::{PrivatizeError, PrivatizeRequest, RawMeasurements, bucket_of_day, privatize};
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;

use crate::device::{load_memory, os_random, save_tags};
use crate::enrollment::Terms;
use crate::lock::HomeLock;
use crate::outbox::Outbox;
use crate::period::{Pause, PeriodBuilder};
use crate::ranges::Ranges;
use crate::uploader::{UploadLoop, Uploader};
use crate::{AgentConfig, AgentError, AgentPaths, Enrollment, Ledger};

/// How often the main loop takes the interactions queued by the capture thread.
const TICK: Duration = Duration::from_millis(250);

/// How many periods back the agent reports periods it missed (the laptop was
/// off). The oldest is uploaded during the period after the catch-up, so it
/// arrives 7 periods after its own: within the collector's default grace
/// window of 7, which a backfill of 7 would overrun by one.
pub const MISSED_PERIODS: u32 = 6;

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    unix_now_ms() / 1000
}

/// Milliseconds since the Unix epoch.
fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The period containing `unix` seconds.
pub fn period_of(unix: u64, period_seconds: u32) -> u32 {
    (unix / u64::from(period_seconds.max(1))) as u32
}

/// Everything `run` needs besides the event source.
#[derive(Debug, Clone)]
pub struct Agent {
    /// Where files live.
    pub paths: AgentPaths,
    /// Settings.
    pub config: AgentConfig,
    /// Collector and token.
    pub enrollment: Enrollment,
}

/// A generator for one report's instantaneous noise, seeded from the operating
/// system for that report alone: no long-lived generator whose state a core
/// dump or a hibernation image could replay.
pub fn report_rng() -> Result<ChaCha20Rng, AgentError> {
    Ok(ChaCha20Rng::from_seed(os_random::<32>()?))
}

impl Agent {
    /// The terms reports are made under: the enrollment's, which must still be
    /// within the person's caps (they may have lowered them since).
    pub fn terms(&self) -> Result<Terms, AgentError> {
        let t = self.enrollment.terms;
        if t.epsilon_1 > self.config.max_epsilon_per_report * (1.0 + 1e-12)
            || t.epsilon_perm > self.config.max_epsilon_per_value * (1.0 + 1e-12)
        {
            return Err(AgentError::Config(format!(
                "the collector's terms (epsilon {} per report, {} per value) are above your caps ({} and {} in {}); enroll again or raise them",
                t.epsilon_1,
                t.epsilon_perm,
                self.config.max_epsilon_per_report,
                self.config.max_epsilon_per_value,
                self.paths.config.display()
            )));
        }
        Ok(t)
    }

    fn paused(&self) -> bool {
        self.paths.paused().exists()
    }

    /// Runs until `stop` is set (or the display is lost). Raw measurements live
    /// only in this function's memory: at a period's end they are consumed by
    /// the privatizer, and on shutdown the current period's are dropped.
    ///
    /// Holds the home's lock throughout (one agent per home). Every period is
    /// reported, paused or idle, and periods the agent missed (the laptop was
    /// off or asleep) are reported with what was measured in them, nothing, up
    /// to [`MISSED_PERIODS`] back: whether a report comes says nothing.
    pub fn run<S: EventSource>(&self, source: S, stop: Arc<AtomicBool>) -> Result<(), AgentError> {
        let _lock = HomeLock::acquire(&self.paths)?;
        crate::hardening::disable_core_dumps()?;
        let terms = self.terms()?;
        let development = terms.period_seconds < crate::control::MIN_PERIOD_SECONDS;
        // Every log line of a run with short periods says so.
        let _span = development.then(|| {
            tracing::warn_span!("development_periods", seconds = terms.period_seconds).entered()
        });
        let epoch = Epoch::now();
        let (sink, stream) = channel(4096);
        let mut capture = CaptureThread::spawn(source, sink)?;
        let upload = UploadLoop::start(
            Uploader::new(&self.enrollment, self.config.ca_cert.as_deref())?,
            self.paths.clone(),
            &self.config,
            terms,
        )?;

        let window_ms = self.config.window_seconds.saturating_mul(1000);
        let paused = self.paused();
        let mut gathering = PeriodBuilder::new(
            period_of(unix_now(), terms.period_seconds),
            terms.period_seconds,
            window_ms,
            epoch.elapsed_ms(),
        )?;
        let mut pause = Pause {
            paused,
            since_ms: 0,
        };
        let mut last_check = Instant::now();
        tracing::info!(
            period = gathering.period,
            epsilon_1 = terms.epsilon_1,
            epsilon_perm = terms.epsilon_perm,
            "agent running"
        );
        // A forget asked for while no agent ran is carried out before any
        // report is made with the secret it deletes.
        if self.paths.forget_request().exists() {
            self.forget_now()?;
        }
        self.catch_up(gathering.period, &upload)?;
        while !stop.load(Ordering::SeqCst) {
            // Wake a few times a second and take everything queued since, rather
            // than being woken for every event: while typing that halves the
            // context switches. Interactions carry their own timestamps, so the
            // windows come out as if each were handled on arrival; the channel
            // holds 4096, far more than a tick's worth.
            thread::sleep(TICK);
            let arrived = stream
                .receiver()
                .try_iter()
                .filter(|i| pause.counts(i.at_ms));
            let closed = gathering.tick(arrived, epoch.elapsed_ms(), unix_now_ms())?;
            if capture.ended()? {
                tracing::info!("the event source ended; periods continue on schedule");
            }
            if last_check.elapsed() > Duration::from_secs(1) {
                last_check = Instant::now();
                pause.set(self.paused(), epoch.elapsed_ms());
                if self.paths.forget_request().exists() {
                    self.forget_now()?;
                }
            }
            if let Some(closed) = closed {
                self.produce(closed.period, closed.raw)?;
                upload.queued(closed.period);
                // After a suspend the next period may be days later.
                self.catch_up(gathering.period, &upload)?;
            }
        }
        tracing::info!(
            "stopping; this period's measurements are discarded, queued reports stay queued"
        );
        upload.finish();
        Ok(())
    }

    /// Reports, with empty measurements, the periods before `current` that were
    /// not reported, from the enrollment on and at most [`MISSED_PERIODS`] back.
    fn catch_up(&self, current: u32, upload: &UploadLoop) -> Result<(), AgentError> {
        let ledger = Ledger::load(&self.paths)?;
        let seconds = self.enrollment.terms.period_seconds;
        let enrolled = period_of(self.enrollment.consented_at, seconds);
        let after_last = ledger.last_period().map_or(0, |p| p.saturating_add(1));
        let from = current
            .saturating_sub(MISSED_PERIODS)
            .max(enrolled)
            .max(after_last);
        for period in from..current {
            if !Ledger::load(&self.paths)?.reported(period) {
                tracing::debug!(
                    period,
                    "a period the agent missed: reporting it with nothing measured"
                );
                self.produce(period, RawMeasurements::new(0))?;
                upload.queued(period);
            }
        }
        Ok(())
    }

    /// Carries out a `forget` that a person asked for while this agent ran.
    fn forget_now(&self) -> Result<(), AgentError> {
        crate::control::forget_locked(&self.paths)?;
        std::fs::remove_file(self.paths.forget_request())?;
        tracing::info!(
            "forgotten: device secret and queued reports deleted, spending history kept"
        );
        Ok(())
    }

    /// Privatizes a finished period. The ledger (the period's charge and any new
    /// permanent draw) is durable before the draw tags, and both before the
    /// report is written to the outbox; the report is durable in the outbox
    /// before it counts as produced. A crash in between can only overcount.
    pub fn produce(&self, period: u32, raw: RawMeasurements) -> Result<(), AgentError> {
        self.produce_with(period, raw, &mut report_rng()?)
    }

    /// [`Agent::produce`] with the instantaneous noise drawn from `rng`: for
    /// simulations that must be reproducible (the demo); the agent itself
    /// draws a fresh OS-seeded generator for every report.
    pub fn produce_with<R: rand::CryptoRng + ?Sized>(
        &self,
        period: u32,
        raw: RawMeasurements,
        rng: &mut R,
    ) -> Result<(), AgentError> {
        let terms = self.terms()?;
        let mut ledger = Ledger::load(&self.paths)?;
        if ledger.reported(period) {
            tracing::debug!(period, "this period's report was already produced");
            return Ok(());
        }
        let mut account = ledger.account(period, terms.epsilon_1)?;
        let mut memory = load_memory(&self.paths, ledger.lifetime.clone())?;
        let day = u64::from(period) * u64::from(terms.period_seconds) / 86_400;
        let day = u32::try_from(day).unwrap_or(u32::MAX);
        let catalog = Ranges::catalog_for(&self.paths, bucket_of_day(day))?;
        let request = PrivatizeRequest {
            catalog: &catalog,
            period,
            period_seconds: terms.period_seconds,
            epsilon: terms.epsilon_1,
            epsilon_perm: terms.epsilon_perm,
            max_draws: hush_report::draws_per_window(self.config.max_values_per_year),
            bucket: bucket_of_day(day),
            agent_version: env!("CARGO_PKG_VERSION"),
        };
        let report = match privatize(raw, &request, &mut memory, &mut account, rng) {
            Ok(r) => r,
            Err(e @ PrivatizeError::Budget(_)) => {
                tracing::warn!(period, "no report this period: {e}");
                ledger.record(&self.paths, period, &account, true)?;
                return Ok(());
            }
            Err(e) => return Err(AgentError::Privatize(e)),
        };
        ledger.lifetime = memory.lifetime;
        ledger.record(&self.paths, period, &account, true)?;
        save_tags(&self.paths, &memory.tags)?;
        Outbox::new(&self.paths, self.config.outbox_max_reports).push(&report)?;
        let names: Vec<&str> = report
            .metrics()
            .iter()
            .filter_map(|m| {
                catalog
                    .metrics()
                    .get(usize::from(m.metric()))
                    .map(|x| x.name)
            })
            .collect();
        // Per-period lines are debug: the service log (journald, ~/Library/Logs) is
        // kept on disk and often shipped off the laptop.
        tracing::debug!(period, report = %report.id(), metrics = ?names, epsilon = report.epsilon(), "report produced");
        Ok(())
    }
}
