//! Shadow execution: every order is built, checked against the market's
//! rules and signed exactly as it would be sent, then only recorded. Reads
//! (balances, positions) go to the venue as in live mode, so a tenant
//! rehearses with their real keys and sees what their bot would have sent.
//!
//! Not here: sending, cancelling (nothing of ours rests at the venue).

use std::sync::Mutex;

use async_trait::async_trait;

use super::polymarket::PolymarketExecutor;
use super::{
    ExecError, ExecutionKind, Executor, MarketRules, OpenOrder, OrderRequest, OrderState, Placed,
    VenueBalance, VenueFill, VenuePosition,
};

/// Orders signed with the tenant's keys and never sent.
#[derive(Debug)]
pub struct ShadowExecutor {
    signer: PolymarketExecutor,
    /// What would have been sent, oldest first.
    log: Mutex<Vec<Placed>>,
}

impl ShadowExecutor {
    pub fn new(signer: PolymarketExecutor) -> Self {
        Self {
            signer,
            log: Mutex::new(Vec::new()),
        }
    }

    /// The orders that would have been sent so far.
    pub fn would_have_sent(&self) -> Vec<Placed> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The signer's executor (for its market rules).
    pub fn signer(&self) -> &PolymarketExecutor {
        &self.signer
    }
}

#[async_trait]
impl Executor for ShadowExecutor {
    fn kind(&self) -> ExecutionKind {
        ExecutionKind::Shadow
    }

    async fn market_rules(&self, market: &str) -> Result<MarketRules, ExecError> {
        Ok(self.signer.fetch_market_rules(market).await?)
    }

    async fn place(&self, order: &OrderRequest, rules: &MarketRules) -> Result<Placed, ExecError> {
        let (signed, hash) = self.signer.sign(order, rules).await?;
        let placed = Placed {
            client_id: order.client_id,
            venue_order_id: hash,
            state: OrderState::NotSent,
            filled: rust_decimal::Decimal::ZERO,
            fills: Vec::new(),
            trade_ids: Vec::new(),
            recovered: false,
            wire: serde_json::to_string(&signed).unwrap_or_default(),
        };
        tracing::info!(
            client_order_id = %order.client_id,
            market = %order.market,
            side = ?order.side,
            price = %order.price,
            size = %order.size,
            order_hash = %placed.venue_order_id,
            "shadow: order signed and not sent"
        );
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(placed.clone());
        Ok(placed)
    }

    async fn cancel(&self, _venue_order_id: &str) -> Result<(), ExecError> {
        Ok(())
    }

    async fn cancel_all(&self) -> Result<Vec<String>, ExecError> {
        Ok(Vec::new())
    }

    async fn open_orders(&self) -> Result<Vec<OpenOrder>, ExecError> {
        Ok(Vec::new())
    }

    async fn fills(&self, _since_ms: i64) -> Result<Vec<VenueFill>, ExecError> {
        Ok(Vec::new())
    }

    async fn positions(&self) -> Result<Vec<VenuePosition>, ExecError> {
        self.signer.positions().await
    }

    async fn balances(&self) -> Result<Vec<VenueBalance>, ExecError> {
        self.signer.balances().await
    }
}
