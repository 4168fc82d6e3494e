//! Rotation helpers shared by the rotation, leak and fault tests: KMS version listings, the
//! rotation condition, a recording loopback webhook, and the throw-away PostgreSQL of
//! `scripts/postgres.sh run`.

use std::sync::{Arc, Mutex};

use kmsync::kms::actions::ListSecretVersionIdsRequest;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use super::sync::{SyncEnv, wait_for};

/// `(version id, stages)` of every version, deprecated ones included.
pub async fn versions(env: &SyncEnv, name: &str) -> Vec<(String, Vec<String>)> {
    let request = ListSecretVersionIdsRequest {
        secret_name: name.into(),
        include_deprecated: Some(true),
        page_number: Some(1),
        page_size: Some(100),
    };
    let response = env
        .kms
        .list_secret_version_ids(&request)
        .await
        .expect("list versions");
    response
        .version_ids
        .into_iter()
        .map(|v| (v.version_id, v.version_stages))
        .collect()
}

pub fn current(versions: &[(String, Vec<String>)]) -> String {
    versions
        .iter()
        .find(|(_, s)| s.iter().any(|x| x == "ACSCurrent"))
        .expect("a current version")
        .0
        .clone()
}

pub fn stages_of<'a>(versions: &'a [(String, Vec<String>)], id: &str) -> &'a [String] {
    &versions.iter().find(|(v, _)| v == id).expect("version").1
}

pub async fn annotate(env: &SyncEnv, name: &str, key: &str, value: &str) {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    env.managed_secrets()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate");
}

pub fn rotation_condition(ms: &kmsync::crd::ManagedSecret) -> Option<(String, String, String)> {
    let c = ms
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Rotation")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

pub async fn wait_rotation(env: &SyncEnv, name: &str, reason: &str) -> kmsync::crd::ManagedSecret {
    wait_for(&format!("Rotation {reason} on {name}"), 90, || async {
        let ms = env.managed_secrets().get(name).await.ok()?;
        (rotation_condition(&ms)?.1 == reason).then_some(ms)
    })
    .await
}

/// Name of the Secret holding a test webhook's signing key (apply [`Hook::key_secret`]).
pub const WEBHOOK_KEY_SECRET: &str = "webhook-key";

/// A loopback webhook, the reference receiver: it checks each call's signature and timestamp
/// (five-minute window), answers 401 to a bad one (counted in `rejected`), and records the
/// good ones and accepts or refuses them.
pub struct Hook {
    pub url: String,
    pub calls: Arc<Mutex<Vec<Value>>>,
    pub rejected: Arc<std::sync::atomic::AtomicUsize>,
    pub key: String,
}

impl Hook {
    /// `rotation.register` for this webhook, signed with the key of [`WEBHOOK_KEY_SECRET`].
    pub fn register(&self) -> Value {
        json!({"webhook": {"url": self.url, "signingSecretRef": {"name": WEBHOOK_KEY_SECRET}}})
    }

    /// The `action` of each accepted call, in order.
    pub fn actions(&self) -> Vec<String> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter_map(|c| c["action"].as_str().map(String::from))
            .collect()
    }

    /// The Secret with the signing key, for the ManagedSecret's namespace.
    pub fn key_secret(&self) -> Value {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": WEBHOOK_KEY_SECRET},
            "stringData": {"key": self.key}})
    }
}

pub async fn hook(accept: bool) -> Hook {
    let (app, hook) = receiver("http", accept);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/rotate", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Hook { url, ..hook }
}

/// The same webhook over HTTPS, with a certificate for 127.0.0.1 from a CA of its own; returns
/// it and that CA (PEM), which a `caBundle` must name.
pub async fn https_hook(accept: bool) -> (Hook, String) {
    use kmsync::emulator::tls::{TlsConfig, TlsListener, load};
    let identity = load(&TlsConfig::Generated { ca_out: None }).expect("TLS identity");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/rotate", tcp.local_addr().unwrap());
    let listener = TlsListener::new(tcp, identity.config);
    let (app, hook) = receiver("https", accept);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (Hook { url, ..hook }, identity.ca_pem.expect("generated CA"))
}

