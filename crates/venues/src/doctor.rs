//! `polybot doctor`'s venue probes: which venues this host can reach, and
//! what to do about the ones it cannot.
//!
//! Each venue's public endpoint gets one GET (no retries, no keys) and the
//! IBKR gateway one TCP connect, all concurrently and each bounded by a short
//! timeout, so with no network the report arrives within about one timeout
//! with every row "unreachable" and the reason. Database, secret-store and
//! launcher checks belong to the CLI, which adds its own rows.

use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use crate::endpoints::{
    ENV_ALPACA_DATA, ENV_ALPACA_TRADING, ENV_BINANCE, ENV_BINANCE_US, ENV_COINBASE, ENV_KALSHI,
    ENV_KRAKEN, ENV_POLYMARKET_CLOB, ENV_POLYMARKET_GAMMA, Endpoints,
};
use crate::error::geo_block_fix;
use crate::model::Api;

/// Environment variable with the IBKR gateway's `host:port`.
pub const ENV_IBKR_GATEWAY: &str = "POLYBOT_IBKR_GATEWAY_ADDR";
/// The IBKR gateway's default address (paper trading port 4002).
pub const DEFAULT_IBKR_GATEWAY: &str = "127.0.0.1:4002";

/// How to probe.
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// Timeout of each probe (connect and answer).
    pub timeout: Duration,
    /// IBKR gateway `host:port`.
    pub ibkr_gateway: String,
}

impl Default for DoctorOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3),
            ibkr_gateway: DEFAULT_IBKR_GATEWAY.to_owned(),
        }
    }
}

impl DoctorOptions {
    /// Defaults, with the gateway address from `POLYBOT_IBKR_GATEWAY_ADDR` if set.
    pub fn from_env() -> Self {
        let mut opts = Self::default();
        if let Some(addr) = std::env::var(ENV_IBKR_GATEWAY)
            .ok()
            .filter(|a| !a.trim().is_empty())
        {
            opts.ibkr_gateway = addr.trim().to_owned();
        }
        opts
    }
}

/// Outcome of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeStatus {
    /// Reachable and answering.
    Ok,
    /// HTTP 451: the venue refuses this host's location.
    GeoBlocked,
    /// HTTP 401/403: reachable, but the endpoint needs API keys.
    NeedsKeys,
    /// No connection or no answer in time.
    Unreachable,
    /// Reachable but answering with an error (429, 5xx, error envelope, …).
    Error,
}

impl ProbeStatus {
    /// The table's wording.
    pub fn label(self) -> &'static str {
        match self {
            ProbeStatus::Ok => "ok",
            ProbeStatus::GeoBlocked => "geo-blocked",
            ProbeStatus::NeedsKeys => "needs keys",
            ProbeStatus::Unreachable => "unreachable",
            ProbeStatus::Error => "error",
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DoctorRow {
    /// The API probed (`venue` in the JSON report, as before [`Api`] had its name).
    #[serde(rename = "venue")]
    pub api: Api,
    /// Its name as shown in the table.
    pub venue_name: String,
    /// What was probed (URL, or `tcp://host:port`).
    pub endpoint: String,
    /// Outcome.
    pub status: ProbeStatus,
    /// HTTP status, when there was an answer.
    pub http_status: Option<u16>,
    /// What was seen.
    pub notes: String,
    /// What to do about it, when something is wrong.
    pub fix: Option<String>,
    /// How long the probe took.
    pub latency_ms: u64,
}

/// The report: one row per API, in [`Api::ALL`] order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DoctorReport {
    /// The rows.
    pub rows: Vec<DoctorRow>,
}

impl DoctorReport {
    /// The row of `api`.
    pub fn row(&self, api: Api) -> Option<&DoctorRow> {
        self.rows.iter().find(|r| r.api == api)
    }

    /// Whether every row is ok.
    pub fn all_ok(&self) -> bool {
        self.rows.iter().all(|r| r.status == ProbeStatus::Ok)
    }

