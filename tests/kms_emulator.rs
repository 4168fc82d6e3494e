//! The kmsync `KmsClient` against the in-process KMS emulator (127.0.0.1:0): every action the
//! client types, each in both signature styles (V3 ACS3-HMAC-SHA256 and classic RPC HMAC-SHA1),
//! asserting the Secrets Manager semantics of kms-api.md §3–§5 end to end: stage moves, version
//! listings, deletion windows, tags, password options, error codes and their `reason()`s, and
//! retries under injected throttling counted on the emulator side.

mod e2e_support;

use std::collections::BTreeMap;

use base64::Engine as _;
use e2e_support::{
    AK_ID, AK_SECRET, STYLES, client, client_with, config, count, count_all, fast_retry, start,
    static_key, style_name,
};
use kmsync::emulator::{FaultConfig, GroupLimit, RunningEmulator};
use kmsync::kms::actions::*;
use kmsync::kms::credentials::StaticProvider;
use kmsync::kms::{Credentials, KmsClient, KmsClientConfig, KmsError};

// ------------------------------------------------------------------------------------------------
// helpers

async fn create(c: &KmsClient, name: &str, data: &str) -> CreateSecretResponse {
    c.create_secret(&CreateSecretRequest {
        secret_name: name.into(),
        version_id: "v1".into(),
        secret_data: data.into(),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("CreateSecret {name}: {e}"))
}

fn put(name: &str, id: &str, data: &str, stages: Option<&[&str]>) -> PutSecretValueRequest {
    PutSecretValueRequest {
        secret_name: name.into(),
        version_id: id.into(),
        secret_data: data.into(),
        version_stages: stages.map(|s| s.iter().map(|x| x.to_string()).collect()),
        ..Default::default()
    }
}

async fn get(
    c: &KmsClient,
    name: &str,
    id: Option<&str>,
    stage: Option<&str>,
) -> Result<GetSecretValueResponse, KmsError> {
    c.get_secret_value(&GetSecretValueRequest {
        secret_name: name.into(),
        version_id: id.map(Into::into),
        version_stage: stage.map(Into::into),
        ..Default::default()
    })
    .await
}

fn stage_req(
    name: &str,
    stage: &str,
    remove_from: Option<&str>,
    move_to: Option<&str>,
) -> UpdateSecretVersionStageRequest {
    UpdateSecretVersionStageRequest {
        secret_name: name.into(),
        version_stage: stage.into(),
        remove_from_version: remove_from.map(Into::into),
        move_to_version: move_to.map(Into::into),
    }
}

/// Every version (deprecated included) with its sorted stages, as ListSecretVersionIds reports.
async fn versions(c: &KmsClient, name: &str) -> BTreeMap<String, Vec<String>> {
    let r = c
        .list_secret_version_ids(&ListSecretVersionIdsRequest {
            secret_name: name.into(),
            include_deprecated: Some(true),
            page_size: Some(100),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.secret_name, name);
    assert_eq!(r.total_count as usize, r.version_ids.len());
    r.version_ids
        .into_iter()
        .map(|v| {
            let mut stages = v.version_stages;
            stages.sort();
            (v.version_id, stages)
        })
        .collect()
}

fn vmap(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(id, stages)| {
            let mut s: Vec<String> = stages.iter().map(|x| x.to_string()).collect();
            s.sort();
            (id.to_string(), s)
        })
        .collect()
}

fn assert_api_error(err: &KmsError, reason: &str, code: &str, status: u16, ctx: &str) {
    assert_eq!(err.reason(), reason, "{ctx}: {err}");
    assert_eq!(err.code(), Some(code), "{ctx}: {err}");
    assert_eq!(err.http_status(), Some(status), "{ctx}: {err}");
    assert!(
        err.request_id().is_some(),
        "{ctx}: request id kept: {err:?}"
    );
}

/// A request refused by the client before sending (no emulator call).
fn assert_refused(err: &KmsError, ctx: &str) {
    assert!(
        matches!(err, KmsError::InvalidRequest(_)),
        "{ctx}: expected a client-side refusal, got {err:?}"
    );
    assert_eq!(err.reason(), "InvalidParameter", "{ctx}");
}

async fn describe_tags(c: &KmsClient, name: &str) -> BTreeMap<String, String> {
    c.describe_secret(&DescribeSecretRequest {
        secret_name: name.into(),
        fetch_tags: Some(true),
    })
    .await
    .unwrap()
    .tags
    .into_iter()
    .map(|t| (t.tag_key, t.tag_value))
    .collect()
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ------------------------------------------------------------------------------------------------
// CreateSecret / GetSecretValue / BatchGetSecretValue

#[tokio::test]
async fn create_secret_and_get_secret_value_by_stage_id_and_binary() {
    for style in STYLES {
        let s = style_name(style);
        let emu = start(config()).await;
        let c = client(&emu, style);
        // Every character class the name rule allows, and a value that needs careful encoding in
        // the form body (space, `*`, `~`, `&`, `=`, `+`, `%`, non-ASCII, newline).
        let name = "prod/db+main=1@app.e2e-x_y";
        let data = "p@ss w0rd~*&=+%/ é😀\nline2";
        let created = c
            .create_secret(&CreateSecretRequest {
                secret_name: name.into(),
                version_id: "v1".into(),
                secret_data: data.into(),
                description: Some("primary db, ünïcode & spaces".into()),
                tags: vec![Tag::new("team", "pay/ments"), Tag::new("env", "prod")],
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(created.secret_name, name);
        assert_eq!(created.version_id, "v1");
        assert_eq!(created.secret_type.as_deref(), Some("Generic"));
        let arn = format!("acs:kms:cn-hangzhou:1234567890123456:secret/{name}");
        assert_eq!(created.arn.as_deref(), Some(arn.as_str()));
        assert!(created.request_id.is_some());

        // ACSCurrent by default, by name and by ARN.
        for id in [name, arn.as_str()] {
            let cur = c
                .get_secret_value(&GetSecretValueRequest::current(id))
                .await
                .unwrap();
            assert_eq!(cur.secret_name, name, "{s}");
            assert_eq!(cur.secret_data.expose(), data, "{s}");
            assert_eq!(cur.version_id, "v1");
            assert_eq!(cur.version_stages, ["ACSCurrent"]);
            assert_eq!(cur.secret_data_type.as_deref(), Some("text"));
            assert_eq!(cur.secret_type.as_deref(), Some("Generic"));
            assert!(cur.create_time.as_deref().and_then(parse_time).is_some());
            assert!(!cur.is_binary());
            assert_eq!(cur.value_bytes().unwrap().expose(), data.as_bytes());
        }
        // By VersionId, by VersionStage, by both when they agree.
        for (id, stage) in [
            (Some("v1"), None),
            (None, Some("ACSCurrent")),
            (Some("v1"), Some("ACSCurrent")),
        ] {
            let v = get(&c, name, id, stage).await.unwrap();
            assert_eq!(v.version_id, "v1", "{s} {id:?} {stage:?}");
            assert_eq!(v.secret_data.expose(), data);
        }
        // Not found: unknown secret, version, stage, and a VersionId/VersionStage mismatch.
        for (n, id, stage) in [
            ("missing", None, None),
            (name, Some("v9"), None),
            (name, None, Some("ACSPrevious")),
            (name, Some("v1"), Some("ACSPrevious")),
        ] {
            let err = get(&c, n, id, stage).await.unwrap_err();
            assert_api_error(
                &err,
                "NotFound",
                "Forbidden.ResourceNotFound",
                404,
                &format!("{s} {n} {id:?} {stage:?}"),
            );
            assert!(err.is_not_found());
        }
        // DryRun: the emulator says it would have succeeded.
        let err = c
            .get_secret_value(&GetSecretValueRequest {
                dry_run: Some(true),
                ..GetSecretValueRequest::current(name)
            })
            .await
            .unwrap_err();
        assert_api_error(&err, "DryRunSucceeded", "DryRunOperationError", 412, s);
        // A second CreateSecret with the same name is a conflict and changes nothing.
        let err = c
            .create_secret(&CreateSecretRequest {
                secret_name: name.into(),
                version_id: "v1".into(),
                secret_data: "other".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_api_error(&err, "Conflict", "Rejected.ResourceExist", 409, s);
        let cur = get(&c, name, None, None).await.unwrap();
        assert_eq!(cur.secret_data.expose(), data);

        // Binary: the Base64 string is stored and returned verbatim; the client decodes it.
        let raw: Vec<u8> = (0u8..=255).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
        c.create_secret(&CreateSecretRequest {
            secret_name: "bin/cert".into(),
            version_id: "b1".into(),
            secret_data: b64.as_str().into(),
            secret_data_type: Some("binary".into()),
            ..Default::default()
        })
        .await
        .unwrap();
        let got = get(&c, "bin/cert", Some("b1"), None).await.unwrap();
        assert!(got.is_binary(), "{s}");
        assert_eq!(got.secret_data.expose(), b64);
        assert_eq!(got.value_bytes().unwrap().expose(), raw.as_slice());
        let raw2 = b"\x00\xffrotated\x01".to_vec();
        let b64_2 = base64::engine::general_purpose::STANDARD.encode(&raw2);
        c.put_secret_value(&PutSecretValueRequest {
            secret_data_type: Some("binary".into()),
            ..put("bin/cert", "b2", &b64_2, None)
        })
        .await
        .unwrap();
        let got = get(&c, "bin/cert", None, None).await.unwrap();
        assert_eq!(got.version_id, "b2");
        assert_eq!(got.value_bytes().unwrap().expose(), raw2.as_slice());
        assert_eq!(count(&emu, "CreateSecret", "Success"), 2, "{s}");
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn batch_get_secret_value_reports_values_and_per_secret_errors() {
    for style in STYLES {
        let s = style_name(style);
        let emu = start(config()).await;
        let c = client(&emu, style);
        create(&c, "batch/a", "alpha").await;
        create(&c, "batch/b", "beta-1").await;
        c.put_secret_value(&put("batch/b", "v2", "beta-2", None))
            .await
            .unwrap();
        let sel = |name: &str, id: Option<&str>, stage: Option<&str>| BatchSecretSelector {
            secret_name: name.into(),
            version_id: id.map(Into::into),
            version_stage: stage.map(Into::into),
            fetch_extended_config: None,
        };
        let r = c
            .batch_get_secret_value(&BatchGetSecretValueRequest {
                secrets: vec![
                    sel("batch/a", None, None),
                    sel("batch/b", None, Some("ACSPrevious")),
                    sel("batch/b", Some("v2"), None),
                    sel("batch/missing", None, None),
                ],
            })
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
        let got: Vec<(&str, &str, &str)> = r
            .secret_values
            .iter()
            .map(|v| {
                (
                    v.secret_name.as_str(),
                    v.version_id.as_str(),
                    v.secret_data.expose(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("batch/a", "v1", "alpha"),
                ("batch/b", "v1", "beta-1"),
                ("batch/b", "v2", "beta-2"),
            ],
            "{s}"
        );
        assert_eq!(r.secret_values[1].version_stages, ["ACSPrevious"]);
        assert_eq!(r.errors.len(), 1, "{s}");
        assert_eq!(r.errors[0].secret_name, "batch/missing");
        assert_eq!(r.errors[0].code, "Forbidden.ResourceNotFound");
        assert_eq!(r.errors[0].http_status, 404);
        // More than 20 selectors never leaves the client.
        let before = count_all(&emu, "BatchGetSecretValue");
        let err = c
            .batch_get_secret_value(&BatchGetSecretValueRequest {
                secrets: (0..21).map(|_| sel("batch/a", None, None)).collect(),
            })
            .await
            .unwrap_err();
        assert_refused(&err, s);
        assert_eq!(count_all(&emu, "BatchGetSecretValue"), before);
        emu.shutdown().await;
    }
}

// ------------------------------------------------------------------------------------------------
// The rotation walkthroughs of the seeds (000/001 "Rotate generic secrets")

#[tokio::test]
async fn single_call_rotation_walkthrough() {
    for style in STYLES {
        let s = style_name(style);
        let emu = start(config()).await;
        let c = client(&emu, style);
        // Prerequisite: the initial version, marked ACSCurrent.
        create(&c, "MyOAuthAppSecret", "initial-app-secret").await;
        assert_eq!(
            versions(&c, "MyOAuthAppSecret").await,
            vmap(&[("v1", &["ACSCurrent"])])
        );
        // aliyun kms PutSecretValue --SecretName MyOAuthAppSecret --SecretData sample-app-secret --VersionId v2
        let r = c
            .put_secret_value(&put("MyOAuthAppSecret", "v2", "sample-app-secret", None))
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(
            (r.secret_name.as_str(), r.version_id.as_str()),
            ("MyOAuthAppSecret", "v2")
        );
        assert_eq!(r.version_stages, ["ACSCurrent"], "{s}");
        // The application reads the new value; the old one is ACSPrevious.
        let cur = get(&c, "MyOAuthAppSecret", None, None).await.unwrap();
        assert_eq!(
            (cur.version_id.as_str(), cur.secret_data.expose()),
            ("v2", "sample-app-secret")
        );
        let prev = get(&c, "MyOAuthAppSecret", None, Some("ACSPrevious"))
            .await
            .unwrap();
        assert_eq!(
            (prev.version_id.as_str(), prev.secret_data.expose()),
            ("v1", "initial-app-secret")
        );
        assert_eq!(
            versions(&c, "MyOAuthAppSecret").await,
            vmap(&[("v1", &["ACSPrevious"]), ("v2", &["ACSCurrent"])]),
            "{s}"
        );
        // One more rotation: v1 loses its last label (deprecated), still readable by id.
        c.put_secret_value(&put("MyOAuthAppSecret", "v3", "third", None))
            .await
            .unwrap();
        assert_eq!(
            versions(&c, "MyOAuthAppSecret").await,
            vmap(&[
                ("v1", &[]),
                ("v2", &["ACSPrevious"]),
                ("v3", &["ACSCurrent"])
            ]),
            "{s}"
        );
        let old = get(&c, "MyOAuthAppSecret", Some("v1"), None).await.unwrap();
        assert!(old.version_stages.is_empty());
        assert_eq!(old.secret_data.expose(), "initial-app-secret");
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn multi_call_rotation_walkthrough() {
    for style in STYLES {
        let s = style_name(style);
        let emu = start(config()).await;
        let c = client(&emu, style);
        create(&c, "db_cred", r#"{"uname": "alice", "pwd": "old"}"#).await;
        c.put_secret_value(&put(
            "db_cred",
            "v1b",
            r#"{"uname": "alice", "pwd": "older"}"#,
            Some(&["ACSPrevious"]),
        ))
        .await
        .unwrap();
        // Step 1: aliyun kms GetRandomPassword --ExcludePunctuation true
        let pw = c
            .get_random_password(&GetRandomPasswordRequest {
                exclude_punctuation: Some(true),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
        let pw = pw.random_password.expose().to_string();
        assert_eq!(pw.len(), 32, "{s}");
        assert!(pw.chars().all(|ch| ch.is_ascii_alphanumeric()), "{s}");
        // Step 2: PutSecretValue ... --VersionId v2 --VersionStages '["MyPendingLabel"]'
        let new_value = format!(r#"{{"uname": "alice", "pwd": "{pw}"}}"#);
        let r = c
            .put_secret_value(&put("db_cred", "v2", &new_value, Some(&["MyPendingLabel"])))
            .await
            .unwrap();
        assert_eq!(r.version_stages, ["MyPendingLabel"], "{s}");
        // ACSCurrent and ACSPrevious are untouched: the application still reads v1.
        let before = versions(&c, "db_cred").await;
        assert_eq!(
            before,
            vmap(&[
                ("v1", &["ACSCurrent"]),
                ("v1b", &["ACSPrevious"]),
                ("v2", &["MyPendingLabel"]),
            ]),
            "{s}"
        );
        assert_eq!(
            get(&c, "db_cred", None, None).await.unwrap().version_id,
            "v1"
        );
        let pending = get(&c, "db_cred", None, Some("MyPendingLabel"))
            .await
            .unwrap();
        assert_eq!(pending.secret_data.expose(), new_value);
        // Step 4: UpdateSecretVersionStage --VersionStage ACSCurrent --MoveToVersion v2
        let r = c
            .update_secret_version_stage(&stage_req("db_cred", "ACSCurrent", None, Some("v2")))
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(r.secret_name, "db_cred");
        // Step 5: GetSecretValue returns v2; v1 became ACSPrevious (§9.1 default), v1b deprecated.
        let cur = get(&c, "db_cred", None, None).await.unwrap();
        assert_eq!(cur.version_id, "v2", "{s}");
        assert_eq!(cur.secret_data.expose(), new_value);
        let mut stages = cur.version_stages.clone();
        stages.sort();
        assert_eq!(stages, ["ACSCurrent", "MyPendingLabel"]);
        assert_eq!(
            versions(&c, "db_cred").await,
            vmap(&[
                ("v1", &["ACSPrevious"]),
                ("v1b", &[]),
                ("v2", &["ACSCurrent", "MyPendingLabel"]),
            ]),
            "{s}"
        );
        // Clean-up step of the walkthrough: drop the pending label from v2.
        c.update_secret_version_stage(&stage_req("db_cred", "MyPendingLabel", Some("v2"), None))
            .await
            .unwrap();
        assert_eq!(versions(&c, "db_cred").await["v2"], ["ACSCurrent"], "{s}");
        emu.shutdown().await;
    }
}

// ------------------------------------------------------------------------------------------------
// PutSecretValue / UpdateSecretVersionStage / ListSecretVersionIds

#[tokio::test]
async fn put_secret_value_promotion_explicit_stages_idempotency_and_conflict() {
    for style in STYLES {
        let s = style_name(style);
        let emu = start(config()).await;
        let c = client(&emu, style);
        create(&c, "put/s", "one").await;

        // Explicit ["ACSCurrent"] promotes like the default path: old current -> ACSPrevious.
        let r = c
            .put_secret_value(&put("put/s", "v2", "two", Some(&["ACSCurrent"])))
            .await
            .unwrap();
        assert_eq!(r.version_stages, ["ACSCurrent"]);
        assert_eq!(
            versions(&c, "put/s").await,
            vmap(&[("v1", &["ACSPrevious"]), ("v2", &["ACSCurrent"])]),
            "{s}"
        );
        // Custom labels only: current/previous untouched.
        c.put_secret_value(&put("put/s", "v3", "three", Some(&["Custom1", "Custom2"])))
            .await
            .unwrap();
        // A listed label that already points elsewhere moves to the new version.
        c.put_secret_value(&put("put/s", "v4", "four", Some(&["Custom1"])))
            .await
            .unwrap();
        let expected = vmap(&[
            ("v1", &["ACSPrevious"]),
            ("v2", &["ACSCurrent"]),
            ("v3", &["Custom2"]),
            ("v4", &["Custom1"]),
        ]);
        assert_eq!(versions(&c, "put/s").await, expected, "{s}");

        // Idempotent: same VersionId and data succeeds and changes nothing, even for a version
        // that the default path would otherwise promote.
        let r = c
            .put_secret_value(&put("put/s", "v4", "four", Some(&["Custom1"])))
            .await
            .unwrap();
        assert_eq!(r.version_stages, ["Custom1"]);
        let r = c
            .put_secret_value(&put("put/s", "v1", "one", None))
            .await
            .unwrap();
        assert_eq!(
            r.version_stages,
            ["ACSPrevious"],
            "{s}: no promotion on replay"
        );
        assert_eq!(versions(&c, "put/s").await, expected, "{s}");
        assert_eq!(get(&c, "put/s", None, None).await.unwrap().version_id, "v2");

        // Same VersionId, different data: Conflict, and the stored value is unchanged.
        let err = c
            .put_secret_value(&put("put/s", "v4", "FOUR-changed", None))
            .await
            .unwrap_err();
        assert_api_error(&err, "Conflict", "Rejected.ResourceExist", 409, s);
        assert!(!err.to_string().contains("FOUR-changed"));
        let v4 = get(&c, "put/s", Some("v4"), None).await.unwrap();
        assert_eq!(v4.secret_data.expose(), "four");
        assert_eq!(versions(&c, "put/s").await, expected, "{s}");

        // Missing secret.
        let err = c
            .put_secret_value(&put("put/missing", "v1", "x", None))
            .await
            .unwrap_err();
        assert_api_error(&err, "NotFound", "Forbidden.ResourceNotFound", 404, s);

        // At most 8 stage labels per secret (4 in use): 4 more fit, a 9th is refused and the
        // version is not created.
        c.put_secret_value(&put("put/s", "v5", "five", Some(&["L1", "L2", "L3", "L4"])))
            .await
            .unwrap();
        let err = c
            .put_secret_value(&put("put/s", "v6", "six", Some(&["L5"])))
            .await
            .unwrap_err();
        assert_api_error(&err, "InvalidParameter", "InvalidParameter", 400, s);
        let err = get(&c, "put/s", Some("v6"), None).await.unwrap_err();
        assert!(err.is_not_found(), "{s}: {err}");
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn update_secret_version_stage_add_remove_move() {
    for style in STYLES {
        let s = style_name(style);
        let emu = start(config()).await;
        let c = client(&emu, style);
        create(&c, "stage/s", "one").await;
        c.put_secret_value(&put("stage/s", "v2", "two", None))
            .await
            .unwrap();
        c.put_secret_value(&put("stage/s", "v3", "three", Some(&["Pending"])))
            .await
            .unwrap();
        let upd = |stage: &str, from: Option<&str>, to: Option<&str>| {
            let req = stage_req("stage/s", stage, from, to);
            let c = &c;
            async move { c.update_secret_version_stage(&req).await }
        };

        // Add (VersionStage + MoveToVersion).
        upd("Tested", None, Some("v3")).await.unwrap();
        assert_eq!(
            versions(&c, "stage/s").await,
            vmap(&[
                ("v1", &["ACSPrevious"]),
                ("v2", &["ACSCurrent"]),
                ("v3", &["Pending", "Tested"]),
            ]),
            "{s}"
        );
        // Move (all three).
        upd("Tested", Some("v3"), Some("v2")).await.unwrap();
        // Remove (VersionStage + RemoveFromVersion, custom stage).
        upd("Pending", Some("v3"), None).await.unwrap();
        assert_eq!(
            versions(&c, "stage/s").await,
            vmap(&[
                ("v1", &["ACSPrevious"]),
                ("v2", &["ACSCurrent", "Tested"]),
                ("v3", &[]),
            ]),
            "{s}"
        );
        // Move ACSCurrent to the deprecated v3: v2 becomes ACSPrevious, v1 loses it.
        upd("ACSCurrent", None, Some("v3")).await.unwrap();
        assert_eq!(
            versions(&c, "stage/s").await,
            vmap(&[
                ("v1", &[]),
                ("v2", &["ACSPrevious", "Tested"]),
                ("v3", &["ACSCurrent"]),
            ]),
            "{s}"
        );
        assert_eq!(
            get(&c, "stage/s", None, None)
                .await
                .unwrap()
                .secret_data
                .expose(),
            "three"
        );
        // Move ACSPrevious explicitly (all three) back to v1.
        upd("ACSPrevious", Some("v2"), Some("v1")).await.unwrap();
        assert_eq!(
            versions(&c, "stage/s").await,
            vmap(&[
                ("v1", &["ACSPrevious"]),
                ("v2", &["Tested"]),
                ("v3", &["ACSCurrent"]),
            ]),
            "{s}"
        );

        // Errors, none of which changes anything.
        let snapshot = versions(&c, "stage/s").await;
        let err = upd("Tested", Some("v3"), None).await.unwrap_err();
        assert_api_error(&err, "InvalidParameter", "InvalidParameter", 400, s);
        let err = upd("Tested", None, Some("v9")).await.unwrap_err();
        assert_api_error(&err, "NotFound", "Forbidden.ResourceNotFound", 404, s);
        let err = c
            .update_secret_version_stage(&stage_req("stage/none", "X", None, Some("v1")))
            .await
            .unwrap_err();
        assert_api_error(&err, "NotFound", "Forbidden.ResourceNotFound", 404, s);
        // Removing ACSCurrent without moving it is refused by the client before sending.
        let sent = count_all(&emu, "UpdateSecretVersionStage");
        let err = upd("ACSCurrent", Some("v3"), None).await.unwrap_err();
        assert_refused(&err, s);
        assert_eq!(count_all(&emu, "UpdateSecretVersionStage"), sent);
        assert_eq!(versions(&c, "stage/s").await, snapshot, "{s}");
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn list_secret_version_ids_deprecated_paging_and_roll_off() {
    for style in STYLES {
        let s = style_name(style);
        let emu = start(config()).await;
        let c = client(&emu, style);
        create(&c, "ver/s", "d1").await;
        for i in 2..=6 {
            c.put_secret_value(&put("ver/s", &format!("v{i}"), &format!("d{i}"), None))
                .await
                .unwrap();
        }
        let list = |deprecated: Option<bool>, page: Option<u32>, size: Option<u32>| {
            let req = ListSecretVersionIdsRequest {
                secret_name: "ver/s".into(),
                include_deprecated: deprecated,
                page_number: page,
                page_size: size,
            };
            let c = &c;
            async move { c.list_secret_version_ids(&req).await }
        };
        // Default: only labeled versions.
        let r = list(None, None, None).await.unwrap();
        assert_eq!(r.total_count, 2, "{s}");
        let ids: Vec<&str> = r
            .version_ids
            .iter()
            .map(|v| v.version_id.as_str())
            .collect();
        assert_eq!(ids, ["v5", "v6"], "{s}");
        assert_eq!((r.page_number, r.page_size), (1, 20));
        assert!(
            r.version_ids
                .iter()
                .all(|v| v.create_time.as_deref().and_then(parse_time).is_some())
        );
        let r = list(Some(false), None, None).await.unwrap();
        assert_eq!(r.total_count, 2);
        // IncludeDeprecated, two per page: three pages in creation order, then an empty page.
        let mut seen = Vec::new();
        for page in 1..=10u32 {
            let r = list(Some(true), Some(page), Some(2)).await.unwrap();
            assert_eq!(r.total_count, 6, "{s}");
            assert_eq!((r.page_number, r.page_size), (u64::from(page), 2));
            if r.version_ids.is_empty() {
                assert_eq!(page, 4, "{s}");
                break;
            }
            assert!(r.version_ids.len() <= 2);
            seen.extend(r.version_ids.into_iter().map(|v| v.version_id));
        }
        assert_eq!(seen, ["v1", "v2", "v3", "v4", "v5", "v6"], "{s}");
        // Page size above the emulator's maximum (100) is a server-side InvalidParameter.
        let err = list(Some(true), None, Some(101)).await.unwrap_err();
        assert_api_error(&err, "InvalidParameter", "InvalidParameter", 400, s);
        let err = c
            .list_secret_version_ids(&ListSecretVersionIdsRequest {
                secret_name: "ver/none".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{s}");

        // Roll-off: beyond 10 versions the earliest unlabeled ones disappear.
        for i in 7..=12 {
            c.put_secret_value(&put("ver/s", &format!("v{i}"), &format!("d{i}"), None))
                .await
                .unwrap();
        }
        let all = versions(&c, "ver/s").await;
        assert_eq!(all.len(), 10, "{s}: {all:?}");
        assert!(!all.contains_key("v1") && !all.contains_key("v2"), "{s}");
        assert_eq!(all["v12"], ["ACSCurrent"]);
        assert_eq!(all["v11"], ["ACSPrevious"]);
        assert!(
            get(&c, "ver/s", Some("v1"), None)
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert_eq!(
            get(&c, "ver/s", Some("v3"), None)
                .await
                .unwrap()
                .secret_data
                .expose(),
            "d3"
        );
        emu.shutdown().await;
    }
}

// ------------------------------------------------------------------------------------------------
// DescribeSecret / UpdateSecret / ListSecrets

/// Name, tags and description of a secret to create.
type SecretSpec = (
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<&'static str>,
);

#[tokio::test]
async fn describe_update_and_list_secrets_with_filters_and_paging() {
    for style in STYLES {
        let s = style_name(style);
        let emu = start(config()).await;
        let c = client(&emu, style);
        let spec: [SecretSpec; 5] = [
            ("app/a", &[("team", "x")], None),
            ("app/b", &[("team", "y")], Some("beta")),
            ("app/c", &[("env", "prod")], None),
            ("other/d", &[], None),
            ("other/e", &[], Some("beta")),
        ];
        for (name, t, description) in spec {
            c.create_secret(&CreateSecretRequest {
                secret_name: name.into(),
                version_id: "v1".into(),
                secret_data: "x".into(),
                description: description.map(Into::into),
                tags: t.iter().map(|(k, v)| Tag::new(*k, *v)).collect(),
                ..Default::default()
            })
            .await
            .unwrap();
        }

        // DescribeSecret, with and without tags.
        let d = c
            .describe_secret(&DescribeSecretRequest {
                secret_name: "app/b".into(),
                fetch_tags: None,
            })
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(d.secret_name, "app/b");
        assert_eq!(d.secret_type.as_deref(), Some("Generic"));
        assert_eq!(d.description.as_deref(), Some("beta"));
        assert_eq!(
            d.arn.as_deref(),
            Some("acs:kms:cn-hangzhou:1234567890123456:secret/app/b")
        );
        assert!(d.tags.is_empty(), "{s}: no tags without FetchTags");
        assert!(d.planned_delete_time.is_none());
        let created = d.create_time.as_deref().and_then(parse_time).unwrap();
        assert_eq!(describe_tags(&c, "app/b").await, tags(&[("team", "y")]));
        let err = c
            .describe_secret(&DescribeSecretRequest {
                secret_name: "app/none".into(),
                fetch_tags: Some(true),
            })
            .await
            .unwrap_err();
        assert_api_error(&err, "NotFound", "Forbidden.ResourceNotFound", 404, s);

        // UpdateSecret changes the description (spaces, non-ASCII) and nothing else.
        let r = c
            .update_secret(&UpdateSecretRequest {
                secret_name: "app/b".into(),
                description: Some("beta * ~ déjà vu".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(r.secret_name, "app/b");
        let d = c
            .describe_secret(&DescribeSecretRequest {
                secret_name: "app/b".into(),
                fetch_tags: Some(true),
            })
            .await
            .unwrap();
        assert_eq!(d.description.as_deref(), Some("beta * ~ déjà vu"), "{s}");
        assert!(d.update_time.as_deref().and_then(parse_time).unwrap() >= created);
        assert_eq!(d.tags, [Tag::new("team", "y")]);
        assert_eq!(
            get(&c, "app/b", None, None)
                .await
                .unwrap()
                .secret_data
                .expose(),
            "x"
        );
        let err = c
            .update_secret(&UpdateSecretRequest {
                secret_name: "app/none".into(),
                description: Some("d".into()),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{s}");

        // ListSecrets filters: values of one key ORed, keys ANDed, exact match.
        let names = |r: &ListSecretsResponse| -> Vec<String> {
            r.secret_list
                .iter()
                .map(|x| x.secret_name.clone())
                .collect()
        };
        let list = |filters: Vec<SecretFilter>| {
            let req = ListSecretsRequest {
                page_size: Some(100),
                filters,
                ..Default::default()
            };
            let c = &c;
            async move { c.list_secrets(&req).await }
        };
        let f = |key: &str, values: &[&str]| SecretFilter {
            key: key.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        for (filters, expected) in [
            (
                vec![f("SecretName", &["app/a", "other/d"])],
                vec!["app/a", "other/d"],
            ),
            (vec![f("TagKey", &["team"])], vec!["app/a", "app/b"]),
            (vec![f("TagValue", &["prod", "y"])], vec!["app/b", "app/c"]),
            (vec![f("Description", &["beta"])], vec!["other/e"]),
            (
                vec![f("SecretName", &["app/a", "app/b"]), f("TagValue", &["x"])],
                vec!["app/a"],
            ),
            (
                vec![f("SecretType", &["Generic"])],
                vec!["app/a", "app/b", "app/c", "other/d", "other/e"],
            ),
            (vec![f("SecretName", &["app"])], vec![]),
        ] {
            let r = list(filters.clone()).await.unwrap();
            assert_eq!(names(&r), expected, "{s}: {filters:?}");
            assert_eq!(r.total_count as usize, expected.len());
        }
        // FetchTags puts the tags in the list entries.
        let r = c
            .list_secrets(&ListSecretsRequest {
                fetch_tags: Some(true),
                filters: vec![f("SecretName", &["app/c"])],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(r.secret_list[0].tags, [Tag::new("env", "prod")], "{s}");
        assert_eq!(r.secret_list[0].secret_type.as_deref(), Some("Generic"));
        // Paging: default page size 10; two per page gives 2+2+1, then an empty page.
        let r = c
            .list_secrets(&ListSecretsRequest::default())
            .await
            .unwrap();
        assert_eq!(
            (r.page_number, r.page_size, r.total_count),
            (1, 10, 5),
            "{s}"
        );
        let mut seen = Vec::new();
        for page in 1..=10u32 {
            let r = c
                .list_secrets(&ListSecretsRequest {
                    page_number: Some(page),
                    page_size: Some(2),
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(r.total_count, 5);
            if r.secret_list.is_empty() {
                assert_eq!(page, 4, "{s}");
                break;
            }
            assert!(r.secret_list.iter().all(|x| x.tags.is_empty()));
            seen.extend(names(&r));
        }
        assert_eq!(
            seen,
            ["app/a", "app/b", "app/c", "other/d", "other/e"],
            "{s}"
        );
        // PageSize outside 1..=100 never leaves the client.
        let sent = count_all(&emu, "ListSecrets");
        let err = c
            .list_secrets(&ListSecretsRequest {
                page_size: Some(101),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_refused(&err, s);
        assert_eq!(count_all(&emu, "ListSecrets"), sent);
        emu.shutdown().await;
    }
}

// ------------------------------------------------------------------------------------------------
// DeleteSecret / RestoreSecret

async fn set_store_clock(emu: &RunningEmulator, offset_seconds: i64) {
    kmsync::kms::transport::install_crypto_provider();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http
        .put(format!("{}/admin/clock", emu.base_url()))
        .json(&serde_json::json!({ "offsetSeconds": offset_seconds }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "admin clock: {}", r.status());
}

#[tokio::test]
async fn delete_secret_with_recovery_window_restore_and_forced_delete() {
    for style in STYLES {
        let s = style_name(style);
        let emu = start(config()).await;
        let c = client(&emu, style);
        create(&c, "del/s", "value").await;
        let delete = |name: &str, days: Option<u32>, force: Option<bool>| {
            let req = DeleteSecretRequest {
                secret_name: name.into(),
                recovery_window_in_days: days,
                force_delete_without_recovery: force,
            };
            let c = &c;
            async move { c.delete_secret(&req).await }
        };

        // Recovery window outside 7..=30: refused, nothing scheduled.
        for days in [6, 31] {
            let err = delete("del/s", Some(days), None).await.unwrap_err();
            assert_api_error(&err, "InvalidParameter", "InvalidParameter", 400, s);
        }
        // Scheduled deletion, 7 days.
        let now = jiff::Timestamp::now();
        let r = delete("del/s", Some(7), None).await.unwrap();
        assert_eq!(r.secret_name, "del/s");
        let planned = r.planned_delete_at().expect("PlannedDeleteTime parses");
        let expected = now + jiff::SignedDuration::from_hours(7 * 24);
        assert!(
            (planned.as_second() - expected.as_second()).abs() <= 120,
            "{s}: planned {planned}, expected about {expected}"
        );
        // Pending deletion: Describe and List show it, reads and writes are refused.
        let d = c
            .describe_secret(&DescribeSecretRequest {
                secret_name: "del/s".into(),
                fetch_tags: None,
            })
            .await
            .unwrap();
        assert!(d.planned_delete_time.is_some(), "{s}");
        let l = c
            .list_secrets(&ListSecretsRequest::default())
            .await
            .unwrap();
        assert!(l.secret_list[0].planned_delete_time.is_some(), "{s}");
        let in_window = |err: KmsError, what: &str| {
            assert_api_error(
                &err,
                "PendingDeletion",
                "Rejected.ResourceInDeleteWindow",
                409,
                &format!("{s} {what}"),
            )
        };
        in_window(get(&c, "del/s", None, None).await.unwrap_err(), "get");
        in_window(
            c.put_secret_value(&put("del/s", "v2", "x", None))
                .await
                .unwrap_err(),
            "put",
        );
        in_window(
            c.update_secret(&UpdateSecretRequest {
                secret_name: "del/s".into(),
                description: Some("d".into()),
                ..Default::default()
            })
            .await
            .unwrap_err(),
            "update",
        );
        in_window(create_err(&c, "del/s").await, "create same name");
        in_window(
            delete("del/s", Some(8), None).await.unwrap_err(),
            "delete again",
        );
        // RestoreSecret brings it back with its value.
        let r = c
            .restore_secret(&RestoreSecretRequest {
                secret_name: "del/s".into(),
            })
            .await
            .unwrap();
        assert_eq!(r.secret_name, "del/s");
        assert_eq!(
            get(&c, "del/s", None, None)
                .await
                .unwrap()
                .secret_data
                .expose(),
            "value"
        );
        let err = c
            .restore_secret(&RestoreSecretRequest {
                secret_name: "del/s".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "InvalidParameter", "{s}: not scheduled");

        // Default window is 30 days; once the store clock passes it the secret is gone.
        let now = jiff::Timestamp::now();
        let r = delete("del/s", None, None).await.unwrap();
        let planned = r.planned_delete_at().unwrap();
        let expected = now + jiff::SignedDuration::from_hours(30 * 24);
        assert!(
            (planned.as_second() - expected.as_second()).abs() <= 120,
            "{s}"
        );
        set_store_clock(&emu, 31 * 86400).await;
        let err = c
            .describe_secret(&DescribeSecretRequest {
                secret_name: "del/s".into(),
                fetch_tags: None,
            })
            .await
            .unwrap_err();
        assert_api_error(&err, "NotFound", "Forbidden.ResourceNotFound", 404, s);
        set_store_clock(&emu, 0).await;

        // Forced deletion: immediate and final; the name is free again.
        create(&c, "del/f", "value").await;
        let r = delete("del/f", Some(7), Some(true)).await.unwrap();
        assert!(r.planned_delete_at().is_some(), "{s}");
        let err = c
            .restore_secret(&RestoreSecretRequest {
                secret_name: "del/f".into(),
            })
            .await
            .unwrap_err();
        assert_api_error(&err, "NotFound", "Forbidden.ResourceNotFound", 404, s);
        assert!(
            get(&c, "del/f", None, None)
                .await
                .unwrap_err()
                .is_not_found()
        );
        create(&c, "del/f", "again").await;
        assert_eq!(
            get(&c, "del/f", None, None)
                .await
                .unwrap()
                .secret_data
                .expose(),
            "again"
        );
        let err = delete("del/none", None, Some(true)).await.unwrap_err();
        assert!(err.is_not_found(), "{s}");
        emu.shutdown().await;
    }
}

async fn create_err(c: &KmsClient, name: &str) -> KmsError {
    c.create_secret(&CreateSecretRequest {
        secret_name: name.into(),
        version_id: "v1".into(),
        secret_data: "x".into(),
        ..Default::default()
    })
    .await
    .unwrap_err()
}

// ------------------------------------------------------------------------------------------------
// GetRandomPassword

async fn gen_pw(c: &KmsClient, req: GetRandomPasswordRequest) -> Result<String, KmsError> {
    c.get_random_password(&req)
        .await
        .map(|r| r.random_password.expose().to_string())
}

#[tokio::test]
async fn get_random_password_honours_its_options() {
    const PUNCT: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    for style in STYLES {
        let s = style_name(style);
        let emu = start(config()).await;
        let c = client(&emu, style);
        for _ in 0..10 {
            // Defaults: 32 characters, every class present (RequireEachIncludedType=true).
            let p = gen_pw(&c, GetRandomPasswordRequest::default())
                .await
                .unwrap();
            assert_eq!(p.chars().count(), 32, "{s}");
            assert!(p.chars().any(|ch| ch.is_ascii_lowercase()), "{s}: {p}");
            assert!(p.chars().any(|ch| ch.is_ascii_uppercase()));
            assert!(p.chars().any(|ch| ch.is_ascii_digit()));
            assert!(p.chars().any(|ch| PUNCT.contains(ch)));
            assert!(p.chars().all(|ch| ch.is_ascii_graphic()), "no space: {p:?}");
            // Length bounds.
            for len in [8, 128] {
                let p = gen_pw(
                    &c,
                    GetRandomPasswordRequest {
                        password_length: Some(len),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
                assert_eq!(p.len(), len as usize, "{s}");
            }
            // Exclusions: classes and single characters (including ones that need encoding).
            let p = gen_pw(
                &c,
                GetRandomPasswordRequest {
                    password_length: Some(64),
                    exclude_characters: Some("aeiouAEIOU01%&+=/ ".into()),
                    exclude_punctuation: Some(false),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            assert!(
                !p.chars().any(|ch| "aeiouAEIOU01%&+=/ ".contains(ch)),
                "{s}: {p}"
            );
            let p = gen_pw(
                &c,
                GetRandomPasswordRequest {
                    password_length: Some(40),
                    exclude_lowercase: Some(true),
                    exclude_uppercase: Some(true),
                    exclude_numbers: Some(true),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            assert!(p.chars().all(|ch| PUNCT.contains(ch)), "{s}: {p}");
            let p = gen_pw(
                &c,
                GetRandomPasswordRequest {
                    exclude_punctuation: Some(true),
                    exclude_numbers: Some(true),
                    require_each_included_type: Some(false),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            assert!(p.chars().all(|ch| ch.is_ascii_alphabetic()), "{s}: {p}");
        }
        // Nothing left to draw from: server-side InvalidParameter.
        let err = gen_pw(
            &c,
            GetRandomPasswordRequest {
                exclude_lowercase: Some(true),
                exclude_uppercase: Some(true),
                exclude_numbers: Some(true),
                exclude_punctuation: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert_api_error(&err, "InvalidParameter", "InvalidParameter", 400, s);
        // Length outside 8..=128 never leaves the client.
        let sent = count_all(&emu, "GetRandomPassword");
        let err = gen_pw(
            &c,
            GetRandomPasswordRequest {
                password_length: Some(7),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert_refused(&err, s);
        assert_eq!(count_all(&emu, "GetRandomPassword"), sent);
        emu.shutdown().await;
    }
}

// ------------------------------------------------------------------------------------------------
// TagResource / UntagResource / TagResources / UntagResources

#[tokio::test]
async fn tag_and_untag_old_and_new_style() {
    for style in STYLES {
        let s = style_name(style);
        let emu = start(config()).await;
        let c = client(&emu, style);
        create(&c, "tag/a", "x").await;
        create(&c, "tag/b", "x").await;
        let target = |n: &str| TagTarget::SecretName(n.into());

        // Old style: JSON `Tags`, JSON `TagKeys`.
        c.tag_resource(&TagResourceRequest {
            target: target("tag/a"),
            tags: vec![Tag::new("k1", "v1"), Tag::new("k2", "a/b\\c_d-e.f+g=h:i@j")],
        })
        .await
        .unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(
            describe_tags(&c, "tag/a").await,
            tags(&[("k1", "v1"), ("k2", "a/b\\c_d-e.f+g=h:i@j")]),
            "{s}"
        );
        c.tag_resource(&TagResourceRequest {
            target: target("tag/a"),
            tags: vec![Tag::new("k1", "v1b")],
        })
        .await
        .unwrap();
        c.untag_resource(&UntagResourceRequest {
            target: target("tag/a"),
            tag_keys: vec!["k2".into(), "absent".into()],
        })
        .await
        .unwrap();
        assert_eq!(
            describe_tags(&c, "tag/a").await,
            tags(&[("k1", "v1b")]),
            "{s}"
        );

        // New style: flattened ResourceId.N / Tag.N.Key / TagKey.N, across two secrets.
        c.tag_resources(&TagResourcesRequest {
            region_id: "cn-hangzhou".into(),
            resource_type: "secret".into(),
            resource_ids: vec!["tag/a".into(), "tag/b".into()],
            tags: vec![Tag::new("shared", "yes"), Tag::new("owner", "ops@x")],
        })
        .await
        .unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(
            describe_tags(&c, "tag/a").await,
            tags(&[("k1", "v1b"), ("owner", "ops@x"), ("shared", "yes")]),
            "{s}"
        );
        assert_eq!(
            describe_tags(&c, "tag/b").await,
            tags(&[("owner", "ops@x"), ("shared", "yes")])
        );
        // Tag filters of ListSecrets see the new tags.
        let r = c
            .list_secrets(&ListSecretsRequest {
                filters: vec![SecretFilter {
                    key: "TagKey".into(),
                    values: vec!["shared".into()],
                }],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(r.total_count, 2, "{s}");
        c.untag_resources(&UntagResourcesRequest {
            region_id: "cn-hangzhou".into(),
            resource_type: "secret".into(),
            resource_ids: vec!["tag/a".into(), "tag/b".into()],
            tag_keys: vec!["shared".into()],
            all: None,
        })
        .await
        .unwrap();
        assert_eq!(
            describe_tags(&c, "tag/a").await,
            tags(&[("k1", "v1b"), ("owner", "ops@x")]),
            "{s}"
        );
        assert_eq!(
            describe_tags(&c, "tag/b").await,
            tags(&[("owner", "ops@x")])
        );
        c.untag_resources(&UntagResourcesRequest {
            region_id: "cn-hangzhou".into(),
            resource_type: "secret".into(),
            resource_ids: vec!["tag/b".into()],
            tag_keys: vec![],
            all: Some(true),
        })
        .await
        .unwrap();
        assert!(describe_tags(&c, "tag/b").await.is_empty(), "{s}");
        assert_eq!(describe_tags(&c, "tag/a").await.len(), 2);

        // Errors.
        let err = c
            .tag_resource(&TagResourceRequest {
                target: target("tag/a"),
                tags: vec![Tag::new("aliyun-reserved", "v")],
            })
            .await
            .unwrap_err();
        assert_api_error(&err, "InvalidParameter", "InvalidParameter", 400, s);
        let err = c
            .tag_resource(&TagResourceRequest {
                target: target("tag/none"),
                tags: vec![Tag::new("k", "v")],
            })
            .await
            .unwrap_err();
        assert_api_error(&err, "NotFound", "Forbidden.ResourceNotFound", 404, s);
        let err = c
            .tag_resources(&TagResourcesRequest {
                region_id: "cn-hangzhou".into(),
                resource_type: "key".into(),
                resource_ids: vec!["tag/a".into()],
                tags: vec![Tag::new("k", "v")],
            })
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "InvalidParameter", "{s}: {err}");
        // 20 tags per secret: tag/a holds 2, 19 more exceed the cap on the server side.
        let many: Vec<Tag> = (0..19).map(|i| Tag::new(format!("m{i}"), "v")).collect();
        let err = c
            .tag_resource(&TagResourceRequest {
                target: target("tag/a"),
                tags: many.clone(),
            })
            .await
            .unwrap_err();
        assert_api_error(&err, "InvalidParameter", "InvalidParameter", 400, s);
        assert_eq!(describe_tags(&c, "tag/a").await.len(), 2, "{s}");
        c.tag_resource(&TagResourceRequest {
            target: target("tag/b"),
            tags: many,
        })
        .await
        .unwrap();
        assert_eq!(describe_tags(&c, "tag/b").await.len(), 19);
        emu.shutdown().await;
    }
}

// ------------------------------------------------------------------------------------------------
// Authentication failures

#[tokio::test]
async fn authentication_failures_have_invalid_credentials_reason() {
    for style in STYLES {
        let s = style_name(style);
        let emu = start(config()).await;
        create(&client(&emu, style), "auth/s", "x").await;

        // Unknown AccessKey id.
        let c = client_with(&emu, style, static_key("nobody", AK_SECRET));
        let err = get(&c, "auth/s", None, None).await.unwrap_err();
        assert_api_error(
            &err,
            "InvalidCredentials",
            "InvalidAccessKeyId.NotFound",
            404,
            s,
        );
        assert!(!err.is_retryable());
        assert_eq!(
            count(&emu, "GetSecretValue", "InvalidAccessKeyId.NotFound"),
            1
        );

        // Wrong secret: SignatureDoesNotMatch, and neither the secret value nor the server's
        // string-to-sign reaches the error text.
        let c = client_with(&emu, style, static_key(AK_ID, "wrong-secret"));
        let canary = "canary-value-Zq81 with spaces";
        let err = c
            .put_secret_value(&put("auth/s", "v2", canary, None))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "InvalidCredentials", "{s}: {err}");
        assert_eq!(err.code(), Some("SignatureDoesNotMatch"));
        let text = format!("{err} {err:?}");
        assert!(!text.contains("canary"), "{s}: {text}");
        assert!(!text.contains("wrong-secret"), "{s}: {text}");
        assert!(
            !text.to_ascii_lowercase().contains("string to sign"),
            "{text}"
        );

        // A security token the static key does not carry.
        let creds = Credentials::access_key(AK_ID, AK_SECRET).with_security_token("bogus");
        let c = client_with(&emu, style, std::sync::Arc::new(StaticProvider::new(creds)));
        let err = get(&c, "auth/s", None, None).await.unwrap_err();
        assert_eq!(err.reason(), "InvalidCredentials", "{s}: {err}");
        assert_eq!(
            err.code(),
            Some("InvalidSecurityToken.MismatchWithAccessKey")
        );

        // Nothing was written by the refused calls.
        let c = client(&emu, style);
        assert_eq!(
            versions(&c, "auth/s").await,
            vmap(&[("v1", &["ACSCurrent"])])
        );
        emu.shutdown().await;
    }
}

// ------------------------------------------------------------------------------------------------
// Throttling, injected faults and the client's bounded retries

#[tokio::test]
async fn throttling_is_retried_a_bounded_number_of_times() {
    for style in STYLES {
        let s = style_name(style);
        let emu = start(config()).await;
        let c = client(&emu, style); // fast_retry(4): at most 4 attempts per call
        create(&c, "thr/s", "x").await;

        // The getValue group gets one token that never refills in the test's lifetime.
        let mut faults = FaultConfig::default();
        faults.throttling.enabled = true;
        faults.throttling.groups.insert(
            "getValue".into(),
            GroupLimit {
                qps: 0.0001,
                burst: 1.0,
            },
        );
        emu.set_faults(faults);
        get(&c, "thr/s", None, None).await.unwrap();
        let retries_before = c.stats().retries.load(std::sync::atomic::Ordering::Relaxed);
        let err = get(&c, "thr/s", None, None).await.unwrap_err();
        assert_eq!(err.reason(), "Throttled", "{s}: {err}");
        assert_eq!(err.code(), Some("Rejected.Throttling"));
        assert_eq!(err.http_status(), Some(429));
        assert_eq!(count(&emu, "GetSecretValue", "Success"), 1, "{s}");
        assert_eq!(
            count(&emu, "GetSecretValue", "Rejected.Throttling"),
            4,
            "{s}: one attempt plus three retries"
        );
        assert_eq!(
            c.stats().retries.load(std::sync::atomic::Ordering::Relaxed) - retries_before,
            3
        );
        // Other QPS groups are unaffected.
        c.list_secrets(&ListSecretsRequest::default())
            .await
            .unwrap();

        // A client allowing 10 attempts is still bounded by its retry budget (10 tokens,
        // retries only while more than half remain): 5 attempts, then 1 for the next call.
        let mut cfg =
            KmsClientConfig::new(e2e_support::endpoint(&emu), static_key(AK_ID, AK_SECRET));
        cfg.signature = style;
        cfg.retry = fast_retry(10);
        let greedy = KmsClient::new(cfg).unwrap();
        let before = count(&emu, "GetSecretValue", "Rejected.Throttling");
        let err = get(&greedy, "thr/s", None, None).await.unwrap_err();
        assert_eq!(err.reason(), "Throttled");
        assert_eq!(
            count(&emu, "GetSecretValue", "Rejected.Throttling") - before,
            5,
            "{s}"
        );
        assert_eq!(
            greedy
                .stats()
                .budget_exhausted
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        let err = get(&greedy, "thr/s", None, None).await.unwrap_err();
        assert_eq!(err.reason(), "Throttled");
        assert_eq!(
            count(&emu, "GetSecretValue", "Rejected.Throttling") - before,
            6,
            "{s}"
        );

        // Lifting the limit: the same client succeeds again.
        emu.set_faults(FaultConfig::default());
        assert_eq!(get(&c, "thr/s", None, None).await.unwrap().version_id, "v1");
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn injected_faults_retryable_and_not() {
    for style in STYLES {
        let s = style_name(style);
        let emu = start(config()).await;
        let c = client(&emu, style);
        create(&c, "flt/s", "one").await;
        let fail = |action: &str, code: &str, status: u16| {
            serde_json::from_value::<FaultConfig>(serde_json::json!({
                "errors": [{"action": action, "rate": 1.0, "code": code, "status": status}]
            }))
            .unwrap()
        };

        // InternalFailure is retried (4 attempts) and then reported as Unavailable.
        emu.set_faults(fail("PutSecretValue", "InternalFailure", 500));
        let err = c
            .put_secret_value(&put("flt/s", "v2", "two", None))
            .await
            .unwrap_err();
        assert_api_error(&err, "Unavailable", "InternalFailure", 500, s);
        assert_eq!(count(&emu, "PutSecretValue", "InternalFailure"), 4, "{s}");
        // Faults are injected before the store runs: nothing was written, and the same request
        // succeeds once the fault is lifted.
        emu.set_faults(FaultConfig::default());
        c.put_secret_value(&put("flt/s", "v2", "two", None))
            .await
            .unwrap();
        assert_eq!(get(&c, "flt/s", None, None).await.unwrap().version_id, "v2");

        // ServiceUnavailableTemporary: also retried. (A fresh client: `c` has spent part of its
        // retry budget above, which would cut the retries short.)
        emu.set_faults(fail("DescribeSecret", "ServiceUnavailableTemporary", 503));
        let c = client(&emu, style);
        let err = c
            .describe_secret(&DescribeSecretRequest {
                secret_name: "flt/s".into(),
                fetch_tags: None,
            })
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "Unavailable", "{s}");
        assert_eq!(
            count(&emu, "DescribeSecret", "ServiceUnavailableTemporary"),
            4
        );

        // A permission error is final: exactly one attempt.
        emu.set_faults(fail("*", "Forbidden.NoPermission", 403));
        let err = get(&c, "flt/s", None, None).await.unwrap_err();
        assert_api_error(&err, "AccessDenied", "Forbidden.NoPermission", 403, s);
        assert_eq!(
            count(&emu, "GetSecretValue", "Forbidden.NoPermission"),
            1,
            "{s}"
        );
        emu.set_faults(FaultConfig::default());
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn every_typed_action_reached_the_emulator_in_both_styles() {
    // A compact pass over all sixteen typed actions per style, asserting each was served with
    // Success by the emulator: guards against an action silently dropping out of the suite.
    for style in STYLES {
        let s = style_name(style);
        let emu = start(config()).await;
        let c = client(&emu, style);
        create(&c, "all/s", "one").await;
        get(&c, "all/s", None, None).await.unwrap();
        c.batch_get_secret_value(&BatchGetSecretValueRequest {
            secrets: vec![BatchSecretSelector {
                secret_name: "all/s".into(),
                ..Default::default()
            }],
        })
        .await
        .unwrap();
        c.put_secret_value(&put("all/s", "v2", "two", Some(&["P"])))
            .await
            .unwrap();
        c.update_secret_version_stage(&stage_req("all/s", "ACSCurrent", None, Some("v2")))
            .await
            .unwrap();
        versions(&c, "all/s").await;
        describe_tags(&c, "all/s").await;
        c.list_secrets(&ListSecretsRequest::default())
            .await
            .unwrap();
        c.update_secret(&UpdateSecretRequest {
            secret_name: "all/s".into(),
            description: Some("d".into()),
            ..Default::default()
        })
        .await
        .unwrap();
        c.get_random_password(&GetRandomPasswordRequest::default())
            .await
            .unwrap();
        c.tag_resource(&TagResourceRequest {
            target: TagTarget::SecretName("all/s".into()),
            tags: vec![Tag::new("a", "b")],
        })
        .await
        .unwrap();
        c.untag_resource(&UntagResourceRequest {
            target: TagTarget::SecretName("all/s".into()),
            tag_keys: vec!["a".into()],
        })
        .await
        .unwrap();
        c.tag_resources(&TagResourcesRequest {
            region_id: "cn-hangzhou".into(),
            resource_type: "secret".into(),
            resource_ids: vec!["all/s".into()],
            tags: vec![Tag::new("a", "b")],
        })
        .await
        .unwrap();
        c.untag_resources(&UntagResourcesRequest {
            region_id: "cn-hangzhou".into(),
            resource_type: "secret".into(),
            resource_ids: vec!["all/s".into()],
            tag_keys: vec!["a".into()],
            all: None,
        })
        .await
        .unwrap();
        c.delete_secret(&DeleteSecretRequest {
            secret_name: "all/s".into(),
            recovery_window_in_days: Some(7),
            force_delete_without_recovery: None,
        })
        .await
        .unwrap();
        c.restore_secret(&RestoreSecretRequest {
            secret_name: "all/s".into(),
        })
        .await
        .unwrap();
        for action in [
            "CreateSecret",
            "GetSecretValue",
            "BatchGetSecretValue",
            "PutSecretValue",
            "UpdateSecretVersionStage",
            "ListSecretVersionIds",
            "DescribeSecret",
            "ListSecrets",
            "UpdateSecret",
            "DeleteSecret",
            "RestoreSecret",
            "GetRandomPassword",
            "TagResource",
            "UntagResource",
            "TagResources",
            "UntagResources",
        ] {
            assert!(count(&emu, action, "Success") >= 1, "{s}: {action}");
        }
        let calls = emu.calls();
        let errors: Vec<String> = calls["calls"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(a, outcomes)| {
                outcomes
                    .as_object()
                    .unwrap()
                    .keys()
                    .filter(|o| *o != "Success")
                    .map(move |o| format!("{a}:{o}"))
            })
            .collect();
        assert!(errors.is_empty(), "{s}: unexpected failures {errors:?}");
        emu.shutdown().await;
    }
}
