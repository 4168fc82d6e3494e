//! Read coalescing: concurrent or near-simultaneous reads of the same (store, secret, version
//! selector) share one KMS call. Failures are shared too, so a throttled secret is not hammered
//! by every ManagedSecret that reads it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::time::Instant;

use crate::controller::error::SourceError;
use crate::render::{FetchedVersion, VersionSelector};

/// What one KMS read returns.
pub type FetchResult = Result<Arc<FetchedVersion>, SourceError>;

/// Identity of a read: same key, same answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FetchKey {
    /// `<kind>/<namespace>/<name>` of the store (credentials and endpoint decide the answer).
    pub store: String,
    pub secret_name: String,
    pub selector: VersionSelector,
}

struct Entry {
    started: Instant,
    read: Shared<BoxFuture<'static, FetchResult>>,
}

/// Shares reads for `window` after they start.
pub struct Coalescer {
    window: Duration,
    entries: Mutex<HashMap<FetchKey, Entry>>,
}

impl std::fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Coalescer {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Returns the shared read for `key`, starting `read` only when no read of it started within
    /// the window. `fresh` (a forced sync) always starts a new read, which later callers share.
    pub async fn get<F>(&self, key: FetchKey, fresh: bool, read: F) -> FetchResult
    where
        F: FnOnce() -> BoxFuture<'static, FetchResult>,
    {
        let shared = {
            let mut entries = self.entries.lock().expect("coalescer lock");
            let now = Instant::now();
            entries.retain(|_, entry| now.duration_since(entry.started) < self.window);
            match entries.get(&key) {
                Some(entry) if !fresh => entry.read.clone(),
                _ => {
                    let shared = read().shared();
                    entries.insert(
                        key,
                        Entry {
                            started: now,
                            read: shared.clone(),
                        },
                    );
                    shared
                }
            }
        };
        shared.await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn key(secret: &str) -> FetchKey {
        FetchKey {
            store: "SecretStore/ns/kms".into(),
            secret_name: secret.into(),
            selector: VersionSelector::Stage("ACSCurrent".into()),
        }
    }

    fn counting_read(calls: Arc<AtomicUsize>) -> impl FnOnce() -> BoxFuture<'static, FetchResult> {
        move || {
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                Ok(Arc::new(FetchedVersion {
                    version_id: "v1".into(),
                    stages: vec![],
                    data: b"x".to_vec(),
                    create_time: None,
                }))
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn concurrent_reads_of_one_key_make_one_call() {
        let coalescer = Arc::new(Coalescer::new(Duration::from_secs(5)));
        let calls = Arc::new(AtomicUsize::new(0));
        let reads = (0..50).map(|_| {
            let (coalescer, calls) = (coalescer.clone(), calls.clone());
            async move {
                coalescer
                    .get(key("db_cred"), false, counting_read(calls))
                    .await
            }
        });
        let results = futures::future::join_all(reads).await;
        assert!(
            results
                .iter()
                .all(|r| r.as_ref().unwrap().version_id == "v1")
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn distinct_keys_do_not_share() {
        let coalescer = Coalescer::new(Duration::from_secs(5));
        let calls = Arc::new(AtomicUsize::new(0));
        coalescer
            .get(key("a"), false, counting_read(calls.clone()))
            .await
            .unwrap();
        coalescer
            .get(key("b"), false, counting_read(calls.clone()))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn window_expiry_and_forced_reads_start_new_calls() {
        let coalescer = Coalescer::new(Duration::from_secs(5));
        let calls = Arc::new(AtomicUsize::new(0));
        coalescer
            .get(key("a"), false, counting_read(calls.clone()))
            .await
            .unwrap();
        coalescer
            .get(key("a"), false, counting_read(calls.clone()))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        coalescer
            .get(key("a"), true, counting_read(calls.clone()))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        tokio::time::advance(Duration::from_secs(6)).await;
        coalescer
            .get(key("a"), false, counting_read(calls.clone()))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn failures_are_shared_within_the_window() {
        let coalescer = Coalescer::new(Duration::from_secs(5));
        let calls = Arc::new(AtomicUsize::new(0));
        let failing = |calls: Arc<AtomicUsize>| {
            move || {
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(SourceError {
                        reason: "Throttled",
                        message: "KMS throttled the read".into(),
                        transient: true,
                        retry_after: None,
                    })
                }
                .boxed()
            }
        };
        assert!(
            coalescer
                .get(key("a"), false, failing(calls.clone()))
                .await
                .is_err()
        );
        assert!(
            coalescer
                .get(key("a"), false, failing(calls.clone()))
                .await
                .is_err()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
