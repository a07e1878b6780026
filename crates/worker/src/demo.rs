//! The offline demo: the recording bundled with the binary and the settings
//! of the demo tenant that `polybot up --demo` onboards.
//!
//! The recording (`data/replay/demo.jsonl`, made by `data/replay/make_demo.py`)
//! holds Polymarket and Kalshi books for matched markets, a 15-minute BTC
//! up/down window with spot prices from Binance US, Coinbase and Kraken, and
//! headlines. With [`demo_tenant_request`]'s settings each of the four
//! strategies finds an opportunity within the first seconds of it.

use serde_json::{Value, json};

/// The bundled recording, in the engine's JSONL replay format.
pub const DEMO_REPLAY: &str = include_str!("../../../data/replay/demo.jsonl");

/// The demo tenant's name (how `polybot up --demo` finds it again).
pub const DEMO_TENANT_NAME: &str = "demo";

/// The body of `POST /tenants` for the demo tenant: paper mode, all four
/// strategies on, tuned to the recording's markets.
pub fn demo_tenant_request() -> Value {
    json!({
        "name": DEMO_TENANT_NAME,
        "mode": "paper",
        "strategies": {
            "complement_arb": {
                "venues": ["polymarket", "kalshi"],
                "min_edge": "0.01",
                "max_size": "100",
                "market_cooldown_secs": 20
            },
            "cross_venue_arb": {
                "min_edge": "0.01",
                "max_size": "100",
                "assets": ["BTC"],
                "market_cooldown_secs": 20
            },
            "crypto_15m": {
                "assets": ["BTC"],
                "spot_venues": ["binance_us", "coinbase", "kraken"],
                "min_edge": "0.03",
                "max_size": "50",
                "volatility_window_secs": 600,
                "min_volatility_samples": 3,
                "market_cooldown_secs": 45
            },
            "news_arb": {
                "max_headline_age_secs": 300,
                "min_edge": "0.05",
                "max_size": "50",
                "market_cooldown_secs": 120,
                "rules": [
                    {
                        "market": "fed-decision-in-june-cut-25bps",
                        "outcome": "Yes",
                        "keywords": ["fed"],
                        "entities": ["cut", "cuts", "lowers"],
                        "exclude": ["hike", "holds"],
                        "fair_price": "0.80"
                    },
                    {
                        "market": "sec-approves-solana-etf-by-june-30",
                        "outcome": "Yes",
                        "keywords": ["sec", "solana"],
                        "entities": ["approves", "approval", "approved"],
                        "exclude": ["delays", "rejects"],
                        "fair_price": "0.92"
                    }
                ]
            }
        },
        "risk": {
            "max_position_per_market": "500",
            "max_total_exposure": "5000",
            "max_daily_loss": "250"
        }
    })
}

/// The demo worker's starting paper cash (`POLYBOT_PAPER_BALANCES`): enough
/// for the whole recording's trades.
pub const DEMO_PAPER_BALANCES: &str = "polymarket=10000,kalshi=10000";
