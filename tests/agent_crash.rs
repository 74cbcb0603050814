//! Crash safety of the agent: SIGKILL it at many random moments (while it
//! privatizes, writes its outbox, uploads) and restart it each time; in the end
//! every report it produced arrived at the collector exactly once, or is
//! still queued because its random upload moment has not come yet.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use hush_agent::AgentPaths;
use hush_agent::outbox::{SentStatus, read_sent};
use hush_ldp::NoiseRng;
use rand::{Rng, SeedableRng};
use support::{Collector, agent_home, agent_log, run_replay, terminate};

const REPLAY: &str =
    "0 key letter\n150 key letter\n300 key edit\n450 click left\n600 move 40\n750 chord paste\n";

#[test]
fn every_produced_report_arrives_exactly_once_across_kill_9() {
    // One-second periods: a report every second, so kills land in every phase.
    // The grace window is wide because a killed agent backfills up to a week
    // of one-second periods at once.
    let collector = Collector::start("period_seconds = 1\ngrace_periods = 1000\n");
    let home = agent_home(&collector, "");
    let replay = home.path().join("replay.txt");
    std::fs::write(&replay, REPLAY).unwrap();
    let run = || run_replay(home.path(), &replay);
    let mut rng = NoiseRng::seed_from_u64(2026);
    for _ in 0..15 {
        let mut agent = run();
        // Anywhere from just after start-up to a few period ends later.
        std::thread::sleep(Duration::from_millis(
            200 + u64::from(rng.next_u32() % 2300),
        ));
        agent.kill().unwrap();
        agent.wait().unwrap();
    }
    // A last, clean run sends the backlog and exits on SIGTERM. Uploads happen
    // at a random moment of the period after a report's own and nothing is
    // flushed on shutdown (an upload at the moment of shutdown would tell the
    // collector when the laptop went to sleep), so the newest reports may
    // stay queued for the next run.
    let mut agent = run();
    std::thread::sleep(Duration::from_secs(5));
    assert!(terminate(&mut agent).success());

    let paths = AgentPaths::in_home(home.path());
    let outbox = hush_agent::Outbox::new(&paths, 1000);
    let queued: Vec<(String, u32)> = outbox
        .ids()
        .unwrap()
        .into_iter()
        .map(|id| {
            let report = outbox.load(id).unwrap().expect("a listed report loads");
            (report.id().to_string(), report.period())
        })
        .collect();
    let sent = read_sent(&paths).unwrap();
    assert!(
        sent.iter().all(|e| e.status == SentStatus::Sent),
        "the collector refused a report"
    );
    let sent_ids: HashSet<String> = sent.iter().map(|e| e.report.id().to_string()).collect();
    let mut produced: Vec<(String, u32)> = sent
        .iter()
        .map(|e| (e.report.id().to_string(), e.report.period()))
        .collect();
    produced.extend(queued.iter().cloned());
    let newest = produced
        .iter()
        .map(|(_, p)| *p)
        .max()
        .expect("reports were produced");
    for (id, period) in &queued {
        assert!(!sent_ids.contains(id), "report {id} both sent and queued");
        assert!(
            *period + 2 >= newest,
            "report for period {period} still queued ({newest} is the newest); the agent's log:\n{}",
            std::fs::read_to_string(agent_log(home.path())).unwrap_or_default()
        );
    }
    assert!(
        produced.len() >= 8,
        "only {} reports produced",
        produced.len()
    );
    // One report per period, whatever the restarts (missed periods are
    // backfilled as empty reports, never twice).
    let periods: HashSet<u32> = produced.iter().map(|(_, p)| *p).collect();
    assert_eq!(periods.len(), produced.len(), "a period reported twice");

    let conn = support::open_db(collector.database());
    let stored: Vec<(String, u32)> = conn
        .prepare("SELECT lower(hex(id)), period FROM reports")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let stored_ids: HashSet<String> = stored.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(stored_ids.len(), stored.len(), "an id stored twice");
    assert_eq!(stored_ids, sent_ids, "sent and received reports differ");
}
