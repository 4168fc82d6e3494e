//! The real `kmsync` binary on both sides: `kmsync emulator` as a subprocess (loopback, random
//! port announced through `--port-file`, stopped by its PID), and the rotation walkthroughs of
//! the seeds run through `sh` exactly as documented, with only `aliyun kms` replaced by
//! `kmsync kms --endpoint … --access-key-id … --access-key-secret …`.
//!
//! The commands are those of the current (2026) edition of "Rotate generic secrets"
//! (`seeds/001_*.txt`). The 2021 editions (`seeds/000_*`, `seeds/002_*`) miss a line-continuation
//! backslash after `--SecretName …` and, in the multi-call PutSecretValue, a closing `\"`, so they
//! are not valid shell as printed.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_kmsync");
const AK_ID: &str = "cli-e2e-key";
const AK_SECRET: &str = "cli-e2e-secret-Xy7";

// ------------------------------------------------------------------------------------------------
// The seeds' commands, verbatim.

/// Single-call rotation, step 2.
const SINGLE_CALL_PUT: &str = r##"aliyun kms PutSecretValue \
  --SecretName MyOAuthAppSecret \
  --SecretData sample-app-secret \
  --VersionId v2"##;

/// Multi-call rotation, step 1.
const GET_RANDOM_PASSWORD: &str = r##"aliyun kms GetRandomPassword --ExcludePunctuation true"##;

/// Multi-call rotation, step 2.
const PUT_PENDING: &str = r##"aliyun kms PutSecretValue \
    --SecretName db_cred \
    --SecretData "{\"uname\": \"alice\", \"pwd\": \"v2GwsgcuNylyYw9JGJNE5yBViGSiZ****\"}" \
    --VersionId v2 \
    --VersionStages "[\"MyPendingLabel\"]""##;

/// Multi-call rotation, step 4.
const PROMOTE: &str = r##"aliyun kms UpdateSecretVersionStage \
    --SecretName db_cred \
    --VersionStage ACSCurrent \
    --MoveToVersion v2"##;

/// The value step 2 stores, as the shell passes it.
const DB_CRED_V2: &str = r#"{"uname": "alice", "pwd": "v2GwsgcuNylyYw9JGJNE5yBViGSiZ****"}"#;

// ------------------------------------------------------------------------------------------------
// The emulator subprocess

