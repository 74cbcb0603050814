//! The dashboard for ML teams at `/dashboard`: sign-in with an admin token,
//! a session cookie, and per metric the released daily estimates with their
//! 95% intervals as a server-rendered SVG chart and a table, the withheld
//! cells with their reason, and the same rows to download as CSV or Parquet.
//!
//! Served by the collector itself, with nothing to build and no script: the
//! pages are HTML and SVG written here, and the one stylesheet is compiled
//! in. So the Content-Security-Policy can forbid every script, and a cohort
//! name an admin typed (or an attacker chose when asking for a token) can at
//! worst be text: every string goes through [`page::escape`].
//!
//! Sessions live in memory only (a restart signs everyone out), keyed by the
//! SHA-256 of a random cookie value, and expire after [`SESSION_TTL`]. The
//! cookie is HttpOnly and SameSite=Strict, scoped to `/dashboard`, and
//! Secure when the collector serves TLS. Every state-changing request is a
//! POST carrying a CSRF token: the session's for sign-out, a double-submit
//! cookie's for sign-in.

mod page;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Form;
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::export::{Format, PeriodBound};
use crate::limits::TOKEN_TTL;
use crate::server::AppState;
use crate::store::{self, Principal};
use crate::tokens::{secret_from_os, token_hash};
use crate::{CollectorError, estimate};

/// How long a sign-in lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// How long a sign-in form may be submitted after it was shown.
const LOGIN_FORM_TTL: Duration = Duration::from_secs(600);

/// Periods shown when the page is asked for no range: a month of days.
const DEFAULT_PERIODS: u32 = 31;

/// Sessions held at most (each is an admin's sign-in).
const MAX_SESSIONS: usize = 10_000;

const SESSION_COOKIE: &str = "hush_session";
const LOGIN_COOKIE: &str = "hush_login";

/// Signed-in sessions, by the hash of their cookie value.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

#[derive(Debug, Clone)]
struct Session {
    expires: Instant,
    /// The token every POST of this session carries.
    csrf: String,
    /// The hash of the admin token it signed in with, and when that token
    /// was last found active: a revoked token's sessions end within
    /// [`TOKEN_TTL`], as its API reads do.
    token: [u8; 32],
    checked: Instant,
}

impl Sessions {
    /// Starts a session for the admin token whose hash is `token`; returns
    /// its cookie value.
    fn start(&self, token: [u8; 32], now: Instant) -> Result<String, CollectorError> {
        let id = secret_from_os()?;
        let session = Session {
            expires: now + SESSION_TTL,
            csrf: secret_from_os()?,
            token,
            checked: now,
        };
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        // Expired sessions go whenever one starts; past the cap, the one
        // closest to expiry goes too, so the map stays bounded.
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(token_hash(&id), session);
        Ok(id)
    }

    fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&token_hash(id))
            .filter(|s| s.expires > now)
            .cloned()
    }

    fn checked(&self, id: &str, now: Instant) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get_mut(&token_hash(id)) {
            s.checked = now;
        }
    }

    fn end(&self, id: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&token_hash(id));
    }
}

/// The dashboard's routes, under `/dashboard`, every answer with the
/// security headers of [`secure`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(dashboard))
        .route("/dashboard/login", get(login_form).post(login))
        .route("/dashboard/logout", axum::routing::post(logout))
        .route("/dashboard/rows.csv", get(download_csv))
        .route("/dashboard/rows.parquet", get(download_parquet))
        .route("/dashboard/style.css", get(style))
        .layer(middleware::from_fn(secure))
}

async fn download_csv(
    state: State<AppState>,
    headers: HeaderMap,
    view: Result<Query<View>, QueryRejection>,
) -> Response {
    download(state, headers, view, Format::Csv).await
}

async fn download_parquet(
    state: State<AppState>,
    headers: HeaderMap,
    view: Result<Query<View>, QueryRejection>,
) -> Response {
    download(state, headers, view, Format::Parquet).await
}

