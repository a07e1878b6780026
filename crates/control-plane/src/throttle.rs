//! Brute-force protection for bearer tokens: a budget of authentication
//! failures per client address and per token prefix, checked *before* a
//! token is looked up in the database, so that guessing costs a 429 and not
//! a database transaction.
//!
//! The client address is the TCP peer, or, when the peer is a private or
//! loopback address (a load balancer in the VPC, such as the ALB), the
//! address that proxy appended last to `X-Forwarded-For`; a public peer's
//! `X-Forwarded-For` is ignored, since a client could write anything there.
//! The token prefix (its kind and first characters) limits one token being
//! tried from many addresses.
//!
//! What does not live here: the token lookup itself (`auth`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap};

use crate::AppState;
use crate::auth::{Caller, authenticate};
use crate::error::ApiError;

/// Failures allowed per key within [`WINDOW`].
pub const FAILURE_BUDGET: u32 = 20;
/// The window a budget covers; a key over budget waits for it to end.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Characters of a token that make its prefix key (`pbt_` and 8 more).
const PREFIX_CHARS: usize = 12;
/// Beyond this many keys, expired ones are swept.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Peer(IpAddr),
    Prefix(String),
}

/// Failure counts per key, and how many token checks reached the lookup.
#[derive(Debug, Clone, Default)]
pub struct AuthThrottle {
    windows: Arc<Mutex<HashMap<Key, (Instant, u32)>>>,
    lookups: Arc<AtomicU64>,
}

impl AuthThrottle {
    /// Token checks that went on to the lookup (cache or database): what a
    /// flood of wrong tokens costs.
    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    /// How long until every key of this request is within budget, if one is not.
    fn blocked(&self, keys: &[Key], now: Instant) -> Option<Duration> {
        let windows = self.windows.lock().ok()?;
        keys.iter()
            .filter_map(|key| {
                let (start, failures) = windows.get(key)?;
                let left = WINDOW.checked_sub(now.duration_since(*start))?;
                (*failures >= FAILURE_BUDGET && !left.is_zero()).then_some(left)
            })
            .max()
    }

    fn fail(&self, keys: Vec<Key>, now: Instant) {
        let Ok(mut windows) = self.windows.lock() else {
            return;
        };
        if windows.len() > MAX_KEYS {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        for key in keys {
            let entry = windows.entry(key).or_insert((now, 0));
            if now.duration_since(entry.0) >= WINDOW {
                *entry = (now, 0);
            }
            entry.1 = entry.1.saturating_add(1);
        }
    }
}

impl AuthThrottle {
    /// How long this client must wait, if it has used up its failure budget
    /// (for endpoints authenticated by something other than a bearer
    /// token: a Stripe webhook's signature).
    pub fn peer_blocked(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<Duration> {
        let ip = client_address(headers, extensions)?;
        self.blocked(&[Key::Peer(ip)], Instant::now())
    }

    /// Counts a failed authentication of this client.
    pub fn peer_failed(&self, headers: &HeaderMap, extensions: &Extensions) {
        if let Some(ip) = client_address(headers, extensions) {
            self.fail(vec![Key::Peer(ip)], Instant::now());
        }
    }
}

/// The client's address, as described in the module summary.
fn client_address(headers: &HeaderMap, extensions: &Extensions) -> Option<IpAddr> {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())?;
    let behind_proxy = match peer {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    };
    let forwarded = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|last| last.trim().parse::<IpAddr>().ok());
    match forwarded {
        Some(client) if behind_proxy => Some(client),
        _ => Some(peer),
    }
}

/// [`authenticate`], unless this client or this token prefix has used up its
/// failure budget (429 with `Retry-After`, without a lookup).
pub async fn authenticate_throttled(
    state: &AppState,
    headers: &HeaderMap,
    extensions: &Extensions,
    token: &str,
) -> Result<Caller, ApiError> {
    let throttle = &state.throttle;
    let mut keys = vec![Key::Prefix(token.chars().take(PREFIX_CHARS).collect())];
    if let Some(ip) = client_address(headers, extensions) {
        keys.push(Key::Peer(ip));
    }
    if let Some(wait) = throttle.blocked(&keys, Instant::now()) {
        return Err(ApiError::TooManyRequests {
            retry_after_secs: wait.as_secs().max(1),
        });
    }
    throttle.lookups.fetch_add(1, Ordering::Relaxed);
    let result = authenticate(&state.db, &state.tokens, token).await;
    if matches!(result, Err(ApiError::Unauthorized)) {
        throttle.fail(keys, Instant::now());
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_blocked_after_its_budget_until_the_window_ends() {
        let throttle = AuthThrottle::default();
        let key = vec![Key::Prefix("pbt_aaaaaaaa".into())];
        let start = Instant::now();
        for _ in 0..FAILURE_BUDGET - 1 {
            throttle.fail(key.clone(), start);
        }
        assert_eq!(throttle.blocked(&key, start), None);
        throttle.fail(key.clone(), start);
        assert_eq!(
            throttle.blocked(&key, start + Duration::from_secs(15)),
            Some(WINDOW - Duration::from_secs(15))
        );
        assert_eq!(throttle.blocked(&key, start + WINDOW), None);
        let other = vec![Key::Prefix("pbt_bbbbbbbb".into())];
        assert_eq!(throttle.blocked(&other, start), None);
    }
}
