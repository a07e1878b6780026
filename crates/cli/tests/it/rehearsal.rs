//! The rehearsal: the cloud deployment run as ECS would run it, against the
//! AWS emulator (moto on loopback) and the private PostgreSQL, with the
//! control plane and its workers logged in as non-superusers.
//!
//! [`Cloud`] is the emulated account: a fresh database owned by an
//! administrator that is no superuser (CREATEROLE and CREATEDB, as RDS makes
//! its master user) and migrated by the migrate task definition, the secrets Terraform creates (in moto's Secrets
//! Manager), an ECS cluster, and the EventBridge rule that sends the
//! cluster's task state changes to the reconciler's SQS queue (with its
//! dead-letter queue), as `infra/events.tf` creates them.
//! [`Cloud::control_plane`] renders
//! `deploy/ecs/control-plane.task-definition.json` with its placeholders
//! filled as `infra/control_plane.tf` fills them, resolves its `secrets` from
//! moto and runs the `polybot` binary with exactly that command and
//! environment, as an unprivileged user whose working directory and home are
//! not writable (the task's root filesystem is read-only). [`Cloud::worker`]
//! does the same for a tenant's task from the definition the control plane
//! registered in moto, its market data pointed at a local closed port.
//! [`Cloud::stop`] stops a task in moto and publishes the task state change
//! ECS would send (its documented shape: the emulator emits none) to the
//! bus, from where the rule puts it on the queue.
//!
//! Four things differ from ECS, and only those: the processes get moto's
//! endpoint and test credentials (ECS gives a task its role's credentials);
//! the API listens on a free loopback port instead of the definition's port
//! 8080, which another process on this machine may hold (ECS gives each task
//! a network namespace of its own); and the workers' venue endpoints
//! (`POLYBOT_*_URL`) point at a closed local port: tests never reach the
//! internet; and `TMPDIR` names a private directory standing in for the
//! task's `/tmp` volume (the only writable mount of its definitions), so
//! that [`Cloud::assert_nothing_written`] can tell that nothing was written
//! anywhere else.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecs::config::Credentials;
use aws_sdk_ecs::types::KeyValuePair;
use aws_sdk_sqs::types::QueueAttributeName;
use polybot_core::TenantId;
use polybot_deploy_spec::template::{self, Vars};
use polybot_launcher::testing::{
    EventPlumbing, event_plumbing, publish_task_state_change, stopped_task_detail,
};
use serde_json::{Value, json};

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";
/// `nobody`: the rehearsal's processes run as an unprivileged user.
const UNPRIVILEGED_UID: u32 = 65534;
/// Long enough for a loaded machine; the waits end as soon as they are met.
const PATIENCE: Duration = Duration::from_secs(90);

fn endpoint() -> String {
    std::env::var("POLYBOT_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "POLYBOT_TEST_AWS_ENDPOINT is not set: the rehearsal needs the AWS emulator (moto on \
             loopback) that scripts/test starts"
        )
    })
}

fn admin_url() -> url::Url {
    let text = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL (the test PostgreSQL's administrator) is set by scripts/test");
    url::Url::parse(&text).expect("DATABASE_URL is a URL")
}

async fn aws() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .http_client(polybot_launcher::ecs::https_client())
        .load()
        .await
}

/// The first `<tag>` value of an answer of moto's EC2 query API.
async fn ec2_first(action: &str, tag: &str) -> String {
    let body = reqwest::Client::new()
        .post(endpoint())
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/ec2/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("Action={action}&Version=2016-11-15"))
        .send()
        .await
        .expect("moto's EC2 answers")
        .text()
        .await
        .expect("a body");
    let open = format!("<{tag}>");
    let start = body
        .find(&open)
        .unwrap_or_else(|| panic!("no {tag} in {body}"))
        + open.len();
    body[start..start + body[start..].find('<').expect("a closing tag")].to_owned()
}

/// Tasks stay where they are until told (moto otherwise walks them to
/// STOPPED); a subnet and the security group of moto's default VPC.
async fn moto_setup() -> (String, String) {
    let http = reqwest::Client::new();
    let reply = http
        .post(format!(
            "{}/moto-api/state-manager/set-transition",
            endpoint()
        ))
        .body(r#"{"model_name":"ecs::task","transition":{"progression":"manual","times":1000000}}"#)
        .send()
        .await
        .expect("moto's state manager answers");
    assert!(reply.status().is_success(), "{}", reply.status());
    (
        ec2_first("DescribeSubnets", "subnetId").await,
        ec2_first("DescribeSecurityGroups", "groupId").await,
    )
}

/// `2 * bytes` random hex digits.
fn random_hex(bytes: usize) -> String {
    let mut text = String::new();
    while text.len() < 2 * bytes {
        text.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    text.truncate(2 * bytes);
    text
}

/// `setpriv`, found on this process's PATH (the children's environment is
/// cleared, PATH included).
fn setpriv() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("setpriv"))
                .find(|p| p.is_file())
        })
        .expect("setpriv (util-linux) is installed")
}

