//! The emulator's response mutations seen through the real KMS client: each kind at rate 1.0
//! spoils a `GetSecretValue` answer the way it says, other actions are left alone, and clearing
//! the rules restores correct answers.

use std::sync::Arc;

use kmsync::emulator::{AccessKey, Emulator, EmulatorConfig, FaultConfig, Mutation, MutationRule};
use kmsync::kms::actions::{
    CreateSecretRequest, GetSecretValueRequest, ListSecretVersionIdsRequest, PutSecretValueRequest,
};
use kmsync::kms::credentials::StaticProvider;
use kmsync::kms::{Credentials, Endpoint, KmsClient, KmsClientConfig, SecretString};

fn rule(kind: Mutation, key: Option<&str>) -> FaultConfig {
    FaultConfig {
        mutations: vec![MutationRule {
            action: "GetSecretValue".into(),
            rate: 1.0,
            kind,
            key: key.map(str::to_string),
        }],
        ..FaultConfig::default()
    }
}

#[tokio::test]
async fn each_mutation_spoils_get_secret_value_as_documented() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let emulator = Emulator::start(EmulatorConfig {
        access_keys: vec![AccessKey::parse("mid:msecret").unwrap()],
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator");
    let provider = Arc::new(StaticProvider::new(Credentials::access_key(
        "mid", "msecret",
    )));
    let endpoint = Endpoint::parse(&emulator.base_url()).unwrap();
    let kms = KmsClient::new(KmsClientConfig::new(endpoint, provider)).unwrap();
    kms.create_secret(&CreateSecretRequest {
        secret_name: "db".into(),
        version_id: "v1".into(),
        secret_data: SecretString::new(r#"{"pwd":"one"}"#),
        ..CreateSecretRequest::default()
    })
    .await
    .unwrap();
    kms.put_secret_value(&PutSecretValueRequest {
        secret_name: "db".into(),
        version_id: "v2".into(),
        secret_data: SecretString::new(r#"{"pwd":"two"}"#),
        secret_data_type: None,
        version_stages: None,
    })
    .await
    .unwrap();
    let get = || async {
        kms.get_secret_value(&GetSecretValueRequest::current("db"))
            .await
    };

    for (kind, reason) in [
        (Mutation::ConnectionReset, "Transport"),
        (Mutation::MalformedJson, "InvalidResponse"),
        (Mutation::TruncatedJson, "InvalidResponse"),
    ] {
        emulator.set_faults(rule(kind, None));
        let error = get().await.expect_err("spoiled answer");
        assert_eq!(error.reason(), reason, "{kind:?}: {error}");
    }

    emulator.set_faults(rule(Mutation::EmptySecretData, None));
    let answer = get().await.unwrap();
    assert_eq!(
        (answer.version_id.as_str(), answer.secret_data.expose()),
        ("v2", "")
    );

    emulator.set_faults(rule(Mutation::MissingKey, None));
    assert_eq!(get().await.unwrap().secret_data.expose(), "");
    emulator.set_faults(rule(Mutation::MissingKey, Some("VersionId")));
    assert_eq!(get().await.unwrap().version_id, "");

    emulator.set_faults(rule(Mutation::WrongDataType, None));
    let answer = get().await.unwrap();
    assert!(answer.is_binary());
    assert_eq!(
        answer.value_bytes().unwrap_err().reason(),
        "InvalidResponse"
    );

    emulator.set_faults(rule(Mutation::OlderVersion, None));
    let answer = get().await.unwrap();
    assert_eq!(
        (answer.version_id.as_str(), answer.secret_data.expose()),
        ("v1", r#"{"pwd":"one"}"#)
    );
    assert_eq!(answer.version_stages, ["ACSPrevious"]);

    // Other actions are not touched; clearing the rules restores the truth.
    let versions = kms
        .list_secret_version_ids(&ListSecretVersionIdsRequest {
            secret_name: "db".into(),
            include_deprecated: None,
            page_number: None,
            page_size: None,
        })
        .await
        .expect("ListSecretVersionIds is not mutated");
    assert_eq!(versions.version_ids.len(), 2);
    emulator.set_faults(FaultConfig::default());
    let answer = get().await.unwrap();
    assert_eq!(
        (answer.version_id.as_str(), answer.secret_data.expose()),
        ("v2", r#"{"pwd":"two"}"#)
    );
    emulator.shutdown().await;
}
