//! The canary: on a real X server, xdotool types a secret phrase while the agent runs
//! against a collector on loopback. Afterwards the secret, in any case and as its key
//! sequence, is in no file under the agent's home, no line the agent logged, and no
//! byte the collector stored.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod support;

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use support::{Collector, Xvfb, agent_home, files_under, hush, terminate};

const SECRET: &str = "swordfish42";

/// The secret's Linux evdev key codes (s w o r d f i s h 4 2) and the X keycodes
/// (evdev + 8) a keylogger would have stored.
const EVDEV: [u8; 11] = [31, 17, 24, 19, 32, 33, 23, 31, 35, 5, 3];

fn needles() -> Vec<Vec<u8>> {
    let mut n = vec![
        SECRET.as_bytes().to_vec(),
        SECRET.to_uppercase().into_bytes(),
        b"swordfish".to_vec(),
        SECRET.encode_utf16().flat_map(u16::to_le_bytes).collect(),
        hex_of(SECRET.as_bytes()).into_bytes(),
    ];
    n.push(EVDEV.to_vec());
    n.push(EVDEV.iter().map(|c| c + 8).collect());
    n
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn assert_clean(what: &str, bytes: &[u8]) {
    for needle in needles() {
        assert!(
            !bytes
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(&needle)),
            "the secret (as {needle:?}) appears in {what}"
        );
    }
}

#[test]
#[ignore = "needs Xvfb and xdotool (installed by .ci/run)"]
fn a_typed_secret_leaves_no_trace() {
    let x = Xvfb::start();
    let collector = Collector::start("period_seconds = 2\n");
    let home = agent_home(&collector, "");
    let mut agent = hush()
        .args(["agent", "run", "--home"])
        .arg(home.path())
        .env("DISPLAY", &x.display)
        .env_remove("WAYLAND_DISPLAY")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    for _ in 0..4 {
        x.xdotool(&["type", "--delay", "20", SECRET]);
        x.xdotool(&["key", "Return"]);
        std::thread::sleep(Duration::from_millis(800));
    }
    // Let two more periods close and upload.
    std::thread::sleep(Duration::from_secs(5));
    assert!(terminate(&mut agent).success());
    let mut out = Vec::new();
    agent.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    let mut log = Vec::new();
    agent.stderr.take().unwrap().read_to_end(&mut log).unwrap();
    assert_clean("the agent's output", &out);
    assert_clean("the agent's log", &log);
    let log_text = String::from_utf8_lossy(&log);
    assert!(
        log_text.contains("report produced"),
        "no report was produced: {log_text}"
    );

    for file in files_under(home.path()) {
        assert_clean(&file.display().to_string(), &std::fs::read(&file).unwrap());
    }
    // Everything the collector has: the database, its WAL, and the stored report bodies.
    for file in files_under(collector.dir.path()) {
        assert_clean(&file.display().to_string(), &std::fs::read(&file).unwrap());
    }
    let conn = support::open_db(collector.database());
    let bodies: Vec<Vec<u8>> = conn
        .prepare("SELECT body FROM reports")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!bodies.is_empty(), "the collector received nothing");
    for b in &bodies {
        assert_clean("a stored report", b);
    }
}