    /// A plain, aligned text table: VENUE, ENDPOINT, STATUS, NOTES, FIX.
    pub fn render_table(&self) -> String {
        let header = ["VENUE", "ENDPOINT", "STATUS", "NOTES", "FIX"];
        let cells: Vec<[String; 5]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.venue_name.clone(),
                    r.endpoint.clone(),
                    r.status.label().to_owned(),
                    r.notes.clone(),
                    r.fix.clone().unwrap_or_else(|| "-".to_owned()),
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &cells {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |cols: [&str; 5]| {
            let mut text = String::new();
            for (i, (col, w)) in cols.iter().zip(widths).enumerate() {
                if i + 1 == cols.len() {
                    text.push_str(col);
                } else {
                    let pad = w - col.chars().count();
                    text.push_str(col);
                    text.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(header);
        let rule = widths.map(|w| "-".repeat(w));
        line([&rule[0], &rule[1], &rule[2], &rule[3], &rule[4]]);
        for row in &cells {
            line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
        }
        out
    }
}

/// The public endpoint probed for each HTTP venue, and its override variable.
fn probe_target(api: Api) -> Option<(&'static str, &'static str)> {
    Some(match api {
        Api::PolymarketGamma => ("/markets?limit=1", ENV_POLYMARKET_GAMMA),
        Api::PolymarketClob => ("/time", ENV_POLYMARKET_CLOB),
        Api::Kalshi => ("/exchange/status", ENV_KALSHI),
        Api::BinanceUs => ("/api/v3/ping", ENV_BINANCE_US),
        Api::Binance => ("/api/v3/ping", ENV_BINANCE),
        Api::Coinbase => ("/time", ENV_COINBASE),
        Api::Kraken => ("/0/public/SystemStatus", ENV_KRAKEN),
        Api::AlpacaData => (
            "/v1beta3/crypto/us/latest/orderbooks?symbols=BTC/USD",
            ENV_ALPACA_DATA,
        ),
        Api::AlpacaTrading => ("/v2/clock", ENV_ALPACA_TRADING),
        Api::Ibkr => return None,
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Probes every venue concurrently.
pub async fn probe_all(endpoints: &Endpoints, opts: DoctorOptions) -> DoctorReport {
    let client = reqwest::Client::builder()
        .timeout(opts.timeout)
        .connect_timeout(opts.timeout)
        .user_agent(concat!("polybot-doctor/", env!("CARGO_PKG_VERSION")))
        .build();
    let probes = Api::ALL.into_iter().map(|api| {
        let client = client.as_ref().ok();
        let opts = &opts;
        async move {
            match (api, endpoints.base(api), probe_target(api)) {
                (Api::Ibkr, _, _) | (_, None, _) | (_, _, None) => {
                    probe_ibkr(&opts.ibkr_gateway, opts.timeout).await
                }
                (_, Some(base), Some((path, var))) => match client {
                    Some(client) => probe_http(client, api, base, path, var, opts.timeout).await,
                    None => row(
                        api,
                        format!("{base}{path}"),
                        ProbeStatus::Error,
                        None,
                        "cannot build an HTTP client on this host".to_owned(),
                        None,
                        Duration::ZERO,
                    ),
                },
            }
        }
    });
    DoctorReport {
        rows: futures::future::join_all(probes).await,
    }
}

fn row(
    api: Api,
    endpoint: String,
    status: ProbeStatus,
    http_status: Option<u16>,
    notes: String,
    fix: Option<String>,
    took: Duration,
) -> DoctorRow {
    DoctorRow {
        api,
        venue_name: api.name().to_owned(),
        endpoint,
        status,
        http_status,
        notes,
        fix,
        latency_ms: millis(took),
    }
}

fn short(body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

async fn probe_http(
    client: &reqwest::Client,
    api: Api,
    base: &str,
    path: &str,
    var: &str,
    limit: Duration,
) -> DoctorRow {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let started = Instant::now();
    let unreachable_fix = format!(
        "check this host's network, DNS, firewall or proxy for {}; or point {var} at a reachable URL",
        api.name()
    );
    // The client has its own timeouts; this outer bound also covers a
    // response body that trickles in forever.
    let answer = timeout(limit + Duration::from_millis(250), async {
        let response = client.get(&url).send().await?;
        let status = response.status().as_u16();
        let body = response.bytes().await?;
        Ok::<_, reqwest::Error>((status, body))
    })
    .await;
    let took = started.elapsed();
    let (status, body) = match answer {
        Err(_) => {
            return row(
                api,
                url,
                ProbeStatus::Unreachable,
                None,
                format!("unreachable: no answer within {} ms", millis(limit)),
                Some(unreachable_fix),
                took,
            );
        }
        Ok(Err(e)) => {
            let reason = if e.is_timeout() {
                format!("no answer within {} ms", millis(limit))
            } else {
                transport_reason(&e)
            };
            return row(
                api,
                url,
                ProbeStatus::Unreachable,
                None,
                format!("unreachable: {reason}"),
                Some(unreachable_fix),
                took,
            );
        }
        Ok(Ok(answer)) => answer,
    };
    let (probe_status, notes, fix) = match status {
        200..=299 => kraken_envelope(api, &body)
            .unwrap_or_else(|| (ProbeStatus::Ok, format!("reachable (HTTP {status})"), None)),
        451 => (
            ProbeStatus::GeoBlocked,
            format!(
                "HTTP 451: geo-blocked from this host's location: {}",
                short(&body)
            ),
            Some(geo_block_fix(api)),
        ),
        401 | 403 => (
            ProbeStatus::NeedsKeys,
            format!("HTTP {status}: reachable, but this endpoint needs API keys"),
            Some(format!(
                "add {} API keys to the tenant's secret (a 403 may also be a WAF block of this host)",
                api.name()
            )),
        ),
        429 | 418 => (
            ProbeStatus::Error,
            format!("HTTP {status}: rate limited or banned: {}", short(&body)),
            Some("wait, then lower the request rate from this IP".to_owned()),
        ),
        500..=599 => (
            ProbeStatus::Error,
            format!("HTTP {status}: venue server error: {}", short(&body)),
            Some("venue-side problem: retry later and check the venue's status page".to_owned()),
        ),
        _ => (
            ProbeStatus::Error,
            format!("HTTP {status}: unexpected answer: {}", short(&body)),
            Some(format!("check that {var} points at the venue's API root")),
        ),
    };
    row(api, url, probe_status, Some(status), notes, fix, took)
}

/// Kraken answers errors with HTTP 200; report them, and a non-online status.
fn kraken_envelope(api: Api, body: &[u8]) -> Option<(ProbeStatus, String, Option<String>)> {
    if api != Api::Kraken {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Status {
        #[serde(default)]
        status: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Envelope {
        #[serde(default)]
        error: Vec<String>,
        #[serde(default)]
        result: Option<Status>,
    }
    let Ok(envelope) = serde_json::from_slice::<Envelope>(body) else {
        return Some((
            ProbeStatus::Error,
            format!("HTTP 200 but not Kraken's JSON envelope: {}", short(body)),
            Some(format!(
                "check that {ENV_KRAKEN} points at Kraken's API root"
            )),
        ));
    };
    if !envelope.error.is_empty() {
        return Some((
            ProbeStatus::Error,
            format!("HTTP 200 with errors: {}", envelope.error.join("; ")),
            None,
        ));
    }
    match envelope.result.and_then(|r| r.status) {
        Some(s) if s != "online" => Some((
            ProbeStatus::Error,
            format!("reachable, but the exchange status is {s:?}"),
            Some("trading is limited until Kraken is back online".to_owned()),
        )),
        Some(s) => Some((
            ProbeStatus::Ok,
            format!("reachable (HTTP 200, status {s})"),
            None,
        )),
        None => None,
    }
}

fn transport_reason(e: &reqwest::Error) -> String {
    let mut deepest = None;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        deepest = Some(s.to_string());
        source = s.source();
    }
    let reason = deepest.unwrap_or_else(|| "request failed".to_owned());
    if e.is_connect() && !reason.to_lowercase().contains("connect") {
        format!("connection failed: {reason}")
    } else {
        reason
    }
}

async fn probe_ibkr(addr: &str, limit: Duration) -> DoctorRow {
    let endpoint = format!("tcp://{addr}");
    let started = Instant::now();
    let fix = format!(
        "start the IBKR gateway container: it must be running and listening on {addr} \
         (set {ENV_IBKR_GATEWAY} if it listens elsewhere)"
    );
    match timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(_stream)) => row(
            Api::Ibkr,
            endpoint,
            ProbeStatus::Ok,
            None,
            "gateway port open".to_owned(),
            None,
            started.elapsed(),
        ),
        Ok(Err(e)) => row(
            Api::Ibkr,
            endpoint,
            ProbeStatus::Unreachable,
            None,
            format!("unreachable: {e}"),
            Some(fix),
            started.elapsed(),
        ),
        Err(_) => row(
            Api::Ibkr,
            endpoint,
            ProbeStatus::Unreachable,
            None,
            format!("unreachable: no answer within {} ms", millis(limit)),
            Some(fix),
            started.elapsed(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_aligned_with_a_header_and_a_rule() {
        let report = DoctorReport {
            rows: vec![
                row(
                    Api::Binance,
                    "https://api.binance.com/api/v3/ping".to_owned(),
                    ProbeStatus::GeoBlocked,
                    Some(451),
                    "HTTP 451".to_owned(),
                    Some("use Binance US".to_owned()),
                    Duration::ZERO,
                ),
                row(
                    Api::Kraken,
                    "https://api.kraken.com/0/public/SystemStatus".to_owned(),
                    ProbeStatus::Ok,
                    Some(200),
                    "reachable".to_owned(),
                    None,
                    Duration::ZERO,
                ),
            ],
        };
        let table = report.render_table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("VENUE           ENDPOINT"), "{table}");
        assert!(lines[1].starts_with("--------------  ----"), "{table}");
        assert_eq!(
            lines[2],
            "Binance global  https://api.binance.com/api/v3/ping           geo-blocked  HTTP 451   use Binance US"
        );
        assert_eq!(
            lines[3],
            "Kraken          https://api.kraken.com/0/public/SystemStatus  ok           reachable  -"
        );
    }
}
