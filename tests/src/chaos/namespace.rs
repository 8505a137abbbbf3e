//! A private network namespace for one chaos run: its own loopback and its own
//! iptables rules, so that nothing the run does touches the host's network.
//!
//! The namespace is named `noted-chaos-<pid>-<n>` after the process that made it.
//! Dropping a [`Namespace`] kills every process still inside and deletes it, also
//! when the run panics (the `noted-chaos` binary calls [`remove`] on Ctrl-C and
//! SIGTERM, which skip destructors); a run also removes the namespaces of earlier runs whose
//! process is gone (killed before it could clean up).

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

const PREFIX: &str = "noted-chaos-";

#[derive(Debug)]
pub struct Namespace {
    pub name: String,
}

/// Why chaos runs cannot work on this machine, or `None` when they can.
pub fn unavailable_reason() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return Some("network namespaces need Linux".into());
    }
    if !is_root() {
        return Some("creating a network namespace and iptables rules needs root".into());
    }
    for (program, version, package) in [("ip", "-V", "iproute2"), ("iptables", "--version", "iptables")] {
        let found = Command::new(program).arg(version).output().is_ok_and(|output| output.status.success());
        if !found {
            return Some(format!("`{program}` is not installed (Debian package {package})"));
        }
    }
    match Namespace::create() {
        Ok(namespace) => {
            let rules = namespace.command("iptables").args(["-w", "-S"]).output();
            match rules {
                Ok(output) if output.status.success() => None,
                Ok(output) => Some(format!(
                    "iptables does not work inside a network namespace: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                )),
                Err(error) => Some(format!("cannot run iptables inside a network namespace: {error}")),
            }
        }
        Err(reason) => Some(reason),
    }
}

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|effective| effective == "0")
}

impl Namespace {
    /// Creates a fresh namespace with its loopback up.
    pub fn create() -> Result<Namespace, String> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        remove_abandoned();
        let name = format!("{PREFIX}{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let namespace = Namespace { name };
        run(namespace.command("ip").args(["link", "set", "lo", "up"]))?;
        Ok(namespace)
    }

    /// `program` run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        remove(&self.name);
    }
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|error| format!("cannot run {command:?}: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed: {}", String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// Kills what still runs inside the namespace `name`, then deletes it.
pub fn remove(name: &str) {
    if let Ok(output) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
    let _ = Command::new("ip").args(["netns", "delete", name]).status();
}

/// Deletes chaos namespaces whose creating process no longer exists.
fn remove_abandoned() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(creator) = name.strip_prefix(PREFIX).and_then(|rest| rest.split('-').next()) else { continue };
        if creator.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{creator}")).exists() {
            remove(name);
        }
    }
}
