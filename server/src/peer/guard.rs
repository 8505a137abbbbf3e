//! Bounds on what one address can make the peer listener do: how many connections
//! it holds open, and how many frames that fail authentication it may send.
//!
//! A replica never sends a rejected frame, so rejections are a budget that refills
//! slowly: a flood of forged frames exhausts it, the flooding connection is closed
//! and the address's new connections are refused until the budget is back. Each
//! rejected frame costs an HMAC at most, and what one address can cost is bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Open peer connections one address may hold. Replicas on one host share an
/// address, so this is well above any cluster's size.
pub const CONNECTIONS_PER_ADDRESS_MAX: usize = 16;
/// Rejected frames an address may send in a burst…
pub const REJECTIONS_BURST: f64 = 32.0;
/// …and how fast that allowance comes back.
pub const REJECTIONS_PER_SECOND: f64 = 4.0;
/// Addresses remembered at most; beyond it, those with nothing to remember are forgotten.
const ADDRESSES_TRACKED_MAX: usize = 4096;

/// Why a connection is refused or closed; each is a label of the `dropped` metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    TooManyConnections,
    Flood,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::TooManyConnections => "too_many_connections",
            Refusal::Flood => "flood",
        }
    }
}

#[derive(Debug, Default)]
pub struct InboundGuard {
    addresses: Mutex<HashMap<IpAddr, AddressState>>,
}

#[derive(Debug)]
struct AddressState {
    connections: usize,
    allowance: f64,
    refilled_at: Instant,
}

impl AddressState {
    fn new(now: Instant) -> AddressState {
        AddressState { connections: 0, allowance: REJECTIONS_BURST, refilled_at: now }
    }

    fn refill(&mut self, now: Instant) {
        let seconds = now.saturating_duration_since(self.refilled_at).as_secs_f64();
        self.allowance = (self.allowance + seconds * REJECTIONS_PER_SECOND).min(REJECTIONS_BURST);
        self.refilled_at = now;
    }

    fn forgettable(&self) -> bool {
        self.connections == 0 && self.allowance >= REJECTIONS_BURST
    }
}

/// One admitted connection; dropping it gives its place back.
#[derive(Debug)]
pub struct Admitted {
    guard: Arc<InboundGuard>,
    address: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.guard.with(self.address, Instant::now(), |state| state.connections -= 1);
    }
}

impl Admitted {
    /// Charges one rejected frame to the connection's address; `Err` when the
    /// address has used up its allowance and the connection should be closed.
    pub fn rejected(&self) -> Result<(), Refusal> {
        self.guard.with(self.address, Instant::now(), |state| {
            if state.allowance < 1.0 {
                return Err(Refusal::Flood);
            }
            state.allowance -= 1.0;
            Ok(())
        })
    }
}

impl InboundGuard {
    /// Admits a new connection from `address`, unless it holds too many or is flooding.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Admitted, Refusal> {
        self.with(address, Instant::now(), |state| {
            if state.allowance < 1.0 {
                return Err(Refusal::Flood);
            }
            if state.connections >= CONNECTIONS_PER_ADDRESS_MAX {
                return Err(Refusal::TooManyConnections);
            }
            state.connections += 1;
            Ok(())
        })?;
        Ok(Admitted { guard: Arc::clone(self), address })
    }

    fn with<T>(&self, address: IpAddr, now: Instant, update: impl FnOnce(&mut AddressState) -> T) -> T {
        // Plain counters: still usable after a panic elsewhere while the lock was held.
        let mut addresses = self.addresses.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if addresses.len() >= ADDRESSES_TRACKED_MAX && !addresses.contains_key(&address) {
            addresses.retain(|_, state| {
                state.refill(now);
                !state.forgettable()
            });
        }
        let state = addresses.entry(address).or_insert_with(|| AddressState::new(now));
        state.refill(now);
        let result = update(state);
        if state.forgettable() {
            addresses.remove(&address);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const OTHER_HOST: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

    #[test]
    fn an_address_holds_a_bounded_number_of_connections() {
        let guard = Arc::new(InboundGuard::default());
        let held: Vec<Admitted> = (0..CONNECTIONS_PER_ADDRESS_MAX).map(|_| guard.admit(HOST).unwrap()).collect();
        assert_eq!(guard.admit(HOST).unwrap_err(), Refusal::TooManyConnections);
        assert!(guard.admit(OTHER_HOST).is_ok(), "other addresses are not affected");
        drop(held);
        assert!(guard.admit(HOST).is_ok(), "closed connections give their places back");
        assert!(guard.addresses.lock().unwrap().is_empty(), "nothing left to remember");
    }

    #[test]
    fn a_flood_of_rejected_frames_closes_the_connection_and_refuses_new_ones() {
        let guard = Arc::new(InboundGuard::default());
        let flooding = guard.admit(HOST).unwrap();
        let honest = guard.admit(OTHER_HOST).unwrap();
        let allowed = (0..1000).take_while(|_| flooding.rejected().is_ok()).count();
        assert!((REJECTIONS_BURST as usize..=REJECTIONS_BURST as usize + 1).contains(&allowed), "{allowed}");
        assert_eq!(guard.admit(HOST).unwrap_err(), Refusal::Flood);
        assert_eq!(honest.rejected(), Ok(()), "the budget is per address");
    }
}
