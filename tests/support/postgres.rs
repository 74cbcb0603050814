//! A throwaway PostgreSQL cluster for one test: `initdb` in a temporary
//! directory, a server on a unix socket only (no port to race for, no TCP),
//! databases created on demand, stopped when dropped. Run as root (as CI
//! does), the server runs as the `postgres` user through `runuser`.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Why a test that needs PostgreSQL is ignored on a bare machine.
pub const NEEDS: &str = "needs PostgreSQL (Debian's postgresql; installed by .ci/run)";

/// A running (or stopped) test cluster.
pub struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Run as this user (`runuser -u postgres`) when the tests run as root.
    user: Option<String>,
    databases: u32,
    /// The port: of the unix socket, and of TCP once TLS is on.
    port: u16,
    /// Server options beyond the defaults (TLS).
    options: String,
}

impl PgCluster {
    /// Creates and starts a cluster. Panics, saying what is missing, if
    /// PostgreSQL's programs are not installed.
    pub fn start() -> PgCluster {
        let bin = bindir();
        let dir = tempfile::tempdir().unwrap();
        let root = is_root();
        let user = root.then(|| "postgres".to_owned());
        if root {
            // The server refuses to run as root; the postgres user must reach
            // the directory and own the data and socket directories.
            let uid = id(&["-u", "postgres"]);
            let gid = id(&["-g", "postgres"]);
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
            for sub in ["data", "sock"] {
                std::fs::create_dir(dir.path().join(sub)).unwrap();
                std::os::unix::fs::chown(dir.path().join(sub), Some(uid), Some(gid)).unwrap();
            }
        } else {
            std::fs::create_dir(dir.path().join("sock")).unwrap();
        }
        let cluster = PgCluster {
            bin,
            dir,
            user,
            databases: 0,
            port: 5432,
            options: String::new(),
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data().to_string_lossy(),
                "-U",
                "hush",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        cluster.resume();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The socket directory.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sock/server.log")).unwrap_or_default()
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let out = self.command(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        out
    }

    /// Starts the server again (after [`stop`](Self::stop)) on the same data.
    pub fn resume(&self) {
        let options = format!(
            "-k {} -c listen_addresses='' -p {} -c fsync=on -c max_connections=100 {}",
            self.socket_dir().display(),
            self.port,
            self.options
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-l",
                &self.socket_dir().join("server.log").to_string_lossy(),
                "-w",
                "-o",
                &options,
                "start",
            ],
        );
    }

    /// Stops the server: `fast` rolls back open transactions and disconnects;
    /// `immediate` is a crash (recovery at the next start).
    pub fn stop(&self, mode: &str) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                mode,
                "-w",
                "stop",
            ],
        );
    }

    /// Runs one SQL command on `database` with `psql`; returns its output
    /// (unaligned, tuples only).
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = self.run(
            "psql",
            &[
                "-p",
                &self.port.to_string(),
                "-h",
                &self.socket_dir().to_string_lossy(),
                "-U",
                "hush",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Creates a new, empty database and returns its URL.
    pub fn create_db(&mut self) -> String {
        self.databases += 1;
        let name = format!("t{}", self.databases);
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// The URL of `database` on this cluster's socket.
    pub fn url(&self, database: &str) -> String {
        let socket = self
            .socket_dir()
            .to_string_lossy()
            .replace('%', "%25")
            .replace('/', "%2F");
        format!("postgres://hush@{socket}:{}/{database}", self.port)
    }

    /// Restarts the server listening on 127.0.0.1 too, on a free port, with
    /// `server.pem`/`server.key` from `certificates` (see
    /// `make_certificates`), and admitting TCP connections over TLS only.
    /// Returns the port.
    pub fn enable_tls(&mut self, certificates: &std::path::Path) -> u16 {
        self.stop("fast");
        let data = self.data();
        for (from, to) in [("server.pem", "server.crt"), ("server.key", "server.key")] {
            std::fs::copy(certificates.join(from), data.join(to)).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(data.join(to), std::fs::Permissions::from_mode(0o600))
                .unwrap();
            if self.user.is_some() {
                let (uid, gid) = (id(&["-u", "postgres"]), id(&["-g", "postgres"]));
                std::os::unix::fs::chown(data.join(to), Some(uid), Some(gid)).unwrap();
            }
        }
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        self.port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        self.options = "-c listen_addresses=127.0.0.1 -c ssl=on".to_owned();
        self.resume();
        self.port
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
    }
}

/// PostgreSQL's programs: `$HUSH_PG_BINDIR`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian), else `pg_config --bindir`.
fn bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HUSH_PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return bin;
    }
    let out = Command::new("pg_config").arg("--bindir").output();
    match out {
        Ok(o) if o.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_owned())
        }
        _ => panic!(
            "{NEEDS}: no initdb under /usr/lib/postgresql/*/bin, no pg_config, and HUSH_PG_BINDIR is unset"
        ),
    }
}

fn is_root() -> bool {
    id(&["-u"]) == 0
}

/// What `id ARGS` prints, as a number.
fn id(args: &[&str]) -> u32 {
    let out = Command::new("id").args(args).output().unwrap();
    assert!(out.status.success(), "id {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
