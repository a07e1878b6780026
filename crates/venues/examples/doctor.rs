//! Runs the venue probes with the endpoints from the environment and prints
//! the table (`--json` for JSON): `cargo run -p polybot-venues --example doctor`.

use polybot_venues::{DoctorOptions, Endpoints, probe_all};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoints = Endpoints::from_env()?;
    let report = probe_all(&endpoints, DoctorOptions::from_env()).await;
    if std::env::args().any(|a| a == "--json") {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render_table());
    }
    Ok(())
}
