//! The IAM boundaries of `infra/`, read from the Terraform source itself.
//!
//! What these tests guard against: a policy edit that widens what a tenant's
//! worker, or a compromised control plane, can reach: a wildcard action, a
//! secret outside `polybot/tenants/*`, tasks outside this cluster, a role other
//! than the two worker roles passed to ECS, or any permission at all on the
//! worker's task role (DESIGN.md, "Secrets").

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hcl::{Block, Body, Expression};
use polybot_deploy_spec::template;
use polybot_deploy_spec::worker::TENANT_SECRET_PREFIX;

#[derive(Debug, Clone)]
struct Condition {
    test: String,
    variable: String,
    values: Vec<String>,
}

#[derive(Debug, Clone)]
struct Statement {
    document: String,
    sid: String,
    actions: Vec<String>,
    resources: Vec<String>,
    conditions: Vec<Condition>,
}

impl Statement {
    fn has_action(&self, prefix: &str) -> bool {
        self.actions.iter().any(|a| a.starts_with(prefix))
    }

    fn cluster_condition(&self) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.variable == "ecs:cluster")
    }
}

struct Infra {
    bodies: Vec<(PathBuf, Body)>,
    locals: BTreeMap<String, String>,
}

fn infra_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra")
}

fn infra() -> Infra {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(infra_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tf"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 5, "infra/ has too few .tf files: {paths:?}");
    let bodies: Vec<(PathBuf, Body)> = paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let body = hcl::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, body)
        })
        .collect();
    let mut locals = BTreeMap::new();
    for (_, body) in &bodies {
        for block in body.blocks().filter(|b| b.identifier() == "locals") {
            for attr in block.body().attributes() {
                locals.insert(attr.key().to_owned(), text(attr.expr()));
            }
        }
    }
    Infra { bodies, locals }
}

/// An expression as its source text (a string without quotes).
fn text(expr: &Expression) -> String {
    match expr {
        Expression::String(s) => s.clone(),
        Expression::TemplateExpr(t) => t.to_string(),
        other => other.to_string(),
    }
}

fn strings(expr: &Expression) -> Vec<String> {
    match expr {
        Expression::Array(items) => items.iter().map(text).collect(),
        other => vec![text(other)],
    }
}

fn attr(block: &Block, key: &str) -> Option<Expression> {
    block
        .body()
        .attributes()
        .find(|a| a.key() == key)
        .map(|a| a.expr().clone())
}

fn labels(block: &Block) -> Vec<&str> {
    block.labels().iter().map(|l| l.as_str()).collect()
}

impl Infra {
    fn blocks<'a>(
        &'a self,
        kind: &'a str,
        ty: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Block)> {
        self.bodies.iter().flat_map(move |(_, body)| {
            body.blocks().filter_map(move |b| {
                let l = labels(b);
                (b.identifier() == kind && l.first() == Some(&ty)).then(|| (l[1], b))
            })
        })
    }

    /// `local.x` resolved to the local's source text, one level deep.
    fn resolve(&self, s: &str) -> String {
        s.strip_prefix("local.")
            .and_then(|name| self.locals.get(name))
            .cloned()
            .unwrap_or_else(|| s.to_owned())
    }

    fn statements(&self) -> Vec<Statement> {
        let mut out = Vec::new();
        for (doc, block) in self.blocks("data", "aws_iam_policy_document") {
            for st in block
                .body()
                .blocks()
                .filter(|b| b.identifier() == "statement")
            {
                assert!(
                    attr(st, "not_actions").is_none() && attr(st, "not_resources").is_none(),
                    "{doc}: NotAction/NotResource widen a policy"
                );
                let effect = attr(st, "effect").map(|e| text(&e));
                assert!(
                    effect.is_none() || effect.as_deref() == Some("Allow"),
                    "{doc}: only Allow statements are expected"
                );
                let conditions = st
                    .body()
                    .blocks()
                    .filter(|b| b.identifier() == "condition")
                    .map(|c| Condition {
                        test: text(&attr(c, "test").unwrap()),
                        variable: text(&attr(c, "variable").unwrap()),
                        values: strings(&attr(c, "values").unwrap()),
                    })
                    .collect();
                out.push(Statement {
                    document: doc.to_owned(),
                    sid: attr(st, "sid").map(|e| text(&e)).unwrap_or_default(),
                    actions: attr(st, "actions").map(|e| strings(&e)).unwrap_or_default(),
                    resources: attr(st, "resources")
                        .map(|e| strings(&e))
                        .unwrap_or_default()
                        .iter()
                        .map(|r| self.resolve(r))
                        .collect(),
                    conditions,
                });
            }
        }
        out
    }

    fn document(&self, name: &str) -> Vec<Statement> {
        let statements: Vec<Statement> = self
            .statements()
            .into_iter()
            .filter(|s| s.document == name)
            .collect();
        assert!(!statements.is_empty(), "no policy document {name}");
        statements
    }

    /// `aws_iam_role_policy` resources as (role expression, policy expression).
    fn role_policies(&self) -> Vec<(String, String)> {
        self.blocks("resource", "aws_iam_role_policy")
            .map(|(_, b)| {
                (
                    text(&attr(b, "role").unwrap()),
                    text(&attr(b, "policy").unwrap()),
                )
            })
            .collect()
    }
}

