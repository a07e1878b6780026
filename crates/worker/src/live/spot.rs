//! The spot feeds: one task per spot venue (Binance US, Coinbase, Kraken)
//! pricing the 15-minute strategy's assets against USD, from the venue's
//! trade stream, with REST tickers for any asset the stream has not priced
//! lately.

use std::collections::HashMap;
use std::time::Duration;

use polybot_core::strategy::Venue;
use polybot_engine::{Asset, Clock, Event, EventKind, SpotPrice};
use polybot_venues::stream::{
    MarketEvent, StreamOptions, spawn_binance_us_stream, spawn_coinbase_stream, spawn_kraken_stream,
};
use polybot_venues::{Binance, Coinbase, Kraken, VenueError};
use rust_decimal::Decimal;
use tokio::time::Instant;

use super::plan::spot_key;
use super::{Ctx, LiveSettings};
use crate::source::SystemClock;

/// A spot venue's REST connector.
pub(super) enum SpotClient {
    BinanceUs(Binance),
    Coinbase(Coinbase),
    Kraken(Kraken),
}

/// The venue's name in the source's description.
pub(super) fn spot_name(venue: Venue) -> &'static str {
    match venue {
        Venue::BinanceUs => "Binance US",
        Venue::Coinbase => "Coinbase",
        Venue::Kraken => "Kraken",
        Venue::Polymarket => "Polymarket",
        Venue::Kalshi => "Kalshi",
    }
}

impl SpotClient {
    pub(super) fn new(venue: Venue, settings: &LiveSettings) -> Result<Self, VenueError> {
        let (e, o) = (&settings.endpoints, &settings.client);
        Ok(match venue {
            Venue::Coinbase => SpotClient::Coinbase(Coinbase::new(e, o)?),
            Venue::Kraken => SpotClient::Kraken(Kraken::new(e, o)?),
            // Prediction markets are never spot venues (validated at onboarding).
            _ => SpotClient::BinanceUs(Binance::us(e, o)?),
        })
    }

    fn venue(&self) -> Venue {
        match self {
            SpotClient::BinanceUs(_) => Venue::BinanceUs,
            SpotClient::Coinbase(_) => Venue::Coinbase,
            SpotClient::Kraken(_) => Venue::Kraken,
        }
    }

    /// The asset's USD price: the venue's symbol for it, then its last trade.
    async fn price(&self, asset: &str) -> Result<Decimal, VenueError> {
        let asset = asset.to_ascii_uppercase();
        Ok(match self {
            SpotClient::BinanceUs(c) => c.ticker_price(&format!("{asset}USD")).await?.last,
            SpotClient::Coinbase(c) => c.ticker(&format!("{asset}-USD")).await?.last,
            SpotClient::Kraken(c) => {
                // Kraken names bitcoin XBT.
                let base = if asset == "BTC" { "XBT" } else { &asset };
                c.ticker(&format!("{base}USD")).await?.last
            }
        })
    }
}

/// The venue's stream symbol for `asset` against USD.
fn spot_stream_symbol(venue: Venue, asset: &str) -> String {
    let asset = asset.to_ascii_uppercase();
    match venue {
        Venue::Coinbase => format!("{asset}-USD"),
        Venue::Kraken => format!("{asset}/USD"),
        _ => format!("{asset}USD").to_ascii_lowercase(),
    }
}

/// A symbol reduced to letters and digits, upper case: `btcusd`, `BTC-USD`
/// and `BTC/USD` all read `BTCUSD`.
fn symbol_key(symbol: &str) -> String {
    symbol
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn spot_event(venue: Venue, asset: &str, price: Decimal) -> Event {
    Event::new(
        SystemClock.now(),
        EventKind::Spot(SpotPrice {
            venue,
            asset: Asset::new(asset),
            price,
        }),
    )
}

/// Spot prices: the venue's trade stream when `stream` is on, and REST
/// polling for any asset the stream has not priced within `every` (the
/// stream is down, reconnecting, or quiet).
pub(super) async fn spot_feed(
    ctx: Ctx,
    client: SpotClient,
    assets: Vec<String>,
    every: Duration,
    settings: LiveSettings,
) {
    let venue = client.venue();
    let key = spot_key(venue);
    let mut fresh: HashMap<String, Instant> = HashMap::new();
    let by_symbol: HashMap<String, String> = assets
        .iter()
        .map(|a| (symbol_key(&format!("{a}USD")), a.clone()))
        .collect();
    let stream_cancel = ctx.cancel.child_token();
    let mut stream = settings.stream.then(|| {
        let symbols: Vec<String> = assets
            .iter()
            .map(|a| spot_stream_symbol(venue, a))
            .collect();
        let options = StreamOptions::default();
        let e = &settings.endpoints;
        let cancel = stream_cancel.clone();
        match venue {
            Venue::Coinbase => {
                spawn_coinbase_stream(e, symbols, Default::default(), options, cancel)
            }
            Venue::Kraken => spawn_kraken_stream(e, symbols, Default::default(), options, cancel),
            _ => spawn_binance_us_stream(e, symbols, Default::default(), options, cancel),
        }
    });
    let mut next_poll = Instant::now();
    loop {
        let wait = next_poll.saturating_duration_since(Instant::now());
        let message = async {
            match stream.as_mut() {
                Some((_, rx)) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            message = message => match message {
                Some(MarketEvent::Trade(trade)) => {
                    let Some(asset) = by_symbol.get(&symbol_key(&trade.symbol)) else {
                        continue;
                    };
                    ctx.shared.ok(key);
                    fresh.insert(asset.clone(), Instant::now());
                    if !ctx.emit(spot_event(venue, asset, trade.price)).await {
                        break;
                    }
                }
                Some(MarketEvent::Error(err)) => {
                    tracing::debug!(error = %err, "spot stream");
                }
                Some(_) => {}
                // The stream ended: polling carries on alone.
                None => stream = None,
            },
            _ = tokio::time::sleep(wait) => {
                for asset in &assets {
                    if fresh.get(asset).is_some_and(|at| at.elapsed() < every) {
                        continue;
                    }
                    match client.price(asset).await {
                        Ok(price) => {
                            ctx.shared.ok(key);
                            if !ctx.emit(spot_event(venue, asset, price)).await {
                                stream_cancel.cancel();
                                return;
                            }
                        }
                        Err(e) => ctx.shared.venue_error(key, &e),
                    }
                }
                next_poll = Instant::now() + every;
            }
        }
    }
    stream_cancel.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_venue_spells_its_usd_pair_its_own_way_and_the_key_reads_them_alike() {
        assert_eq!(spot_stream_symbol(Venue::Coinbase, "btc"), "BTC-USD");
        assert_eq!(spot_stream_symbol(Venue::Kraken, "BTC"), "BTC/USD");
        assert_eq!(spot_stream_symbol(Venue::BinanceUs, "BTC"), "btcusd");
        for symbol in ["btcusd", "BTC-USD", "BTC/USD"] {
            assert_eq!(symbol_key(symbol), "BTCUSD");
        }
    }
}
