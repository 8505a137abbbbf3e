//! Network partitions between replicas with iptables, inside the run's own
//! network namespace (the host's rules are never touched).
//!
//! Each replica has its own loopback address, 127.0.0.(id + 1), and dials its
//! peers from it. noted sends protocol frames only on connections it dialled (one
//! connection per direction) and heartbeats from its own UDP socket, so "A's
//! messages do not reach B" is exactly: drop packets from A's address to B's peer
//! port (TCP) and to B's heartbeat port (UDP). The TCP connection B dialled to A
//! is untouched, so B's messages still reach A: that is a one-way partition.
//! The connection from A to B stalls rather than breaks (its acknowledgements
//! still flow), and resumes when the rule is removed.

use std::collections::BTreeSet;
use std::process::Command;

use crate::cluster::Addresses;

const CHAIN: &str = "NOTED_CHAOS";

#[derive(Debug)]
pub struct Firewall {
    addresses: Vec<Addresses>,
}

impl Firewall {
    /// Creates the chain that holds the partition rules and hooks it into INPUT.
    pub fn new(addresses: Vec<Addresses>) -> Result<Firewall, String> {
        iptables(&["-N", CHAIN])?;
        iptables(&["-I", "INPUT", "-j", CHAIN])?;
        Ok(Firewall { addresses })
    }

    /// Drops the peer traffic of exactly these (sender, receiver) pairs; returns
    /// how many packets the rules replaced had dropped.
    pub fn block(&self, pairs: &BTreeSet<(u8, u8)>) -> Result<u64, String> {
        let dropped = self.dropped_packets()?;
        iptables(&["-F", CHAIN])?;
        for &(from, to) in pairs {
            let source = self.addresses[usize::from(from)].peer.ip().to_string();
            let target = &self.addresses[usize::from(to)];
            for (protocol, port) in [("tcp", target.peer.port()), ("udp", target.heartbeat.port())] {
                let port = port.to_string();
                let destination = target.peer.ip().to_string();
                iptables(&[
                    "-A",
                    CHAIN,
                    "-s",
                    &source,
                    "-d",
                    &destination,
                    "-p",
                    protocol,
                    "--dport",
                    &port,
                    "-j",
                    "DROP",
                ])?;
            }
        }
        Ok(dropped)
    }

    /// Removes every partition; returns how many packets they had dropped.
    pub fn heal(&self) -> Result<u64, String> {
        self.block(&BTreeSet::new())
    }

    /// Packets dropped by the rules in force, from iptables' counters.
    fn dropped_packets(&self) -> Result<u64, String> {
        let listing = iptables(&["-L", CHAIN, "-v", "-x", "-n"])?;
        // Two header lines, then one rule per line whose first column is its packet count.
        Ok(listing.lines().skip(2).filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok()).sum())
    }
}

fn iptables(arguments: &[&str]) -> Result<String, String> {
    let output = Command::new("iptables")
        .arg("-w")
        .args(arguments)
        .output()
        .map_err(|error| format!("cannot run iptables: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "iptables {} failed: {}",
            arguments.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
