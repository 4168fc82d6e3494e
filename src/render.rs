//! Pure rendering: a ManagedSecret's spec plus the KMS versions it asked for → the data of the
//! desired Kubernetes Secret. All or nothing: any missing piece is an error and nothing is written.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::crd::ManagedSecretSpec;

/// Default stage read when the spec names neither a stage nor a version.
pub const DEFAULT_STAGE: &str = "ACSCurrent";
/// Secret key of the whole value when the spec has no `data`/`dataFrom`.
pub const WHOLE_VALUE_KEY: &str = "value";

/// Which version of a KMS secret to read.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VersionSelector {
    Stage(String),
    Id(String),
}

impl fmt::Display for VersionSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stage(stage) => write!(f, "stage {stage}"),
            Self::Id(id) => write!(f, "version {id}"),
        }
    }
}

/// One version as fetched from KMS; `data` is already Base64-decoded for binary secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct FetchedVersion {
    pub version_id: String,
    pub stages: Vec<String>,
    pub data: Vec<u8>,
    pub create_time: Option<String>,
}

impl fmt::Debug for FetchedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchedVersion")
            .field("version_id", &self.version_id)
            .field("stages", &self.stages)
            .field("data", &"<redacted>")
            .field("create_time", &self.create_time)
            .finish()
    }
}

/// The rendered Secret data. Prints `<redacted>` values so it can never leak through `{:?}`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretData(pub BTreeMap<String, Vec<u8>>);

impl fmt::Debug for SecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

/// Why a spec and its fetched versions do not make a complete Secret. Messages name keys,
/// properties and version ids, never values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("{0} of the KMS secret was not fetched")]
    NotFetched(VersionSelector),
    #[error(
        "key {key:?}: the value of version {version_id} is not a JSON object, so property {property:?} cannot be read"
    )]
    NotJsonObject {
        key: String,
        property: String,
        version_id: String,
    },
    #[error("key {key:?}: property {property:?} is missing (or null) in version {version_id}")]
    PropertyNotFound {
        key: String,
        property: String,
        version_id: String,
    },
    #[error("dataFrom.extract: the value of version {version_id} is not a JSON object")]
    ExtractNotJsonObject { version_id: String },
    #[error("dataFrom.extract: JSON key {key:?} of version {version_id} is not a valid Secret key")]
    InvalidExtractedKey { key: String, version_id: String },
}

impl RenderError {
    /// Stable PascalCase reason for conditions, events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFetched(_) => "VersionNotFound",
            Self::PropertyNotFound { .. } => "PropertyNotFound",
            Self::NotJsonObject { .. } | Self::ExtractNotJsonObject { .. } => "InvalidSecretValue",
            Self::InvalidExtractedKey { .. } => "InvalidSecretKey",
        }
    }
}

/// The selector the spec reads by default: `versionId`, else `versionStage`, else `ACSCurrent`.
pub fn primary_selector(spec: &ManagedSecretSpec) -> VersionSelector {
    match (&spec.version_id, &spec.version_stage) {
        (Some(id), _) => VersionSelector::Id(id.clone()),
        (None, Some(stage)) => VersionSelector::Stage(stage.clone()),
        (None, None) => VersionSelector::Stage(DEFAULT_STAGE.to_string()),
    }
}

/// Whether a missing `selector` may simply be left out: only optional entries read it.
pub fn selector_is_optional(spec: &ManagedSecretSpec, selector: &VersionSelector) -> bool {
    *selector != primary_selector(spec)
        && spec
            .data
            .iter()
            .filter(|m| mapping_selector(spec, m) == *selector)
            .all(|m| m.optional)
}

/// Every version the spec needs: the primary one and any per-key override.
pub fn required_selectors(spec: &ManagedSecretSpec) -> BTreeSet<VersionSelector> {
    let mut selectors = BTreeSet::from([primary_selector(spec)]);
    for mapping in &spec.data {
        selectors.insert(mapping_selector(spec, mapping));
    }
    selectors
}

