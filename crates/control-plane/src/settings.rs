//! Settings of the operator views (dashboard sessions, `/metrics` access,
//! alerting): [`SettingsArgs`] is what `polybot up` and `polybot
//! control-plane` read from their flags and the environment (the doc comments
//! are the `--help`); [`Settings`] is what the running control plane keeps.
//! A value that does not parse stops the start with an error naming its
//! variable — nothing falls back to a default silently.
//!
//! | variable | flag | default | what |
//! |---|---|---|---|
//! | `POLYBOT_METRICS_TOKEN` | `--metrics-token` | none | a bearer token that may scrape `/metrics` (and nothing else) |
//! | `POLYBOT_COOKIE_SECURE` | `--cookie-secure` | `Secure` unless the listener is loopback | mark the dashboard cookies `Secure` (`true`) or not (`false`) |
//! | `POLYBOT_SESSION_HOURS` | `--session-hours` | `12` | dashboard session lifetime, in hours |
//! | `POLYBOT_ALERT_INTERVAL_SECS` | `--alert-interval-secs` | `10` | time between alert evaluations |
//! | `POLYBOT_ALERT_HEARTBEAT_SECS` | `--alert-heartbeat-secs` | `60` | a desired worker silent this long alerts |
//! | `POLYBOT_ALERT_CRASH_LOOP_RESTARTS` | `--alert-crash-loop-restarts` | `3` | restarts in a row before `crash_loop` alerts |
//! | `POLYBOT_ALERT_RESOLVE_SECS` | `--alert-resolve-secs` | `30` | a condition clear this long sends the resolved message |
//! | `POLYBOT_ALERT_RATE_PER_MINUTE` | `--alert-rate-per-minute` | `20` | notifications per channel and minute, at most |
//! | `POLYBOT_AVAILABILITY_FLUSH_SECS` | `--availability-flush-secs` | `30` | how often worker availability is written to the database |
//! | `POLYBOT_TELEGRAM_API_BASE` | `--telegram-api-base` | `https://api.telegram.org` | the Telegram Bot API (tests point it at a mock) |
//!
//! Durations take seconds, fractions allowed (`0.5`); switches take
//! `true`/`false`, `yes`/`no`, `on`/`off` or `1`/`0`.

use std::ffi::OsStr;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
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
    /// Whether dashboard cookies are `Secure`; `None` until the listener is
    /// known ([`crate::App::build`] decides: `Secure` unless it is loopback).
    pub secure_cookies: Option<bool>,
    pub session_ttl: Duration,
    pub alerts: AlertSettings,
    /// Plans, Stripe and payment holds (`crate::billing`).
    pub billing: crate::billing::BillingSettings,
    /// Who may switch a tenant to live, and the CLOB its preflight asks.
    pub live: crate::tenants::live::LiveSettings,
    /// The recording every worker replays (`polybot up --demo`): strategies
    /// naming assets or markets it lacks are refused at onboarding.
    pub recording: Option<crate::tenants::recording::Recording>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("metrics_token", &self.metrics_token_hash.is_some())
            .field("secure_cookies", &self.secure_cookies)
            .field("session_ttl", &self.session_ttl)
            .field("alerts", &self.alerts)
            .field("billing", &self.billing)
            .field("live", &self.live)
            .field("recording", &self.recording.is_some())
            .finish()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            metrics_token_hash: None,
            secure_cookies: None,
            session_ttl: Duration::from_secs(12 * 3600),
            alerts: AlertSettings::default(),
            billing: crate::billing::BillingSettings::default(),
            live: crate::tenants::live::LiveSettings::default(),
            recording: None,
        }
    }
}

impl Settings {
    /// Whether cookies are `Secure`: as configured, and `Secure` when it is
    /// not known yet (a router served without [`crate::App::build`]).
    pub fn cookies_secure(&self) -> bool {
        self.secure_cookies.unwrap_or(true)
    }

    /// These settings with the cookie default decided for a listener on
    /// `listen`: `Secure` unless it is loopback (browsers send a `Secure`
    /// cookie only over HTTPS, and a loopback listener is plain HTTP).
    pub fn for_listener(&self, listen: std::net::SocketAddr) -> Self {
        let mut settings = self.clone();
        settings
            .secure_cookies
            .get_or_insert(!listen.ip().is_loopback());
        settings
    }

