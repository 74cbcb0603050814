//! The layers requests pass before a handler: the outermost one, which
//! counts every answer around the failed-request limit, and bearer
//! authentication, an extractor for the handlers that need a token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::{AppState, TokenHash, ops, refuse};
use crate::limits::client_key;
use crate::store::Principal;
use crate::tokens::token_hash;
use crate::validate::category;

/// The outermost layer: counts every answer in the operators' metrics, the
/// rate limiter's refusals included, around [`limit_failures`]. One layer
/// for the two, since each `from_fn` layer costs every request a boxed
/// future and a copy of the service behind it: as two layers they took 3
/// to 16% more collector CPU per report in three alternating rounds of
/// `hush collector loadgen` than the one.
pub(super) async fn front(State(state): State<AppState>, request: Request, next: Next) -> Response {
    ops::count(&state, request, |request| {
        limit_failures(&state, request, next)
    })
    .await
}

/// Limits each client address to `failed_requests_per_minute` failed requests
/// (any 4xx): once over, every request from it gets 429 until the allowance
/// refills. Successful requests cost nothing, so devices uploading normally
/// behind one address (a NAT) are not limited by each other's successes.
async fn limit_failures(state: &AppState, request: Request, next: Next) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| client_key(c.0.ip()));
    if let Some(ip) = client
        && !state.clients.has_token(ip, Instant::now())
    {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            category::TOO_MANY,
            "a client address is over its failed-request allowance",
        );
    }
    let response = next.run(request).await;
    if let Some(ip) = client
        && response.status().is_client_error()
    {
        state.clients.charge(ip, Instant::now());
    }
    response
}

/// Who a request's bearer token belongs to (found in the device directory,
/// the admin token cache, then a reader connection), and the token's hash:
/// the first argument after the state of every handler that needs a token,
/// which so answers 401 for a missing or unknown one before reading the
/// body. An extractor rather than a layer: a `from_fn` layer costs every
/// request a boxed future and a copy of the service behind it.
pub(super) struct Authenticated {
    /// Whom the token belongs to: a device (with its id) or an admin.
    pub(super) principal: Principal,
    /// The token's hash, which keys the upload allowance and which the
    /// writer checks again against the device's row before storing.
    pub(super) token: TokenHash,
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Authenticated, Response> {
        let hash = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 200)
            .map(token_hash);
        let Some(hash) = hash else {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                category::MISSING_TOKEN,
                "no bearer token",
            ));
        };
        let cached = match state.directory.get(&hash) {
            Some(device) => Some(device.principal()),
            None => state.tokens.get(&hash, Instant::now()),
        };
        let principal = match cached {
            Some(p) => p,
            None => match state
                .read({
                    let directory = Arc::clone(&state.directory);
                    move |c| directory.find(c, &hash)
                })
                .await
            {
                Ok(Some(p)) => {
                    if p == Principal::Admin {
                        state.tokens.insert(hash, p.clone(), Instant::now());
                    }
                    p
                }
                Ok(None) => {
                    return Err(refuse(
                        StatusCode::UNAUTHORIZED,
                        category::UNKNOWN_TOKEN,
                        "a token not in the database, or revoked",
                    ));
                }
                Err(e) => {
                    return Err(refuse(
                        StatusCode::SERVICE_UNAVAILABLE,
                        category::STORAGE,
                        e,
                    ));
                }
            },
        };
        Ok(Authenticated {
            principal,
            token: TokenHash(hash),
        })
    }
}