fn tenant_secret_pattern(infra: &Infra) -> String {
    infra.resolve("local.tenant_secret_arn_pattern")
}

const CLUSTER_ARN: &str = "aws_ecs_cluster.main.arn";

#[test]
fn no_policy_grants_a_wildcard_action() {
    let statements = infra().statements();
    assert!(
        statements.len() >= 15,
        "too few statements found: {}",
        statements.len()
    );
    for s in &statements {
        assert!(
            !s.actions.is_empty(),
            "{}/{} has no actions",
            s.document,
            s.sid
        );
        for action in &s.actions {
            assert!(
                !action.contains('*'),
                "{}/{} grants the wildcard action {action}",
                s.document,
                s.sid
            );
        }
    }
}

#[test]
fn the_tenant_secret_pattern_is_the_renderers_prefix() {
    let infra = infra();
    let pattern = tenant_secret_pattern(&infra);
    assert_eq!(
        pattern,
        format!(
            "arn:${{local.partition}}:secretsmanager:${{local.region}}:${{local.account_id}}:secret:{TENANT_SECRET_PREFIX}*"
        )
    );
}

#[test]
fn task_roles_and_the_worker_execution_role_reach_only_tenant_secrets() {
    let infra = infra();
    let pattern = tenant_secret_pattern(&infra);
    let mut seen = 0;
    for s in infra.statements() {
        // The execution roles of the control plane and the migrate task, and
        // the workers' settings, read named secrets (tested below).
        let named = [
            "control_plane_execution",
            "migrate_execution",
            "worker_settings",
            "pgbouncer_execution",
            "market_data_execution",
        ];
        if !s.has_action("secretsmanager:") || named.contains(&s.document.as_str()) {
            continue;
        }
        assert!(
            ["control_plane_task", "worker_execution"].contains(&s.document.as_str()),
            "{} has Secrets Manager rights",
            s.document
        );
        assert_eq!(
            s.resources,
            std::slice::from_ref(&pattern),
            "{}/{}",
            s.document,
            s.sid
        );
        assert!(
            s.actions.iter().all(|a| a.starts_with("secretsmanager:")),
            "{}/{} mixes services; keep Secrets Manager statements apart",
            s.document,
            s.sid
        );
        seen += 1;
    }
    assert_eq!(
        seen, 3,
        "control plane: create + manage; worker execution: read"
    );
}

#[test]
fn the_worker_execution_role_may_only_read_tenant_secrets() {
    let infra = infra();
    let actions: BTreeSet<String> = infra
        .document("worker_execution")
        .into_iter()
        .filter(|s| s.has_action("secretsmanager:"))
        .flat_map(|s| s.actions)
        .collect();
    assert_eq!(
        actions,
        BTreeSet::from(["secretsmanager:GetSecretValue".to_owned()])
    );
}

