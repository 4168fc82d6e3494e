//! Shared helpers of the client-against-emulator tests (`kms_emulator*`): an in-process emulator
//! on 127.0.0.1:0 with one static AccessKey, kmsync `KmsClient`s in either signature style, and
//! readers for the emulator's call counters.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use kmsync::emulator::{AccessKey, Emulator, EmulatorConfig, RunningEmulator};
use kmsync::kms::credentials::StaticProvider;
use kmsync::kms::{
    CredentialProvider, Credentials, Endpoint, KmsClient, KmsClientConfig, RetryPolicy,
    SignatureStyle,
};

pub const AK_ID: &str = "e2e-access-key";
pub const AK_SECRET: &str = "e2e-access-secret";

/// Both signature styles the client can send; every action is tested in each.
pub const STYLES: [SignatureStyle; 2] = [SignatureStyle::V3, SignatureStyle::Rpc];

/// A config with the static key `AK_ID:AK_SECRET` and all defaults (loopback, random port).
pub fn config() -> EmulatorConfig {
    EmulatorConfig {
        access_keys: vec![AccessKey {
            id: AK_ID.into(),
            secret: AK_SECRET.into(),
            security_token: None,
        }],
        ..EmulatorConfig::default()
    }
}

pub async fn start(config: EmulatorConfig) -> RunningEmulator {
    let emu = Emulator::start(config).await.expect("emulator starts");
    assert!(emu.local_addr().ip().is_loopback());
    emu
}

pub fn endpoint(emu: &RunningEmulator) -> Endpoint {
    Endpoint::parse(&emu.base_url()).expect("loopback http endpoint is accepted")
}

pub fn static_key(id: &str, secret: &str) -> Arc<dyn CredentialProvider> {
    Arc::new(StaticProvider::new(Credentials::access_key(id, secret)))
}

/// Retries like the default policy but with millisecond backoff, so retry tests stay fast.
pub fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_retry_after: Duration::from_millis(5),
    }
}

pub fn client_with(
    emu: &RunningEmulator,
    style: SignatureStyle,
    credentials: Arc<dyn CredentialProvider>,
) -> KmsClient {
    let mut cfg = KmsClientConfig::new(endpoint(emu), credentials);
    cfg.signature = style;
    cfg.retry = fast_retry(4);
    KmsClient::new(cfg).expect("client builds")
}

/// A client signing with the emulator's static key.
pub fn client(emu: &RunningEmulator, style: SignatureStyle) -> KmsClient {
    client_with(emu, style, static_key(AK_ID, AK_SECRET))
}

/// How many calls of `action` ended with `outcome` (`Success` or an error code).
pub fn count(emu: &RunningEmulator, action: &str, outcome: &str) -> u64 {
    emu.calls()["calls"][action][outcome].as_u64().unwrap_or(0)
}

/// All calls of `action`, whatever the outcome.
pub fn count_all(emu: &RunningEmulator, action: &str) -> u64 {
    emu.calls()["calls"][action]
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0)
}

/// A label for assertion messages.
pub fn style_name(style: SignatureStyle) -> &'static str {
    match style {
        SignatureStyle::V3 => "V3",
        SignatureStyle::Rpc => "RPC",
    }
}
