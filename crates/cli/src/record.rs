//! `polybot record`: records the venues' live public market data into the
//! engine's JSONL replay format (the format `polybot_engine::replay` parses,
//! documented in the engine crate's root), for demos and tests.
//!
//! It runs the worker's live source ([`polybot_worker::LiveSource`]) with the
//! feeds of complement arbitrage (Polymarket), cross-venue arbitrage and the
//! 15-minute strategy for the chosen assets, and writes every event it
//! produces, one line each, as it arrives. Endpoints honour the same
//! `POLYBOT_*_URL` variables as the worker. No strategy runs and nothing is
//! traded; venue errors are logged and summarised at the end, never fatal.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use polybot_core::keys::ExchangeKeys;
use polybot_core::strategy::parse_strategies;
use polybot_engine::{BookSide, Event, EventKind, Level, MarketId, Side};
use polybot_worker::{EventSource, LiveSettings, LiveSource};
use serde_json::{Map, Value, json};

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The JSONL file to write (replaced if it exists).
    #[arg(long)]
    pub out: PathBuf,
    /// How long to record, in seconds.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Crypto assets whose 15-minute markets, Kalshi series and spot prices
    /// are recorded (upper case, comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "BTC,ETH")]
    pub assets: Vec<String>,
}

/// The strategies whose feeds are recorded.
fn strategies(assets: &[String]) -> anyhow::Result<polybot_core::strategy::StrategiesConfig> {
    let value = json!({
        "complement_arb": {"venues": ["polymarket"], "scan_interval_secs": 5},
        "cross_venue_arb": {"assets": assets, "scan_interval_secs": 5},
        "crypto_15m": {
            "assets": assets,
            "spot_venues": ["binance_us", "coinbase", "kraken"],
            "scan_interval_secs": 1
        }
    });
    parse_strategies(&value).map_err(|errors| {
        anyhow::anyhow!(
            "--assets: {}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    })
}

pub async fn run(args: RecordArgs) -> anyhow::Result<()> {
    let stop = crate::shutdown::on_signal()?;
    let assets: Vec<String> = args
        .assets
        .iter()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect();
    let strategies = strategies(&assets)?;
    let settings = LiveSettings::from_env()?;
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let mut source = LiveSource::start(settings, &strategies, &ExchangeKeys::default())
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let write_err = |e: std::io::Error| anyhow::anyhow!("writing {}: {e}", args.out.display());
    writeln!(
        out,
        "# recorded by `polybot record` ({}) for {} s, assets {}",
        source.describe(),
        args.seconds,
        assets.join(",")
    )
    .map_err(write_err)?;
    let mut writer = LineWriter::default();
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.seconds);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(deadline) => break,
            next = source.next_event() => match next {
                Ok(Some(event)) => {
                    let (kind, line) = writer.line(&event);
                    *counts.entry(kind).or_default() += 1;
                    writeln!(out, "{line}").map_err(write_err)?;
                }
                Ok(None) => break,
                Err(e) if e.fatal => anyhow::bail!("{}", e.message),
                Err(e) => tracing::warn!(error = %e.message, "recording: skipped"),
            },
        }
    }
    out.flush().map_err(write_err)?;
    let health = source.health();
    source.shutdown().await;
    let total: u64 = counts.values().sum();
    eprintln!(
        "wrote {total} events to {}: {}",
        args.out.display(),
        counts
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (venue, h) in &health {
        if !h.status.is_healthy() {
            eprintln!(
                "  {venue}: {} — {}{}",
                h.status.as_str(),
                h.last_error.as_deref().unwrap_or("no answer yet"),
                h.fix
                    .as_deref()
                    .map(|f| format!(" (fix: {f})"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Turns events into replay lines; remembers outcome names so that book
/// lines name their outcome as the format allows.
#[derive(Debug, Default)]
pub struct LineWriter {
    outcomes: HashMap<MarketId, Vec<String>>,
}

fn levels(levels: &[Level]) -> Value {
    Value::Array(
        levels
            .iter()
            .map(|l| json!([l.price.to_string(), l.size.to_string()]))
            .collect(),
    )
}

impl LineWriter {
    fn outcome(&self, market: &MarketId, idx: usize) -> Value {
        match self.outcomes.get(market).and_then(|names| names.get(idx)) {
            Some(name) => Value::String(name.clone()),
            None => json!(idx),
        }
    }

    /// The event's type name and its line (a JSON object, no newline).
    pub fn line(&mut self, event: &Event) -> (&'static str, String) {
        let mut m = Map::new();
        let kind = match &event.kind {
            EventKind::Market(def) => {
                self.outcomes.insert(def.id.clone(), def.outcomes.clone());
                m.insert("market".into(), json!(def.id.as_str()));
                m.insert("venue".into(), json!(def.venue.as_str()));
                m.insert("outcomes".into(), json!(def.outcomes));
                m.insert("fee_rate".into(), json!(def.fee_rate.to_string()));
                if !def.question.is_empty() {
                    m.insert("question".into(), json!(def.question));
                }
                if let Some(s) = &def.resolution_source {
                    m.insert("resolution_source".into(), json!(s));
                }
                if let Some(t) = def.window_start {
                    m.insert("window_start".into(), json!(t.0));
                }
                if let Some(t) = def.closes_at {
                    m.insert("closes_at".into(), json!(t.0));
                }
                if let Some(r) = &def.recurring {
                    m.insert("asset".into(), json!(r.asset.as_str()));
                    m.insert("direction".into(), json!(r.direction));
                    if let Some(s) = r.strike {
                        m.insert("strike".into(), json!(s.to_string()));
                    }
                }
                if let Some(p) = def.reference_price {
                    m.insert("reference_price".into(), json!(p.to_string()));
                }
                if def.fee_exponent != 1 {
                    m.insert("fee_exponent".into(), json!(def.fee_exponent));
                }
                if let Some(ids) = &def.venue_ids {
                    m.insert("condition_id".into(), json!(ids.market));
                    m.insert("tokens".into(), json!(ids.instruments));
                }
                "market"
            }
            EventKind::Book(b) => {
                m.insert("market".into(), json!(b.market.as_str()));
                m.insert("outcome".into(), self.outcome(&b.market, b.outcome));
                m.insert("bids".into(), levels(&b.bids));
                m.insert("asks".into(), levels(&b.asks));
                "book"
            }
            EventKind::BookDelta(d) => {
                m.insert("market".into(), json!(d.market.as_str()));
                m.insert("outcome".into(), self.outcome(&d.market, d.outcome));
                let side = match d.side {
                    BookSide::Bid => "bid",
                    BookSide::Ask => "ask",
                };
                m.insert("side".into(), json!(side));
                m.insert("price".into(), json!(d.price.to_string()));
                m.insert("size".into(), json!(d.size.to_string()));
                "book_delta"
            }
            EventKind::Trade(t) => {
                m.insert("market".into(), json!(t.market.as_str()));
                m.insert("outcome".into(), self.outcome(&t.market, t.outcome));
                m.insert("price".into(), json!(t.price.to_string()));
                m.insert("size".into(), json!(t.size.to_string()));
                let side = match t.aggressor {
                    Side::Buy => "buy",
                    Side::Sell => "sell",
                };
                m.insert("side".into(), json!(side));
                "trade"
            }
            EventKind::Spot(s) => {
                m.insert("venue".into(), json!(s.venue.as_str()));
                m.insert("asset".into(), json!(s.asset.as_str()));
                m.insert("price".into(), json!(s.price.to_string()));
                "spot"
            }
            EventKind::Headline(h) => {
                m.insert("id".into(), json!(h.id));
                m.insert("source".into(), json!(h.source));
                m.insert("title".into(), json!(h.title));
                if !h.summary.is_empty() {
                    m.insert("summary".into(), json!(h.summary));
                }
                m.insert("published".into(), json!(h.published.0));
                "headline"
            }
            EventKind::Resolved(r) => {
                m.insert("market".into(), json!(r.market.as_str()));
                m.insert("outcome".into(), self.outcome(&r.market, r.outcome));
                "resolved"
            }
            EventKind::FeedHealth(h) => {
                m.insert("strategy".into(), json!(h.strategy.as_str()));
                if let Some(reason) = &h.degraded {
                    m.insert("degraded".into(), json!(reason));
                }
                if let Some(limit) = &h.rate_limited {
                    m.insert("rate_limited".into(), json!(limit.reason));
                    if let Some(until) = limit.until {
                        m.insert("rate_limited_until".into(), json!(until.0));
                    }
                }
                "feed_health"
            }
            EventKind::Tick => "tick",
        };
        let mut line = Map::new();
        line.insert("type".into(), json!(kind));
        line.insert("ts".into(), json!(event.ts.0));
        line.extend(m);
        (kind, Value::Object(line).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polybot_engine::{ReplayParser, Timestamp};

    /// Every kind of line the writer makes parses back into the same event.
    #[test]
    fn every_event_written_parses_back_with_the_engines_replay_parser() {
        let text = concat!(
            r#"{"type":"market","ts":1,"market":"btc-updown-15m-900","venue":"polymarket","outcomes":["Up","Down"],"fee_rate":"0.07","question":"q","resolution_source":"https://data.chain.link/streams/btc-usd","window_start":900000,"closes_at":1800000,"asset":"BTC","direction":"up","reference_price":"94000.5","fee_exponent":2,"condition_id":"0xabc","tokens":["11","12"]}"#,
            "\n",
            r#"{"type":"market","ts":1,"market":"KX-1","venue":"kalshi","outcomes":["Yes","No"],"fee_rate":"0.07","asset":"BTC","direction":"above","strike":"100000.00"}"#,
            "\n",
            r#"{"type":"book","ts":2,"market":"btc-updown-15m-900","outcome":"Down","bids":[["0.48","10"]],"asks":[["0.52","5"],["0.53","1.5"]]}"#,
            "\n",
            r#"{"type":"book_delta","ts":3,"market":"KX-1","outcome":"Yes","side":"bid","price":"0.41","size":"0"}"#,
            "\n",
            r#"{"type":"trade","ts":4,"market":"KX-1","outcome":"No","price":"0.6","size":"3","side":"sell"}"#,
            "\n",
            r#"{"type":"spot","ts":5,"venue":"kraken","asset":"BTC","price":"94998.10000"}"#,
            "\n",
            r#"{"type":"headline","ts":6,"id":"g-1","source":"Wire","title":"Fed cuts","summary":"s","published":5}"#,
            "\n",
            r#"{"type":"resolved","ts":7,"market":"KX-1","outcome":"Yes"}"#,
            "\n",
            r#"{"type":"tick","ts":8}"#,
            "\n",
            r#"{"type":"feed_health","ts":9,"strategy":"news_arb","degraded":"rss error: HTTP 500","rate_limited":"NewsAPI 429","rate_limited_until":60009}"#,
            "\n",
            r#"{"type":"feed_health","ts":10,"strategy":"crypto_15m"}"#,
            "\n"
        );
        let events = polybot_engine::parse_jsonl(text).unwrap();
        let mut writer = LineWriter::default();
        let mut parser = ReplayParser::new();
        let mut kinds = Vec::new();
        for event in &events {
            let (kind, line) = writer.line(event);
            kinds.push(kind);
            assert_eq!(
                parser.parse_line(&line).unwrap().as_ref(),
                Some(event),
                "{line}"
            );
        }
        assert_eq!(
            kinds,
            vec![
                "market",
                "market",
                "book",
                "book_delta",
                "trade",
                "spot",
                "headline",
                "resolved",
                "tick",
                "feed_health",
                "feed_health"
            ]
        );
        assert_eq!(events[8].ts, Timestamp(8));
    }
}
