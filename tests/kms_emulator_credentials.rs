//! Credentials end to end against the in-process emulator: the client's credential providers
//! obtain temporary credentials from the emulator's STS (AssumeRole, AssumeRoleWithOIDC) and ECS
//! metadata service (IMDSv2), then sign KMS calls with them, in both signature styles. Refresh is
//! asserted by counting the emulator's STS/metadata calls, never by waiting.

mod e2e_support;

use std::sync::Arc;

use base64::Engine as _;
use e2e_support::{
    AK_ID, AK_SECRET, STYLES, client_with, config, count, count_all, endpoint, start, static_key,
    style_name,
};
use kmsync::emulator::{EmulatorConfig, RunningEmulator};
use kmsync::kms::actions::{CreateSecretRequest, GetSecretValueRequest};
use kmsync::kms::credentials::assume_role::AssumeRoleOptions;
use kmsync::kms::credentials::ecs::EcsOptions;
use kmsync::kms::credentials::rrsa::RrsaOptions;
use kmsync::kms::credentials::{
    AssumeRoleProvider, EcsRamRoleProvider, OidcToken, RrsaProvider, StaticProvider,
};
use kmsync::kms::transport::HttpOptions;
use kmsync::kms::{CredentialProvider, Credentials, KmsClient, KmsError, SignatureStyle};
use serde_json::json;

const ROLE_ARN: &str = "acs:ram::1234567890123456:role/kmsync-reader";
const OIDC_PROVIDER_ARN: &str = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c0ffee";

