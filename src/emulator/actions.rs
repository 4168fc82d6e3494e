//! KMS action dispatch: turns the parameters of one authenticated call into a typed store
//! call and returns the JSON body (without `RequestId`), or the KMS error.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::error::KmsError;
use super::params::Params;
use super::password::{PasswordReq, random_password};
use super::store::{
    CreateSecretReq, GetSecretValueReq, ListSecretsReq, PutSecretValueReq, Store, UpdateStageReq,
};

/// The KMS API version every KMS action requires.
pub const KMS_VERSION: &str = "2016-01-20";

/// Actions that change the store (the state file is rewritten after each success).
pub fn is_mutating(action: &str) -> bool {
    matches!(
        action,
        "CreateSecret"
            | "PutSecretValue"
            | "UpdateSecretVersionStage"
            | "UpdateSecret"
            | "DeleteSecret"
            | "RestoreSecret"
            | "TagResource"
            | "UntagResource"
            | "TagResources"
            | "UntagResources"
    )
}

pub fn is_kms_action(action: &str) -> bool {
    is_mutating(action)
        || matches!(
            action,
            "GetSecretValue"
                | "BatchGetSecretValue"
                | "ListSecretVersionIds"
                | "DescribeSecret"
                | "ListSecrets"
                | "GetRandomPassword"
                | "ListTagResources"
                | "RotateSecret"
                | "UpdateSecretRotationPolicy"
                | "DescribeRegions"
                | "DescribeAccountKmsStatus"
        )
}

pub fn unknown_action() -> KmsError {
    KmsError::new(
        "InvalidAction.NotFound",
        404,
        "Specified api is not found, please check your url and method.",
    )
}

/// Runs one KMS action against the store.
pub fn dispatch(
    store: &mut Store,
    action: &str,
    p: &Params,
    now: Timestamp,
) -> Result<Value, KmsError> {
    match action {
        "CreateSecret" => store.create_secret(create_req(p)?, now),
        "GetSecretValue" if p.bool("DryRun", false)? => {
            store.get_secret_value(&get_req(p)?, now)?;
            Err(KmsError::new(
                "DryRunOperationError",
                412,
                "Request would have succeeded, but DryRun flag is set.",
            ))
        }
        "GetSecretValue" => store.get_secret_value(&get_req(p)?, now),
        "BatchGetSecretValue" => store.batch_get_secret_value(&batch_reqs(p)?, now),
        "PutSecretValue" => store.put_secret_value(put_req(p)?, now),
        "UpdateSecretVersionStage" => store.update_secret_version_stage(&stage_req(p)?, now),
        "ListSecretVersionIds" => store.list_secret_version_ids(
            p.req("SecretName")?,
            p.bool("IncludeDeprecated", false)?,
            p.int("PageNumber", 1)?,
            p.int("PageSize", 20)?,
            now,
        ),
        "DescribeSecret" => {
            store.describe_secret(p.req("SecretName")?, p.bool("FetchTags", false)?, now)
        }
        "ListSecrets" => store.list_secrets(&list_req(p)?, now),
        "UpdateSecret" => store.update_secret(
            p.req("SecretName")?,
            p.0.get("Description").map(String::as_str),
            now,
        ),
        "DeleteSecret" => store.delete_secret(
            p.req("SecretName")?,
            p.opt("RecoveryWindowInDays")
                .map(|_| p.int("RecoveryWindowInDays", 30))
                .transpose()?,
            p.bool("ForceDeleteWithoutRecovery", false)?,
            now,
        ),
        "RestoreSecret" => store.restore_secret(p.req("SecretName")?, now),
        "GetRandomPassword" => password(p),
        "TagResource" => store.tag_secret(p.req("SecretName")?, &json_tags(p, "Tags")?, now),
        "UntagResource" => store.untag_secret(p.req("SecretName")?, &tag_keys(p)?, false, now),
        "TagResources" => tag_resources(store, p, now),
        "UntagResources" => untag_resources(store, p, now),
        "ListTagResources" => {
            secret_resource_type(p)?;
            store.list_tag_resources(&p.list("ResourceId"), &flat_tags(p), now)
        }
        "RotateSecret" | "UpdateSecretRotationPolicy" => {
            store.describe_secret(p.req("SecretName")?, false, now)?;
            Err(KmsError::invalid_msg(format!(
                "{action} is not supported for this secret type in the emulator."
            )))
        }
        "DescribeRegions" => Ok(json!({"Regions": {"Region": [{"RegionId": store.region_id}]}})),
        "DescribeAccountKmsStatus" => Ok(json!({"AccountStatus": "Enabled"})),
        _ => Err(unknown_action()),
    }
}

fn create_req(p: &Params) -> Result<CreateSecretReq, KmsError> {
    Ok(CreateSecretReq {
        name: p.req("SecretName")?.to_string(),
        data: p.req("SecretData")?.to_string(),
        version_id: p.req("VersionId")?.to_string(),
        data_type: p.opt("SecretDataType").map(Into::into),
        secret_type: p.opt("SecretType").map(Into::into),
        description: p.opt("Description").map(Into::into),
        encryption_key_id: p.opt("EncryptionKeyId").map(Into::into),
        dkms_instance_id: p.opt("DKMSInstanceId").map(Into::into),
        tags: json_tags(p, "Tags")?,
    })
}