/// The one statement of `document` that reaches Secrets Manager: it may
/// only read, and only `resources`.
fn reads_only(infra: &Infra, document: &str, resources: &[String]) {
    let secret: Vec<Statement> = infra
        .document(document)
        .into_iter()
        .filter(|s| s.has_action("secretsmanager:"))
        .collect();
    assert_eq!(secret.len(), 1, "{document}");
    assert_eq!(secret[0].actions, ["secretsmanager:GetSecretValue"]);
    assert_eq!(secret[0].resources, resources, "{document}");
}

#[test]
fn the_migrate_task_reads_only_the_database_secrets_and_the_workers_only_their_settings() {
    let infra = infra();
    reads_only(
        &infra,
        "migrate_execution",
        &[
            infra.resolve("local.admin_database_secret_arn"),
            infra.resolve("local.database_secret_arn"),
            "aws_secretsmanager_secret.worker_database.arn".to_owned(),
        ],
    );
    reads_only(
        &infra,
        "worker_settings",
        &["aws_secretsmanager_secret.worker_settings.arn".to_owned()],
    );
    // PgBouncer reads the shared worker login, the market-data service its
    // Redis URL, and nothing else.
    reads_only(
        &infra,
        "pgbouncer_execution",
        &["aws_secretsmanager_secret.worker_database.arn".to_owned()],
    );
    reads_only(
        &infra,
        "market_data_execution",
        &["aws_secretsmanager_secret.market_data.arn".to_owned()],
    );
    for (name, expected) in [
        ("database_admin", "polybot/control-plane/database-admin"),
        ("control_plane_tokens", "polybot/control-plane/tokens"),
        ("worker_settings", "polybot/workers/settings"),
        ("worker_database", "polybot/control-plane/worker-database"),
        ("market_data", "polybot/market-data/redis"),
    ] {
        let (_, secret) = infra
            .blocks("resource", "aws_secretsmanager_secret")
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("aws_secretsmanager_secret.{name}"));
        let actual = text(&attr(secret, "name").unwrap());
        assert_eq!(actual, expected);
        assert!(!actual.starts_with(TENANT_SECRET_PREFIX));
    }
}

#[test]
fn the_control_plane_execution_role_reads_only_its_database_secret_and_tokens() {
    let infra = infra();
    reads_only(
        &infra,
        "control_plane_execution",
        &[
            infra.resolve("local.database_secret_arn"),
            "aws_secretsmanager_secret.worker_database.arn".to_owned(),
            "aws_secretsmanager_secret.control_plane_tokens.arn".to_owned(),
        ],
    );
    // …and that secret is not a tenant's.
    let (_, database) = infra
        .blocks("resource", "aws_secretsmanager_secret")
        .find(|(name, _)| *name == "database")
        .unwrap();
    let name = text(&attr(database, "name").unwrap());
    assert_eq!(name, "polybot/control-plane/database");
    assert!(!name.starts_with(TENANT_SECRET_PREFIX));
}

#[test]
fn creating_a_tenant_secret_requires_its_tenant_id_tag() {
    let infra = infra();
    let create: Vec<Statement> = infra
        .statements()
        .into_iter()
        .filter(|s| s.actions.iter().any(|a| a == "secretsmanager:CreateSecret"))
        .collect();
    assert_eq!(create.len(), 1);
    let c = &create[0].conditions;
    assert_eq!(c.len(), 1);
    assert_eq!(
        (
            c[0].test.as_str(),
            c[0].variable.as_str(),
            c[0].values.as_slice()
        ),
        (
            "Null",
            "aws:RequestTag/tenant_id",
            ["false".to_owned()].as_slice()
        )
    );
}