    /// Sets the metrics token (tests, embedding).
    pub fn with_metrics_token(mut self, token: &str) -> Self {
        self.metrics_token_hash = Some(Sha256::digest(token.as_bytes()).to_vec());
        self
    }
}

/// The operator views' settings, as flags or environment variables.
#[derive(Debug, Clone, clap::Args)]
pub struct SettingsArgs {
    /// A bearer token that may scrape /metrics (and nothing else); give it to
    /// Prometheus instead of the operator token.
    #[arg(
        long,
        env = "POLYBOT_METRICS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub metrics_token: Option<SecretString>,
    /// Mark the dashboard's cookies Secure (true) or not (false); by default
    /// they are Secure unless the control plane listens on a loopback address.
    #[arg(long, env = "POLYBOT_COOKIE_SECURE", num_args = 0..=1, default_missing_value = "true", value_parser = Named(switch))]
    pub cookie_secure: Option<bool>,
    /// How long a dashboard sign-in lasts, in hours.
    #[arg(long, env = "POLYBOT_SESSION_HOURS", value_name = "HOURS", default_value = "12", value_parser = Named(hours))]
    pub session_hours: Duration,
    /// Seconds between alert evaluations.
    #[arg(long, env = "POLYBOT_ALERT_INTERVAL_SECS", value_name = "SECS", default_value = "10", value_parser = Named(seconds))]
    pub alert_interval_secs: Duration,
    /// A desired worker whose heartbeat is this many seconds old alerts
    /// (`heartbeat_stale`).
    #[arg(long, env = "POLYBOT_ALERT_HEARTBEAT_SECS", value_name = "SECS", default_value = "60", value_parser = Named(seconds))]
    pub alert_heartbeat_secs: Duration,
    /// Crashes in a row before `crash_loop` alerts.
    #[arg(long, env = "POLYBOT_ALERT_CRASH_LOOP_RESTARTS", value_name = "N", default_value = "3", value_parser = Named(positive::<i32>))]
    pub alert_crash_loop_restarts: i32,
    /// A condition clear for this many seconds sends the resolved message
    /// (one that flaps stays one alert).
    #[arg(long, env = "POLYBOT_ALERT_RESOLVE_SECS", value_name = "SECS", default_value = "30", value_parser = Named(seconds))]
    pub alert_resolve_secs: Duration,
    /// Notifications per channel and minute, at most.
    #[arg(long, env = "POLYBOT_ALERT_RATE_PER_MINUTE", value_name = "N", default_value = "20", value_parser = Named(positive::<usize>))]
    pub alert_rate_per_minute: usize,
    /// Seconds between writes of the workers' accumulated availability (the
    /// SLO's data) to the database.
    #[arg(long, env = "POLYBOT_AVAILABILITY_FLUSH_SECS", value_name = "SECS", default_value = "30", value_parser = Named(seconds))]
    pub availability_flush_secs: Duration,
    /// The Telegram Bot API that telegram channels send through.
    #[arg(long, env = "POLYBOT_TELEGRAM_API_BASE", value_name = "URL", default_value = "https://api.telegram.org", value_parser = Named(http_base))]
    pub telegram_api_base: String,
    /// Only operators may switch a tenant to live (tenant tokens get a 403).
    /// On unless turned off: real money moves, so the platform decides.
    #[arg(long, env = "POLYBOT_LIVE_REQUIRES_OPERATOR", value_name = "BOOL", default_value = "true", action = clap::ArgAction::Set, value_parser = Named(switch))]
    pub live_requires_operator: bool,
    /// The Polymarket CLOB the live preflight asks; the worker's setting.
    #[arg(long, env = "POLYBOT_POLYMARKET_CLOB_URL", value_name = "URL", default_value = "https://clob.polymarket.com", value_parser = Named(http_base))]
    pub polymarket_clob_url: String,
    /// Kalshi's trade API (with `/trade-api/v2`) the live preflight asks; the worker's setting.
    #[arg(long, env = "POLYBOT_KALSHI_URL", value_name = "URL", default_value = "https://external-api.kalshi.com/trade-api/v2", value_parser = Named(http_base))]
    pub kalshi_url: String,
}