/// The security headers both web pages send ([`hush_web::SECURITY_HEADERS`]).
async fn secure(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in hush_web::SECURITY_HEADERS {
        headers.insert(
            header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        page::STYLE,
    )
        .into_response()
}

/// A cookie's value in the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    hush_web::cookie(
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        name,
    )
}

/// `Set-Cookie` for the dashboard: HttpOnly, SameSite=Strict, its path only,
/// Secure under TLS; `max_age` 0 deletes it.
fn set_cookie(state: &AppState, name: &str, value: &str, max_age: Duration) -> HeaderValue {
    let secure = if state.tls() { "; Secure" } else { "" };
    let text = format!(
        "{name}={value}; Path=/dashboard; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        max_age.as_secs()
    );
    HeaderValue::from_str(&text)
        .unwrap_or_else(|_| HeaderValue::from_static("hush_invalid=; Max-Age=0"))
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The signed-in session of a request, if any; one whose admin token was
/// revoked ends here (checked at most every [`TOKEN_TTL`]).
async fn session(state: &AppState, headers: &HeaderMap) -> Option<(String, Session)> {
    let id = cookie(headers, SESSION_COOKIE)?.to_owned();
    let now = Instant::now();
    let s = state.sessions().get(&id, now)?;
    if now.duration_since(s.checked) >= TOKEN_TTL {
        let token = s.token;
        match state.read(move |db| db.principal_by_hash(&token)).await {
            Ok(Some(Principal::Admin)) => state.sessions().checked(&id, now),
            Ok(_) => {
                state.sessions().end(&id);
                return None;
            }
            // The database is down: the page will say so; the session stands.
            Err(_) => {}
        }
    }
    Some((id, s))
}

/// The sign-in page's query: a one-time sign-in link carries its admin token.
#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    /// An admin token that signing in with revokes (`hush demo --serve`
    /// prints such a link).
    once: Option<String>,
}

async fn login_form(
    State(state): State<AppState>,
    query: Result<Query<LoginQuery>, QueryRejection>,
) -> Response {
    let once = query.ok().and_then(|Query(q)| q.once);
    login_page(&state, StatusCode::OK, None, once.as_deref())
}

/// The sign-in page with a fresh double-submit CSRF token in a cookie and
/// in the form; with `once`, a button that signs in with that token.
fn login_page(
    state: &AppState,
    status: StatusCode,
    error: Option<&str>,
    once: Option<&str>,
) -> Response {
    let csrf = match secret_from_os() {
        Ok(c) => c,
        Err(e) => {
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                page::error(&e.to_string()),
            );
        }
    };
    let mut response = html(status, page::login(&csrf, error, once));
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(state, LOGIN_COOKIE, &csrf, LOGIN_FORM_TTL),
    );
    response
}

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    csrf: String,
    /// Set by a one-time link's form: the token is revoked once signed in.
    #[serde(default)]
    once: bool,
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return login_page(
            &state,
            StatusCode::BAD_REQUEST,
            Some("The form was incomplete."),
            None,
        );
    };
    if cookie(&headers, LOGIN_COOKIE) != Some(form.csrf.as_str()) || form.csrf.is_empty() {
        return login_page(
            &state,
            StatusCode::FORBIDDEN,
            Some("The form expired or came from another site. Sign in again."),
            None,
        );
    }
    let token = form.token.trim().to_owned();
    let hash = token_hash(&token);
    let once = form.once;
    let now = state.config().now();
    // A one-time link's token signs in only for whoever revokes it: writes
    // are serialized, so of two tabs racing with one link, one revokes and
    // the other finds nothing left to revoke.
    let principal = state
        .read(move |db| {
            let p = store::principal(db, &token)?;
            if once && p == Some(Principal::Admin) && !db.revoke_token(&token, now)? {
                return Ok(None);
            }
            Ok(p)
        })
        .await;
    match principal {
        Ok(Some(Principal::Admin)) => {}
        Ok(_) => {
            return login_page(
                &state,
                StatusCode::UNAUTHORIZED,
                Some(if once {
                    "This sign-in link was used already; sign in with an admin token."
                } else {
                    "That is not an active admin token."
                }),
                None,
            );
        }
        Err(e) => {
            tracing::warn!("dashboard sign-in: {e}");
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                page::error("The database is unavailable."),
            );
        }
    }
    let id = match state.sessions().start(hash, Instant::now()) {
        Ok(s) => s,
        Err(e) => {
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                page::error(&e.to_string()),
            );
        }
    };
    let mut response = Redirect::to("/dashboard").into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(&state, SESSION_COOKIE, &id, SESSION_TTL),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(&state, LOGIN_COOKIE, "", Duration::ZERO),
    );
    response
}

