//! The emulated STS (API version 2015-04-01, same listener as KMS, told apart by action and
//! version): `AssumeRole` (signed), `AssumeRoleWithOIDC` (anonymous; token shape, audience and
//! expiry are checked, and the signature too when a JWKS is configured, see `oidc`) and
//! `GetCallerIdentity`. Issued credentials go into the keyring and are accepted by the KMS side
//! until they expire.

use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Value, json};

use super::auth::{Keyring, KnownKey};
use super::config::StsConfig;
use super::error::KmsError;
use super::oidc::OidcKeys;
use super::params::Params;
use super::store::fmt_time;

pub const STS_VERSION: &str = "2015-04-01";

pub fn is_sts_action(action: &str) -> bool {
    matches!(
        action,
        "AssumeRole" | "AssumeRoleWithOIDC" | "GetCallerIdentity"
    )
}

/// A freshly issued STS triple.
#[derive(Clone)]
pub struct Issued {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub security_token: String,
    pub expiration: Timestamp,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

fn random(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// Issues credentials valid for `secs` and registers them.
pub fn issue(keyring: &mut Keyring, secs: i64, now: Timestamp) -> Issued {
    let issued = Issued {
        access_key_id: format!("STS.{}", random(24)),
        access_key_secret: random(40),
        security_token: format!("CAIS{}", random(120)),
        expiration: now + SignedDuration::from_secs(secs),
    };
    let key = KnownKey {
        secret: issued.access_key_secret.clone(),
        token: Some(issued.security_token.clone()),
        expires: Some(issued.expiration),
    };
    keyring.issue(issued.access_key_id.clone(), key, now);
    issued
}

pub fn credentials_json(i: &Issued) -> Value {
    json!({
        "AccessKeyId": i.access_key_id,
        "AccessKeySecret": i.access_key_secret,
        "SecurityToken": i.security_token,
        "Expiration": fmt_time(i.expiration),
    })
}

/// Runs one STS action. `caller` is the signing AccessKey (None for anonymous calls);
/// `oidc_keys`, when given, must verify every OIDC token's signature.
pub fn dispatch(
    action: &str,
    p: &Params,
    caller: Option<&str>,
    keyring: &mut Keyring,
    cfg: &StsConfig,
    oidc_keys: Option<&OidcKeys>,
    now: Timestamp,
) -> Result<Value, KmsError> {
    match action {
        "AssumeRole" => assume_role(p, keyring, cfg, now),
        "AssumeRoleWithOIDC" => assume_role_with_oidc(p, keyring, cfg, oidc_keys, now),
        "GetCallerIdentity" => Ok(json!({"AccessKeyId": caller, "IdentityType": "Account"})),
        _ => Err(super::actions::unknown_action()),
    }
}

/// `acs:ram::<digits>:<kind>/<name>`; returns (account, name).
fn parse_ram_arn<'a>(
    arn: &'a str,
    kind: &str,
    param: &str,
) -> Result<(&'a str, &'a str), KmsError> {
    let parsed = arn.strip_prefix("acs:ram::").and_then(|rest| {
        let (account, res) = rest.split_once(':')?;
        let name = res.strip_prefix(kind)?.strip_prefix('/')?;
        let ok =
            !account.is_empty() && account.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty();
        ok.then_some((account, name))
    });
    parsed.ok_or_else(|| KmsError::invalid(param))
}

fn session_name(p: &Params) -> Result<String, KmsError> {
    let name = p
        .opt("RoleSessionName")
        .unwrap_or("kmsync-emulator-session");
    let ok = (2..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".@_-".contains(c));
    if !ok {
        return Err(KmsError::invalid("RoleSessionName"));
    }
    Ok(name.to_string())
}

fn duration(p: &Params, cfg: &StsConfig) -> Result<i64, KmsError> {
    let secs = p.int("DurationSeconds", cfg.default_duration_secs)?;
    if p.opt("DurationSeconds").is_some() && !(900..=cfg.max_duration_secs).contains(&secs) {
        return Err(KmsError::invalid("DurationSeconds"));
    }
    Ok(secs)
}

fn assume_role(
    p: &Params,
    keyring: &mut Keyring,
    cfg: &StsConfig,
    now: Timestamp,
) -> Result<Value, KmsError> {
    let arn = p.req("RoleArn")?;
    let (account, role) = parse_ram_arn(arn, "role", "RoleArn")?;
    let session = session_name(p)?;
    if let Some(ext) = p.opt("ExternalId") {
        let ok = (2..=1224).contains(&ext.len())
            && ext
                .chars()
                .all(|c| c.is_alphanumeric() || "_+=,.@:/-".contains(c));
        if !ok {
            return Err(KmsError::invalid("ExternalId"));
        }
    }
    let issued = issue(keyring, duration(p, cfg)?, now);
    Ok(json!({
        "Credentials": credentials_json(&issued),
        "AssumedRoleUser": {
            "Arn": format!("acs:ram::{account}:role/{role}/{session}"),
            "AssumedRoleId": format!("3{}:{session}", random(16)),
        },
    }))
}

/// Checks the token's shape (three base64url parts, JSON claims), its signature when `keys` are
/// given, then audience and expiry.
fn oidc_claims(
    token: &str,
    audience: &str,
    now: Timestamp,
    keys: Option<&OidcKeys>,
) -> Result<Value, KmsError> {
    let malformed = || {
        KmsError::new(
            "InvalidParameter.OIDCToken",
            400,
            "The OIDC token is malformed.",
        )
    };
    let parts: Vec<&str> = token.trim().split('.').collect();
    let [_, payload, _] = parts.as_slice() else {
        return Err(malformed());
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| malformed())?;
    let claims: Value = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
    if let Some(keys) = keys {
        keys.verify(token)?;
    }
    let aud_ok = match &claims["aud"] {
        Value::String(a) => a == audience,
        Value::Array(list) => list.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    };
    if !aud_ok {
        return Err(KmsError::new(
            "AuthenticationFail.OIDCToken.InvalidAudience",
            400,
            "The audience of the OIDC token is not accepted.",
        ));
    }
    let exp = claims["exp"].as_i64().ok_or_else(malformed)?;
    if exp <= now.as_second() {
        return Err(KmsError::new(
            "AuthenticationFail.OIDCToken.Expired",
            400,
            "The OIDC token is expired.",
        ));
    }
    if !claims["iss"].is_string() || !claims["sub"].is_string() {
        return Err(malformed());
    }
    Ok(claims)
}

fn assume_role_with_oidc(
    p: &Params,
    keyring: &mut Keyring,
    cfg: &StsConfig,
    oidc_keys: Option<&OidcKeys>,
    now: Timestamp,
) -> Result<Value, KmsError> {
    let (account, role) = parse_ram_arn(p.req("RoleArn")?, "role", "RoleArn")?;
    parse_ram_arn(
        p.req("OIDCProviderArn")?,
        "oidc-provider",
        "OIDCProviderArn",
    )?;
    let token = p.req("OIDCToken")?;
    if !(4..=20000).contains(&token.len()) {
        return Err(KmsError::invalid("OIDCToken"));
    }
    // Shape first, then the signature (claims of an unverified token decide nothing), then
    // audience and expiry.
    let claims = oidc_claims(token, &cfg.oidc_audience, now, oidc_keys)?;
    let session = session_name(p)?;
    let issued = issue(keyring, duration(p, cfg)?, now);
    let time = |k: &str| {
        claims[k]
            .as_i64()
            .and_then(|s| Timestamp::from_second(s).ok())
            .map(fmt_time)
    };
    Ok(json!({
        "Credentials": credentials_json(&issued),
        "AssumedRoleUser": {
            "Arn": format!("acs:ram::{account}:role/{role}/{session}"),
            "AssumedRoleId": format!("3{}:{session}", random(16)),
        },
        "OIDCTokenInfo": {
            "Subject": claims["sub"], "Issuer": claims["iss"], "ClientIds": cfg.oidc_audience,
            "IssuanceTime": time("iat"), "ExpirationTime": time("exp"), "VerificationInfo": "",
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn token(aud: &str, exp: i64) -> String {
        let enc = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let header = enc(json!({"alg": "RS256"}));
        let claims = enc(
            json!({"aud": [aud], "exp": exp, "iat": 1, "iss": "https://oidc", "sub": "system:serviceaccount:ns:sa"}),
        );
        format!("{header}.{claims}.c2ln")
    }

    fn oidc(tok: &str, kr: &mut Keyring, now: Timestamp) -> Result<Value, KmsError> {
        oidc_with(tok, kr, None, now)
    }

    fn oidc_with(
        tok: &str,
        kr: &mut Keyring,
        keys: Option<&OidcKeys>,
        now: Timestamp,
    ) -> Result<Value, KmsError> {
        let p = Params::from_pairs([
            ("RoleArn", "acs:ram::123:role/app"),
            ("OIDCProviderArn", "acs:ram::123:oidc-provider/ack-rrsa-c1"),
            ("OIDCToken", tok),
        ]);
        dispatch(
            "AssumeRoleWithOIDC",
            &p,
            None,
            kr,
            &StsConfig::default(),
            keys,
            now,
        )
    }

    fn sa_claims(aud: &str, exp: i64) -> Value {
        json!({"aud": [aud], "exp": exp, "iat": 1, "iss": "https://oidc",
            "sub": "system:serviceaccount:ns:sa"})
    }

    /// Replaces the payload of a signed token, keeping header and signature.
    fn tamper(token: &str, claims: &Value) -> String {
        let parts: Vec<&str> = token.split('.').collect();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
        format!("{}.{payload}.{}", parts[0], parts[2])
    }

    #[test]
    fn oidc_signatures_are_verified_against_the_jwks() {
        use crate::emulator::oidc::INVALID_SIGNATURE;
        use crate::emulator::oidc::testing::{Signer, jwks};
        let now = Timestamp::now();
        let future = now.as_second() + 600;
        let mut kr = Keyring::default();
        let rsa = Signer::rsa("k8s-rsa");
        let ec = Signer::ec("k8s-ec");
        let keys = OidcKeys::from_json(&jwks(&[&rsa, &ec])).unwrap();
        for (name, signer) in [("RS256", &rsa), ("ES256", &ec)] {
            let good = signer.sign(&sa_claims("sts.aliyuncs.com", future));
            let out = oidc_with(&good, &mut kr, Some(&keys), now)
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let id = out["Credentials"]["AccessKeyId"].as_str().unwrap();
            assert!(id.starts_with("STS."), "{name}: {out}");

            // Same claims under a key the provider does not publish (same kid).
            let wrong = if name == "RS256" {
                Signer::rsa("k8s-rsa")
            } else {
                Signer::ec("k8s-ec")
            };
            let forged = wrong.sign(&sa_claims("sts.aliyuncs.com", future));
            let e = oidc_with(&forged, &mut kr, Some(&keys), now).unwrap_err();
            assert_eq!(
                (e.code.as_str(), e.status),
                (INVALID_SIGNATURE, 400),
                "{name}"
            );

            // A tampered payload (another subject) under the original signature.
            let mut claims = sa_claims("sts.aliyuncs.com", future);
            claims["sub"] = json!("system:serviceaccount:kube-system:admin");
            let e = oidc_with(&tamper(&good, &claims), &mut kr, Some(&keys), now).unwrap_err();
            assert_eq!(e.code, INVALID_SIGNATURE, "{name}");

            // Signature first: a badly signed token is refused as such, whatever its audience.
            let e = oidc_with(
                &wrong.sign(&sa_claims("other", future)),
                &mut kr,
                Some(&keys),
                now,
            )
            .unwrap_err();
            assert_eq!(e.code, INVALID_SIGNATURE, "{name}");
            // A well-signed token still gets the audience and expiry checks.
            let e = oidc_with(
                &signer.sign(&sa_claims("other", future)),
                &mut kr,
                Some(&keys),
                now,
            )
            .unwrap_err();
            assert_eq!(e.code, "AuthenticationFail.OIDCToken.InvalidAudience");
            let e = oidc_with(
                &signer.sign(&sa_claims("sts.aliyuncs.com", now.as_second() - 1)),
                &mut kr,
                Some(&keys),
                now,
            )
            .unwrap_err();
            assert_eq!(e.code, "AuthenticationFail.OIDCToken.Expired");
        }
        // The unsigned-shape token of the other tests: refused with a JWKS, accepted without.
        let fake = token("sts.aliyuncs.com", future);
        let e = oidc_with(&fake, &mut kr, Some(&keys), now).unwrap_err();
        assert_eq!(e.code, INVALID_SIGNATURE);
        oidc_with(&fake, &mut kr, None, now).unwrap();
        let forged = Signer::ec("k8s-ec").sign(&sa_claims("sts.aliyuncs.com", future));
        oidc_with(&forged, &mut kr, None, now).unwrap();
    }

    #[test]
    fn oidc_checks_audience_expiry_and_shape() {
        let now = Timestamp::now();
        let mut kr = Keyring::default();
        let future = now.as_second() + 600;
        let out = oidc(&token("sts.aliyuncs.com", future), &mut kr, now).unwrap();
        assert!(
            out["Credentials"]["AccessKeyId"]
                .as_str()
                .unwrap()
                .starts_with("STS.")
        );
        assert_eq!(
            out["OIDCTokenInfo"]["Subject"],
            "system:serviceaccount:ns:sa"
        );
        let e = oidc(&token("other", future), &mut kr, now).unwrap_err();
        assert_eq!(e.code, "AuthenticationFail.OIDCToken.InvalidAudience");
        let e = oidc(
            &token("sts.aliyuncs.com", now.as_second() - 1),
            &mut kr,
            now,
        )
        .unwrap_err();
        assert_eq!(e.code, "AuthenticationFail.OIDCToken.Expired");
        assert_eq!(
            oidc("abcd.efg", &mut kr, now).unwrap_err().code,
            "InvalidParameter.OIDCToken"
        );
    }

    #[test]
    fn assume_role_validates_inputs() {
        let now = Timestamp::now();
        let mut kr = Keyring::default();
        let call = |pairs: &[(&str, &str)], kr: &mut Keyring| {
            dispatch(
                "AssumeRole",
                &Params::from_pairs(pairs.iter().copied()),
                Some("ak"),
                kr,
                &StsConfig::default(),
                None,
                now,
            )
        };
        let out = call(
            &[
                ("RoleArn", "acs:ram::123:role/r"),
                ("RoleSessionName", "s1"),
                ("DurationSeconds", "900"),
            ],
            &mut kr,
        )
        .unwrap();
        assert_eq!(out["AssumedRoleUser"]["Arn"], "acs:ram::123:role/r/s1");
        assert!(call(&[("RoleArn", "acs:ram::x:role/r")], &mut kr).is_err());
        assert!(
            call(
                &[("RoleArn", "acs:ram::1:role/r"), ("DurationSeconds", "899")],
                &mut kr
            )
            .is_err()
        );
        assert!(
            call(
                &[("RoleArn", "acs:ram::1:role/r"), ("RoleSessionName", "a")],
                &mut kr
            )
            .is_err()
        );
    }
}
