//! `rotation::postgres` against a real PostgreSQL on 127.0.0.1, the one `scripts/postgres.sh`
//! starts (`make test` does it; by hand: `scripts/postgres.sh run cargo test --test
//! postgres_register`). Connection settings come from the environment (PGHOST, PGPORT,
//! KMSYNC_PG_ADMIN_USER, KMSYNC_PG_ADMIN_PASSWORD, KMSYNC_PG_CA_FILE) or else from
//! `target/postgres/env`; without either the tests fail rather than skip.
//!
//! Every test creates its own roles (unique names), so the tests run in parallel.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kmsync::kms::SecretString;
use kmsync::rotation::postgres::{PostgresTarget, RegisterError, SslMode, register, verify};
use tokio_postgres::NoTls;

const HOW_TO_RUN: &str = "no PostgreSQL for tests/postgres_register.rs: run `scripts/postgres.sh run cargo test --test postgres_register` (or `make test`), or `scripts/postgres.sh start` first";

struct Db {
    host: String,
    port: u16,
    admin_user: String,
    admin_password: String,
    ca_file: Option<String>,
}

fn env_file() -> HashMap<String, String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/postgres/env");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

fn db() -> Db {
    let file = env_file();
    let get = |key: &str| {
        std::env::var(key)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| file.get(key).cloned())
            .unwrap_or_else(|| panic!("{key} not set. {HOW_TO_RUN}"))
    };
    Db {
        host: get("PGHOST"),
        port: get("PGPORT").parse().expect("PGPORT is a port number"),
        admin_user: get("KMSYNC_PG_ADMIN_USER"),
        admin_password: get("KMSYNC_PG_ADMIN_PASSWORD"),
        ca_file: std::env::var("KMSYNC_PG_CA_FILE")
            .ok()
            .or_else(|| file.get("KMSYNC_PG_CA_FILE").cloned()),
    }
}

impl Db {
    fn target(&self, ssl_mode: SslMode) -> PostgresTarget {
        PostgresTarget {
            host: self.host.clone(),
            port: self.port,
            database: None,
            admin_user: self.admin_user.clone(),
            admin_password: SecretString::new(self.admin_password.clone()),
            ssl_mode,
        }
    }

    /// The admin connection the tests use for setup and inspection (plain TCP on loopback).
    async fn admin(&self) -> tokio_postgres::Client {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .dbname("postgres")
            .user(&self.admin_user)
            .password(&self.admin_password)
            .connect_timeout(Duration::from_secs(5));
        let (client, connection) = config.connect(NoTls).await.unwrap_or_else(|e| {
            panic!(
                "cannot reach PostgreSQL at {}:{} ({e}). {HOW_TO_RUN}",
                self.host, self.port
            )
        });
        tokio::spawn(connection);
        client
    }

    /// A new login role with `password`, named `prefix` + a unique suffix.
    async fn create_role(&self, prefix: &str, password: &str) -> String {
        let name = format!(
            "{prefix}{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        let sql = format!(
            "CREATE ROLE \"{}\" LOGIN PASSWORD '{}'",
            name.replace('"', "\"\""),
            password.replace('\'', "''")
        );
        self.admin()
            .await
            .batch_execute(&sql)
            .await
            .expect("CREATE ROLE");
        name
    }

    async fn rolpassword(&self, role: &str) -> Option<String> {
        self.admin()
            .await
            .query_one(
                "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
                &[&role],
            )
            .await
            .expect("read pg_authid")
            .get(0)
    }
}

fn disable() -> SslMode {
    SslMode::Disable
}

fn secret(s: &str) -> SecretString {
    SecretString::new(s)
}

fn assert_reason(result: Result<(), RegisterError>, reason: &str) -> RegisterError {
    let err = result.expect_err("expected an error");
    eprintln!("{err}");
    assert_eq!(err.reason, reason, "{err}");
    err
}

