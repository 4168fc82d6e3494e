//! Checks of `spec.rotation` that the CRD schema cannot express (cron ranges, template
//! placeholders, back-end hosts the operator allows), run before any KMS call or connection: a
//! broken rotation is reported when it is applied, not when its first rotation falls due, and
//! nothing is read, written or dialled meanwhile.

use jiff::Timestamp;

use super::{schedule, template};
use crate::controller::endpoint_policy::EndpointPolicy;
use crate::controller::error::Error;
use crate::crd::rotation::RotationSpec;

/// `InvalidSpec` for a schedule or duration the controller cannot use, `InvalidTemplate` for a
/// template that no value could render, `BackendNotAllowed` for a webhook or database the
/// operator may not connect to (`backends`, from `--allowed-backend-hosts`).
pub fn check(
    rotation: Option<&RotationSpec>,
    now: Timestamp,
    backends: &EndpointPolicy,
) -> Result<(), Error> {
    let Some(spec) = rotation else {
        return Ok(());
    };
    schedule::next_scheduled(spec, now).map_err(Error::InvalidSpec)?;
    schedule::min_interval(spec).map_err(Error::InvalidSpec)?;
    if let Some(text) = &spec.generate.template {
        template::check(text).map_err(Error::InvalidTemplate)?;
    }
    check_backend(spec, backends)
}

/// The register back-end's host must be one the operator allows.
fn check_backend(spec: &RotationSpec, backends: &EndpointPolicy) -> Result<(), Error> {
    let Some(register) = spec.register.as_ref() else {
        return Ok(());
    };
    let (field, host) = if let Some(webhook) = &register.webhook {
        let host = reqwest::Url::parse(&webhook.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .ok_or_else(|| {
                Error::InvalidSpec("rotation.register.webhook.url is not a URL with a host".into())
            })?;
        ("rotation.register.webhook.url", host)
    } else if let Some(postgres) = &register.postgres {
        ("rotation.register.postgres.host", postgres.host.clone())
    } else {
        return Ok(());
    };
    if backends.allows_backend(&host) {
        return Ok(());
    }
    Err(Error::BackendNotAllowed(format!(
        "{field} names host {host}, which the operator does not allow as a rotation back-end \
         (--allowed-backend-hosts; metadata addresses never); nothing was sent"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(rotation: serde_json::Value) -> Option<&'static str> {
        let spec: RotationSpec = serde_json::from_value(rotation).expect("rotation spec");
        check(
            Some(&spec),
            "2026-01-01T00:00:00Z".parse().unwrap(),
            &EndpointPolicy::parse(crate::controller::endpoint_policy::DEFAULT_BACKEND_HOSTS)
                .unwrap(),
        )
        .err()
        .map(|e| e.reason())
    }

    #[test]
    fn good_and_bad_rotations() {
        assert_eq!(
            check(None, Timestamp::UNIX_EPOCH, &EndpointPolicy::default()).ok(),
            Some(())
        );
        assert_eq!(
            reason(serde_json::json!({"schedule": "0 3 * * 0",
                "generate": {"template": "{\"pwd\":\"{{ password }}\"}"}})),
            None
        );
        assert_eq!(
            reason(serde_json::json!({"schedule": "61 * * * *"})),
            Some("InvalidSpec")
        );
        assert_eq!(
            reason(serde_json::json!({"interval": "720h", "minInterval": "soon"})),
            Some("InvalidSpec")
        );
        assert_eq!(
            reason(serde_json::json!({"interval": "720h",
                "generate": {"template": "{{ passwd }}"}})),
            Some("InvalidTemplate")
        );
        for (register, expected) in [
            (
                serde_json::json!({"webhook": {"url": "https://hook.team.svc/rotate", "signingSecretRef": {"name": "k"}}}),
                None,
            ),
            (
                serde_json::json!({"webhook": {"url": "https://hook.example.com/rotate", "signingSecretRef": {"name": "k"}}}),
                Some("BackendNotAllowed"),
            ),
            (
                serde_json::json!({"webhook": {"url": "http://169.254.169.254/latest", "signingSecretRef": {"name": "k"}}}),
                Some("BackendNotAllowed"),
            ),
            (
                serde_json::json!({"postgres": {"host": "db.team.svc.cluster.local", "adminSecretRef": {"name": "a"}}}),
                None,
            ),
            (
                serde_json::json!({"postgres": {"host": "192.0.2.12", "adminSecretRef": {"name": "a"}}}),
                Some("BackendNotAllowed"),
            ),
            (serde_json::json!({"manualApproval": {}}), None),
        ] {
            assert_eq!(
                reason(
                    serde_json::json!({"interval": "720h", "strategy": "Staged", "register": register})
                ),
                expected,
                "{register}"
            );
        }
    }
}
