//! Repositories. Every function takes the transaction it runs in; the caller
//! commits.

pub mod balances;
pub mod configs;
pub mod heartbeats;
pub mod lease;
pub mod opportunities;
pub mod tenants;
pub mod trades;
