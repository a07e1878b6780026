//! Repositories. Every function takes the transaction it runs in; the caller
//! commits.

pub mod alerts;
pub mod opportunities;
pub mod tenants;
