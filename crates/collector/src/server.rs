//! The HTTP service: routes, bearer authentication, per-device rate limits, body
//! limits, and TLS when a certificate is configured.
//!
//! axum on tokio: the most used Rust HTTP stack, with body limits and
//! extractors that make a size-capped, authenticated upload path short and
//! hard to get wrong; rustls (ring provider) for TLS without OpenSSL.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use hush_report::Report;
use rusqlite::Connection;
use serde::Deserialize;

use crate::estimate::estimate_cells;
use crate::ingest::{IngestError, Writer};
use crate::store::{self, Principal};
use crate::validate::{Catalogs, validate};
use crate::{CollectorConfig, CollectorError};

/// Shared state of the request handlers.
#[derive(Clone)]
pub struct AppState {
    config: Arc<CollectorConfig>,
    catalogs: Arc<Catalogs>,
    writer: Writer,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: Arc<std::sync::atomic::AtomicUsize>,
    limiter: Arc<Mutex<HashMap<i64, (f64, Instant)>>>,
}

impl AppState {
    /// Opens the database (creating it) and starts the writer.
    pub fn new(config: CollectorConfig) -> Result<AppState, CollectorError> {
        let writer = Writer::start(&config.database, config.group_commit)?;
        let readers = (0..4)
            .map(|_| store::open(&config.database).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AppState {
            config: Arc::new(config),
            catalogs: Arc::new(Catalogs::builtin()),
            writer,
            readers: Arc::new(readers),
            next_reader: Arc::new(Default::default()),
            limiter: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, CollectorError>,
    ) -> Result<T, CollectorError> {
        let i = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % self.readers.len();
        let conn = self.readers[i]
            .lock()
            .map_err(|_| CollectorError::Internal("a reader connection was poisoned".into()))?;
        f(&conn)
    }

    /// Token bucket per device: `device_requests_per_minute` with the same burst.
    fn allow(&self, device: i64) -> bool {
        let rate = f64::from(self.config.device_requests_per_minute) / 60.0;
        let burst = f64::from(self.config.device_requests_per_minute);
        let Ok(mut buckets) = self.limiter.lock() else {
            return true;
        };
        let now = Instant::now();
        let (tokens, last) = buckets.entry(device).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The application's routes.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let authed = Router::new()
        .route("/v1/reports", post(upload))
        .route("/v1/estimates", get(estimates))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .merge(authed)
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/v1/policy", get(policy))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

fn error(status: StatusCode, reason: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({"error": reason.into()}))).into_response()
}

async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 200)
        .map(str::to_owned);
    let Some(token) = token else {
        return error(StatusCode::UNAUTHORIZED, "missing bearer token");
    };
    match state.with_reader(|c| store::principal(c, &token)) {
        Ok(Some(p)) => {
            request.extensions_mut().insert(p);
            next.run(request).await
        }
        Ok(None) => error(StatusCode::UNAUTHORIZED, "unknown or revoked token"),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn upload(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Principal::Device { id, cohort } = principal else {
        return error(StatusCode::FORBIDDEN, "admin tokens cannot upload reports");
    };
    if !state.allow(id) {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many uploads from this device; retry later",
        );
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE)
        && ct.as_bytes() != b"application/octet-stream"
    {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send application/octet-stream",
        );
    }
    let reports = match Report::decode_batch(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let now = now_secs();
    let current = (now.max(0) as u64 / u64::from(state.config.period_seconds)) as u32;
    let mut valid = Vec::with_capacity(reports.len());
    for r in reports {
        let rid = r.id();
        match validate(r, &state.catalogs, &state.config, current) {
            Ok(v) => valid.push(v),
            Err(rej) => {
                let status =
                    StatusCode::from_u16(rej.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
                return error(status, format!("report {rid}: {}", rej.reason));
            }
        }
    }
    match state.writer.submit(id, cohort, valid, now).await {
        Ok(outcome) => (StatusCode::OK, Json(outcome)).into_response(),
        Err(IngestError::Rejected(rej)) => {
            let status = StatusCode::from_u16(rej.status).unwrap_or(StatusCode::CONFLICT);
            error(status, rej.reason)
        }
        Err(IngestError::Storage(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
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
}

async fn estimates(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<EstimateQuery>,
) -> Response {
    if principal != Principal::Admin {
        return error(StatusCode::FORBIDDEN, "estimates need an admin token");
    }
    let cells = match state.with_reader(|c| store::all_cells(c, q.from, q.to)) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    match estimate_cells(
        &cells,
        &state.catalogs,
        state.config.period_seconds,
        state.config.min_devices,
    ) {
        Ok((rows, withheld)) => {
            let rows: Vec<_> = rows
                .into_iter()
                .filter(|r| q.metric.as_deref().is_none_or(|m| m == r.metric))
                .filter(|r| q.cohort.as_deref().is_none_or(|c| c == r.cohort))
                .collect();
            Json(serde_json::json!({
                "min_devices": state.config.min_devices,
                "withheld_cells": withheld,
                "rows": rows,
            }))
            .into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn policy(State(state): State<AppState>) -> Response {
    Json(serde_json::json!({
        "epsilon_1": state.config.epsilon_per_report,
        "epsilon_perm": state.config.epsilon_per_value,
        "period_seconds": state.config.period_seconds,
        "catalogs": state.catalogs.all().iter().map(|c| c.hash().to_string()).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// Serves until ctrl-c or SIGTERM; calls `on_listening` with the bound address.
pub async fn serve(
    config: CollectorConfig,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), CollectorError> {
    serve_until(config, on_listening, shutdown_signal()).await
}

/// Serves until `shutdown` completes (for embedding the collector, as the demo does).
pub async fn serve_until(
    config: CollectorConfig,
    on_listening: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), CollectorError> {
    let tls = config.tls_cert.clone().zip(config.tls_key.clone());
    let listen = config.listen;
    let app = router(AppState::new(config)?);
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    match tls {
        Some((cert, key)) => {
            let rustls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                .await
                .map_err(|e| CollectorError::Config(format!("TLS certificate or key: {e}")))?;
            let handle = axum_server::Handle::new();
            let stop = shutdown;
            let handle_for_stop = handle.clone();
            tokio::spawn(async move {
                stop.await;
                handle_for_stop.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
            });
            on_listening(addr);
            axum_server::from_tcp_rustls(listener, rustls)?
                .handle(handle)
                .serve(app.into_make_service())
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
    Ok(())
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
