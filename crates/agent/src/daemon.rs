//! `hush agent run`: capture -> windows -> one privatized report per period ->
//! outbox -> uploader, until stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hush_capture::{CaptureThread, Epoch, EventSource, channel};
use hush_ldp::NoiseRng;
use hush_report::{Catalog, Memo, PrivatizeError, PrivatizeRequest, RawMeasurements, privatize};
use rand::SeedableRng;

use crate::durable::atomic_write;
use crate::outbox::Outbox;
use crate::period::{Pause, PeriodBuilder};
use crate::uploader::{UploadLoop, Uploader};
use crate::{AgentConfig, AgentError, AgentPaths, Enrollment, Ledger};

/// How often the main loop takes the interactions queued by the capture thread.
const TICK: Duration = Duration::from_millis(250);

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

impl Agent {
    /// The epsilon of each report: the person's setting, never above the collector's cap.
    pub fn epsilon(&self) -> f64 {
        self.config
            .epsilon_per_period
            .min(self.enrollment.epsilon_cap)
    }

    fn paused(&self) -> bool {
        self.paths.paused().exists()
    }

    /// Runs until `stop` is set (or the display is lost). Raw measurements live
    /// only in this function's memory: at a period's end they are consumed by
    /// the privatizer, and on shutdown the current period's are dropped.
    pub fn run<S: EventSource>(&self, source: S, stop: Arc<AtomicBool>) -> Result<(), AgentError> {
        let mut rng = NoiseRng::try_from_rng(&mut rand::rngs::SysRng)
            .map_err(|e| AgentError::Config(format!("no operating-system randomness: {e}")))?;
        let epoch = Epoch::now();
        let (sink, stream) = channel(4096);
        let mut capture = CaptureThread::spawn(source, sink)?;
        let upload = UploadLoop::start(
            Uploader::new(&self.enrollment, self.config.ca_cert.as_deref())?,
            self.paths.clone(),
            &self.config,
            NoiseRng::from_rng(&mut rng),
        )?;

        let window_ms = self.config.window_seconds.saturating_mul(1000);
        let paused = self.paused();
        let mut gathering = PeriodBuilder::new(
            period_of(unix_now(), self.enrollment.period_seconds),
            self.enrollment.period_seconds,
            window_ms,
            epoch.elapsed_ms(),
            !paused,
        )?;
        let mut pause = Pause {
            paused,
            since_ms: 0,
        };
        let mut last_pause_check = Instant::now();
        tracing::info!(
            period = gathering.period,
            epsilon = self.epsilon(),
            "agent running"
        );
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
            if last_pause_check.elapsed() > Duration::from_secs(1) {
                last_pause_check = Instant::now();
                pause.set(self.paused(), epoch.elapsed_ms());
                if !pause.paused {
                    gathering.note_unpaused(unix_now_ms());
                }
            }
            if let Some(closed) = closed {
                if closed.ran_unpaused {
                    self.produce(closed.period, closed.raw, &mut rng)?;
                    upload.wake();
                } else {
                    tracing::info!(
                        period = closed.period,
                        "paused for the whole period: no report"
                    );
                }
            }
        }
        tracing::info!(
            "stopping; this period's measurements are discarded, queued reports stay queued"
        );
        upload.finish();
        Ok(())
    }

    /// Privatizes a finished period: the budget charge and the memo are durable
    /// before the report is written to the outbox, and the report is durable in
    /// the outbox before it counts as produced.
    pub fn produce(
        &self,
        period: u32,
        raw: RawMeasurements,
        rng: &mut NoiseRng,
    ) -> Result<(), AgentError> {
        let mut ledger = Ledger::load(&self.paths)?;
        if ledger.reported(period) {
            tracing::info!(period, "this period's report was already produced");
            return Ok(());
        }
        let epsilon = self.epsilon();
        let mut account = ledger.account(period, epsilon)?;
        let mut memo = load_memo(&self.paths)?;
        let catalog = Catalog::default_v1();
        let request = PrivatizeRequest {
            catalog: &catalog,
            period,
            period_seconds: self.enrollment.period_seconds,
            epsilon,
            agent_version: env!("CARGO_PKG_VERSION"),
        };
        let report = match privatize(raw, &request, &mut account, &mut memo, rng) {
            Ok(r) => r,
            Err(PrivatizeError::Budget(e)) => {
                tracing::warn!(period, "no report this period: {e}");
                ledger.record(&self.paths, period, &account, true)?;
                return Ok(());
            }
            Err(e) => return Err(AgentError::Privatize(e)),
        };
        ledger.record(&self.paths, period, &account, true)?;
        atomic_write(&self.paths.memo(), &memo.to_bytes())?;
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
        tracing::info!(period, report = %report.id(), metrics = ?names, epsilon = report.epsilon(), "report produced");
        Ok(())
    }
}

/// Loads the memo (empty if none).
pub fn load_memo(paths: &AgentPaths) -> Result<Memo, AgentError> {
    match std::fs::read(paths.memo()) {
        Ok(bytes) => {
            Memo::from_bytes(&bytes).map_err(|e| AgentError::Corrupt(format!("memo: {e}")))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Memo::default()),
        Err(e) => Err(e.into()),
    }
}
