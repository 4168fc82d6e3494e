//! The bad-input catalogue (issue #9): one table of bad ManagedSecrets, SecretStores and
//! ClusterSecretStores, each applied with the real kubectl to a namespace a live operator watches.
//! A row is either refused at admission with the exact message kubectl prints, or — for input
//! only the controller can judge — accepted and answered with the exact `Ready` reason while
//! nothing is written (no Secret, no KMS write; an edit leaves the Secret as it was).
//! To add a case, add a row to `table()`. Prints `SOAK bad_inputs_rejected <rows as expected>`.
#![cfg(feature = "integration")]

mod support;

use std::collections::{BTreeMap, BTreeSet};

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::{Value, json};
use support::sync::{SyncEnv, wait_for};
use support::{describe, kubectl};

/// What must become of a row.
enum Expect {
    /// `kubectl apply` fails and prints exactly this (one error line of its output).
    Refused(String),
    /// Accepted; `Ready` ends False with this reason, and no Secret and no KMS version appear.
    Reason(&'static str),
    /// Accepted as an edit of the given good object (applied and synced first); the same reason,
    /// and the Secret the good object wrote is left exactly as it was.
    ReasonAfterEdit(&'static str, Value),
}

/// One case: what it is, the object applied (JSON, which kubectl reads as YAML), the outcome.
struct Row {
    what: &'static str,
    object: Value,
    expect: Expect,
}

fn refused(what: &'static str, object: Value, message: impl Into<String>) -> Row {
    Row {
        what,
        object,
        expect: Expect::Refused(message.into()),
    }
}

fn reason(what: &'static str, object: Value, reason: &'static str) -> Row {
    Row {
        what,
        object,
        expect: Expect::Reason(reason),
    }
}

fn reason_after_edit(what: &'static str, good: Value, bad: Value, reason: &'static str) -> Row {
    Row {
        what,
        object: bad,
        expect: Expect::ReasonAfterEdit(reason, good),
    }
}

// ---- objects --------------------------------------------------------------------------------

/// JSON merge patch semantics: objects merge, `null` removes, everything else replaces.
fn merged(mut base: Value, patch: Value) -> Value {
    fn merge(target: &mut Value, patch: Value) {
        match (target, patch) {
            (Value::Object(target), Value::Object(patch)) => {
                for (key, value) in patch {
                    if value.is_null() {
                        target.remove(&key);
                    } else {
                        merge(target.entry(key).or_insert(Value::Null), value);
                    }
                }
            }
            (target, patch) => *target = patch,
        }
    }
    merge(&mut base, patch);
    base
}

fn object(kind: &str, spec: Value) -> Value {
    json!({"apiVersion": "kmsync.io/v1alpha1", "kind": kind, "metadata": {}, "spec": spec})
}

/// A ManagedSecret that syncs `db_cred` through the loopback store `kms`, plus `spec`.
fn ms(spec: Value) -> Value {
    object(
        "ManagedSecret",
        merged(
            json!({"storeRef": {"name": "kms"}, "secretName": "db_cred", "refreshInterval": "1h"}),
            spec,
        ),
    )
}

fn rotation(overrides: Value) -> Value {
    ms(json!({"rotation": merged(json!({"interval": "720h", "strategy": "Immediate"}), overrides)}))
}

fn staged(register: Value) -> Value {
    rotation(json!({"strategy": "Staged", "register": register}))
}

/// A postgres register (on a host that cannot resolve), plus `overrides`.
fn postgres(overrides: Value) -> Value {
    staged(json!({"postgres": merged(
        json!({"host": "db.invalid", "adminSecretRef": {"name": "pg-admin"}}),
        overrides,
    )}))
}

fn webhook(overrides: Value) -> Value {
    staged(json!({"webhook": merged(
        json!({"url": "https://hooks.invalid/rotate", "signingSecretRef": {"name": "hook-key"}}),
        overrides,
    )}))
}

/// A SecretStore whose credentials Secret does not exist: were a bad row accepted, the operator
/// would stop at `InvalidCredentials` before any network call.
fn store(spec: Value) -> Value {
    object(
        "SecretStore",
        merged(
            json!({"regionId": "cn-hangzhou", "endpoint": "http://127.0.0.1:9",
                   "auth": {"accessKey": {"secretRef": {"name": "absent-credentials"}}}}),
            spec,
        ),
    )
}

fn cluster_store(spec: Value) -> Value {
    object(
        "ClusterSecretStore",
        merged(
            json!({"regionId": "cn-hangzhou", "endpoint": "http://127.0.0.1:9",
                   "auth": {"accessKey": {"secretRef": {"name": "absent-credentials",
                                                        "namespace": "kmsync-absent"}}}}),
            spec,
        ),
    )
}

fn named(mut object: Value, name: &str) -> Value {
    object["metadata"]["name"] = json!(name);
    object
}

// ---- the messages kubectl prints ---------------------------------------------------------------

const OBJECT_NAME: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
const NAMESPACE: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
const SECRET_KEY: &str = r"^[-._a-zA-Z0-9]+$";
const NO_CONTROL: &str = r"^[^\x00-\x1F\x7F]+$";
const PRINTABLE: &str = r"^[!-~]+$";
const STAGE: &str = r"^[A-Za-z0-9_-]{1,64}$";
const VERSION_ID: &str = r"^[A-Za-z0-9_.-]{1,64}$";
const KMS_NAME: &str = r"^(acs:kms:[a-z0-9-]+:[0-9]+:secret/)?[A-Za-z0-9_/+=.@-]{1,192}$";
const REFRESH: &str = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$";
const DURATION: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";
const CRON: &str = r"^[0-9A-Za-z*?/,#-]+( +[0-9A-Za-z*?/,#-]+){4}$";
const HOST: &str = r"^[A-Za-z0-9.:\[\]-]+$";
const RAM_NAME: &str = r"^[A-Za-z0-9_.@-]+$";
const ROLE_ARN: &str = r"^acs:ram::[0-9]+:role/[!-~]+$";
const ALLOWED_SECRET: &str = r"^(acs:kms:[a-z0-9-]+:[0-9]+:secret/)?[A-Za-z0-9_/+=.@-]*\*?$";
const LABEL_VALUE: &str = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";
const RFC1123: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";

/// `value` is quoted the way the apiserver prints it (Go `%q`).
fn must_match(path: &str, value: &str, pattern: &str) -> String {
    format!("{path}: Invalid value: {value}: {path} in body should match '{pattern}'")
}

fn too_short(path: &str, min: usize) -> String {
    format!("{path}: Invalid value: \"\": {path} in body should be at least {min} chars long")
}

fn too_long(path: &str, max: usize) -> String {
    format!("{path}: Too long: may not be more than {max} bytes")
}

fn too_many(path: &str, count: usize, max: usize) -> String {
    format!("{path}: Too many: {count}: must have at most {max} items")
}

fn wrong_type(path: &str, got: &str, want: &str) -> String {
    format!("{path}: Invalid value: \"{got}\": {path} in body must be of type {want}: \"{got}\"")
}

fn unsupported(path: &str, value: &str, supported: &str) -> String {
    format!("{path}: Unsupported value: \"{value}\": supported values: {supported}")
}

/// A CEL rule's message; `on` is the JSON type of the value the rule sits on.
fn rule(path: &str, on: &str, message: &str) -> String {
    format!("{path}: Invalid value: \"{on}\": {message}")
}

fn unknown_field(path: &str) -> String {
    format!("strict decoding error: unknown field \"{path}\"")
}

// ---- the table ------------------------------------------------------------------------------

const AUTH_ONE: &str = "auth must set exactly one of accessKey, rrsa, ecsRamRole or default";
const SCHEDULE_ONE: &str = "rotation needs exactly one of interval or schedule";
const REFRESH_BOUNDS: &str =
    "refreshInterval must be 0 (no periodic refresh) or between 10s and 720h";
const DOT_KEY: &str = "a Secret key may not be '.', '..' or start with '..'";
const URL_HOST: &str = "must be an absolute URL with a host (no spaces or control characters)";
const SELECTOR_VALUES: &str =
    "matchExpressions: In and NotIn need values, Exists and DoesNotExist take none";

fn table(emulator: &str, namespace: &str) -> Vec<Row> {
    let long_key = "k".repeat(254);
    let many_data: Vec<Value> = (0..101).map(|i| json!({"key": format!("k{i}")})).collect();
    let many_rollouts: Vec<Value> = (0..21)
        .map(|i| json!({"kind": "Deployment", "name": format!("api-{i}")}))
        .collect();
    let many = |n: usize, value: &str| -> Value {
        (0..n)
            .map(|i| (format!("k{i}"), json!(value)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let loopback_store =
        |spec: Value| merged(store(json!({"endpoint": emulator})), json!({"spec": spec}));
    vec![
        // -- resource names: empty, NUL and control characters, path tricks, length ----------
        refused(
            "ManagedSecret with an empty name",
            named(ms(json!({})), ""),
            "resource name may not be empty",
        ),
        refused(
            "ManagedSecret name with NUL",
            named(ms(json!({})), "db\u{0}cred"),
            format!(r#"metadata.name: Invalid value: "db\x00cred": {RFC1123}"#),
        ),
        refused(
            "ManagedSecret name with a newline",
            named(ms(json!({})), "db\ncred"),
            format!(r#"metadata.name: Invalid value: "db\ncred": {RFC1123}"#),
        ),
        refused(
            "ManagedSecret name with ../",
            named(ms(json!({})), "../etc"),
            r#"invalid resource name "../etc": [may not contain '/']"#,
        ),
        refused(
            "ManagedSecret name '..'",
            named(ms(json!({})), ".."),
            r#"invalid resource name "..": [may not be '..']"#,
        ),
        refused(
            "ManagedSecret name of 254 characters",
            named(ms(json!({})), &"a".repeat(254)),
            format!(
                r#"metadata.name: Invalid value: "{}": must be no more than 253 characters"#,
                "a".repeat(254)
            ),
        ),
        refused(
            "SecretStore name with upper case",
            named(store(json!({})), "KMS"),
            format!(r#"metadata.name: Invalid value: "KMS": {RFC1123}"#),
        ),
        refused(
            "SecretStore name with a tab",
            named(store(json!({})), "k\tms"),
            format!(r#"metadata.name: Invalid value: "k\tms": {RFC1123}"#),
        ),
        refused(
            "ClusterSecretStore with an empty name",
            named(cluster_store(json!({})), ""),
            "resource name may not be empty",
        ),
        refused(
            "ClusterSecretStore name with NUL",
            named(cluster_store(json!({})), "shared\u{0}"),
            format!(r#"metadata.name: Invalid value: "shared\x00": {RFC1123}"#),
        ),
        // -- references by name ---------------------------------------------------------------
        refused(
            "empty storeRef.name",
            ms(json!({"storeRef": {"name": ""}})),
            too_short("spec.storeRef.name", 1),
        ),
        refused(
            "storeRef.name with NUL",
            ms(json!({"storeRef": {"name": "k\u{0}ms"}})),
            must_match("spec.storeRef.name", r#""k\x00ms""#, OBJECT_NAME),
        ),
        refused(
            "storeRef.name with ../",
            ms(json!({"storeRef": {"name": "../kms"}})),
            must_match("spec.storeRef.name", r#""../kms""#, OBJECT_NAME),
        ),
        refused(
            "unknown storeRef.kind",
            ms(json!({"storeRef": {"name": "kms", "kind": "Store"}})),
            unsupported(
                "spec.storeRef.kind",
                "Store",
                r#""SecretStore", "ClusterSecretStore""#,
            ),
        ),
        refused(
            "empty KMS secretName",
            ms(json!({"secretName": ""})),
            too_short("spec.secretName", 1),
        ),
        refused(
            "KMS secretName with NUL",
            ms(json!({"secretName": "db\u{0}cred"})),
            must_match("spec.secretName", r#""db\x00cred""#, KMS_NAME),
        ),
        refused(
            "KMS secretName with a newline",
            ms(json!({"secretName": "db\ncred"})),
            must_match("spec.secretName", r#""db\ncred""#, KMS_NAME),
        ),
        refused(
            "KMS secretName with a space",
            ms(json!({"secretName": "db cred"})),
            must_match("spec.secretName", r#""db cred""#, KMS_NAME),
        ),
        refused(
            "KMS secretName of 513 characters",
            ms(json!({"secretName": "s".repeat(513)})),
            too_long("spec.secretName", 512),
        ),
        refused(
            "missing secretName",
            merged(ms(json!({})), json!({"spec": {"secretName": null}})),
            "spec.secretName: Required value",
        ),
        refused(
            "missing spec",
            merged(ms(json!({})), json!({"spec": null})),
            "spec: Required value",
        ),
        refused(
            "target.name with ../",
            ms(json!({"target": {"name": "../other"}})),
            must_match("spec.target.name", r#""../other""#, OBJECT_NAME),
        ),
        refused(
            "rolloutRestart name with a space",
            ms(json!({"rolloutRestart": [{"kind": "Deployment", "name": "my api"}]})),
            must_match("spec.rolloutRestart[0].name", r#""my api""#, OBJECT_NAME),
        ),
        refused(
            "rolloutRestart of a Pod",
            ms(json!({"rolloutRestart": [{"kind": "Pod", "name": "api"}]})),
            unsupported(
                "spec.rolloutRestart[0].kind",
                "Pod",
                r#""Deployment", "StatefulSet", "DaemonSet""#,
            ),
        ),
        // -- Secret data keys -------------------------------------------------------------------
        refused(
            "empty secret key",
            ms(json!({"data": [{"key": ""}]})),
            too_short("spec.data[0].key", 1),
        ),
        refused(
            "secret key with NUL",
            ms(json!({"data": [{"key": "pass\u{0}word"}]})),
            must_match("spec.data[0].key", r#""pass\x00word""#, SECRET_KEY),
        ),
        refused(
            "secret key with a newline",
            ms(json!({"data": [{"key": "pass\nword"}]})),
            must_match("spec.data[0].key", r#""pass\nword""#, SECRET_KEY),
        ),
        refused(
            "secret key ../x (pattern)",
            ms(json!({"data": [{"key": "../x"}]})),
            must_match("spec.data[0].key", r#""../x""#, SECRET_KEY),
        ),
        refused(
            "secret key ../x (rule)",
            ms(json!({"data": [{"key": "../x"}]})),
            rule("spec.data[0].key", "string", DOT_KEY),
        ),
        refused(
            "secret key a/b",
            ms(json!({"data": [{"key": "a/b"}]})),
            must_match("spec.data[0].key", r#""a/b""#, SECRET_KEY),
        ),
        refused(
            "secret key '.'",
            ms(json!({"data": [{"key": "."}]})),
            rule("spec.data[0].key", "string", DOT_KEY),
        ),
        refused(
            "secret key '..data'",
            ms(json!({"data": [{"key": "..data"}]})),
            rule("spec.data[0].key", "string", DOT_KEY),
        ),
        refused(
            "secret key of 254 characters",
            ms(json!({"data": [{"key": long_key}]})),
            too_long("spec.data[0].key", 253),
        ),
        refused(
            "secret key with a space",
            ms(json!({"data": [{"key": "db password"}]})),
            must_match("spec.data[0].key", r#""db password""#, SECRET_KEY),
        ),
        refused(
            "secret key with '='",
            ms(json!({"data": [{"key": "a=b"}]})),
            must_match("spec.data[0].key", r#""a=b""#, SECRET_KEY),
        ),
        refused(
            "secret key in Cyrillic",
            ms(json!({"data": [{"key": "пароль"}]})),
            must_match("spec.data[0].key", r#""пароль""#, SECRET_KEY),
        ),
        refused(
            "duplicate secret keys",
            ms(json!({"data": [{"key": "pwd", "property": "a"}, {"key": "pwd", "property": "b"}]})),
            rule("spec.data", "array", "data keys must be unique"),
        ),
        // -- JSON properties --------------------------------------------------------------------
        refused(
            "empty property",
            ms(json!({"data": [{"key": "k", "property": ""}]})),
            too_short("spec.data[0].property", 1),
        ),
        refused(
            "property with NUL",
            ms(json!({"data": [{"key": "k", "property": "p\u{0}wd"}]})),
            must_match("spec.data[0].property", r#""p\x00wd""#, NO_CONTROL),
        ),
        refused(
            "property with a tab",
            ms(json!({"data": [{"key": "k", "property": "p\twd"}]})),
            must_match("spec.data[0].property", r#""p\twd""#, NO_CONTROL),
        ),
        refused(
            "property of 1025 characters",
            ms(json!({"data": [{"key": "k", "property": "p".repeat(1025)}]})),
            too_long("spec.data[0].property", 1024),
        ),
        // -- version stages and ids -------------------------------------------------------------
        refused(
            "version stage with a space",
            ms(json!({"versionStage": "ACS Current"})),
            must_match("spec.versionStage", r#""ACS Current""#, STAGE),
        ),
        refused(
            "empty version stage",
            ms(json!({"versionStage": ""})),
            must_match("spec.versionStage", r#""""#, STAGE),
        ),
        refused(
            "version stage of 65 characters",
            ms(json!({"versionStage": "S".repeat(65)})),
            must_match(
                "spec.versionStage",
                &format!("\"{}\"", "S".repeat(65)),
                STAGE,
            ),
        ),
        refused(
            "version id with ../",
            ms(json!({"versionId": "v1/../v2"})),
            must_match("spec.versionId", r#""v1/../v2""#, VERSION_ID),
        ),
        refused(
            "data entry stage with NUL",
            ms(json!({"data": [{"key": "k", "versionStage": "ACS\u{0}"}]})),
            must_match("spec.data[0].versionStage", r#""ACS\x00""#, STAGE),
        ),
        refused(
            "data entry version id with a space",
            ms(json!({"data": [{"key": "k", "versionId": "v 1"}]})),
            must_match("spec.data[0].versionId", r#""v 1""#, VERSION_ID),
        ),
        refused(
            "versionStage and versionId together",
            ms(json!({"versionStage": "ACSCurrent", "versionId": "v1"})),
            rule("spec", "object", "set versionStage or versionId, not both"),
        ),
        refused(
            "data entry with stage and id",
            ms(json!({"data": [{"key": "k", "versionStage": "ACSPrevious", "versionId": "v1"}]})),
            rule(
                "spec.data[0]",
                "object",
                "a data entry may set versionStage or versionId, not both",
            ),
        ),
        refused(
            "pendingStage with a space",
            rotation(
                json!({"strategy": "Staged", "pendingStage": "my stage", "register": {"manualApproval": {}}}),
            ),
            must_match("spec.rotation.pendingStage", r#""my stage""#, STAGE),
        ),
        refused(
            "pendingStage ACSCurrent",
            rotation(
                json!({"strategy": "Staged", "pendingStage": "ACSCurrent", "register": {"manualApproval": {}}}),
            ),
            rule(
                "spec.rotation.pendingStage",
                "string",
                "pendingStage must be a custom label, not ACSCurrent or ACSPrevious",
            ),
        ),
        // -- durations --------------------------------------------------------------------------
        refused(
            "refreshInterval 'hourly'",
            ms(json!({"refreshInterval": "hourly"})),
            must_match("spec.refreshInterval", r#""hourly""#, REFRESH),
        ),
        refused(
            "refreshInterval in days",
            ms(json!({"refreshInterval": "1d"})),
            must_match("spec.refreshInterval", r#""1d""#, REFRESH),
        ),
        refused(
            "negative refreshInterval",
            ms(json!({"refreshInterval": "-1h"})),
            must_match("spec.refreshInterval", r#""-1h""#, REFRESH),
        ),
        refused(
            "refreshInterval below 10s",
            ms(json!({"refreshInterval": "5s"})),
            rule("spec.refreshInterval", "string", REFRESH_BOUNDS),
        ),
        refused(
            "refreshInterval above 720h",
            ms(json!({"refreshInterval": "721h"})),
            rule("spec.refreshInterval", "string", REFRESH_BOUNDS),
        ),
        refused(
            "refreshInterval of 33 characters",
            ms(json!({"refreshInterval": format!("{}s", "1".repeat(32))})),
            too_long("spec.refreshInterval", 32),
        ),
        refused(
            "rotation interval below 10m",
            rotation(json!({"interval": "5m"})),
            rule(
                "spec.rotation.interval",
                "string",
                "rotation.interval must be at least 10m",
            ),
        ),
        refused(
            "rotation interval in weeks",
            rotation(json!({"interval": "1w"})),
            must_match("spec.rotation.interval", r#""1w""#, DURATION),
        ),
        refused(
            "rotation minInterval 'soon'",
            rotation(json!({"minInterval": "soon"})),
            must_match("spec.rotation.minInterval", r#""soon""#, DURATION),
        ),
        refused(
            "webhook timeout without a unit",
            webhook(json!({"timeout": "10"})),
            must_match(
                "spec.rotation.register.webhook.timeout",
                r#""10""#,
                DURATION,
            ),
        ),
        refused(
            "webhook timeout 0s",
            webhook(json!({"timeout": "0s"})),
            rule(
                "spec.rotation.register.webhook.timeout",
                "string",
                "webhook timeout must be between 1s and 5m",
            ),
        ),
        refused(
            "webhook timeout of an hour",
            webhook(json!({"timeout": "1h"})),
            rule(
                "spec.rotation.register.webhook.timeout",
                "string",
                "webhook timeout must be between 1s and 5m",
            ),
        ),
        // -- cron schedules (syntax; ranges are the controller's, see the runtime rows) --------
        refused(
            "cron with four fields",
            rotation(json!({"interval": null, "schedule": "10 13 * *"})),
            must_match("spec.rotation.schedule", r#""10 13 * *""#, CRON),
        ),
        refused(
            "cron with six fields",
            rotation(json!({"interval": null, "schedule": "0 0 3 * * 0"})),
            must_match("spec.rotation.schedule", r#""0 0 3 * * 0""#, CRON),
        ),
        refused(
            "cron with a shell character",
            rotation(json!({"interval": null, "schedule": "0 3 * * $(id)"})),
            must_match("spec.rotation.schedule", r#""0 3 * * $(id)""#, CRON),
        ),
        refused(
            "cron macro @midnight",
            rotation(json!({"interval": null, "schedule": "@midnight"})),
            must_match("spec.rotation.schedule", r#""@midnight""#, CRON),
        ),
        refused(
            "cron too short",
            rotation(json!({"interval": null, "schedule": "@daily"})),
            r#"spec.rotation.schedule: Invalid value: "@daily": spec.rotation.schedule in body should be at least 9 chars long"#,
        ),
        // -- oversize -------------------------------------------------------------------------
        refused(
            "101 data entries",
            ms(json!({"data": many_data})),
            too_many("spec.data", 101, 100),
        ),
        refused(
            "21 rolloutRestart targets",
            ms(json!({"rolloutRestart": many_rollouts})),
            too_many("spec.rolloutRestart", 21, 20),
        ),
        refused(
            "template over 30 KiB",
            rotation(json!({"generate": {"template": "x".repeat(30721)}})),
            too_long("spec.rotation.generate.template", 30720),
        ),
        refused(
            "21 KMS tags",
            rotation(json!({"createIfMissing": {"tags": many(21, "v")}})),
            too_many("spec.rotation.createIfMissing.tags", 21, 20),
        ),
        refused(
            "65 target labels",
            ms(json!({"target": {"labels": many(65, "v")}})),
            too_many("spec.target.labels", 65, 64),
        ),
        refused(
            "65 target annotations",
            ms(json!({"target": {"annotations": many(65, "v")}})),
            too_many("spec.target.annotations", 65, 64),
        ),
        refused(
            "label value of 64 characters",
            ms(json!({"target": {"labels": {"team": "t".repeat(64)}}})),
            too_long("spec.target.labels.team", 63),
        ),
        refused(
            "excludeCharacters over 128",
            rotation(json!({"generate": {"password": {"excludeCharacters": "x".repeat(129)}}})),
            too_long("spec.rotation.generate.password.excludeCharacters", 128),
        ),
        refused(
            "password of 7 characters",
            rotation(json!({"generate": {"password": {"length": 7}}})),
            "spec.rotation.generate.password.length: Invalid value: 7: spec.rotation.generate.password.length in body should be greater than or equal to 8",
        ),
        refused(
            "password of 129 characters",
            rotation(json!({"generate": {"password": {"length": 129}}})),
            "spec.rotation.generate.password.length: Invalid value: 129: spec.rotation.generate.password.length in body should be less than or equal to 128",
        ),
        // -- target metadata --------------------------------------------------------------------
        refused(
            "label key with a space",
            ms(json!({"target": {"labels": {"my team": "a"}}})),
            rule(
                "spec.target.labels",
                "object",
                "target.labels keys must be valid label keys: an optional DNS subdomain prefix and '/', then at most 63 characters of [-._a-zA-Z0-9] starting and ending alphanumeric",
            ),
        ),
        refused(
            "label value with a space",
            ms(json!({"target": {"labels": {"team": "a b"}}})),
            must_match("spec.target.labels.team", r#""a b""#, LABEL_VALUE),
        ),
        refused(
            "annotation key with two slashes",
            ms(json!({"target": {"annotations": {"a/b/c": "x"}}})),
            rule(
                "spec.target.annotations",
                "object",
                "target.annotations keys must be valid annotation keys: an optional DNS subdomain prefix and '/', then at most 63 characters of [-._a-zA-Z0-9] starting and ending alphanumeric",
            ),
        ),
        refused(
            "Secret type with NUL",
            ms(json!({"target": {"type": "Opaque\u{0}"}})),
            must_match("spec.target.type", r#""Opaque\x00""#, PRINTABLE),
        ),
        refused(
            "Secret type service-account-token",
            ms(json!({"target": {"type": "kubernetes.io/service-account-token"}})),
            rule(
                "spec.target.type",
                "string",
                "target.type kubernetes.io/service-account-token is not allowed: kmsync never writes service account tokens",
            ),
        ),
        // -- wrong types ------------------------------------------------------------------------
        refused(
            "refreshInterval as a number",
            ms(json!({"refreshInterval": 3600})),
            wrong_type("spec.refreshInterval", "integer", "string"),
        ),
        refused(
            "storeRef as a string",
            ms(json!({"storeRef": "kms"})),
            wrong_type("spec.storeRef", "string", "object"),
        ),
        refused(
            "data as a string",
            ms(json!({"data": "password"})),
            wrong_type("spec.data", "string", "array"),
        ),
        refused(
            "data as an object",
            ms(json!({"data": {"key": "password"}})),
            unknown_field("spec.data.key"),
        ),
        refused(
            "dataFrom.extract as a string",
            ms(json!({"dataFrom": {"extract": "yes"}})),
            wrong_type("spec.dataFrom.extract", "string", "boolean"),
        ),
        refused(
            "optional as a string",
            ms(json!({"data": [{"key": "k", "optional": "true"}]})),
            wrong_type("spec.data[0].optional", "string", "boolean"),
        ),
        refused(
            "rotation as a string",
            ms(json!({"rotation": "720h"})),
            wrong_type("spec.rotation", "string", "object"),
        ),
        refused(
            "password length as a string",
            rotation(json!({"generate": {"password": {"length": "32"}}})),
            wrong_type(
                "spec.rotation.generate.password.length",
                "string",
                "integer",
            ),
        ),
        refused(
            "strategy in lower case",
            rotation(json!({"strategy": "immediate"})),
            unsupported(
                "spec.rotation.strategy",
                "immediate",
                r#""Immediate", "Staged""#,
            ),
        ),
        refused(
            "creationPolicy Replace",
            ms(json!({"target": {"creationPolicy": "Replace"}})),
            unsupported(
                "spec.target.creationPolicy",
                "Replace",
                r#""Owner", "Adopt", "Merge""#,
            ),
        ),
        refused(
            "deletionPolicy Orphan",
            ms(json!({"target": {"deletionPolicy": "Orphan"}})),
            unsupported(
                "spec.target.deletionPolicy",
                "Orphan",
                r#""Retain", "Delete""#,
            ),
        ),
        refused(
            "misspelt field secretname",
            ms(json!({"secretname": "db_cred"})),
            unknown_field("spec.secretname"),
        ),
        // -- conflicting policies ---------------------------------------------------------------
        refused(
            "rotation with interval and schedule",
            rotation(json!({"schedule": "0 3 * * 0"})),
            rule("spec.rotation", "object", SCHEDULE_ONE),
        ),
        refused(
            "rotation with neither interval nor schedule",
            rotation(json!({"interval": null})),
            rule("spec.rotation", "object", SCHEDULE_ONE),
        ),
        refused(
            "minInterval longer than interval",
            rotation(json!({"minInterval": "1000h"})),
            rule(
                "spec.rotation",
                "object",
                "rotation.minInterval must not be longer than rotation.interval",
            ),
        ),
        refused(
            "rotation of a pinned versionId",
            ms(json!({"versionId": "v1", "rotation": {"interval": "720h"}})),
            rule(
                "spec",
                "object",
                "rotation cannot be combined with a pinned versionId: the Secret would never receive the rotated versions",
            ),
        ),
        refused(
            "Staged without register",
            rotation(json!({"strategy": "Staged"})),
            rule(
                "spec.rotation",
                "object",
                "the Staged strategy needs register (postgres, webhook or manualApproval) to hand the new credential to the target system",
            ),
        ),
        refused(
            "register on Immediate",
            rotation(json!({"register": {"manualApproval": {}}})),
            rule(
                "spec.rotation",
                "object",
                "register applies only to the Staged strategy",
            ),
        ),
        refused(
            "two register back-ends",
            staged(
                json!({"manualApproval": {}, "webhook": {"url": "https://hooks.invalid/rotate",
                    "signingSecretRef": {"name": "hook-key"}}}),
            ),
            rule(
                "spec.rotation.register",
                "object",
                "register must set exactly one of postgres, webhook or manualApproval",
            ),
        ),
        refused(
            "password without any character class",
            rotation(
                json!({"generate": {"password": {"excludeLowercase": true, "excludeUppercase": true, "excludeNumbers": true, "excludePunctuation": true}}}),
            ),
            rule(
                "spec.rotation.generate.password",
                "object",
                "generate.password cannot exclude every character class",
            ),
        ),
        refused(
            "sslMode disable off loopback",
            postgres(json!({"sslMode": "disable"})),
            rule(
                "spec.rotation.register.postgres",
                "object",
                "sslMode disable is allowed only for loopback hosts (localhost, 127.x.x.x, ::1): use require or verify-full",
            ),
        ),
        refused(
            "plain http webhook off loopback",
            webhook(json!({"url": "http://hooks.invalid/rotate"})),
            rule(
                "spec.rotation.register.webhook.url",
                "string",
                "webhook url must be https:// (plain http:// only for loopback)",
            ),
        ),
        // -- register back-ends -----------------------------------------------------------------
        refused(
            "webhook url without a host",
            webhook(json!({"url": "https://"})),
            rule(
                "spec.rotation.register.webhook.url",
                "string",
                &format!("webhook url {URL_HOST}"),
            ),
        ),
        refused(
            "webhook url with NUL",
            webhook(json!({"url": "https://hooks\u{0}.invalid/"})),
            rule(
                "spec.rotation.register.webhook.url",
                "string",
                &format!("webhook url {URL_HOST}"),
            ),
        ),
        refused(
            "postgres host with a path",
            postgres(json!({"host": "db.invalid/admin"})),
            must_match(
                "spec.rotation.register.postgres.host",
                r#""db.invalid/admin""#,
                HOST,
            ),
        ),
        refused(
            "postgres port 0",
            postgres(json!({"port": 0})),
            "spec.rotation.register.postgres.port: Invalid value: 0: spec.rotation.register.postgres.port in body should be greater than or equal to 1",
        ),
        refused(
            "postgres port as a string",
            postgres(json!({"port": "5432"})),
            wrong_type("spec.rotation.register.postgres.port", "string", "integer"),
        ),
        refused(
            "postgres database with NUL",
            postgres(json!({"database": "app\u{0}"})),
            must_match(
                "spec.rotation.register.postgres.database",
                r#""app\x00""#,
                NO_CONTROL,
            ),
        ),
        refused(
            "postgres admin Secret name with ../",
            postgres(json!({"adminSecretRef": {"name": "../pg-admin"}})),
            must_match(
                "spec.rotation.register.postgres.adminSecretRef.name",
                r#""../pg-admin""#,
                OBJECT_NAME,
            ),
        ),
        refused(
            "postgres admin password key with /",
            postgres(json!({"adminSecretRef": {"name": "pg-admin", "passwordKey": "a/b"}})),
            must_match(
                "spec.rotation.register.postgres.adminSecretRef.passwordKey",
                r#""a/b""#,
                SECRET_KEY,
            ),
        ),
        refused(
            "postgres sslMode unknown",
            postgres(json!({"sslMode": "prefer"})),
            must_match(
                "spec.rotation.register.postgres.sslMode",
                r#""prefer""#,
                "^(disable|require|verify-full)$",
            ),
        ),
        // -- SecretStore ------------------------------------------------------------------------
        refused(
            "empty regionId",
            store(json!({"regionId": ""})),
            too_short("spec.regionId", 1),
        ),
        refused(
            "regionId in upper case",
            store(json!({"regionId": "CN-Hangzhou"})),
            must_match("spec.regionId", r#""CN-Hangzhou""#, "^[a-z0-9-]+$"),
        ),
        refused(
            "regionId with NUL",
            store(json!({"regionId": "cn\u{0}"})),
            must_match("spec.regionId", r#""cn\x00""#, "^[a-z0-9-]+$"),
        ),
        refused(
            "endpoint ftp://",
            store(json!({"endpoint": "ftp://kms.invalid"})),
            rule(
                "spec.endpoint",
                "string",
                "endpoint must be an https:// URL; plain http:// is allowed only for loopback addresses such as the local emulator",
            ),
        ),
        refused(
            "plain http endpoint off loopback",
            store(json!({"endpoint": "http://kms.invalid"})),
            rule(
                "spec.endpoint",
                "string",
                "endpoint must be an https:// URL; plain http:// is allowed only for loopback addresses such as the local emulator",
            ),
        ),
        refused(
            "endpoint without a host",
            store(json!({"endpoint": "https://"})),
            rule("spec.endpoint", "string", &format!("endpoint {URL_HOST}")),
        ),
        refused(
            "endpoint with a space",
            store(json!({"endpoint": "https://kms .invalid"})),
            rule("spec.endpoint", "string", &format!("endpoint {URL_HOST}")),
        ),
        refused(
            "endpoint with NUL",
            store(json!({"endpoint": "https://kms\u{0}.invalid"})),
            rule("spec.endpoint", "string", &format!("endpoint {URL_HOST}")),
        ),
        refused(
            "endpoint and network together",
            store(json!({"endpoint": "https://kms.invalid", "network": "Vpc"})),
            rule(
                "<nil>",
                "object",
                "network only picks the default endpoint: set endpoint or network, not both",
            ),
        ),
        refused(
            "unknown network",
            store(json!({"endpoint": null, "network": "Private"})),
            unsupported("spec.network", "Private", r#""Public", "Vpc", "null""#),
        ),
        refused(
            "store without auth method",
            store(json!({"auth": {"accessKey": null}})),
            rule("spec.auth", "object", AUTH_ONE),
        ),
        refused(
            "store with two auth methods",
            store(json!({"auth": {"default": {}}})),
            rule("spec.auth", "object", AUTH_ONE),
        ),
        refused(
            "auth as a list",
            store(json!({"auth": []})),
            wrong_type("spec.auth", "array", "object"),
        ),
        refused(
            "empty credentials Secret name",
            store(json!({"auth": {"accessKey": {"secretRef": {"name": ""}}}})),
            too_short("spec.auth.accessKey.secretRef.name", 1),
        ),
        refused(
            "credentials Secret name with NUL",
            store(json!({"auth": {"accessKey": {"secretRef": {"name": "creds\u{0}"}}}})),
            must_match(
                "spec.auth.accessKey.secretRef.name",
                r#""creds\x00""#,
                OBJECT_NAME,
            ),
        ),
        refused(
            "credentials Secret name with ../",
            store(json!({"auth": {"accessKey": {"secretRef": {"name": "../creds"}}}})),
            must_match(
                "spec.auth.accessKey.secretRef.name",
                r#""../creds""#,
                OBJECT_NAME,
            ),
        ),
        refused(
            "SecretStore credentials from another namespace",
            store(json!({"auth": {"accessKey": {"secretRef": {"namespace": "other"}}}})),
            rule(
                "<nil>",
                "object",
                "a SecretStore reads its credentials Secret from its own namespace: remove auth.accessKey.secretRef.namespace (use a ClusterSecretStore to share credentials)",
            ),
        ),
        refused(
            "AccessKey id key ../id",
            store(json!({"auth": {"accessKey": {"secretRef": {"accessKeyIdKey": "../id"}}}})),
            must_match(
                "spec.auth.accessKey.secretRef.accessKeyIdKey",
                r#""../id""#,
                SECRET_KEY,
            ),
        ),
        refused(
            "empty AccessKey secret key",
            store(json!({"auth": {"accessKey": {"secretRef": {"accessKeySecretKey": ""}}}})),
            too_short("spec.auth.accessKey.secretRef.accessKeySecretKey", 1),
        ),
        refused(
            "security token key of 254 characters",
            store(
                json!({"auth": {"accessKey": {"secretRef": {"securityTokenKey": "t".repeat(254)}}}}),
            ),
            too_long("spec.auth.accessKey.secretRef.securityTokenKey", 253),
        ),
        refused(
            "RRSA role ARN of another cloud",
            store(
                json!({"auth": {"accessKey": null, "rrsa": {"roleArn": "arn:aws:iam::1:role/x", "oidcProviderArn": "acs:ram::1:oidc-provider/p"}}}),
            ),
            must_match(
                "spec.auth.rrsa.roleArn",
                r#""arn:aws:iam::1:role/x""#,
                ROLE_ARN,
            ),
        ),
        refused(
            "RRSA role ARN with NUL",
            store(
                json!({"auth": {"accessKey": null, "rrsa": {"roleArn": "acs:ram::1:role/x\u{0}", "oidcProviderArn": "acs:ram::1:oidc-provider/p"}}}),
            ),
            must_match(
                "spec.auth.rrsa.roleArn",
                r#""acs:ram::1:role/x\x00""#,
                ROLE_ARN,
            ),
        ),
        refused(
            "RRSA session name with a space",
            store(
                json!({"auth": {"accessKey": null, "rrsa": {"roleArn": "acs:ram::1:role/x", "oidcProviderArn": "acs:ram::1:oidc-provider/p", "sessionName": "my session"}}}),
            ),
            must_match("spec.auth.rrsa.sessionName", r#""my session""#, RAM_NAME),
        ),
        refused(
            "RRSA ServiceAccount name with NUL",
            store(
                json!({"auth": {"accessKey": null, "rrsa": {"roleArn": "acs:ram::1:role/x", "oidcProviderArn": "acs:ram::1:oidc-provider/p", "serviceAccountRef": {"name": "sa\u{0}"}}}}),
            ),
            must_match(
                "spec.auth.rrsa.serviceAccountRef.name",
                r#""sa\x00""#,
                OBJECT_NAME,
            ),
        ),
        refused(
            "11 RRSA audiences",
            store(
                json!({"auth": {"accessKey": null, "rrsa": {"roleArn": "acs:ram::1:role/x", "oidcProviderArn": "acs:ram::1:oidc-provider/p", "serviceAccountRef": {"name": "sa", "audiences": (0..11).map(|i| format!("aud-{i}")).collect::<Vec<_>>()}}}}),
            ),
            too_many("spec.auth.rrsa.serviceAccountRef.audiences", 11, 10),
        ),
        refused(
            "ECS role name with NUL",
            store(json!({"auth": {"accessKey": null, "ecsRamRole": {"roleName": "role\u{0}"}}})),
            must_match("spec.auth.ecsRamRole.roleName", r#""role\x00""#, RAM_NAME),
        ),
        refused(
            "assumeRole external id with a newline",
            store(
                json!({"auth": {"assumeRole": {"roleArn": "acs:ram::1:role/x", "externalId": "ext\nid"}}}),
            ),
            must_match("spec.auth.assumeRole.externalId", r#""ext\nid""#, PRINTABLE),
        ),
        refused(
            "assumeRole of 100 seconds",
            store(
                json!({"auth": {"assumeRole": {"roleArn": "acs:ram::1:role/x", "durationSeconds": 100}}}),
            ),
            "spec.auth.assumeRole.durationSeconds: Invalid value: 100: spec.auth.assumeRole.durationSeconds in body should be greater than or equal to 900",
        ),
        refused(
            "assumeRole duration as a string",
            store(
                json!({"auth": {"assumeRole": {"roleArn": "acs:ram::1:role/x", "durationSeconds": "3600"}}}),
            ),
            wrong_type("spec.auth.assumeRole.durationSeconds", "string", "integer"),
        ),
        refused(
            "rate limit of 0 qps",
            store(json!({"rateLimit": {"qps": 0}})),
            "spec.rateLimit.qps: Invalid value: 0: spec.rateLimit.qps in body should be greater than or equal to 1",
        ),
        refused(
            "rate limit qps as a string",
            store(json!({"rateLimit": {"qps": "10"}})),
            wrong_type("spec.rateLimit.qps", "string", "integer"),
        ),
        refused(
            "burst below qps",
            store(json!({"rateLimit": {"qps": 10, "burst": 5}})),
            rule(
                "spec.rateLimit",
                "object",
                "rateLimit.burst must be at least rateLimit.qps",
            ),
        ),
        refused(
            "misspelt field regionID",
            store(json!({"regionID": "cn-hangzhou"})),
            unknown_field("spec.regionID"),
        ),
        // -- ClusterSecretStore -----------------------------------------------------------------
        refused(
            "cluster store without credentials namespace",
            cluster_store(json!({"auth": {"accessKey": {"secretRef": {"namespace": null}}}})),
            rule(
                "<nil>",
                "object",
                "a ClusterSecretStore must name the namespace of its credentials Secret in auth.accessKey.secretRef.namespace",
            ),
        ),
        refused(
            "credentials namespace with NUL",
            cluster_store(json!({"auth": {"accessKey": {"secretRef": {"namespace": "ops\u{0}"}}}})),
            must_match(
                "spec.auth.accessKey.secretRef.namespace",
                r#""ops\x00""#,
                NAMESPACE,
            ),
        ),
        refused(
            "credentials namespace in upper case",
            cluster_store(json!({"auth": {"accessKey": {"secretRef": {"namespace": "Ops"}}}})),
            must_match(
                "spec.auth.accessKey.secretRef.namespace",
                r#""Ops""#,
                NAMESPACE,
            ),
        ),
        refused(
            "RRSA ServiceAccount without namespace",
            cluster_store(
                json!({"auth": {"accessKey": null, "rrsa": {"roleArn": "acs:ram::1:role/x", "oidcProviderArn": "acs:ram::1:oidc-provider/p", "serviceAccountRef": {"name": "sa"}}}}),
            ),
            rule(
                "<nil>",
                "object",
                "a ClusterSecretStore must name the namespace of auth.rrsa.serviceAccountRef",
            ),
        ),
        refused(
            "empty condition",
            cluster_store(json!({"conditions": [{}]})),
            rule(
                "spec.conditions[0]",
                "object",
                "each condition needs namespaces or a namespaceSelector",
            ),
        ),
        refused(
            "condition namespace with NUL",
            cluster_store(json!({"conditions": [{"namespaces": ["team-a\u{0}"]}]})),
            must_match(
                "spec.conditions[0].namespaces[0]",
                r#""team-a\x00""#,
                NAMESPACE,
            ),
        ),
        refused(
            "condition namespace with ../",
            cluster_store(json!({"conditions": [{"namespaces": ["../team-a"]}]})),
            must_match(
                "spec.conditions[0].namespaces[0]",
                r#""../team-a""#,
                NAMESPACE,
            ),
        ),
        refused(
            "65 conditions",
            cluster_store(json!({"conditions": vec![json!({"namespaces": ["team-a"]}); 65]})),
            too_many("spec.conditions", 65, 64),
        ),
        refused(
            "conditions as a string",
            cluster_store(json!({"conditions": "team-a"})),
            wrong_type("spec.conditions", "string", "array"),
        ),
        refused(
            "selector operator Like",
            cluster_store(
                json!({"conditions": [{"namespaceSelector": {"matchExpressions": [{"key": "tier", "operator": "Like", "values": ["a"]}]}}]}),
            ),
            unsupported(
                "spec.conditions[0].namespaceSelector.matchExpressions[0].operator",
                "Like",
                r#""In", "NotIn", "Exists", "DoesNotExist""#,
            ),
        ),
        refused(
            "selector In without values",
            cluster_store(
                json!({"conditions": [{"namespaceSelector": {"matchExpressions": [{"key": "tier", "operator": "In"}]}}]}),
            ),
            rule(
                "spec.conditions[0].namespaceSelector.matchExpressions[0]",
                "object",
                SELECTOR_VALUES,
            ),
        ),
        refused(
            "selector Exists with values",
            cluster_store(
                json!({"conditions": [{"namespaceSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists", "values": ["a"]}]}}]}),
            ),
            rule(
                "spec.conditions[0].namespaceSelector.matchExpressions[0]",
                "object",
                SELECTOR_VALUES,
            ),
        ),
        refused(
            "empty allowedSecrets entry",
            cluster_store(json!({"allowedSecrets": [""]})),
            too_short("spec.allowedSecrets[0]", 1),
        ),
        refused(
            "allowedSecrets entry with NUL",
            cluster_store(json!({"allowedSecrets": ["db\u{0}"]})),
            must_match("spec.allowedSecrets[0]", r#""db\x00""#, ALLOWED_SECRET),
        ),
        refused(
            "allowedSecrets wildcard in the middle",
            cluster_store(json!({"allowedSecrets": ["team-*-db"]})),
            must_match("spec.allowedSecrets[0]", r#""team-*-db""#, ALLOWED_SECRET),
        ),
        refused(
            "257 allowedSecrets",
            cluster_store(
                json!({"allowedSecrets": (0..257).map(|i| format!("s{i}")).collect::<Vec<_>>()}),
            ),
            too_many("spec.allowedSecrets", 257, 256),
        ),
        refused(
            "cluster store endpoint and network",
            cluster_store(json!({"network": "Public"})),
            rule(
                "<nil>",
                "object",
                "network only picks the default endpoint: set endpoint or network, not both",
            ),
        ),
        // -- accepted, but only the controller can tell: the exact Ready reason -----------------
        reason(
            "cron minute 61",
            rotation(json!({"interval": null, "schedule": "61 * * * *"})),
            "InvalidSpec",
        ),
        reason(
            "cron hour 24",
            rotation(json!({"interval": null, "schedule": "0 24 * * *"})),
            "InvalidSpec",
        ),
        reason(
            "cron weekday name that does not exist",
            rotation(json!({"interval": null, "schedule": "0 3 * * FUN"})),
            "InvalidSpec",
        ),
        reason(
            "template with an unknown placeholder",
            rotation(json!({"generate": {"template": r#"{"uname":"app","pwd":"{{ passwd }}"}"#}})),
            "InvalidTemplate",
        ),
        reason(
            "template with an unclosed placeholder",
            rotation(json!({"generate": {"template": r#"{"pwd":"{{ password }"}"#}})),
            "InvalidTemplate",
        ),
        reason(
            "JSON template that is not JSON",
            rotation(json!({"generate": {"template": r#"{"pwd": "{{ password }}",}"#}})),
            "InvalidTemplate",
        ),
        reason(
            "property of a value that is not JSON",
            ms(json!({"secretName": "plain", "data": [{"key": "pwd", "property": "pwd"}]})),
            "InvalidSecretValue",
        ),
        reason(
            "property the value does not have",
            ms(json!({"data": [{"key": "pwd", "property": "password"}]})),
            "PropertyNotFound",
        ),
        reason(
            "nested property the value does not have",
            ms(json!({"data": [{"key": "pwd", "property": "db.password"}]})),
            "PropertyNotFound",
        ),
        reason(
            "extract from a value that is not JSON",
            ms(json!({"secretName": "plain", "dataFrom": {"extract": true}})),
            "InvalidSecretValue",
        ),
        reason(
            "extract of a JSON key that is no Secret key",
            ms(json!({"secretName": "odd_keys", "dataFrom": {"extract": true}})),
            "InvalidSecretKey",
        ),
        reason(
            "versionId that KMS does not have",
            ms(json!({"versionId": "v9"})),
            "VersionNotFound",
        ),
        reason(
            "version stage that KMS does not have",
            ms(json!({"versionStage": "ACSPrevious"})),
            "VersionNotFound",
        ),
        reason(
            "KMS secret that does not exist",
            ms(json!({"secretName": "no_such_secret"})),
            "SecretNotFound",
        ),
        reason(
            "store that does not exist",
            ms(json!({"storeRef": {"name": "no-such-store"}})),
            "StoreNotFound",
        ),
        reason(
            "cluster store that does not exist",
            ms(json!({"storeRef": {"name": "no-such-store", "kind": "ClusterSecretStore"}})),
            "StoreNotFound",
        ),
        reason(
            "TLS Secret type without tls.crt and tls.key",
            ms(json!({"target": {"type": "kubernetes.io/tls"}})),
            "InvalidTarget",
        ),
        reason(
            "dockerconfigjson type without .dockerconfigjson",
            ms(
                json!({"target": {"type": "kubernetes.io/dockerconfigjson"}, "data": [{"key": "config", "property": "uname"}]}),
            ),
            "InvalidTarget",
        ),
        reason(
            "SecretStore whose credentials Secret is missing",
            loopback_store(
                json!({"auth": {"accessKey": {"secretRef": {"name": "absent-credentials"}}}}),
            ),
            "InvalidCredentials",
        ),
        reason(
            "SecretStore naming a key its Secret lacks",
            loopback_store(
                json!({"auth": {"accessKey": {"secretRef": {"name": "kms-credentials", "accessKeyIdKey": "KeyId"}}}}),
            ),
            "InvalidCredentials",
        ),
        reason(
            "ClusterSecretStore whose credentials Secret is missing",
            cluster_store(
                json!({"endpoint": emulator, "auth": {"accessKey": {"secretRef": {"name": "absent-credentials", "namespace": namespace}}}}),
            ),
            "InvalidCredentials",
        ),
        reason_after_edit(
            "edit to a property the value does not have",
            ms(json!({"data": [{"key": "pwd", "property": "pwd"}]})),
            ms(json!({"data": [{"key": "pwd", "property": "password"}]})),
            "PropertyNotFound",
        ),
        reason_after_edit(
            "edit to a cron minute 61 (a schedule is already recorded)",
            rotation(json!({})),
            rotation(json!({"interval": null, "schedule": "61 * * * *"})),
            "InvalidSpec",
        ),
        reason_after_edit(
            "edit to a template with an unknown placeholder",
            rotation(json!({"generate": {"template": r#"{"pwd":"{{ password }}"}"#}})),
            rotation(json!({"generate": {"template": r#"{"pwd":"{{ pasword }}"}"#}})),
            "InvalidTemplate",
        ),
        reason_after_edit(
            "edit of the Secret type of a written Secret",
            ms(json!({})),
            ms(json!({"target": {"type": "example.com/custom"}})),
            "TargetConflict",
        ),
    ]
}

// ---- the runner -----------------------------------------------------------------------------

fn api(client: &kube::Client, kind: &str, namespace: &str) -> Api<DynamicObject> {
    let (group, version) = if kind == "Secret" {
        ("", "v1")
    } else {
        ("kmsync.io", "v1alpha1")
    };
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    if kind == "ClusterSecretStore" {
        Api::all_with(client.clone(), &resource)
    } else {
        Api::namespaced_with(client.clone(), namespace, &resource)
    }
}

async fn names(client: &kube::Client, kind: &str, namespace: &str) -> BTreeSet<String> {
    api(client, kind, namespace)
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("list {kind}: {e}"))
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect()
}

fn apply(namespace: &str, object: &Value) -> std::process::Output {
    let text = serde_json::to_string(object).expect("json");
    kubectl(&["apply", "-n", namespace, "-f", "-"], Some(&text))
}

/// The `Ready` reason once computed for the object's current generation.
async fn ready_reason(
    client: &kube::Client,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Option<String> {
    let object = api(client, kind, namespace).get_opt(name).await.ok()??;
    let generation = object.metadata.generation;
    let conditions = object.data["status"]["conditions"].as_array()?.clone();
    conditions
        .iter()
        .find(|c| c["type"] == "Ready")
        .filter(|c| c["observedGeneration"].as_i64() == generation)
        .and_then(|c| c["reason"].as_str().map(String::from))
}

fn kind_of(object: &Value) -> String {
    object["kind"].as_str().expect("kind").to_string()
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string()
}

/// Which Secret a ManagedSecret writes.
fn target_of(object: &Value) -> String {
    object["spec"]["target"]["name"]
        .as_str()
        .map_or_else(|| name_of(object), String::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_refused_with_its_exact_message_or_reason() {
    let env = SyncEnv::start("bad-input").await;
    let (client, namespace) = (env.client.clone(), env.namespace.clone());
    env.create_kms_secret("db_cred", "v1", r#"{"uname":"app","pwd":"pw-v1-2d81"}"#)
        .await;
    env.create_kms_secret("plain", "v1", "not json at all")
        .await;
    env.create_kms_secret("odd_keys", "v1", r#"{"fine":"1","not a key":"2"}"#)
        .await;
    let kms_creates = env.calls("CreateSecret");

    // Unique names: row-<n> in the namespace; cluster stores carry this run's prefix.
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let mut rows = table(&env.emulator.base_url(), &namespace);
    for (index, row) in rows.iter_mut().enumerate() {
        if row.object["metadata"]["name"].is_null() {
            let name = if kind_of(&row.object) == "ClusterSecretStore" {
                format!("bad-{run}-{index}")
            } else {
                format!("row-{index}")
            };
            row.object = named(row.object.clone(), &name);
        }
        if let Expect::ReasonAfterEdit(_, good) = &mut row.expect {
            *good = named(good.clone(), &name_of(&row.object));
        }
    }

    // Edits start from a synced good object whose Secret must survive the bad edit unchanged.
    let mut before: BTreeMap<String, String> = BTreeMap::new();
    for row in &rows {
        if let Expect::ReasonAfterEdit(_, good) = &row.expect {
            let output = apply(&namespace, good);
            assert!(
                output.status.success(),
                "{}: good object: {}",
                row.what,
                describe(&output)
            );
        }
    }
    for row in &rows {
        if let Expect::ReasonAfterEdit(_, good) = &row.expect {
            let (name, target) = (name_of(good), target_of(good));
            wait_for(
                &format!("{}: the good object synced", row.what),
                60,
                || async {
                    (ready_reason(&client, "ManagedSecret", &namespace, &name).await? == "Synced")
                        .then_some(())
                },
            )
            .await;
            let secret = env
                .secrets()
                .get(&target)
                .await
                .expect("the good object's Secret");
            before.insert(
                target,
                secret.metadata.resource_version.expect("resourceVersion"),
            );
        }
    }

    // Failures by row (`what`); a row counts as handled only when nothing was wrong with it.
    let mut failures: Vec<(&str, String)> = Vec::new();
    let mut accepted = Vec::new();
    for row in &rows {
        let (kind, name) = (kind_of(&row.object), name_of(&row.object));
        let output = apply(&namespace, &row.object);
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        match &row.expect {
            Expect::Refused(message) => {
                if output.status.success() {
                    failures.push((row.what, format!("accepted, wanted {message:?}")));
                } else if !printed.contains(message.as_str()) {
                    failures.push((row.what, format!("wanted {message:?} in:\n{printed}")));
                } else if names(&client, &kind, &namespace).await.contains(&name) {
                    failures.push((row.what, format!("refused, yet {kind} {name:?} exists")));
                }
            }
            Expect::Reason(_) | Expect::ReasonAfterEdit(..) => {
                if output.status.success() {
                    accepted.push(row);
                } else {
                    failures.push((row.what, format!("refused, wanted it accepted: {printed}")));
                }
            }
        }
    }

    // The operator works on all accepted rows at once; poll them together (bounded).
    let wanted = |row: &Row| match &row.expect {
        Expect::Reason(reason) | Expect::ReasonAfterEdit(reason, _) => *reason,
        Expect::Refused(_) => unreachable!("only accepted rows wait for a reason"),
    };
    let mut pending: Vec<(&Row, Option<String>)> = accepted.iter().map(|r| (*r, None)).collect();
    let mut settled = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(90);
    while !pending.is_empty() {
        let mut waiting = Vec::new();
        for (row, _) in pending {
            let (kind, name) = (kind_of(&row.object), name_of(&row.object));
            let seen = ready_reason(&client, &kind, &namespace, &name).await;
            if seen.as_deref() == Some(wanted(row)) {
                settled.push(row);
            } else {
                waiting.push((row, seen));
            }
        }
        pending = waiting;
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    for (row, seen) in &pending {
        let want = wanted(row);
        failures.push((row.what, format!("Ready reason {seen:?}, wanted {want}")));
    }
    // Nothing written: no Secret for a new object, the same Secret for an edit.
    for row in settled {
        if kind_of(&row.object) != "ManagedSecret" {
            continue;
        }
        let target = target_of(&row.object);
        let secret = env.secrets().get_opt(&target).await.expect("get Secret");
        let version = secret.and_then(|s| s.metadata.resource_version);
        if version.as_ref() != before.get(&target) {
            let was = before.get(&target);
            failures.push((
                row.what,
                format!("Secret {target} went from {was:?} to {version:?}"),
            ));
        }
    }

    // A good object applied last proves the operator was live: once it has synced, the only
    // objects and Secrets are those of the setup, the accepted rows and the good objects.
    let control = named(ms(json!({})), "control");
    let output = apply(&namespace, &control);
    assert!(output.status.success(), "control: {}", describe(&output));
    wait_for("the control object synced", 60, || async {
        env.secret_data("control").await.map(drop)
    })
    .await;
    let accepted_names = |kind: &str, extra: &[&str]| -> BTreeSet<String> {
        accepted
            .iter()
            .filter(|row| kind_of(&row.object) == kind)
            .map(|row| name_of(&row.object))
            .chain(extra.iter().map(|name| name.to_string()))
            .collect()
    };
    let mut leftovers = Vec::new();
    let mut compare = |what: &str, found: BTreeSet<String>, wanted: BTreeSet<String>| {
        if found != wanted {
            leftovers.push(format!("{what}: found {found:?}, wanted {wanted:?}"));
        }
    };
    compare(
        "ManagedSecrets",
        names(&client, "ManagedSecret", &namespace).await,
        accepted_names("ManagedSecret", &["control"]),
    );
    compare(
        "SecretStores",
        names(&client, "SecretStore", &namespace).await,
        accepted_names("SecretStore", &["kms"]),
    );
    let prefix = format!("bad-{run}-");
    compare(
        "ClusterSecretStores",
        names(&client, "ClusterSecretStore", &namespace)
            .await
            .into_iter()
            .filter(|name| name.starts_with(&prefix))
            .collect(),
        accepted_names("ClusterSecretStore", &[]),
    );
    let mut secrets: BTreeSet<String> = before.keys().cloned().collect();
    secrets.extend(["kms-credentials".to_string(), "control".to_string()]);
    compare(
        "Secrets",
        names(&client, "Secret", &namespace).await,
        secrets,
    );
    // No rotation, bootstrap or stage move reached KMS.
    for (action, count) in [
        ("CreateSecret", kms_creates),
        ("PutSecretValue", 0),
        ("UpdateSecretVersionStage", 0),
    ] {
        let calls = env.calls(action);
        if calls != count {
            leftovers.push(format!("KMS {action}: {calls} calls, wanted {count}"));
        }
    }

    // Cluster-scoped leftovers would be checked by every later operator on this control plane
    // (a cluster-wide install in another test, say): remove them; the namespace goes with the run.
    let cluster_stores = api(&client, "ClusterSecretStore", &namespace);
    for name in accepted_names("ClusterSecretStore", &[]) {
        cluster_stores
            .delete(&name, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("delete ClusterSecretStore {name}: {e}"));
    }

    let failed: BTreeSet<&str> = failures.iter().map(|(what, _)| *what).collect();
    println!("SOAK bad_inputs_rejected {}", rows.len() - failed.len());
    let report: Vec<String> = failures
        .iter()
        .map(|(what, why)| format!("{what}: {why}"))
        .chain(leftovers)
        .collect();
    assert!(
        report.is_empty(),
        "{} of {} rows were not handled as expected:\n{}",
        failed.len(),
        rows.len(),
        report.join("\n")
    );
}
