//! PostgreSQL back-end of the Staged rotation's **register** and **verify** steps: after the new
//! credential is stored in KMS under the pending label, [`register`] sets it as the role's password
//! through an admin connection, and [`verify`] logs in as the role with it; only then is the pending
//! version promoted to `ACSCurrent`.
//!
//! The clear password never reaches the server: [`register`] hashes it client-side into a SCRAM-SHA-256
//! verifier (as `psql`'s `\password` does) and sends `ALTER ROLE "role" PASSWORD 'SCRAM-SHA-256$…'`,
//! so neither the server log nor `pg_stat_activity` can show it. Errors carry a stable PascalCase
//! reason and never a value. TLS goes through rustls with the ring provider.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::crd::rotation::PostgresRegister;
use crate::kms::SecretString;
use crate::kms::endpoint::is_loopback_host;

/// Default port when the spec has none.
pub const DEFAULT_PORT: u16 = 5432;
/// Database to connect to when the spec names none.
pub const DEFAULT_DATABASE: &str = "postgres";
/// TCP connect + startup (TLS and authentication) per connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Server-side bound on each statement (sent as `statement_timeout`).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Server-side bound on waiting for a lock (`lock_timeout`), for example on `pg_authid`.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// Client-side bound on a whole register or verify call.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes; a longer name would address another role.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// Where and how to reach the database whose role gets the new password.
#[derive(Clone, Debug)]
pub struct PostgresTarget {
    pub host: String,
    pub port: u16,
    /// Database to connect to (default `postgres`).
    pub database: Option<String>,
    pub admin_user: String,
    pub admin_password: SecretString,
    pub ssl_mode: SslMode,
}

/// Transport security, after libpq's `sslmode` of the same names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP; allowed only for loopback hosts.
    Disable,
    /// TLS required, the server certificate is not checked (libpq `require`). SCRAM channel binding
    /// is still used when the server offers it.
    Require,
    /// TLS with the certificate checked against `ca_pem` (only those roots) or the system roots, and
    /// the host name (or IP) checked against it.
    VerifyFull { ca_pem: Option<String> },
}

impl SslMode {
    /// The spec's `sslMode` (`disable` | `require` | `verify-full`, default `require`).
    pub fn parse(value: Option<&str>, ca_pem: Option<String>) -> Result<Self, RegisterError> {
        match value.unwrap_or("require") {
            "disable" => Ok(Self::Disable),
            "require" => Ok(Self::Require),
            "verify-full" => Ok(Self::VerifyFull { ca_pem }),
            other => Err(RegisterError::config(format!(
                "sslMode {other:?} is not one of disable, require, verify-full"
            ))),
        }
    }
}

impl PostgresTarget {
    /// The target described by `spec.rotation.register.postgres`, with the admin credentials read
    /// from its `adminSecretRef` and an optional CA bundle for `verify-full`.
    pub fn from_spec(
        spec: &PostgresRegister,
        admin_user: String,
        admin_password: SecretString,
        ca_pem: Option<String>,
    ) -> Result<Self, RegisterError> {
        let port = match spec.port {
            None => DEFAULT_PORT,
            Some(p) => u16::try_from(p)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| RegisterError::config(format!("port {p} is out of range")))?,
        };
        Ok(Self {
            host: spec.host.clone(),
            port,
            database: spec.database.clone(),
            admin_user,
            admin_password,
            ssl_mode: SslMode::parse(spec.ssl_mode.as_deref(), ca_pem)?,
        })
    }

    fn database(&self) -> &str {
        self.database.as_deref().unwrap_or(DEFAULT_DATABASE)
    }
}

/// Why a register or verify step failed. `message` names hosts, roles and databases, never a
/// password; `transient` says whether retrying the same step later can succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct RegisterError {
    /// PascalCase, stable: see the `reason` module.
    pub reason: &'static str,
    pub message: String,
    pub transient: bool,
}

