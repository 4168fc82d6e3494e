//! The ECS instance metadata service (kms-api.md §6.3) on the same listener under `/latest/`:
//! IMDSv2 token (`PUT /latest/api/token`), role discovery, role credentials (issued like STS,
//! accepted by the KMS side until they expire) and `region-id`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use jiff::{SignedDuration, Timestamp};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::json;

use super::state::{AppState, lock};
use super::store::fmt_time;
use super::sts;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/latest/api/token", put(token))
        .route("/latest/meta-data/region-id", get(region))
        .route(
            "/latest/meta-data/ram/security-credentials/",
            get(role_name),
        )
        .route(
            "/latest/meta-data/ram/security-credentials/{role}",
            get(credentials),
        )
        .with_state(state)
}

async fn token(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let ttl = headers
        .get("x-aliyun-ecs-metadata-token-ttl-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    let Some(ttl) = ttl.filter(|t| (1..=21600).contains(t)) else {
        return (StatusCode::BAD_REQUEST, "invalid ttl").into_response();
    };
    let token: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(48)
        .map(char::from)
        .collect();
    let now = Timestamp::now();
    let mut tokens = lock(&state.imds_tokens);
    tokens.retain(|_, exp| *exp > now);
    tokens.insert(token.clone(), now + SignedDuration::from_secs(ttl));
    token.into_response()
}

/// IMDSv2 check: a given token must be valid; no token is fine unless v2 is required.
fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    match headers
        .get("x-aliyun-ecs-metadata-token")
        .and_then(|v| v.to_str().ok())
    {
        Some(t) => lock(&state.imds_tokens)
            .get(t)
            .is_some_and(|exp| *exp > Timestamp::now()),
        None => !state.config.sts.imds_require_token,
    }
}

fn forbidden() -> Response {
    (StatusCode::FORBIDDEN, "metadata token missing or invalid").into_response()
}

async fn region(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return forbidden();
    }
    state.config.region_id.clone().into_response()
}

async fn role_name(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return forbidden();
    }
    state.config.sts.imds_role.clone().into_response()
}

async fn credentials(
    State(state): State<Arc<AppState>>,
    Path(role): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&state, &headers) {
        return forbidden();
    }
    if role != state.config.sts.imds_role {
        return (StatusCode::NOT_FOUND, "role not found").into_response();
    }
    let now = Timestamp::now();
    let issued = sts::issue(
        &mut lock(&state.keyring),
        state.config.sts.default_duration_secs,
        now,
    );
    state.metrics.record("MetadataCredentials", "Success");
    let mut body = sts::credentials_json(&issued);
    body["LastUpdated"] = fmt_time(now).into();
    body["Code"] = json!("Success");
    Json(body).into_response()
}
