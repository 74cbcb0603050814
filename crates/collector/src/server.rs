//! The HTTP service: routes, bearer authentication, rate limits per device and
//! per client address, body limits, retention, and TLS when a certificate is
//! configured.
//!
//! axum on tokio: the most used Rust HTTP stack, with body limits and
//! extractors that make a size-capped, authenticated upload path short and
//! hard to get wrong; rustls (ring provider) for TLS without OpenSSL.
//!
//! The employer runs this service, so it is built to learn as little as it
//! can: refusals say only their category (details go to the debug log), the
//! client address is used for the failed-request limit in memory and never
//! stored or logged, and the log carries no per-request times.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hush_report::{PublishedRanges, Report};
use serde::Deserialize;

use crate::auth::DeviceDirectory;
use crate::ingest::{IngestError, Writer};
use crate::limits::{Buckets, TOKEN_TTL, TokenCache};
use crate::metrics::{ClosedPeriod, Metrics};
use crate::store::{self, Principal, Store};
use crate::validate::{Catalogs, category, validate};
use crate::{CollectorConfig, CollectorError, PeriodClock};

mod layers;
mod ops;

use layers::Authenticated;

/// The least time between two reads of the catalogs from the database.
const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// How often the retention task runs after the one at start.
const RETENTION_INTERVAL: Duration = Duration::from_secs(86_400);

/// Shared state of the request handlers: one `Arc`, since every request
/// clones it once per middleware layer (as fourteen `Arc`s, those clones and
/// drops were 5% of the request threads' CPU).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Shared {
    config: Arc<CollectorConfig>,
    /// The catalogs known, swapped whole when a range revision appears.
    catalogs: Arc<RwLock<Arc<Catalogs>>>,
    /// When the catalogs were last read from the database.
    catalogs_read_at: Arc<Mutex<Option<Instant>>>,
    writer: Writer,
    readers: Arc<Vec<Mutex<Box<dyn Store>>>>,
    next_reader: Arc<AtomicUsize>,
    /// Upload allowances, per token: one per device, and an old token of
    /// an id SQLite reused after an erasure cannot spend the new device's.
    devices: Arc<Buckets<[u8; 32]>>,
    clients: Arc<Buckets<IpAddr>>,
    /// Device tokens, without expiry (the writer rechecks each upload's device).
    directory: Arc<DeviceDirectory>,
    /// Admin tokens, believed for [`TOKEN_TTL`].
    tokens: Arc<TokenCache>,
    /// What `/metrics` shows.
    metrics: Arc<Metrics>,
    /// The last readiness answer and when it was found; the lock also makes
    /// concurrent `/readyz` requests share one probe.
    ready: Arc<tokio::sync::Mutex<Option<ops::ReadyAnswer>>>,
    /// The last closed period's figures and when they were worked out.
    closed: Arc<Mutex<Option<(Instant, ClosedPeriod)>>>,
    /// The dashboard's signed-in sessions.
    sessions: Arc<crate::dashboard::Sessions>,
}

/// The hash of the bearer token a request was authenticated with.
#[derive(Debug, Clone, Copy)]
struct TokenHash([u8; 32]);

