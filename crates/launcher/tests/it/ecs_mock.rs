//! What the emulator cannot produce — throttling, retried RunTasks, stop codes
//! and exit codes, hundreds of tasks — against a client whose responses are
//! mocked (aws-smithy-mocks). No network at all.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::config::retry::RetryConfig;
use aws_sdk_ecs::error::ErrorMetadata;
use aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionOutput;
use aws_sdk_ecs::operation::describe_tasks::{DescribeTasksError, DescribeTasksOutput};
use aws_sdk_ecs::operation::list_task_definitions::{
    ListTaskDefinitionsError, ListTaskDefinitionsOutput,
};
use aws_sdk_ecs::operation::list_tasks::{ListTasksError, ListTasksOutput};
use aws_sdk_ecs::operation::register_task_definition::{
    RegisterTaskDefinitionError, RegisterTaskDefinitionOutput,
};
use aws_sdk_ecs::operation::run_task::{RunTaskError, RunTaskOutput};
use aws_sdk_ecs::types::{Container, Tag, Task, TaskDefinition, TaskStopCode};
use aws_smithy_mocks::{MockResponse, Rule, RuleMode, mock, mock_client};
use polybot_core::{Mode, TenantId};
use polybot_launcher::ecs::{EcsConfig, EcsLauncher, RetryPolicy, SPEC_HASH_TAG, client_token};
use polybot_launcher::{Instance, LaunchError, LaunchSpec, Launcher, Phase};

const REGION: &str = "us-east-1";

fn config() -> EcsConfig {
    EcsConfig {
        cluster: "polybot".into(),
        subnets: vec!["subnet-1".into()],
        security_groups: vec!["sg-1".into()],
        worker_image: "polybot:test".into(),
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
    }
}

fn spec(tenant: TenantId, hash: &str) -> LaunchSpec {
    LaunchSpec {
        tenant,
        spec_hash: hash.into(),
        mode: Mode::Paper,
        secret_env: BTreeMap::new(),
        secret_reference: Some(format!(
            "arn:aws:secretsmanager:{REGION}:123456789012:secret:polybot/tenants/{tenant}-AbC123"
        )),
        env: BTreeMap::new(),
        ibkr: false,
    }
}

fn fast_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    }
}

fn launcher(rules: &[&Rule], max_attempts: u32) -> EcsLauncher {
    let client: Client = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, rules, |c| c
        .retry_config(RetryConfig::disabled()));
    EcsLauncher::from_client(config(), client)
        .unwrap()
        .with_retry_policy(fast_retries(max_attempts))
}

fn throttled() -> ErrorMetadata {
    ErrorMetadata::builder()
        .code("ThrottlingException")
        .message("Rate exceeded")
        .build()
}

/// No revision yet, so ensure_spec registers one.
fn definitions() -> Vec<Rule> {
    vec![
        mock!(Client::list_task_definitions)
            .then_output(|| ListTaskDefinitionsOutput::builder().build()),
        mock!(Client::describe_task_definition)
            .then_output(|| DescribeTaskDefinitionOutput::builder().build()),
        mock!(Client::register_task_definition).then_compute_output(|req| {
            RegisterTaskDefinitionOutput::builder()
                .task_definition(
                    TaskDefinition::builder()
                        .task_definition_arn(format!(
                            "arn:aws:ecs:us-east-1:123456789012:task-definition/{}:1",
                            req.family().unwrap_or_default()
                        ))
                        .build(),
                )
                .build()
        }),
    ]
}

fn running_task(arn: &str, group: Option<&str>, spec_hash: Option<&str>) -> Task {
    let mut task = Task::builder()
        .task_arn(arn)
        .set_group(group.map(str::to_owned))
        .last_status("RUNNING")
        .desired_status("RUNNING");
    if let Some(hash) = spec_hash {
        task = task.tags(Tag::builder().key(SPEC_HASH_TAG).value(hash).build());
    }
    task.build()
}