/// Seeds `name` with the emulator's static key so the temporary credentials have something to read.
async fn seed(emu: &RunningEmulator, style: SignatureStyle, name: &str, value: &str) {
    client_with(emu, style, static_key(AK_ID, AK_SECRET))
        .create_secret(&CreateSecretRequest {
            secret_name: name.into(),
            version_id: "v1".into(),
            secret_data: value.into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn read(c: &KmsClient, name: &str) -> Result<String, KmsError> {
    c.get_secret_value(&GetSecretValueRequest::current(name))
        .await
        .map(|r| r.secret_data.expose().to_string())
}

fn assume_role(
    emu: &RunningEmulator,
    source_secret: &str,
    duration_seconds: Option<u32>,
) -> Arc<AssumeRoleProvider> {
    Arc::new(
        AssumeRoleProvider::new(
            static_key(AK_ID, source_secret),
            AssumeRoleOptions {
                role_arn: ROLE_ARN.into(),
                role_session_name: Some("kmsync-e2e".into()),
                duration_seconds,
                policy: None,
                external_id: Some("ext-id:e2e/1".into()),
                sts_endpoint: endpoint(emu),
                http: HttpOptions::default(),
            },
        )
        .unwrap(),
    )
}

/// A JWT-shaped projected ServiceAccount token (without a JWKS the emulator checks shape, audience
/// and expiry, not the signature).
fn oidc_token(audience: &str, exp: i64) -> String {
    let enc = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let now = jiff::Timestamp::now().as_second();
    format!(
        "{}.{}.{}",
        enc(json!({"alg": "RS256", "kid": "e2e"})),
        enc(json!({
            "aud": [audience],
            "exp": exp,
            "iat": now,
            "iss": "https://oidc-ack-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com/c0ffee",
            "sub": "system:serviceaccount:kmsync-system:kmsync",
        })),
        "c2lnbmF0dXJl"
    )
}

fn in_an_hour() -> i64 {
    jiff::Timestamp::now().as_second() + 3600
}

fn rrsa(
    emu: &RunningEmulator,
    token: OidcToken,
    duration_seconds: Option<u32>,
) -> Arc<RrsaProvider> {
    Arc::new(
        RrsaProvider::new(RrsaOptions {
            role_arn: ROLE_ARN.into(),
            oidc_provider_arn: OIDC_PROVIDER_ARN.into(),
            token,
            role_session_name: None,
            duration_seconds,
            policy: None,
            sts_endpoint: endpoint(emu),
            http: HttpOptions::default(),
        })
        .unwrap(),
    )
}

fn ecs(
    emu: &RunningEmulator,
    role: Option<&str>,
    imdsv1_disabled: bool,
) -> Arc<EcsRamRoleProvider> {
    Arc::new(
        EcsRamRoleProvider::new(EcsOptions {
            role_name: role.map(Into::into),
            imdsv1_disabled,
            metadata_base: emu.base_url(),
            ..EcsOptions::default()
        })
        .unwrap(),
    )
}

fn assert_sts_triple(c: &Credentials, lifetime_secs: i64, ctx: &str) {
    assert!(c.access_key_id.starts_with("STS."), "{ctx}: {c:?}");
    assert!(c.access_key_id != AK_ID);
    assert!(
        c.security_token.as_ref().is_some_and(|t| !t.is_empty()),
        "{ctx}"
    );
    let exp = c.expiration.expect("Expiration is parsed");
    let expected = jiff::Timestamp::now().as_second() + lifetime_secs;
    assert!(
        (exp.as_second() - expected).abs() <= 120,
        "{ctx}: expires {exp}, expected about {lifetime_secs}s from now"
    );
}

/// A provider failure surfaces as a `Credentials` error and no KMS call is made.
fn assert_credentials_error(err: &KmsError, provider: &str, needle: &str, ctx: &str) {
    match err {
        KmsError::Credentials {
            provider: p,
            message,
            unreachable,
        } => {
            assert_eq!(*p, provider, "{ctx}");
            assert!(message.contains(needle), "{ctx}: {message}");
            assert!(!unreachable, "{ctx}: a refusal, not an outage");
        }
        other => panic!("{ctx}: expected a credentials error, got {other:?}"),
    }
    assert_eq!(err.reason(), "InvalidCredentials", "{ctx}");
}

// ------------------------------------------------------------------------------------------------
// AssumeRole

#[tokio::test]
async fn assume_role_credentials_sign_kms_calls_and_are_cached() {
    for style in STYLES {
        let s = style_name(style);
        let emu = start(config()).await;
        seed(&emu, style, "sts/s", "from-kms").await;
        let provider = assume_role(&emu, AK_SECRET, None);
        let creds = provider.credentials().await.unwrap();
        assert_sts_triple(&creds, 3600, s);
        assert_eq!(count(&emu, "AssumeRole", "Success"), 1);

        let c = client_with(&emu, style, provider.clone());
        for _ in 0..3 {
            assert_eq!(read(&c, "sts/s").await.unwrap(), "from-kms", "{s}");
        }
        c.create_secret(&CreateSecretRequest {
            secret_name: "sts/new".into(),
            version_id: "v1".into(),
            secret_data: "written with STS".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        // One AssumeRole for all of it: credentials valid for an hour are cached.
        assert_eq!(count(&emu, "AssumeRole", "Success"), 1, "{s}");
        assert_eq!(count(&emu, "GetSecretValue", "Success"), 3);

        // The issued triple is what the KMS side accepts: with its token it works, without
        // (or with another token) it is refused.
        let triple = client_with(&emu, style, Arc::new(StaticProvider::new(creds.clone())));
        assert_eq!(read(&triple, "sts/new").await.unwrap(), "written with STS");
        let mut no_token = creds.clone();
        no_token.security_token = None;
        let c = client_with(&emu, style, Arc::new(StaticProvider::new(no_token)));
        let err = read(&c, "sts/s").await.unwrap_err();
        assert_eq!(err.reason(), "InvalidCredentials", "{s}");
        assert_eq!(
            err.code(),
            Some("InvalidSecurityToken.MismatchWithAccessKey")
        );
        let wrong = creds.clone().with_security_token("CAISnot-the-token");
        let c = client_with(&emu, style, Arc::new(StaticProvider::new(wrong)));
        let err = read(&c, "sts/s").await.unwrap_err();
        assert_eq!(
            err.code(),
            Some("InvalidSecurityToken.MismatchWithAccessKey"),
            "{s}"
        );

        // A wrong source secret: the AssumeRole signature fails and KMS is never called.
        let kms_calls = count_all(&emu, "GetSecretValue");
        let c = client_with(&emu, style, assume_role(&emu, "wrong-secret", None));
        let err = read(&c, "sts/s").await.unwrap_err();
        assert_credentials_error(&err, "ram_role_arn", "SignatureDoesNotMatch", s);
        assert_eq!(count(&emu, "AssumeRole", "SignatureDoesNotMatch"), 1);
        assert_eq!(count_all(&emu, "GetSecretValue"), kms_calls, "{s}");
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn short_sts_durations_force_a_refresh_per_call() {
    for style in STYLES {
        let s = style_name(style);
        let emu = start(config()).await;
        seed(&emu, style, "ref/s", "v").await;

        // 900 s (the STS minimum) is inside the client's 15-minute refresh margin, so every
        // call fetches fresh credentials: one AssumeRole per KMS call.
        let provider = assume_role(&emu, AK_SECRET, Some(900));
        let c = client_with(&emu, style, provider.clone());
        let mut ids = std::collections::BTreeSet::new();
        for i in 1..=4u64 {
            assert_eq!(read(&c, "ref/s").await.unwrap(), "v");
            assert_eq!(count(&emu, "AssumeRole", "Success"), i, "{s}: call {i}");
        }
        for _ in 0..3 {
            ids.insert(provider.credentials().await.unwrap().access_key_id);
        }
        assert_eq!(ids.len(), 3, "{s}: each refresh issues a new AccessKey id");
        emu.shutdown().await;

        // A role whose MaxSessionDuration (emulator max) is below the requested 3600 s.
        let mut cfg = config();
        cfg.sts.max_duration_secs = 1800;
        let emu = start(cfg).await;
        seed(&emu, style, "ref/s", "v").await;
        let c = client_with(&emu, style, assume_role(&emu, AK_SECRET, None));
        let err = read(&c, "ref/s").await.unwrap_err();
        assert_credentials_error(&err, "ram_role_arn", "DurationSeconds", s);
        let c = client_with(&emu, style, assume_role(&emu, AK_SECRET, Some(1800)));
        assert_eq!(read(&c, "ref/s").await.unwrap(), "v", "{s}");
        emu.shutdown().await;
    }
}

// ------------------------------------------------------------------------------------------------
// RRSA: AssumeRoleWithOIDC

#[tokio::test]
async fn rrsa_oidc_token_is_exchanged_for_sts_credentials() {
    for style in STYLES {
        let s = style_name(style);
        let emu = start(config()).await;
        seed(&emu, style, "rrsa/s", "via-rrsa").await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        // The kubelet writes the projected token; a trailing newline is tolerated.
        std::fs::write(
            &token_file,
            format!("{}\n", oidc_token("sts.aliyuncs.com", in_an_hour())),
        )
        .unwrap();
        let provider = rrsa(&emu, OidcToken::File(token_file.clone()), None);
        let c = client_with(&emu, style, provider.clone());
        for _ in 0..3 {
            assert_eq!(read(&c, "rrsa/s").await.unwrap(), "via-rrsa", "{s}");
        }
        assert_eq!(count(&emu, "AssumeRoleWithOIDC", "Success"), 1, "{s}");
        assert_sts_triple(&provider.credentials().await.unwrap(), 3600, s);

        // Wrong audience and expired tokens are refused by STS; KMS is never called.
        let kms_calls = count_all(&emu, "GetSecretValue");
        let bad = rrsa(
            &emu,
            OidcToken::Token(oidc_token("kubernetes.default.svc", in_an_hour()).into()),
            None,
        );
        let err = read(&client_with(&emu, style, bad), "rrsa/s")
            .await
            .unwrap_err();
        assert_credentials_error(
            &err,
            "oidc_role_arn",
            "AuthenticationFail.OIDCToken.InvalidAudience",
            s,
        );
        let expired = jiff::Timestamp::now().as_second() - 60;
        let bad = rrsa(
            &emu,
            OidcToken::Token(oidc_token("sts.aliyuncs.com", expired).into()),
            None,
        );
        let err = read(&client_with(&emu, style, bad), "rrsa/s")
            .await
            .unwrap_err();
        assert_credentials_error(
            &err,
            "oidc_role_arn",
            "AuthenticationFail.OIDCToken.Expired",
            s,
        );
        let bad = rrsa(&emu, OidcToken::Token("not-a-jwt".into()), None);
        let err = read(&client_with(&emu, style, bad), "rrsa/s")
            .await
            .unwrap_err();
        assert_credentials_error(&err, "oidc_role_arn", "InvalidParameter.OIDCToken", s);
        assert_eq!(count_all(&emu, "GetSecretValue"), kms_calls, "{s}");

        // With 900 s credentials every call re-reads the token file and refreshes. When the
        // refresh is refused, the still-valid cached credentials keep working.
        let provider = rrsa(&emu, OidcToken::File(token_file.clone()), Some(900));
        let c = client_with(&emu, style, provider);
        let ok_before = count(&emu, "AssumeRoleWithOIDC", "Success");
        assert_eq!(read(&c, "rrsa/s").await.unwrap(), "via-rrsa");
        assert_eq!(read(&c, "rrsa/s").await.unwrap(), "via-rrsa");
        assert_eq!(
            count(&emu, "AssumeRoleWithOIDC", "Success") - ok_before,
            2,
            "{s}"
        );
        std::fs::write(&token_file, oidc_token("wrong-audience", in_an_hour())).unwrap();
        let refused_before = count(
            &emu,
            "AssumeRoleWithOIDC",
            "AuthenticationFail.OIDCToken.InvalidAudience",
        );
        assert_eq!(read(&c, "rrsa/s").await.unwrap(), "via-rrsa", "{s}");
        assert_eq!(
            count(
                &emu,
                "AssumeRoleWithOIDC",
                "AuthenticationFail.OIDCToken.InvalidAudience"
            ) - refused_before,
            1,
            "{s}: the rotated file was read"
        );
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn rrsa_honours_the_configured_audience() {
    let mut cfg = config();
    cfg.sts.oidc_audience = "kmsync-e2e-audience".into();
    let emu = start(cfg).await;
    seed(&emu, SignatureStyle::V3, "aud/s", "x").await;
    let good = rrsa(
        &emu,
        OidcToken::Token(oidc_token("kmsync-e2e-audience", in_an_hour()).into()),
        None,
    );
    assert_eq!(
        read(&client_with(&emu, SignatureStyle::V3, good), "aud/s")
            .await
            .unwrap(),
        "x"
    );
    let default_aud = rrsa(
        &emu,
        OidcToken::Token(oidc_token("sts.aliyuncs.com", in_an_hour()).into()),
        None,
    );
    let err = read(
        &client_with(&emu, SignatureStyle::Rpc, default_aud),
        "aud/s",
    )
    .await
    .unwrap_err();
    assert_credentials_error(&err, "oidc_role_arn", "InvalidAudience", "custom audience");
    emu.shutdown().await;
}

/// A P-256 key made with rcgen: its JWKS entry (`kid`) and a signer of projected-token claims.
struct TestOidcKey {
    kid: String,
    key: jsonwebtoken::EncodingKey,
    jwk: serde_json::Value,
}

impl TestOidcKey {
    fn new(kid: &str) -> Self {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = pair.public_key_raw(); // 0x04 || x || y
        Self {
            kid: kid.into(),
            key: jsonwebtoken::EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk: json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": b64(&raw[1..33]), "y": b64(&raw[33..])}),
        }
    }

    fn token(&self, audience: &str) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let claims = json!({
            "aud": [audience], "exp": in_an_hour(), "iat": jiff::Timestamp::now().as_second(),
            "iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:kmsync-system:kmsync",
        });
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

#[tokio::test]
async fn rrsa_token_signatures_are_checked_against_a_configured_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let signer = TestOidcKey::new("sa-key-1");
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, json!({"keys": [signer.jwk]}).to_string()).unwrap();
    let mut cfg = config();
    cfg.sts.oidc_jwks = Some(kmsync::emulator::JwksSource::File(jwks_file));
    let emu = start(cfg).await;
    seed(&emu, SignatureStyle::V3, "jwks/s", "signed").await;
    for style in STYLES {
        let s = style_name(style);
        let good = rrsa(
            &emu,
            OidcToken::Token(signer.token("sts.aliyuncs.com").into()),
            None,
        );
        let c = client_with(&emu, style, good);
        assert_eq!(read(&c, "jwks/s").await.unwrap(), "signed", "{s}");

        // Same kid, another key; and the unsigned shape that passes without a JWKS.
        let forged = TestOidcKey::new("sa-key-1").token("sts.aliyuncs.com");
        for token in [forged, oidc_token("sts.aliyuncs.com", in_an_hour())] {
            let bad = rrsa(&emu, OidcToken::Token(token.into()), None);
            let err = read(&client_with(&emu, style, bad), "jwks/s")
                .await
                .unwrap_err();
            assert_credentials_error(
                &err,
                "oidc_role_arn",
                "AuthenticationFail.OIDCToken.InvalidSignature",
                s,
            );
        }
    }
    assert_eq!(count(&emu, "AssumeRoleWithOIDC", "Success"), 2);
    assert_eq!(
        count(
            &emu,
            "AssumeRoleWithOIDC",
            "AuthenticationFail.OIDCToken.InvalidSignature"
        ),
        4
    );
    emu.shutdown().await;
}

// ------------------------------------------------------------------------------------------------
// ECS RAM role: metadata service (IMDSv2)

fn imdsv2_only() -> EmulatorConfig {
    let mut cfg = config();
    cfg.sts.imds_require_token = true;
    cfg
}

#[tokio::test]
async fn ecs_ram_role_credentials_via_imdsv2() {
    for style in STYLES {
        let s = style_name(style);
        let emu = start(imdsv2_only()).await;
        seed(&emu, style, "ecs/s", "via-imds").await;
        // Role discovered from the metadata service; the emulator refuses token-less GETs, so
        // success proves the IMDSv2 token flow.
        let provider = ecs(&emu, None, true);
        let c = client_with(&emu, style, provider.clone());
        for _ in 0..3 {
            assert_eq!(read(&c, "ecs/s").await.unwrap(), "via-imds", "{s}");
        }
        assert_eq!(count(&emu, "MetadataCredentials", "Success"), 1, "{s}");
        assert_sts_triple(&provider.credentials().await.unwrap(), 3600, s);
        // Explicit role name.
        let c = client_with(&emu, style, ecs(&emu, Some("kmsync-emulator-role"), true));
        assert_eq!(read(&c, "ecs/s").await.unwrap(), "via-imds");

        // A role the instance does not have.
        let kms_calls = count_all(&emu, "GetSecretValue");
        let c = client_with(&emu, style, ecs(&emu, Some("other-role"), true));
        let err = read(&c, "ecs/s").await.unwrap_err();
        assert_credentials_error(&err, "ecs_ram_role", "no RAM role", s);
        assert_eq!(count_all(&emu, "GetSecretValue"), kms_calls);
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn ecs_imdsv1_fallback_only_where_the_metadata_service_allows_it() {
    // An invalid token TTL makes the emulator refuse the IMDSv2 token request.
    let no_token = |emu: &RunningEmulator, imdsv1_disabled: bool| {
        Arc::new(
            EcsRamRoleProvider::new(EcsOptions {
                imdsv1_disabled,
                metadata_base: emu.base_url(),
                token_ttl_seconds: 0,
                ..EcsOptions::default()
            })
            .unwrap(),
        )
    };
    // IMDSv1 allowed by the metadata service: the client falls back and succeeds.
    let emu = start(config()).await;
    seed(&emu, SignatureStyle::V3, "v1/s", "x").await;
    let c = client_with(&emu, SignatureStyle::V3, no_token(&emu, false));
    assert_eq!(read(&c, "v1/s").await.unwrap(), "x");
    // ALIBABA_CLOUD_IMDSV1_DISABLED: the token failure propagates.
    let c = client_with(&emu, SignatureStyle::V3, no_token(&emu, true));
    let err = read(&c, "v1/s").await.unwrap_err();
    assert_credentials_error(&err, "ecs_ram_role", "HTTP 400", "imdsv1 disabled");
    emu.shutdown().await;

    // The metadata service requires IMDSv2: the fallback is refused (403).
    let emu = start(imdsv2_only()).await;
    seed(&emu, SignatureStyle::Rpc, "v1/s", "x").await;
    let c = client_with(&emu, SignatureStyle::Rpc, no_token(&emu, false));
    let err = read(&c, "v1/s").await.unwrap_err();
    assert_credentials_error(&err, "ecs_ram_role", "HTTP 403", "imdsv2 required");
    assert_eq!(count(&emu, "MetadataCredentials", "Success"), 0);
    emu.shutdown().await;
}

#[tokio::test]
async fn short_metadata_credential_lifetime_is_refreshed_per_call() {
    for style in STYLES {
        let s = style_name(style);
        // 600 s credentials are always inside the 15-minute refresh margin.
        let mut cfg = imdsv2_only();
        cfg.sts.default_duration_secs = 600;
        let emu = start(cfg).await;
        seed(&emu, style, "short/s", "x").await;
        let c = client_with(&emu, style, ecs(&emu, None, true));
        for i in 1..=4u64 {
            assert_eq!(read(&c, "short/s").await.unwrap(), "x");
            assert_eq!(count(&emu, "MetadataCredentials", "Success"), i, "{s}");
        }
        emu.shutdown().await;
    }
}

// ------------------------------------------------------------------------------------------------
// Expiry on the KMS side

#[tokio::test]
async fn expired_sts_credentials_are_rejected_by_kms() {
    for style in STYLES {
        let s = style_name(style);
        // The metadata service hands out credentials that expire the moment they are issued.
        let mut cfg = imdsv2_only();
        cfg.sts.default_duration_secs = 0;
        let emu = start(cfg).await;
        seed(&emu, style, "exp/s", "x").await;
        let provider = ecs(&emu, None, true);
        let first = provider.credentials().await.unwrap();
        assert!(first.is_expired(jiff::Timestamp::now()), "{s}");
        // Expired credentials are refetched: a second, newer triple.
        let second = provider.credentials().await.unwrap();
        assert_ne!(first.access_key_id, second.access_key_id);
        assert_eq!(count(&emu, "MetadataCredentials", "Success"), 2);
        // Through the provider, and as static triples (the older one included, after newer
        // credentials were issued): all refused as expired. The provider's client fetches new
        // credentials once (they expire too); static triples have nothing else to offer.
        for (c, calls) in [
            (client_with(&emu, style, provider.clone()), 2),
            (
                client_with(&emu, style, Arc::new(StaticProvider::new(second))),
                1,
            ),
            (
                client_with(&emu, style, Arc::new(StaticProvider::new(first))),
                1,
            ),
        ] {
            let before = count_all(&emu, "GetSecretValue");
            let err = read(&c, "exp/s").await.unwrap_err();
            assert_eq!(err.reason(), "InvalidCredentials", "{s}: {err}");
            assert_eq!(err.code(), Some("InvalidSecurityToken.Expired"), "{s}");
            assert_eq!(err.http_status(), Some(400));
            assert!(!err.is_retryable());
            assert_eq!(count_all(&emu, "GetSecretValue") - before, calls, "{s}");
        }
        assert_eq!(count(&emu, "GetSecretValue", "Success"), 0);
        emu.shutdown().await;
    }
}

/// Found by the fault episodes (tests/k8s_faults.rs): STS credentials that KMS refuses as expired
/// before the client thinks they are (clock skew, a session cut short) were used again until the
/// cache's own refresh time, about 45 minutes of `InvalidCredentials`.
#[tokio::test]
async fn sts_credentials_expired_early_are_replaced_on_the_next_call() {
    for style in STYLES {
        let s = style_name(style);
        let emu = start(config()).await;
        seed(&emu, style, "early/s", "v").await;
        let provider = assume_role(&emu, AK_SECRET, None);
        let c = client_with(&emu, style, provider.clone());
        assert_eq!(read(&c, "early/s").await.unwrap(), "v");
        let refused = provider.credentials().await.unwrap();
        assert_eq!(emu.expire_issued_credentials(), 1);

        // The refused credentials are dropped and new ones fetched, within the same call.
        assert_eq!(read(&c, "early/s").await.unwrap(), "v", "{s}");
        assert_eq!(
            count(&emu, "GetSecretValue", "InvalidSecurityToken.Expired"),
            1
        );
        assert_eq!(count(&emu, "AssumeRole", "Success"), 2, "{s}");
        let fresh = provider.credentials().await.unwrap();
        assert_ne!(fresh.access_key_id, refused.access_key_id);

        // STS down as well: one refused call, one failed refresh, and the reason says so.
        assert_eq!(emu.expire_issued_credentials(), 1);
        emu.set_faults(
            serde_json::from_value(json!({"errors": [
            {"action": "AssumeRole", "rate": 1.0, "code": "ServiceUnavailable", "status": 503}]}))
            .unwrap(),
        );
        let err = read(&c, "early/s").await.unwrap_err();
        assert_eq!(err.reason(), "CredentialsUnavailable", "{s}: {err}");
        assert_eq!(
            count(&emu, "GetSecretValue", "InvalidSecurityToken.Expired"),
            2
        );
        emu.set_faults(Default::default());
        assert_eq!(read(&c, "early/s").await.unwrap(), "v", "{s}");
        assert_eq!(count(&emu, "AssumeRole", "Success"), 3, "{s}");
        emu.shutdown().await;
    }
}
