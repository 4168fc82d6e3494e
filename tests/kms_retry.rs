//! Retry policy against loopback stubs: throttling, dropped connections, timeouts, the retry
//! budget and non-retryable codes. Assertions are on attempt counts, never on durations.

mod kms_support;

use std::sync::Arc;
use std::time::Duration;

use kms_support::{Behaviour, json, kms_error, spawn, spawn_dropper};
use kmsync::kms::actions::GetSecretValueRequest;
use kmsync::kms::credentials::StaticProvider;
use kmsync::kms::transport::HttpOptions;
use kmsync::kms::{Credentials, Endpoint, KmsClient, KmsClientConfig, RetryBudget, RetryPolicy};

fn fast_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
        max_retry_after: Duration::from_millis(5),
    }
}

fn client(url: &str, policy: RetryPolicy, budget: RetryBudget) -> KmsClient {
    client_with_timeout(url, policy, budget, Duration::from_secs(5))
}

fn client_with_timeout(
    url: &str,
    policy: RetryPolicy,
    budget: RetryBudget,
    request_timeout: Duration,
) -> KmsClient {
    let creds = Credentials::access_key("testid", "testsecret");
    let mut config = KmsClientConfig::new(
        Endpoint::parse(url).unwrap(),
        Arc::new(StaticProvider::new(creds)),
    );
    config.retry = policy;
    config.retry_budget = Some(Arc::new(budget));
    config.http = HttpOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout,
        ca_bundle_pem: None,
    };
    KmsClient::new(config).unwrap()
}

fn big_budget() -> RetryBudget {
    RetryBudget::new(1000.0, 1.0)
}

fn secret_ok() -> axum::response::Response {
    json(
        200,
        serde_json::json!({"RequestId":"ok","SecretName":"db","VersionId":"v1","SecretData":"x",
            "SecretDataType":"text","VersionStages":{"VersionStage":["ACSCurrent"]}}),
    )
}