#[tokio::test]
async fn register_then_verify_and_the_old_password_is_rejected() {
    let db = db();
    let role = db.create_role("kmsync_app_", "old-password-1").await;
    let target = db.target(disable());
    verify(&target, &role, &secret("old-password-1"))
        .await
        .expect("old password works before");

    register(&target, &role, &secret("new-password-2"))
        .await
        .expect("register");
    verify(&target, &role, &secret("new-password-2"))
        .await
        .expect("verify new");
    let err = assert_reason(
        verify(&target, &role, &secret("old-password-1")).await,
        "AuthenticationFailed",
    );
    assert!(!err.transient);

    // Stored as a SCRAM verifier computed by the client; idempotent on a second register.
    let stored = db.rolpassword(&role).await.expect("a password is set");
    assert!(stored.starts_with("SCRAM-SHA-256$4096:"), "stored as SCRAM");
    register(&target, &role, &secret("new-password-2"))
        .await
        .expect("register again");
    verify(&target, &role, &secret("new-password-2"))
        .await
        .expect("verify again");
}

#[tokio::test]
async fn tricky_passwords_and_role_names() {
    let db = db();
    let target = db.target(disable());
    let passwords = [
        r#"it's a "quoted" pass"#,
        r"back\slash\\ and \' and '\",
        "$$dollar$$ $tag$ body $tag$",
        "'); DROP ROLE kmsync_admin; --",
        "  spaces around  ",
        "ünïcödé pässwörd ☃ 🔑",
        "E'x'",
    ];
    let role = db.create_role("kmsync_tricky_", "initial").await;
    for password in passwords {
        register(&target, &role, &secret(password))
            .await
            .unwrap_or_else(|e| panic!("register: {e}"));
        verify(&target, &role, &secret(password))
            .await
            .unwrap_or_else(|e| panic!("verify: {e}"));
    }
    // A role name that needs quoting: upper case, a double quote, a semicolon and a space.
    let odd = db.create_role("Kmsync \"Odd\"; Role ", "initial").await;
    register(&target, &odd, &secret(passwords[1]))
        .await
        .expect("register odd role");
    verify(&target, &odd, &secret(passwords[1]))
        .await
        .expect("verify odd role");
    // The admin still works (the DROP ROLE text was data, not SQL).
    verify(&target, &db.admin_user, &secret(&db.admin_password))
        .await
        .expect("admin intact");
}

#[tokio::test]
async fn missing_role_is_role_not_found_and_nothing_changes() {
    let db = db();
    let target = db.target(disable());
    let role = db.create_role("kmsync_exists_", "keep-me").await;
    let before = db.rolpassword(&role).await;
    // Same letters, other case: unquoted, PostgreSQL would fold it onto the existing role.
    let missing = role.to_uppercase();
    let err = assert_reason(
        register(&target, &missing, &secret("never-set")).await,
        "RoleNotFound",
    );
    assert!(!err.transient);
    assert!(err.message.contains(&missing), "{err}");
    assert_eq!(
        db.rolpassword(&role).await,
        before,
        "existing role untouched"
    );
    verify(&target, &role, &secret("keep-me"))
        .await
        .expect("old password still works");
    let exists: bool = db
        .admin()
        .await
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            &[&missing],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!exists, "no role created");
}

#[tokio::test]
async fn nologin_role_is_refused_before_any_change() {
    let db = db();
    let target = db.target(disable());
    let role = db.create_role("kmsync_nologin_", "before").await;
    db.admin()
        .await
        .batch_execute(&format!("ALTER ROLE \"{role}\" NOLOGIN"))
        .await
        .unwrap();
    let before = db.rolpassword(&role).await;
    assert_reason(
        register(&target, &role, &secret("after")).await,
        "RoleCannotLogin",
    );
    assert_eq!(db.rolpassword(&role).await, before);
}

#[tokio::test]
async fn wrong_passwords_are_authentication_failed() {
    let db = db();
    let target = db.target(disable());
    let role = db.create_role("kmsync_badpw_", "right").await;
    let err = assert_reason(
        verify(&target, &role, &secret("wrong")).await,
        "AuthenticationFailed",
    );
    assert!(!err.transient);
    // A wrong admin password fails register the same way, and changes nothing.
    let mut bad_admin = db.target(disable());
    bad_admin.admin_password = secret("not-the-admin-password");
    assert_reason(
        register(&bad_admin, &role, &secret("other")).await,
        "AuthenticationFailed",
    );
    verify(&target, &role, &secret("right"))
        .await
        .expect("unchanged");
}

