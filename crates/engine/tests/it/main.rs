//! The integration tests of `polybot-engine`, as one test binary (one link
//! instead of one per file).

mod accounting;
mod replay;
mod risk_and_breakers;
