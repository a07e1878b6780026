//! Base URLs of every venue, overridable from the environment.
//!
//! The same variables serve the worker and `polybot doctor`, and point the
//! connectors at a venue's demo environment (Kalshi's demo API, Alpaca paper)
//! or at a local recorded-response server in tests. Constructors take an
//! explicit [`Endpoints`], so tests never mutate the process environment.

use serde::Serialize;
use url::Url;

use crate::error::{ErrorKind, VenueError};
use crate::model::Api;

/// Environment variable overriding the Polymarket gamma API.
pub const ENV_POLYMARKET_GAMMA: &str = "POLYBOT_POLYMARKET_GAMMA_URL";
/// Environment variable overriding the Polymarket CLOB API.
pub const ENV_POLYMARKET_CLOB: &str = "POLYBOT_POLYMARKET_CLOB_URL";
/// Environment variable overriding the Polymarket CLOB websocket host.
pub const ENV_POLYMARKET_WS: &str = "POLYBOT_POLYMARKET_WS_URL";
/// Environment variable overriding the Kalshi trade API (including `/trade-api/v2`).
pub const ENV_KALSHI: &str = "POLYBOT_KALSHI_URL";
/// Environment variable overriding Binance US.
pub const ENV_BINANCE_US: &str = "POLYBOT_BINANCE_US_URL";
/// Environment variable overriding Binance global (probed only to explain its geo-block).
pub const ENV_BINANCE: &str = "POLYBOT_BINANCE_URL";
/// Environment variable overriding Coinbase Exchange.
pub const ENV_COINBASE: &str = "POLYBOT_COINBASE_URL";
/// Environment variable overriding Kraken.
pub const ENV_KRAKEN: &str = "POLYBOT_KRAKEN_URL";
/// Environment variable overriding Alpaca market data.
pub const ENV_ALPACA_DATA: &str = "POLYBOT_ALPACA_DATA_URL";
/// Environment variable overriding the Alpaca trading API (live or paper).
pub const ENV_ALPACA_TRADING: &str = "POLYBOT_ALPACA_TRADING_URL";
/// Environment variable overriding the Binance US market-stream host.
pub const ENV_BINANCE_US_WS: &str = "POLYBOT_BINANCE_US_WS_URL";
/// Environment variable overriding the Coinbase Exchange websocket feed.
pub const ENV_COINBASE_WS: &str = "POLYBOT_COINBASE_WS_URL";
/// Environment variable overriding the Kraken websocket v2 URL.
pub const ENV_KRAKEN_WS: &str = "POLYBOT_KRAKEN_WS_URL";
/// Environment variable overriding Kalshi's WebSocket (including `/trade-api/ws/v2`).
pub const ENV_KALSHI_WS: &str = "POLYBOT_KALSHI_WS_URL";

/// Base URL of each venue (no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoints {
    /// Polymarket gamma API.
    pub polymarket_gamma: String,
    /// Polymarket CLOB REST API.
    pub polymarket_clob: String,
    /// Polymarket CLOB websocket host (`/ws/market` is appended).
    pub polymarket_ws: String,
    /// Kalshi trade API, including `/trade-api/v2`.
    pub kalshi: String,
    /// Binance US.
    pub binance_us: String,
    /// Binance global.
    pub binance: String,
    /// Coinbase Exchange.
    pub coinbase: String,
    /// Kraken.
    pub kraken: String,
    /// Alpaca market data.
    pub alpaca_data: String,
    /// Alpaca trading (live by default; paper is `https://paper-api.alpaca.markets`).
    pub alpaca_trading: String,
    /// Binance US market-stream host (`/stream?streams=…` is appended).
    pub binance_us_ws: String,
    /// Coinbase Exchange websocket feed (used as is).
    pub coinbase_ws: String,
    /// Kraken websocket v2 (used as is, so it includes `/v2`).
    pub kraken_ws: String,
    /// Kalshi's WebSocket, including `/trade-api/ws/v2` (its path is what
    /// the connection's signature covers).
    pub kalshi_ws: String,
}