#[test]
fn ecs_task_actions_are_scoped_to_the_cluster() {
    let infra = infra();
    let scoped = [
        "ecs:RunTask",
        "ecs:StopTask",
        "ecs:DescribeTasks",
        "ecs:ListTasks",
    ];
    let mut covered = BTreeSet::new();
    for s in infra.statements() {
        let task_actions: Vec<&String> = s
            .actions
            .iter()
            .filter(|a| scoped.contains(&a.as_str()))
            .collect();
        if task_actions.is_empty() {
            continue;
        }
        assert_eq!(s.document, "control_plane_task", "{}/{}", s.document, s.sid);
        let condition = s
            .cluster_condition()
            .unwrap_or_else(|| panic!("{}: no ecs:cluster condition", s.sid));
        assert_eq!(condition.test, "ArnEquals", "{}", s.sid);
        assert_eq!(condition.values, [CLUSTER_ARN], "{}", s.sid);
        for action in task_actions {
            covered.insert(action.clone());
            if action == "ecs:RunTask" {
                assert_eq!(
                    s.resources,
                    [infra.resolve("local.worker_task_definition_arn_pattern")]
                );
                assert!(s.resources[0].ends_with(":task-definition/polybot-t-*:*"));
            } else if action != "ecs:ListTasks" {
                assert_eq!(
                    s.resources,
                    [infra.resolve("local.cluster_task_arn_pattern")]
                );
                assert!(s.resources[0].ends_with(":task/${aws_ecs_cluster.main.name}/*"));
            }
        }
    }
    assert_eq!(covered.len(), scoped.len(), "missing: {covered:?}");
}

#[test]
fn wildcard_resources_are_only_for_actions_aws_cannot_scope() {
    let unscopable = [
        "ecr:GetAuthorizationToken",
        "ecs:RegisterTaskDefinition",
        "ecs:DeregisterTaskDefinition",
        "ecs:DescribeTaskDefinition",
        "ecs:ListTaskDefinitions",
        // Scoped by its ecs:cluster condition instead (checked above).
        "ecs:ListTasks",
    ];
    for s in infra().statements() {
        if s.resources.iter().any(|r| r == "*") {
            for action in &s.actions {
                assert!(
                    unscopable.contains(&action.as_str()),
                    "{}/{} grants {action} on every resource",
                    s.document,
                    s.sid
                );
            }
        }
    }
}

#[test]
fn pass_role_is_limited_to_the_two_worker_roles() {
    let passes: Vec<Statement> = infra()
        .statements()
        .into_iter()
        .filter(|s| s.has_action("iam:"))
        .collect();
    assert_eq!(passes.len(), 1);
    let s = &passes[0];
    assert_eq!(s.document, "control_plane_task");
    assert_eq!(s.actions, ["iam:PassRole"]);
    assert_eq!(
        s.resources.iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            &"aws_iam_role.worker_execution.arn".to_owned(),
            &"aws_iam_role.worker_task.arn".to_owned()
        ])
    );
    assert_eq!(s.conditions.len(), 1);
    assert_eq!(s.conditions[0].variable, "iam:PassedToService");
    assert_eq!(s.conditions[0].values, ["ecs-tasks.amazonaws.com"]);
}

#[test]
fn each_role_gets_only_the_policy_meant_for_it() {
    let infra = infra();
    let attached: BTreeSet<(String, String)> = infra.role_policies().into_iter().collect();
    let mut expected: BTreeSet<(String, String)> = [
        "control_plane_execution",
        "control_plane_task",
        "worker_execution",
        "migrate_execution",
        "pgbouncer_execution",
        "market_data_execution",
    ]
    .into_iter()
    .map(|r| {
        (
            format!("aws_iam_role.{r}.id"),
            format!("data.aws_iam_policy_document.{r}.json"),
        )
    })
    .chain([
        // The task-event queue and the Fargate quotas (events.tf).
        (
            "aws_iam_role.control_plane_task.id".to_owned(),
            "data.aws_iam_policy_document.control_plane_events.json".to_owned(),
        ),
        // VPC flow logs into their log group (network.tf).
        (
            "aws_iam_role.flow_logs[0].id".to_owned(),
            "data.aws_iam_policy_document.flow_logs[0].json".to_owned(),
        ),
    ])
    .collect();
    expected.insert((
        "aws_iam_role.worker_execution.id".to_owned(),
        "data.aws_iam_policy_document.worker_settings.json".to_owned(),
    ));
    assert_eq!(attached, expected);
    // Managed policies only for RDS enhanced monitoring.
    for (_, b) in infra.blocks("resource", "aws_iam_role_policy_attachment") {
        assert_eq!(
            text(&attr(b, "role").unwrap()),
            "aws_iam_role.rds_monitoring[0].name"
        );
    }
}

