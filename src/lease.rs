//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas exactly one
//! reconciles. Acquisition and renewal use optimistic concurrency (the Lease's resourceVersion);
//! a leader that cannot renew within the deadline stops the process rather than risk two writers,
//! and a leader that shuts down gracefully releases the Lease so a standby takes over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};

/// Timing and identity of the election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How long a leader keeps trying to renew before giving up leadership.
    pub renew_deadline: Duration,
    /// Pause between attempts.
    pub retry_period: Duration,
}

impl LeaseConfig {
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Whether `lease` may be taken by `identity` at `now`: free, expired, or already ours.
pub fn can_acquire(lease: &LeaseSpec, identity: &str, now: jiff::Timestamp) -> bool {
    let holder = lease.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == identity {
        return true;
    }
    let (Some(renewed), Some(seconds)) = (&lease.renew_time, lease.lease_duration_seconds) else {
        return true;
    };
    renewed.0 + jiff::SignedDuration::from_secs(i64::from(seconds)) < now
}

/// The spec of a Lease held by `identity`, renewed at `now`.
fn held_spec(
    previous: Option<&LeaseSpec>,
    config: &LeaseConfig,
    now: jiff::Timestamp,
) -> LeaseSpec {
    let previous_holder = previous
        .and_then(|p| p.holder_identity.clone())
        .unwrap_or_default();
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    let taken_over = previous_holder != config.identity;
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(config.lease_duration.as_secs() as i32),
        acquire_time: if taken_over {
            Some(MicroTime(now))
        } else {
            previous.and_then(|p| p.acquire_time.clone())
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if taken_over && !previous_holder.is_empty() {
            transitions + 1
        } else {
            transitions
        }),
        ..LeaseSpec::default()
    }
}

/// One attempt to acquire or renew. `Ok(true)`: we hold the Lease now.
pub async fn try_hold(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = jiff::Timestamp::now();
    match api.get_opt(&config.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(held_spec(None, config, now)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(error),
            }
        }
        Some(mut lease) => {
            let spec = lease.spec.clone().unwrap_or_default();
            if !can_acquire(&spec, &config.identity, now) {
                return Ok(false);
            }
            lease.spec = Some(held_spec(Some(&spec), config, now));
            match api
                .replace(&config.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(error),
            }
        }
    }
}

/// Waits until this replica holds the Lease; returns when the winning attempt started, which is
/// the latest moment the Lease can be counted valid from (its `renewTime` was taken then).
pub async fn acquire(client: &Client, config: &LeaseConfig) -> tokio::time::Instant {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let mut announced = false;
    loop {
        let started = tokio::time::Instant::now();
        // A hung request must not freeze the standby: give up on it and try again.
        match tokio::time::timeout(config.renew_deadline, try_hold(&api, config)).await {
            Ok(Ok(true)) => {
                tracing::info!(lease = %config.name, identity = %config.identity, "acquired leadership");
                return started;
            }
            Ok(Ok(false)) if !announced => {
                tracing::info!(lease = %config.name, "another replica leads; standing by");
                announced = true;
            }
            Ok(Ok(false)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot read or write the leader Lease"),
            Err(_) => tracing::warn!("reading or writing the leader Lease timed out"),
        }
        tokio::time::sleep(config.retry_period).await;
    }
}

/// Renews until a renewal has failed for longer than the deadline, then returns (leadership lost).
/// `held_since` is when the last successful attempt started. Each attempt is bounded by the
/// deadline, and a renewal counts from when its attempt started: a request that hangs or succeeds
/// late must not keep this replica writing after the standbys see the Lease expire.
pub async fn keep(client: &Client, config: &LeaseConfig, held_since: tokio::time::Instant) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let mut last_renewal = held_since;
    loop {
        tokio::time::sleep(config.retry_period).await;
        let started = tokio::time::Instant::now();
        let deadline = last_renewal + config.renew_deadline;
        match tokio::time::timeout_at(deadline, try_hold(&api, config)).await {
            Ok(Ok(true)) => last_renewal = started,
            Ok(Ok(false)) => {
                tracing::error!(lease = %config.name, "another replica took the Lease");
                return;
            }
            Ok(Err(error)) => tracing::warn!(%error, "cannot renew the leader Lease"),
            Err(_) => {}
        }
        if last_renewal.elapsed() >= config.renew_deadline {
            tracing::error!(lease = %config.name, "could not renew the Lease in time");
            return;
        }
    }
}

/// Gives the Lease up (graceful shutdown) so a standby need not wait for it to expire.
pub async fn release(client: &Client, config: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let Ok(Some(mut lease)) = api.get_opt(&config.name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.acquire_time = None;
    spec.renew_time = None;
    if let Err(error) = api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        tracing::warn!(%error, "cannot release the leader Lease");
    } else {
        tracing::info!(lease = %config.name, "released leadership");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(seconds).unwrap()
    }

    fn lease(holder: Option<&str>, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(String::from),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(at(renewed))),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_live_lease_of_another_replica_cannot_be_taken() {
        assert!(!can_acquire(&lease(Some("b"), 100), "a", at(110)));
        assert!(can_acquire(&lease(Some("b"), 100), "a", at(116)), "expired");
        assert!(can_acquire(&lease(Some("a"), 100), "a", at(110)), "ours");
        assert!(can_acquire(&lease(None, 100), "a", at(101)), "released");
    }

    /// A client for a loopback "apiserver" that accepts connections and never answers.
    async fn hanging_apiserver() -> (Client, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            // Bounded: the test makes a handful of connections at most.
            for _ in 0..64 {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                held.push(socket);
            }
        });
        let config = kube::Config::new(url.parse().unwrap());
        (Client::try_from(config).unwrap(), server)
    }

    fn quick(identity: &str) -> LeaseConfig {
        LeaseConfig {
            lease_duration: Duration::from_millis(900),
            renew_deadline: Duration::from_millis(600),
            retry_period: Duration::from_millis(100),
            ..LeaseConfig::new("ns", "kmsync", identity)
        }
    }

    // Paused time: the bound is checked in the runtime's clock, not against machine load.
    #[tokio::test(start_paused = true)]
    async fn a_leader_whose_renewal_hangs_gives_up_within_the_deadline() {
        let (client, server) = hanging_apiserver().await;
        let config = quick("a");
        let started = tokio::time::Instant::now();
        // Without a bound on each attempt, keep waits for the client's own read timeout (minutes)
        // while the Lease expires and a standby starts writing.
        let kept = tokio::time::timeout(
            Duration::from_secs(20),
            keep(&client, &config, tokio::time::Instant::now()),
        )
        .await;
        assert!(kept.is_ok(), "keep must return when renewals hang");
        assert!(
            started.elapsed() < config.lease_duration,
            "the leader stops before its Lease can expire: {:?}",
            started.elapsed()
        );
        server.abort();
    }

    #[test]
    fn takeover_counts_a_transition_and_renewal_does_not() {
        let config = LeaseConfig::new("ns", "kmsync", "a");
        let taken = held_spec(Some(&lease(Some("b"), 100)), &config, at(200));
        assert_eq!(taken.lease_transitions, Some(1));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(200))));
        let renewed = held_spec(Some(&taken), &config, at(202));
        assert_eq!(renewed.lease_transitions, Some(1));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(200))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(202))));
    }
}
