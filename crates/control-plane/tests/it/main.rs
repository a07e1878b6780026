//! The integration tests of `polybot-control-plane`, as one test binary (one link
//! instead of one per file).

mod alerts;
mod api;
mod billing;
mod common;
mod control_text;
mod dashboard;
mod data;
mod ecs_fleet;
mod going_live;
mod housekeeping;
mod leak;
mod local_capacity;
mod login_move;
mod metrics;
mod offboarding;
mod onboarding;
mod openapi;
mod pooled_onboarding;
mod protection;
mod reconcile_events;
mod rollout;
mod tenant_controls;
mod transport;
mod worker_settings;