impl From<SettingsArgs> for Settings {
    fn from(args: SettingsArgs) -> Self {
        let defaults = AlertSettings::default();
        Self {
            // An empty variable means no token, as an unset one does.
            metrics_token_hash: args
                .metrics_token
                .map(|token| token.expose_secret().trim().to_owned())
                .filter(|token| !token.is_empty())
                .map(|token| Sha256::digest(token.as_bytes()).to_vec()),
            secure_cookies: args.cookie_secure,
            session_ttl: args.session_hours,
            alerts: AlertSettings {
                interval: args.alert_interval_secs,
                heartbeat_stale: args.alert_heartbeat_secs,
                crash_loop_restarts: args.alert_crash_loop_restarts,
                resolve_hold: args.alert_resolve_secs,
                rate_per_minute: args.alert_rate_per_minute,
                availability_flush: args.availability_flush_secs,
                telegram_api_base: args.telegram_api_base,
                ..defaults
            },
            billing: crate::billing::BillingSettings::default(),
            live: crate::tenants::live::LiveSettings {
                requires_operator: args.live_requires_operator,
                polymarket: polybot_venues::execution::polymarket::PolymarketSettings {
                    host: format!("{}/", args.polymarket_clob_url.trim_end_matches('/')),
                    ..Default::default()
                },
                kalshi: polybot_venues::execution::kalshi::KalshiSettings {
                    base: args.kalshi_url.trim_end_matches('/').to_owned(),
                    ..Default::default()
                },
            },
            recording: None,
        }
    }
}

/// A value parser whose error names the environment variable as well as the
/// flag: clap's own names only the flag, which misleads whoever set the
/// variable in a task definition.
#[derive(Clone, Copy)]
struct Named<T>(fn(&str) -> Result<T, String>);

impl<T: Clone + Send + Sync + 'static> TypedValueParser for Named<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let text = value.to_string_lossy();
        (self.0)(text.trim()).map_err(|why| {
            let flag = arg
                .and_then(clap::Arg::get_long)
                .map(|long| format!("--{long}"))
                .unwrap_or_else(|| "the value".to_owned());
            let source = match arg.and_then(clap::Arg::get_env) {
                Some(var) => format!("{} (or {flag})", var.to_string_lossy()),
                None => flag,
            };
            cmd.clone().error(
                ErrorKind::ValueValidation,
                format!("{source} is {text:?}: {why}"),
            )
        })
    }
}

fn seconds(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Ok(Duration::from_secs_f64(secs)),
        _ => Err("expected a number of seconds, such as 30 or 0.5".to_owned()),
    }
}

fn hours(text: &str) -> Result<Duration, String> {
    match text.parse::<u64>() {
        Ok(hours) if (1..=24 * 366).contains(&hours) => Ok(Duration::from_secs(hours * 3600)),
        _ => Err("expected a whole number of hours between 1 and 8784".to_owned()),
    }
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(text: &str) -> Result<T, String> {
    match text.parse::<T>() {
        Ok(n) if n > T::default() => Ok(n),
        _ => Err("expected a whole number greater than 0".to_owned()),
    }
}

fn switch(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected true or false (also yes/no, on/off, 1/0)".to_owned()),
    }
}

