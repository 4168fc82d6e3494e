//! The Markdown rendering of a run (what `bench/results/latest.md` holds and the README quotes).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::{Calls, Latencies, Report};

fn secs(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(s) if s < 10.0 => format!("{s:.2} s"),
        Some(s) => format!("{s:.1} s"),
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `total (a x, b y)` for KMS calls by action; throttled calls are named.
fn calls(calls: &Calls, total: u64) -> String {
    let mut parts = Vec::new();
    for (action, outcomes) in calls {
        let all: u64 = outcomes.values().sum();
        let failed: u64 = outcomes
            .iter()
            .filter(|(o, _)| o.as_str() != "Success")
            .map(|(_, n)| n)
            .sum();
        if failed > 0 {
            parts.push(format!(
                "{action} {} ({} failed)",
                thousands(all),
                thousands(failed)
            ));
        } else {
            parts.push(format!("{action} {}", thousands(all)));
        }
    }
    format!("{} ({})", thousands(total), parts.join(", "))
}

fn writes(writes: &BTreeMap<String, u64>, total: u64) -> String {
    if total == 0 {
        return "0".into();
    }
    let parts: Vec<String> = writes
        .iter()
        .map(|(r, n)| format!("{r} {}", thousands(*n)))
        .collect();
    format!("{} ({})", thousands(total), parts.join(", "))
}

fn latencies(l: &Latencies) -> String {
    let mut text = format!("{} / {}", secs(l.p50_seconds), secs(l.p99_seconds));
    if l.timed_out > 0 {
        let _ = write!(text, " ({} of {} not seen)", l.timed_out, l.samples);
    }
    text
}

pub fn markdown(report: &Report) -> String {
    let p = &report.parameters;
    let m = &report.machine;
    let v = &report.versions;
    let mut out = String::new();
    let rev: String = v.git_rev.chars().take(10).collect();
    let _ = writeln!(
        out,
        "### Scale benchmark ({}, {})\n",
        report.started_at.get(..10).unwrap_or(&report.started_at),
        report.mode
    );
    let _ = writeln!(
        out,
        "Machine: {} CPUs ({}), {:.1} GiB RAM, {} (Linux {}). kmsync {} ({}{}), kube-apiserver {}, \
         etcd {}, {}. Operator: release build, `--concurrency {}`, one namespace. Emulator: {} ms \
         added to every KMS call, shared-gateway QPS limits on. `refreshInterval: {}s`; steady state \
         observed for {} intervals. Run took {:.0} min.\n",
        m.cpus,
        m.cpu_model,
        m.memory_mib as f64 / 1024.0,
        m.os,
        m.kernel,
        v.kmsync,
        rev,
        if v.git_dirty {
            ", uncommitted changes"
        } else {
            ""
        },
        v.kubernetes,
        v.etcd,
        v.rustc,
        p.concurrency,
        p.kms_latency_ms,
        p.refresh_secs,
        p.steady_intervals,
        report.seconds / 60.0
    );
    let windows: Vec<String> = p
        .rate_windows_secs
        .iter()
        .map(|w| format!("{w} s"))
        .collect();
    let _ = writeln!(
        out,
        "| ManagedSecrets | All Ready | Peak RSS | CPU | KMS calls | Kubernetes writes | \
         Steady: reads per secret per interval | Steady: Kubernetes writes | \
         Steady: peak / average KMS rate ({} windows) | Change → Secret, periodic refresh p50 / p99 | \
         Change → Secret, force-sync p50 / p99 |",
        windows.join(" · ")
    );
    let _ = writeln!(
        out,
        "|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|"
    );
    for s in &report.sizes {
        let c = &s.cold;
        let ready = match c.seconds_to_all_ready {
            Some(t) => secs(Some(t)),
            None => format!(
                "not all: {} of {} after {} s",
                c.ready, s.managed_secrets, c.timeout_seconds
            ),
        };
        let ratios: Vec<String> = p
            .rate_windows_secs
            .iter()
            .map(|w| {
                s.steady
                    .peak_to_average
                    .get(w)
                    .map_or("–".into(), |r| format!("{r:.2}×"))
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} MiB | {:.1} s | {} | {} | {:.3} | {} | {} | {} | {} |",
            thousands(s.managed_secrets as u64),
            ready,
            c.peak_rss_mib,
            c.cpu_seconds,
            calls(&c.kms_calls, c.kms_calls_total),
            writes(&c.kubernetes_writes, c.kubernetes_writes_total),
            s.steady.reads_per_secret_per_interval,
            writes(
                &s.steady.kubernetes_writes,
                s.steady.kubernetes_writes_total
            ),
            ratios.join(" · "),
            latencies(&s.periodic),
            latencies(&s.force_sync),
        );
    }
    let _ = writeln!(out);
    let samples = p.propagation_samples;
    let _ = writeln!(
        out,
        "All Ready, Peak RSS (VmHWM), CPU (user + system), KMS calls and Kubernetes writes cover the \
         cold start: the operator starts with all N ManagedSecrets (each its own 1 KiB JSON KMS \
         secret, two keys) waiting, until the last is Ready. Writes are the apiserver's \
         `apiserver_request_total` for write verbs on kmsync's resources. Steady state: nothing \
         changes; KMS calls are sampled every second. Change → Secret: time from PutSecretValue's \
         answer to the new value in the Secret (a watch), up to {samples} secrets each, periodic \
         (next refresh) and with the `kmsync.io/force-sync` annotation.\n"
    );
    if p.rate_windows_secs.iter().any(|w| *w >= p.refresh_secs) {
        let _ = writeln!(
            out,
            "A rate window as long as the refresh interval holds every secret exactly once, so its \
             peak / average is near 1 by construction; the shorter window shows how evenly refreshes \
             are spread (run with a longer `--refresh-secs` for a one-minute window that is a small \
             part of the interval, as in production).\n"
        );
    }
    for s in &report.sizes {
        if let Some(u) = &s.unrelated {
            let _ = write!(
                out,
                "**Unmanaged Secrets.** {} Secrets of {} KiB ({:.0} MiB) added to the watched \
                 namespace at N = {}: operator RSS {:.1} MiB before, {:.1} MiB after ({:+.1} MiB); \
                 peak RSS {:.1} → {:.1} MiB.",
                thousands(u.created as u64),
                u.kib_each,
                u.data_mib,
                thousands(s.managed_secrets as u64),
                u.rss_before_mib,
                u.rss_after_mib,
                u.rss_delta_mib,
                u.peak_rss_before_mib,
                u.peak_rss_after_mib
            );
            if u.errors > 0 {
                let _ = write!(
                    out,
                    " {} of {} creates failed (first: {}).",
                    u.errors,
                    u.requested,
                    u.first_error.as_deref().unwrap_or("?")
                );
            }
            let _ = writeln!(out, "\n");
        }
    }
    if let Some(c) = &report.coalescing {
        let _ = writeln!(
            out,
            "**Coalescing.** {} ManagedSecrets reading one KMS secret (`refreshInterval: {}s`): \
             {} GetSecretValue at cold start ({} Ready in {}); then {} in {:.2} intervals = \
             **{:.2} reads per interval**, {} Kubernetes writes.\n",
            c.readers,
            c.refresh_seconds,
            c.cold_get_secret_value,
            c.ready,
            secs(c.seconds_to_all_ready),
            c.get_secret_value,
            c.intervals,
            c.reads_per_interval,
            c.kubernetes_writes_total
        );
    }
    out
}