/// The sign-out form's field.
#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Response {
    let Some((id, session)) = session(&state, &headers).await else {
        return Redirect::to("/dashboard/login").into_response();
    };
    match form {
        Ok(Form(f)) if f.csrf == session.csrf => {}
        _ => {
            return html(
                StatusCode::FORBIDDEN,
                page::error("Missing or wrong CSRF token."),
            );
        }
    }
    state.sessions().end(&id);
    let mut response = Redirect::to("/dashboard/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&state, SESSION_COOKIE, "", Duration::ZERO),
    );
    response
}

/// What the page shows: a metric, a cohort and a range of dates.
#[derive(Debug, Default, Deserialize)]
pub struct View {
    /// The metric's name (default: the catalog's first).
    pub metric: Option<String>,
    /// The cohort (default: the first with data).
    pub cohort: Option<String>,
    /// First day, YYYY-MM-DD (default: a month before the last closed one).
    pub from: Option<String>,
    /// Last day, YYYY-MM-DD (default: the last closed one).
    pub to: Option<String>,
}

/// Everything a page or a download needs, read in one go.
#[derive(Debug)]
struct Selection {
    metrics: Vec<hush_report::Metric>,
    metric: Option<hush_report::Metric>,
    cohorts: Vec<String>,
    cohort: Option<String>,
    from: Option<u32>,
    to: Option<u32>,
    rows: Vec<estimate::EstimateRow>,
    /// Cells withheld in the range, over every metric and cohort: what
    /// `/v1/estimates` says, and no more (which metric or cohort had a small
    /// cell on which day would say who reported).
    withheld: usize,
}

fn bound(text: Option<&str>) -> Result<Option<PeriodBound>, CollectorError> {
    text.map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::parse)
        .transpose()
}

/// Reads the closed periods' cells in the range and keeps the selected
/// metric's and cohort's: estimates for those with at least `min_devices`
/// reports, the others withheld.
async fn select(state: &AppState, view: View) -> Result<Selection, CollectorError> {
    let config = state.config();
    let clock = config.clock();
    let seconds = config.period_seconds;
    let from = bound(view.from.as_deref())?
        .map(|b| b.first_period(seconds))
        .transpose()?;
    let to = bound(view.to.as_deref())?
        .map(|b| b.last_period(seconds))
        .transpose()?;
    let last = clock.last_closed();
    let to = to.or(last);
    let from = from.or_else(|| to.map(|t| t.saturating_sub(DEFAULT_PERIODS - 1)));
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(CollectorError::Refused(
            "the first day is after the last: nothing to show".into(),
        ));
    }
    let catalogs = state.catalogs();
    // Range revisions change ranges, never names: the first catalog names them all.
    let metrics: Vec<hush_report::Metric> = catalogs
        .all()
        .first()
        .map(|c| c.metrics().to_vec())
        .unwrap_or_default();
    let metric = match &view.metric {
        Some(name) => Some(
            metrics
                .iter()
                .find(|m| m.name == name)
                .cloned()
                .ok_or_else(|| CollectorError::Refused(format!("no metric named {name}")))?,
        ),
        None => metrics.first().cloned(),
    };
    let cells = state
        .read(move |c| store::released_cells(c, &clock, from, to))
        .await?;
    let min = config.min_devices.max(2);
    let withheld = cells.iter().filter(|(_, s)| s.reports() < min).count();
    let name = metric.as_ref().map(|m| m.name);
    // Released cells only: a cohort listed for its withheld cells would say
    // that a few of its devices reported.
    let of_metric: Vec<_> = cells
        .into_iter()
        .filter(|(k, s)| {
            s.reports() >= min
                && catalogs
                    .get(k.catalog)
                    .and_then(|c| c.metrics().get(usize::from(k.metric)))
                    .is_some_and(|m| Some(m.name) == name)
        })
        .collect();
    let mut cohorts: Vec<String> = of_metric.iter().map(|(k, _)| k.cohort.clone()).collect();
    cohorts.sort();
    cohorts.dedup();
    let cohort = view
        .cohort
        .clone()
        .filter(|c| !c.is_empty())
        .or_else(|| cohorts.first().cloned());
    let chosen: Vec<_> = of_metric
        .into_iter()
        .filter(|(k, _)| Some(&k.cohort) == cohort.as_ref())
        .collect();
    let (rows, _) = estimate::estimate_cells(&chosen, &catalogs, seconds, config.min_devices)?;
    Ok(Selection {
        metrics,
        metric,
        cohorts,
        cohort,
        from,
        to,
        rows,
        withheld,
    })
}

