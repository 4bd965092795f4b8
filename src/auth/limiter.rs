//! Brute-force protection: failed password checks counted per client address and per user
//! name in one-minute windows. Past the limit, password attempts from that address or for
//! that name get 429 with `Retry-After`, unchecked, until the window ends. Memory is bounded:
//! past [`MAX_ENTRIES`] keys, expired windows are dropped, and new keys go uncounted until room
//! frees up (the other key of an attempt still counts).

use crate::error::{Error, Result};
use dashmap::DashMap;
use sha2::{Digest, Sha256};
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
const MAX_ENTRIES: usize = 100_000;

/// The client's address, put into request extensions by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

struct Counter<K: Hash + Eq> {
    windows: DashMap<K, (Instant, u32)>,
    limit: u32,
}

impl<K: Hash + Eq> Counter<K> {
    fn new(limit: u32) -> Self {
        Counter {
            windows: DashMap::new(),
            limit,
        }
    }

    /// Time left until `key` may try again, when it is over the limit.
    fn blocked(&self, key: &K, now: Instant) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        let w = self.windows.get(key)?;
        let (start, failures) = *w.value();
        let end = start + WINDOW;
        (failures >= self.limit && now < end).then(|| end - now)
    }

    fn fail(&self, key: K, now: Instant) {
        if self.limit == 0 {
            return;
        }
        if self.windows.len() >= MAX_ENTRIES && !self.windows.contains_key(&key) {
            self.windows.retain(|_, (start, _)| now < *start + WINDOW);
            if self.windows.len() >= MAX_ENTRIES {
                tracing::warn!("failed-authentication table full; not counting a new key");
                return;
            }
        }
        let mut w = self.windows.entry(key).or_insert((now, 0));
        if now >= w.0 + WINDOW {
            *w = (now, 0);
        }
        w.1 = w.1.saturating_add(1);
    }

    fn reset(&self, key: &K) {
        self.windows.remove(key);
    }
}

/// Failure counts per address and per user name.
pub struct Limiter {
    by_addr: Counter<IpAddr>,
    by_user: Counter<[u8; 32]>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("per_address", &self.by_addr.limit)
            .field("per_user", &self.by_user.limit)
            .finish_non_exhaustive()
    }
}

/// Addresses are counted by IPv4 address or IPv6 /64 (what one client usually holds).
fn addr_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
        v4 => v4,
    }
}

fn user_key(user: &str) -> [u8; 32] {
    Sha256::digest(user.as_bytes()).into()
}

impl Limiter {
    pub fn new(per_address: u32, per_user: u32) -> Limiter {
        Limiter {
            by_addr: Counter::new(per_address),
            by_user: Counter::new(per_user),
        }
    }

    /// `TooManyRequests` when the address or the name is over its limit.
    pub fn check(&self, addr: Option<IpAddr>, user: &str) -> Result<()> {
        let now = Instant::now();
        let wait = [
            addr.and_then(|a| self.by_addr.blocked(&addr_key(a), now)),
            self.by_user.blocked(&user_key(user), now),
        ]
        .into_iter()
        .flatten()
        .max();
        match wait {
            None => Ok(()),
            Some(w) => Err(Error::TooManyRequests {
                reason: "too many failed authentication attempts; try again later".into(),
                retry_after: w.as_secs() + 1,
            }),
        }
    }

    pub fn failed(&self, addr: Option<IpAddr>, user: &str) {
        let now = Instant::now();
        if let Some(a) = addr {
            self.by_addr.fail(addr_key(a), now);
        }
        self.by_user.fail(user_key(user), now);
    }

    /// A correct password clears its name's count (the address's stays).
    pub fn succeeded(&self, user: &str) {
        self.by_user.reset(&user_key(user));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_address_and_per_user() {
        let l = Limiter::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        l.failed(Some(a), "ann");
        assert!(l.check(Some(a), "ann").is_ok());
        l.failed(Some(a), "ann");
        let e = l.check(Some(b), "ann").unwrap_err();
        assert_eq!(e.status(), 429, "the name is blocked from anywhere");
        assert!(
            matches!(e, Error::TooManyRequests { retry_after, .. } if (1..=61).contains(&retry_after))
        );
        assert!(l.check(Some(a), "bob").is_ok());
        l.failed(Some(a), "bob");
        assert!(l.check(Some(a), "carl").is_err(), "the address is blocked");
        assert!(l.check(Some(b), "carl").is_ok());
        l.succeeded("ann");
        assert!(l.check(Some(b), "ann").is_ok());
    }

    #[test]
    fn ipv6_clients_are_counted_by_prefix_and_zero_means_off() {
        let l = Limiter::new(1, 0);
        l.failed(Some("2001:db8::1".parse().unwrap()), "x");
        assert!(l
            .check(Some("2001:db8::ffff".parse().unwrap()), "y")
            .is_err());
        assert!(l.check(Some("2001:db9::1".parse().unwrap()), "y").is_ok());
        for _ in 0..10 {
            l.failed(None, "x");
        }
        assert!(l.check(None, "x").is_ok());
    }

    #[test]
    fn windows_end() {
        let c: Counter<u8> = Counter::new(1);
        let t = Instant::now();
        c.fail(1, t);
        assert!(c.blocked(&1, t).is_some());
        assert!(c.blocked(&1, t + WINDOW).is_none());
        c.fail(1, t + WINDOW);
        assert_eq!(c.windows.get(&1).unwrap().1, 1, "a new window starts");
    }
}