/// A `kmsync emulator` subprocess; stopped by PID on drop (also when a test panics).
struct EmulatorProcess {
    child: Option<Child>,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl EmulatorProcess {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("url");
        let log = dir.path().join("emulator.log");
        let child = Command::new(BIN)
            .env_clear()
            .env("RUST_LOG", "info")
            .arg("emulator")
            .arg("--port-file")
            .arg(&port_file)
            .arg("--access-key")
            .arg(format!("{AK_ID}:{AK_SECRET}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("kmsync emulator starts");
        let mut emulator = Self {
            child: Some(child),
            url: String::new(),
            log,
            _dir: dir,
        };
        // Readiness: the port file appears once the listener is bound (bounded wait).
        for _ in 0..500 {
            if let Ok(url) = std::fs::read_to_string(&port_file)
                && !url.trim().is_empty()
            {
                emulator.url = url.trim().to_string();
                assert!(
                    emulator.url.starts_with("http://127.0.0.1:"),
                    "{}",
                    emulator.url
                );
                return emulator;
            }
            let exited = emulator.child.as_mut().and_then(|c| c.try_wait().unwrap());
            if let Some(status) = exited {
                panic!("emulator exited early ({status}): {}", emulator.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("emulator wrote no port file: {}", emulator.log_text());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

// ------------------------------------------------------------------------------------------------
// Running documented commands

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> serde_json::Value {
        assert_eq!(self.code, 0, "stderr: {}", self.stderr);
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

/// `aliyun kms …` → `kmsync kms --endpoint … --access-key-id … --access-key-secret … …`.
fn localize(command: &str) -> String {
    assert!(command.starts_with("aliyun kms "), "{command}");
    command.replacen(
        "aliyun kms",
        r#""$KMSYNC" kms --endpoint "$EP" --access-key-id "$AK" --access-key-secret "$SK" --signature "$SIG""#,
        1,
    )
}

/// Runs one documented command through `sh`, signing with `secret`.
fn sh_with(emu: &EmulatorProcess, signature: &str, secret: &str, command: &str) -> Run {
    let output = Command::new("sh")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("KMSYNC", BIN)
        .env("EP", &emu.url)
        .env("AK", AK_ID)
        .env("SK", secret)
        .env("SIG", signature)
        .arg("-c")
        .arg(localize(command))
        .stdin(Stdio::null())
        .output()
        .expect("sh runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn sh(emu: &EmulatorProcess, signature: &str, command: &str) -> Run {
    sh_with(emu, signature, AK_SECRET, command)
}

fn stages(v: &serde_json::Value) -> Vec<String> {
    let mut s: Vec<String> = v["VersionStages"]["VersionStage"]
        .as_array()
        .unwrap_or_else(|| panic!("VersionStages in {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    s.sort();
    s
}

/// Asserts none of `secrets` appears on any stderr seen so far.
fn assert_no_secrets(runs: &[Run], secrets: &[&str]) {
    for run in runs {
        for secret in secrets {
            assert!(
                !run.stderr.contains(secret),
                "secret {secret:?} on stderr: {}",
                run.stderr
            );
        }
    }
}

// ------------------------------------------------------------------------------------------------

#[test]
fn seed_rotation_walkthroughs_through_the_binary() {
    for signature in ["v3", "rpc"] {
        let mut emu = EmulatorProcess::start();
        let mut runs = Vec::new();
        let mut run = |command: &str| -> serde_json::Value {
            let r = sh(&emu, signature, command);
            let json = r.json();
            assert!(json["RequestId"].is_string(), "{signature}: {json}");
            runs.push(r);
            json
        };

        // Prerequisites: the initial versions, marked ACSCurrent.
        let created = run(
            "aliyun kms CreateSecret --SecretName MyOAuthAppSecret --SecretData initial-app-secret --VersionId v1",
        );
        assert_eq!(created["VersionId"], "v1");
        run(
            r#"aliyun kms CreateSecret --SecretName db_cred --SecretData '{"uname": "alice", "pwd": "initial-Pw"}' --VersionId v1"#,
        );

        // Single-call rotation.
        let put = run(SINGLE_CALL_PUT);
        assert_eq!(put["SecretName"], "MyOAuthAppSecret", "{signature}");
        assert_eq!(put["VersionId"], "v2");
        assert_eq!(stages(&put), ["ACSCurrent"]);
        let cur = run("aliyun kms GetSecretValue --SecretName MyOAuthAppSecret");
        assert_eq!(cur["VersionId"], "v2", "{signature}");
        assert_eq!(cur["SecretData"], "sample-app-secret");
        assert_eq!(stages(&cur), ["ACSCurrent"]);
        let prev = run(
            "aliyun kms GetSecretValue --SecretName MyOAuthAppSecret --VersionStage ACSPrevious",
        );
        assert_eq!(prev["VersionId"], "v1", "{signature}");
        assert_eq!(prev["SecretData"], "initial-app-secret");

        // Multi-call rotation, step 1: a password without punctuation.
        let pw = run(GET_RANDOM_PASSWORD);
        let pw = pw["RandomPassword"].as_str().unwrap().to_string();
        assert_eq!(pw.len(), 32, "{signature}");
        assert!(pw.chars().all(|c| c.is_ascii_alphanumeric()), "{pw}");
        // Step 2: the new version under MyPendingLabel; current and previous unchanged.
        let put = run(PUT_PENDING);
        assert_eq!(put["VersionId"], "v2", "{signature}");
        assert_eq!(stages(&put), ["MyPendingLabel"]);
        let cur = run("aliyun kms GetSecretValue --SecretName db_cred");
        assert_eq!(cur["VersionId"], "v1", "{signature}: still the old version");
        let pending =
            run("aliyun kms GetSecretValue --SecretName db_cred --VersionStage MyPendingLabel");
        assert_eq!(pending["SecretData"], DB_CRED_V2, "{signature}");
        // Step 4: promote v2.
        let promoted = run(PROMOTE);
        assert_eq!(promoted["SecretName"], "db_cred", "{signature}");
        // Step 5: GetSecretValue returns v2 as ACSCurrent.
        let cur = run("aliyun kms GetSecretValue --SecretName db_cred");
        assert_eq!(cur["VersionId"], "v2", "{signature}");
        assert_eq!(cur["SecretData"], DB_CRED_V2);
        assert_eq!(stages(&cur), ["ACSCurrent", "MyPendingLabel"]);
        let listed = run("aliyun kms ListSecretVersionIds --SecretName db_cred");
        let versions: Vec<(String, Vec<String>)> = listed["VersionIds"]["VersionId"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["VersionId"].as_str().unwrap().to_string(), stages(v)))
            .collect();
        assert_eq!(
            versions,
            [
                ("v1".to_string(), vec!["ACSPrevious".to_string()]),
                (
                    "v2".to_string(),
                    vec!["ACSCurrent".to_string(), "MyPendingLabel".to_string()]
                ),
            ],
            "{signature}"
        );

        // Output is aliyun-style JSON (four-space indentation).
        assert!(runs.iter().all(|r| r.stdout.starts_with("{\n    \"")));
        assert_no_secrets(
            &runs,
            &[
                "initial-app-secret",
                "sample-app-secret",
                "initial-Pw",
                "v2GwsgcuNylyYw9JGJNE5yBViGSiZ",
                &pw,
                AK_SECRET,
            ],
        );
        let log = emu.log_text();
        for secret in [
            "sample-app-secret",
            "v2GwsgcuNylyYw9JGJNE5yBViGSiZ",
            &pw,
            AK_SECRET,
        ] {
            assert!(
                !log.contains(secret),
                "emulator log leaks {secret:?}: {log}"
            );
        }
        drop(runs);
        let status = emu.stop().expect("emulator stops on SIGTERM");
        assert!(status.success(), "{signature}: emulator exit {status}");
    }
}

#[test]
fn failing_commands_exit_non_zero_with_the_code_and_never_echo_secret_data() {
    for signature in ["v3", "rpc"] {
        let emu = EmulatorProcess::start();
        let ok = sh(
            &emu,
            signature,
            "aliyun kms CreateSecret --SecretName db_cred --SecretData first-value --VersionId v1",
        );
        assert_eq!(ok.code, 0, "{}", ok.stderr);
        let canary = "canary-SecretData-9f3 with spaces & symbols*~";
        let mut failures = Vec::new();

        // Not found.
        let r = sh(
            &emu,
            signature,
            "aliyun kms GetSecretValue --SecretName does-not-exist",
        );
        assert_eq!(r.code, 1, "{signature}: {r:?}");
        assert!(r.stderr.contains("Forbidden.ResourceNotFound"), "{r:?}");
        assert!(r.stderr.contains("RequestId: "), "{r:?}");
        assert!(r.stdout.is_empty());
        failures.push(r);

        // Conflict: same VersionId, different data (the data must not be echoed).
        let r = sh(
            &emu,
            signature,
            &format!(
                "aliyun kms PutSecretValue --SecretName db_cred --VersionId v1 --SecretData '{canary}'"
            ),
        );
        assert_eq!(r.code, 1, "{signature}: {r:?}");
        assert!(r.stderr.contains("Rejected.ResourceExist"), "{r:?}");
        failures.push(r);

        // Pending label on a missing version.
        let r = sh(
            &emu,
            signature,
            "aliyun kms UpdateSecretVersionStage --SecretName db_cred --VersionStage ACSCurrent --MoveToVersion v9",
        );
        assert_eq!(r.code, 1, "{signature}: {r:?}");
        assert!(r.stderr.contains("Forbidden.ResourceNotFound"), "{r:?}");
        failures.push(r);

        // Wrong AccessKey secret: the gateway's string-to-sign (which covers SecretData in the
        // classic RPC signature) must not reach stderr.
        let r = sh_with(
            &emu,
            signature,
            "not-the-secret",
            &format!(
                "aliyun kms PutSecretValue --SecretName db_cred --VersionId v2 --SecretData '{canary}'"
            ),
        );
        assert_eq!(r.code, 1, "{signature}: {r:?}");
        assert!(r.stderr.contains("SignatureDoesNotMatch"), "{r:?}");
        failures.push(r);

        // Unknown action.
        let r = sh(
            &emu,
            signature,
            "aliyun kms NoSuchAction --SecretName db_cred",
        );
        assert_eq!(r.code, 1, "{signature}: {r:?}");
        assert!(r.stderr.contains("InvalidAction.NotFound"), "{r:?}");
        failures.push(r);

        assert_no_secrets(
            &failures,
            &[canary, "canary", "first-value", AK_SECRET, "not-the-secret"],
        );
        // Nothing was changed by the failures.
        let cur = sh(
            &emu,
            signature,
            "aliyun kms GetSecretValue --SecretName db_cred",
        )
        .json();
        assert_eq!(cur["SecretData"], "first-value", "{signature}");
        assert_eq!(cur["VersionId"], "v1");
        let log = emu.log_text();
        assert!(
            !log.contains("canary") && !log.contains("first-value"),
            "{log}"
        );
    }
}
