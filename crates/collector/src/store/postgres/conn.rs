//! One PostgreSQL connection behind a blocking interface: its own
//! single-threaded runtime drives the client while a call waits, so the
//! writer thread, the server's blocking readers and the CLI use it alike.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, NoTls, Socket};

use super::tls::RustlsConnect;
use crate::CollectorError;

/// How long one call (a statement, or a whole transaction) may take before
/// it is abandoned as failed: the collector answers 503 rather than hang
/// while the database is down or unreachable.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The environment variable a URL without a password takes its password from.
pub const PASSWORD_VARIABLE: &str = "HUSH_DATABASE_PASSWORD";

/// How long maintenance (reseal, prune, erasure, vacuum, migration) may
/// take: it works through a whole period's reports at once.
pub(crate) const MAINTENANCE_TIMEOUT: Duration = Duration::from_secs(600);

/// Lets a maintenance transaction wait for another's lock (a reseal in
/// progress) as long as it may run, instead of the session's 5 s.
pub(crate) const MAINTENANCE_LOCKS: &str = "SET LOCAL lock_timeout = '600s'";

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Set on every session: a statement waiting for a lock gives up well within
/// [`CALL_TIMEOUT`], and a session that dies inside a transaction does not
/// hold its locks for long.
const SESSION: &str = "SET synchronous_commit = on;
SET lock_timeout = '5s';
SET idle_in_transaction_session_timeout = '30s';
SET default_transaction_isolation = 'read committed';
SET client_min_messages = warning;";

/// A connection and the runtime that drives it.
pub(crate) struct PgConn {
    /// `None` only while dropping.
    rt: Option<Runtime>,
    client: Client,
    /// A call timed out: the connection may be stuck mid-statement (a hung
    /// or unreachable server), so its owner connects afresh.
    broken: bool,
}

impl PgConn {
    /// Connects to `url` and prepares the session, then refuses a server
    /// the collector's promises fail on (`schema::check_settings`), at every
    /// connection: a server restarted with other settings is caught too.
    ///
    /// TLS: `sslmode=disable` never, `sslmode=require` always (the server's
    /// certificate verified against the Mozilla roots, or the URL's
    /// `sslrootcert` PEM file); unset (`prefer`), TLS for any host that is
    /// neither a unix socket nor loopback. A URL without a password takes it
    /// from `HUSH_DATABASE_PASSWORD`.
    pub(crate) fn connect(url: &str) -> Result<PgConn, CollectorError> {
        let (url, ca_file) = take_param(url, "sslrootcert");
        let mut config = Config::from_str(&url)
            .map_err(|e| CollectorError::Config(format!("database URL: {e}")))?;
        // A password kept out of the configuration file: systemd's
        // `EnvironmentFile=` (root-only) or a secret store sets it.
        if config.get_password().is_none()
            && let Some(password) = std::env::var_os(PASSWORD_VARIABLE)
        {
            config.password(password.as_encoded_bytes());
        }
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => false,
            SslMode::Require => true,
            _ => ca_file.is_some() || leaves_the_machine(&config),
        };
        config
            .application_name("hush-collector")
            .connect_timeout(CONNECT_TIMEOUT)
            .ssl_mode(if tls {
                SslMode::Require
            } else {
                SslMode::Disable
            });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(CollectorError::Io)?;
        let client = if tls {
            let connector = RustlsConnect::new(ca_file.as_deref().map(std::path::Path::new))?;
            start(&rt, &config, connector)?
        } else {
            start(&rt, &config, NoTls)?
        };
        let mut conn = PgConn {
            rt: Some(rt),
            client,
            broken: false,
        };
        conn.run(|c| async move { c.batch_execute(SESSION).await })?;
        super::schema::check_settings(&mut conn)?;
        Ok(conn)
    }

    /// Whether the connection has ended (the server went away); a closed
    /// connection fails every call, so its owner connects again.
    pub(crate) fn is_closed(&self) -> bool {
        self.broken || self.client.is_closed()
    }

    /// Runs `f` on the client and waits at most [`CALL_TIMEOUT`] for it.
    pub(crate) fn run<'c, T, F, Fut>(&'c mut self, f: F) -> Result<T, CollectorError>
    where
        F: FnOnce(&'c mut Client) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + 'c,
    {
        self.run_for(CALL_TIMEOUT, f)
    }

    /// As [`run`](Self::run), with another limit.
    pub(crate) fn run_for<'c, T, F, Fut>(
        &'c mut self,
        limit: Duration,
        f: F,
    ) -> Result<T, CollectorError>
    where
        F: FnOnce(&'c mut Client) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + 'c,
    {
        self.run_with_for(limit, |c| {
            let call = f(c);
            async move { call.await.map_err(|e| error(&e)) }
        })
    }

    /// As [`run`](Self::run), for work that fails with a [`CollectorError`]
    /// of its own (a refusal, a corrupt row) as well as a database error.
    pub(crate) fn run_with<'c, T, F, Fut>(&'c mut self, f: F) -> Result<T, CollectorError>
    where
        F: FnOnce(&'c mut Client) -> Fut,
        Fut: Future<Output = Result<T, CollectorError>> + 'c,
    {
        self.run_with_for(CALL_TIMEOUT, f)
    }

    /// As [`run_with`](Self::run_with), with another limit.
    pub(crate) fn run_with_for<'c, T, F, Fut>(
        &'c mut self,
        limit: Duration,
        f: F,
    ) -> Result<T, CollectorError>
    where
        F: FnOnce(&'c mut Client) -> Fut,
        Fut: Future<Output = Result<T, CollectorError>> + 'c,
    {
        let Some(rt) = &self.rt else {
            unreachable!("the runtime is taken only by drop");
        };
        let call = f(&mut self.client);
        match rt.block_on(async { tokio::time::timeout(limit, call).await }) {
            Ok(result) => result,
            Err(_) => {
                self.broken = true;
                Err(CollectorError::Postgres(format!(
                    "the database did not answer within {} s",
                    limit.as_secs()
                )))
            }
        }
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        // A runtime may not be dropped (which blocks) inside another
        // runtime's task, where a server's connections can end.
        if let Some(rt) = self.rt.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                rt.shutdown_background();
            } else {
                drop(rt);
            }
        }
    }
}

