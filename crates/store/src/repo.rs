//! Repositories. Every function takes the transaction it runs in; the caller
//! commits.

pub mod activity;
pub mod fleet;
pub mod housekeeping;
pub mod opportunities;
pub mod runtime;
pub mod tenants;