impl AppState {
    /// Opens the database (creating it) and starts the writer.
    pub fn new(config: CollectorConfig) -> Result<AppState, CollectorError> {
        let metrics = Arc::new(Metrics::default());
        // The first open creates or migrates the schema the writer's statements need.
        let readers = (0..4)
            .map(|_| store::open(&config.database).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        let writer = Writer::start(&config.database, config.group_commit, Arc::clone(&metrics))?;
        let catalogs = match readers[0].lock() {
            Ok(mut store) => Catalogs::load(store.as_mut())?,
            Err(_) => {
                return Err(CollectorError::Internal(
                    "a new connection was poisoned".into(),
                ));
            }
        };
        Ok(AppState(Arc::new(Shared {
            devices: Arc::new(Buckets::new(config.device_requests_per_minute)),
            clients: Arc::new(Buckets::new(config.failed_requests_per_minute)),
            config: Arc::new(config),
            catalogs: Arc::new(RwLock::new(Arc::new(catalogs))),
            catalogs_read_at: Arc::new(Mutex::new(Some(Instant::now()))),
            writer,
            readers: Arc::new(readers),
            next_reader: Arc::new(AtomicUsize::new(0)),
            directory: Arc::new(DeviceDirectory::default()),
            tokens: Arc::new(TokenCache::new(TOKEN_TTL)),
            metrics,
            ready: Arc::new(tokio::sync::Mutex::new(None)),
            closed: Arc::new(Mutex::new(None)),
            sessions: Arc::new(crate::dashboard::Sessions::default()),
        })))
    }

    /// The configuration it serves with.
    pub(crate) fn config(&self) -> Arc<CollectorConfig> {
        Arc::clone(&self.config)
    }

    /// Whether it serves TLS (so cookies are marked Secure).
    pub(crate) fn tls(&self) -> bool {
        self.config.tls_cert.is_some()
    }

    /// The dashboard's sessions.
    pub(crate) fn sessions(&self) -> &crate::dashboard::Sessions {
        &self.sessions
    }

    /// The catalogs known now.
    pub(crate) fn catalogs(&self) -> Arc<Catalogs> {
        match self.catalogs.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Reads the catalogs again from the database, where range revisions are
    /// published (by this process's learning task, or by another collector
    /// on the same database), at most once every [`RELOAD_INTERVAL`]: the
    /// policy needs no sign-in, so its requests must not each cost a read.
    /// `force` skips the wait: an upload with an unknown catalog comes with a
    /// device token and under its rate limit, and refusing it could drop a
    /// report made with a revision another collector just published.
    async fn reload_catalogs(&self, force: bool) -> Result<Arc<Catalogs>, CollectorError> {
        {
            let mut last = self
                .catalogs_read_at
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !force && last.is_some_and(|t| t.elapsed() < RELOAD_INTERVAL) {
                return Ok(self.catalogs());
            }
            *last = Some(Instant::now());
        }
        let fresh = Arc::new(self.read(Catalogs::load).await?);
        match self.catalogs.write() {
            Ok(mut c) => *c = Arc::clone(&fresh),
            Err(poisoned) => *poisoned.into_inner() = Arc::clone(&fresh),
        }
        Ok(fresh)
    }

    /// Runs a read on one of the reader connections on a blocking thread, so a
    /// database query never stalls the async executor.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> Result<T, CollectorError> + Send + 'static,
    ) -> Result<T, CollectorError> {
        let readers = Arc::clone(&self.readers);
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % readers.len();
        tokio::task::spawn_blocking(move || {
            let mut store = readers[i]
                .lock()
                .map_err(|_| CollectorError::Internal("a reader connection was poisoned".into()))?;
            f(store.as_mut())
        })
        .await
        .map_err(|e| CollectorError::Internal(format!("a database read failed: {e}")))?
    }
}

/// How many threads the async runtime should serve requests on: all the
/// processor's cores but one, which the ingestion writer's thread keeps
/// busy, and at least one. On two cores, a second request thread only
/// added wake-ups between threads: 2 to 9% more collector CPU per report
/// in three alternating rounds of `hush collector loadgen`, for no more
/// reports per second.
pub fn request_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1)
}

/// The application's routes.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let authed = Router::new()
        .route("/v1/reports", post(upload))
        .route("/v1/estimates", get(estimates))
        .route("/metrics", get(ops::admin_metrics));
    Router::new()
        .merge(authed)
        .merge(crate::dashboard::routes())
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/v1/policy", get(policy))
        // Set before the layers below, so unknown paths count as failures too.
        .fallback(|| async { refuse(StatusCode::NOT_FOUND, category::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                category::WRONG_METHOD,
                "wrong method for a route",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), layers::front))
        .with_state(state)
}

/// A refusal: the category alone goes to the sender; the details go to the
/// log (debug for the sender's mistakes, warn for the collector's own).
fn refuse(status: StatusCode, category: &'static str, detail: impl std::fmt::Display) -> Response {
    if status.is_server_error() {
        tracing::warn!(status = status.as_u16(), category, "{detail}");
    } else {
        tracing::debug!(status = status.as_u16(), category, "{detail}");
    }
    let mut response = (status, Json(serde_json::json!({"error": category}))).into_response();
    response.extensions_mut().insert(ops::Refused(category));
    response
}

