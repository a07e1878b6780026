//! Repositories. Every function takes the transaction it runs in; the caller
//! commits.

pub mod opportunities;
pub mod tenant_secrets;
pub mod tenants;
