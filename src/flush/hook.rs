//! The failure hook (`sinks.on_failure`): a command run when a sink's flush fails, the general
//! form of the deviantART pystatsd fork's NSCA notifier. Started from the flush thread, which
//! never waits for it: each run gets a small watcher thread that reaps it, logs a non-zero exit,
//! and kills it when it outlives `on_failure_timeout`.
//!
//! The command is executed directly (no shell), with `KSTATSD_SINK` (the sink's name) and
//! `KSTATSD_ERROR` (what went wrong) added to the daemon's environment; its stdout goes to the
//! daemon's stderr (stdout carries the console sink's output). The flush thread calls
//! [`Hooks::fire`] at most once per sink per flush, so at most once per interval per sink; a run
//! that is still going when the sink fails again is not doubled (the new failure is logged).

use super::config::FailureHook;
use std::collections::HashMap;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a watcher looks at its child (std has no wait with a timeout).
const WATCH_EVERY: Duration = Duration::from_millis(10);

#[derive(Default)]
pub struct Hooks {
    hook: Option<FailureHook>,
    /// Per sink: whether its last run is still going.
    running: HashMap<&'static str, Arc<AtomicBool>>,
}

impl Hooks {
    pub fn new(hook: Option<FailureHook>) -> Hooks {
        Hooks { hook, running: HashMap::new() }
    }

    /// Takes a new hook (reload); runs in progress finish under their old timeout.
    pub fn set(&mut self, hook: Option<FailureHook>) {
        self.hook = hook;
    }

    /// Runs the hook for `sink` failing with `error`, unless its previous run is still going.
    pub fn fire(&mut self, sink: &'static str, error: &str) {
        let Some(hook) = &self.hook else { return };
        let busy = self.running.entry(sink).or_default();
        if busy.load(Ordering::Acquire) {
            log::warn!("on_failure for sink {sink}: the previous run is still going; not started again");
            return;
        }
        let mut cmd = Command::new(&hook.command[0]);
        cmd.args(&hook.command[1..])
            .env("KSTATSD_SINK", sink)
            .env("KSTATSD_ERROR", error)
            .stdin(Stdio::null());
        if let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() {
            cmd.stdout(Stdio::from(fd));
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                log::error!("on_failure for sink {sink}: cannot run {:?}: {e}", hook.command[0]);
                return;
            }
        };
        busy.store(true, Ordering::Release);
        let busy = Arc::clone(busy);
        let timeout = hook.timeout;
        let spawned = std::thread::Builder::new().name("kstatsd-hook".into()).spawn(move || {
            let deadline = Instant::now() + timeout;
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        if !status.success() {
                            log::warn!("on_failure for sink {sink} exited with {status}");
                        }
                        break;
                    }
                    Ok(None) if Instant::now() >= deadline => {
                        log::warn!("on_failure for sink {sink} still running after {timeout:?}: killed");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(WATCH_EVERY),
                    Err(e) => {
                        log::error!("on_failure for sink {sink}: {e}");
                        break;
                    }
                }
            }
            busy.store(false, Ordering::Release);
        });
        if let Err(e) = spawned {
            log::error!("on_failure for sink {sink}: cannot start its watcher: {e}");
        }
    }
}
