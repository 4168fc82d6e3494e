//! Typed requests and responses of the secrets actions (kms-api.md §3).
//!
//! Each request implements [`KmsAction`]: its action name, its parameters (validated, without
//! ever quoting a value in an error) and its response type. Responses unwrap the list wrappers
//! (`{"VersionStage":[…]}`) into plain `Vec`s and hold secret values as [`SecretString`].

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};

use super::error::KmsError;
use super::request::Params;
use super::secret::{SecretBytes, SecretString};

/// Maximum size of a secret value.
pub const MAX_SECRET_DATA_BYTES: usize = 30720;

/// One KMS action: name, parameters and response type.
pub trait KmsAction {
    const ACTION: &'static str;
    type Response: DeserializeOwned;
    fn params(&self) -> Result<Params, KmsError>;
}

fn invalid(message: impl Into<String>) -> KmsError {
    KmsError::InvalidRequest(message.into())
}

fn require(name: &str, value: &str) -> Result<(), KmsError> {
    if value.trim().is_empty() {
        return Err(invalid(format!("{name} is required")));
    }
    Ok(())
}

fn check_secret_data(data: &SecretString) -> Result<(), KmsError> {
    if data.is_empty() {
        return Err(invalid("SecretData is required"));
    }
    if data.len() > MAX_SECRET_DATA_BYTES {
        return Err(invalid(format!(
            "SecretData is {} bytes, more than the {MAX_SECRET_DATA_BYTES}-byte limit",
            data.len()
        )));
    }
    Ok(())
}

/// Deserialises a list that may be bare (`[…]`), wrapped (`{"X":[…]}`), a single wrapped item
/// (`{"X":{…}}`), empty or absent.
pub fn de_list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    use serde::de::Error as _;
    let value = Option::<serde_json::Value>::deserialize(deserializer)?;
    let items = match value {
        None | Some(serde_json::Value::Null) => return Ok(Vec::new()),
        Some(serde_json::Value::String(s)) if s.is_empty() => return Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items,
        Some(serde_json::Value::Object(map)) if map.is_empty() => return Ok(Vec::new()),
        Some(serde_json::Value::Object(map)) if map.len() == 1 => {
            match map.into_iter().next().map(|(_, v)| v) {
                Some(serde_json::Value::Array(items)) => items,
                Some(serde_json::Value::Null) | None => return Ok(Vec::new()),
                Some(single) => vec![single],
            }
        }
        Some(other) => vec![other],
    };
    items
        .into_iter()
        .map(|item| serde_json::from_value(item).map_err(|_| D::Error::custom("invalid list item")))
        .collect()
}

/// Accepts a JSON number or a numeric string.
pub fn de_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    use serde::de::Error as _;
    match Option::<serde_json::Value>::deserialize(deserializer)? {
        None | Some(serde_json::Value::Null) => Ok(0),
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| D::Error::custom("expected an unsigned integer")),
        Some(serde_json::Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| D::Error::custom("expected a numeric string")),
        Some(_) => Err(D::Error::custom("expected a number")),
    }
}

/// Parses a KMS timestamp (`2020-07-23T11:56:29Z`, or RFC 3339 with fraction and offset).
pub fn parse_time(text: &str) -> Option<jiff::Timestamp> {
    text.trim().parse().ok()
}

/// A tag as sent in `Tags` and returned in `{Tag:[…]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Tag {
    pub tag_key: String,
    pub tag_value: String,
}

impl Tag {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            tag_key: key.into(),
            tag_value: value.into(),
        }
    }
}

