//! The integration tests of `polybot-cli`, as one test binary (one link
//! instead of one per file).

mod browser;
mod demo;
mod fuzz;
#[path = "../../../worker/tests/it/common/live_mock.rs"]
#[allow(dead_code)]
mod live_mock;
mod openapi_client;
mod ops;
mod orchestrator;
mod record;
mod rehearsal;
mod settings;
mod tenants_cli;
mod up;
mod up_live;
mod worker_isolation;
mod worker_settings;
