//! The integration tests of `polybot-store`, as one test binary (one link
//! instead of one per file).

mod claims;
mod control_login;
mod isolation;
mod legacy;
mod migrations;
mod repo_activity;
mod repo_alerts;
mod repo_billing;
mod repo_control;
mod repo_exits;
mod repo_fleet;
mod repo_operator_secrets;
mod repo_pairs;
mod repo_rollouts;
mod repo_runtime;
mod repo_secrets;
mod repo_worker;
mod search_path_attack;
mod wakeups;
