//! The processes the benchmark starts (the KMS emulator and the operator, both the release
//! binary), stopped by their own PID when dropped, and what `/proc` says about them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Res;

/// A child process, stopped (SIGTERM, then SIGKILL after 10 s) by its own PID when dropped.
pub struct Guarded {
    child: Child,
    name: String,
    pub log: PathBuf,
}

impl Guarded {
    pub fn spawn(name: &str, mut command: Command, log: PathBuf) -> Res<Self> {
        let file = std::fs::File::create(&log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .map_err(|e| format!("start {name}: {e}"))?;
        Ok(Self {
            child,
            name: name.to_string(),
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// An error naming the process and the end of its log when it has exited.
    pub fn check_alive(&mut self) -> Res<()> {
        match self.exited() {
            None => Ok(()),
            Some(status) => {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                Err(format!(
                    "{} exited ({status}); last log lines:\n{}",
                    self.name,
                    tail.join("\n")
                )
                .into())
            }
        }
    }

    pub fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for _ in 0..100 {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Memory and CPU of a process from `/proc/<pid>/status` and `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub cpu_seconds: f64,
}

impl ProcStats {
    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }
    pub fn hwm_mib(&self) -> f64 {
        self.hwm_kib as f64 / 1024.0
    }
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 when unknown).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

pub fn proc_stats(pid: u32, ticks: f64) -> Res<ProcStats> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("unreadable /proc/<pid>/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| -> f64 { fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0.0) };
    Ok(ProcStats {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        cpu_seconds: (tick(11) + tick(12)) / ticks,
    })
}

fn free_port() -> Res<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The KMS emulator subprocess with its admin API.
pub struct EmulatorProc {
    /// Stops the emulator when the benchmark ends.
    _guard: Guarded,
    pub base_url: String,
    http: reqwest::Client,
}

impl EmulatorProc {
    pub async fn start(bin: &Path, work: &Path, access_key: &str) -> Res<Self> {
        let port_file = work.join("emulator.url");
        let _ = std::fs::remove_file(&port_file);
        let mut command = Command::new(bin);
        command
            .args([
                "emulator",
                "--listen",
                "127.0.0.1:0",
                "--access-key",
                access_key,
            ])
            .arg("--port-file")
            .arg(&port_file)
            .env("RUST_LOG", "warn");
        let mut proc = Guarded::spawn("kmsync emulator", command, work.join("emulator.log"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let base_url = loop {
            if let Ok(url) = std::fs::read_to_string(&port_file)
                && !url.trim().is_empty()
            {
                break url.trim().to_string();
            }
            proc.check_alive()?;
            if Instant::now() > deadline {
                return Err("the emulator wrote no port file within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if !base_url.starts_with("http://127.0.0.1:") {
            return Err(format!("emulator is not on loopback: {base_url}").into());
        }
        Ok(Self {
            _guard: proc,
            base_url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    /// `GET /admin/calls`: `{"total": N, "calls": {action: {outcome: n}}}`.
    pub async fn calls(&self) -> Res<Value> {
        let url = format!("{}/admin/calls", self.base_url);
        Ok(self
            .http
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    pub async fn reset_calls(&self) -> Res<()> {
        let url = format!("{}/admin/calls", self.base_url);
        self.http.delete(url).send().await?.error_for_status()?;
        Ok(())
    }

    pub async fn set_faults(&self, faults: &Value) -> Res<()> {
        let url = format!("{}/admin/faults", self.base_url);
        self.http
            .put(url)
            .json(faults)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}

/// Calls of `action` (all outcomes) in a `/admin/calls` answer.
pub fn action_calls(calls: &Value, action: &str) -> u64 {
    calls["calls"][action]
        .as_object()
        .map(|outcomes| outcomes.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

/// The operator subprocess (`kmsync run`) watching one namespace.
pub struct OperatorProc {
    pub proc: Guarded,
    pub started: Instant,
}

impl OperatorProc {
    pub fn start(bin: &Path, work: &Path, namespace: &str, concurrency: u16) -> Res<Self> {
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut command = Command::new(bin);
        command
            .args(["run", "--namespace", namespace])
            .args(["--admin-addr", &admin.to_string()])
            .args(["--concurrency", &concurrency.to_string()])
            .env_remove("RUST_LOG");
        let log = work.join(format!("operator-{namespace}.log"));
        let started = Instant::now();
        let proc = Guarded::spawn("kmsync run", command, log)?;
        Ok(Self { proc, started })
    }

    pub fn stats(&self, ticks: f64) -> Res<ProcStats> {
        proc_stats(self.proc.pid(), ticks)
    }
}
