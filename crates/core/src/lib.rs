//! Domain types shared by every PolyBot crate: tenant identity, trading mode,
//! and the validation rules that the API applies at onboarding.
//!
//! Nothing here performs I/O; the database, the network and the clock live in
//! the crates that depend on this one.

pub mod fees;
pub mod keys;
pub mod lifecycle;
pub mod risk;
pub mod schema;
pub mod strategy;
pub mod tenant;
pub mod validation;
pub mod worker;

pub use lifecycle::{TenantAction, TenantState};
pub use tenant::{Mode, TenantId, TenantIdError};