fn check_tags(tags: &[Tag]) -> Result<(), KmsError> {
    if tags.len() > 20 {
        return Err(invalid("at most 20 tags per secret"));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// GetSecretValue / BatchGetSecretValue

#[derive(Debug, Clone, Default)]
pub struct GetSecretValueRequest {
    pub secret_name: String,
    pub version_stage: Option<String>,
    pub version_id: Option<String>,
    pub fetch_extended_config: Option<bool>,
    pub dry_run: Option<bool>,
}

impl GetSecretValueRequest {
    /// The `ACSCurrent` value (the service default).
    pub fn current(secret_name: impl Into<String>) -> Self {
        Self {
            secret_name: secret_name.into(),
            ..Self::default()
        }
    }
}

impl KmsAction for GetSecretValueRequest {
    const ACTION: &'static str = "GetSecretValue";
    type Response = GetSecretValueResponse;
    fn params(&self) -> Result<Params, KmsError> {
        require("SecretName", &self.secret_name)?;
        let mut p = Params::new();
        p.set("SecretName", &self.secret_name)
            .set_opt("VersionStage", self.version_stage.as_ref())
            .set_opt("VersionId", self.version_id.as_ref())
            .set_bool("FetchExtendedConfig", self.fetch_extended_config)
            .set_bool("DryRun", self.dry_run);
        Ok(p)
    }
}

/// One secret version's value. `secret_data` is redacted in `Debug`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct GetSecretValueResponse {
    pub request_id: Option<String>,
    pub secret_name: String,
    pub version_id: String,
    pub secret_data: SecretString,
    /// `text` or `binary`.
    pub secret_data_type: Option<String>,
    pub secret_type: Option<String>,
    #[serde(deserialize_with = "de_list")]
    pub version_stages: Vec<String>,
    pub create_time: Option<String>,
    pub automatic_rotation: Option<String>,
    pub extended_config: Option<String>,
    pub last_rotation_date: Option<String>,
    pub next_rotation_date: Option<String>,
    pub rotation_interval: Option<String>,
}

impl GetSecretValueResponse {
    pub fn is_binary(&self) -> bool {
        self.secret_data_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("binary"))
    }

    /// The value as bytes: Base64-decoded for `binary` secrets, UTF-8 bytes for `text`.
    pub fn value_bytes(&self) -> Result<SecretBytes, KmsError> {
        if !self.is_binary() {
            return Ok(SecretBytes::new(self.secret_data.expose().as_bytes()));
        }
        let text: String = self
            .secret_data
            .expose()
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(&text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&text))
            .map(SecretBytes::new)
            .map_err(|_| KmsError::InvalidResponse {
                status: 200,
                message: format!(
                    "binary secret {} version {} is not valid Base64",
                    self.secret_name, self.version_id
                ),
            })
    }
}

/// One item of `BatchGetSecretValue`'s `SecretsList`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchSecretSelector {
    pub secret_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_stage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch_extended_config: Option<bool>,
}

#[derive(Debug, Clone, Default)]
pub struct BatchGetSecretValueRequest {
    pub secrets: Vec<BatchSecretSelector>,
}

