//! The emulator over TLS (loopback only): the kmsync `KmsClient` trusting only the emulator's
//! generated CA runs a single-call rotation in both signature styles; a client without that CA
//! is refused at the TLS layer; a certificate given as PEM files (made here with rcgen) works;
//! the admin paths still answer loopback peers; graceful shutdown closes the port; and the real
//! binary (`kmsync emulator --tls --tls-ca-out …`, `kmsync kms --ca-bundle …`) end to end.

mod e2e_support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use e2e_support::{AK_ID, AK_SECRET, STYLES, config, count, fast_retry, start, static_key};
use kmsync::emulator::{RunningEmulator, TlsConfig};
use kmsync::kms::actions::*;
use kmsync::kms::transport::{HttpOptions, http_client};
use kmsync::kms::{Endpoint, KmsClient, KmsClientConfig, SignatureStyle};

fn tls_client(emu: &RunningEmulator, style: SignatureStyle, ca: Option<&[u8]>) -> KmsClient {
    let endpoint = Endpoint::parse(&emu.base_url()).expect("https loopback endpoint");
    let mut cfg = KmsClientConfig::new(endpoint, static_key(AK_ID, AK_SECRET));
    cfg.signature = style;
    cfg.retry = fast_retry(1);
    cfg.http.ca_bundle_pem = ca.map(<[u8]>::to_vec);
    KmsClient::new(cfg).expect("client builds")
}

async fn generated() -> RunningEmulator {
    start(kmsync::emulator::EmulatorConfig {
        tls: Some(TlsConfig::Generated { ca_out: None }),
        ..config()
    })
    .await
}

