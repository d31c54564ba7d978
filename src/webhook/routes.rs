//! The webhook's routes: `POST /mutate` reads the body within its limits and hands it to admission.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use crate::inject::Defaults;
use crate::outcome::Reason;
use crate::telemetry::Metrics;
use crate::webhook::admission;

/// What every webhook request needs.
pub struct AppState {
    pub defaults: Defaults,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// Request-body bytes that may be held at once, in KiB permits.
    pub body_budget: Arc<Semaphore>,
}

/// KiB permits for `bytes` (the body budget counts in KiB to stay within a semaphore's range).
pub(super) fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024))
        .unwrap_or(u32::MAX)
        .max(1)
}

/// The webhook's routes: `POST /mutate`; every other request gets a JSON error.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/mutate", post(mutate).fallback(method_not_allowed))
        .fallback(not_found)
        .with_state(state)
}

fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into(), "code": status.as_u16() });
    (status, axum::Json(body)).into_response()
}

async fn method_not_allowed(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.count_rejected(Reason::MethodNotAllowed);
    let mut response = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "only POST is allowed on /mutate",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    response
}

async fn not_found(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.count_rejected(Reason::NotFound);
    json_error(StatusCode::NOT_FOUND, "the webhook path is /mutate")
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Reads the body within `--max-body-bytes` and `--request-timeout`, holding its share of the
/// in-flight body budget (returned with the bytes, released when dropped).
async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Bytes, OwnedSemaphorePermit), Response> {
    let too_large = || {
        state.metrics.count_rejected(Reason::BodyTooLarge);
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body exceeds --max-body-bytes ({} bytes)",
                state.max_body_bytes
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > state.max_body_bytes as u64) {
        return Err(too_large());
    }
    // A body of unknown length may grow to the limit: it reserves that much.
    let reserve = declared.map_or(state.max_body_bytes, |len| len as usize);
    let Ok(permit) = state
        .body_budget
        .clone()
        .try_acquire_many_owned(kib(reserve))
    else {
        state.metrics.count_rejected(Reason::BodyBudgetExhausted);
        let mut response = json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many request bodies in flight (--max-inflight-body-bytes); retry",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return Err(response);
    };
    let collect = Limited::new(body, state.max_body_bytes).collect();
    match tokio::time::timeout(state.request_timeout, collect).await {
        Ok(Ok(collected)) => Ok((collected.to_bytes(), permit)),
        Ok(Err(error)) if error.is::<LengthLimitError>() => Err(too_large()),
        Ok(Err(error)) => {
            state.metrics.count_rejected(Reason::BodyReadError);
            Err(json_error(
                StatusCode::BAD_REQUEST,
                format!("reading the body failed: {error}"),
            ))
        }
        Err(_) => {
            state.metrics.count_rejected(Reason::BodyTimeout);
            Err(json_error(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive within --request-timeout",
            ))
        }
    }
}

async fn mutate(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    if !is_json(&headers) {
        state.metrics.count_rejected(Reason::UnsupportedMediaType);
        return json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be an AdmissionReview with Content-Type: application/json",
        );
    }
    let (bytes, _budget) = match read_body(&state, &headers, body).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let started = Instant::now();
    match admission::review(&bytes, &state.defaults) {
        Ok(reviewed) => {
            let elapsed = started.elapsed();
            state
                .metrics
                .observe_request(reviewed.outcome, reviewed.reason, elapsed);
            if let (Some(settings), false) = (&reviewed.settings, reviewed.dry_run) {
                state.metrics.count_injected(settings);
            }
            info!(
                uid = &*reviewed.uid,
                namespace = &*reviewed.namespace,
                pod = &*reviewed.pod,
                outcome = reviewed.outcome.as_str(),
                reason = reviewed.reason.as_str(),
                dry_run = reviewed.dry_run,
                warnings = reviewed.warnings,
                duration_us = elapsed.as_micros() as u64,
                "admission"
            );
            ([(header::CONTENT_TYPE, "application/json")], reviewed.body).into_response()
        }
        Err(error) => {
            state.metrics.count_rejected(error.reason());
            warn!(reason = error.reason().as_str(), %error, "unreadable admission request");
            json_error(StatusCode::BAD_REQUEST, error.to_string())
        }
    }
}