/// What the rehearsal's processes own outside their `TMPDIR` (see
/// [`owned_by`]). As root (scripts/test) they run as `nobody`, whose files
/// are theirs alone; as another user they share its uid with every other
/// test and tool, so their files cannot be told apart, and only the
/// read-only working directory and home are checked.
fn written_by_the_processes() -> BTreeSet<PathBuf> {
    if nix::unistd::Uid::effective().is_root() {
        owned_by(UNPRIVILEGED_UID)
    } else {
        BTreeSet::new()
    }
}

/// What `uid` owns under the machine's world-writable places (/tmp,
/// /var/tmp, /dev/shm), descending only into directories it could create
/// something in: its own, and world-writable ones. Each rehearsal's `TMPDIR`
/// sits in a directory only root may write to, so none is listed; nor are
/// the private trees of other tests running meanwhile.
fn owned_by(uid: u32) -> BTreeSet<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut found = BTreeSet::new();
    let mut dirs: Vec<PathBuf> = ["/tmp", "/var/tmp", "/dev/shm"]
        .iter()
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .collect();
    while let Some(dir) = dirs.pop() {
        // A directory removed meanwhile by another test holds nothing.
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.map_while(Result::ok) {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            let path = entry.path();
            if meta.uid() == uid {
                found.insert(path.clone());
            }
            if meta.is_dir() && (meta.uid() == uid || meta.mode() & 0o002 != 0) {
                dirs.push(path);
            }
        }
    }
    found
}

/// The container of a rendered or described task definition.
#[derive(Debug, Clone)]
struct Container {
    command: Vec<String>,
    environment: BTreeMap<String, String>,
    /// Variable name → `valueFrom` (`<secret arn>:<json key>::`).
    secrets: BTreeMap<String, String>,
}