#[test]
fn the_worker_task_role_has_no_permissions_at_all() {
    let infra = infra();
    let (_, role) = infra
        .blocks("resource", "aws_iam_role")
        .find(|(name, _)| *name == "worker_task")
        .expect("aws_iam_role.worker_task");
    assert!(attr(role, "managed_policy_arns").is_none());
    assert!(
        role.body()
            .blocks()
            .all(|b| b.identifier() != "inline_policy")
    );
    for (_, b) in infra
        .bodies
        .iter()
        .flat_map(|(p, body)| body.blocks().map(move |b| (p, b)))
    {
        let l = labels(b);
        let attaches = matches!(
            l.first().copied(),
            Some(
                "aws_iam_role_policy"
                    | "aws_iam_role_policy_attachment"
                    | "aws_iam_role_policies_exclusive"
                    | "aws_iam_role_policy_attachments_exclusive"
                    | "aws_iam_policy_attachment"
            )
        );
        if b.identifier() == "resource" && attaches {
            let source = format!("{:?}", b.body());
            assert!(
                !source.contains("worker_task"),
                "{l:?} attaches a policy to the worker task role"
            );
        }
    }
}

/// The variables `local` (a task definition rendered with
/// `jsondecode(templatestring(…))`) gives its template: name → source text.
fn template_vars(infra: &Infra, local: &str) -> BTreeMap<String, String> {
    let (_, locals) = infra
        .bodies
        .iter()
        .flat_map(|(p, b)| b.blocks().map(move |b| (p, b)))
        .find(|(_, b)| {
            b.identifier() == "locals" && b.body().attributes().any(|a| a.key() == local)
        })
        .unwrap_or_else(|| panic!("the locals block defining {local}"));
    let expr = attr(locals, local).unwrap();
    let Expression::FuncCall(jsondecode) = expr else {
        panic!("jsondecode(…) expected")
    };
    let Expression::FuncCall(templatestring) = &jsondecode.args[0] else {
        panic!("templatestring(…) expected")
    };
    assert_eq!(templatestring.name.name.as_str(), "templatestring");
    let Expression::Object(vars) = &templatestring.args[1] else {
        panic!("an object of vars")
    };
    vars.iter().map(|(k, v)| (k.to_string(), text(v))).collect()
}

fn task_definition_text(file: &str) -> String {
    std::fs::read_to_string(infra_dir().join("../deploy/ecs").join(file)).unwrap()
}

#[test]
fn terraform_fills_every_placeholder_of_the_task_definitions_it_registers() {
    let infra = infra();
    for (file, local, secret) in [
        (
            "control-plane.task-definition.json",
            "control_plane_task",
            "database_secret_arn",
        ),
        (
            "migrate.task-definition.json",
            "migrate_task",
            "database_secret_arn",
        ),
        (
            "pgbouncer.task-definition.json",
            "pgbouncer_task",
            "worker_database_secret_arn",
        ),
        (
            "market-data.task-definition.json",
            "market_data_task",
            "market_data_secret_arn",
        ),
    ] {
        let wanted: BTreeSet<String> = template::placeholders(&task_definition_text(file))
            .unwrap()
            .into_iter()
            .collect();
        assert!(wanted.contains(secret), "{file}");
        let given: BTreeSet<String> = template_vars(&infra, local).into_keys().collect();
        assert_eq!(given, wanted, "{file}");
    }
}