fn get_req(p: &Params) -> Result<GetSecretValueReq, KmsError> {
    Ok(GetSecretValueReq {
        name: p.req("SecretName")?.to_string(),
        version_id: p.opt("VersionId").map(Into::into),
        version_stage: p.opt("VersionStage").map(Into::into),
    })
}

fn batch_reqs(p: &Params) -> Result<Vec<GetSecretValueReq>, KmsError> {
    let list = p
        .json("SecretsList")?
        .ok_or_else(|| KmsError::missing("SecretsList"))?;
    let items = list
        .as_array()
        .ok_or_else(|| KmsError::invalid("SecretsList"))?;
    items
        .iter()
        .map(|item| {
            let field = |k: &str| {
                item.get(k)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            };
            Ok(GetSecretValueReq {
                name: field("SecretName")
                    .ok_or_else(|| KmsError::invalid("SecretsList"))?
                    .to_string(),
                version_id: field("VersionId").map(Into::into),
                version_stage: field("VersionStage").map(Into::into),
            })
        })
        .collect()
}

/// `["A","B"]`, or the response-shaped `{"VersionStage":["A"]}` (§3 PutSecretValue).
fn version_stages(p: &Params) -> Result<Option<Vec<String>>, KmsError> {
    let Some(value) = p.json("VersionStages")? else {
        return Ok(None);
    };
    let list = value.get("VersionStage").unwrap_or(&value);
    let stages: Option<Vec<String>> = list
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().map(Into::into)).collect())
        .unwrap_or(None);
    match stages {
        Some(s) if !s.is_empty() => Ok(Some(s)),
        _ => Err(KmsError::invalid("VersionStages")),
    }
}

fn put_req(p: &Params) -> Result<PutSecretValueReq, KmsError> {
    Ok(PutSecretValueReq {
        name: p.req("SecretName")?.to_string(),
        version_id: p.req("VersionId")?.to_string(),
        data: p.req("SecretData")?.to_string(),
        data_type: p.opt("SecretDataType").map(Into::into),
        stages: version_stages(p)?,
    })
}

fn stage_req(p: &Params) -> Result<UpdateStageReq, KmsError> {
    Ok(UpdateStageReq {
        name: p.req("SecretName")?.to_string(),
        stage: p.req("VersionStage")?.to_string(),
        remove_from: p.opt("RemoveFromVersion").map(Into::into),
        move_to: p.opt("MoveToVersion").map(Into::into),
    })
}

fn list_req(p: &Params) -> Result<ListSecretsReq, KmsError> {
    let mut filters = Vec::new();
    if let Some(value) = p.json("Filters")? {
        let items = value
            .as_array()
            .ok_or_else(|| KmsError::invalid("Filters"))?;
        for item in items {
            let key = item.get("Key").and_then(Value::as_str);
            let values = item.get("Values").and_then(Value::as_array);
            let (Some(key), Some(values)) = (key, values) else {
                return Err(KmsError::invalid("Filters"));
            };
            let values = values
                .iter()
                .filter_map(|v| v.as_str().map(Into::into))
                .collect();
            filters.push((key.to_string(), values));
        }
    }
    Ok(ListSecretsReq {
        page_number: p.int("PageNumber", 1)?,
        page_size: p.int("PageSize", 10)?,
        fetch_tags: p.bool("FetchTags", false)?,
        filters,
    })
}

fn password(p: &Params) -> Result<Value, KmsError> {
    let req = PasswordReq {
        length: p.int("PasswordLength", 32)?,
        exclude_characters: p.opt("ExcludeCharacters").unwrap_or_default().to_string(),
        exclude_lowercase: p.bool("ExcludeLowercase", false)?,
        exclude_uppercase: p.bool("ExcludeUppercase", false)?,
        exclude_numbers: p.bool("ExcludeNumbers", false)?,
        exclude_punctuation: p.bool("ExcludePunctuation", false)?,
        require_each_included_type: p.bool("RequireEachIncludedType", true)?,
    };
    Ok(json!({"RandomPassword": random_password(&req, &mut rand::rng())?}))
}

/// `Tags=[{"TagKey":"k","TagValue":"v"}]`.
fn json_tags(p: &Params, name: &str) -> Result<Vec<(String, String)>, KmsError> {
    let Some(value) = p.json(name)? else {
        return Ok(Vec::new());
    };
    let items = value.as_array().ok_or_else(|| KmsError::invalid(name))?;
    items
        .iter()
        .map(|t| {
            let k = t.get("TagKey").and_then(Value::as_str);
            let v = t.get("TagValue").and_then(Value::as_str);
            match (k, v) {
                (Some(k), Some(v)) => Ok((k.to_string(), v.to_string())),
                _ => Err(KmsError::invalid(name)),
            }
        })
        .collect()
}

