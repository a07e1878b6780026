//! Alerting: channels configured through the API, an evaluator loop that
//! raises and resolves alerts, and their delivery.
//!
//! - [`rules`]: which alerts fire and resolve, a pure function of a tenant's
//!   observed facts and its alerts' previous state (property-tested);
//! - [`executor`]: the loop that loads the rules' input, records their
//!   transitions and hands notifications to delivery;
//! - [`notify`]: delivery (signed webhooks, Telegram) with a per-channel rate;
//! - [`channels`]: the channels' HTTP API and validation;
//! - [`sealing`]: channel secrets encrypted at rest;
//! - [`ssrf`]: the guard on the hosts a webhook may target (at save time and
//!   at delivery).
//!
//! The SQL is in `polybot_store::repo::alerts`, and what the rules decide on
//! is read through the fleet read model (`polybot_store::repo::fleet`).
//!
//! **Alerts.** `heartbeat_stale` (an active tenant's worker silent longer than
//! `POLYBOT_ALERT_HEARTBEAT_SECS`), `crash_loop` (back-off after at least
//! `POLYBOT_ALERT_CRASH_LOOP_RESTARTS` restarts), `breaker_open` (per
//! strategy, with the breaker's reason), `daily_loss` (today's realized PnL
//! at or below −max_daily_loss, or the worker reports the limit hit) and
//! `fenced` (a worker exited with the fencing exit code: a newer twin took
//! its lease). An alert notifies once when it starts firing, and once
//! ("resolved") after its condition has been clear for
//! `POLYBOT_ALERT_RESOLVE_SECS`.

pub mod channels;
pub mod executor;
pub mod notify;
pub mod rules;
pub mod sealing;
pub mod ssrf;

// The router and the OpenAPI document name the handlers as `alerts::…`; the
// `__path_…` items are what `#[utoipa::path]` generates for them.
pub use channels::{
    __path_get_operator_channels, __path_get_tenant_channels, __path_put_operator_channels,
    __path_put_tenant_channels, get_operator_channels, get_tenant_channels, put_operator_channels,
    put_tenant_channels,
};
pub use channels::{Channel, ChannelView, ChannelsRequest, ChannelsView, tenant_channels};
pub use executor::{EVALUATOR_KEY, EvalReport, Evaluator};
pub use notify::{Notification, Notifier, SIGNATURE_HEADER, TOLERANCE_SECS, sign, verify};
pub use sealing::{ChannelKey, seal_plaintext_secrets};
pub use ssrf::{Resolve, SystemResolver, Targets};
