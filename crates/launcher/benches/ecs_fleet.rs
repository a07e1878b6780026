//! The fleet benchmark on the ECS launcher: N tenants' workers from zero to
//! RUNNING against the AWS emulator with ECS's documented rate limits
//! enforced, and how that time compares with the physical bound.
//!
//! `cargo bench -p polybot-launcher --bench ecs_fleet` starts its own moto
//! (`scripts/moto_server.py --ecs-rate-limits`: RunTask and StopTask burst
//! 100 then 40/s, with every task drawn from the Fargate launch bucket of
//! burst 100 then 20/s; DescribeTasks, ListTasks and the task-definition
//! reads burst 100 then 20/s; RegisterTaskDefinition burst 20 then 1/s; a
//! call past its bucket is answered 400 ThrottlingException as ECS answers
//! it). `POLYBOT_BENCH_TENANTS` (200) sets N; `POLYBOT_PYTHON` the Python
//! with moto (python3).
//!
//! The launcher is driven as the reconciler drives it: every tenant not yet
//! started is started (`Launcher::start`: its task definition registered,
//! then RunTask) with the reconciler's concurrency of 8, a start that failed
//! (throttled past the launcher's retries) is tried again on the next pass a
//! second later, and `Launcher::list` (ListTasks + DescribeTasks) is polled
//! until all N tasks are RUNNING. moto starts a task RUNNING at once, so the
//! time measured is the API's: the ~60 s Fargate takes to pull and start a
//! task is not in it.

// Timings for a human to read: floats are fine here, unlike money.
#![allow(clippy::float_arithmetic)]

use std::collections::{BTreeMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_ecs::config::Credentials;
use polybot_core::{Mode, TenantId};
use polybot_launcher::ecs::{EcsConfig, EcsLauncher, Quotas, https_client};
use polybot_launcher::{LaunchError, LaunchSpec, Launcher, Phase};

const REGION: &str = "us-east-1";
const CONCURRENCY: usize = 8;

struct Moto {
    child: std::process::Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Err(e) = self.child.kill() {
            eprintln!("stopping moto: {e}");
        }
        if let Err(e) = self.child.wait() {
            eprintln!("reaping moto: {e}");
        }
    }
}