#[tokio::test]
async fn throttling_is_retried_until_success() {
    let behaviour: Behaviour = Arc::new(|req| {
        Some(if req.n <= 2 {
            kms_error(429, "Rejected.Throttling", "QPS Limit Exceeded", req.n)
        } else {
            secret_ok()
        })
    });
    let stub = spawn(behaviour).await;
    let kms = client(&stub.url(), fast_policy(5), big_budget());
    let value = kms
        .get_secret_value(&GetSecretValueRequest::current("db"))
        .await
        .unwrap();
    assert_eq!(value.version_stages, vec!["ACSCurrent"]);
    assert_eq!(stub.hits(), 3);
    assert_eq!(
        kms.stats()
            .retries
            .load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}

#[tokio::test]
async fn retries_stop_at_max_attempts_with_stable_message() {
    let behaviour: Behaviour = Arc::new(|req| {
        let mut response = kms_error(
            503,
            "ServiceUnavailableTemporary",
            "Service Unavailable Temporary.",
            req.n,
        );
        response
            .headers_mut()
            .insert("x-acs-retry-after", "2".parse().unwrap());
        Some(response)
    });
    let stub = spawn(behaviour).await;
    let kms = client(&stub.url(), fast_policy(4), big_budget());
    let err = kms
        .get_secret_value(&GetSecretValueRequest::current("db"))
        .await
        .unwrap_err();
    assert_eq!(stub.hits(), 4);
    assert_eq!(err.reason(), "Unavailable");
    assert_eq!(err.request_id(), Some("req-4"));
    assert_eq!(
        err.to_string(),
        "ServiceUnavailableTemporary (HTTP 503): Service Unavailable Temporary."
    );
    let again = kms
        .get_secret_value(&GetSecretValueRequest::current("db"))
        .await
        .unwrap_err();
    assert_eq!(again.to_string(), err.to_string(), "Display must not churn");
    assert_ne!(again.request_id(), err.request_id());
}

#[tokio::test]
async fn non_retryable_codes_are_not_retried() {
    for (status, code, reason) in [
        (404, "Forbidden.ResourceNotFound", "NotFound"),
        (403, "Forbidden.NoPermission", "AccessDenied"),
        (400, "SignatureDoesNotMatch", "InvalidCredentials"),
        (400, "Throttling", "Throttled"),
        (409, "Rejected.ResourceExist", "Conflict"),
    ] {
        let behaviour: Behaviour =
            Arc::new(move |req| Some(kms_error(status, code, "nope", req.n)));
        let stub = spawn(behaviour).await;
        let kms = client(&stub.url(), fast_policy(5), big_budget());
        let err = kms
            .get_secret_value(&GetSecretValueRequest::current("db"))
            .await
            .unwrap_err();
        assert_eq!(stub.hits(), 1, "{code}");
        assert_eq!(err.reason(), reason, "{code}");
        assert_eq!(err.code(), Some(code));
        assert_eq!(err.http_status(), Some(status));
    }
}

#[tokio::test]
async fn internal_failure_is_retried() {
    let behaviour: Behaviour = Arc::new(|req| {
        Some(if req.n == 1 {
            kms_error(500, "InternalFailure", "Internal Failure.", req.n)
        } else {
            secret_ok()
        })
    });
    let stub = spawn(behaviour).await;
    let kms = client(&stub.url(), fast_policy(3), big_budget());
    kms.get_secret_value(&GetSecretValueRequest::current("db"))
        .await
        .unwrap();
    assert_eq!(stub.hits(), 2);
}

#[tokio::test]
async fn retry_budget_caps_a_storm() {
    let behaviour: Behaviour = Arc::new(|req| {
        Some(kms_error(
            429,
            "Rejected.Throttling",
            "QPS Limit Exceeded",
            req.n,
        ))
    });
    let stub = spawn(behaviour).await;
    // 4 tokens, retries only while more than 2 remain.
    let kms = client(&stub.url(), fast_policy(10), RetryBudget::new(4.0, 0.1));
    let first = kms
        .get_secret_value(&GetSecretValueRequest::current("db"))
        .await
        .unwrap_err();
    assert_eq!(first.reason(), "Throttled");
    assert_eq!(stub.hits(), 2, "one retry, then the budget is at half");
    for _ in 0..3 {
        kms.get_secret_value(&GetSecretValueRequest::current("db"))
            .await
            .unwrap_err();
    }
    assert_eq!(stub.hits(), 5, "no retries once the budget is spent");
    let stats = kms.stats();
    assert_eq!(
        stats
            .budget_exhausted
            .load(std::sync::atomic::Ordering::SeqCst),
        4
    );
    assert_eq!(stats.attempts.load(std::sync::atomic::Ordering::SeqCst), 5);
}

#[tokio::test]
async fn dropped_connections_are_retried_as_transport_errors() {
    let (addr, accepts) = spawn_dropper().await;
    let kms = client(&format!("http://{addr}"), fast_policy(3), big_budget());
    let err = kms
        .get_secret_value(&GetSecretValueRequest::current("db"))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "Transport", "{err}");
    assert!(err.is_retryable());
    assert_eq!(accepts.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(
        kms.stats()
            .attempts
            .load(std::sync::atomic::Ordering::SeqCst),
        3
    );
}

#[tokio::test]
async fn connection_refused_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let kms = client(&format!("http://{addr}"), fast_policy(2), big_budget());
    let err = kms
        .get_secret_value(&GetSecretValueRequest::current("db"))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "Transport", "{err}");
    assert_eq!(
        kms.stats()
            .attempts
            .load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}

#[tokio::test]
async fn timeouts_are_retried_then_reported() {
    let hang: Behaviour = Arc::new(|_| None);
    let stub = spawn(hang).await;
    let kms = client_with_timeout(
        &stub.url(),
        fast_policy(2),
        big_budget(),
        Duration::from_millis(300),
    );
    let err = kms
        .get_secret_value(&GetSecretValueRequest::current("db"))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "Timeout");
    assert_eq!(err.to_string(), "request timed out");
    assert_eq!(stub.hits(), 2);

    let slow_then_ok: Behaviour = Arc::new(|req| if req.n <= 2 { None } else { Some(secret_ok()) });
    let stub = spawn(slow_then_ok).await;
    let kms = client_with_timeout(
        &stub.url(),
        fast_policy(3),
        big_budget(),
        Duration::from_millis(500),
    );
    kms.get_secret_value(&GetSecretValueRequest::current("db"))
        .await
        .unwrap();
    assert_eq!(stub.hits(), 3);
}