/// An http(s) URL, kept without its trailing slash (paths are appended).
fn http_base(text: &str) -> Result<String, String> {
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
            Ok(text.trim_end_matches('/').to_owned())
        }
        _ => Err("expected an http(s) URL, such as https://api.telegram.org".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        settings: SettingsArgs,
    }

    fn parse(args: &[&str]) -> Result<Settings, clap::Error> {
        Cli::try_parse_from(std::iter::once("polybot").chain(args.iter().copied()))
            .map(|cli| cli.settings.into())
    }

    #[test]
    fn no_flags_give_the_documented_defaults() {
        let settings = parse(&[]).expect("the defaults parse");
        let defaults = Settings::default();
        assert_eq!(settings.metrics_token_hash, None);
        assert_eq!(settings.secure_cookies, None);
        assert_eq!(settings.session_ttl, defaults.session_ttl);
        assert_eq!(settings.alerts.interval, defaults.alerts.interval);
        assert_eq!(settings.alerts.heartbeat_stale, Duration::from_secs(60));
        assert_eq!(settings.alerts.crash_loop_restarts, 3);
        assert_eq!(settings.alerts.resolve_hold, Duration::from_secs(30));
        assert_eq!(settings.alerts.rate_per_minute, 20);
        assert_eq!(settings.alerts.availability_flush, Duration::from_secs(30));
        assert_eq!(
            settings.alerts.telegram_api_base,
            "https://api.telegram.org"
        );
    }

    #[test]
    fn live_is_for_operators_unless_turned_off_and_the_preflight_asks_the_workers_clob() {
        let settings = parse(&[]).expect("the defaults parse");
        assert!(settings.live.requires_operator);
        assert_eq!(
            settings.live.polymarket.host,
            "https://clob.polymarket.com/"
        );
        let settings = parse(&[
            "--live-requires-operator",
            "off",
            "--polymarket-clob-url",
            "http://127.0.0.1:9/",
        ])
        .expect("the flags parse");
        assert!(!settings.live.requires_operator);
        assert_eq!(settings.live.polymarket.host, "http://127.0.0.1:9/");
        assert_eq!(
            parse(&[]).expect("the defaults parse").live.kalshi.base,
            "https://external-api.kalshi.com/trade-api/v2"
        );
        let settings =
            parse(&["--kalshi-url", "http://127.0.0.1:9/trade-api/v2/"]).expect("the flag parses");
        assert_eq!(settings.live.kalshi.base, "http://127.0.0.1:9/trade-api/v2");
    }

    #[test]
    fn flags_set_every_setting() {
        let settings = parse(&[
            "--metrics-token",
            "scrape-me",
            "--cookie-secure",
            "--session-hours",
            "2",
            "--alert-interval-secs",
            "0.5",
            "--alert-heartbeat-secs",
            "5",
            "--alert-crash-loop-restarts",
            "7",
            "--alert-resolve-secs",
            "1",
            "--alert-rate-per-minute",
            "3",
            "--availability-flush-secs",
            "4",
            "--telegram-api-base",
            "http://127.0.0.1:9/bot/",
        ])
        .expect("valid flags parse");
        assert_eq!(
            settings.metrics_token_hash,
            Some(Sha256::digest(b"scrape-me").to_vec())
        );
        assert_eq!(settings.secure_cookies, Some(true));
        assert_eq!(settings.session_ttl, Duration::from_secs(7200));
        assert_eq!(settings.alerts.interval, Duration::from_millis(500));
        assert_eq!(settings.alerts.heartbeat_stale, Duration::from_secs(5));
        assert_eq!(settings.alerts.crash_loop_restarts, 7);
        assert_eq!(settings.alerts.resolve_hold, Duration::from_secs(1));
        assert_eq!(settings.alerts.rate_per_minute, 3);
        assert_eq!(settings.alerts.availability_flush, Duration::from_secs(4));
        assert_eq!(settings.alerts.telegram_api_base, "http://127.0.0.1:9/bot");
    }

    #[test]
    fn a_bad_duration_names_its_variable() {
        let err = parse(&["--alert-interval-secs", "ten"]).expect_err("not a number");
        let message = err.to_string();
        assert!(
            message.contains("POLYBOT_ALERT_INTERVAL_SECS (or --alert-interval-secs) is \"ten\""),
            "{message}"
        );
    }

    #[test]
    fn switches_read_the_usual_spellings() {
        let err = switch("maybe").expect_err("not a switch");
        assert_eq!(err, "expected true or false (also yes/no, on/off, 1/0)");
        assert_eq!(switch("YES"), Ok(true));
        assert_eq!(switch("off"), Ok(false));
    }

    #[test]
    fn a_zero_rate_limit_is_refused() {
        let err = parse(&["--alert-rate-per-minute", "0"]).expect_err("zero");
        let message = err.to_string();
        assert!(
            message.contains("POLYBOT_ALERT_RATE_PER_MINUTE"),
            "{message}"
        );
        assert!(message.contains("greater than 0"), "{message}");
    }

    #[test]
    fn an_empty_metrics_token_means_none() {
        let settings = parse(&["--metrics-token", "  "]).expect("an empty token parses");
        assert_eq!(settings.metrics_token_hash, None);
    }
}
