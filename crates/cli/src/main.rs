//! `polybot`: one binary for every role of the platform.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

mod commands;
mod demo;
mod ecs_args;
mod fleet_cli;
mod market_data;
mod ops;
mod record;
mod redis_server;
mod replay;
mod shutdown;
mod tenant_cost;
mod tenants_cli;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    init_logging(cli.verbose);
    // The runtime starts after `prepare`, so that a worker's sandbox covers
    // every thread it will ever have.
    let result = commands::prepare(cli).and_then(|prepared| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?
            .block_on(commands::run(prepared))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The whole cause chain, so that no failure prints an empty message.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info,sqlx=warn",
        1 => "debug,sqlx=warn,hyper=info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("POLYBOT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
