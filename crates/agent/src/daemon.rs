//! `hush agent run`: capture -> windows -> one privatized report per period ->
//! outbox -> uploader, until stopped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hush_capture::{
    Epoch, EventSource, Interaction, MAX_DELIVERY_DELAY, WindowAggregator, channel,
};
use hush_ldp::NoiseRng;
use hush_report::{Catalog, Memo, PrivatizeError, PrivatizeRequest, RawMeasurements, privatize};
use rand::SeedableRng;

use crate::durable::atomic_write;
use crate::outbox::Outbox;
use crate::uploader::{Backoff, Uploader, flush};
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
        let mut capture = Some(
            thread::Builder::new()
                .name("hush-capture".into())
                .spawn(move || source.run(sink))?,
        );
        let upload = UploadLoop::start(self.clone(), NoiseRng::from_rng(&mut rng))?;

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
            if capture.as_ref().is_some_and(|c| c.is_finished()) {
                if let Some(Ok(Err(e))) = capture.take().map(|c| c.join()) {
                    return Err(AgentError::Capture(e));
                }
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

/// Whether an interaction counts, judged by when it happened rather than when
/// it was read: interactions arrive up to [`MAX_DELIVERY_DELAY`] late, and
/// input from while the person had paused must not be counted because it was
/// read after they resumed.
#[derive(Debug, Clone, Copy)]
struct Pause {
    /// The state the last check found.
    paused: bool,
    /// When (interactions' clock) a check first found that state.
    since_ms: u64,
}

impl Pause {
    fn set(&mut self, paused: bool, now_ms: u64) {
        if paused != self.paused {
            *self = Pause {
                paused,
                since_ms: now_ms,
            };
        }
    }

    /// Checks are a second apart and interactions at most 750 ms old when read
    /// (delivery plus one tick), so only the last change can matter.
    fn counts(&self, at_ms: u64) -> bool {
        if self.paused {
            at_ms < self.since_ms
        } else {
            at_ms >= self.since_ms
        }
    }
}

/// The period being gathered: windows of interactions folded into the
/// period's raw measurements, in memory only.
///
/// Interactions reach the channel up to [`MAX_DELIVERY_DELAY`] after they
/// happen (the X listener reads in batches), so a window or period is closed
/// only that long after it ends, and interactions from after the period's end
/// that arrive before it closes wait for the next one. Each lands in the
/// period and minute in which it happened.
struct PeriodBuilder {
    /// The period being gathered.
    period: u32,
    period_ms: u64,
    window_ms: u64,
    aggregator: WindowAggregator,
    raw: RawMeasurements,
    /// Interactions of the next period that arrived before this one closed.
    next: Vec<Interaction>,
    /// The interactions' clock at the last tick.
    last_now_ms: u64,
    /// Where the period ended on the interactions' clock, once it has.
    ended_ms: Option<u64>,
    /// Whether the agent was found unpaused during this period, and during the next.
    ran_unpaused: bool,
    next_unpaused: bool,
}

/// A finished period, ready to be privatized.
struct ClosedPeriod {
    period: u32,
    raw: RawMeasurements,
    /// False if the agent was paused for the whole period: then no report.
    ran_unpaused: bool,
}

impl PeriodBuilder {
    /// How long after its end a window or period is closed.
    const LAG_MS: u64 = MAX_DELIVERY_DELAY.as_millis() as u64;

    fn new(
        period: u32,
        period_seconds: u32,
        window_ms: u64,
        start_ms: u64,
        unpaused: bool,
    ) -> Result<PeriodBuilder, AgentError> {
        Ok(PeriodBuilder {
            period,
            period_ms: u64::from(period_seconds.max(1)) * 1000,
            window_ms,
            aggregator: WindowAggregator::new(window_ms, start_ms)?,
            raw: RawMeasurements::new(0),
            next: Vec::new(),
            last_now_ms: start_ms,
            ended_ms: None,
            ran_unpaused: unpaused,
            next_unpaused: false,
        })
    }

    /// The period's end on the wall clock.
    fn end_unix_ms(&self) -> u64 {
        (u64::from(self.period) + 1) * self.period_ms
    }

    /// Records that a check at `unix_ms` found the agent unpaused, for the
    /// period that time falls in.
    fn note_unpaused(&mut self, unix_ms: u64) {
        if unix_ms < self.end_unix_ms() {
            self.ran_unpaused = true;
        } else {
            self.next_unpaused = true;
        }
    }

    /// Folds in what `arrived` since the last tick and closes the windows that
    /// ended; once the period ended [`Self::LAG_MS`] ago by the wall clock
    /// (`unix_ms`), returns it and starts the current period. `now_ms` is the
    /// interactions' clock.
    fn tick(
        &mut self,
        arrived: impl IntoIterator<Item = Interaction>,
        now_ms: u64,
        unix_ms: u64,
    ) -> Result<Option<ClosedPeriod>, AgentError> {
        let end_unix_ms = self.end_unix_ms();
        // The end on the interactions' clock, projected from the wall clock.
        // Once passed it is fixed: it came after the last tick, so no earlier
        // than that tick, even if the wall clock jumped meanwhile (a
        // suspended laptop's monotonic clock stops, the wall clock does not).
        let projected = (now_ms + end_unix_ms).saturating_sub(unix_ms);
        let end_ms = match self.ended_ms {
            Some(end) => end,
            None if unix_ms >= end_unix_ms => {
                let end = projected.clamp(self.last_now_ms.min(now_ms), now_ms);
                self.ended_ms = Some(end);
                end
            }
            None => projected,
        };
        self.last_now_ms = now_ms;
        for interaction in arrived {
            if interaction.at_ms >= end_ms {
                self.next.push(interaction);
            } else {
                for w in self.aggregator.observe(interaction) {
                    self.raw.absorb(w);
                }
            }
        }
        for w in self
            .aggregator
            .advance(now_ms.saturating_sub(Self::LAG_MS).min(end_ms))
        {
            self.raw.absorb(w);
        }
        if unix_ms < end_unix_ms.saturating_add(Self::LAG_MS) {
            return Ok(None);
        }
        let done = std::mem::replace(
            &mut self.aggregator,
            WindowAggregator::new(self.window_ms, end_ms)?,
        );
        let mut raw = std::mem::replace(&mut self.raw, RawMeasurements::new(0));
        raw.absorb(done.finish(end_ms));
        let closed = ClosedPeriod {
            period: self.period,
            raw,
            ran_unpaused: self.ran_unpaused,
        };
        self.period = u32::try_from(unix_ms / self.period_ms).unwrap_or(u32::MAX);
        self.ended_ms = None;
        self.ran_unpaused = std::mem::take(&mut self.next_unpaused);
        for interaction in std::mem::take(&mut self.next) {
            for w in self.aggregator.observe(interaction) {
                self.raw.absorb(w);
            }
        }
        Ok(Some(closed))
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

/// The uploader thread: flushes the outbox every interval, when woken, and once
/// more on shutdown; backs off exponentially with jitter after failures.
///
/// It does not watch the process's stop flag: that is set by a signal, possibly
/// while the main loop is still writing a finished period to the outbox, and a
/// thread that saw it and left would miss that report. It leaves only when
/// [`UploadLoop::finish`] (or drop) asks, after the main loop's last write, and
/// only after one more flush that began after the asking.
struct UploadLoop {
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
    fn start(agent: Agent, mut rng: NoiseRng) -> Result<UploadLoop, AgentError> {
        let uploader = Uploader::new(&agent.enrollment, agent.config.ca_cert.as_deref())?;
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
            let outbox = Outbox::new(&agent.paths, agent.config.outbox_max_reports);
            let interval = Duration::from_secs(agent.config.upload_interval_seconds);
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
                match flush(&uploader, &outbox, &agent.paths, unix_now()) {
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

    fn wake(&self) {
        let (lock, cvar) = &*self.signal;
        if let Ok(mut w) = lock.lock() {
            w.flush = true;
            cvar.notify_one();
        }
    }

    /// One last flush of everything queued so far, then join.
    fn finish(self) {
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

    use hush_ldp::BudgetAccount;
    use hush_report::Report;

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
        let catalog = Catalog::default_v1();
        let request = PrivatizeRequest {
            catalog: &catalog,
            period,
            period_seconds: 60,
            epsilon: 1.0,
            agent_version: "test",
        };
        let mut budget = BudgetAccount::new(1.0).unwrap();
        let mut rng = NoiseRng::seed_from_u64(seed);
        privatize(
            RawMeasurements::new(1),
            &request,
            &mut budget,
            &mut Memo::default(),
            &mut rng,
        )
        .unwrap()
    }

    fn letter(at_ms: u64) -> Interaction {
        Interaction {
            kind: hush_capture::InteractionKind::Key(hush_report::KeyClass::Letter),
            at_ms,
        }
    }

    /// Periods of 60 s on a wall clock where period 10 ends at 660 000 ms;
    /// the interactions' clock reads `offset` less than the wall clock.
    const OFFSET: u64 = 600_000;

    #[test]
    fn a_late_interaction_lands_in_the_period_it_happened_in() {
        let mut gathering = PeriodBuilder::new(10, 60, 3_600_000, 0, true).unwrap();
        let end = 660_000 - OFFSET;
        // 300 ms after the end, one from just before it and one from just after arrive.
        let closed = gathering
            .tick(
                [letter(end - 100), letter(end + 100)],
                end + 300,
                end + 300 + OFFSET,
            )
            .unwrap();
        assert!(closed.is_none(), "closed before the delivery delay passed");
        let closed = gathering
            .tick([letter(end + 400)], end + 600, end + 600 + OFFSET)
            .unwrap()
            .expect("closed once the delay passed");
        assert_eq!(closed.period, 10);
        assert_eq!(closed.raw.keys_of(hush_report::KeyClass::Letter), 1);
        assert_eq!(gathering.period, 11);
        let closed = gathering
            .tick([], end + 60_600, end + 60_600 + OFFSET)
            .unwrap()
            .expect("period 11 closes too");
        assert_eq!(closed.period, 11);
        assert_eq!(closed.raw.keys_of(hush_report::KeyClass::Letter), 2);
    }

    #[test]
    fn a_window_waits_for_its_late_interactions() {
        // 60 s windows from 0; the period is far from over.
        let mut gathering = PeriodBuilder::new(10, 3600, 60_000, 0, true).unwrap();
        let wall = |ms: u64| 36_000_000 + ms;
        gathering
            .tick([letter(59_000)], 59_100, wall(59_100))
            .unwrap();
        // Minute 0 ends at 60 000; a tick at 60 200 must not close it yet ...
        gathering.tick([], 60_200, wall(60_200)).unwrap();
        assert_eq!(gathering.raw.active_minutes(), 0);
        // ... so this one, from minute 0 but delivered late, counts there.
        gathering
            .tick([letter(59_900)], 60_400, wall(60_400))
            .unwrap();
        gathering.tick([], 60_600, wall(60_600)).unwrap();
        assert_eq!(gathering.raw.active_minutes(), 1);
        assert_eq!(gathering.raw.keys_of(hush_report::KeyClass::Letter), 2);
    }

    #[test]
    fn a_suspend_across_the_end_keeps_the_last_window_whole() {
        // Daily periods, hourly windows, wall clock = interactions' clock at first.
        let mut gathering = PeriodBuilder::new(0, 86_400, 3_600_000, 0, true).unwrap();
        // Two keys at 17:13 and 17:30, in the window that began at 17:00.
        let t = 63_000_250;
        assert!(
            gathering
                .tick([letter(62_000_000), letter(63_000_000)], t, t)
                .unwrap()
                .is_none()
        );
        // Suspended at 17:30, resumed at 09:00 the next day: the monotonic
        // clock moved 250 ms, the wall clock 15.5 hours.
        let closed = gathering
            .tick([], t + 250, 118_800_000)
            .unwrap()
            .expect("the day before the suspend closes");
        assert_eq!(closed.period, 0);
        assert_eq!(closed.raw.keys_of(hush_report::KeyClass::Letter), 2);
        assert_eq!(closed.raw.active_minutes(), 2, "minutes cut off at the end");
        assert_eq!(gathering.period, 1);
    }

    #[test]
    fn a_resume_after_the_end_counts_for_the_next_period() {
        let mut gathering = PeriodBuilder::new(10, 60, 3_600_000, 0, false).unwrap();
        let end = 660_000 - OFFSET;
        gathering.tick([], end + 100, end + 100 + OFFSET).unwrap();
        gathering.note_unpaused(end + 200 + OFFSET);
        let closed = gathering
            .tick([], end + 600, end + 600 + OFFSET)
            .unwrap()
            .expect("closes");
        assert!(!closed.ran_unpaused, "paused for all of period 10");
        assert!(gathering.ran_unpaused, "period 11 ran unpaused");
    }

    #[test]
    fn pausing_counts_interactions_by_when_they_happened() {
        let mut pause = Pause {
            paused: false,
            since_ms: 0,
        };
        pause.set(true, 2_000);
        assert!(pause.counts(1_999), "typed before the pause, read after");
        assert!(!pause.counts(2_000));
        pause.set(true, 3_000);
        assert_eq!(pause.since_ms, 2_000, "no change, no new time");
        pause.set(false, 5_000);
        assert!(
            !pause.counts(4_999),
            "typed while paused, read after resuming"
        );
        assert!(pause.counts(5_000));
    }

    /// The shutdown race of stop 9: the uploader must not leave before the main
    /// loop's last write. Here a report is queued while a flush is in flight,
    /// then `finish` is called without a wake; it must still be sent.
    #[test]
    fn finish_sends_what_was_queued_while_a_flush_was_in_flight() {
        let home = tempfile::tempdir().unwrap();
        let (release, held) = mpsc::channel();
        let (url, reports) = collector(held);
        let agent = Agent {
            paths: AgentPaths::in_home(home.path()),
            config: AgentConfig::default(),
            enrollment: Enrollment {
                collector: url,
                token: "t".into(),
                epsilon_cap: 1.0,
                period_seconds: 60,
                consented_at: 0,
                consent_version: 1,
            },
        };
        let outbox = Outbox::new(&agent.paths, 100);
        outbox.push(&report(1, 1)).unwrap();
        let upload = UploadLoop::start(agent.clone(), NoiseRng::seed_from_u64(0)).unwrap();
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