/// The documented single-call rotation: v1 current, PutSecretValue v2, v2 current, v1 previous.
async fn single_call_rotation(c: &KmsClient, name: &str) {
    c.create_secret(&CreateSecretRequest {
        secret_name: name.into(),
        version_id: "v1".into(),
        secret_data: "initial-app-secret".into(),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("CreateSecret {name}: {e}"));
    let put = c
        .put_secret_value(&PutSecretValueRequest {
            secret_name: name.into(),
            version_id: "v2".into(),
            secret_data: "sample-app-secret".into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("PutSecretValue {name}: {e}"));
    assert_eq!(put.version_stages, ["ACSCurrent"], "{name}");
    let get = |stage: &'static str| async move {
        c.get_secret_value(&GetSecretValueRequest {
            secret_name: name.into(),
            version_stage: Some(stage.into()),
            ..Default::default()
        })
        .await
    };
    let cur = get("ACSCurrent").await.unwrap();
    assert_eq!(
        (cur.version_id.as_str(), cur.secret_data.expose()),
        ("v2", "sample-app-secret"),
        "{name}"
    );
    let prev = get("ACSPrevious").await.unwrap();
    assert_eq!(
        (prev.version_id.as_str(), prev.secret_data.expose()),
        ("v1", "initial-app-secret"),
        "{name}"
    );
}

#[tokio::test]
async fn plain_http_stays_the_default() {
    let emu = start(config()).await;
    assert!(emu.base_url().starts_with("http://127.0.0.1:"));
    assert!(!emu.is_tls());
    assert!(emu.ca_pem().is_none());
    emu.shutdown().await;
}

#[tokio::test]
async fn generated_cert_single_call_rotation_in_both_styles() {
    let emu = generated().await;
    let url = emu.base_url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let ca = emu.ca_pem().expect("generated CA").as_bytes().to_vec();
    assert!(String::from_utf8_lossy(&ca).starts_with("-----BEGIN CERTIFICATE-----"));
    for (style, name) in [(STYLES[0], "tls-v3"), (STYLES[1], "tls-rpc")] {
        single_call_rotation(&tls_client(&emu, style, Some(&ca)), name).await;
    }
    assert_eq!(count(&emu, "PutSecretValue", "Success"), 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_client_without_the_ca_is_refused_by_tls() {
    let emu = generated().await;
    for (ca, what) in [(None, "system roots"), (Some(other_ca_pem()), "another CA")] {
        let c = tls_client(&emu, SignatureStyle::V3, ca.as_deref().map(str::as_bytes));
        let err = c
            .get_random_password(&GetRandomPasswordRequest::default())
            .await
            .expect_err(what);
        assert_eq!(err.reason(), "InvalidCertificate", "{what}: {err}");
        assert!(
            !err.is_retryable(),
            "{what}: an untrusted certificate is not retried"
        );
        assert!(err.code().is_none(), "{what}: {err}");
    }
    // With retries allowed, an untrusted certificate still costs one attempt, not the budget.
    let endpoint = Endpoint::parse(&emu.base_url()).unwrap();
    let mut cfg = KmsClientConfig::new(endpoint, static_key(AK_ID, AK_SECRET));
    cfg.retry = fast_retry(4);
    let c = KmsClient::new(cfg).unwrap();
    c.get_random_password(&GetRandomPasswordRequest::default())
        .await
        .expect_err("untrusted");
    assert_eq!(
        c.stats()
            .attempts
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Nothing reached the KMS layer.
    assert_eq!(e2e_support::count_all(&emu, "GetRandomPassword"), 0);
    emu.shutdown().await;
}

/// A CA and a leaf for 127.0.0.1/localhost, made here with rcgen: (ca_pem, leaf_pem, key_pem).
fn make_cert() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "emulator_tls test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut leaf =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()]).unwrap();
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn other_ca_pem() -> String {
    make_cert().0
}

#[tokio::test]
async fn given_cert_files_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_cert();
    let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let emu = start(kmsync::emulator::EmulatorConfig {
        tls: Some(TlsConfig::Files {
            cert: cert_file,
            key: key_file,
        }),
        ..config()
    })
    .await;
    assert!(emu.base_url().starts_with("https://127.0.0.1:"));
    assert!(emu.ca_pem().is_none(), "no generated CA with given files");
    for (style, name) in [(STYLES[0], "files-v3"), (STYLES[1], "files-rpc")] {
        single_call_rotation(&tls_client(&emu, style, Some(ca.as_bytes())), name).await;
    }
    // The emulator's own generated CA (from another instance) does not vouch for this cert.
    let stranger = generated().await;
    let wrong_ca = stranger.ca_pem().unwrap().as_bytes().to_vec();
    let err = tls_client(&emu, SignatureStyle::V3, Some(&wrong_ca))
        .get_random_password(&GetRandomPasswordRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "InvalidCertificate", "{err}");
    stranger.shutdown().await;
    emu.shutdown().await;
}

#[tokio::test]
async fn admin_paths_answer_loopback_peers_and_shutdown_closes_the_port() {
    let emu = generated().await;
    let options = HttpOptions {
        ca_bundle_pem: Some(emu.ca_pem().unwrap().as_bytes().to_vec()),
        ..HttpOptions::default()
    };
    let http = http_client(&options, &emu.local_addr().to_string()).unwrap();
    let resp = http
        .get(format!("{}/admin/calls", emu.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "loopback peer over TLS");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["calls"].is_object(), "{body}");
    let addr = emu.local_addr();
    emu.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the port is closed once shutdown returns"
    );
}

#[tokio::test]
async fn ca_out_is_written_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca_out = dir.path().join("sub").join("ca.pem");
    std::fs::create_dir_all(ca_out.parent().unwrap()).unwrap();
    let emu = start(kmsync::emulator::EmulatorConfig {
        tls: Some(TlsConfig::Generated {
            ca_out: Some(ca_out.clone()),
        }),
        ..config()
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&ca_out).unwrap(),
        emu.ca_pem().unwrap()
    );
    emu.shutdown().await;
}

// ------------------------------------------------------------------------------------------------
// The real binary

const BIN: &str = env!("CARGO_BIN_EXE_kmsync");

/// A `kmsync emulator --tls` subprocess; stopped by its PID on drop (also when a test panics).
struct TlsEmulatorProcess {
    child: Option<Child>,
    url: String,
    ca_file: PathBuf,
    stdout: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsEmulatorProcess {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("url");
        let ca_file = dir.path().join("ca.pem");
        let stdout = dir.path().join("stdout");
        let log = dir.path().join("emulator.log");
        let child = Command::new(BIN)
            .env_clear()
            .env("RUST_LOG", "info")
            .args(["emulator", "--tls", "--tls-ca-out"])
            .arg(&ca_file)
            .arg("--port-file")
            .arg(&port_file)
            .arg("--access-key")
            .arg(format!("{AK_ID}:{AK_SECRET}"))
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("kmsync emulator starts");
        let mut emu = Self {
            child: Some(child),
            url: String::new(),
            ca_file,
            stdout,
            log,
            _dir: dir,
        };
        // Readiness: the port file appears once listening (the CA file is written before it).
        for _ in 0..500 {
            if let Ok(url) = std::fs::read_to_string(&port_file)
                && !url.trim().is_empty()
            {
                emu.url = url.trim().to_string();
                return emu;
            }
            if let Some(status) = emu.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("emulator exited early ({status}): {}", read(&emu.log));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("emulator wrote no port file: {}", read(&emu.log));
    }

    /// SIGTERM to our child's PID, then a bounded wait; SIGKILL (same PID) as a last resort.
    fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..500 {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for TlsEmulatorProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn kms_cli(url: &str, ca: &Path, action: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .env_clear()
        .args(["kms", "--endpoint", url, "--access-key-id", AK_ID])
        .args(["--access-key-secret", AK_SECRET, "--timeout-secs", "5"])
        .arg("--ca-bundle")
        .arg(ca)
        .args(action)
        .stdin(Stdio::null())
        .output()
        .expect("kmsync kms runs")
}

#[test]
fn binary_serves_https_and_the_kms_cli_trusts_its_ca() {
    let mut emu = TlsEmulatorProcess::start();
    assert!(emu.url.starts_with("https://127.0.0.1:"), "{}", emu.url);
    assert!(read(&emu.ca_file).starts_with("-----BEGIN CERTIFICATE-----"));

    let out = kms_cli(
        &emu.url,
        &emu.ca_file,
        &["GetRandomPassword", "--ExcludePunctuation", "true"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pw = json["RandomPassword"].as_str().unwrap();
    assert_eq!(pw.len(), 32, "{json}");
    assert!(pw.chars().all(|c| c.is_ascii_alphanumeric()));

    // (Without the CA the CLI fails too, but only after the client's ~10 s of transport retries;
    // the in-process test above covers that refusal.)

    let status = emu.stop().expect("emulator stops on SIGTERM");
    assert!(status.success(), "{status}: {}", read(&emu.log));
    let printed = read(&emu.stdout);
    assert!(
        printed.contains(&format!("listening on {}", emu.url)),
        "{printed}"
    );
}

#[test]
fn tls_flag_combinations_are_checked() {
    for args in [
        &["--tls-ca-out", "/nonexistent/ca.pem"][..],
        &["--tls-cert", "c.pem"],
        &["--tls", "--tls-cert", "c.pem", "--tls-key", "k.pem"],
    ] {
        let out = Command::new(BIN)
            .env_clear()
            .arg("emulator")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    // Unreadable given files: a start-up error, not a panic.
    let out = Command::new(BIN)
        .env_clear()
        .args(["emulator", "--tls-cert", "/nonexistent/c.pem"])
        .args(["--tls-key", "/nonexistent/k.pem"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/c.pem"), "{stderr}");
}
