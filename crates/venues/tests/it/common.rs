use std::sync::Arc;
use std::time::Duration;

use polybot_venues::{ClientOptions, Endpoints, ManualClock, RetryPolicy};
use wiremock::MockServer;

/// A recorded response from `tests/fixtures/`.
pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Options whose waits are recorded by a manual clock instead of slept.
pub fn options() -> (ClientOptions, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let options = ClientOptions {
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        retry: RetryPolicy::default(),
        clock: clock.clone(),
        ..ClientOptions::default()
    };
    (options, clock)
}

/// Every venue pointed at the mock server.
pub fn endpoints(server: &MockServer) -> Endpoints {
    Endpoints::all_at(&server.uri())
}

/// JSON response with a body from a fixture.
pub fn json(status: u16, fixture_name: &str) -> wiremock::ResponseTemplate {
    wiremock::ResponseTemplate::new(status)
        .insert_header("content-type", "application/json")
        .set_body_string(fixture(fixture_name))
}