/// The reasons [`RegisterError`] uses.
pub mod reason {
    /// Connection refused, reset, timed out, DNS failure, server starting or shutting down, too many
    /// connections. Transient.
    pub const DATABASE_UNREACHABLE: &str = "DatabaseUnreachable";
    /// Wrong password, or the server refused the login (pg_hba, role cannot log in).
    pub const AUTHENTICATION_FAILED: &str = "AuthenticationFailed";
    pub const ROLE_NOT_FOUND: &str = "RoleNotFound";
    /// The role exists but has `NOLOGIN`: a password for it would never be usable.
    pub const ROLE_CANNOT_LOGIN: &str = "RoleCannotLogin";
    pub const DATABASE_NOT_FOUND: &str = "DatabaseNotFound";
    /// The admin role may not alter the role.
    pub const PERMISSION_DENIED: &str = "PermissionDenied";
    /// `sslMode: disable` toward a non-loopback host; refused before any connection attempt.
    pub const INSECURE_CONNECTION: &str = "InsecureConnection";
    /// TLS handshake failed: certificate not trusted or not for this host, or no TLS on the server.
    pub const TLS_FAILED: &str = "TlsFailed";
    /// A statement ran into `statement_timeout` / `lock_timeout` or the call took too long.
    pub const TIMEOUT: &str = "Timeout";
    /// Invalid input: role name, empty password, sslMode, port, CA bundle.
    pub const INVALID_CONFIGURATION: &str = "InvalidConfiguration";
    /// Any other error reported by the server.
    pub const DATABASE_ERROR: &str = "DatabaseError";
}

impl RegisterError {
    fn new(reason: &'static str, message: impl Into<String>, transient: bool) -> Self {
        Self {
            reason,
            message: message.into(),
            transient,
        }
    }

    fn config(message: impl Into<String>) -> Self {
        Self::new(reason::INVALID_CONFIGURATION, message, false)
    }
}

/// `text` with every occurrence of the secrets replaced: server messages are quoted in errors and
/// must not echo a value back (defence in depth; PostgreSQL does not normally do that).
fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if text.contains(secret) {
            text = text.replace(secret, "<redacted>");
        }
    }
    text
}

/// Sets `new_password` as the password of the existing login role `role`, through an admin
/// connection. Idempotent: running it again with the same password leaves the same password.
pub async fn register(
    target: &PostgresTarget,
    role: &str,
    new_password: &SecretString,
) -> Result<(), RegisterError> {
    bounded("register", register_inner(target, role, new_password)).await
}

/// Logs in as `role` with `new_password` and runs `SELECT 1`.
pub async fn verify(
    target: &PostgresTarget,
    role: &str,
    new_password: &SecretString,
) -> Result<(), RegisterError> {
    bounded("verify", verify_inner(target, role, new_password)).await
}

async fn bounded(
    what: &str,
    work: impl Future<Output = Result<(), RegisterError>>,
) -> Result<(), RegisterError> {
    tokio::time::timeout(OPERATION_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| {
            Err(RegisterError::new(
                reason::TIMEOUT,
                format!(
                    "{what} did not finish within {}s",
                    OPERATION_TIMEOUT.as_secs()
                ),
                true,
            ))
        })
}

