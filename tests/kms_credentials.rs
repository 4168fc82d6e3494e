//! Credential providers over HTTP on loopback: STS AssumeRole (classic-signed, verified by the
//! stub with `kmsync::kms::sign`), AssumeRoleWithOIDC (anonymous), the ECS metadata service with
//! IMDSv2 and its fallback, caching until 15 minutes before expiry, and the default chain.

mod kms_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use kms_support::{Behaviour, Captured, json, kms_error, spawn, verify_signature};
use kmsync::kms::credentials::assume_role::AssumeRoleOptions;
use kmsync::kms::credentials::chain::ChainOptions;
use kmsync::kms::credentials::ecs::EcsOptions;
use kmsync::kms::credentials::rrsa::RrsaOptions;
use kmsync::kms::credentials::{
    AssumeRoleProvider, CredentialProvider, Credentials, DefaultChain, EcsRamRoleProvider,
    OidcToken, RrsaProvider, StaticProvider, env_from_pairs,
};
use kmsync::kms::request::format_timestamp;
use kmsync::kms::transport::HttpOptions;
use kmsync::kms::{Endpoint, SecretString};

const SOURCE_SECRET: &str = "srcsecret";

fn http() -> HttpOptions {
    HttpOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        ca_bundle_pem: None,
    }
}

fn expiring_in(seconds: i64) -> String {
    format_timestamp(jiff::Timestamp::now() + jiff::SignedDuration::from_secs(seconds))
}

fn sts_answer(n: usize, expires_in: i64) -> axum::response::Response {
    json(
        200,
        serde_json::json!({
            "RequestId": format!("sts-{n}"),
            "Credentials": {
                "AccessKeyId": format!("STS.id{n}"),
                "AccessKeySecret": format!("secret{n}"),
                "SecurityToken": format!("token{n}"),
                "Expiration": expiring_in(expires_in),
            },
            "AssumedRoleUser": {"Arn": "acs:ram::1:role/r/s", "AssumedRoleId": "1:s"},
        }),
    )
}

/// A stub STS: AssumeRole must be classic-signed with the source secret; AssumeRoleWithOIDC must
/// be anonymous. `expires_in` drives the returned Expiration; `fail` forces a 500.
struct Sts {
    expires_in: Arc<AtomicI64>,
    fail: Arc<std::sync::atomic::AtomicBool>,
}

fn sts_behaviour(state: &Sts) -> Behaviour {
    let (expires_in, fail) = (state.expires_in.clone(), state.fail.clone());
    Arc::new(move |req: &Captured| {
        if fail.load(Ordering::SeqCst) {
            return Some(kms_error(500, "InternalError", "boom", req.n));
        }
        let q = req.query();
        if q.get("Version").map(String::as_str) != Some("2015-04-01") {
            return Some(kms_error(400, "InvalidVersion", "bad version", req.n));
        }
        match q.get("Action").map(String::as_str) {
            Some("AssumeRole") => {
                if let Err(why) = verify_signature(req, SOURCE_SECRET) {
                    return Some(kms_error(400, "SignatureDoesNotMatch", &why, req.n));
                }
                if req.form().get("RoleArn").map(String::as_str) == Some("acs:ram::1:role/denied") {
                    return Some(kms_error(
                        403,
                        "NoPermission",
                        "You are not authorized to do this action.",
                        req.n,
                    ));
                }
            }
            Some("AssumeRoleWithOIDC") => {
                if req.header("authorization").is_some() || q.contains_key("Signature") {
                    return Some(kms_error(
                        400,
                        "InvalidParameter",
                        "must be anonymous",
                        req.n,
                    ));
                }
                if req.form().get("OIDCToken").is_none_or(|t| t.is_empty()) {
                    return Some(kms_error(400, "MissingOIDCToken", "token missing", req.n));
                }
            }
            _ => return Some(kms_error(404, "InvalidAction.NotFound", "no", req.n)),
        }
        Some(sts_answer(req.n, expires_in.load(Ordering::SeqCst)))
    })
}