impl Default for Endpoints {
    /// The venues' real production URLs.
    fn default() -> Self {
        Self {
            polymarket_gamma: "https://gamma-api.polymarket.com".to_owned(),
            polymarket_clob: "https://clob.polymarket.com".to_owned(),
            polymarket_ws: "wss://ws-subscriptions-clob.polymarket.com".to_owned(),
            kalshi: "https://external-api.kalshi.com/trade-api/v2".to_owned(),
            binance_us: "https://api.binance.us".to_owned(),
            binance: "https://api.binance.com".to_owned(),
            coinbase: "https://api.exchange.coinbase.com".to_owned(),
            kraken: "https://api.kraken.com".to_owned(),
            alpaca_data: "https://data.alpaca.markets".to_owned(),
            alpaca_trading: "https://api.alpaca.markets".to_owned(),
            binance_us_ws: "wss://stream.binance.us:9443".to_owned(),
            coinbase_ws: "wss://ws-feed.exchange.coinbase.com".to_owned(),
            kraken_ws: "wss://ws.kraken.com/v2".to_owned(),
            kalshi_ws: "wss://api.elections.kalshi.com/trade-api/ws/v2".to_owned(),
        }
    }
}

impl Endpoints {
    /// Defaults, overridden by any `POLYBOT_*_URL` variable that is set.
    pub fn from_env() -> Result<Self, VenueError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Defaults, overridden by whatever `lookup` returns for each variable
    /// name (an empty value counts as unset). Invalid URLs are a
    /// [`ErrorKind::Config`] error naming the variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, VenueError> {
        let mut endpoints = Self::default();
        for (api, var, slot) in endpoints.slots_mut() {
            if let Some(value) = lookup(var).filter(|v| !v.trim().is_empty()) {
                *slot = validate(api, var, &value)?;
            }
        }
        Ok(endpoints)
    }

    /// Every endpoint pointed at one base URL (a local mock server in tests).
    pub fn all_at(base: &str) -> Self {
        let base = base.trim_end_matches('/').to_owned();
        let ws = base.replacen("http", "ws", 1);
        Self {
            polymarket_gamma: base.clone(),
            polymarket_clob: base.clone(),
            polymarket_ws: ws.clone(),
            kalshi: format!("{base}/trade-api/v2"),
            binance_us: base.clone(),
            binance: base.clone(),
            coinbase: base.clone(),
            kraken: base.clone(),
            alpaca_data: base.clone(),
            alpaca_trading: base,
            binance_us_ws: ws.clone(),
            coinbase_ws: ws.clone(),
            kalshi_ws: format!("{ws}/trade-api/ws/v2"),
            kraken_ws: ws,
        }
    }

    /// The base URL of `venue` (`None` for the IBKR gateway, which is a TCP port).
    pub fn base(&self, api: Api) -> Option<&str> {
        Some(match api {
            Api::PolymarketGamma => &self.polymarket_gamma,
            Api::PolymarketClob => &self.polymarket_clob,
            Api::Kalshi => &self.kalshi,
            Api::BinanceUs => &self.binance_us,
            Api::Binance => &self.binance,
            Api::Coinbase => &self.coinbase,
            Api::Kraken => &self.kraken,
            Api::AlpacaData => &self.alpaca_data,
            Api::AlpacaTrading => &self.alpaca_trading,
            Api::Ibkr => return None,
        })
    }

    fn slots_mut(&mut self) -> [(Api, &'static str, &mut String); 14] {
        [
            (
                Api::PolymarketGamma,
                ENV_POLYMARKET_GAMMA,
                &mut self.polymarket_gamma,
            ),
            (
                Api::PolymarketClob,
                ENV_POLYMARKET_CLOB,
                &mut self.polymarket_clob,
            ),
            (
                Api::PolymarketClob,
                ENV_POLYMARKET_WS,
                &mut self.polymarket_ws,
            ),
            (Api::Kalshi, ENV_KALSHI, &mut self.kalshi),
            (Api::BinanceUs, ENV_BINANCE_US, &mut self.binance_us),
            (Api::Binance, ENV_BINANCE, &mut self.binance),
            (Api::Coinbase, ENV_COINBASE, &mut self.coinbase),
            (Api::Kraken, ENV_KRAKEN, &mut self.kraken),
            (Api::AlpacaData, ENV_ALPACA_DATA, &mut self.alpaca_data),
            (
                Api::AlpacaTrading,
                ENV_ALPACA_TRADING,
                &mut self.alpaca_trading,
            ),
            (Api::BinanceUs, ENV_BINANCE_US_WS, &mut self.binance_us_ws),
            (Api::Coinbase, ENV_COINBASE_WS, &mut self.coinbase_ws),
            (Api::Kraken, ENV_KRAKEN_WS, &mut self.kraken_ws),
            (Api::Kalshi, ENV_KALSHI_WS, &mut self.kalshi_ws),
        ]
    }
}

