//! The integration tests of `polybot-deploy-spec`, as one test binary (one link
//! instead of one per file).

mod cost_doc;
mod iam;
mod worker_task_definition;
