//! The KMS/STS RPC endpoint (`POST /` or `GET /`): decode query and form, authenticate, apply
//! faults and throttling, dispatch, count, persist, and answer with the gateway's JSON shapes.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde_json::{Value, json};

use super::actions::{self, KMS_VERSION};
use super::auth::{self, RawRequest};
use super::error::KmsError;
use super::faults::{Mutation, MutationRule};
use super::params::Params;
use super::state::{AppState, lock};
use super::sts::{self, STS_VERSION};

/// Query string or form body → name/value pairs (`+` is a space, bad escapes kept as is).
pub(crate) fn decode(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

pub(crate) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

pub async fn handle(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string().to_uppercase();
    let form = if is_form(&headers) {
        decode(&body)
    } else {
        Vec::new()
    };
    let raw = RawRequest {
        method: method.as_str(),
        path: uri.path(),
        query: decode(uri.query().unwrap_or("").as_bytes()),
        form,
        headers: &headers,
        body: &body,
    };
    let params = raw.params();
    let action = raw
        .header("x-acs-action")
        .or_else(|| params.opt("Action"))
        .unwrap_or("")
        .to_string();
    state.metrics.receive(
        params.opt("SecretName").unwrap_or("-"),
        if action.is_empty() { "-" } else { &action },
    );
    // Drawn up front so an `olderVersion` can steer the lookup; applied only to a success.
    let mutation = lock(&state.faults).mutation(&action, &mut rand::rng());
    let abandoned = AbandonedCall {
        state: &state,
        action: &action,
        armed: true,
    };
    let result = process(&state, &raw, &params, &action, mutation.as_ref()).await;
    abandoned.disarm();
    let outcome = result
        .as_ref()
        .map_or_else(|e| e.code.as_str(), |_| "Success");
    state
        .metrics
        .record(if action.is_empty() { "-" } else { &action }, outcome);
    let secret = params.opt("SecretName").unwrap_or("-");
    tracing::info!(action = %action, secret = %secret, outcome = %outcome, "kms emulator call");
    let host = raw
        .header("host")
        .map(str::to_string)
        .unwrap_or_else(|| format!("kms.{}.aliyuncs.com", state.config.region_id));
    match (result, mutation) {
        (Ok(body), Some(rule)) => {
            tracing::info!(action = %action, kind = ?rule.kind, "kms emulator response mutated");
            spoiled(body, &rule, &request_id)
        }
        (result, _) => respond(result, &request_id, &host),
    }
}

/// Counts a call whose client hung up before the answer (its timeout fired during injected
/// latency): hyper then drops the handler, and without this the call would not show in
/// `/admin/calls` at all.
struct AbandonedCall<'a> {
    state: &'a AppState,
    action: &'a str,
    armed: bool,
}

impl AbandonedCall<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for AbandonedCall<'_> {
    fn drop(&mut self) {
        if self.armed {
            let action = if self.action.is_empty() {
                "-"
            } else {
                self.action
            };
            self.state.metrics.record(action, "Abandoned");
            tracing::info!(action = %action, "kms emulator call abandoned by the client");
        }
    }
}

async fn process(
    state: &AppState,
    raw: &RawRequest<'_>,
    params: &Params,
    action: &str,
    mutation: Option<&MutationRule>,
) -> Result<Value, KmsError> {
    if action.is_empty() {
        return Err(KmsError::missing("Action"));
    }
    let now = Timestamp::now();
    let is_sts = sts::is_sts_action(action);
    let anonymous_ok = action == "AssumeRoleWithOIDC" && raw.is_anonymous();
    let caller = if anonymous_ok {
        None
    } else {
        let mut keyring = lock(&state.keyring);
        Some(auth::authenticate(
            raw,
            &mut keyring,
            &state.config.auth,
            now,
        )?)
    };
    if !is_sts && !actions::is_kms_action(action) {
        return Err(actions::unknown_action());
    }
    let version = raw
        .header("x-acs-version")
        .or_else(|| params.opt("Version"));
    if version != Some(if is_sts { STS_VERSION } else { KMS_VERSION }) {
        return Err(KmsError::new(
            "InvalidVersion",
            400,
            "Specified parameter Version is not valid.",
        ));
    }
    apply_faults(state, action).await?;
    if is_sts {
        let mut keyring = lock(&state.keyring);
        return sts::dispatch(
            action,
            params,
            caller.as_deref(),
            &mut keyring,
            &state.config.sts,
            state.oidc_keys.as_ref(),
            now,
        );
    }
    let mut store = lock(&state.store);
    let mut result = actions::dispatch(&mut store, action, params, state.store_now());
    if result.is_ok()
        && action == "GetSecretValue"
        && mutation.is_some_and(|m| m.kind == Mutation::OlderVersion)
    {
        let mut older = params.clone();
        older.0.remove("VersionId");
        older.0.insert("VersionStage".into(), "ACSPrevious".into());
        if let Ok(value) = actions::dispatch(&mut store, action, &older, state.store_now()) {
            result = Ok(value);
        }
    }
    if result.is_ok() && actions::is_mutating(action) {
        state.persist(&store);
    }
    result
}

async fn apply_faults(state: &AppState, action: &str) -> Result<(), KmsError> {
    let (latency, injected) = {
        let mut faults = lock(&state.faults);
        faults.throttle(action, Instant::now())?;
        (
            faults.latency(action),
            faults.injected_error(action, &mut rand::rng()),
        )
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    injected.map_or(Ok(()), Err)
}

/// A successful answer spoiled by `rule` (see [`Mutation`]).
fn spoiled(mut body: Value, rule: &MutationRule, request_id: &str) -> Response {
    if let Value::Object(map) = &mut body {
        map.insert("RequestId".into(), request_id.into());
    }
    rule.apply(&mut body);
    let text = body.to_string();
    let half = text.len() / 2;
    let body = match rule.kind {
        Mutation::ConnectionReset => {
            // Chunked, and the stream fails after the first chunk: hyper drops the connection.
            let chunks: [Result<Bytes, std::io::Error>; 2] = [
                Ok(Bytes::from(text.as_bytes()[..half].to_vec())),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected connection reset",
                )),
            ];
            axum::body::Body::from_stream(futures::stream::iter(chunks))
        }
        Mutation::MalformedJson => axum::body::Body::from(format!(
            "{{\"RequestId\":\"{request_id}\",\"SecretData\":<html>502 Bad Gateway</html>"
        )),
        Mutation::TruncatedJson => axum::body::Body::from(text.as_bytes()[..half].to_vec()),
        _ => axum::body::Body::from(text),
    };
    let mut response = Response::new(body);
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-acs-request-id", v);
    }
    response
}

fn respond(result: Result<Value, KmsError>, request_id: &str, host: &str) -> Response {
    let (status, body) = match result {
        Ok(mut body) => {
            if let Value::Object(map) = &mut body {
                map.insert("RequestId".into(), request_id.into());
            }
            (StatusCode::OK, body)
        }
        Err(e) => (
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            json!({
                "RequestId": request_id,
                "HostId": host,
                "Code": e.code,
                "Message": e.message,
                "HttpStatus": e.status,
                "Recommend": format!(
                    "https://api.aliyun.com/troubleshoot?q={}&product=Kms&requestId={request_id}",
                    e.code
                ),
            }),
        ),
    };
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-acs-request-id", v);
    }
    response
}