/// The webhook over HTTPS demanding a client certificate from a client CA of its own (mutual
/// TLS); returns it, its server CA, and a client certificate and key that CA signed (PEM).
pub async fn mtls_hook(accept: bool) -> (Hook, String, (String, String)) {
    use kmsync::emulator::tls::{TlsListener, generate_ca_and_leaf};
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (server_ca, leaf, leaf_key) = generate_ca_and_leaf(&["127.0.0.1"]).expect("server cert");
    let (client_ca, client_cert, client_key) = client_certificate();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(client_ca.as_bytes()) {
        roots
            .add(certificate.expect("client CA"))
            .expect("add client CA");
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("client verifier");
    let chain = CertificateDer::pem_slice_iter(leaf.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("server chain");
    let key = PrivateKeyDer::from_pem_slice(leaf_key.as_bytes()).expect("server key");
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/rotate", tcp.local_addr().unwrap());
    let listener = TlsListener::new(tcp, Arc::new(config));
    let (app, hook) = receiver("https", accept);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (Hook { url, ..hook }, server_ca, (client_cert, client_key))
}

/// A client CA and a client certificate (clientAuth) it signed: `(ca, certificate, key)` PEM.
fn client_certificate() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "webhook client CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, "kmsync");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let certificate = params.signed_by(&key, &ca).unwrap();
    (ca.pem(), certificate.pem(), key.serialize_pem())
}

/// The receiver's router and its shared state (the URL is filled in by the caller).
fn receiver(scheme: &str, accept: bool) -> (axum::Router, Hook) {
    use kmsync::kms::SecretBytes;
    use kmsync::rotation::webhook_signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER, verify};
    let hook = Hook {
        url: format!("{scheme}://"),
        calls: Arc::default(),
        rejected: Arc::default(),
        key: format!("hook-key-{}", uuid::Uuid::new_v4().simple()),
    };
    let (seen, rejected) = (hook.calls.clone(), hook.rejected.clone());
    let key = SecretBytes::new(hook.key.clone().into_bytes());
    let app = axum::Router::new().route(
        "/rotate",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (seen, rejected, key) = (seen.clone(), rejected.clone(), key.clone());
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    let timestamp = header(TIMESTAMP_HEADER).parse::<i64>().unwrap_or_default();
                    let now = jiff::Timestamp::now().as_second();
                    if !verify(&key, timestamp, &body, &header(SIGNATURE_HEADER), now, 300) {
                        rejected.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        return axum::http::StatusCode::UNAUTHORIZED;
                    }
                    seen.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap_or_default());
                    if accept {
                        axum::http::StatusCode::OK
                    } else {
                        axum::http::StatusCode::FORBIDDEN
                    }
                }
            },
        ),
    );
    (app, hook)
}

/// A login role in the test database.
pub async fn create_role(role: &str, password: &str) {
    let (host, port, admin, admin_password) = pg_env();
    let config =
        format!("host={host} port={port} user={admin} password={admin_password} dbname=postgres");
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'"
        ))
        .await
        .unwrap();
}

/// What a Staged rotation through PostgreSQL starts from: the login role `role` with password
/// `first`, the admin login Secret `pg-admin` in the test namespace, and KMS secret `kms_name`
/// v1 holding `{"uname": role, "pwd": first}`. Returns the matching `register` block.
pub async fn postgres_rotation_start(
    env: &SyncEnv,
    kms_name: &str,
    role: &str,
    first: &str,
) -> Value {
    let (host, port, admin, admin_password) = pg_env();
    create_role(role, first).await;
    env.apply(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pg-admin"},
        "stringData": {"username": admin, "password": admin_password}}),
    )
    .await;
    env.create_kms_secret(
        kms_name,
        "v1",
        &format!(r#"{{"uname":"{role}","pwd":"{first}"}}"#),
    )
    .await;
    json!({"postgres": {"host": host, "port": port, "sslMode": "disable", "adminSecretRef": {"name": "pg-admin"}}})
}

/// Admin connection settings of the test database (`scripts/postgres.sh run …` exports them).
pub fn pg_env() -> (String, u16, String, String) {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run through `make test` (scripts/postgres.sh run …)")
        })
    };
    (
        var("PGHOST"),
        var("PGPORT").parse().unwrap(),
        var("KMSYNC_PG_ADMIN_USER"),
        var("KMSYNC_PG_ADMIN_PASSWORD"),
    )
}

pub async fn pg_login(user: &str, password: &str) -> Result<(), tokio_postgres::Error> {
    let (host, port, _, _) = pg_env();
    let config = format!(
        "host={host} port={port} user={user} password={password} dbname=postgres connect_timeout=5"
    );
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls).await?;
    let task = tokio::spawn(connection);
    client.simple_query("SELECT 1").await?;
    drop(client);
    let _ = task.await;
    Ok(())
}
