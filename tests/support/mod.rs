//! Shared helpers of the end-to-end tests: a collector process on loopback with a
//! temporary SQLite file, tokens, and report construction.

#![allow(dead_code)] // Each test binary uses a different subset.

pub mod pages;
pub mod postgres;
pub mod webdriver;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hush_ldp::{BudgetAccount, NoiseRng};
use hush_report::{
    Catalog, DeviceMemory, DeviceSecret, KeyClass, PrivatizeRequest, RawMeasurements, Report,
    bucket_of_day, privatize,
};
use rand::SeedableRng;

/// The `hush` binary under test, with development periods allowed: test
/// collectors use periods of seconds, which an agent refuses otherwise
/// (`tests/agent_terms.rs` checks that refusal without this variable).
pub fn hush() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hush"));
    command.env("HUSH_AGENT_DEV_PERIODS", "1");
    command
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
        Self::start_on("collector.sqlite", extra_config)
    }

    /// Starts `hush collector serve` on `database` (a path, or a PostgreSQL
    /// URL) with extra config lines.
    pub fn start_on(database: &str, extra_config: &str) -> Collector {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("collector.toml"),
            format!("listen = \"127.0.0.1:0\"\ndatabase = \"{database}\"\n{extra_config}"),
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
        let out = run_ok(
            hush()
                .args(["collector", "token", "create", "--config"])
                .arg(self.config())
                .args(args),
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

/// Seconds in a day, for `clock_offset_seconds`.
pub const DAY: i64 = 86_400;

impl Collector {
    /// Starts `hush collector serve` with extra config lines and `RUST_LOG=debug`,
    /// its stdout and stderr going to `collector.out` and `collector.log` in its
    /// directory (see [`Collector::log`]).
    pub fn start_logged(extra_config: &str) -> Collector {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("collector.toml"),
            format!("listen = \"127.0.0.1:0\"\ndatabase = \"collector.sqlite\"\n{extra_config}"),
        )
        .unwrap();
        let out = dir.path().join("collector.out");
        let file = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        let child = hush()
            .args(["collector", "serve", "--config"])
            .arg(dir.path().join("collector.toml"))
            .env("RUST_LOG", "debug")
            .stdout(file("collector.out"))
            .stderr(file("collector.log"))
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let line = loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if let Some(line) = text.lines().next().filter(|_| text.contains('\n')) {
                break line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "the collector never said where it listens"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let url = line
            .split_whitespace()
            .nth(2)
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_owned();
        Collector { child, url, dir }
    }

    /// What a [`Collector::start_logged`] process wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("collector.log")).unwrap_or_default()
    }

    /// What a [`Collector::start_logged`] process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("collector.out")).unwrap_or_default()
    }

    /// Sets one setting in the configuration file, replacing an earlier value.
    /// Commands run from now on see it; the running server does not.
    pub fn set_config(&self, key: &str, value: &str) {
        let path = self.config();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| l.split('=').next().map(str::trim) != Some(key))
            .map(str::to_owned)
            .collect();
        lines.push(format!("{key} = {value}"));
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }

    /// Restarts the server (after SIGKILL) on the same database, with its clock
    /// `days` days ahead (`clock_offset_seconds`): how a test reads what the
    /// collector releases once grace windows have closed.
    pub fn restart_days_later(self, days: i64) -> Collector {
        self.set_config("clock_offset_seconds", &(days * DAY).to_string());
        Collector::start_in(self.kill())
    }

    /// Enrolls a device of `cohort` (a new token) and uploads `reports` for
    /// it in one batch, which must be acknowledged; returns the token.
    pub fn device_uploads(&self, agent: &ureq::Agent, cohort: &str, reports: &[Report]) -> String {
        let token = self.token(&["--cohort", cohort]);
        let (status, text) = upload(
            agent,
            &self.url,
            Some(&token),
            &Report::encode_batch(reports),
        );
        assert_eq!(status, 200, "{text}");
        token
    }

    /// `hush collector <args...> --config <this collector's config>`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = hush();
        command
            .arg("collector")
            .args(args)
            .arg("--config")
            .arg(self.config());
        command
    }

    /// Stops the server with SIGTERM and waits, so its log is complete.
    pub fn stop(&mut self) {
        assert!(
            terminate(&mut self.child).success(),
            "the collector failed on SIGTERM"
        );
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

/// Runs `command` to completion and fails the test, showing the command and
/// its stderr, unless it succeeded.
pub fn run_ok(command: &mut Command) -> std::process::Output {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A real report for `period` (a day) made by the privatizer of a fresh
/// device at `epsilon` per report and twice that per value.
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
        epsilon_perm: 2.0 * epsilon,
        max_draws: 8,
        bucket: bucket_of_day(period),
        agent_version: "test",
    };
    let mut budget = BudgetAccount::new(epsilon).unwrap();
    let mut secret = [0u8; 32];
    rand::Rng::fill_bytes(&mut rng, &mut secret);
    let mut memory = DeviceMemory::new(DeviceSecret::from_bytes(secret));
    privatize(raw, &request, &mut memory, &mut budget, &mut rng).unwrap()
}

