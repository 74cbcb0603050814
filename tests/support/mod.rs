//! Shared helpers of the end-to-end tests: a collector process on loopback with a
//! temporary SQLite file, tokens, and report construction.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hush_ldp::{BudgetAccount, NoiseRng};
use hush_report::{Catalog, KeyClass, Memo, PrivatizeRequest, RawMeasurements, Report, privatize};
use rand::SeedableRng;

/// The `hush` binary under test.
pub fn hush() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hush"))
}

/// A collector process with its own directory, killed when dropped.
pub struct Collector {
    pub child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Collector {
    /// Starts `hush collector serve` with extra config lines.
    pub fn start(extra_config: &str) -> Collector {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("collector.toml"),
            format!("listen = \"127.0.0.1:0\"\ndatabase = \"collector.sqlite\"\n{extra_config}"),
        )
        .unwrap();
        Self::start_in(dir)
    }

    /// Starts (or restarts) a collector on an existing directory.
    pub fn start_in(dir: tempfile::TempDir) -> Collector {
        let mut child = hush()
            .args(["collector", "serve", "--config"])
            .arg(dir.path().join("collector.toml"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .nth(2)
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_owned();
        Collector { child, url, dir }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("collector.toml")
    }

    pub fn database(&self) -> PathBuf {
        self.dir.path().join("collector.sqlite")
    }

    /// Creates a token with the CLI.
    pub fn token(&self, args: &[&str]) -> String {
        let out = hush()
            .args(["collector", "token", "create", "--config"])
            .arg(self.config())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Kills the process (SIGKILL) and hands back the directory.
    pub fn kill(mut self) -> tempfile::TempDir {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that returns error statuses as responses.
pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// POSTs a body to /v1/reports with a token; returns (status, body).
pub fn upload(agent: &ureq::Agent, url: &str, token: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut req = agent
        .post(format!("{url}/v1/reports"))
        .header("Content-Type", "application/octet-stream");
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    match req.send(body) {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

/// The current day number.
pub fn today() -> u32 {
    (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400) as u32
}

/// A real report for `period` made by the privatizer at `epsilon`.
pub fn report(catalog: &Catalog, period: u32, epsilon: f64, seed: u64) -> Report {
    let mut rng = NoiseRng::seed_from_u64(seed);
    let mut raw = RawMeasurements::new(1440);
    for _ in 0..(seed % 5000) {
        raw.record_key(KeyClass::Letter);
    }
    raw.set_minutes(1440, 200, 50, 40);
    let request = PrivatizeRequest {
        catalog,
        period,
        period_seconds: 86_400,
        epsilon,
        agent_version: "test",
    };
    let mut budget = BudgetAccount::new(epsilon).unwrap();
    privatize(raw, &request, &mut budget, &mut Memo::default(), &mut rng).unwrap()
}

/// Reads a single number from the database.
pub fn query_u64(db: &Path, sql: &str) -> u64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as u64
}
