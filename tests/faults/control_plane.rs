//! Restarting the kube-apiserver of the control plane that `scripts/controlplane.sh run` started
//! for this test run (`restart-apiserver`: same flags, port and etcd).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Api, ListParams};

/// The control plane's state dir, when this run has one of ours to restart.
pub fn state_dir() -> Option<PathBuf> {
    std::env::var_os("CP_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("KUBECONFIG")
                .and_then(|k| PathBuf::from(k).parent().map(PathBuf::from))
        })
        .filter(|dir| dir.join("kube-apiserver.args").is_file())
}

/// Stops the apiserver (SIGTERM, or SIGKILL with `kill`) and starts it again, then waits
/// (bounded) until `client` gets answers again: its pooled connections died with the server.
/// Returns how long that took.
pub async fn restart_apiserver(state: PathBuf, kill: bool, client: &Client) -> Duration {
    let began = Instant::now();
    let script = crate::support::repo("scripts/controlplane.sh");
    let output = tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(script);
        command.arg("restart-apiserver").env("CP_STATE_DIR", &state);
        if kill {
            command.arg("--kill");
        }
        command.output()
    })
    .await
    .expect("join")
    .expect("run scripts/controlplane.sh restart-apiserver");
    assert!(
        output.status.success(),
        "restart-apiserver failed: {}",
        crate::support::describe(&output)
    );
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while namespaces
        .list(&ListParams::default().limit(1))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the apiserver did not answer within 60 s of its restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    began.elapsed()
}