/// Opens a collector's database directly. The collector's layer over
/// SQLite's page cache goes in first: SQLite's configuration calls race
/// with another thread's first connection (the collector's own, in tests
/// that also open the database through `hush_collector::store`).
pub fn open_db(db: impl AsRef<Path>) -> rusqlite::Connection {
    hush_collector::store::sqlite::install_page_cache();
    rusqlite::Connection::open(db).unwrap()
}

/// Reads a single number from the database.
pub fn query_u64(db: &Path, sql: &str) -> u64 {
    let conn = open_db(db);
    conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as u64
}

/// A private Xvfb server, stopped when dropped.
pub struct Xvfb {
    pub child: Child,
    pub display: String,
}

impl Xvfb {
    /// Starts Xvfb with the RECORD extension on a display it picks itself
    /// (`-displayfd`). `-noreset` matters: by default Xvfb resets whenever its
    /// last client disconnects, and a client connecting during the reset is
    /// refused, so a probe followed by the capture's own connections would
    /// fail now and then. Start-ups are also serialized across processes with
    /// a file lock, and the server is used only once a real client connected.
    pub fn start() -> Xvfb {
        let guard = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(std::env::temp_dir().join("hush-tests-xvfb.lock"))
            .unwrap();
        guard.lock().unwrap();
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-noreset",
                "-screen",
                "0",
                "1024x768x24",
                "+extension",
                "RECORD",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb is installed (apt-get install xvfb; .ci/run does this)");
        // Xvfb writes the display number once it accepts connections.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let n: u32 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("Xvfb did not report a display: {line:?}"));
        let server = Xvfb {
            child,
            display: format!(":{n}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let probe = Command::new("xdotool")
                .arg("getmouselocation")
                .env("DISPLAY", &server.display)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("xdotool is installed (apt-get install xdotool; .ci/run does this)");
            if probe.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Xvfb on {} never accepted a client",
                server.display
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(guard);
        server
    }

    pub fn xdotool(&self, args: &[&str]) {
        let status = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &self.display)
            .status()
            .expect("xdotool is installed (apt-get install xdotool; .ci/run does this)");
        assert!(status.success(), "xdotool {args:?} failed");
    }

    /// Kills the server abruptly (SIGKILL), as a crashing X server would die.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.remove_stale_files();
    }

    /// A killed server leaves its lock and socket behind; remove them.
    fn remove_stale_files(&self) {
        let n = self.display.trim_start_matches(':');
        let _ = std::fs::remove_file(format!("/tmp/.X{n}-lock"));
        let _ = std::fs::remove_file(format!("/tmp/.X11-unix/X{n}"));
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        // SIGTERM lets Xvfb remove its own lock and socket.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

/// Runs `hush agent enroll --yes` for an agent home; returns the process output.
pub fn enroll(home: &Path, url: &str, token: &str) -> std::process::Output {
    hush()
        .args([
            "agent",
            "enroll",
            "--yes",
            "--collector",
            url,
            "--token",
            token,
            "--home",
        ])
        .arg(home)
        .output()
        .unwrap()
}

/// An agent home (`DIR/agent.toml` with short windows and uploads plus `extra_config`).
pub fn agent_config(extra_config: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("agent.toml"),
        format!("window_seconds = 1\n{extra_config}"),
    )
    .unwrap();
    home
}

/// An enrolled agent home on a collector.
pub fn agent_home(collector: &Collector, extra_config: &str) -> tempfile::TempDir {
    let home = agent_config(extra_config);
    let out = enroll(home.path(), &collector.url, &collector.token(&[]));
    assert!(
        out.status.success(),
        "enroll: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    home
}

/// Starts `hush agent run` replaying `replay` forever, output discarded.
pub fn run_replay(home: &Path, replay: &Path) -> Child {
    // Every run appends its log to one file, so a failing test can show why.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(agent_log(home))
        .unwrap();
    hush()
        .args(["agent", "run", "--repeat", "--replay"])
        .arg(replay)
        .arg("--home")
        .arg(home)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Where `run_replay` appends the agent's log.
pub fn agent_log(home: &Path) -> PathBuf {
    home.join("agent-runs.log")
}

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Sends SIGTERM and waits for the process, with a deadline.
pub fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "process did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal RFC 4180 reader: quoted fields may hold commas, quotes ("") and newlines.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        !quoted && field.is_empty() && record.is_empty(),
        "CSV must end with a newline"
    );
    records
}

/// A private CA and a server certificate for 127.0.0.1, made with the openssl CLI.
pub fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        run_ok(Command::new("openssl").args(args).current_dir(dir));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Hush Test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}