/// `TagKeys` as a JSON array or comma-separated (§3 UntagResource).
fn tag_keys(p: &Params) -> Result<Vec<String>, KmsError> {
    let raw = p.req("TagKeys")?;
    if let Ok(Value::Array(items)) = serde_json::from_str::<Value>(raw) {
        return Ok(items
            .iter()
            .filter_map(|v| v.as_str().map(Into::into))
            .collect());
    }
    Ok(raw
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

/// `Tag.N.Key` / `Tag.N.Value`.
fn flat_tags(p: &Params) -> Vec<(String, String)> {
    (1..=20)
        .map_while(|i| {
            let k = p.opt(&format!("Tag.{i}.Key"))?;
            let v =
                p.0.get(&format!("Tag.{i}.Value"))
                    .cloned()
                    .unwrap_or_default();
            Some((k.to_string(), v))
        })
        .collect()
}

fn secret_resource_type(p: &Params) -> Result<(), KmsError> {
    match p.req("ResourceType")? {
        t if t.eq_ignore_ascii_case("secret") => Ok(()),
        _ => Err(KmsError::invalid("ResourceType")),
    }
}

fn resource_ids(p: &Params) -> Result<Vec<String>, KmsError> {
    secret_resource_type(p)?;
    let ids = p.list("ResourceId");
    if ids.is_empty() || ids.len() > 50 {
        return Err(KmsError::invalid("ResourceId"));
    }
    Ok(ids)
}

fn tag_resources(store: &mut Store, p: &Params, now: Timestamp) -> Result<Value, KmsError> {
    let tags = flat_tags(p);
    if tags.is_empty() {
        return Err(KmsError::missing("Tag.1.Key"));
    }
    for id in resource_ids(p)? {
        store.tag_secret(&id, &tags, now)?;
    }
    Ok(json!({}))
}

fn untag_resources(store: &mut Store, p: &Params, now: Timestamp) -> Result<Value, KmsError> {
    let keys = p.list("TagKey");
    let all = p.bool("All", false)?;
    for id in resource_ids(p)? {
        store.untag_secret(&id, &keys, all, now)?;
    }
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(store: &mut Store, action: &str, pairs: &[(&str, &str)]) -> Result<Value, KmsError> {
        dispatch(
            store,
            action,
            &Params::from_pairs(pairs.iter().copied()),
            Timestamp::now(),
        )
    }

    #[test]
    fn json_string_params() {
        let mut store = Store::new("cn-hangzhou", Default::default());
        let tags = r#"[{"TagKey":"team","TagValue":"a"}]"#;
        call(
            &mut store,
            "CreateSecret",
            &[
                ("SecretName", "s"),
                ("SecretData", "x"),
                ("VersionId", "v1"),
                ("Tags", tags),
            ],
        )
        .unwrap();
        call(
            &mut store,
            "PutSecretValue",
            &[
                ("SecretName", "s"),
                ("SecretData", "y"),
                ("VersionId", "v2"),
                ("VersionStages", r#"{"VersionStage":["P"]}"#),
            ],
        )
        .unwrap();
        let out = call(
            &mut store,
            "GetSecretValue",
            &[("SecretName", "s"), ("VersionStage", "P")],
        )
        .unwrap();
        assert_eq!(out["SecretData"], "y");
        let filters = r#"[{"Key":"TagKey","Values":["team"]}]"#;
        let out = call(&mut store, "ListSecrets", &[("Filters", filters)]).unwrap();
        assert_eq!(out["TotalCount"], 1);
        call(
            &mut store,
            "UntagResource",
            &[("SecretName", "s"), ("TagKeys", "team")],
        )
        .unwrap();
        call(
            &mut store,
            "TagResources",
            &[
                ("ResourceType", "secret"),
                ("ResourceId.1", "s"),
                ("Tag.1.Key", "k"),
                ("Tag.1.Value", "v"),
            ],
        )
        .unwrap();
        let out = call(
            &mut store,
            "ListTagResources",
            &[("ResourceType", "secret"), ("ResourceId.1", "s")],
        )
        .unwrap();
        assert_eq!(out["TagResources"]["TagResource"][0]["TagKey"], "k");
        let out = call(
            &mut store,
            "BatchGetSecretValue",
            &[("SecretsList", r#"[{"SecretName":"s"}]"#)],
        )
        .unwrap();
        assert_eq!(out["SecretValues"][0]["SecretData"], "x");
        assert_eq!(
            call(&mut store, "Nope", &[]).unwrap_err().code,
            "InvalidAction.NotFound"
        );
        let dry = call(
            &mut store,
            "GetSecretValue",
            &[("SecretName", "s"), ("DryRun", "true")],
        );
        assert_eq!(dry.unwrap_err().status, 412);
        assert_eq!(
            call(&mut store, "PutSecretValue", &[("SecretName", "s")])
                .unwrap_err()
                .code,
            "MissingParameter"
        );
        let pw = call(
            &mut store,
            "GetRandomPassword",
            &[("PasswordLength", "16"), ("ExcludePunctuation", "True")],
        )
        .unwrap();
        assert_eq!(pw["RandomPassword"].as_str().unwrap().len(), 16);
    }
}
