//! Glue between a Staged rotation and the PostgreSQL back-end: the admin credentials come from a
//! Secret in the ManagedSecret's own namespace, the role and new password from the pending
//! value's JSON properties (`uname` / `pwd` by default).

use kube::ResourceExt;

use super::postgres::{self, PostgresTarget, RegisterError};
use super::{StepError, secret_ref};
use crate::controller::reconcile::Context;
use crate::crd::ManagedSecret;
use crate::crd::rotation::PostgresRegister;
use crate::kms::SecretString;

fn step_error(step: &'static str, error: RegisterError) -> StepError {
    StepError {
        step,
        reason: error.reason,
        message: error.message,
        transient: error.transient,
    }
}

/// Reads the admin user and password from the Secret `admin_secret_ref` of `namespace`.
async fn admin_credentials(
    ctx: &Context,
    namespace: &str,
    spec: &PostgresRegister,
    step: &'static str,
) -> Result<(String, SecretString), StepError> {
    let reference = &spec.admin_secret_ref;
    let mut keys = secret_ref::read(&ctx.client, namespace, &reference.name, "admin", step).await?;
    let user = keys.text(reference.username_key.as_deref().unwrap_or("username"))?;
    let password = keys.text(reference.password_key.as_deref().unwrap_or("password"))?;
    Ok((user, SecretString::new(password)))
}

/// The role and password inside the pending value.
fn credential(
    spec: &PostgresRegister,
    value: &SecretString,
    step: &'static str,
) -> Result<(String, SecretString), StepError> {
    let json: serde_json::Value = serde_json::from_str(value.expose()).map_err(|_| {
        StepError::permanent(
            step,
            "InvalidSecretValue",
            "the pending value is not a JSON object".into(),
        )
    })?;
    let read = |property: &str| {
        json.get(property)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                StepError::permanent(
                    step,
                    "PropertyNotFound",
                    format!("the pending value has no string property {property:?}"),
                )
            })
    };
    let role = read(spec.username_property.as_deref().unwrap_or("uname"))?;
    let password = read(spec.password_property.as_deref().unwrap_or("pwd"))?;
    Ok((role, SecretString::new(password)))
}

/// `register` (ALTER ROLE through the admin connection) or `verify` (a login as the role).
pub async fn run(
    ctx: &Context,
    ms: &ManagedSecret,
    spec: &PostgresRegister,
    step: &'static str,
    value: &SecretString,
) -> Result<(), StepError> {
    let namespace = ms.namespace().unwrap_or_default();
    let (admin_user, admin_password) = admin_credentials(ctx, &namespace, spec, step).await?;
    let target =
        PostgresTarget::from_spec(spec, admin_user, admin_password, spec.ca_bundle.clone())
            .map_err(|e| step_error(step, e))?;
    let (role, password) = credential(spec, value, step)?;
    let result = if step == "verify" {
        postgres::verify(&target, &role, &password).await
    } else {
        postgres::register(&target, &role, &password).await
    };
    result.map_err(|e| step_error(step, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credential_comes_from_the_configured_properties_without_leaking() {
        let canary = "canary-pg-4d1f";
        let mut spec: PostgresRegister = serde_json::from_value(serde_json::json!({
            "host": "127.0.0.1", "adminSecretRef": {"name": "pg-admin"}}))
        .unwrap();
        let value = SecretString::new(format!(
            r#"{{"uname":"app","pwd":"{canary}","user":"other"}}"#
        ));
        let (role, password) = credential(&spec, &value, "register").unwrap();
        assert_eq!((role.as_str(), password.expose()), ("app", canary));
        spec.username_property = Some("user".into());
        assert_eq!(credential(&spec, &value, "register").unwrap().0, "other");
        spec.password_property = Some("missing".into());
        let error = credential(&spec, &value, "register").unwrap_err();
        assert_eq!(error.reason, "PropertyNotFound");
        assert!(!error.to_string().contains(canary));
        assert_eq!(
            credential(&spec, &SecretString::new(canary), "verify")
                .unwrap_err()
                .reason,
            "InvalidSecretValue"
        );
    }
}
