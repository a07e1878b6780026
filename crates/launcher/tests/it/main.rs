//! The integration tests of `polybot-launcher`, as one test binary (one link
//! instead of one per file).

mod ecs_mock;
mod ecs_moto;
mod events_moto;
mod local;