#[tokio::test]
async fn a_retried_run_task_carries_the_same_client_token() {
    let tenant = TenantId::new();
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let run = {
        let tokens = tokens.clone();
        let calls = calls.clone();
        mock!(Client::run_task).then_compute_response(move |req| {
            tokens
                .lock()
                .unwrap()
                .push(req.client_token().unwrap_or_default().to_owned());
            // Two throttled answers, then a task.
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                MockResponse::Error(RunTaskError::generic(throttled()))
            } else {
                MockResponse::Output(
                    RunTaskOutput::builder()
                        .tasks(running_task("arn:task/1", req.group(), None))
                        .build(),
                )
            }
        })
    };
    let mut rules = definitions();
    rules.push(run);
    let rules: Vec<&Rule> = rules.iter().collect();
    let launcher = launcher(&rules, 5);

    let started = launcher
        .start_attempt(&spec(tenant, "h1"), "7")
        .await
        .unwrap();
    assert_eq!(started.id, "arn:task/1");
    assert_eq!(started.tenant, tenant);
    assert_eq!(started.spec_hash, "h1");
    let expected = client_token(tenant, "h1", "7");
    assert_eq!(*tokens.lock().unwrap(), vec![expected.clone(); 3]);
}

#[tokio::test]
async fn a_start_that_gave_up_is_retried_by_the_next_pass_with_the_same_token() {
    let tenant = TenantId::new();
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let run = {
        let tokens = tokens.clone();
        let calls = calls.clone();
        mock!(Client::run_task).then_compute_response(move |req| {
            tokens
                .lock()
                .unwrap()
                .push(req.client_token().unwrap_or_default().to_owned());
            // The first pass's two attempts are throttled; later calls succeed.
            let n = calls.fetch_add(1, Ordering::SeqCst);
            if n < 2 {
                MockResponse::Error(RunTaskError::generic(throttled()))
            } else {
                MockResponse::Output(
                    RunTaskOutput::builder()
                        .tasks(running_task(&format!("arn:task/{n}"), req.group(), None))
                        .build(),
                )
            }
        })
    };
    let mut rules = definitions();
    rules.push(run);
    let rules: Vec<&Rule> = rules.iter().collect();
    let launcher = launcher(&rules, 2);
    let spec = spec(tenant, "h1");

    let err = launcher.start(&spec).await.unwrap_err();
    assert!(
        matches!(
            err,
            LaunchError::Throttled {
                operation: "RunTask",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("ThrottlingException: Rate exceeded"),
        "{err}"
    );
    assert!(
        err.to_string().contains("gave up after 2 attempts"),
        "{err}"
    );
    // The reconciler's next pass.
    let started = launcher.start(&spec).await.unwrap();
    assert_eq!(started.id, "arn:task/2");
    // After a launch succeeded, the next one (a replacement) is a new launch.
    let replacement = launcher.start(&spec).await.unwrap();
    assert_eq!(replacement.id, "arn:task/3");

    let tokens = tokens.lock().unwrap().clone();
    assert_eq!(tokens.len(), 4);
    assert_eq!(tokens[0], tokens[1]);
    assert_eq!(
        tokens[1], tokens[2],
        "the next pass retries with the same token"
    );
    assert_ne!(tokens[2], tokens[3], "a new launch has a new token");
}

#[tokio::test]
async fn throttling_and_server_errors_on_the_wire_are_retried() {
    let tenant = TenantId::new();
    let throttle_body = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
    let run = mock!(Client::run_task)
        .sequence()
        .http_status(400, Some(throttle_body.to_owned()))
        .http_status(429, None)
        .http_status(503, None)
        .output(|| {
            RunTaskOutput::builder()
                .tasks(running_task("arn:task/1", Some("tenant:x"), None))
                .build()
        })
        .build();
    let mut rules = definitions();
    rules.push(run.clone());
    let rules: Vec<&Rule> = rules.iter().collect();
    let launcher = launcher(&rules, 4);
    let started = launcher.start(&spec(tenant, "h")).await.unwrap();
    assert_eq!(started.id, "arn:task/1");
    assert_eq!(run.num_calls(), 4);
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let run = mock!(Client::run_task).then_error(|| {
        RunTaskError::generic(
            ErrorMetadata::builder()
                .code("InvalidParameterException")
                .message("No Container Instances were found in your cluster.")
                .build(),
        )
    });
    let mut rules = definitions();
    rules.push(run.clone());
    let rules: Vec<&Rule> = rules.iter().collect();
    let launcher = launcher(&rules, 5);
    let err = launcher
        .start(&spec(TenantId::new(), "h"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LaunchError::Failed {
                operation: "RunTask",
                ..
            }
        ),
        "{err:?}"
    );
    // The mock's made-up HTTP status follows the code and message.
    assert!(
        err.to_string().starts_with(
            "ecs launcher: RunTask failed: InvalidParameterException: No Container Instances were found in your cluster. (HTTP "
        ),
        "{err}"
    );
    assert_eq!(run.num_calls(), 1);
}

/// A small ECS that throttles every other call, whatever the operation.
struct Flaky {
    calls: AtomicUsize,
    tasks: Mutex<Vec<Task>>,
}

impl Flaky {
    fn throttle(&self) -> bool {
        self.calls.fetch_add(1, Ordering::SeqCst).is_multiple_of(2)
    }
}

fn flaky_rules(ecs: &Arc<Flaky>) -> Vec<Rule> {
    let list_defs = {
        let ecs = ecs.clone();
        mock!(Client::list_task_definitions).then_compute_response(move |_| {
            if ecs.throttle() {
                MockResponse::Error(ListTaskDefinitionsError::generic(throttled()))
            } else {
                MockResponse::Output(ListTaskDefinitionsOutput::builder().build())
            }
        })
    };
    let register = {
        let ecs = ecs.clone();
        mock!(Client::register_task_definition).then_compute_response(move |req| {
            if ecs.throttle() {
                MockResponse::Error(RegisterTaskDefinitionError::generic(throttled()))
            } else {
                MockResponse::Output(
                    RegisterTaskDefinitionOutput::builder()
                        .task_definition(
                            TaskDefinition::builder()
                                .task_definition_arn(format!(
                                    "arn:task-definition/{}:1",
                                    req.family().unwrap_or_default()
                                ))
                                .build(),
                        )
                        .build(),
                )
            }
        })
    };
    let run = {
        let ecs = ecs.clone();
        mock!(Client::run_task).then_compute_response(move |req| {
            if ecs.throttle() {
                return MockResponse::Error(RunTaskError::generic(throttled()));
            }
            let mut tasks = ecs.tasks.lock().unwrap();
            // clientToken idempotency, as ECS does it.
            let token = req.client_token().unwrap_or_default().to_owned();
            let arn = format!("arn:task/{token}");
            let hash = req
                .tags()
                .iter()
                .find(|t| t.key() == Some(SPEC_HASH_TAG))
                .and_then(|t| t.value());
            let task = running_task(&arn, req.group(), hash);
            if !tasks.iter().any(|t| t.task_arn() == Some(arn.as_str())) {
                tasks.push(task.clone());
            }
            MockResponse::Output(RunTaskOutput::builder().tasks(task).build())
        })
    };
    let list = {
        let ecs = ecs.clone();
        mock!(Client::list_tasks).then_compute_response(move |req| {
            if ecs.throttle() {
                return MockResponse::Error(ListTasksError::generic(throttled()));
            }
            let running = req.desired_status().map(|s| s.as_str()) == Some("RUNNING");
            let arns = if running {
                ecs.tasks
                    .lock()
                    .unwrap()
                    .iter()
                    .filter_map(|t| t.task_arn().map(str::to_owned))
                    .collect()
            } else {
                vec![]
            };
            MockResponse::Output(ListTasksOutput::builder().set_task_arns(Some(arns)).build())
        })
    };
    let describe = {
        let ecs = ecs.clone();
        mock!(Client::describe_tasks).then_compute_response(move |req| {
            if ecs.throttle() {
                return MockResponse::Error(DescribeTasksError::generic(throttled()));
            }
            let tasks = ecs.tasks.lock().unwrap();
            let found = tasks
                .iter()
                .filter(|t| req.tasks().iter().any(|a| Some(a.as_str()) == t.task_arn()))
                .cloned()
                .collect();
            MockResponse::Output(
                DescribeTasksOutput::builder()
                    .set_tasks(Some(found))
                    .build(),
            )
        })
    };
    vec![list_defs, register, run, list, describe]
}

#[tokio::test]
async fn under_throttling_on_every_other_call_the_fleet_still_converges() {
    let ecs = Arc::new(Flaky {
        calls: AtomicUsize::new(0),
        tasks: Mutex::new(Vec::new()),
    });
    let rules = flaky_rules(&ecs);
    let rules: Vec<&Rule> = rules.iter().collect();
    // Two attempts per call: every call that is throttled once gets through.
    let launcher = launcher(&rules, 2);
    let tenants: Vec<TenantId> = (0..8).map(|_| TenantId::new()).collect();

    // A reconciler's passes: start whoever has no live instance.
    for _pass in 0..3 {
        let live = launcher.list().await.unwrap();
        for tenant in &tenants {
            if !live
                .iter()
                .any(|i| i.tenant == *tenant && i.phase.is_live())
            {
                let spec = spec(*tenant, "h1");
                launcher.ensure_spec(&spec).await.unwrap();
                launcher.start(&spec).await.unwrap();
            }
        }
    }
    let live: Vec<Instance> = launcher.list().await.unwrap();
    assert_eq!(live.len(), tenants.len());
    for tenant in &tenants {
        let theirs: Vec<_> = live.iter().filter(|i| i.tenant == *tenant).collect();
        assert_eq!(theirs.len(), 1, "exactly one worker for {tenant}");
        assert_eq!(theirs[0].phase, Phase::Running);
        assert_eq!(theirs[0].spec_hash, "h1");
    }
    assert_eq!(ecs.tasks.lock().unwrap().len(), tenants.len());
}

#[tokio::test]
async fn when_every_call_is_throttled_the_launcher_says_so_after_its_last_attempt() {
    let list = mock!(Client::list_tasks).then_error(|| ListTasksError::generic(throttled()));
    let launcher = launcher(&[&list], 3);
    let err = launcher.list().await.unwrap_err();
    assert!(
        matches!(
            err,
            LaunchError::Throttled {
                operation: "ListTasks",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(list.num_calls(), 3);
}

fn stopped(
    arn: &str,
    tenant: TenantId,
    code: TaskStopCode,
    reason: &str,
    exit: Option<i32>,
) -> Task {
    let mut worker = Container::builder().name("worker").last_status("STOPPED");
    if let Some(exit) = exit {
        worker = worker.exit_code(exit);
    }
    Task::builder()
        .task_arn(arn)
        .group(format!("tenant:{tenant}"))
        .last_status("STOPPED")
        .desired_status("STOPPED")
        .stop_code(code)
        .stopped_reason(reason)
        .containers(worker.build())
        .tags(Tag::builder().key(SPEC_HASH_TAG).value("h1").build())
        .build()
}

#[tokio::test]
async fn stop_codes_and_exit_codes_become_the_exit_reason_on_every_listing() {
    let tenant = TenantId::new();
    let tasks = vec![
        stopped(
            "arn:task/oom",
            tenant,
            TaskStopCode::EssentialContainerExited,
            "Essential container in task exited",
            Some(137),
        ),
        stopped(
            "arn:task/secrets",
            tenant,
            TaskStopCode::TaskFailedToStart,
            "ResourceInitializationError: unable to pull secrets or registry auth: execution \
             resource retrieval failed: unable to retrieve secret from asm: AccessDeniedException",
            None,
        ),
        stopped(
            "arn:task/spot",
            tenant,
            TaskStopCode::SpotInterruption,
            "Your Spot Task was interrupted.",
            Some(143),
        ),
        stopped(
            "arn:task/image",
            tenant,
            TaskStopCode::TaskFailedToStart,
            "CannotPullContainerError: pull image manifest has been retried 5 time(s): not found",
            None,
        ),
        stopped(
            "arn:task/paused",
            tenant,
            TaskStopCode::UserInitiated,
            "stopped by the reconciler: paused",
            Some(0),
        ),
    ];
    let arns: Vec<String> = tasks
        .iter()
        .filter_map(|t| t.task_arn().map(str::to_owned))
        .collect();
    let list = mock!(Client::list_tasks).then_compute_output(move |req| {
        let stopped = req.desired_status().map(|s| s.as_str()) == Some("STOPPED");
        ListTasksOutput::builder()
            .set_task_arns(Some(if stopped { arns.clone() } else { vec![] }))
            .build()
    });
    let describe = mock!(Client::describe_tasks).then_compute_output(move |_| {
        DescribeTasksOutput::builder()
            .set_tasks(Some(tasks.clone()))
            .build()
    });
    let launcher = launcher(&[&list, &describe], 3);

    let instances = launcher.list().await.unwrap();
    let exit = |id: &str| {
        let instance = instances.iter().find(|i| i.id == id).expect("listed");
        assert_eq!(instance.tenant, tenant);
        assert_eq!(instance.spec_hash, "h1");
        match &instance.phase {
            Phase::Exited(exit) => exit.clone(),
            other => panic!("{id}: expected an exit, got {other:?}"),
        }
    };
    let oom = exit("arn:task/oom");
    assert_eq!(oom.code, Some(137));
    assert!(!oom.requested);
    assert_eq!(
        oom.reason,
        "EssentialContainerExited: Essential container in task exited; container worker exited \
         with exit code 137 (killed by SIGKILL: out of memory, or still running at the stop timeout)"
    );
    let secrets = exit("arn:task/secrets");
    assert_eq!(secrets.code, None);
    assert!(
        secrets
            .reason
            .starts_with("TaskFailedToStart: ResourceInitializationError: unable to pull secrets"),
        "{}",
        secrets.reason
    );
    let spot = exit("arn:task/spot");
    assert!(
        spot.reason
            .starts_with("SpotInterruption: Your Spot Task was interrupted."),
        "{}",
        spot.reason
    );
    assert_eq!(spot.code, Some(143));
    let image = exit("arn:task/image");
    assert!(
        image
            .reason
            .contains("CannotPullContainerError: pull image manifest"),
        "{}",
        image.reason
    );
    let paused = exit("arn:task/paused");
    assert!(paused.requested);
    assert_eq!(paused.reason, "stopped by the reconciler: paused");
    assert_eq!(paused.code, Some(0));

    // The launcher remembers nothing: which exits were counted is the
    // database's record, so the next listing reports them again.
    let reasons = |listed: &[Instance]| -> Vec<(String, String)> {
        listed
            .iter()
            .map(|i| match &i.phase {
                Phase::Exited(exit) => (i.id.clone(), exit.reason.clone()),
                other => panic!("{}: expected an exit, got {other:?}", i.id),
            })
            .collect()
    };
    let again = launcher.list().await.unwrap();
    assert_eq!(reasons(&again), reasons(&instances));
}

#[tokio::test]
async fn describe_tasks_is_called_in_batches_of_at_most_100() {
    let tenant = TenantId::new();
    let all: Vec<String> = (0..250).map(|i| format!("arn:task/{i}")).collect();
    let list = {
        let all = all.clone();
        mock!(Client::list_tasks).then_compute_output(move |req| {
            if req.desired_status().map(|s| s.as_str()) != Some("RUNNING") {
                return ListTasksOutput::builder().build();
            }
            // Pages of at most 100, as ECS pages them.
            let start: usize = req.next_token().map(|t| t.parse().unwrap()).unwrap_or(0);
            let end = (start + req.max_results().unwrap_or(100) as usize).min(all.len());
            ListTasksOutput::builder()
                .set_task_arns(Some(all[start..end].to_vec()))
                .set_next_token((end < all.len()).then(|| end.to_string()))
                .build()
        })
    };
    let batches = Arc::new(Mutex::new(Vec::new()));
    let describe = {
        let batches = batches.clone();
        mock!(Client::describe_tasks).then_compute_output(move |req| {
            batches.lock().unwrap().push(req.tasks().len());
            let group = format!("tenant:{tenant}");
            DescribeTasksOutput::builder()
                .set_tasks(Some(
                    req.tasks()
                        .iter()
                        .map(|arn| running_task(arn, Some(&group), Some("h")))
                        .collect(),
                ))
                .build()
        })
    };
    let launcher = launcher(&[&list, &describe], 3);
    let instances = launcher.list().await.unwrap();
    assert_eq!(instances.len(), 250);
    assert_eq!(*batches.lock().unwrap(), vec![100, 100, 50]);
    assert!(instances.iter().all(|i| i.phase == Phase::Running));
}

#[tokio::test]
async fn tasks_without_a_tenant_group_are_not_ours() {
    let list = mock!(Client::list_tasks).then_compute_output(|req| {
        let running = req.desired_status().map(|s| s.as_str()) == Some("RUNNING");
        ListTasksOutput::builder()
            .set_task_arns(Some(if running {
                vec!["arn:task/other".into()]
            } else {
                vec![]
            }))
            .build()
    });
    let describe = mock!(Client::describe_tasks).then_output(|| {
        DescribeTasksOutput::builder()
            .tasks(running_task(
                "arn:task/other",
                Some("family:something-else"),
                None,
            ))
            .build()
    });
    let launcher = launcher(&[&list, &describe], 3);
    assert_eq!(launcher.list().await.unwrap(), vec![]);
}

#[tokio::test]
async fn paper_tenants_run_on_fargate_spot_as_x86_64_when_configured() {
    let registered = Arc::new(Mutex::new(None));
    let providers = Arc::new(Mutex::new(Vec::new()));
    let register = {
        let registered = registered.clone();
        mock!(Client::register_task_definition).then_compute_output(move |req| {
            *registered.lock().unwrap() = req
                .runtime_platform()
                .and_then(|p| p.cpu_architecture())
                .map(|a| a.as_str().to_owned());
            RegisterTaskDefinitionOutput::builder()
                .task_definition(
                    TaskDefinition::builder()
                        .task_definition_arn("arn:td:1")
                        .build(),
                )
                .build()
        })
    };
    let run = {
        let providers = providers.clone();
        mock!(Client::run_task).then_compute_output(move |req| {
            providers.lock().unwrap().extend(
                req.capacity_provider_strategy()
                    .iter()
                    .map(|c| c.capacity_provider().to_owned()),
            );
            RunTaskOutput::builder()
                .tasks(running_task("arn:task/1", req.group(), None))
                .build()
        })
    };
    let list_defs = mock!(Client::list_task_definitions)
        .then_output(|| ListTaskDefinitionsOutput::builder().build());
    let client: Client = mock_client!(
        aws_sdk_ecs,
        RuleMode::MatchAny,
        &[&list_defs, &register, &run],
        |c| c.retry_config(RetryConfig::disabled())
    );
    let launcher = EcsLauncher::from_client(
        EcsConfig {
            spot_for_paper: true,
            ..config()
        },
        client,
    )
    .unwrap();
    let paper = spec(TenantId::new(), "h");
    launcher.start(&paper).await.unwrap();
    assert_eq!(registered.lock().unwrap().as_deref(), Some("X86_64"));
    assert_eq!(*providers.lock().unwrap(), vec!["FARGATE_SPOT".to_owned()]);

    let live = LaunchSpec {
        mode: Mode::Live,
        ..spec(TenantId::new(), "h")
    };
    launcher.start(&live).await.unwrap();
    assert_eq!(registered.lock().unwrap().as_deref(), Some("ARM64"));
    assert_eq!(
        *providers.lock().unwrap(),
        vec!["FARGATE_SPOT".to_owned(), "FARGATE".to_owned()]
    );
}

#[tokio::test]
async fn the_control_planes_secrets_never_reach_a_run_task_override() {
    let tenant = TenantId::new();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let run = {
        let sent = sent.clone();
        mock!(Client::run_task).then_compute_response(move |req| {
            let env: Vec<(String, String)> = req
                .overrides()
                .map(|o| o.container_overrides())
                .unwrap_or_default()
                .iter()
                .flat_map(|c| c.environment())
                .map(|kv| {
                    (
                        kv.name().unwrap_or_default().to_owned(),
                        kv.value().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            sent.lock().unwrap().extend(env);
            MockResponse::Output(
                RunTaskOutput::builder()
                    .tasks(running_task("arn:task/1", req.group(), None))
                    .build(),
            )
        })
    };
    let mut rules = definitions();
    rules.push(run);
    let rules: Vec<&Rule> = rules.iter().collect();
    let launcher = launcher(&rules, 1);
    let mut spec = spec(tenant, "h1");
    // What a careless caller might hand over: the control plane's own secrets
    // beside two real worker settings.
    spec.env = BTreeMap::from(
        [
            ("POLYBOT_METRICS_TOKEN", "metrics-secret"),
            ("POLYBOT_OPERATOR_TOKEN", "operator-secret"),
            ("POLYBOT_MASTER_KEY", "master-secret"),
            ("POLYBOT_SESSION_HOURS", "12"),
            ("DATABASE_URL", "postgres://polybot:superuser@db/polybot"),
            (
                "POLYBOT_KALSHI_URL",
                "https://demo-api.kalshi.co/trade-api/v2",
            ),
            ("POLYBOT_HEARTBEAT_SECS", "2"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );

    launcher.start_attempt(&spec, "1").await.unwrap();
    let mut sent = sent.lock().unwrap().clone();
    sent.sort();
    let expected: Vec<(String, String)> = [
        ("POLYBOT_HEARTBEAT_SECS", "2"),
        (
            "POLYBOT_KALSHI_URL",
            "https://demo-api.kalshi.co/trade-api/v2",
        ),
        ("POLYBOT_SPEC_HASH", "h1"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec();
    assert_eq!(sent, expected);
}

/// Service Quotas answering Fargate's two vCPU quotas (the emulator does not
/// serve them).
fn service_quotas(on_demand: f64, spot: f64) -> (Rule, polybot_launcher::ecs::ServiceQuotas) {
    use aws_sdk_servicequotas::Client as Quotas;
    use aws_sdk_servicequotas::operation::get_service_quota::GetServiceQuotaOutput;
    use aws_sdk_servicequotas::types::ServiceQuota;
    let rule = mock!(Quotas::get_service_quota).then_compute_output(move |req| {
        let value = match req.quota_code() {
            Some("L-3032A538") => on_demand,
            Some("L-36FBB829") => spot,
            other => panic!("an unexpected quota code {other:?}"),
        };
        assert_eq!(req.service_code(), Some("fargate"));
        GetServiceQuotaOutput::builder()
            .quota(ServiceQuota::builder().value(value).build())
            .build()
    });
    let client: Quotas = mock_client!(aws_sdk_servicequotas, RuleMode::MatchAny, [&rule]);
    (rule, polybot_launcher::ecs::ServiceQuotas::new(client))
}

#[tokio::test]
async fn fargate_quotas_are_read_from_service_quotas() {
    use polybot_launcher::ecs::{QuotaSource, Quotas};
    let (rule, quotas) = service_quotas(6.0, 12.0);
    assert_eq!(
        quotas.fargate_vcpus().await.unwrap(),
        Quotas {
            on_demand: Some(6),
            spot: Some(12)
        }
    );
    assert_eq!(rule.num_calls(), 2);
}

#[tokio::test]
async fn a_launch_past_the_fargate_quota_waits_without_calling_run_task() {
    let run = mock!(Client::run_task).then_compute_output(|req| {
        let mut task = running_task("arn:task/new", req.group(), None);
        task.cpu = Some("256".into());
        task.capacity_provider_name = Some("FARGATE".into());
        RunTaskOutput::builder().tasks(task).build()
    });
    // Three quarter-vCPU tasks already run.
    let group = format!("tenant:{}", TenantId::new());
    let listed: Vec<Task> = (0..3)
        .map(|i| {
            let mut task = running_task(&format!("arn:task/{i}"), Some(&group), Some("h"));
            task.cpu = Some("256".into());
            task.capacity_provider_name = Some("FARGATE".into());
            task
        })
        .collect();
    let arns: Vec<String> = (0..3).map(|i| format!("arn:task/{i}")).collect();
    let list = mock!(Client::list_tasks).then_compute_output(move |req| {
        let running = req.desired_status().map(|s| s.as_str()) == Some("RUNNING");
        ListTasksOutput::builder()
            .set_task_arns(Some(if running { arns.clone() } else { vec![] }))
            .build()
    });
    let describe = mock!(Client::describe_tasks).then_compute_output(move |_| {
        DescribeTasksOutput::builder()
            .set_tasks(Some(listed.clone()))
            .build()
    });
    let mut rules = definitions();
    rules.extend([run.clone(), list, describe]);
    let rules: Vec<&Rule> = rules.iter().collect();
    let (_, quotas) = service_quotas(1.0, 0.0);
    let launcher = launcher(&rules, 1).with_quota_source(Arc::new(quotas));
    assert_eq!(launcher.list().await.unwrap().len(), 3);

    // A fourth quarter fits 1 vCPU; a fifth does not, and RunTask is not called.
    launcher.start(&spec(TenantId::new(), "h")).await.unwrap();
    assert_eq!(run.num_calls(), 1);
    let err = launcher
        .start(&spec(TenantId::new(), "h"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LaunchError::Capacity { launcher: "ecs", message } if message.contains("quota is 1 vCPU, 1 are in use")),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "ecs launcher: waiting for capacity: the account's Fargate On-Demand vCPU quota is 1 \
         vCPU, 1 are in use and this worker needs 0.25; it starts when a task stops or the \
         quota is raised"
    );
    assert_eq!(run.num_calls(), 1);
    let (quota, in_use) = launcher.fargate_capacity().await;
    assert_eq!((quota.on_demand, in_use.on_demand), (Some(1), 1024));
}
