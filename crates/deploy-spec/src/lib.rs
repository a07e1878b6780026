//! How PolyBot Cloud is laid out on AWS, as pure functions over data.
//!
//! - [`worker`]: renders a tenant's worker task definition (with or without
//!   the IB Gateway sidecar) from the templates in `deploy/ecs/`, which are
//!   compiled in, so the ECS launcher and the files in the repository cannot
//!   drift;
//! - [`fargate`]: the CPU/memory pairs Fargate offers, and the message that
//!   says what to use instead of one it does not;
//! - [`cost`]: the monthly cost model behind `polybot cost`, over the dated
//!   price table in `deploy/prices/`.
//!
//! Nothing here calls AWS: the launcher (`polybot-launcher`) sends what this
//! crate renders, and the CLI prints what it estimates.
#![forbid(unsafe_code)]

pub mod cost;
pub mod fargate;
pub mod template;
pub mod worker;

pub use fargate::{FargateSize, FargateSizeError};
pub use worker::{
    IbkrSidecar, SpecError, WorkerMode, WorkerTaskSpec, render_worker_task_definition,
};
