//! The unsigned admin endpoint, served only to loopback peers: metrics (Prometheus text),
//! call counts (JSON), faults (read/replace at run time), store clock offset, early expiry of
//! issued STS credentials and health.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::faults::FaultConfig;
use super::state::{AppState, lock};

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/calls", get(calls).delete(reset_calls))
        .route("/faults", get(get_faults).put(put_faults))
        .route("/clock", get(get_clock).put(put_clock))
        .route("/expire-credentials", post(expire_credentials))
        .route_layer(middleware::from_fn(loopback_only))
        .with_state(state)
}

async fn loopback_only(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    if !peer.ip().is_loopback() {
        return (StatusCode::FORBIDDEN, "admin endpoint is loopback-only").into_response();
    }
    next.run(req).await
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([("content-type", content_type)], state.metrics.encode()).into_response()
}

async fn calls(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(state.metrics.calls_json())
}

async fn reset_calls(State(state): State<Arc<AppState>>) -> StatusCode {
    state.metrics.reset();
    StatusCode::NO_CONTENT
}

async fn get_faults(State(state): State<Arc<AppState>>) -> Json<FaultConfig> {
    Json(lock(&state.faults).config.clone())
}

async fn put_faults(
    State(state): State<Arc<AppState>>,
    Json(cfg): Json<FaultConfig>,
) -> Json<FaultConfig> {
    tracing::info!("emulator faults replaced");
    lock(&state.faults).replace(cfg.clone());
    Json(cfg)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Clock {
    offset_seconds: i64,
}

async fn get_clock(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(
        json!({"offsetSeconds": state.clock_offset(), "storeNow": super::store::fmt_time(state.store_now())}),
    )
}

async fn put_clock(State(state): State<Arc<AppState>>, Json(c): Json<Clock>) -> Json<Value> {
    state.set_clock_offset(c.offset_seconds);
    get_clock(State(state)).await
}

/// `POST /admin/expire-credentials`: every credential issued so far (STS, metadata) expires now.
async fn expire_credentials(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"expired": state.expire_issued_credentials()}))
}
