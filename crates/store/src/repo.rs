//! Repositories. Every function takes the transaction it runs in; the caller
//! commits.

pub mod alerts;
pub mod audit;
pub mod balances;
pub mod billing;
pub mod configs;
pub mod exits;
pub mod fleet;
pub mod heartbeats;
pub mod housekeeping;
pub mod idempotency;
pub mod lease;
pub mod operator_secrets;
pub mod opportunities;
pub mod pairs;
pub mod rollouts;
pub mod runtime;
pub mod sessions;
pub mod tenant_secrets;
pub mod tenants;
pub mod tokens;
pub mod trades;
