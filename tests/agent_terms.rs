//! The employer runs the collector, so the person's agent sets the terms and the
//! shape of the traffic: short periods and terms above the person's caps are
//! refused, one agent runs per home, `forget` is carried out by a running agent
//! rather than racing it, every period is reported (idle, paused, or missed
//! while the agent was off), no log level prints the device token, and every
//! file is the owner's only.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod support;

use std::collections::BTreeSet;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::{Collector, agent_config, agent_home, agent_log, hush, run_ok, terminate};

fn enroll_args(home: &std::path::Path, url: &str, token: &str) -> Vec<String> {
    [
        "agent",
        "enroll",
        "--yes",
        "--collector",
        url,
        "--token",
        token,
        "--home",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([home.display().to_string()])
    .collect()
}

#[test]
fn a_collector_asking_for_one_second_periods_is_refused_unless_development_periods() {
    let collector = Collector::start("period_seconds = 1\n");
    let home = agent_config("");
    let token = collector.token(&[]);
    let out = hush()
        .env_remove("HUSH_AGENT_DEV_PERIODS")
        .args(enroll_args(home.path(), &collector.url, &token))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("every 1 seconds") && err.contains("at most once a day"),
        "{err}"
    );
    assert!(!home.path().join("data/enrollment.toml").exists());
    // With the local development setting it works, and says so.
    let out = run_ok(hush().args(enroll_args(home.path(), &collector.url, &token)));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("development periods"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let status = run_ok(hush().args(["agent", "status", "--home"]).arg(home.path()));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("DEVELOPMENT PERIODS"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
}

#[test]
fn terms_above_the_persons_caps_are_refused() {
    let collector = Collector::start("epsilon_per_report = 3.0\nepsilon_per_value = 6.0\n");
    let token = collector.token(&[]);
    let strict = agent_config("");
    let out = hush()
        .args(enroll_args(strict.path(), &collector.url, &token))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("epsilon 3 per report") && err.contains("your cap is 2"),
        "{err}"
    );
    // A person who raised their own caps can accept, and sees the three numbers.
    let lenient = agent_config("max_epsilon_per_report = 3.0\nmax_epsilon_per_value = 6.0\n");
    let out = run_ok(hush().args(enroll_args(lenient.path(), &collector.url, &token)));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("epsilon 3 per report, 6 per unchanged value, at most 480 in any 365 days"),
        "{said}"
    );
    // The values-per-year cap is halved per accounting window, so it must be even.
    let odd = agent_config("max_values_per_year = 5\n");
    let out = hush()
        .args(enroll_args(odd.path(), &collector.url, &token))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("max_values_per_year must be an even number"),
        "{err}"
    );
}