fn start_moto() -> Moto {
    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("port");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/moto_server.py");
    let child = Command::new(std::env::var("POLYBOT_PYTHON").unwrap_or_else(|_| "python3".into()))
        .arg(script)
        .args(["--port", "0", "--ecs-rate-limits", "--port-file"])
        .arg(&port_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 with moto 5 (pip install 'moto[server]')");
    let deadline = Instant::now() + Duration::from_secs(60);
    let port = loop {
        if let Ok(port) = std::fs::read_to_string(&port_file) {
            break port.trim().to_owned();
        }
        assert!(Instant::now() < deadline, "moto did not start within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

/// A subnet moto's EC2 knows (its default VPC has one per zone).
async fn a_subnet(endpoint: &str) -> String {
    let body = reqwest::Client::new()
        .post(endpoint)
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/ec2/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("Action=DescribeSubnets&Version=2016-11-15")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = body.find("<subnetId>").expect("moto has a default subnet") + "<subnetId>".len();
    let end = start + body[start..].find('<').unwrap();
    body[start..end].to_owned()
}

fn spec(tenant: TenantId) -> LaunchSpec {
    LaunchSpec {
        tenant,
        spec_hash: "bench".into(),
        mode: Mode::Paper,
        secret_env: BTreeMap::new(),
        secret_reference: Some(format!(
            "arn:aws:secretsmanager:{REGION}:123456789012:secret:polybot/tenants/{tenant}-AbC123"
        )),
        env: BTreeMap::new(),
        ibkr: false,
    }
}

/// How one start of the whole fleet went.
struct Run {
    started: Duration,
    all_running: Duration,
    running: usize,
    passes: u32,
    throttled: u32,
    first_error: Option<String>,
}

/// Starts every tenant of `all` as the reconciler would (concurrency 8, a
/// failed start tried again on the next pass a second later), then lists
/// until every new task is RUNNING.
async fn start_all(launcher: &Arc<EcsLauncher>, all: &[TenantId]) -> Run {
    let started = Instant::now();
    let mut pending: Vec<TenantId> = all.to_vec();
    let mut ids = HashSet::new();
    let mut passes = 0;
    let mut throttled = 0;
    let mut first_error: Option<String> = None;
    while !pending.is_empty() {
        passes += 1;
        let semaphore = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let mut set = tokio::task::JoinSet::new();
        for tenant in pending.drain(..) {
            let launcher = launcher.clone();
            let permit = semaphore.clone().acquire_owned().await.unwrap();
            set.spawn(async move {
                let result = launcher.start(&spec(tenant)).await;
                drop(permit);
                (tenant, result)
            });
        }
        while let Some(joined) = set.join_next().await {
            match joined.unwrap() {
                (_, Ok(instance)) => {
                    ids.insert(instance.id);
                }
                (tenant, Err(e)) => {
                    if matches!(e, LaunchError::Throttled { .. }) {
                        throttled += 1;
                    } else if first_error.is_none() {
                        first_error = Some(e.to_string());
                    }
                    pending.push(tenant);
                }
            }
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "not started within an hour; first error: {first_error:?}"
        );
    }
    let all_started = started.elapsed();
    let running = loop {
        let running = launcher
            .list()
            .await
            .unwrap()
            .into_iter()
            .filter(|i| i.phase == Phase::Running && ids.contains(&i.id))
            .count();
        if running == all.len() || started.elapsed() > Duration::from_secs(3600) {
            break running;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    Run {
        started: all_started,
        all_running: started.elapsed(),
        running,
        passes,
        throttled,
        first_error,
    }
}

#[tokio::main]
async fn main() {
    let tenants: usize = std::env::var("POLYBOT_BENCH_TENANTS")
        .ok()
        .map(|s| s.parse().expect("POLYBOT_BENCH_TENANTS is a number"))
        .unwrap_or(200);
    let moto = start_moto();
    let endpoint = moto.endpoint.clone();
    // Tasks stay RUNNING (moto otherwise walks them on to STOPPED).
    let reply = reqwest::Client::new()
        .post(format!("{endpoint}/moto-api/state-manager/set-transition"))
        .body(r#"{"model_name":"ecs::task","transition":{"progression":"manual","times":1000000}}"#)
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_success(), "{}", reply.status());
    let aws = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "bench"))
        .http_client(https_client())
        .load()
        .await;
    let client = aws_sdk_ecs::Client::new(&aws);
    client
        .create_cluster()
        .cluster_name("polybot-bench")
        .send()
        .await
        .unwrap();
    let config = EcsConfig {
        cluster: "polybot-bench".into(),
        subnets: vec![a_subnet(&endpoint).await],
        security_groups: vec![],
        worker_image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/polybot:bench".into(),
        execution_role_arn: "arn:aws:iam::123456789012:role/polybot-worker-execution".into(),
        task_role_arn: "arn:aws:iam::123456789012:role/polybot-worker-task".into(),
        log_group: "/polybot/workers".into(),
        region: REGION.into(),
        assign_public_ip: false,
        spot_for_paper: false,
        cost_tags: BTreeMap::new(),
        cpu: 256,
        memory: 512,
        ibkr_gateway_image: None,
        worker_settings_secret_arn: None,
    };
    // The account's Fargate quota raised for the fleet, as docs/scale.md
    // says to before onboarding (1,000 tasks of 0.25 vCPU: 250 vCPU).
    let vcpus = u32::try_from(tenants.div_ceil(4) + 4).unwrap();
    let launcher = Arc::new(
        EcsLauncher::new(config, &aws)
            .unwrap()
            .with_fargate_quota(Quotas {
                on_demand: Some(vcpus),
                spot: Some(vcpus),
            }),
    );
    let all: Vec<TenantId> = (0..tenants).map(|_| TenantId::new()).collect();

    println!(
        "ECS fleet benchmark: {tenants} tenants, moto with ECS's rate limits, {} build",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let cold = start_all(&launcher, &all).await;
    println!(
        "cold start (every tenant's task definition registered, then RunTask): {tenants} started after {:.1} s in {} passes ({} starts throttled past the launcher's retries); {} RUNNING after {:.1} s",
        cold.started.as_secs_f64(),
        cold.passes,
        cold.throttled,
        cold.running,
        cold.all_running.as_secs_f64()
    );
    let n = tenants as f64;
    let register_bound = (n - 20.0).max(0.0);
    let launch_bound = ((n - 100.0) / 20.0).max(0.0);
    println!(
        "  physical bound: RegisterTaskDefinition (one per tenant, burst 20 then 1/s) {register_bound:.0} s, Fargate launches (burst 100 then 20/s) {launch_bound:.0} s: {:.0} s",
        register_bound.max(launch_bound)
    );
    if let Some(e) = &cold.first_error {
        println!("  first non-throttling start error: {e}");
    }

    // A fleet restart: every task stopped (as after an outage), then all
    // started again on their registered definitions: RunTask's launch rate
    // is the bound.
    let instances = launcher.list().await.unwrap();
    let stopping = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut set = tokio::task::JoinSet::new();
    for instance in instances {
        let launcher = launcher.clone();
        let permit = semaphore.clone().acquire_owned().await.unwrap();
        set.spawn(async move {
            let mut result = launcher.stop(&instance, "fleet benchmark: restart").await;
            while matches!(result, Err(LaunchError::Throttled { .. })) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                result = launcher.stop(&instance, "fleet benchmark: restart").await;
            }
            drop(permit);
            result.unwrap();
        });
    }
    while let Some(joined) = set.join_next().await {
        joined.unwrap();
    }
    println!(
        "{tenants} tasks stopped in {:.1} s",
        stopping.elapsed().as_secs_f64()
    );
    // Full buckets again (RunTask/StopTask's 100 at 40/s, launches' 100 at 20/s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let warm = start_all(&launcher, &all).await;
    println!(
        "restart (definitions registered, RunTask only): {tenants} started after {:.1} s in {} passes ({} starts throttled past the launcher's retries); {} RUNNING after {:.1} s",
        warm.started.as_secs_f64(),
        warm.passes,
        warm.throttled,
        warm.running,
        warm.all_running.as_secs_f64()
    );
    println!("  physical bound: Fargate launches (burst 100 then 20/s) {launch_bound:.0} s");
    if let Some(e) = &warm.first_error {
        println!("  first non-throttling start error: {e}");
    }
    let stats: serde_json::Value = reqwest::get(format!("{endpoint}/polybot-bench/ecs-throttling"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    println!("ECS calls and throttles at the emulator: {stats}");
    drop(moto);
}