/// The container's `environment` of a deploy/ecs task definition, by name.
fn environment_of(file: &str) -> BTreeMap<String, String> {
    let task: serde_json::Value = serde_json::from_str(&task_definition_text(file)).unwrap();
    task["containerDefinitions"][0]["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The names of the container's `secrets` of a deploy/ecs task definition.
fn secret_names_of(file: &str) -> Vec<String> {
    let task: serde_json::Value = serde_json::from_str(&task_definition_text(file)).unwrap();
    task["containerDefinitions"][0]["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn pgbouncer_on_aws_pools_by_transaction_and_resets_like_the_embedded_one() {
    // The settings crates/store/src/pooler.rs writes for `polybot up`.
    let env = environment_of("pgbouncer.task-definition.json");
    for (key, value) in [
        ("POOL_MODE", "transaction"),
        ("SERVER_RESET_QUERY", "DISCARD ALL"),
        ("SERVER_RESET_QUERY_ALWAYS", "1"),
        ("IGNORE_STARTUP_PARAMETERS", "extra_float_digits"),
        ("MIN_POOL_SIZE", "0"),
        ("RESERVE_POOL_SIZE", "0"),
        ("AUTH_TYPE", "scram-sha-256"),
        ("LISTEN_PORT", "6432"),
        // RDS forces TLS (rds.force_ssl).
        ("SERVER_TLS_SSLMODE", "require"),
    ] {
        assert_eq!(env.get(key).map(String::as_str), Some(value), "{key}");
    }
    // One database, one login: the pool is the task's whole budget.
    assert_eq!(env["MAX_DB_CONNECTIONS"], "{{server_connections}}");
    assert_eq!(env["DEFAULT_POOL_SIZE"], "{{server_connections}}");
    let vars = template_vars(&infra(), "pgbouncer_task");
    assert_eq!(
        vars["server_connections"],
        "local.pgbouncer_task_server_connections"
    );
    // The shared login's password comes from its secret, never in plain
    // environment.
    assert_eq!(
        secret_names_of("pgbouncer.task-definition.json"),
        ["DB_USER", "DB_PASSWORD"]
    );
    assert!(!env.contains_key("DB_PASSWORD") && !env.contains_key("DATABASE_URL"));
}

#[test]
fn the_control_plane_and_the_migrate_task_get_the_shared_worker_login_from_its_secret() {
    for file in [
        "control-plane.task-definition.json",
        "migrate.task-definition.json",
    ] {
        assert!(
            secret_names_of(file).contains(&"POLYBOT_WORKER_DATABASE_URL".to_owned()),
            "{file}"
        );
        assert!(!environment_of_any(file).contains_key("POLYBOT_WORKER_DATABASE_URL"));
    }
    let infra = infra();
    for local in ["control_plane_task", "migrate_task"] {
        assert_eq!(
            template_vars(&infra, local)["worker_database_secret_arn"],
            "aws_secretsmanager_secret.worker_database.arn",
            "{local}"
        );
    }
}

/// Like [`environment_of`], empty for a container without `environment`.
fn environment_of_any(file: &str) -> BTreeMap<String, String> {
    let task: serde_json::Value = serde_json::from_str(&task_definition_text(file)).unwrap();
    if task["containerDefinitions"][0]["environment"].is_null() {
        return BTreeMap::new();
    }
    environment_of(file)
}

#[test]
fn the_market_data_service_runs_the_same_image_and_reads_its_redis_url_from_a_secret() {
    let task: serde_json::Value =
        serde_json::from_str(&task_definition_text("market-data.task-definition.json")).unwrap();
    assert_eq!(
        task["containerDefinitions"][0]["command"],
        serde_json::json!(["market-data"])
    );
    assert_eq!(
        task["containerDefinitions"][0]["readonlyRootFilesystem"],
        true
    );
    assert!(task["taskRoleArn"].is_null(), "it calls no AWS API");
    assert_eq!(
        secret_names_of("market-data.task-definition.json"),
        ["POLYBOT_MARKET_DATA_URL"]
    );
    assert!(environment_of_any("market-data.task-definition.json").is_empty());
    let vars = template_vars(&infra(), "market_data_task");
    assert_eq!(
        vars["image"],
        template_vars(&infra(), "control_plane_task")["image"]
    );
}

#[test]
fn the_control_plane_is_given_the_events_queue_its_role_may_consume() {
    let infra = infra();
    let vars = template_vars(&infra, "control_plane_task");
    // An aws_sqs_queue's `id` is its URL, what the consumer needs.
    assert_eq!(vars["events_queue_url"], "aws_sqs_queue.ecs_events.id");
    let task: serde_json::Value =
        serde_json::from_str(&task_definition_text("control-plane.task-definition.json")).unwrap();
    let environment = task["containerDefinitions"][0]["environment"]
        .as_array()
        .unwrap();
    let queue: Vec<&serde_json::Value> = environment
        .iter()
        .filter(|e| e["name"] == "POLYBOT_ECS_EVENTS_QUEUE_URL")
        .collect();
    assert_eq!(queue.len(), 1, "{environment:?}");
    assert_eq!(queue[0]["value"], "{{events_queue_url}}");
    // The same queue the control plane's role may receive from.
    let consume = infra
        .document("control_plane_events")
        .into_iter()
        .find(|s| s.has_action("sqs:ReceiveMessage"))
        .expect("a statement that receives from the queue");
    assert_eq!(consume.resources, ["aws_sqs_queue.ecs_events.arn"]);
}

#[test]
fn tasks_and_the_database_run_in_the_networks_private_subnets_created_or_given() {
    // `var.private_subnet_ids` is empty when infra/ creates the network:
    // only network.tf (which picks created or given) and the variable's own
    // validation may read it; everything else takes local.private_subnet_ids.
    let infra = infra();
    for (path, _) in &infra.bodies {
        let name = path.file_name().unwrap().to_str().unwrap();
        if matches!(name, "network.tf" | "variables.tf") {
            continue;
        }
        let source = std::fs::read_to_string(path).unwrap();
        for variable in ["var.private_subnet_ids", "var.public_subnet_ids"] {
            assert!(
                !source.contains(variable),
                "{name} reads {variable}; use the local of network.tf"
            );
        }
    }
    assert_eq!(
        template_vars(&infra, "control_plane_task")["worker_subnet_ids"],
        "join(\",\", local.private_subnet_ids)"
    );
}

#[test]
fn the_control_plane_consumes_only_its_events_queue_and_reads_only_the_fargate_quotas() {
    let statements = infra().document("control_plane_events");
    let actions: BTreeSet<&str> = statements
        .iter()
        .flat_map(|s| s.actions.iter().map(String::as_str))
        .collect();
    assert_eq!(
        actions,
        BTreeSet::from([
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:GetQueueAttributes",
            "servicequotas:GetServiceQuota",
        ])
    );
    for s in &statements {
        if s.has_action("sqs:") {
            assert_eq!(s.resources, ["aws_sqs_queue.ecs_events.arn"], "{}", s.sid);
        } else {
            assert_eq!(s.resources.len(), 2, "{}", s.sid);
            for (resource, quota) in s.resources.iter().zip(["L-3032A538", "L-36FBB829"]) {
                assert!(
                    resource.ends_with(&format!(":fargate/{quota}")),
                    "{}: {resource}",
                    s.sid
                );
            }
        }
    }
}

#[test]
fn only_the_event_rule_may_send_to_the_events_queue() {
    let statements = infra().document("ecs_events_queue");
    assert_eq!(statements.len(), 1);
    let s = &statements[0];
    assert_eq!(s.actions, ["sqs:SendMessage"]);
    assert_eq!(s.resources, ["aws_sqs_queue.ecs_events.arn"]);
    assert_eq!(s.conditions.len(), 1);
    assert_eq!(s.conditions[0].variable, "aws:SourceArn");
    assert_eq!(
        s.conditions[0].values,
        ["aws_cloudwatch_event_rule.ecs_task_state_change.arn"]
    );
}
