//! Kraken spot: public ticker and depth, and the signed `Balance` call.
//! Kraken answers errors with HTTP 200 and `{"error":[…]}`: every response
//! goes through [`Kraken::unwrap`], which turns a non-empty `error` into an
//! [`ErrorKind::Api`] (or [`ErrorKind::RateLimited`] for its rate-limit codes).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::value::RawValue;

use crate::endpoints::Endpoints;
use crate::error::{ErrorKind, VenueError};
use crate::http::{Body, ClientOptions, HttpClient, Request};
use crate::model::{Api, Level, OrderBook, Ticker};
use crate::num::Dec;
use crate::ratelimit::{RateLimiter, limits};
use crate::signing::kraken::{KrakenCredentials, headers};

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    error: Vec<String>,
    #[serde(default)]
    result: Option<Box<RawValue>>,
}

#[derive(Debug, Deserialize)]
struct DepthWire {
    bids: Vec<(Dec, Dec, IgnoredAny)>,
    asks: Vec<(Dec, Dec, IgnoredAny)>,
}

#[derive(Debug, Deserialize)]
struct TickerWire {
    /// `[price, wholeLotVolume, lotVolume]`
    a: Vec<Dec>,
    b: Vec<Dec>,
    /// `[price, lotVolume]`
    c: Vec<Dec>,
}

/// Kraken client.
#[derive(Debug)]
pub struct Kraken {
    http: HttpClient,
    public: RateLimiter,
    private: RateLimiter,
    last_nonce: AtomicU64,
}

impl Kraken {
    /// A client on `endpoints.kraken`.
    pub fn new(endpoints: &Endpoints, options: &ClientOptions) -> Result<Self, VenueError> {
        Ok(Self {
            http: HttpClient::new(Api::Kraken, &endpoints.kraken, options)?,
            public: limits::kraken_public(),
            private: limits::kraken_private(),
            last_nonce: AtomicU64::new(0),
        })
    }

    fn unwrap<T: DeserializeOwned>(&self, endpoint: &str, body: &[u8]) -> Result<T, VenueError> {
        let envelope: Envelope = self.http.decode(endpoint, body)?;
        if !envelope.error.is_empty() {
            let message = envelope.error.join("; ");
            let kind = if message.contains("Rate limit exceeded") || message.contains("Throttled") {
                ErrorKind::RateLimited { retry_after: None }
            } else {
                ErrorKind::Api { message }
            };
            return Err(self
                .http
                .err(endpoint, kind)
                .with_status(200)
                .with_body(body));
        }
        let Some(result) = envelope.result else {
            return Err(self
                .http
                .err(
                    endpoint,
                    ErrorKind::Decode {
                        detail: "no error and no result".to_owned(),
                    },
                )
                .with_body(body));
        };
        self.http.decode(endpoint, result.get().as_bytes())
    }

    async fn public<T: DeserializeOwned>(&self, req: Request<'_>) -> Result<T, VenueError> {
        let response = self.http.send(&req).await?;
        self.unwrap(&req.endpoint(), &response.body)
    }

    /// `GET /0/public/Depth?pair=&count=`, sorted best-first. The book is
    /// keyed by Kraken's own pair name (`XBTUSD` → `XXBTZUSD`).
    pub async fn depth(&self, pair: &str, count: u32) -> Result<OrderBook, VenueError> {
        let req = Request::get("/0/public/Depth")
            .query("pair", pair)
            .query("count", count)
            .limit(&self.public, 1);
        let endpoint = req.endpoint();
        let result: BTreeMap<String, DepthWire> = self.public(req).await?;
        let (name, wire) = result.into_iter().next().ok_or_else(|| {
            self.http.err(
                &endpoint,
                ErrorKind::Decode {
                    detail: format!("no book for {pair} in the result"),
                },
            )
        })?;
        let levels = |v: Vec<(Dec, Dec, IgnoredAny)>| {
            v.into_iter()
                .map(|(p, s, _)| Level::new(p.0, s.0))
                .collect::<Vec<_>>()
        };
        Ok(OrderBook::new(
            Api::Kraken,
            name,
            levels(wire.bids),
            levels(wire.asks),
        ))
    }

    /// `GET /0/public/Ticker?pair=`.
    pub async fn ticker(&self, pair: &str) -> Result<Ticker, VenueError> {
        let req = Request::get("/0/public/Ticker")
            .query("pair", pair)
            .limit(&self.public, 1);
        let endpoint = req.endpoint();
        let result: BTreeMap<String, TickerWire> = self.public(req).await?;
        let (name, wire) = result.into_iter().next().ok_or_else(|| {
            self.http.err(
                &endpoint,
                ErrorKind::Decode {
                    detail: format!("no ticker for {pair} in the result"),
                },
            )
        })?;
        let first = |v: &[Dec], field: &str| {
            v.first().map(|d| d.0).ok_or_else(|| {
                self.http.err(
                    &endpoint,
                    ErrorKind::Decode {
                        detail: format!("ticker field {field} is empty"),
                    },
                )
            })
        };
        Ok(Ticker {
            api: Api::Kraken,
            symbol: name,
            last: first(&wire.c, "c")?,
            bid: Some(first(&wire.b, "b")?),
            ask: Some(first(&wire.a, "a")?),
            timestamp: None,
        })
    }

    /// A strictly increasing nonce (milliseconds, bumped on collisions).
    fn nonce(&self) -> u64 {
        let now = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
        let mut last = self.last_nonce.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self
                .last_nonce
                .compare_exchange(last, next, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(actual) => last = actual,
            }
        }
    }

    /// Signed `POST /0/private/Balance`: asset → balance.
    pub async fn balances(
        &self,
        creds: &KrakenCredentials,
    ) -> Result<BTreeMap<String, Decimal>, VenueError> {
        let path = "/0/private/Balance";
        let nonce = self.nonce();
        let body = format!("nonce={nonce}");
        let mut req = Request::post(path, Body::Form(body.clone())).limit(&self.private, 1);
        req.auth = Some(headers(creds, path, nonce, &body)?);
        let response = self.http.send(&req).await?;
        let result: BTreeMap<String, Dec> = self.unwrap(&req.endpoint(), &response.body)?;
        Ok(result.into_iter().map(|(k, v)| (k, v.0)).collect())
    }
}