/// Connects with `tls` and spawns the connection's task on `rt`.
fn start<T>(rt: &Runtime, config: &Config, tls: T) -> Result<Client, CollectorError>
where
    T: MakeTlsConnect<Socket> + Send + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as tokio_postgres::tls::TlsConnect<Socket>>::Future: Send,
{
    // The timer is made inside `block_on`, so it is this runtime's.
    let connecting = async { tokio::time::timeout(CALL_TIMEOUT, config.connect(tls)).await };
    match rt.block_on(connecting) {
        Ok(Ok((client, connection))) => {
            // Driven while a call runs on this runtime; ends when the
            // server or the network closes the connection.
            rt.spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!("database connection ended: {e}");
                }
            });
            Ok(client)
        }
        Ok(Err(e)) => Err(unavailable(&e)),
        Err(_) => Err(CollectorError::Postgres(format!(
            "could not connect within {} s",
            CALL_TIMEOUT.as_secs()
        ))),
    }
}

/// Whether any of the URL's hosts is reached over a network: not a unix
/// socket, not loopback.
fn leaves_the_machine(config: &Config) -> bool {
    let loopback = |name: &str| {
        name == "localhost"
            || name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    let by_name = config.get_hosts().iter().any(|h| match h {
        Host::Tcp(name) => !loopback(name),
        #[cfg(unix)]
        Host::Unix(_) => false,
    });
    let by_address = config.get_hostaddrs().iter().any(|ip| !ip.is_loopback());
    by_name || by_address
}

/// The URL without its query parameter `name`, and that parameter's value
/// (tokio-postgres does not know libpq's `sslrootcert`).
fn take_param(url: &str, name: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut value = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some((k, v)) if k == name => {
                value = Some(v.replace("%2F", "/").replace("%2f", "/"));
                false
            }
            _ => true,
        })
        .collect();
    if rest.is_empty() {
        (base.to_owned(), value)
    } else {
        (format!("{base}?{}", rest.join("&")), value)
    }
}

/// A database error as the collector reports it: the server's own message
/// (with its SQLSTATE), or why the connection failed.
pub(crate) fn error(e: &tokio_postgres::Error) -> CollectorError {
    match e.as_db_error() {
        Some(db) => CollectorError::Postgres(format!(
            "{} ({}): {}",
            db.severity(),
            db.code().code(),
            db.message()
        )),
        None => unavailable(e),
    }
}

fn unavailable(e: &tokio_postgres::Error) -> CollectorError {
    // The source says what went wrong (refused, reset, no such host).
    match std::error::Error::source(e) {
        Some(source) => CollectorError::Postgres(format!("{e}: {source}")),
        None => CollectorError::Postgres(e.to_string()),
    }
}

/// Wraps an error inside a [`PgConn::run_with`] body.
pub(crate) fn db(e: tokio_postgres::Error) -> CollectorError {
    error(&e)
}
