//! In-memory rate limits (token buckets) and the cache of authenticated tokens.
//! Nothing here is ever written to disk or logged.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::Principal;

/// Keys tracked at most; beyond this, keys whose bucket has refilled are
/// dropped, and if all are still draining, new keys go untracked (allowed)
/// rather than evicting a client that is being limited.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A token bucket per key: `per_minute` tokens a minute, bursts of `per_minute`.
#[derive(Debug)]
pub(crate) struct Buckets<K> {
    rate: f64,
    burst: f64,
    map: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Copy> Buckets<K> {
    pub(crate) fn new(per_minute: u32) -> Self {
        Buckets {
            rate: f64::from(per_minute) / 60.0,
            burst: f64::from(per_minute),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `f` on `key`'s bucket, refilled up to `now`; `None` when the key is
    /// new and the table is full (the request is then not limited).
    fn with<T>(&self, key: K, now: Instant, f: impl FnOnce(&mut Bucket) -> T) -> Option<T> {
        // A poisoned lock only means another request panicked mid-update; the
        // buckets are still usable numbers.
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(&key) && map.len() >= MAX_KEYS {
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < burst
            });
            if map.len() >= MAX_KEYS {
                return None;
            }
        }
        let bucket = map.entry(key).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        bucket.tokens = (bucket.tokens
            + now.saturating_duration_since(bucket.last).as_secs_f64() * self.rate)
            .min(self.burst);
        bucket.last = now;
        Some(f(bucket))
    }

    /// Takes a token if there is one; false means "limited".
    pub(crate) fn allow(&self, key: K, now: Instant) -> bool {
        self.with(key, now, |b| {
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                true
            } else {
                false
            }
        })
        .unwrap_or(true)
    }

    /// Whether a token is left, without taking it.
    pub(crate) fn has_token(&self, key: K, now: Instant) -> bool {
        self.with(key, now, |b| b.tokens >= 1.0).unwrap_or(true)
    }

    /// Takes a token (down to zero).
    pub(crate) fn charge(&self, key: K, now: Instant) {
        self.with(key, now, |b| b.tokens = (b.tokens - 1.0).max(0.0));
    }
}

/// The key a client address is limited by: IPv4 addresses as they are, IPv6
/// by their /64 (one subscriber usually holds a whole /64, and could otherwise
/// rotate through it to escape the limit).
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// How long an authenticated token is believed without asking the database:
/// a revoked token stops reading estimates within this long (uploads stop at
/// once: the writer checks the device in the transaction that would store).
pub const TOKEN_TTL: Duration = Duration::from_secs(30);

/// Token hash -> principal, for `TOKEN_TTL`. Keyed by the SHA-256 of the
/// token, never the token. Unknown tokens are not cached: a newly created
/// token works at once, and guesses cannot fill the cache (they are limited
/// per client address instead).
#[derive(Debug)]
pub(crate) struct TokenCache {
    ttl: Duration,
    map: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
}

impl TokenCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        TokenCache {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn get(&self, hash: &[u8; 32], now: Instant) -> Option<Principal> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(hash)
            .filter(|(_, at)| now.saturating_duration_since(*at) < self.ttl)
            .map(|(p, _)| p.clone())
    }

    pub(crate) fn insert(&self, hash: [u8; 32], principal: Principal, now: Instant) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS {
            let ttl = self.ttl;
            map.retain(|_, (_, at)| now.saturating_duration_since(*at) < ttl);
        }
        if map.len() < MAX_KEYS {
            map.insert(hash, (principal, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let buckets = Buckets::new(60);
        let t0 = Instant::now();
        assert!((0..60).all(|_| buckets.allow(1u8, t0)));
        assert!(!buckets.allow(1, t0));
        // Another key has its own bucket.
        assert!(buckets.allow(2, t0));
        // One token a second.
        assert!(!buckets.allow(1, t0 + Duration::from_millis(900)));
        assert!(buckets.allow(1, t0 + Duration::from_millis(1100)));
        assert!(!buckets.allow(1, t0 + Duration::from_millis(1200)));
    }

    #[test]
    fn charging_only_failures_leaves_successes_free() {
        let buckets = Buckets::new(3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(buckets.has_token(7u8, t0));
            buckets.charge(7, t0);
        }
        assert!(!buckets.has_token(7, t0));
        // A minute later all three are back.
        assert!(buckets.has_token(7, t0 + Duration::from_secs(60)));
    }

    #[test]
    fn ipv6_clients_are_limited_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(client_key(mapped), "10.1.2.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn cached_principals_expire() {
        let cache = TokenCache::new(Duration::from_secs(30));
        let t0 = Instant::now();
        cache.insert([1; 32], Principal::Admin, t0);
        assert_eq!(
            cache.get(&[1; 32], t0 + Duration::from_secs(29)),
            Some(Principal::Admin)
        );
        assert_eq!(cache.get(&[1; 32], t0 + Duration::from_secs(30)), None);
        assert_eq!(cache.get(&[2; 32], t0), None);
    }
}