async fn upload(
    State(state): State<AppState>,
    Authenticated {
        principal,
        token: TokenHash(token),
    }: Authenticated,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Principal::Device { id, .. } = principal else {
        return refuse(
            StatusCode::FORBIDDEN,
            category::WRONG_TOKEN,
            "an admin token cannot upload reports",
        );
    };
    // A body over the limit was never read, so it costs no upload allowance.
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, category::TOO_LARGE, e);
        }
        Err(e) => return refuse(StatusCode::BAD_REQUEST, category::MALFORMED, e),
    };
    if !state.devices.allow(token, Instant::now()) {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            category::TOO_MANY,
            "a device is over its upload allowance",
        );
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE)
        && ct.as_bytes() != b"application/octet-stream"
    {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            category::CONTENT_TYPE,
            "another content type",
        );
    }
    let reports = match Report::decode_batch(&body) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, category::MALFORMED, e),
    };
    let current = state.config.clock().current;
    let mut catalogs = state.catalogs();
    let mut reloaded = false;
    let mut valid = Vec::with_capacity(reports.len());
    for r in reports {
        // A revision published since the catalogs were read (or by another
        // collector) is known once they are read again.
        if !reloaded && catalogs.get(r.catalog_hash()).is_none() {
            reloaded = true;
            match state.reload_catalogs(true).await {
                Ok(c) => catalogs = c,
                Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, category::STORAGE, e),
            }
        }
        match validate(r, &catalogs, &state.config, current) {
            Ok(v) => valid.push(v),
            Err(rej) => {
                let status =
                    StatusCode::from_u16(rej.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
                return refuse(status, rej.category, rej.reason);
            }
        }
    }
    match state.writer.submit(id, token, valid).await {
        Ok(outcome) => (StatusCode::OK, Json(outcome)).into_response(),
        Err(IngestError::Rejected(rej)) => {
            if rej.status == 401 {
                state.directory.forget(&token);
            }
            let status = StatusCode::from_u16(rej.status).unwrap_or(StatusCode::CONFLICT);
            refuse(status, rej.category, rej.reason)
        }
        Err(IngestError::Storage(e)) => {
            refuse(StatusCode::SERVICE_UNAVAILABLE, category::STORAGE, e)
        }
    }
}

/// Query of `GET /v1/estimates`.
#[derive(Debug, Deserialize)]
pub struct EstimateQuery {
    /// Only this metric.
    pub metric: Option<String>,
    /// First period (inclusive).
    pub from: Option<u32>,
    /// Last period (inclusive).
    pub to: Option<u32>,
    /// Only this cohort.
    pub cohort: Option<String>,
    /// `day` (default), `week` or `month`: pooled windows with errors
    /// clustered by device.
    pub window: Option<crate::estimate::Window>,
}

async fn estimates(
    State(state): State<AppState>,
    Authenticated { principal, .. }: Authenticated,
    query: Result<Query<EstimateQuery>, QueryRejection>,
) -> Response {
    if principal != Principal::Admin {
        return refuse(
            StatusCode::FORBIDDEN,
            category::WRONG_TOKEN,
            "a device token cannot read estimates",
        );
    }
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, category::MALFORMED, e),
    };
    let clock = state.config.clock();
    let (catalogs, config) = (state.catalogs(), Arc::clone(&state.config));
    let (from, to) = (q.from, q.to);
    let window = q.window.unwrap_or(crate::estimate::Window::Day);
    let released = state
        .read(move |c| {
            // Only closed periods: their cells can no longer change.
            crate::estimate::released_rows(
                c,
                &catalogs,
                &clock,
                window,
                from,
                to,
                config.period_seconds,
                config.min_devices,
            )
        })
        .await;
    match released {
        Ok((rows, withheld)) => {
            let rows: Vec<_> = rows
                .into_iter()
                .filter(|r| q.metric.as_deref().is_none_or(|m| m == r.metric))
                .filter(|r| q.cohort.as_deref().is_none_or(|c| c == r.cohort))
                .collect();
            Json(serde_json::json!({
                "min_devices": state.config.min_devices,
                "grace_periods": state.config.grace_periods,
                "released_through": clock.last_closed(),
                "withheld_cells": withheld,
                "rows": rows,
            }))
            .into_response()
        }
        Err(e @ (CollectorError::Database(_) | CollectorError::Postgres(_))) => {
            refuse(StatusCode::SERVICE_UNAVAILABLE, category::STORAGE, e)
        }
        Err(CollectorError::Refused(e)) => refuse(StatusCode::BAD_REQUEST, category::MALFORMED, e),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, category::INTERNAL, e),
    }
}

async fn policy(State(state): State<AppState>) -> Response {
    // Read each time, so every collector on one database offers the same
    // ranges (an agent asks once a period: a small read).
    let catalogs = match state.reload_catalogs(false).await {
        Ok(c) => c,
        Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, category::STORAGE, e),
    };
    Json(serde_json::json!({
        "epsilon_1": state.config.epsilon_per_report,
        "epsilon_perm": state.config.epsilon_per_value,
        "period_seconds": state.config.period_seconds,
        "grace_periods": state.config.grace_periods,
        "catalogs": catalogs.all().iter().map(|c| c.hash().to_string()).collect::<Vec<_>>(),
        "ranges": catalogs.current(),
    }))
    .into_response()
}

/// Learns the fleet's ranges once (`hush_collector::ranges::learn`) at the
/// collector's clock; returns the revision published, if any.
pub fn learn_ranges(config: &CollectorConfig) -> Result<Option<PublishedRanges>, CollectorError> {
    let mut store = store::open_existing(&config.database)?;
    crate::ranges::learn(store.as_mut(), config, config.clock())
}