async fn register_inner(
    target: &PostgresTarget,
    role: &str,
    new_password: &SecretString,
) -> Result<(), RegisterError> {
    check_target(target)?;
    let ident = quote_identifier(role)?;
    check_password(new_password)?;
    let secrets = [new_password.expose(), target.admin_password.expose()];
    let admin = connect(
        target,
        &target.admin_user,
        &target.admin_password,
        "admin",
        &secrets,
    )
    .await?;
    let row = admin
        .query_opt(
            "SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await
        .map_err(|e| classify(&e, target, "looking up the role", &secrets))?;
    match row.map(|r| r.get::<_, bool>(0)) {
        None => return Err(role_not_found(role, target)),
        Some(false) => {
            return Err(RegisterError::new(
                reason::ROLE_CANNOT_LOGIN,
                format!("role {role:?} on {} has NOLOGIN", endpoint(target)),
                false,
            ));
        }
        Some(true) => {}
    }
    admin
        .batch_execute(&alter_role_sql(&ident, new_password))
        .await
        .map_err(|e| match e.code() {
            Some(c) if *c == SqlState::UNDEFINED_OBJECT => role_not_found(role, target),
            _ => classify(&e, target, "ALTER ROLE", &secrets),
        })?;
    tracing::info!(host = %target.host, port = target.port, role, "registered the new password with PostgreSQL");
    Ok(())
}

async fn verify_inner(
    target: &PostgresTarget,
    role: &str,
    new_password: &SecretString,
) -> Result<(), RegisterError> {
    check_target(target)?;
    quote_identifier(role)?;
    check_password(new_password)?;
    let secrets = [new_password.expose(), target.admin_password.expose()];
    let client = connect(target, role, new_password, "role", &secrets).await?;
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .map_err(|e| classify(&e, target, "SELECT 1", &secrets))?
        .get(0);
    if one != 1 {
        return Err(RegisterError::new(
            reason::DATABASE_ERROR,
            "SELECT 1 did not return 1",
            false,
        ));
    }
    tracing::info!(host = %target.host, port = target.port, role, "verified the new password with a PostgreSQL login");
    Ok(())
}

fn role_not_found(role: &str, target: &PostgresTarget) -> RegisterError {
    RegisterError::new(
        reason::ROLE_NOT_FOUND,
        format!("role {role:?} does not exist on {}", endpoint(target)),
        false,
    )
}

fn endpoint(target: &PostgresTarget) -> String {
    format!("{}:{}/{}", target.host, target.port, target.database())
}

/// Static checks, before any connection attempt.
fn check_target(target: &PostgresTarget) -> Result<(), RegisterError> {
    if target.host.trim().is_empty() {
        return Err(RegisterError::config("host is empty"));
    }
    if target.port == 0 {
        return Err(RegisterError::config("port 0 is invalid"));
    }
    if target.ssl_mode == SslMode::Disable && !is_loopback_host(&target.host) {
        return Err(RegisterError::new(
            reason::INSECURE_CONNECTION,
            format!(
                "sslMode disable is allowed only for loopback hosts, not {:?}: use require or verify-full",
                target.host
            ),
            false,
        ));
    }
    Ok(())
}

fn check_password(password: &SecretString) -> Result<(), RegisterError> {
    if password.is_empty() {
        return Err(RegisterError::config("the new password is empty"));
    }
    if password.expose().contains('\0') {
        return Err(RegisterError::config(
            "the new password contains a NUL character, which PostgreSQL cannot store",
        ));
    }
    Ok(())
}

/// `"name"` with `"` doubled. Refuses what PostgreSQL would silently change (NUL, > 63 bytes).
pub fn quote_identifier(name: &str) -> Result<String, RegisterError> {
    if name.is_empty() {
        return Err(RegisterError::config("role name is empty"));
    }
    if name.contains('\0') {
        return Err(RegisterError::config("role name contains a NUL character"));
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(RegisterError::config(format!(
            "role name is {} bytes; PostgreSQL would truncate it to {MAX_IDENTIFIER_BYTES}",
            name.len()
        )));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// A string literal that means `value` whatever `standard_conforming_strings` is: `'…'` with `'`
/// doubled, or `E'…'` with `\` doubled as well when there is a backslash (as libpq's
/// `PQescapeLiteral`). `$$` needs no escaping inside a quoted literal.
pub fn quote_literal(value: &str) -> String {
    let doubled = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", doubled.replace('\\', "\\\\"))
    } else {
        format!("'{doubled}'")
    }
}

/// `ALTER ROLE` with a client-computed SCRAM-SHA-256 verifier (fresh random salt) in place of the
/// clear password; `quoted_role` comes from [`quote_identifier`].
fn alter_role_sql(quoted_role: &str, password: &SecretString) -> String {
    let verifier = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
    format!(
        "ALTER ROLE {quoted_role} WITH PASSWORD {}",
        quote_literal(&verifier)
    )
}

/// Opens a connection as `user` and drives it on a task that ends when the client is dropped.
async fn connect(
    target: &PostgresTarget,
    user: &str,
    password: &SecretString,
    who: &str,
    secrets: &[&str],
) -> Result<Client, RegisterError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&target.host)
        .port(target.port)
        .dbname(target.database())
        .user(user)
        .password(password.expose())
        .application_name("kmsync")
        .connect_timeout(CONNECT_TIMEOUT)
        .options(format!(
            "-c statement_timeout={} -c lock_timeout={}",
            STATEMENT_TIMEOUT.as_millis(),
            LOCK_TIMEOUT.as_millis()
        ));
    let context = format!("connecting as the {who} user {user:?}");
    let client = match &target.ssl_mode {
        SslMode::Disable => {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let (client, connection) = config
                .connect(NoTls)
                .await
                .map_err(|e| classify(&e, target, &context, secrets))?;
            tokio::spawn(drive(connection));
            client
        }
        mode => {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let tls = MakeRustlsConnect::new(tls_config(mode)?);
            let (client, connection) = config
                .connect(tls)
                .await
                .map_err(|e| classify(&e, target, &context, secrets))?;
            tokio::spawn(drive(connection));
            client
        }
    };
    Ok(client)
}