async fn sts(expires_in: i64) -> (Sts, kms_support::Stub) {
    let state = Sts {
        expires_in: Arc::new(AtomicI64::new(expires_in)),
        fail: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    };
    let stub = spawn(sts_behaviour(&state)).await;
    (state, stub)
}

fn assume_role(stub: &kms_support::Stub, source: Credentials, role: &str) -> AssumeRoleProvider {
    AssumeRoleProvider::new(
        Arc::new(StaticProvider::new(source)),
        AssumeRoleOptions {
            role_arn: role.into(),
            role_session_name: Some("kmsync-test".into()),
            duration_seconds: Some(900),
            policy: None,
            external_id: Some("ext-1".into()),
            sts_endpoint: Endpoint::parse(&stub.url()).unwrap(),
            http: http(),
        },
    )
    .unwrap()
}

#[tokio::test]
async fn assume_role_is_classic_signed_and_cached() {
    let (_state, stub) = sts(3600).await;
    let provider = assume_role(
        &stub,
        Credentials::access_key("srcid", SOURCE_SECRET),
        "acs:ram::1:role/kms",
    );
    let first = provider.credentials().await.unwrap();
    assert_eq!(first.access_key_id, "STS.id1");
    assert_eq!(first.security_token.as_ref().unwrap().expose(), "token1");
    assert!(first.expiration.is_some());
    let second = provider.credentials().await.unwrap();
    assert_eq!(second, first);
    assert_eq!(stub.hits(), 1, "cached until 15 minutes before expiry");

    let req = stub.last();
    assert_eq!(req.method, "POST");
    let q = req.query();
    assert_eq!(q["SignatureMethod"], "HMAC-SHA1");
    assert_eq!(q["SignatureVersion"], "1.0");
    assert_eq!(q["AccessKeyId"], "srcid");
    assert_eq!(q["Format"], "JSON");
    assert!(!q.contains_key("SecurityToken"));
    let form = req.form();
    assert_eq!(form["RoleArn"], "acs:ram::1:role/kms");
    assert_eq!(form["RoleSessionName"], "kmsync-test");
    assert_eq!(form["DurationSeconds"], "900");
    assert_eq!(form["ExternalId"], "ext-1");
}

#[tokio::test]
async fn assume_role_with_sts_source_sends_security_token() {
    let (_state, stub) = sts(3600).await;
    let provider = assume_role(
        &stub,
        Credentials::access_key("STS.src", SOURCE_SECRET).with_security_token("srctoken"),
        "acs:ram::1:role/kms",
    );
    provider.credentials().await.unwrap();
    assert_eq!(stub.last().query()["SecurityToken"], "srctoken");
}

#[tokio::test]
async fn credentials_near_or_past_expiry_are_refetched() {
    let (state, stub) = sts(10 * 60).await; // inside the 15-minute window
    let provider = assume_role(
        &stub,
        Credentials::access_key("srcid", SOURCE_SECRET),
        "acs:ram::1:role/kms",
    );
    assert_eq!(
        provider.credentials().await.unwrap().access_key_id,
        "STS.id1"
    );
    assert_eq!(
        provider.credentials().await.unwrap().access_key_id,
        "STS.id2"
    );
    assert_eq!(stub.hits(), 2);
    state.expires_in.store(-60, Ordering::SeqCst); // already expired
    provider.credentials().await.unwrap();
    provider.credentials().await.unwrap();
    assert_eq!(stub.hits(), 4);
    state.expires_in.store(16 * 60, Ordering::SeqCst); // just outside the window
    provider.credentials().await.unwrap();
    provider.credentials().await.unwrap();
    provider.credentials().await.unwrap();
    assert_eq!(stub.hits(), 5);
}

