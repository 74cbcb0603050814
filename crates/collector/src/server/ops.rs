//! The operators' routes: `/healthz`, `/readyz`, `/metrics` (on `listen`
//! for admin tokens, or on the loopback `metrics_listen`), and the
//! middleware that counts every answer for them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::layers::Authenticated;
use super::{AppState, refuse};
use crate::ingest::NotReady;
use crate::metrics::{ClosedPeriod, Metrics, Snapshot};
use crate::store::{Principal, Store};
use crate::validate::{Catalogs, category};
use crate::{CollectorConfig, CollectorError, PeriodClock};

/// How long `/readyz` waits for the writer to answer its probe: far above a
/// group commit (milliseconds), far below a load balancer's check timeout.
const READY_PATIENCE: Duration = Duration::from_secs(2);

/// How long one readiness answer serves every `/readyz` request: the route
/// needs no token, so its callers must not each cost a probe.
const READY_REUSE: Duration = Duration::from_secs(1);

/// How long `/metrics` reuses the last closed period's figures: they are
/// final but for an erasure or a prune, which another process may make.
const CLOSED_REUSE: Duration = Duration::from_secs(300);

/// A readiness answer and when it was found.
pub(super) type ReadyAnswer = (Instant, Result<(), NotReady>);

/// The routes of `metrics_listen`: `/metrics` without a token (the address
/// is loopback only), and the health checks.
pub(super) fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The category a refusal was answered with, for the refusal counters.
#[derive(Debug, Clone, Copy)]
pub(super) struct Refused(pub(super) &'static str);

/// Counts every answer in [`Metrics`]: its route's latency, and its refusal
/// reason if it was refused. Nothing about the sender is kept.
pub(super) async fn observe(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    count(&state, request, |request| next.run(request)).await
}

/// What [`observe`] does, around any handling of the request: the public
/// router's outermost layer runs its rate limiter inside it.
pub(super) async fn count<F: Future<Output = Response>>(
    state: &AppState,
    request: Request,
    handle: impl FnOnce(Request) -> F,
) -> Response {
    let started = Instant::now();
    let route = Metrics::route_of(request.uri().path());
    let response = handle(request).await;
    state.metrics.request(
        route,
        started.elapsed().as_secs_f64(),
        response.status().as_u16(),
        response.extensions().get::<Refused>().map(|r| r.0),
    );
    response
}

/// Liveness: the process answers.
pub(super) async fn healthz() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

/// Readiness: the writer answers a probe (`Writer::probe`) within
/// [`READY_PATIENCE`] behind the uploads already queued; 503 otherwise. One
/// answer serves every request for [`READY_REUSE`], and a change of answer
/// is logged once.
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    // On its own task, holding the lock: a caller that hangs up does not
    // cancel the probe, whose answer the next callers then share.
    let (ready, writer) = (Arc::clone(&state.ready), state.writer.clone());
    let probe = tokio::spawn(async move {
        let mut last = ready.lock_owned().await;
        match &*last {
            Some((at, answer)) if at.elapsed() < READY_REUSE => answer.clone(),
            previous => {
                let answer = writer.probe(READY_PATIENCE).await;
                match (previous.as_ref().map(|(_, a)| a.is_ok()), &answer) {
                    (Some(true) | None, Err(e)) => tracing::warn!("not ready: {e}"),
                    (Some(false), Ok(())) => tracing::info!("ready again"),
                    _ => {}
                }
                *last = Some((Instant::now(), answer.clone()));
                answer
            }
        }
    });
    let answer = probe.await.unwrap_or(Err(NotReady::Stopped));
    match answer {
        Ok(()) => Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "not ready", "reason": e.category()})),
        )
            .into_response(),
    }
}

/// `/metrics` on `listen`: admin tokens only.
pub(super) async fn admin_metrics(
    State(state): State<AppState>,
    Authenticated { principal, .. }: Authenticated,
) -> Response {
    if principal != Principal::Admin {
        return refuse(
            StatusCode::FORBIDDEN,
            category::WRONG_TOKEN,
            "a device token cannot read metrics",
        );
    }
    metrics(State(state)).await
}

/// The Prometheus text exposition of [`Metrics`] with the figures read now.
async fn metrics(State(state): State<AppState>) -> Response {
    let (queue_depth, queue_capacity) = state.writer.queue();
    let (catalogs, config) = (state.catalogs(), Arc::clone(&state.config));
    let cached = state
        .closed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .filter(|(at, _)| at.elapsed() < CLOSED_REUSE)
        .map(|(_, c)| c);
    let reused = cached.clone();
    let read = state
        .read(move |c| snapshot(c, &catalogs, &config, cached))
        .await;
    match read {
        Ok(mut snap) => {
            (snap.queue_depth, snap.queue_capacity) = (queue_depth, queue_capacity);
            if let Some(closed) = snap
                .last_closed
                .as_ref()
                .filter(|c| reused.as_ref() != Some(*c))
            {
                *state.closed.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), closed.clone()));
            }
            (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                state.metrics.render(&snap),
            )
                .into_response()
        }
        Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, category::STORAGE, e),
    }
}

/// The scrape-time figures: file sizes, and the last closed period's
/// figures (`cached` if they are that period's).
fn snapshot(
    db: &mut dyn Store,
    catalogs: &Catalogs,
    config: &CollectorConfig,
    cached: Option<ClosedPeriod>,
) -> Result<Snapshot, CollectorError> {
    let clock = config.clock();
    let last_closed = match clock.last_closed() {
        Some(last) => match cached.filter(|c| c.period == last) {
            Some(c) => Some(c),
            None => Some(closed_period(db, catalogs, config, &clock, last)?),
        },
        None => None,
    };
    Ok(Snapshot {
        queue_depth: 0,
        queue_capacity: 0,
        sizes: db.sizes(),
        last_closed,
    })
}

/// The figures of closed period `last`: devices, cells released and
/// withheld (as `/v1/estimates` releases them), and devices per agent version.
fn closed_period(
    db: &mut dyn Store,
    catalogs: &Catalogs,
    config: &CollectorConfig,
    clock: &PeriodClock,
    last: u32,
) -> Result<ClosedPeriod, CollectorError> {
    let (rows, withheld) = crate::estimate::released_rows(
        db,
        catalogs,
        clock,
        crate::estimate::Window::Day,
        Some(last),
        Some(last),
        config.period_seconds,
        config.min_devices,
    )?;
    // A cell is one (catalog, metric, cohort, terms); a frequency metric's
    // cell has a row per bucket.
    let released: std::collections::HashSet<_> = rows
        .iter()
        .map(|r| {
            (
                &r.catalog_hash,
                &r.metric,
                &r.cohort,
                r.epsilon.to_bits(),
                r.epsilon_perm.to_bits(),
            )
        })
        .collect();
    let reports = db.stored_reports(last, last)?;
    Ok(ClosedPeriod {
        period: last,
        devices: reports.len() as u64,
        released_cells: released.len() as u64,
        withheld_cells: withheld as u64,
        agent_versions: crate::metrics::agent_version_counts(
            reports.iter().map(|(_, _, _, r)| r.agent_version()),
            config.min_devices,
        ),
    })
}