impl KmsAction for BatchGetSecretValueRequest {
    const ACTION: &'static str = "BatchGetSecretValue";
    type Response = BatchGetSecretValueResponse;
    fn params(&self) -> Result<Params, KmsError> {
        if self.secrets.is_empty() || self.secrets.len() > 20 {
            return Err(invalid("SecretsList must hold 1 to 20 secrets"));
        }
        for s in &self.secrets {
            require("SecretsList[].SecretName", &s.secret_name)?;
        }
        let mut p = Params::new();
        p.set_json("SecretsList", &self.secrets);
        Ok(p)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BatchSecretError {
    pub secret_name: String,
    pub code: String,
    #[serde(deserialize_with = "de_u64")]
    pub http_status: u64,
    pub message: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BatchGetSecretValueResponse {
    pub request_id: Option<String>,
    #[serde(deserialize_with = "de_list")]
    pub secret_values: Vec<GetSecretValueResponse>,
    #[serde(deserialize_with = "de_list")]
    pub errors: Vec<BatchSecretError>,
}

// ------------------------------------------------------------------------------------------------
// PutSecretValue / UpdateSecretVersionStage / ListSecretVersionIds

#[derive(Debug, Clone, Default)]
pub struct PutSecretValueRequest {
    pub secret_name: String,
    pub version_id: String,
    pub secret_data: SecretString,
    pub secret_data_type: Option<String>,
    /// Sent as a JSON array string; `None` lets the service promote to `ACSCurrent`.
    pub version_stages: Option<Vec<String>>,
}

impl KmsAction for PutSecretValueRequest {
    const ACTION: &'static str = "PutSecretValue";
    type Response = PutSecretValueResponse;
    fn params(&self) -> Result<Params, KmsError> {
        require("SecretName", &self.secret_name)?;
        require("VersionId", &self.version_id)?;
        check_secret_data(&self.secret_data)?;
        let mut p = Params::new();
        p.set("SecretName", &self.secret_name)
            .set("VersionId", &self.version_id)
            .set_opt("SecretDataType", self.secret_data_type.as_ref())
            .set_form("SecretData", self.secret_data.clone());
        if let Some(stages) = &self.version_stages {
            p.set_json("VersionStages", stages);
        }
        Ok(p)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PutSecretValueResponse {
    pub request_id: Option<String>,
    pub secret_name: String,
    pub version_id: String,
    #[serde(deserialize_with = "de_list")]
    pub version_stages: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct UpdateSecretVersionStageRequest {
    pub secret_name: String,
    pub version_stage: String,
    pub remove_from_version: Option<String>,
    pub move_to_version: Option<String>,
}

impl KmsAction for UpdateSecretVersionStageRequest {
    const ACTION: &'static str = "UpdateSecretVersionStage";
    type Response = SecretNameResponse;
    fn params(&self) -> Result<Params, KmsError> {
        require("SecretName", &self.secret_name)?;
        require("VersionStage", &self.version_stage)?;
        if self.remove_from_version.is_none() && self.move_to_version.is_none() {
            return Err(invalid(
                "one of RemoveFromVersion and MoveToVersion is required",
            ));
        }
        let builtin = matches!(self.version_stage.as_str(), "ACSCurrent" | "ACSPrevious");
        if builtin && self.move_to_version.is_none() {
            return Err(invalid(format!(
                "{} can only be moved: MoveToVersion is required",
                self.version_stage
            )));
        }
        let mut p = Params::new();
        p.set("SecretName", &self.secret_name)
            .set("VersionStage", &self.version_stage)
            .set_opt("RemoveFromVersion", self.remove_from_version.as_ref())
            .set_opt("MoveToVersion", self.move_to_version.as_ref());
        Ok(p)
    }
}

/// Responses that carry only the secret name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SecretNameResponse {
    pub request_id: Option<String>,
    pub secret_name: String,
}

#[derive(Debug, Clone, Default)]
pub struct ListSecretVersionIdsRequest {
    pub secret_name: String,
    pub include_deprecated: Option<bool>,
    pub page_number: Option<u32>,
    pub page_size: Option<u32>,
}

impl KmsAction for ListSecretVersionIdsRequest {
    const ACTION: &'static str = "ListSecretVersionIds";
    type Response = ListSecretVersionIdsResponse;
    fn params(&self) -> Result<Params, KmsError> {
        require("SecretName", &self.secret_name)?;
        let mut p = Params::new();
        p.set("SecretName", &self.secret_name)
            .set_bool("IncludeDeprecated", self.include_deprecated)
            .set_opt("PageNumber", self.page_number)
            .set_opt("PageSize", self.page_size);
        Ok(p)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VersionIdEntry {
    pub version_id: String,
    pub create_time: Option<String>,
    #[serde(deserialize_with = "de_list")]
    pub version_stages: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ListSecretVersionIdsResponse {
    pub request_id: Option<String>,
    pub secret_name: String,
    #[serde(deserialize_with = "de_u64")]
    pub page_number: u64,
    #[serde(deserialize_with = "de_u64")]
    pub page_size: u64,
    #[serde(deserialize_with = "de_u64")]
    pub total_count: u64,
    #[serde(deserialize_with = "de_list")]
    pub version_ids: Vec<VersionIdEntry>,
}

// ------------------------------------------------------------------------------------------------
// DescribeSecret / ListSecrets

#[derive(Debug, Clone, Default)]
pub struct DescribeSecretRequest {
    pub secret_name: String,
    pub fetch_tags: Option<bool>,
}

impl KmsAction for DescribeSecretRequest {
    const ACTION: &'static str = "DescribeSecret";
    type Response = DescribeSecretResponse;
    fn params(&self) -> Result<Params, KmsError> {
        require("SecretName", &self.secret_name)?;
        let mut p = Params::new();
        p.set("SecretName", &self.secret_name)
            .set_bool("FetchTags", self.fetch_tags);
        Ok(p)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribeSecretResponse {
    pub request_id: Option<String>,
    pub arn: Option<String>,
    pub secret_name: String,
    pub secret_type: Option<String>,
    pub description: Option<String>,
    pub create_time: Option<String>,
    pub update_time: Option<String>,
    pub encryption_key_id: Option<String>,
    #[serde(rename = "DKMSInstanceId")]
    pub dkms_instance_id: Option<String>,
    pub planned_delete_time: Option<String>,
    pub owing_service: Option<String>,
    #[serde(deserialize_with = "de_list")]
    pub tags: Vec<Tag>,
    pub automatic_rotation: Option<String>,
    pub extended_config: Option<String>,
    pub last_rotation_date: Option<String>,
    pub next_rotation_date: Option<String>,
    pub rotation_interval: Option<String>,
}

/// A `Filters` entry of ListSecrets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecretFilter {
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ListSecretsRequest {
    pub page_number: Option<u32>,
    pub page_size: Option<u32>,
    pub fetch_tags: Option<bool>,
    pub filters: Vec<SecretFilter>,
}

impl KmsAction for ListSecretsRequest {
    const ACTION: &'static str = "ListSecrets";
    type Response = ListSecretsResponse;
    fn params(&self) -> Result<Params, KmsError> {
        if self.page_size.is_some_and(|s| !(1..=100).contains(&s)) {
            return Err(invalid("PageSize must be within 1..=100"));
        }
        let mut p = Params::new();
        p.set_opt("PageNumber", self.page_number)
            .set_opt("PageSize", self.page_size)
            .set_bool("FetchTags", self.fetch_tags);
        if !self.filters.is_empty() {
            p.set_json("Filters", &self.filters);
        }
        Ok(p)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SecretSummary {
    pub secret_name: String,
    pub secret_type: Option<String>,
    pub create_time: Option<String>,
    pub update_time: Option<String>,
    pub planned_delete_time: Option<String>,
    pub owing_service: Option<String>,
    #[serde(deserialize_with = "de_list")]
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ListSecretsResponse {
    pub request_id: Option<String>,
    #[serde(deserialize_with = "de_u64")]
    pub page_number: u64,
    #[serde(deserialize_with = "de_u64")]
    pub page_size: u64,
    #[serde(deserialize_with = "de_u64")]
    pub total_count: u64,
    #[serde(deserialize_with = "de_list")]
    pub secret_list: Vec<SecretSummary>,
}

// ------------------------------------------------------------------------------------------------
// CreateSecret / UpdateSecret / DeleteSecret / RestoreSecret

#[derive(Debug, Clone, Default)]
pub struct CreateSecretRequest {
    pub secret_name: String,
    pub version_id: String,
    pub secret_data: SecretString,
    pub secret_data_type: Option<String>,
    pub secret_type: Option<String>,
    pub encryption_key_id: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<Tag>,
    pub enable_automatic_rotation: Option<bool>,
    pub rotation_interval: Option<String>,
    /// Serialised as a JSON string.
    pub extended_config: Option<serde_json::Value>,
    pub policy: Option<String>,
    pub dkms_instance_id: Option<String>,
}

impl KmsAction for CreateSecretRequest {
    const ACTION: &'static str = "CreateSecret";
    type Response = CreateSecretResponse;
    fn params(&self) -> Result<Params, KmsError> {
        require("SecretName", &self.secret_name)?;
        require("VersionId", &self.version_id)?;
        check_secret_data(&self.secret_data)?;
        check_tags(&self.tags)?;
        let mut p = Params::new();
        p.set("SecretName", &self.secret_name)
            .set("VersionId", &self.version_id)
            .set_form("SecretData", self.secret_data.clone())
            .set_opt("SecretDataType", self.secret_data_type.as_ref())
            .set_opt("SecretType", self.secret_type.as_ref())
            .set_opt("EncryptionKeyId", self.encryption_key_id.as_ref())
            .set_opt("Description", self.description.as_ref())
            .set_bool("EnableAutomaticRotation", self.enable_automatic_rotation)
            .set_opt("RotationInterval", self.rotation_interval.as_ref())
            .set_opt("Policy", self.policy.as_ref())
            .set_opt("DKMSInstanceId", self.dkms_instance_id.as_ref());
        if !self.tags.is_empty() {
            p.set_json("Tags", &self.tags);
        }
        if let Some(config) = &self.extended_config {
            p.set_json("ExtendedConfig", config);
        }
        Ok(p)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateSecretResponse {
    pub request_id: Option<String>,
    pub arn: Option<String>,
    pub secret_name: String,
    pub version_id: String,
    pub secret_type: Option<String>,
    #[serde(rename = "DKMSInstanceId")]
    pub dkms_instance_id: Option<String>,
    pub automatic_rotation: Option<String>,
    pub extended_config: Option<String>,
    pub next_rotation_date: Option<String>,
    pub rotation_interval: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct UpdateSecretRequest {
    pub secret_name: String,
    pub description: Option<String>,
    /// Flattened as `ExtendedConfig.CustomData.<k>=<v>` (managed secret types only).
    pub custom_data: BTreeMap<String, String>,
}

impl KmsAction for UpdateSecretRequest {
    const ACTION: &'static str = "UpdateSecret";
    type Response = SecretNameResponse;
    fn params(&self) -> Result<Params, KmsError> {
        require("SecretName", &self.secret_name)?;
        let mut p = Params::new();
        p.set("SecretName", &self.secret_name)
            .set_opt("Description", self.description.as_ref());
        for (key, value) in &self.custom_data {
            p.set(format!("ExtendedConfig.CustomData.{key}"), value);
        }
        Ok(p)
    }
}

#[derive(Debug, Clone, Default)]
pub struct DeleteSecretRequest {
    pub secret_name: String,
    pub recovery_window_in_days: Option<u32>,
    pub force_delete_without_recovery: Option<bool>,
}

impl KmsAction for DeleteSecretRequest {
    const ACTION: &'static str = "DeleteSecret";
    type Response = DeleteSecretResponse;
    fn params(&self) -> Result<Params, KmsError> {
        require("SecretName", &self.secret_name)?;
        let mut p = Params::new();
        p.set("SecretName", &self.secret_name)
            .set_opt("RecoveryWindowInDays", self.recovery_window_in_days)
            .set_bool(
                "ForceDeleteWithoutRecovery",
                self.force_delete_without_recovery,
            );
        Ok(p)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeleteSecretResponse {
    pub request_id: Option<String>,
    pub secret_name: String,
    /// As sent (formats vary); see [`DeleteSecretResponse::planned_delete_at`].
    pub planned_delete_time: Option<String>,
}

impl DeleteSecretResponse {
    pub fn planned_delete_at(&self) -> Option<jiff::Timestamp> {
        self.planned_delete_time.as_deref().and_then(parse_time)
    }
}

#[derive(Debug, Clone, Default)]
pub struct RestoreSecretRequest {
    pub secret_name: String,
}

impl KmsAction for RestoreSecretRequest {
    const ACTION: &'static str = "RestoreSecret";
    type Response = SecretNameResponse;
    fn params(&self) -> Result<Params, KmsError> {
        require("SecretName", &self.secret_name)?;
        let mut p = Params::new();
        p.set("SecretName", &self.secret_name);
        Ok(p)
    }
}

// ------------------------------------------------------------------------------------------------
// GetRandomPassword

#[derive(Debug, Clone, Default)]
pub struct GetRandomPasswordRequest {
    pub password_length: Option<u32>,
    pub exclude_characters: Option<String>,
    pub exclude_lowercase: Option<bool>,
    pub exclude_uppercase: Option<bool>,
    pub exclude_numbers: Option<bool>,
    pub exclude_punctuation: Option<bool>,
    pub require_each_included_type: Option<bool>,
}

impl KmsAction for GetRandomPasswordRequest {
    const ACTION: &'static str = "GetRandomPassword";
    type Response = GetRandomPasswordResponse;
    fn params(&self) -> Result<Params, KmsError> {
        if self
            .password_length
            .is_some_and(|l| !(8..=128).contains(&l))
        {
            return Err(invalid("PasswordLength must be within 8..=128"));
        }
        let mut p = Params::new();
        p.set_opt("PasswordLength", self.password_length)
            .set_opt("ExcludeCharacters", self.exclude_characters.as_ref())
            .set_bool("ExcludeLowercase", self.exclude_lowercase)
            .set_bool("ExcludeUppercase", self.exclude_uppercase)
            .set_bool("ExcludeNumbers", self.exclude_numbers)
            .set_bool("ExcludePunctuation", self.exclude_punctuation)
            .set_bool("RequireEachIncludedType", self.require_each_included_type);
        Ok(p)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct GetRandomPasswordResponse {
    pub request_id: Option<String>,
    pub random_password: SecretString,
}

// ------------------------------------------------------------------------------------------------
// Tags

/// Which resource an old-style TagResource/UntagResource call addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagTarget {
    SecretName(String),
    KeyId(String),
    CertificateId(String),
}

impl TagTarget {
    fn set(&self, p: &mut Params) -> Result<(), KmsError> {
        let (name, value) = match self {
            Self::SecretName(v) => ("SecretName", v),
            Self::KeyId(v) => ("KeyId", v),
            Self::CertificateId(v) => ("CertificateId", v),
        };
        require(name, value)?;
        p.set(name, value);
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct TagResourceRequest {
    pub target: TagTarget,
    pub tags: Vec<Tag>,
}

impl KmsAction for TagResourceRequest {
    const ACTION: &'static str = "TagResource";
    type Response = EmptyResponse;
    fn params(&self) -> Result<Params, KmsError> {
        if self.tags.is_empty() {
            return Err(invalid("Tags is required"));
        }
        check_tags(&self.tags)?;
        let mut p = Params::new();
        self.target.set(&mut p)?;
        p.set_json("Tags", &self.tags);
        Ok(p)
    }
}

#[derive(Debug, Clone)]
pub struct UntagResourceRequest {
    pub target: TagTarget,
    /// Sent as a JSON array string (`["k1","k2"]`).
    pub tag_keys: Vec<String>,
}

impl KmsAction for UntagResourceRequest {
    const ACTION: &'static str = "UntagResource";
    type Response = EmptyResponse;
    fn params(&self) -> Result<Params, KmsError> {
        if self.tag_keys.is_empty() {
            return Err(invalid("TagKeys is required"));
        }
        let mut p = Params::new();
        self.target.set(&mut p)?;
        p.set_json("TagKeys", &self.tag_keys);
        Ok(p)
    }
}

/// New-style TagResources (flattened lists).
#[derive(Debug, Clone, Default)]
pub struct TagResourcesRequest {
    pub region_id: String,
    /// `key` or `secret`.
    pub resource_type: String,
    pub resource_ids: Vec<String>,
    pub tags: Vec<Tag>,
}

impl KmsAction for TagResourcesRequest {
    const ACTION: &'static str = "TagResources";
    type Response = EmptyResponse;
    fn params(&self) -> Result<Params, KmsError> {
        require("RegionId", &self.region_id)?;
        require("ResourceType", &self.resource_type)?;
        if self.resource_ids.is_empty() || self.resource_ids.len() > 50 {
            return Err(invalid("ResourceId must list 1 to 50 resources"));
        }
        if self.tags.is_empty() {
            return Err(invalid("Tag is required"));
        }
        check_tags(&self.tags)?;
        let mut p = Params::new();
        p.set("RegionId", &self.region_id)
            .set("ResourceType", &self.resource_type)
            .set_list("ResourceId", &self.resource_ids);
        for (i, tag) in self.tags.iter().enumerate() {
            p.set(format!("Tag.{}.Key", i + 1), &tag.tag_key)
                .set(format!("Tag.{}.Value", i + 1), &tag.tag_value);
        }
        Ok(p)
    }
}

/// New-style UntagResources (flattened lists).
#[derive(Debug, Clone, Default)]
pub struct UntagResourcesRequest {
    pub region_id: String,
    pub resource_type: String,
    pub resource_ids: Vec<String>,
    pub tag_keys: Vec<String>,
    /// Remove every tag (only without `tag_keys`).
    pub all: Option<bool>,
}

impl KmsAction for UntagResourcesRequest {
    const ACTION: &'static str = "UntagResources";
    type Response = EmptyResponse;
    fn params(&self) -> Result<Params, KmsError> {
        require("RegionId", &self.region_id)?;
        require("ResourceType", &self.resource_type)?;
        if self.resource_ids.is_empty() || self.resource_ids.len() > 50 {
            return Err(invalid("ResourceId must list 1 to 50 resources"));
        }
        if self.tag_keys.len() > 20 {
            return Err(invalid("at most 20 TagKey values"));
        }
        let mut p = Params::new();
        p.set("RegionId", &self.region_id)
            .set("ResourceType", &self.resource_type)
            .set_list("ResourceId", &self.resource_ids)
            .set_list("TagKey", &self.tag_keys)
            .set_bool("All", self.all);
        Ok(p)
    }
}

/// Responses that carry only `RequestId`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EmptyResponse {
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_secret_value_doc_example_parses() {
        let body = r#"{"SecretName":"secret001","VersionId":"00000000000000000000000000000001","SecretData":"dGVzdGRhdGEx",
 "SecretType":"Generic","SecretDataType":"binary","VersionStages":{"VersionStage":["ACSCurrent"]},
 "CreateTime":"2020-07-23T11:56:29Z","RequestId":"6a3e9c36-1150-4881-84d3-eb8672fcafad"}"#;
        let r: GetSecretValueResponse = serde_json::from_str(body).unwrap();
        assert_eq!(r.version_stages, vec!["ACSCurrent"]);
        assert!(r.is_binary());
        assert_eq!(r.value_bytes().unwrap().expose(), b"testdata1");
        assert!(!format!("{r:?}").contains("dGVzdGRhdGEx"));
        let bad = GetSecretValueResponse {
            secret_data: "not base64 canary!".into(),
            secret_data_type: Some("binary".into()),
            ..Default::default()
        };
        let err = bad.value_bytes().unwrap_err();
        assert!(!err.to_string().contains("canary"));
        let text = GetSecretValueResponse {
            secret_data: "plain".into(),
            ..Default::default()
        };
        assert_eq!(text.value_bytes().unwrap().expose(), b"plain");
    }

    #[test]
    fn list_wrappers_and_lenient_numbers() {
        let body = r#"{"SecretName":"s","PageNumber":"1","PageSize":20,"TotalCount":2,
          "VersionIds":{"VersionId":[{"VersionId":"v1","CreateTime":"t","VersionStages":{"VersionStage":["ACSPrevious"]}},
                                     {"VersionId":"v2","VersionStages":{"VersionStage":["ACSCurrent","Mine"]}}]}}"#;
        let r: ListSecretVersionIdsResponse = serde_json::from_str(body).unwrap();
        assert_eq!(r.page_number, 1);
        assert_eq!(r.version_ids.len(), 2);
        assert_eq!(r.version_ids[1].version_stages, vec!["ACSCurrent", "Mine"]);
        let body = r#"{"SecretList":{"Secret":[{"SecretName":"secret001","SecretType":"Generic","CreateTime":"2020-07-17T07:59:05Z","UpdateTime":"2020-07-17T07:59:05Z","Tags":{"Tag":[{"TagKey":"a","TagValue":"b"}]}}]},"RequestId":"x","PageNumber":1,"PageSize":2,"TotalCount":55}"#;
        let r: ListSecretsResponse = serde_json::from_str(body).unwrap();
        assert_eq!(r.total_count, 55);
        assert_eq!(r.secret_list[0].tags, vec![Tag::new("a", "b")]);
        let r: ListSecretsResponse =
            serde_json::from_str(r#"{"SecretList":{"Secret":[]}}"#).unwrap();
        assert!(r.secret_list.is_empty());
        let r: PutSecretValueResponse = serde_json::from_str(
            r#"{"SecretName":"s","VersionId":"v","VersionStages":["ACSCurrent"]}"#,
        )
        .unwrap();
        assert_eq!(r.version_stages, vec!["ACSCurrent"]);
        let r: DescribeSecretResponse = serde_json::from_str(
            r#"{"SecretName":"s","DKMSInstanceId":"kst-1","Tags":{"Tag":{"TagKey":"k","TagValue":"v"}}}"#,
        )
        .unwrap();
        assert_eq!(r.dkms_instance_id.as_deref(), Some("kst-1"));
        assert_eq!(r.tags, vec![Tag::new("k", "v")]);
        let r: BatchGetSecretValueResponse = serde_json::from_str(
            r#"{"SecretValues":[{"SecretName":"a","SecretData":"x"}],"Errors":[{"SecretName":"b","Code":"Forbidden.ResourceNotFound","HttpStatus":"404","Message":"m"}]}"#,
        )
        .unwrap();
        assert_eq!(r.secret_values[0].secret_name, "a");
        assert_eq!(r.errors[0].http_status, 404);
    }

    #[test]
    fn planned_delete_time_formats() {
        for t in [
            "2020-02-21T23:36:07.713703651+08:00",
            "2020-02-21T04:24:04.58616562Z",
            "2020-02-21T04:24:04Z",
        ] {
            let r = DeleteSecretResponse {
                planned_delete_time: Some(t.into()),
                ..Default::default()
            };
            assert!(r.planned_delete_at().is_some(), "{t}");
        }
    }

    #[test]
    fn request_parameters() {
        let p = PutSecretValueRequest {
            secret_name: "db".into(),
            version_id: "v2".into(),
            secret_data: "canary-123".into(),
            version_stages: Some(vec!["MyPendingLabel".into()]),
            ..Default::default()
        }
        .params()
        .unwrap();
        assert_eq!(p.query()["VersionStages"], r#"["MyPendingLabel"]"#);
        assert_eq!(p.form()["SecretData"].expose(), "canary-123");
        assert!(!p.query().contains_key("SecretData"));

        let p = ListSecretsRequest {
            filters: vec![SecretFilter {
                key: "SecretName".into(),
                values: vec!["a".into()],
            }],
            ..Default::default()
        }
        .params()
        .unwrap();
        assert_eq!(
            p.query()["Filters"],
            r#"[{"Key":"SecretName","Values":["a"]}]"#
        );

        let p = CreateSecretRequest {
            secret_name: "n".into(),
            version_id: "v1".into(),
            secret_data: "x".into(),
            tags: vec![Tag::new("k", "v")],
            ..Default::default()
        }
        .params()
        .unwrap();
        assert_eq!(p.query()["Tags"], r#"[{"TagKey":"k","TagValue":"v"}]"#);

        let p = TagResourcesRequest {
            region_id: "cn-hangzhou".into(),
            resource_type: "secret".into(),
            resource_ids: vec!["a".into(), "b".into()],
            tags: vec![Tag::new("k", "v")],
        }
        .params()
        .unwrap();
        assert_eq!(p.query()["ResourceId.2"], "b");
        assert_eq!(p.query()["Tag.1.Key"], "k");
        assert_eq!(p.query()["Tag.1.Value"], "v");

        let p = UpdateSecretRequest {
            secret_name: "n".into(),
            custom_data: [("DBName".to_string(), "app".to_string())].into(),
            ..Default::default()
        }
        .params()
        .unwrap();
        assert_eq!(p.query()["ExtendedConfig.CustomData.DBName"], "app");

        let p = UntagResourceRequest {
            target: TagTarget::SecretName("n".into()),
            tag_keys: vec!["a".into(), "b".into()],
        }
        .params()
        .unwrap();
        assert_eq!(p.query()["TagKeys"], r#"["a","b"]"#);
    }

    #[test]
    fn validation_errors_never_quote_values() {
        let big = "canary".repeat(6000);
        let err = PutSecretValueRequest {
            secret_name: "db".into(),
            version_id: "v2".into(),
            secret_data: big.as_str().into(),
            ..Default::default()
        }
        .params()
        .unwrap_err();
        assert_eq!(err.reason(), "InvalidParameter");
        assert!(!err.to_string().contains("canary"));
        let err = UpdateSecretVersionStageRequest {
            secret_name: "db".into(),
            version_stage: "ACSCurrent".into(),
            remove_from_version: Some("v1".into()),
            move_to_version: None,
        }
        .params()
        .unwrap_err();
        assert!(err.to_string().contains("MoveToVersion"));
        assert!(
            GetRandomPasswordRequest {
                password_length: Some(4),
                ..Default::default()
            }
            .params()
            .is_err()
        );
    }
}