/// Starts `hush agent run` on a replay, logging to the home's agent log at `RUST_LOG`.
fn run_agent(home: &std::path::Path, replay: &str, log_level: &str) -> Child {
    let path = home.join("replay.txt");
    std::fs::write(&path, replay).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(agent_log(home))
        .unwrap();
    hush()
        .env("RUST_LOG", log_level)
        .args(["agent", "run", "--repeat", "--replay"])
        .arg(&path)
        .arg("--home")
        .arg(home)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Waits until the agent `child` holds its home's lock. The lock file names
/// the last process that held it (enrolling takes it too), so only its own
/// process id says this agent has it.
fn wait_for_lock(home: &std::path::Path, child: &Child) {
    let start = Instant::now();
    let lock = home.join("data/agent.lock");
    let pid = child.id().to_string();
    while start.elapsed() < Duration::from_secs(20) {
        if std::fs::read_to_string(&lock).is_ok_and(|t| t.trim() == pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the agent never took its lock");
}

#[test]
fn one_agent_per_home_and_forget_goes_through_the_running_agent() {
    let collector = Collector::start("period_seconds = 1\n");
    let home = agent_home(&collector, "");
    let mut first = run_agent(home.path(), "0 key letter\n", "info");
    wait_for_lock(home.path(), &first);
    let second = hush()
        .args(["agent", "run", "--replay"])
        .arg(home.path().join("replay.txt"))
        .arg("--home")
        .arg(home.path())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another Hush agent is running")
            && err.contains(&format!("process {}", first.id())),
        "{err}"
    );
    // Enrolling again while it runs is refused too: new terms need a stopped agent.
    let again = hush()
        .args(enroll_args(home.path(), &collector.url, "t"))
        .output()
        .unwrap();
    assert!(!again.status.success());

    // Let it draw a secret (the first report does), then forget through it.
    let secret = home.path().join("data/secret.key");
    let start = Instant::now();
    while !secret.exists() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = std::fs::read(&secret).unwrap();
    let out = run_ok(
        hush()
            .args(["agent", "forget", "--yes", "--home"])
            .arg(home.path()),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("by the running agent"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!home.path().join("data/forget.request").exists());
    assert_ne!(
        std::fs::read(&secret).ok(),
        Some(before),
        "the secret was rotated"
    );
    assert!(terminate(&mut first).success());
    // Stopped: the lock is free, and forget runs at once.
    let out = run_ok(
        hush()
            .args(["agent", "forget", "--yes", "--home"])
            .arg(home.path()),
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("by the running agent"));
}

/// The periods the collector stored reports for.
fn stored_periods(collector: &Collector) -> Vec<u32> {
    let conn = support::open_db(collector.database());
    let mut stmt = conn
        .prepare("SELECT period FROM reports ORDER BY period")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn idle_paused_and_missed_periods_are_each_reported_once() {
    // Two-second periods; the collector accepts late reports for a while.
    let collector = Collector::start("period_seconds = 2\n");
    let home = agent_home(&collector, "");
    let token = std::fs::read_to_string(home.path().join("data/enrollment.toml")).unwrap();
    let token = token
        .lines()
        .find_map(|l| l.strip_prefix("token = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    // No input at all during the run (the replay's first event is far away),
    // and at trace level: no log line may carry the token.
    let idle = "100000 key letter\n";
    let mut agent = run_agent(home.path(), idle, "trace");
    wait_for_lock(home.path(), &agent);
    std::thread::sleep(Duration::from_millis(4500));
    run_ok(hush().args(["agent", "pause", "--home"]).arg(home.path()));
    std::thread::sleep(Duration::from_millis(4500));
    assert!(terminate(&mut agent).success());
    // Off for about three periods, then back on: the missed periods are reported.
    std::thread::sleep(Duration::from_millis(6500));
    let mut agent = run_agent(home.path(), idle, "trace");
    wait_for_lock(home.path(), &agent);
    std::thread::sleep(Duration::from_millis(7000));
    assert!(terminate(&mut agent).success());

    let periods = stored_periods(&collector);
    let unique: BTreeSet<u32> = periods.iter().copied().collect();
    assert_eq!(
        unique.len(),
        periods.len(),
        "a period reported twice: {periods:?}"
    );
    let (first, last) = (periods[0], *periods.last().unwrap());
    // Every period from the first to the last arrived: idle, paused and off alike.
    assert_eq!(
        periods,
        (first..=last).collect::<Vec<_>>(),
        "a gap in the periods; the log:\n{}",
        std::fs::read_to_string(agent_log(home.path())).unwrap()
    );
    assert!(periods.len() >= 9, "{periods:?}");
    let log = std::fs::read_to_string(agent_log(home.path())).unwrap();
    assert!(log.contains("missed"), "{log}");
    assert!(!log.contains(&token), "the token is in the log");
    assert!(!log.to_ascii_lowercase().contains("bearer"), "{log}");
    assert!(log.contains("development_periods"), "every line says so");

    // Every file the agent made is its owner's only, every directory too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut dirs = vec![home.path().join("data")];
        while let Some(dir) = dirs.pop() {
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", dir.display());
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p != agent_log(home.path()) && !p.ends_with("replay.txt") {
                    let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
                    assert_eq!(mode, 0o600, "{}", p.display());
                }
            }
        }
    }
}