async fn dashboard(
    State(state): State<AppState>,
    headers: HeaderMap,
    view: Result<Query<View>, QueryRejection>,
) -> Response {
    let Some((_, session)) = session(&state, &headers).await else {
        return Redirect::to("/dashboard/login").into_response();
    };
    let view = match view {
        Ok(Query(v)) => v,
        Err(e) => return html(StatusCode::BAD_REQUEST, page::error(&e.body_text())),
    };
    match select(&state, view).await {
        Ok(sel) => {
            let config = state.config();
            html(
                StatusCode::OK,
                page::dashboard(&page::Dashboard {
                    csrf: &session.csrf,
                    metrics: &sel.metrics,
                    metric: sel.metric.as_ref(),
                    cohorts: &sel.cohorts,
                    cohort: sel.cohort.as_deref(),
                    from: sel
                        .from
                        .map(|p| estimate::period_start(p, config.period_seconds)),
                    to: sel
                        .to
                        .map(|p| estimate::period_start(p, config.period_seconds)),
                    rows: &sel.rows,
                    withheld: sel.withheld,
                    min_devices: config.min_devices.max(2),
                    epsilon: config.epsilon_per_report,
                    epsilon_perm: config.epsilon_per_value,
                }),
            )
        }
        Err(e) => failed(e),
    }
}

/// The page for a selection that failed: the reader's mistake (400, said
/// as it is) or the database (503; the details go to the log only).
fn failed(e: CollectorError) -> Response {
    match e {
        CollectorError::Refused(e) => html(StatusCode::BAD_REQUEST, page::error(&e)),
        e => {
            tracing::warn!("dashboard: {e}");
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                page::error("The database is unavailable."),
            )
        }
    }
}

async fn download(
    State(state): State<AppState>,
    headers: HeaderMap,
    view: Result<Query<View>, QueryRejection>,
    format: Format,
) -> Response {
    if session(&state, &headers).await.is_none() {
        return html(StatusCode::UNAUTHORIZED, page::error("Sign in first."));
    }
    let view = match view {
        Ok(Query(v)) => v,
        Err(e) => return html(StatusCode::BAD_REQUEST, page::error(&e.body_text())),
    };
    let sel = match select(&state, view).await {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    match crate::export::rows_bytes(format, &sel.rows) {
        Ok(bytes) => {
            // Catalog names are plain today; the header must stay so whatever they become.
            let stem: String = sel
                .metric
                .as_ref()
                .map_or("rows", |m| m.name)
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c))
                .collect();
            let name = format!("hush-{stem}.{}", format.name());
            let mime = match format {
                Format::Csv => "text/csv; charset=utf-8",
                Format::Parquet => "application/vnd.apache.parquet",
                Format::Jsonl => "application/jsonl",
            };
            (
                [
                    (header::CONTENT_TYPE, mime.to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}\""),
                    ),
                ],
                bytes,
            )
                .into_response()
        }
        Err(e) => html(
            StatusCode::INTERNAL_SERVER_ERROR,
            page::error(&e.to_string()),
        ),
    }
}
