//! Reading the Secrets a rotation back-end authenticates with, from the ManagedSecret's namespace
//! (the PostgreSQL admin login, the webhook signing key and client certificate). A missing Secret
//! or key ends the attempt before anything is sent; messages name Secrets and keys, never values.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use super::StepError;
use crate::kms::SecretBytes;

/// The data of one Secret, taken key by key.
#[derive(Debug)]
pub struct SecretKeys {
    label: String,
    data: BTreeMap<String, ByteString>,
    step: &'static str,
}

/// Reads Secret `namespace/name`; `what` says what it is for (`admin`, `webhook signing`, …).
pub async fn read(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    what: &str,
    step: &'static str,
) -> Result<SecretKeys, StepError> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| {
            StepError::transient(
                step,
                "KubernetesError",
                format!("reading the {what} Secret: {e}"),
            )
        })?;
    let label = format!("{what} Secret {namespace}/{name}");
    let Some(secret) = secret else {
        return Err(StepError::permanent(
            step,
            "InvalidCredentials",
            format!("{label} does not exist"),
        ));
    };
    Ok(SecretKeys {
        label,
        data: secret.data.unwrap_or_default(),
        step,
    })
}

impl SecretKeys {
    /// The non-empty value of `key`.
    pub fn bytes(&mut self, key: &str) -> Result<SecretBytes, StepError> {
        self.data
            .remove(key)
            .filter(|v| !v.0.is_empty())
            .map(|v| SecretBytes::new(v.0))
            .ok_or_else(|| self.missing(key))
    }

    /// The non-empty UTF-8 value of `key`.
    pub fn text(&mut self, key: &str) -> Result<String, StepError> {
        String::from_utf8(self.bytes(key)?.into_inner()).map_err(|_| self.missing(key))
    }

    fn missing(&self, key: &str) -> StepError {
        StepError::permanent(
            self.step,
            "InvalidCredentials",
            format!("{} has no key {key}", self.label),
        )
    }
}