#[tokio::test]
async fn failed_refresh_serves_unexpired_credentials_then_fails() {
    let (state, stub) = sts(10 * 60).await;
    let provider = assume_role(
        &stub,
        Credentials::access_key("srcid", SOURCE_SECRET),
        "acs:ram::1:role/kms",
    );
    let first = provider.credentials().await.unwrap();
    state.fail.store(true, Ordering::SeqCst);
    let during_outage = provider.credentials().await.unwrap();
    assert_eq!(during_outage, first, "still valid for 10 minutes");
    assert_eq!(stub.hits(), 2);

    // Expired credentials are never served.
    let (state, stub) = sts(-60).await;
    let provider = assume_role(
        &stub,
        Credentials::access_key("srcid", SOURCE_SECRET),
        "acs:ram::1:role/kms",
    );
    provider.credentials().await.unwrap();
    state.fail.store(true, Ordering::SeqCst);
    let err = provider.credentials().await.unwrap_err();
    assert_eq!(err.reason(), "CredentialsUnavailable");
}

#[tokio::test]
async fn sts_refusals_and_bad_source_keys_are_credential_errors() {
    let (_state, stub) = sts(3600).await;
    let denied = assume_role(
        &stub,
        Credentials::access_key("srcid", SOURCE_SECRET),
        "acs:ram::1:role/denied",
    );
    let err = denied.credentials().await.unwrap_err();
    assert_eq!(err.reason(), "InvalidCredentials");
    assert!(err.to_string().contains("NoPermission"), "{err}");
    assert!(!format!("{err:?}").contains(SOURCE_SECRET));

    let wrong = assume_role(
        &stub,
        Credentials::access_key("srcid", "not-the-secret"),
        "acs:ram::1:role/kms",
    );
    let err = wrong.credentials().await.unwrap_err();
    assert!(err.to_string().contains("SignatureDoesNotMatch"), "{err}");
}

fn rrsa(stub: &kms_support::Stub, token: OidcToken) -> RrsaProvider {
    RrsaProvider::new(RrsaOptions {
        role_arn: "acs:ram::1:role/rrsa".into(),
        oidc_provider_arn: "acs:ram::1:oidc-provider/ack-rrsa-c1".into(),
        token,
        role_session_name: None,
        duration_seconds: None,
        policy: None,
        sts_endpoint: Endpoint::parse(&stub.url()).unwrap(),
        http: http(),
    })
    .unwrap()
}

#[tokio::test]
async fn rrsa_is_anonymous_and_rereads_the_token_file() {
    let (state, stub) = sts(3600).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "eyJ.first.token\n").unwrap();
    let provider = rrsa(&stub, OidcToken::File(path.clone()));
    let creds = provider.credentials().await.unwrap();
    assert_eq!(creds.access_key_id, "STS.id1");
    provider.credentials().await.unwrap();
    assert_eq!(stub.hits(), 1);
    let req = stub.last();
    let q = req.query();
    assert_eq!(q["Action"], "AssumeRoleWithOIDC");
    assert!(q.contains_key("Timestamp"));
    assert!(req.header("authorization").is_none());
    let form = req.form();
    assert_eq!(form["OIDCToken"], "eyJ.first.token");
    assert_eq!(form["RoleArn"], "acs:ram::1:role/rrsa");
    assert_eq!(
        form["OIDCProviderArn"],
        "acs:ram::1:oidc-provider/ack-rrsa-c1"
    );
    assert_eq!(form["DurationSeconds"], "3600");
    assert!(form["RoleSessionName"].starts_with("kmsync-"));

    // Near expiry: refetched with the rotated token.
    state.expires_in.store(60, Ordering::SeqCst);
    std::fs::write(&path, "eyJ.second.token").unwrap();
    let provider = rrsa(&stub, OidcToken::File(path.clone()));
    provider.credentials().await.unwrap();
    std::fs::write(&path, "eyJ.third.token").unwrap();
    provider.credentials().await.unwrap();
    assert_eq!(stub.hits(), 3);
    assert_eq!(stub.last().form()["OIDCToken"], "eyJ.third.token");

    let missing = rrsa(&stub, OidcToken::File(dir.path().join("absent")));
    let err = missing.credentials().await.unwrap_err();
    assert_eq!(err.reason(), "InvalidCredentials");
}