/// Deletes the stored reports that `retention_days` lets go (closed periods
/// only); returns how many. The same code path as `hush collector prune`.
pub fn prune_expired(config: &CollectorConfig) -> Result<u64, CollectorError> {
    let mut store = store::open_existing(&config.database)?;
    let now = config.now();
    let clock = PeriodClock::at(config, now);
    let before = store::retention_limit(&clock, now, config.retention_days, config.period_seconds);
    let pruned = store.prune(&clock, before)?;
    if pruned > 0 {
        tracing::info!(
            "retention: deleted {pruned} stored reports of periods before {before}; released cells stay"
        );
    }
    Ok(pruned)
}

/// Serves until ctrl-c or SIGTERM; calls `on_listening` with the bound address.
pub async fn serve(
    config: CollectorConfig,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), CollectorError> {
    serve_until(config, on_listening, shutdown_signal()).await
}

/// Serves until `shutdown` completes (for embedding the collector, as the demo does).
///
/// Before listening it prunes what `retention_days` lets go, and then again
/// once a day while it runs.
pub async fn serve_until(
    config: CollectorConfig,
    on_listening: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), CollectorError> {
    let tls = config.tls_cert.clone().zip(config.tls_key.clone());
    let (listen, metrics_listen) = (config.listen, config.metrics_listen);
    if config.clock_offset_seconds != 0 {
        tracing::warn!(
            "clock_offset_seconds = {}: periods are accepted, released and pruned by a shifted clock (for tests and demos only)",
            config.clock_offset_seconds
        );
    }
    // Opening may connect to PostgreSQL, which blocks.
    let state = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || AppState::new(config))
            .await
            .map_err(|e| CollectorError::Internal(format!("opening the database failed: {e}")))??
    };
    let at_start = config.clone();
    tokio::task::spawn_blocking(move || prune_expired(&at_start))
        .await
        .map_err(|e| CollectorError::Internal(format!("the retention task failed: {e}")))??;
    // The first retention tick is immediate, and the start already pruned.
    let retention = repeat("retention", RETENTION_INTERVAL, true, config.clone(), |c| {
        prune_expired(c).map(|_| ())
    });
    // Often enough to act within a minute of a period's turn.
    let every = Duration::from_secs(u64::from(config.period_seconds.clamp(1, 60)));
    let upkeep = repeat("upkeep", every, false, config.clone(), |c| {
        store::open_existing(&c.database)?.upkeep(&c.clock())
    });
    let learning = config.learn_ranges.then(|| {
        repeat("ranges", every, false, config, |c| {
            learn_ranges(c).map(|_| ())
        })
    });
    // One shutdown for both listeners.
    let (stopping, stop) = tokio::sync::watch::channel(false);
    let stopper = tokio::spawn(async move {
        shutdown.await;
        let _ = stopping.send(true);
    });
    let stopped = move || {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };
    let metrics_server = match metrics_listen {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|e| CollectorError::Config(format!("metrics_listen {address}: {e}")))?;
            tracing::info!(
                "metrics without a token on http://{}/metrics",
                listener.local_addr()?
            );
            let app = ops::metrics_router(state.clone());
            let stop = stopped();
            Some(tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
                {
                    tracing::warn!("metrics listener: {e}");
                }
            }))
        }
        None => None,
    };
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let shutdown = stopped();
    let served = async {
        match tls {
            Some((cert, key)) => {
                let rustls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                    .await
                    .map_err(|e| CollectorError::Config(format!("TLS certificate or key: {e}")))?;
                let handle = axum_server::Handle::new();
                let handle_for_stop = handle.clone();
                tokio::spawn(async move {
                    shutdown.await;
                    handle_for_stop.graceful_shutdown(Some(Duration::from_secs(5)));
                });
                on_listening(addr);
                axum_server::from_tcp_rustls(listener, rustls)?
                    .handle(handle)
                    .serve(app)
                    .await?;
            }
            None => {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                on_listening(addr);
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await?;
            }
        }
        Ok::<_, CollectorError>(())
    }
    .await;
    retention.abort();
    upkeep.abort();
    stopper.abort();
    for task in [learning, metrics_server].into_iter().flatten() {
        task.abort();
    }
    served
}

/// Runs `job` on a blocking thread every `every` (skipping the immediate
/// first tick if `skip_first`), logging its failures under `what`; a slow
/// run delays the next rather than piling up.
fn repeat(
    what: &'static str,
    every: Duration,
    skip_first: bool,
    config: CollectorConfig,
    job: fn(&CollectorConfig) -> Result<(), CollectorError>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if skip_first {
            tick.tick().await;
        }
        loop {
            tick.tick().await;
            let config = config.clone();
            match tokio::task::spawn_blocking(move || job(&config)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("{what}: {e}"),
                Err(e) => tracing::warn!("{what}: {e}"),
            }
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
