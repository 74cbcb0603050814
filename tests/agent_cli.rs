//! The agent-only `hush-agent` binary: the same commands as `hush agent ...`,
//! run end to end against a real collector on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod support;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{Collector, agent_config, hush, run_ok, terminate};

/// The agent-only binary, with development periods allowed as `support::hush` does.
fn hush_agent() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hush-agent"));
    command.env("HUSH_AGENT_DEV_PERIODS", "1");
    command
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn hush_agent_config_is_hush_agent_subcommand_config() {
    let alone = hush_agent().arg("config").output().unwrap();
    let within = hush().args(["agent", "config"]).output().unwrap();
    assert!(alone.status.success() && within.status.success());
    assert_eq!(text(&alone), text(&within));
    assert!(text(&alone).contains("window_seconds"), "{}", text(&alone));
}

#[test]
fn run_before_enrolling_is_refused_with_a_usage_error() {
    let home = agent_config("");
    let out = hush_agent()
        .args(["run", "--home"])
        .arg(home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not enrolled"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn enroll_pause_run_and_sent_through_the_agent_binary() {
    let collector = Collector::start("period_seconds = 1\n");
    let home = agent_config("");
    run_ok(
        hush_agent()
            .args(["enroll", "--yes", "--collector", &collector.url, "--token"])
            .arg(collector.token(&[]))
            .arg("--home")
            .arg(home.path()),
    );

    let status = |args: &[&str]| {
        text(&run_ok(
            hush_agent().args(args).arg("--home").arg(home.path()),
        ))
    };
    let before: serde_json::Value = serde_json::from_str(&status(&["status", "--json"])).unwrap();
    assert_eq!(before["enrolled"], collector.url.as_str());
    assert_eq!(before["paused"], false);
    status(&["pause"]);
    let paused: serde_json::Value = serde_json::from_str(&status(&["status", "--json"])).unwrap();
    assert_eq!(paused["paused"], true);
    status(&["resume"]);

    // A replayed session for a few one-second periods, then SIGTERM: reports
    // reach the collector and `sent` lists them.
    let replay = home.path().join("replay.txt");
    std::fs::write(&replay, "0 key letter\n200 key letter\n400 click left\n").unwrap();
    let log = home.path().join("agent.log");
    let mut agent = hush_agent()
        .args(["run", "--log-format", "json", "--repeat", "--replay"])
        .arg(&replay)
        .arg("--home")
        .arg(home.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert!(terminate(&mut agent).success());
    // The service log for a log pipeline: one JSON object per line, with the
    // time (the laptop's own log) and the event's fields as keys.
    let log = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.iter().all(|o| o["timestamp"].is_string()), "{log}");
    assert!(
        lines
            .iter()
            .any(|o| o["message"] == "agent running" && o["epsilon_1"].is_number()),
        "{log}"
    );
    let sent: serde_json::Value = serde_json::from_str(&status(&["sent", "--json"])).unwrap();
    let rows = sent.as_array().unwrap();
    assert!(!rows.is_empty(), "no report was sent");
    assert!(rows.iter().all(|r| r["status"] == "sent"), "{sent}");
}
