//! Token-bucket rate limits, per client IP and global. They live in this process: each node
//! limits what reaches it, and nothing in them is needed by another node.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Activation-link lookups (unauthenticated): per IP, burst then refill per minute.
pub const ACTIVATE_PER_IP: Rate = Rate {
    burst: 20,
    per_minute: 20,
};
pub const ACTIVATE_GLOBAL: Rate = Rate {
    burst: 200,
    per_minute: 600,
};
/// Failed API-key attempts: once spent, further attempts from the IP answer 429 unchecked.
pub const AUTH_FAIL_PER_IP: Rate = Rate {
    burst: 10,
    per_minute: 10,
};
pub const AUTH_FAIL_GLOBAL: Rate = Rate {
    burst: 100,
    per_minute: 300,
};
/// Buckets kept before full ones are dropped (a full bucket is the same as none).
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub burst: u32,
    pub per_minute: u32,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refilled(self, rate: Rate, now: Instant) -> Self {
        let add = now.duration_since(self.at).as_secs_f64() * f64::from(rate.per_minute) / 60.0;
        Bucket {
            tokens: (self.tokens + add).min(f64::from(rate.burst)),
            at: now,
        }
    }
}

/// One limit per IP plus one over all IPs.
pub struct Limiter {
    per_ip: Rate,
    global: Rate,
    state: Mutex<(Bucket, HashMap<IpAddr, Bucket>)>,
}

impl Limiter {
    pub fn new(per_ip: Rate, global: Rate) -> Self {
        let full = Bucket {
            tokens: f64::from(global.burst),
            at: Instant::now(),
        };
        Self {
            per_ip,
            global,
            state: Mutex::new((full, HashMap::new())),
        }
    }

    fn with<R>(&self, ip: IpAddr, f: impl FnOnce(&mut Bucket, &mut Bucket) -> R) -> R {
        let now = Instant::now();
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (global, map) = &mut *guard;
        if map.len() >= MAX_TRACKED {
            let rate = self.per_ip;
            map.retain(|_, b| b.refilled(rate, now).tokens < f64::from(rate.burst));
        }
        let fresh = Bucket {
            tokens: f64::from(self.per_ip.burst),
            at: now,
        };
        let ip_bucket = map.entry(ip).or_insert(fresh);
        *ip_bucket = ip_bucket.refilled(self.per_ip, now);
        *global = global.refilled(self.global, now);
        f(ip_bucket, global)
    }

    /// Takes one token from both buckets; false (nothing taken) when either is empty.
    pub fn take(&self, ip: IpAddr) -> bool {
        self.with(ip, |ip_bucket, global| {
            if ip_bucket.tokens >= 1.0 && global.tokens >= 1.0 {
                ip_bucket.tokens -= 1.0;
                global.tokens -= 1.0;
                true
            } else {
                false
            }
        })
    }

    /// Whether a [`Limiter::take`] would succeed now, without taking.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.with(ip, |ip_bucket, global| {
            ip_bucket.tokens >= 1.0 && global.tokens >= 1.0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_spent_per_ip_and_the_global_bucket_caps_all_ips() {
        let l = Limiter::new(
            Rate {
                burst: 2,
                per_minute: 0,
            },
            Rate {
                burst: 3,
                per_minute: 0,
            },
        );
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(l.take(a) && l.take(a));
        assert!(!l.allows(a) && !l.take(a));
        assert!(l.take(b));
        assert!(!l.take(b), "the global bucket is empty");
    }
}