fn validate(api: Api, var: &str, value: &str) -> Result<String, VenueError> {
    let trimmed = value.trim().trim_end_matches('/');
    let ok = Url::parse(trimmed)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https" | "ws" | "wss") && u.has_host());
    match ok {
        Some(_) => Ok(trimmed.to_owned()),
        None => Err(VenueError::new(
            api,
            "",
            ErrorKind::Config {
                detail: format!("{var} is not an http(s) or ws(s) URL: {trimmed:?}"),
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_real_hosts() {
        let e = Endpoints::default();
        assert_eq!(e.binance_us, "https://api.binance.us");
        assert_eq!(e.kalshi, "https://external-api.kalshi.com/trade-api/v2");
        assert_eq!(e.base(Api::Ibkr), None);
        assert_eq!(e.base(Api::Kraken), Some("https://api.kraken.com"));
    }

    #[test]
    fn every_variable_read_here_is_one_a_control_plane_forwards_to_workers() {
        let asked = std::cell::RefCell::new(Vec::new());
        Endpoints::from_lookup(|name| {
            asked.borrow_mut().push(name.to_owned());
            None
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let mut asked = asked.into_inner();
        asked.sort();
        let mut forwarded: Vec<String> = polybot_core::worker::env::VENUE_URLS
            .iter()
            .map(ToString::to_string)
            .collect();
        forwarded.sort();
        assert_eq!(asked, forwarded);
    }

    #[test]
    fn variables_override_their_venue_only_and_lose_trailing_slashes() {
        let e = Endpoints::from_lookup(|name| match name {
            ENV_KALSHI => Some("https://demo-api.kalshi.co/trade-api/v2/".to_owned()),
            ENV_BINANCE_US => Some("  ".to_owned()),
            _ => None,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.kalshi, "https://demo-api.kalshi.co/trade-api/v2");
        assert_eq!(e.binance_us, "https://api.binance.us");
        assert_eq!(e.coinbase, Endpoints::default().coinbase);
    }

    #[test]
    fn websocket_variables_override_the_stream_urls() {
        let e = Endpoints::from_lookup(|name| match name {
            ENV_BINANCE_US_WS => Some("ws://127.0.0.1:9001/".to_owned()),
            ENV_COINBASE_WS => {
                Some("wss://ws-feed-public.sandbox.exchange.coinbase.com".to_owned())
            }
            ENV_KRAKEN_WS => Some("wss://beta-ws.kraken.com/v2".to_owned()),
            _ => None,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.binance_us_ws, "ws://127.0.0.1:9001");
        assert_eq!(
            e.coinbase_ws,
            "wss://ws-feed-public.sandbox.exchange.coinbase.com"
        );
        assert_eq!(e.kraken_ws, "wss://beta-ws.kraken.com/v2");
        assert_eq!(e.binance_us, Endpoints::default().binance_us);
        let defaults = Endpoints::default();
        assert_eq!(defaults.binance_us_ws, "wss://stream.binance.us:9443");
        assert_eq!(defaults.coinbase_ws, "wss://ws-feed.exchange.coinbase.com");
        assert_eq!(defaults.kraken_ws, "wss://ws.kraken.com/v2");
        let err = Endpoints::from_lookup(|name| {
            (name == ENV_KRAKEN_WS).then(|| "ws.kraken.com/v2".to_owned())
        })
        .unwrap_err();
        assert_eq!(err.api(), Api::Kraken);
        assert!(err.to_string().contains(ENV_KRAKEN_WS), "{err}");
    }

    #[test]
    fn an_invalid_url_names_the_variable() {
        let err =
            Endpoints::from_lookup(|name| (name == ENV_KRAKEN).then(|| "not a url".to_owned()))
                .unwrap_err();
        assert_eq!(err.api(), Api::Kraken);
        assert!(err.to_string().contains(ENV_KRAKEN), "{err}");
    }
}