fn mapping_selector(
    spec: &ManagedSecretSpec,
    mapping: &crate::crd::managed_secret::DataMapping,
) -> VersionSelector {
    match (&mapping.version_id, &mapping.version_stage) {
        (Some(id), _) => VersionSelector::Id(id.clone()),
        (None, Some(stage)) => VersionSelector::Stage(stage.clone()),
        (None, None) => primary_selector(spec),
    }
}

/// Renders the Secret data. `fetched` must hold every selector of [`required_selectors`].
pub fn render(
    spec: &ManagedSecretSpec,
    fetched: &BTreeMap<VersionSelector, FetchedVersion>,
) -> Result<SecretData, RenderError> {
    let lookup = |selector: VersionSelector| {
        fetched
            .get(&selector)
            .ok_or(RenderError::NotFetched(selector))
    };
    let primary = lookup(primary_selector(spec))?;
    let extract = spec.data_from.as_ref().is_some_and(|d| d.extract);
    let mut out = BTreeMap::new();
    if spec.data.is_empty() && !extract {
        out.insert(WHOLE_VALUE_KEY.to_string(), primary.data.clone());
        return Ok(SecretData(out));
    }
    if extract {
        out.extend(extract_all(primary)?);
    }
    for mapping in &spec.data {
        let selector = mapping_selector(spec, mapping);
        let version = match fetched.get(&selector) {
            Some(version) => version,
            None if mapping.optional => continue,
            None => return Err(RenderError::NotFetched(selector)),
        };
        let bytes = match &mapping.property {
            None => version.data.clone(),
            Some(property) => match property_bytes(version, &mapping.key, property) {
                Ok(bytes) => bytes,
                Err(RenderError::PropertyNotFound { .. }) if mapping.optional => continue,
                Err(error) => return Err(error),
            },
        };
        out.insert(mapping.key.clone(), bytes);
    }
    Ok(SecretData(out))
}

fn json_object(data: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_slice(data).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A JSON value as Secret bytes: strings as-is, other scalars and structures as JSON text.
fn value_bytes(value: &serde_json::Value) -> Option<Vec<u8>> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.as_bytes().to_vec()),
        other => Some(other.to_string().into_bytes()),
    }
}

/// A top-level property; when absent and the name has dots, a nested path (`db.password`).
fn property_bytes(
    version: &FetchedVersion,
    key: &str,
    property: &str,
) -> Result<Vec<u8>, RenderError> {
    let object = json_object(&version.data).ok_or_else(|| RenderError::NotJsonObject {
        key: key.to_string(),
        property: property.to_string(),
        version_id: version.version_id.clone(),
    })?;
    let found = object.get(property).or_else(|| {
        let mut parts = property.split('.');
        let first = object.get(parts.next()?)?;
        parts.try_fold(first, |value, part| value.get(part))
    });
    found
        .and_then(value_bytes)
        .ok_or_else(|| RenderError::PropertyNotFound {
            key: key.to_string(),
            property: property.to_string(),
            version_id: version.version_id.clone(),
        })
}

fn extract_all(version: &FetchedVersion) -> Result<BTreeMap<String, Vec<u8>>, RenderError> {
    let object = json_object(&version.data).ok_or_else(|| RenderError::ExtractNotJsonObject {
        version_id: version.version_id.clone(),
    })?;
    let mut out = BTreeMap::new();
    for (key, value) in &object {
        if !is_valid_secret_key(key) {
            return Err(RenderError::InvalidExtractedKey {
                key: key.chars().take(64).collect(),
                version_id: version.version_id.clone(),
            });
        }
        if let Some(bytes) = value_bytes(value) {
            out.insert(key.clone(), bytes);
        }
    }
    Ok(out)
}