#[tokio::test]
async fn rrsa_with_a_caller_supplied_token() {
    let (_state, stub) = sts(3600).await;
    let provider = rrsa(
        &stub,
        OidcToken::Token(SecretString::new("eyJ.tenant.token")),
    );
    provider.credentials().await.unwrap();
    assert_eq!(stub.last().form()["OIDCToken"], "eyJ.tenant.token");
    assert!(!format!("{provider:?}").contains("eyJ.tenant.token"));
    let calls = Arc::new(AtomicI64::new(0));
    let counter = calls.clone();
    let callback = OidcToken::Callback(Arc::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(SecretString::new("eyJ.callback")) })
    }));
    rrsa(&stub, callback).credentials().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(stub.last().form()["OIDCToken"], "eyJ.callback");
}

/// A stub metadata service. `v2`: whether the token endpoint works.
fn imds(v2: bool, expires_in: Arc<AtomicI64>, code: &'static str) -> Behaviour {
    Arc::new(move |req: &Captured| {
        let path = req.uri.path();
        if path == "/latest/api/token" {
            if req.method != "PUT" {
                return Some(StatusCode::METHOD_NOT_ALLOWED.into_response());
            }
            if !v2 {
                return Some(StatusCode::FORBIDDEN.into_response());
            }
            if req
                .header("x-aliyun-ecs-metadata-token-ttl-seconds")
                .as_deref()
                != Some("21600")
            {
                return Some(StatusCode::BAD_REQUEST.into_response());
            }
            return Some("tok-v2".into_response());
        }
        let token = req.header("x-aliyun-ecs-metadata-token");
        if v2 && token.as_deref() != Some("tok-v2") {
            return Some(StatusCode::UNAUTHORIZED.into_response());
        }
        if !v2 && token.is_some() {
            return Some(StatusCode::BAD_REQUEST.into_response());
        }
        match path {
            "/latest/meta-data/ram/security-credentials/" => Some("EcsRole\n".into_response()),
            "/latest/meta-data/ram/security-credentials/EcsRole" => Some(json(
                200,
                serde_json::json!({
                    "AccessKeyId": format!("STS.ecs{}", req.n), "AccessKeySecret": "ecssecret",
                    "SecurityToken": "ecstoken", "Expiration": expiring_in(expires_in.load(Ordering::SeqCst)),
                    "LastUpdated": expiring_in(0), "Code": code,
                }),
            )),
            _ => Some(StatusCode::NOT_FOUND.into_response()),
        }
    })
}

fn ecs(stub: &kms_support::Stub, imdsv1_disabled: bool, role: Option<&str>) -> EcsRamRoleProvider {
    EcsRamRoleProvider::new(EcsOptions {
        role_name: role.map(str::to_string),
        imdsv1_disabled,
        metadata_base: stub.url(),
        http: http(),
        ..EcsOptions::default()
    })
    .unwrap()
}

#[tokio::test]
async fn ecs_imdsv2_flow_and_cache() {
    let expires = Arc::new(AtomicI64::new(6 * 3600));
    let stub = spawn(imds(true, expires.clone(), "Success")).await;
    let provider = ecs(&stub, false, None);
    let creds = provider.credentials().await.unwrap();
    assert_eq!(creds.access_key_id, "STS.ecs3");
    assert_eq!(creds.security_token.unwrap().expose(), "ecstoken");
    provider.credentials().await.unwrap();
    let seen: Vec<(String, String)> = stub
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.method.to_string(), r.uri.path().to_string()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("PUT".to_string(), "/latest/api/token".to_string()),
            (
                "GET".to_string(),
                "/latest/meta-data/ram/security-credentials/".to_string()
            ),
            (
                "GET".to_string(),
                "/latest/meta-data/ram/security-credentials/EcsRole".to_string()
            ),
        ]
    );

    // Near expiry: refetched (token + credentials; the configured role skips discovery).
    expires.store(5 * 60, Ordering::SeqCst);
    let provider = ecs(&stub, false, Some("EcsRole"));
    provider.credentials().await.unwrap();
    provider.credentials().await.unwrap();
    assert_eq!(stub.hits(), 3 + 4);
}