async fn drive<C>(connection: C)
where
    C: Future<Output = Result<(), tokio_postgres::Error>>,
{
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "PostgreSQL connection ended with an error");
    }
}

fn tls_config(mode: &SslMode) -> Result<rustls::ClientConfig, RegisterError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| RegisterError::config(format!("TLS: {e}")))?;
    let config = match mode {
        SslMode::VerifyFull { ca_pem } => builder
            .with_root_certificates(root_store(ca_pem.as_deref())?)
            .with_no_client_auth(),
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
    };
    Ok(config)
}

fn root_store(ca_pem: Option<&str>) -> Result<rustls::RootCertStore, RegisterError> {
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = match ca_pem {
        Some(pem) => CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| RegisterError::config(format!("CA bundle is not valid PEM: {e}")))?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(RegisterError::config(match ca_pem {
            Some(_) => "CA bundle contains no usable certificate",
            None => "no system CA certificates found for verify-full; give a CA bundle",
        }));
    }
    Ok(roots)
}

/// `sslmode=require`: encrypt, accept any certificate, but still check the handshake signatures
/// (so the session key is bound to the certificate that SCRAM channel binding hashes).
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Maps a driver error to a reason. Server messages are kept (they name roles, hosts, databases),
/// details and the query position are not.
fn classify(
    e: &tokio_postgres::Error,
    target: &PostgresTarget,
    during: &str,
    secrets: &[&str],
) -> RegisterError {
    let at = endpoint(target);
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let text = format!(
            "{during} on {at}: {} (SQLSTATE {code})",
            scrub(db.message(), secrets)
        );
        let (reason, transient) = match code {
            "28P01" | "28000" => (reason::AUTHENTICATION_FAILED, false),
            "3D000" => (reason::DATABASE_NOT_FOUND, false),
            "42704" => (reason::ROLE_NOT_FOUND, false),
            "42501" => (reason::PERMISSION_DENIED, false),
            "57014" | "55P03" => (reason::TIMEOUT, true),
            c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57P") => {
                (reason::DATABASE_UNREACHABLE, true)
            }
            c if c.starts_with("40") => (reason::DATABASE_ERROR, true),
            _ => (reason::DATABASE_ERROR, false),
        };
        return RegisterError::new(reason, text, transient);
    }
    let chain = scrub(&error_chain(e), secrets);
    let text = format!("{during} on {at}: {chain}");
    if chain.starts_with("error performing TLS handshake") {
        return RegisterError::new(reason::TLS_FAILED, text, false);
    }
    if chain.starts_with("authentication error") {
        return RegisterError::new(reason::AUTHENTICATION_FAILED, text, false);
    }
    if chain.starts_with("invalid configuration") || chain.starts_with("invalid connection string")
    {
        return RegisterError::config(text);
    }
    RegisterError::new(reason::DATABASE_UNREACHABLE, text, true)
}

