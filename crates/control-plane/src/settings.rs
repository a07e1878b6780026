//! Settings of the operator views (dashboard sessions, `/metrics` access,
//! alerting), read once from the environment when the state is built.
//!
//! | variable | default | what |
//! |---|---|---|
//! | `POLYBOT_METRICS_TOKEN` | none | a bearer token that may scrape `/metrics` (and nothing else) |
//! | `POLYBOT_COOKIE_SECURE` | `false` | mark the dashboard cookie `Secure` (set it behind TLS) |
//! | `POLYBOT_SESSION_HOURS` | `12` | dashboard session lifetime |
//! | `POLYBOT_ALERT_INTERVAL_SECS` | `10` | time between alert evaluations |
//! | `POLYBOT_ALERT_HEARTBEAT_SECS` | `60` | a desired worker silent this long alerts |
//! | `POLYBOT_ALERT_CRASH_LOOP_RESTARTS` | `3` | restarts in a row before `crash_loop` alerts |
//! | `POLYBOT_ALERT_RESOLVE_SECS` | `30` | a condition clear this long sends the resolved message |
//! | `POLYBOT_ALERT_RATE_PER_MINUTE` | `20` | notifications per channel and minute, at most |
//! | `POLYBOT_TELEGRAM_API_BASE` | `https://api.telegram.org` | the Telegram Bot API (tests point it at a mock) |

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// How alerts are evaluated and delivered.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub interval: Duration,
    pub heartbeat_stale: Duration,
    pub crash_loop_restarts: i32,
    pub resolve_hold: Duration,
    pub rate_per_minute: usize,
    /// A worker exit with the fencing exit code within this window alerts.
    pub fenced_window: Duration,
    /// A heartbeat older than this does not count as "up" for the SLO.
    pub availability_stale: Duration,
    /// How often accumulated availability is written to the database.
    pub availability_flush: Duration,
    pub telegram_api_base: String,
    /// Per delivery attempt.
    pub send_timeout: Duration,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            heartbeat_stale: Duration::from_secs(60),
            crash_loop_restarts: 3,
            resolve_hold: Duration::from_secs(30),
            rate_per_minute: 20,
            fenced_window: Duration::from_secs(600),
            availability_stale: Duration::from_secs(30),
            availability_flush: Duration::from_secs(30),
            telegram_api_base: "https://api.telegram.org".to_owned(),
            send_timeout: Duration::from_secs(5),
        }
    }
}

/// Everything the operator views are configured with.
#[derive(Clone)]
pub struct Settings {
    /// SHA-256 of `POLYBOT_METRICS_TOKEN`; the token itself is not kept.
    pub metrics_token_hash: Option<Vec<u8>>,
    pub secure_cookies: bool,
    pub session_ttl: Duration,
    pub alerts: AlertSettings,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("metrics_token", &self.metrics_token_hash.is_some())
            .field("secure_cookies", &self.secure_cookies)
            .field("session_ttl", &self.session_ttl)
            .field("alerts", &self.alerts)
            .finish()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            metrics_token_hash: None,
            secure_cookies: false,
            session_ttl: Duration::from_secs(12 * 3600),
            alerts: AlertSettings::default(),
        }
    }
}

fn secs(name: &str, default: Duration) -> Duration {
    match std::env::var(name) {
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => Duration::from_secs_f64(s),
            _ => {
                tracing::warn!(variable = name, value = %v, "not a number of seconds; using the default");
                default
            }
        },
        Err(_) => default,
    }
}

fn number<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            tracing::warn!(variable = name, value = %v, "not a number; using the default");
            default
        }),
        Err(_) => default,
    }
}

impl Settings {
    /// From the environment (see the module's table); unset means the default.
    pub fn from_env() -> Self {
        let d = AlertSettings::default();
        let metrics_token = std::env::var("POLYBOT_METRICS_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
            .map(SecretString::from);
        Self {
            metrics_token_hash: metrics_token
                .map(|t| Sha256::digest(t.expose_secret().trim().as_bytes()).to_vec()),
            secure_cookies: matches!(
                std::env::var("POLYBOT_COOKIE_SECURE").as_deref(),
                Ok("1" | "true" | "yes" | "on")
            ),
            session_ttl: Duration::from_secs(3600 * number("POLYBOT_SESSION_HOURS", 12u64)),
            alerts: AlertSettings {
                interval: secs("POLYBOT_ALERT_INTERVAL_SECS", d.interval),
                heartbeat_stale: secs("POLYBOT_ALERT_HEARTBEAT_SECS", d.heartbeat_stale),
                crash_loop_restarts: number(
                    "POLYBOT_ALERT_CRASH_LOOP_RESTARTS",
                    d.crash_loop_restarts,
                ),
                resolve_hold: secs("POLYBOT_ALERT_RESOLVE_SECS", d.resolve_hold),
                rate_per_minute: number("POLYBOT_ALERT_RATE_PER_MINUTE", d.rate_per_minute),
                fenced_window: d.fenced_window,
                availability_stale: d.availability_stale,
                availability_flush: secs("POLYBOT_AVAILABILITY_FLUSH_SECS", d.availability_flush),
                telegram_api_base: std::env::var("POLYBOT_TELEGRAM_API_BASE")
                    .ok()
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| v.trim().trim_end_matches('/').to_owned())
                    .unwrap_or(d.telegram_api_base),
                send_timeout: d.send_timeout,
            },
        }
    }

    /// Sets the metrics token (tests, embedding).
    pub fn with_metrics_token(mut self, token: &str) -> Self {
        self.metrics_token_hash = Some(Sha256::digest(token.as_bytes()).to_vec());
        self
    }
}