#[tokio::test]
async fn ecs_falls_back_to_imdsv1_unless_disabled() {
    let expires = Arc::new(AtomicI64::new(3600));
    let stub = spawn(imds(false, expires, "Success")).await;
    let creds = ecs(&stub, false, None).credentials().await.unwrap();
    assert_eq!(creds.access_key_secret.expose(), "ecssecret");
    assert_eq!(stub.hits(), 3);

    let err = ecs(&stub, true, None).credentials().await.unwrap_err();
    assert_eq!(err.reason(), "InvalidCredentials");
    assert!(err.to_string().contains("token"), "{err}");
    assert_eq!(stub.hits(), 4, "only the failed token request");
}

#[tokio::test]
async fn ecs_rejects_non_success_code_and_foreign_hosts() {
    let stub = spawn(imds(true, Arc::new(AtomicI64::new(3600)), "Failed")).await;
    let err = ecs(&stub, false, None).credentials().await.unwrap_err();
    assert!(err.to_string().contains("not Success"), "{err}");
    let bad = EcsRamRoleProvider::new(EcsOptions {
        metadata_base: "http://10.1.2.3".into(),
        ..EcsOptions::default()
    })
    .unwrap_err();
    assert_eq!(bad.reason(), "InvalidConfiguration");
}

#[tokio::test]
async fn default_chain_order_and_memory() {
    // 1. Environment AccessKey wins.
    let env = env_from_pairs(&[
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "envid"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "envsecret"),
        ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true"),
    ]);
    let chain = DefaultChain::from_env(ChainOptions {
        env,
        ..ChainOptions::default()
    })
    .unwrap();
    assert_eq!(chain.provider_names(), vec!["env"]);
    assert_eq!(chain.credentials().await.unwrap().access_key_id, "envid");

    // 2. RRSA from its three variables, before ECS.
    let (_state, sts_stub) = sts(3600).await;
    let imds_stub = spawn(imds(true, Arc::new(AtomicI64::new(3600)), "Success")).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJ.chain").unwrap();
    let token_path = token.to_str().unwrap().to_string();
    let sts_url = sts_stub.url();
    let env = env_from_pairs(&[
        ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/rrsa"),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            "acs:ram::1:oidc-provider/p",
        ),
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", &token_path),
        ("ALIBABA_CLOUD_STS_ENDPOINT", &sts_url),
    ]);
    let chain = DefaultChain::from_env(ChainOptions {
        env,
        metadata_base: Some(imds_stub.url()),
        http: http(),
        ..ChainOptions::default()
    })
    .unwrap();
    assert_eq!(
        chain.provider_names(),
        vec!["env", "oidc_role_arn", "ecs_ram_role"]
    );
    assert_eq!(chain.credentials().await.unwrap().access_key_id, "STS.id1");
    assert_eq!(imds_stub.hits(), 0);

    // 3. ECS when nothing else is configured (cached afterwards).
    let env = env_from_pairs(&[]);
    let chain = DefaultChain::from_env(ChainOptions {
        env,
        metadata_base: Some(imds_stub.url()),
        http: http(),
        ..ChainOptions::default()
    })
    .unwrap();
    assert!(
        chain
            .credentials()
            .await
            .unwrap()
            .access_key_id
            .starts_with("STS.ecs")
    );
    chain.credentials().await.unwrap();
    assert_eq!(imds_stub.hits(), 3);

    // 4. Nothing works: one error naming every provider.
    let env = env_from_pairs(&[("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")]);
    let chain = DefaultChain::from_env(ChainOptions {
        env,
        ..ChainOptions::default()
    })
    .unwrap();
    let err = chain.credentials().await.unwrap_err();
    assert!(
        err.to_string().contains("ALIBABA_CLOUD_ACCESS_KEY_ID"),
        "{err}"
    );
}