/// `error: cause: cause…` (tokio-postgres keeps the interesting part in the sources).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, ssl_mode: SslMode) -> PostgresTarget {
        PostgresTarget {
            host: host.into(),
            port: 5432,
            database: None,
            admin_user: "admin".into(),
            admin_password: SecretString::new("admin-secret"),
            ssl_mode,
        }
    }

    #[test]
    fn identifiers_are_quoted_and_checked() {
        assert_eq!(quote_identifier("app").unwrap(), "\"app\"");
        assert_eq!(
            quote_identifier("App\"; DROP").unwrap(),
            "\"App\"\"; DROP\""
        );
        assert_eq!(
            quote_identifier("").unwrap_err().reason,
            "InvalidConfiguration"
        );
        assert_eq!(
            quote_identifier("a\0b").unwrap_err().reason,
            "InvalidConfiguration"
        );
        assert!(quote_identifier(&"r".repeat(63)).is_ok());
        assert_eq!(
            quote_identifier(&"r".repeat(64)).unwrap_err().reason,
            "InvalidConfiguration"
        );
    }

    #[test]
    fn literals_survive_quotes_backslashes_and_dollars() {
        assert_eq!(quote_literal("plain"), "'plain'");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("$$x$$"), "'$$x$$'");
        assert_eq!(quote_literal(r"a\b'c"), r"E'a\\b''c'");
    }

    #[test]
    fn alter_role_sends_a_scram_verifier_not_the_password() {
        let password = SecretString::new("s3cr'et\\$$pw");
        let sql = alter_role_sql("\"app\"", &password);
        assert!(sql.starts_with("ALTER ROLE \"app\" WITH PASSWORD 'SCRAM-SHA-256$4096:"));
        assert!(!sql.contains(password.expose()));
        assert!(!sql.contains("s3cr"));
        // A fresh salt each time.
        assert_ne!(sql, alter_role_sql("\"app\"", &password));
    }

    #[test]
    fn ssl_modes_parse_with_require_as_default() {
        assert_eq!(SslMode::parse(None, None).unwrap(), SslMode::Require);
        assert_eq!(
            SslMode::parse(Some("disable"), None).unwrap(),
            SslMode::Disable
        );
        assert_eq!(
            SslMode::parse(Some("verify-full"), Some("pem".into())).unwrap(),
            SslMode::VerifyFull {
                ca_pem: Some("pem".into())
            }
        );
        let err = SslMode::parse(Some("prefer"), None).unwrap_err();
        assert_eq!(err.reason, "InvalidConfiguration");
    }

    #[test]
    fn disable_is_for_loopback_only() {
        for host in ["127.0.0.1", "localhost", "::1", "[::1]"] {
            assert!(
                check_target(&target(host, SslMode::Disable)).is_ok(),
                "{host}"
            );
        }
        for host in ["db.example.com", "10.0.0.5", "192.0.2.1"] {
            let err = check_target(&target(host, SslMode::Disable)).unwrap_err();
            assert_eq!(err.reason, "InsecureConnection", "{host}");
            assert!(!err.transient);
        }
        assert!(check_target(&target("db.example.com", SslMode::Require)).is_ok());
    }

    #[test]
    fn from_spec_applies_defaults() {
        let spec = PostgresRegister {
            host: "db".into(),
            ..Default::default()
        };
        let t = PostgresTarget::from_spec(&spec, "admin".into(), "pw".into(), None).unwrap();
        assert_eq!(
            (t.port, t.database(), &t.ssl_mode),
            (5432, "postgres", &SslMode::Require)
        );
        let spec = PostgresRegister {
            port: Some(70000),
            ..spec
        };
        let err = PostgresTarget::from_spec(&spec, "admin".into(), "pw".into(), None).unwrap_err();
        assert_eq!(err.reason, "InvalidConfiguration");
    }

    #[test]
    fn messages_are_scrubbed_and_debug_redacts() {
        assert_eq!(
            scrub("echo of hunter2 here", &["hunter2", ""]),
            "echo of <redacted> here"
        );
        let t = target("db", SslMode::Require);
        assert!(!format!("{t:?}").contains("admin-secret"));
    }
}