impl Container {
    fn from_json(container: &Value) -> Self {
        let pairs = |key: &str, value: &str| -> BTreeMap<String, String> {
            container[key]
                .as_array()
                .map(|list| {
                    list.iter()
                        .map(|e| {
                            (
                                e["name"].as_str().unwrap().to_owned(),
                                e[value].as_str().unwrap().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        Container {
            command: container["command"]
                .as_array()
                .expect("the container has a command")
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect(),
            environment: pairs("environment", "value"),
            secrets: pairs("secrets", "valueFrom"),
        }
    }
}

/// A `polybot` process of the rehearsal, killed when dropped.
struct Process {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Process {
    /// Reads output until a line contains `needle`; panics with the log if
    /// the process exits first.
    fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!(
            "no line with {needle:?}; exit: {:?}; output:\n{}",
            self.child.try_wait(),
            self.log.join("\n")
        );
    }

    /// Waits for the process to exit and returns its code and whole output.
    fn wait_for_exit(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().expect("waiting for the process");
        self.log.extend(self.lines.try_iter());
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.log.push(line);
        }
        (status.code(), self.log.join("\n"))
    }

    fn kill(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.child.kill().expect("killing the process");
            self.child.wait().expect("reaping the process");
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A control plane task of the rehearsal.
struct ControlPlaneTask {
    process: Process,
    addr: String,
}

impl ControlPlaneTask {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .request(method, format!("http://{}{path}", self.addr))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply = request.send().await.expect("the control plane answers");
        let status = reply.status().as_u16();
        let text = reply.text().await.expect("a body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn status(&self, token: &str, tenant: &str) -> Value {
        let (code, body) = self
            .call(
                reqwest::Method::GET,
                &format!("/tenants/{tenant}/status"),
                token,
                None,
            )
            .await;
        assert_eq!(code, 200, "{body}");
        body
    }

    /// Polls the tenant's status until `done` holds; panics with the last one.
    async fn wait_for_status(
        &self,
        token: &str,
        tenant: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + PATIENCE;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            last = self.status(token, tenant).await;
            if done(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("tenant {tenant}: {what} never happened; last status: {last:#}");
    }
}

/// The emulated account: database, secrets, cluster, and an unprivileged
/// copy of the binary. See the module docs.
struct Cloud {
    ecs: aws_sdk_ecs::Client,
    secrets: aws_sdk_secretsmanager::Client,
    sqs: aws_sdk_sqs::Client,
    cluster_arn: String,
    /// The rule and queues of infra/events.tf.
    events: EventPlumbing,
    subnet: String,
    security_group: String,
    /// Terraform's secrets, by their `infra/` resource name.
    secret_arns: BTreeMap<&'static str, String>,
    operator_token: String,
    database: String,
    /// The database's administrator (RDS's master user), not a superuser.
    admin_login: String,
    control_login: String,
    worker_login: String,
    /// Holds the binary's copy and the read-only working directory.
    root: tempfile::TempDir,
    binary: PathBuf,
    /// The working directory and home of the processes: not writable by them.
    read_only: PathBuf,
    /// The processes' `TMPDIR`: the task's `/tmp` volume.
    tmp: PathBuf,
    /// What the processes' user owned outside `tmp` before they ran.
    written_before: BTreeSet<PathBuf>,
    /// Where the workers' venues are: a loopback port nothing listens on.
    venues: String,
}

impl Cloud {
    /// Creates the account's resources and runs the migrate task, as a
    /// first deploy into an empty account does (docs/operations.md).
    async fn deploy() -> Self {
        let (subnet, security_group) = moto_setup().await;
        let aws = aws().await;
        let ecs = aws_sdk_ecs::Client::new(&aws);
        let secrets = aws_sdk_secretsmanager::Client::new(&aws);
        let suffix = random_hex(6);
        let cluster_arn = ecs
            .create_cluster()
            .cluster_name(format!("polybot-rehearsal-{suffix}"))
            .send()
            .await
            .expect("moto creates the cluster")
            .cluster()
            .and_then(|c| c.cluster_arn())
            .expect("a cluster ARN")
            .to_owned();
        // infra/events.tf: the rule on the cluster's task state changes, the
        // queue it fills, and the dead-letter queue behind it.
        let events = event_plumbing(
            &aws,
            &endpoint(),
            &format!("polybot-rehearsal-{suffix}-ecs-events"),
            &cluster_arn,
            5,
        )
        .await
        .unwrap_or_else(|e| panic!("creating the events rule and queues in moto: {e}"));

        // The database (the RDS instance) and its two logins' URLs. The
        // administrator is what RDS makes its master user: no superuser,
        // CREATEROLE and CREATEDB, owner of the database.
        let database = format!("rehearsal_{suffix}");
        let admin_login = format!("polybot_admin_{suffix}");
        let admin_password = random_hex(20);
        let cluster_admin = sqlx::PgPool::connect(admin_url().as_str())
            .await
            .expect("the test PostgreSQL accepts its administrator");
        for statement in [
            format!(
                "CREATE ROLE {admin_login} LOGIN NOSUPERUSER CREATEROLE CREATEDB \
                 PASSWORD '{admin_password}'"
            ),
            format!("CREATE DATABASE {database} OWNER {admin_login}"),
        ] {
            sqlx::raw_sql(&statement)
                .execute(&cluster_admin)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        cluster_admin.close().await;
        let mut admin_db = admin_url();
        admin_db.set_path(&database);
        admin_db.set_username(&admin_login).unwrap();
        admin_db.set_password(Some(&admin_password)).unwrap();
        let control_login = format!("polybot_cp_{suffix}");
        let mut control_db = admin_db.clone();
        control_db.set_username(&control_login).unwrap();
        control_db.set_password(Some(&random_hex(20))).unwrap();
        // The workers' shared login (infra/pgbouncer.tf). On AWS its URL
        // names PgBouncer; here the workers reach the database directly,
        // which is the same to them: each transaction carries its claim.
        let worker_login = format!("polybot_w_{suffix}");
        let mut worker_db = admin_db.clone();
        worker_db.set_username(&worker_login).unwrap();
        worker_db.set_password(Some(&random_hex(20))).unwrap();

        // The secrets of infra/database.tf and infra/secrets.tf.
        let operator_token = format!("pbo_{}", random_hex(20));
        let mut secret_arns = BTreeMap::new();
        for (resource, name, value) in [
            (
                "database",
                "control-plane/database",
                json!({"DATABASE_URL": control_db.as_str()}),
            ),
            (
                "database_admin",
                "control-plane/database-admin",
                json!({"DATABASE_URL": admin_db.as_str()}),
            ),
            (
                "worker_database",
                "control-plane/worker-database",
                json!({
                    "POLYBOT_WORKER_DATABASE_URL": worker_db.as_str(),
                    "DB_USER": worker_login,
                    "DB_PASSWORD": worker_db.password().unwrap(),
                }),
            ),
            (
                "control_plane_tokens",
                "control-plane/tokens",
                json!({
                    "POLYBOT_OPERATOR_TOKEN": operator_token,
                    "POLYBOT_METRICS_TOKEN": random_hex(20),
                    "POLYBOT_MASTER_KEY": random_hex(32),
                }),
            ),
            (
                "worker_settings",
                "workers/settings",
                // No shared market data in the rehearsal: an empty URL, as
                // infra/secrets.tf writes an unset setting.
                json!({"POLYBOT_NEWSAPI_KEY": random_hex(16), "POLYBOT_MARKET_DATA_URL": ""}),
            ),
        ] {
            let arn = secrets
                .create_secret()
                .name(format!("polybot-rehearsal-{suffix}/{name}"))
                .secret_string(value.to_string())
                .send()
                .await
                .expect("moto creates the secret")
                .arn()
                .expect("a secret ARN")
                .to_owned();
            secret_arns.insert(resource, arn);
        }

        // The task's root filesystem: the binary readable by everyone, a
        // working directory nobody else may write to.
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let binary = root.path().join("polybot");
        std::fs::copy(env!("CARGO_BIN_EXE_polybot"), &binary).unwrap();
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
        let read_only = root.path().join("app");
        std::fs::create_dir(&read_only).unwrap();
        std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o555)).unwrap();
        let tmp = root.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let written_before = written_by_the_processes();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let venues = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);

        let cloud = Cloud {
            ecs,
            secrets,
            sqs: aws_sdk_sqs::Client::new(&aws),
            cluster_arn,
            events,
            subnet,
            security_group,
            secret_arns,
            operator_token,
            database,
            admin_login,
            control_login,
            worker_login,
            root,
            binary,
            read_only,
            tmp,
            written_before,
            venues,
        };
        cloud.migrate().await;
        cloud
    }

    fn arn(&self, resource: &str) -> &str {
        &self.secret_arns[resource]
    }

    fn role(&self, name: &str) -> String {
        format!("arn:aws:iam::{ACCOUNT}:role/polybot-{name}")
    }

    /// A task definition of deploy/ecs/ with its placeholders filled as
    /// Terraform fills them (infra/control_plane.tf, infra/migrate.tf).
    fn render(&self, file: &str, vars: Vars) -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/ecs")
            .join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        template::render(&text, &vars)
            .unwrap_or_else(|e| panic!("{file} does not render as Terraform would: {e}"))
    }

    fn control_plane_definition(&self) -> Value {
        self.render(
            "control-plane.task-definition.json",
            Vars::from([
                (
                    "image",
                    json!(format!(
                        "{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/polybot:rehearsal"
                    )),
                ),
                (
                    "execution_role_arn",
                    json!(self.role("control-plane-execution")),
                ),
                ("task_role_arn", json!(self.role("control-plane-task"))),
                ("region", json!(REGION)),
                ("log_group", json!("/polybot/control-plane")),
                ("database_secret_arn", json!(self.arn("database"))),
                (
                    "worker_database_secret_arn",
                    json!(self.arn("worker_database")),
                ),
                ("tokens_secret_arn", json!(self.arn("control_plane_tokens"))),
                (
                    "worker_settings_secret_arn",
                    json!(self.arn("worker_settings")),
                ),
                ("cluster_arn", json!(self.cluster_arn)),
                ("worker_subnet_ids", json!(self.subnet)),
                ("worker_security_group_id", json!(self.security_group)),
                (
                    "worker_execution_role_arn",
                    json!(self.role("worker-execution")),
                ),
                ("worker_task_role_arn", json!(self.role("worker-task"))),
                ("worker_log_group", json!("/polybot/workers")),
                ("events_queue_url", json!(self.events.queue_url)),
            ]),
        )
    }

    fn migrate_definition(&self) -> Value {
        self.render(
            "migrate.task-definition.json",
            Vars::from([
                (
                    "image",
                    json!(format!(
                        "{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/polybot:rehearsal"
                    )),
                ),
                ("execution_role_arn", json!(self.role("migrate-execution"))),
                ("region", json!(REGION)),
                ("log_group", json!("/polybot/control-plane")),
                (
                    "admin_database_secret_arn",
                    json!(self.arn("database_admin")),
                ),
                ("database_secret_arn", json!(self.arn("database"))),
                (
                    "worker_database_secret_arn",
                    json!(self.arn("worker_database")),
                ),
            ]),
        )
    }

    /// `valueFrom` (`<secret arn>:<json key>::`) resolved as ECS resolves it.
    async fn resolve(&self, value_from: &str) -> String {
        let (arn, key) = value_from
            .strip_suffix("::")
            .and_then(|rest| rest.rsplit_once(':'))
            .unwrap_or_else(|| panic!("{value_from:?} is not <secret arn>:<json key>::"));
        let text = self
            .secrets
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .unwrap_or_else(|e| panic!("ECS could not read {arn}: {e:?}"))
            .secret_string()
            .expect("a JSON secret")
            .to_owned();
        let json: Value = serde_json::from_str(&text).expect("the secret is JSON");
        json[key]
            .as_str()
            .unwrap_or_else(|| panic!("{arn} has no key {key}: ECS would not start the task"))
            .to_owned()
    }

    /// The container's environment as ECS builds it: its `environment`, the
    /// run's overrides, its `secrets` resolved.
    async fn environment(
        &self,
        container: &Container,
        overrides: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut env = container.environment.clone();
        env.extend(overrides.clone());
        for (name, value_from) in &container.secrets {
            env.insert(name.clone(), self.resolve(value_from).await);
        }
        env
    }

    /// Runs `polybot <command>` with exactly `env` (plus moto's endpoint and
    /// credentials), as an unprivileged user in the read-only directory.
    fn run(&self, command: &[String], env: &BTreeMap<String, String>) -> Process {
        let mut cmd = if nix::unistd::Uid::effective().is_root() {
            let mut cmd = Command::new(setpriv());
            let uid = UNPRIVILEGED_UID.to_string();
            cmd.args(["--reuid", &uid, "--regid", &uid, "--clear-groups", "--"]);
            cmd.arg(&self.binary);
            cmd
        } else {
            Command::new(&self.binary)
        };
        cmd.args(command)
            .env_clear()
            .envs(env)
            // What ECS gives a task through its role; moto in place of AWS.
            .env("AWS_ENDPOINT_URL", endpoint())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("HOME", &self.read_only)
            .env("TMPDIR", &self.tmp)
            .env("POLYBOT_LOG", "info")
            .current_dir(&self.read_only)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("the binary starts");
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Process {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// The migrate task, run to completion as the administrator.
    async fn migrate(&self) {
        let definition = self.migrate_definition();
        let container = Container::from_json(&definition["containerDefinitions"][0]);
        assert_eq!(container.command, ["migrate"]);
        let env = self.environment(&container, &BTreeMap::new()).await;
        let (code, output) = self.run(&container.command, &env).wait_for_exit();
        assert_eq!(code, Some(0), "the migrate task failed:\n{output}");
        assert!(
            output.contains("the control plane's database login is ready"),
            "{output}"
        );
        assert!(
            output.contains("the workers' shared database login is ready"),
            "{output}"
        );
    }

    /// The control plane's container as Terraform renders it, with secrets
    /// `without` left out of its `secrets`.
    async fn control_plane_env(&self, without: &[&str]) -> (Container, BTreeMap<String, String>) {
        let definition = self.control_plane_definition();
        let mut container = Container::from_json(&definition["containerDefinitions"][0]);
        container
            .secrets
            .retain(|name, _| !without.contains(&name.as_str()));
        let env = self.environment(&container, &BTreeMap::new()).await;
        (container, env)
    }

    /// Starts a control plane task and waits until it serves.
    async fn control_plane(&self) -> ControlPlaneTask {
        let (container, env) = self.control_plane_env(&[]).await;
        let mut command = container.command.clone();
        let listen = command
            .iter()
            .position(|c| c == "--listen")
            .expect("the task definition sets --listen");
        assert_eq!(
            command[listen + 1],
            "0.0.0.0:8080",
            "the port the service's load balancer targets"
        );
        command[listen + 1] = "127.0.0.1:0".into();
        let mut process = self.run(&command, &env);
        let line = process.wait_for_line("PolyBot is up: http://");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .expect("the address")
            .to_owned();
        ControlPlaneTask { process, addr }
    }

    /// The tenant's running tasks in the cluster, as ECS lists them.
    async fn tasks_of(&self, tenant: &str) -> Vec<aws_sdk_ecs::types::Task> {
        let arns = self
            .ecs
            .list_tasks()
            .cluster(&self.cluster_arn)
            .family(format!("polybot-t-{tenant}"))
            .desired_status(aws_sdk_ecs::types::DesiredStatus::Running)
            .send()
            .await
            .expect("ListTasks")
            .task_arns()
            .to_vec();
        if arns.is_empty() {
            return Vec::new();
        }
        self.ecs
            .describe_tasks()
            .cluster(&self.cluster_arn)
            .set_tasks(Some(arns))
            .send()
            .await
            .expect("DescribeTasks")
            .tasks()
            .to_vec()
    }

    /// Waits until the tenant has exactly one running task, and returns it.
    async fn the_task_of(&self, tenant: &str) -> aws_sdk_ecs::types::Task {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut tasks = self.tasks_of(tenant).await;
            match tasks.len() {
                1 => return tasks.remove(0),
                0 if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                n => panic!("tenant {tenant} has {n} running tasks"),
            }
        }
    }

    /// Starts the worker of `task` as ECS would: the command, environment
    /// and secrets of its task definition's worker container, with the run's
    /// overrides; the venues at a local closed port.
    async fn worker(&self, task: &aws_sdk_ecs::types::Task) -> Process {
        let definition = self
            .ecs
            .describe_task_definition()
            .task_definition(task.task_definition_arn().expect("the task's definition"))
            .send()
            .await
            .expect("DescribeTaskDefinition")
            .task_definition()
            .expect("a task definition")
            .clone();
        let worker = definition
            .container_definitions()
            .iter()
            .find(|c| c.name() == Some("worker"))
            .expect("a worker container");
        let pairs = |list: &[KeyValuePair]| -> BTreeMap<String, String> {
            list.iter()
                .map(|p| {
                    (
                        p.name().unwrap().to_owned(),
                        p.value().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        };
        let container = Container {
            command: worker.command().to_vec(),
            environment: pairs(worker.environment()),
            secrets: worker
                .secrets()
                .iter()
                .map(|s| (s.name().to_owned(), s.value_from().to_owned()))
                .collect(),
        };
        let overrides = task
            .overrides()
            .map(|o| o.container_overrides())
            .unwrap_or_default()
            .iter()
            .filter(|o| o.name() == Some("worker"))
            .flat_map(|o| pairs(o.environment()))
            .collect();
        let mut env = self.environment(&container, &overrides).await;
        for name in polybot_core::worker::env::VENUE_URLS {
            env.insert((*name).to_owned(), self.venues.clone());
        }
        env.insert(
            polybot_core::worker::env::NEWSAPI_URL.to_owned(),
            self.venues.clone(),
        );
        self.run(&container.command, &env)
    }

    /// Nothing was written outside the task's `/tmp` (`TMPDIR`): not where
    /// the processes ran or their home (the read-only root filesystem), and
    /// nothing new anywhere else their user may write (the machine's /tmp,
    /// /var/tmp, /dev/shm).
    fn assert_nothing_written(&self) {
        let written: Vec<_> = std::fs::read_dir(&self.read_only)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(written.is_empty(), "written outside /tmp: {written:?}");
        let elsewhere: Vec<PathBuf> = written_by_the_processes()
            .difference(&self.written_before)
            .cloned()
            .collect();
        assert!(
            elsewhere.is_empty(),
            "written outside the task's /tmp ({}): {elsewhere:?}",
            self.tmp.display()
        );
    }

    /// Stops `task` in moto as ECS stops a task whose worker exited with
    /// `exit_code`, and publishes the task state change ECS would send.
    async fn stop(&self, task: &aws_sdk_ecs::types::Task, exit_code: i32) {
        self.ecs
            .stop_task()
            .cluster(&self.cluster_arn)
            .task(task.task_arn().unwrap())
            .reason("Essential container in task exited")
            .send()
            .await
            .expect("StopTask");
        self.publish_stopped(task, exit_code).await;
    }

    /// Publishes the state change of `task`, stopped with `exit_code`, to
    /// the bus (as ECS does after a stop, and as EventBridge may deliver
    /// twice).
    async fn publish_stopped(&self, task: &aws_sdk_ecs::types::Task, exit_code: i32) {
        let tenant: TenantId = task
            .group()
            .and_then(|g| g.strip_prefix("tenant:"))
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("the task's group names its tenant: {task:?}"));
        let spec_hash = task
            .overrides()
            .map(|o| o.container_overrides())
            .unwrap_or_default()
            .iter()
            .flat_map(|o| o.environment())
            .find(|e| e.name() == Some(polybot_core::worker::env::SPEC_HASH))
            .and_then(|e| e.value())
            .expect("the task carries its spec hash")
            .to_owned();
        let detail = stopped_task_detail(
            tenant,
            task.task_arn().unwrap(),
            &self.cluster_arn,
            &spec_hash,
            exit_code,
        );
        publish_task_state_change(&endpoint(), &detail)
            .await
            .unwrap_or_else(|e| panic!("publishing the task state change: {e}"));
    }

    /// Messages in `queue`, visible or received and not yet deleted.
    async fn messages_in(&self, queue: &str) -> u64 {
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("GetQueueAttributes")
            .attributes()
            .cloned()
            .unwrap_or_default();
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|name| {
            attributes
                .get(name)
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{queue} reports {name:?}: {attributes:?}"))
        })
        .sum()
    }

    /// Waits until the events queue is drained (every message received and
    /// deleted), and checks that nothing went to the dead-letter queue.
    async fn wait_for_drained_events(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = self.messages_in(&self.events.queue_url).await;
            if left == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{left} task events were never consumed from {}",
                self.events.queue_url
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(
            self.messages_in(&self.events.dead_letter_queue_url).await,
            0,
            "a task event went to the dead-letter queue"
        );
    }

    /// Waits until the tenant runs a task other than `old`, and returns it.
    async fn the_task_after(
        &self,
        tenant: &str,
        old: &aws_sdk_ecs::types::Task,
    ) -> aws_sdk_ecs::types::Task {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let tasks = self.tasks_of(tenant).await;
            if let [task] = tasks.as_slice()
                && task.task_arn() != old.task_arn()
            {
                return task.clone();
            }
            assert!(
                tasks.len() <= 1,
                "tenant {tenant} runs {} tasks: {tasks:?}",
                tasks.len()
            );
            assert!(
                Instant::now() < deadline,
                "tenant {tenant}'s stopped task {:?} was never replaced",
                old.task_arn()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn teardown(self) {
        let admin = sqlx::PgPool::connect(admin_url().as_str()).await.unwrap();
        for statement in [
            format!("DROP DATABASE {} WITH (FORCE)", self.database),
            format!("DROP ROLE IF EXISTS {}", self.control_login),
            format!("DROP ROLE IF EXISTS {}", self.worker_login),
            format!("DROP ROLE IF EXISTS {}", self.admin_login),
        ] {
            sqlx::raw_sql(&statement).execute(&admin).await.unwrap();
        }
        admin.close().await;
        drop(self.root);
    }
}

/// A deployed control plane and a tenant whose worker runs from its task,
/// for the steps that follow (stopping the task, the ECS event).
struct Rehearsal {
    cloud: Cloud,
    control_plane: ControlPlaneTask,
    tenant: String,
    task: aws_sdk_ecs::types::Task,
    worker: Process,
}

impl Rehearsal {
    /// Deploys, onboards a tenant through the API, starts its worker from
    /// the task the control plane ran, and waits for its heartbeat.
    async fn run() -> Self {
        let cloud = Cloud::deploy().await;
        let control_plane = cloud.control_plane().await;
        let (code, body) = control_plane
            .call(
                reqwest::Method::POST,
                "/tenants",
                &cloud.operator_token,
                Some(json!({"name": "acme", "strategies": {"complement_arb": {}}})),
            )
            .await;
        assert_eq!(code, 201, "onboarding: {body}");
        let tenant = body["id"].as_str().expect("the tenant's id").to_owned();
        let task = cloud.the_task_of(&tenant).await;
        let worker = cloud.worker(&task).await;
        control_plane
            .wait_for_status(&cloud.operator_token, &tenant, "a heartbeat", |s| {
                !s["last_heartbeat"].is_null()
            })
            .await;
        Rehearsal {
            cloud,
            control_plane,
            tenant,
            task,
            worker,
        }
    }

    async fn teardown(mut self) {
        self.worker.kill();
        self.control_plane.process.kill();
        self.cloud.assert_nothing_written();
        self.cloud.teardown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cloud_deployment_boots_onboards_and_trades_as_ecs_would_run_it() {
    let mut r = Rehearsal::run().await;
    let token = &r.cloud.operator_token;

    // The worker trades on live data by default: its venues (a closed port
    // here) are named in the status with why they cannot be reached.
    let status = r
        .control_plane
        .wait_for_status(token, &r.tenant, "a venue reported", |s| {
            s["venues"]
                .as_object()
                .is_some_and(|v| v.values().any(|feed| !feed["last_error"].is_null()))
        })
        .await;
    let venues = status["venues"].as_object().unwrap();
    let (venue, feed) = venues
        .iter()
        .find(|(_, feed)| !feed["last_error"].is_null())
        .unwrap();
    assert_eq!(feed["status"], "unreachable", "{venue}: {feed}");
    let error = feed["last_error"].as_str().unwrap();
    assert!(
        error.contains("Connection refused") && error.contains(" GET /"),
        "{venue}'s error says what failed and why: {feed}"
    );
    assert!(!feed["fix"].is_null(), "{venue}: {feed}");
    // (Its ECS state stays as moto left it: the emulator does not run tasks.)
    assert_eq!(
        status["worker"]["instance_id"].as_str(),
        r.task.task_arn(),
        "{status:#}"
    );

    // The task's worker got the operator's settings from their secret, not
    // from the control plane's environment.
    let definition = r
        .cloud
        .ecs
        .describe_task_definition()
        .task_definition(r.task.task_definition_arn().unwrap())
        .send()
        .await
        .unwrap();
    let worker = &definition
        .task_definition()
        .unwrap()
        .container_definitions()[0];
    let secrets: Vec<&str> = worker.secrets().iter().map(|s| s.name()).collect();
    assert_eq!(
        secrets,
        [
            "EXCHANGE_KEYS",
            "DATABASE_URL",
            "POLYBOT_NEWSAPI_KEY",
            "POLYBOT_MARKET_DATA_URL"
        ]
    );
    assert!(
        worker.secrets()[2]
            .value_from()
            .starts_with(r.cloud.arn("worker_settings")),
        "{:?}",
        worker.secrets()[2]
    );

    // Dashboard cookies are Secure, and HSTS is on behind the load balancer.
    let reply = reqwest::Client::new()
        .get(format!("http://{}/ui/login", r.control_plane.addr))
        .header("X-Forwarded-Proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(
        reply.headers()["strict-transport-security"],
        "max-age=63072000"
    );
    let cookies: Vec<&str> = reply
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(!cookies.is_empty(), "the sign-in form sets its cookie");
    assert!(
        cookies.iter().all(|c| c.contains("; Secure")),
        "{cookies:?}"
    );

    // The worker's container exits with code 1; ECS stops the task and
    // sends its state change, which reaches the leader through the rule and
    // the queue: the exit is recorded once, as the event tells it (moto's
    // own DescribeTasks has no stop code and no exit code), and a new task
    // replaces the worker.
    r.worker.kill();
    r.cloud.stop(&r.task, 1).await;
    let task_arn = r.task.task_arn().unwrap();
    // moto lists a stopped task without its exit code: should a backstop
    // pass list it before the event arrives, the exit is counted then and
    // completed by the event.
    let event_exit = format!(
        "worker {task_arn}: EssentialContainerExited: Essential container in task exited; \
         container worker exited with exit code 1"
    );
    let status = r
        .control_plane
        .wait_for_status(token, &r.tenant, "the exit recorded", |s| {
            s["worker"]["last_exit"] == event_exit.as_str()
        })
        .await;
    assert_eq!(status["worker"]["restarts"], 1, "counted once: {status:#}");
    let replacement = r.cloud.the_task_after(&r.tenant, &r.task).await;
    assert_ne!(replacement.task_arn(), r.task.task_arn());
    r.cloud.wait_for_drained_events().await;
    let status = r
        .control_plane
        .wait_for_status(token, &r.tenant, "the replacement observed", |s| {
            s["worker"]["instance_id"].as_str() == replacement.task_arn()
        })
        .await;
    assert_eq!(status["worker"]["restarts"], 1, "counted once: {status:#}");

    r.teardown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_control_plane_in_cloud_mode_without_its_token_secret_exits_naming_it() {
    let cloud = Cloud::deploy().await;
    let (container, env) = cloud.control_plane_env(&["POLYBOT_OPERATOR_TOKEN"]).await;
    let (code, output) = cloud.run(&container.command, &env).wait_for_exit();
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains("POLYBOT_OPERATOR_TOKEN is not set (the task definition's `secrets`"),
        "{output}"
    );
    cloud.assert_nothing_written();
    cloud.teardown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_control_plane_replicas_share_the_token_and_one_reconciles() {
    let cloud = Cloud::deploy().await;
    let token = cloud.operator_token.clone();
    let mut replicas = vec![cloud.control_plane().await, cloud.control_plane().await];
    for replica in &replicas {
        let (code, body) = replica
            .call(reqwest::Method::GET, "/tenants", &token, None)
            .await;
        assert_eq!(code, 200, "{body}");
    }
    let (code, body) = replicas[1]
        .call(
            reqwest::Method::POST,
            "/tenants",
            &token,
            Some(json!({"name": "acme"})),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let tenant = body["id"].as_str().unwrap().to_owned();
    let first = cloud.the_task_of(&tenant).await;

    // Exactly one of them leads; the other takes over when it dies, and
    // adopts the running task instead of starting a second one.
    let deadline = Instant::now() + PATIENCE;
    let leader = loop {
        assert!(
            Instant::now() < deadline,
            "neither replica became the leader"
        );
        let mut found = None;
        for (i, replica) in replicas.iter_mut().enumerate() {
            replica.process.log.extend(replica.process.lines.try_iter());
            if replica
                .process
                .log
                .iter()
                .any(|l| l.contains("this control plane is the reconciler leader"))
            {
                assert!(found.is_none(), "both replicas lead");
                found = Some(i);
            }
        }
        if let Some(i) = found {
            break i;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // The leader learns of a stopped task from its event, counts the exit
    // and replaces the worker.
    cloud.stop(&first, 1).await;
    replicas[leader]
        .wait_for_status(&token, &tenant, "the exit recorded", |s| {
            s["worker"]["restarts"] != 0
        })
        .await;
    let task = cloud.the_task_after(&tenant, &first).await;
    cloud.wait_for_drained_events().await;

    let mut old = replicas.remove(leader);
    old.process.kill();
    let survivor = &mut replicas[0];
    survivor
        .process
        .wait_for_line("this control plane is the reconciler leader");
    // The new leader meets the same stopped task twice: in its listing
    // (ECS lists stopped tasks for an hour) and in its event, delivered
    // again (EventBridge and SQS deliver at least once; a leader that dies
    // before deleting a message leaves it to its successor).
    // The message is deleted once a pass of the new leader found the exit
    // recorded. (A long poll the dead leader left open may take it first:
    // it then comes back after the queue's visibility timeout.)
    cloud.publish_stopped(&first, 1).await;
    cloud.wait_for_drained_events().await;
    let status = survivor.status(&token, &tenant).await;
    assert_eq!(
        status["worker"]["restarts"], 1,
        "the exit is counted once across the failover: {status:#}"
    );
    let tasks = cloud.tasks_of(&tenant).await;
    assert_eq!(
        tasks.iter().map(|t| t.task_arn()).collect::<Vec<_>>(),
        [task.task_arn()],
        "the new leader kept the tenant's one task"
    );
    drop(replicas);
    cloud.assert_nothing_written();
    cloud.teardown().await;
}