#[tokio::test]
async fn closed_port_is_database_unreachable_and_transient() {
    let db = db();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut target = db.target(disable());
    target.port = port;
    let err = assert_reason(
        verify(&target, "anyone", &secret("x")).await,
        "DatabaseUnreachable",
    );
    assert!(err.transient);
    let err = assert_reason(
        register(&target, "anyone", &secret("x")).await,
        "DatabaseUnreachable",
    );
    assert!(err.transient);
}

#[tokio::test]
async fn disable_toward_a_remote_host_is_refused_without_connecting() {
    let db = db();
    // TEST-NET-1: a connection attempt would hang until the connect timeout.
    for host in ["192.0.2.1", "db.example.com"] {
        let mut target = db.target(disable());
        target.host = host.into();
        let started = Instant::now();
        let err = assert_reason(
            register(&target, "app", &secret("x")).await,
            "InsecureConnection",
        );
        assert!(!err.transient);
        assert_reason(
            verify(&target, "app", &secret("x")).await,
            "InsecureConnection",
        );
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "no connection attempt"
        );
    }
}

#[tokio::test]
async fn tls_require_and_verify_full() {
    let db = db();
    let ca = std::fs::read_to_string(db.ca_file.as_deref().expect("KMSYNC_PG_CA_FILE"))
        .expect("read the test server's CA");
    let role = db.create_role("kmsync_tls_", "tls-old").await;

    let require = db.target(SslMode::Require);
    register(&require, &role, &secret("tls-new"))
        .await
        .expect("register over require");
    verify(&require, &role, &secret("tls-new"))
        .await
        .expect("verify over require");

    let full = db.target(SslMode::VerifyFull {
        ca_pem: Some(ca.clone()),
    });
    register(&full, &role, &secret("tls-newer"))
        .await
        .expect("register over verify-full");
    verify(&full, &role, &secret("tls-newer"))
        .await
        .expect("verify over verify-full");
    let mut by_name = db.target(SslMode::VerifyFull { ca_pem: Some(ca) });
    by_name.host = "localhost".into();
    verify(&by_name, &role, &secret("tls-newer"))
        .await
        .expect("verify-full by DNS name");

    // A CA that did not sign the server certificate: refused, and nothing changed.
    let other_ca = rcgen::generate_simple_self_signed(vec!["other.test".into()])
        .unwrap()
        .cert
        .pem();
    let wrong = db.target(SslMode::VerifyFull {
        ca_pem: Some(other_ca),
    });
    let err = assert_reason(register(&wrong, &role, &secret("never")).await, "TlsFailed");
    assert!(!err.transient);
    verify(&full, &role, &secret("tls-newer"))
        .await
        .expect("unchanged after the TLS failure");
}

#[tokio::test]
async fn canary_password_never_appears_in_errors_or_debug() {
    let db = db();
    let canary = "CANARY-pw-7c1e9b'\\$$";
    let role = db.create_role("kmsync_canary_", "right").await;
    let good = db.target(disable());
    let mut bad_admin = db.target(disable());
    bad_admin.admin_password = secret(canary);
    let mut closed = db.target(disable());
    closed.port = 1;
    let mut remote = db.target(disable());
    remote.host = "192.0.2.1".into();

    let errors = vec![
        verify(&good, &role, &secret(canary)).await.unwrap_err(),
        register(&good, "kmsync_no_such_role", &secret(canary))
            .await
            .unwrap_err(),
        register(&bad_admin, &role, &secret(canary))
            .await
            .unwrap_err(),
        register(&closed, &role, &secret(canary)).await.unwrap_err(),
        verify(&remote, &role, &secret(canary)).await.unwrap_err(),
        register(&good, &role, &secret("nul\0inside CANARY-pw-7c1e9b"))
            .await
            .unwrap_err(),
    ];
    for err in &errors {
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains("CANARY"), "leak in {text}");
        }
    }
    assert!(!format!("{bad_admin:?}").contains("CANARY"));
    assert!(!format!("{:?}", secret(canary)).contains("CANARY"));
}