/// Kubernetes' rule for Secret and ConfigMap keys.
pub fn is_valid_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && key != "."
        && !key.starts_with("..")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::managed_secret::DataFrom;

    const CANARY: &str = "canary-7f3a9c-do-not-leak";

    fn spec(json: serde_json::Value) -> ManagedSecretSpec {
        let mut base = serde_json::json!({"storeRef": {"name": "kms"}, "secretName": "db_cred"});
        base.as_object_mut()
            .unwrap()
            .extend(json.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    fn version(id: &str, stages: &[&str], data: &str) -> FetchedVersion {
        FetchedVersion {
            version_id: id.into(),
            stages: stages.iter().map(|s| s.to_string()).collect(),
            data: data.as_bytes().to_vec(),
            create_time: None,
        }
    }

    fn fetched(
        entries: &[(VersionSelector, FetchedVersion)],
    ) -> BTreeMap<VersionSelector, FetchedVersion> {
        entries.iter().cloned().collect()
    }

    fn stage(s: &str) -> VersionSelector {
        VersionSelector::Stage(s.into())
    }

    fn text(data: &SecretData, key: &str) -> String {
        String::from_utf8(data.0[key].clone()).unwrap()
    }

    #[test]
    fn whole_value_lands_under_value_key() {
        let s = spec(serde_json::json!({}));
        let data = render(
            &s,
            &fetched(&[(
                stage("ACSCurrent"),
                version("v1", &["ACSCurrent"], "hunter2"),
            )]),
        )
        .unwrap();
        assert_eq!(data.0.len(), 1);
        assert_eq!(text(&data, "value"), "hunter2");
    }

    #[test]
    fn selectors_cover_primary_and_overrides() {
        let s = spec(serde_json::json!({"versionStage": "Blue", "data": [
            {"key": "a", "property": "x"},
            {"key": "b", "property": "x", "versionStage": "ACSPrevious"},
            {"key": "c", "versionId": "v7"}]}));
        assert_eq!(
            required_selectors(&s).into_iter().collect::<Vec<_>>(),
            vec![
                stage("ACSPrevious"),
                stage("Blue"),
                VersionSelector::Id("v7".into())
            ]
        );
        let pinned = spec(serde_json::json!({"versionId": "v2"}));
        assert_eq!(primary_selector(&pinned), VersionSelector::Id("v2".into()));
    }

    #[test]
    fn properties_from_current_and_previous_side_by_side() {
        let s = spec(serde_json::json!({"data": [
            {"key": "username", "property": "uname"},
            {"key": "password", "property": "pwd"},
            {"key": "password-previous", "property": "pwd", "versionStage": "ACSPrevious"},
            {"key": "port", "property": "port"},
            {"key": "nested", "property": "db.host"}]}));
        let current = version(
            "v2",
            &["ACSCurrent"],
            r#"{"uname":"app","pwd":"new","port":5432,"db":{"host":"h"}}"#,
        );
        let previous = version("v1", &["ACSPrevious"], r#"{"uname":"app","pwd":"old"}"#);
        let data = render(
            &s,
            &fetched(&[
                (stage("ACSCurrent"), current),
                (stage("ACSPrevious"), previous),
            ]),
        )
        .unwrap();
        assert_eq!(text(&data, "username"), "app");
        assert_eq!(text(&data, "password"), "new");
        assert_eq!(text(&data, "password-previous"), "old");
        assert_eq!(text(&data, "port"), "5432");
        assert_eq!(text(&data, "nested"), "h");
    }

    #[test]
    fn missing_property_fails_whole_render_without_values() {
        let s = spec(serde_json::json!({"data": [
            {"key": "password", "property": "pwd"}, {"key": "token", "property": "tok"}]}));
        let current = version("v3", &["ACSCurrent"], &format!(r#"{{"pwd":"{CANARY}"}}"#));
        let error = render(&s, &fetched(&[(stage("ACSCurrent"), current)])).unwrap_err();
        assert_eq!(error.reason(), "PropertyNotFound");
        let message = error.to_string();
        assert!(
            message.contains("\"tok\"") && message.contains("v3"),
            "{message}"
        );
        assert!(!message.contains(CANARY) && !format!("{error:?}").contains(CANARY));
    }

    #[test]
    fn property_of_non_json_value_is_an_error() {
        let s = spec(serde_json::json!({"data": [{"key": "password", "property": "pwd"}]}));
        let error = render(
            &s,
            &fetched(&[(stage("ACSCurrent"), version("v1", &[], CANARY))]),
        )
        .unwrap_err();
        assert_eq!(error.reason(), "InvalidSecretValue");
        assert!(!error.to_string().contains(CANARY));
    }

    #[test]
    fn null_property_counts_as_missing() {
        let s = spec(serde_json::json!({"data": [{"key": "password", "property": "pwd"}]}));
        let error = render(
            &s,
            &fetched(&[(stage("ACSCurrent"), version("v1", &[], r#"{"pwd":null}"#))]),
        )
        .unwrap_err();
        assert_eq!(error.reason(), "PropertyNotFound");
    }

    #[test]
    fn extract_maps_every_key_and_explicit_data_wins() {
        let mut s = spec(serde_json::json!({"data": [{"key": "pwd", "property": "uname"}]}));
        s.data_from = Some(DataFrom { extract: true });
        let current = version(
            "v1",
            &["ACSCurrent"],
            r#"{"uname":"app","pwd":"p","flag":true,"obj":{"a":1}}"#,
        );
        let data = render(&s, &fetched(&[(stage("ACSCurrent"), current)])).unwrap();
        assert_eq!(
            data.0.keys().collect::<Vec<_>>(),
            ["flag", "obj", "pwd", "uname"]
        );
        assert_eq!(text(&data, "pwd"), "app");
        assert_eq!(text(&data, "flag"), "true");
        assert_eq!(text(&data, "obj"), r#"{"a":1}"#);
    }

    #[test]
    fn extract_refuses_keys_kubernetes_would_refuse() {
        let mut s = spec(serde_json::json!({}));
        s.data_from = Some(DataFrom { extract: true });
        for bad in ["../etc", "a/b", "..x", ""] {
            let value = serde_json::json!({ bad: "x" }).to_string();
            let error = render(
                &s,
                &fetched(&[(stage("ACSCurrent"), version("v1", &[], &value))]),
            )
            .unwrap_err();
            assert_eq!(error.reason(), "InvalidSecretKey", "{bad:?}");
        }
    }

    #[test]
    fn binary_bytes_pass_through_untouched() {
        let s = spec(serde_json::json!({"data": [{"key": "blob"}]}));
        let mut v = version("v1", &["ACSCurrent"], "");
        v.data = vec![0, 159, 146, 150, 255];
        let data = render(&s, &fetched(&[(stage("ACSCurrent"), v)])).unwrap();
        assert_eq!(data.0["blob"], vec![0, 159, 146, 150, 255]);
    }

    #[test]
    fn unfetched_override_is_an_error_not_a_partial_secret() {
        let s = spec(serde_json::json!({"data": [
            {"key": "a"}, {"key": "b", "versionStage": "ACSPrevious"}]}));
        let error = render(
            &s,
            &fetched(&[(stage("ACSCurrent"), version("v2", &[], "x"))]),
        )
        .unwrap_err();
        assert_eq!(error, RenderError::NotFetched(stage("ACSPrevious")));
    }

    #[test]
    fn optional_entries_are_left_out_when_missing() {
        let s = spec(serde_json::json!({"data": [
            {"key": "password", "property": "pwd"},
            {"key": "password-previous", "property": "pwd", "versionStage": "ACSPrevious", "optional": true},
            {"key": "token", "property": "tok", "optional": true}]}));
        assert!(selector_is_optional(&s, &stage("ACSPrevious")));
        assert!(!selector_is_optional(&s, &stage("ACSCurrent")));
        let current = version("v1", &["ACSCurrent"], r#"{"pwd":"p"}"#);
        let data = render(&s, &fetched(&[(stage("ACSCurrent"), current)])).unwrap();
        assert_eq!(data.0.keys().collect::<Vec<_>>(), ["password"]);
    }

    #[test]
    fn an_optional_entry_does_not_excuse_a_required_one_on_the_same_version() {
        let s = spec(serde_json::json!({"data": [
            {"key": "a", "property": "x", "versionStage": "Blue", "optional": true},
            {"key": "b", "property": "y", "versionStage": "Blue"}]}));
        assert!(!selector_is_optional(&s, &stage("Blue")));
    }

    #[test]
    fn debug_output_redacts_values() {
        let v = version("v1", &["ACSCurrent"], CANARY);
        let data = SecretData(BTreeMap::from([(
            "k".to_string(),
            CANARY.as_bytes().to_vec(),
        )]));
        assert!(!format!("{v:?}{data:?}").contains(CANARY));
    }
}
