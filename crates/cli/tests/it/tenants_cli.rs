//! `polybot tenants …` against a real control plane process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

const OPERATOR: &str = "pbo_cli-operator-token-0123456789abcdef";

struct ControlPlane {
    child: Child,
    addr: String,
}

impl ControlPlane {
    fn start(database_url: &str, data_dir: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_polybot"))
            .args(["control-plane", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("DATABASE_URL", database_url)
            .env("POLYBOT_OPERATOR_TOKEN", OPERATOR)
            .env("POLYBOT_MASTER_KEY", "6a".repeat(32))
            .env("POLYBOT_HEARTBEAT_SECS", "0.3")
            // Workers without market data: this test is about their lifecycle,
            // and tests never reach the venues.
            .env("POLYBOT_LIVE_DATA", "0")
            .env("POLYBOT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("the control plane never came up");
            if let Some(rest) = line.split("PolyBot is up: http://").nth(1) {
                break rest.split('/').next().unwrap().to_owned();
            }
        };
        std::thread::spawn(move || for _ in rx {});
        Self { child, addr }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if signal::kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).is_ok() {
            let deadline = Instant::now() + Duration::from_secs(40);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn url_for(options: &PgConnectOptions) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL (scripts/test sets it)");
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{}", options.get_database().unwrap())
}

/// Runs `polybot tenants <args>` against `cp` with `token` from the environment.
fn tenants(cp: &ControlPlane, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_polybot"));
    cmd.arg("tenants")
        .args(args)
        .env("POLYBOT_URL", format!("http://{}", cp.addr))
        .env_remove("POLYBOT_TOKEN")
        .env("POLYBOT_LOG", "warn");
    if let Some(token) = token {
        cmd.env("POLYBOT_TOKEN", token);
    }
    cmd.output().unwrap()
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_tenants_commands_drive_the_api_with_tables_and_json(
    _pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let dir = tempfile::tempdir().unwrap();
    let url = url_for(&options);
    let path = dir.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let cp = ControlPlane::start(&url, &path);
        let t = Some(OPERATOR);

        // create: validation errors come back with their fields, non-zero exit.
        let bad = tenants(
            &cp,
            t,
            &["create", "--name", "x", "--strategies", r#"{"nope": {}}"#],
        );
        assert!(!bad.status.success());
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(stderr.contains("POST /tenants failed (422)"), "{stderr}");
        assert!(stderr.contains("strategies.nope"), "{stderr}");
        // Onboarding in live mode is refused like the API refuses it.
        let live = tenants(&cp, t, &["create", "--name", "x", "--mode", "live"]);
        assert!(!live.status.success());
        let stderr = String::from_utf8_lossy(&live.stderr);
        assert!(
            stderr.contains(
                "mode: a tenant starts in paper; once onboarded, switch it to shadow or live"
            ),
            "{stderr}"
        );

        let created: Value = serde_json::from_str(&ok(&tenants(
            &cp,
            t,
            &[
                "create",
                "--name",
                "acme",
                "--strategies",
                r#"{"complement_arb": {}}"#,
                "--json",
            ],
        )))
        .unwrap();
        let id = created["id"].as_str().unwrap().to_owned();
        assert_eq!(created["name"], "acme");
        let human = ok(&tenants(&cp, t, &["create", "--name", "bolt"]));
        assert!(human.starts_with("created tenant "), "{human}");

        // list: a table with both, and their worker state once running.
        let deadline = Instant::now() + Duration::from_secs(60);
        let table = loop {
            let table = ok(&tenants(&cp, t, &["list"]));
            let running = table.lines().filter(|l| l.contains(" running ")).count();
            if running == 2 {
                break table;
            }
            assert!(Instant::now() < deadline, "never both running:\n{table}");
            std::thread::sleep(Duration::from_millis(300));
        };
        let header = table.lines().next().unwrap();
        assert!(
            header.starts_with("ID") && header.contains("NAME") && header.contains("WORKER"),
            "{header}"
        );
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(&id) && l.contains("acme") && l.contains("active"))
        );
        let json: Value = serde_json::from_str(&ok(&tenants(&cp, t, &["list", "--json"]))).unwrap();
        assert_eq!(json["items"].as_array().unwrap().len(), 2);

        // show, by name or id.
        let shown = ok(&tenants(&cp, t, &["show", "acme"]));
        assert!(shown.contains(&id), "{shown}");
        assert!(
            shown
                .lines()
                .any(|l| l.starts_with("worker") && l.contains("running")),
            "{shown}"
        );
        assert!(shown.contains("strategy complement_arb"), "{shown}");
        assert!(
            shown
                .lines()
                .any(|l| l.starts_with("plan") && l.contains("none (not limited, not billed)")),
            "{shown}"
        );
        let shown: Value =
            serde_json::from_str(&ok(&tenants(&cp, t, &["show", &id, "--json"]))).unwrap();
        assert_eq!(shown["tenant"]["id"], id.as_str());
        assert_eq!(shown["status"]["desired"], "running");
        assert_eq!(shown["billing"]["payment_state"], "none");

        // pause (an operator's: a hold, shown), resume.
        assert_eq!(
            ok(&tenants(&cp, t, &["pause", "acme", "--reason", "audit"])).trim(),
            format!("tenant {id} is paused")
        );
        let shown = ok(&tenants(&cp, t, &["show", "acme"]));
        assert!(
            shown
                .lines()
                .any(|l| l.starts_with("operator hold") && l.contains("yes: audit")),
            "{shown}"
        );
        let resumed: Value =
            serde_json::from_str(&ok(&tenants(&cp, t, &["resume", &id, "--json"]))).unwrap();
        assert_eq!(resumed["state"], "active");
        assert_eq!(resumed["held_by_operator"], false);

        // token: a tenant token that sees only its own tenant.
        let token = ok(&tenants(&cp, t, &["token", "acme", "--label", "cli"]))
            .trim()
            .to_owned();
        assert!(token.starts_with("pbt_"), "{token}");
        let own = ok(&tenants(&cp, Some(&token), &["list"]));
        assert_eq!(own.lines().count(), 2, "header and its own row:\n{own}");
        assert!(own.contains("acme") && !own.contains("bolt"));
        let denied = tenants(&cp, Some(&token), &["delete", "bolt"]);
        assert!(!denied.status.success());

        // tokens lists it (never the secret); revoke-token ends it.
        let listed: Value =
            serde_json::from_str(&ok(&tenants(&cp, t, &["tokens", "acme", "--json"]))).unwrap();
        let items = listed["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{listed}");
        assert_eq!(items[0]["label"], "cli");
        let token_id = items[0]["id"].as_str().unwrap().to_owned();
        let table = ok(&tenants(&cp, t, &["tokens", "acme"]));
        assert!(
            table.contains(&token_id) && !table.contains(&token[4..]),
            "{table}"
        );
        let unasked = tenants(&cp, t, &["revoke-token", "acme", &token_id]);
        assert!(!unasked.status.success());
        assert!(
            String::from_utf8_lossy(&unasked.stderr).contains("pass --yes to confirm"),
            "{}",
            String::from_utf8_lossy(&unasked.stderr)
        );
        let revoked = ok(&tenants(
            &cp,
            t,
            &["revoke-token", "acme", &token_id, "--yes"],
        ));
        assert!(revoked.contains("is revoked"), "{revoked}");
        let refused = tenants(&cp, Some(&token), &["list"]);
        assert!(!refused.status.success());
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("(401)"),
            "{}",
            String::from_utf8_lossy(&refused.stderr)
        );

        // Without a token: the data dir's operator-token file.
        let none = tenants(&cp, None, &["list", "--data-dir", "/nonexistent"]);
        assert!(!none.status.success());
        assert!(String::from_utf8_lossy(&none.stderr).contains("no token"));
        let token_dir = tempfile::tempdir().unwrap();
        std::fs::write(token_dir.path().join("operator-token"), OPERATOR).unwrap();
        let listed = ok(&tenants(
            &cp,
            None,
            &["list", "--data-dir", token_dir.path().to_str().unwrap()],
        ));
        assert!(listed.contains("bolt"));

        // trades, positions and PnL of a tenant that has not traded yet.
        let trades = ok(&tenants(&cp, t, &["trades", "acme"]));
        assert!(trades.starts_with("EXECUTED  STRATEGY"), "{trades}");
        let positions = ok(&tenants(&cp, t, &["positions", "acme"]));
        assert_eq!(positions, "no open positions\n");
        let pnl = ok(&tenants(&cp, t, &["pnl", "acme"]));
        let field = |name: &str| {
            pnl.lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .map(|l| l.split_whitespace().last().unwrap_or_default().to_owned())
        };
        assert_eq!(field("realized").as_deref(), Some("0.00"), "{pnl}");
        assert_eq!(field("fees").as_deref(), Some("0.00"), "{pnl}");
        // Nothing has happened yet: nothing made or lost today.
        assert_eq!(field("today").as_deref(), Some("0.00"), "{pnl}");

        // delete: asked first; without a terminal, --yes confirms.
        let unasked = tenants(&cp, t, &["delete", "bolt"]);
        assert!(!unasked.status.success());
        assert!(
            String::from_utf8_lossy(&unasked.stderr).contains("pass --yes to confirm"),
            "{}",
            String::from_utf8_lossy(&unasked.stderr)
        );
        let deleted = ok(&tenants(&cp, t, &["delete", "bolt", "--yes"]));
        assert!(deleted.contains(" is offboard"), "{deleted}");
        drop(cp);
    })
    .await
    .unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn tenants_pairs_shows_the_paired_position_ledger_as_a_table_and_json(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = pool_opts.connect_with(options.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = url_for(&options);
    let path = dir.path().to_owned();
    let cp = tokio::task::spawn_blocking(move || ControlPlane::start(&url, &path))
        .await
        .unwrap();
    let created: Value = serde_json::from_str(&ok(&tenants(
        &cp,
        Some(OPERATOR),
        &["create", "--name", "acme", "--json"],
    )))
    .unwrap();
    let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    // What a worker's two-leg execution writes: one pair locked, one unwound.
    for (opened, status, matched, edge, loss) in [
        ("2026-04-29 13:00:00+00", "locked", "100", "6.57", "0"),
        ("2026-04-29 13:05:00+00", "unwound", "0", "0", "5.3292"),
    ] {
        sqlx::query(
            "INSERT INTO paired_positions (id, tenant_id, epoch, strategy, opportunity, status, matched, \
               locked_edge, realised_loss, legs, resolution, opened_at) \
             VALUES ($1, $2, 1, 'cross_venue_arb', 1, $3, $4::numeric, $5::numeric, $6::numeric, $7, \
               'settles at resolution', $8::timestamptz)",
        )
        .bind(uuid::Uuid::new_v4())
        .bind(id)
        .bind(status)
        .bind(matched)
        .bind(edge)
        .bind(loss)
        .bind(serde_json::json!([
            {"leg": 0, "step": "entry", "venue": "polymarket", "side": "buy", "price": "0.4", "filled": "100"},
            {"leg": 1, "step": "entry", "venue": "kalshi", "side": "buy", "price": "0.5", "filled": matched},
        ]))
        .bind(opened)
        .execute(&pool)
        .await
        .unwrap();
    }
    tokio::task::spawn_blocking(move || {
        let t = Some(OPERATOR);
        let table = ok(&tenants(&cp, t, &["pairs", "acme"]));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines.len(),
            3,
            "a header and two pairs, newest first:\n{table}"
        );
        assert!(lines[0].starts_with("OPENED"), "{table}");
        let unwound: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            unwound[..6],
            [
                "2026-04-29T13:05:00",
                "unwound",
                "0",
                "0.00",
                "5.33",
                "entry"
            ],
            "{table}"
        );
        let locked: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            locked[..5],
            ["2026-04-29T13:00:00", "locked", "100", "6.57", "0.00"],
            "{table}"
        );
        assert!(
            lines[2].contains("entry polymarket buy 100@0.4, entry kalshi buy 100@0.5"),
            "{table}"
        );
        let filtered: Value = serde_json::from_str(&ok(&tenants(
            &cp,
            t,
            &["pairs", "acme", "--status", "locked", "--json"],
        )))
        .unwrap();
        let items = filtered["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{filtered}");
        assert_eq!(items[0]["locked_edge"], "6.57");
        let bad = tenants(&cp, t, &["pairs", "acme", "--status", "sideways"]);
        assert!(!bad.status.success());
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(
            stderr.contains("(422)") && stderr.contains("status"),
            "{stderr}"
        );
        drop(cp);
    })
    .await
    .unwrap();
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn cost_per_tenant_prices_each_tenants_worker_hours_against_its_plan(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = pool_opts.connect_with(options.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = url_for(&options);
    let path = dir.path().to_owned();
    let cp = tokio::task::spawn_blocking(move || ControlPlane::start(&url, &path))
        .await
        .unwrap();
    let created: Value = serde_json::from_str(&ok(&tenants(
        &cp,
        Some(OPERATOR),
        &["create", "--name", "acme", "--json"],
    )))
    .unwrap();
    let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    // Last month: on the pro plan (0.5 vCPU / 1 GiB, 49 USD), its worker ran 40 hours.
    let now = chrono::Utc::now().date_naive();
    let month = now
        .checked_sub_months(chrono::Months::new(1))
        .unwrap()
        .format("%Y-%m")
        .to_string();
    let first = chrono::NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    sqlx::query("INSERT INTO tenant_billing (tenant_id, plan_id, payment_state) VALUES ($1, 'pro', 'active')")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO worker_availability (tenant_id, minute, desired_ms, up_ms) \
         SELECT $1, $2 + g * interval '1 minute', 60000, 60000 FROM generate_series(0, 2399) g",
    )
    .bind(id)
    .bind(first)
    .execute(&pool)
    .await
    .unwrap();
    let addr = cp.addr.clone();
    let run = move |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_polybot"))
            .arg("cost")
            .args(args)
            .env("POLYBOT_URL", format!("http://{addr}"))
            .env("POLYBOT_TOKEN", OPERATOR)
            .env("POLYBOT_LOG", "warn")
            .output()
            .unwrap()
    };
    let json: Value =
        serde_json::from_str(&ok(&run(&["--per-tenant", "--month", &month, "--json"]))).unwrap();
    let row = &json.as_array().unwrap()[0];
    assert_eq!(row["name"], "acme");
    assert_eq!(row["plan"], "pro");
    assert_eq!(row["worker_hours"], "40");
    // 40 h × (0.5 vCPU × 0.03238 + 1 GB × 0.00356) USD
    assert_eq!(row["cost"], "0.79");
    assert_eq!(row["revenue"], "49");
    assert_eq!(row["margin"], "48.21");
    let table = ok(&run(&["--per-tenant", "--month", &month]));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("acme") && l.contains("0.79") && l.contains("48.21")),
        "{table}"
    );
    let bad = run(&["--per-tenant", "--month", "someday"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("month"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    tokio::task::spawn_blocking(move || drop(cp)).await.unwrap();
}

/// Runs `polybot fleet <args>` against `cp` with the operator token.
fn fleet(cp: &ControlPlane, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_polybot"))
        .arg("fleet")
        .args(args)
        .env("POLYBOT_URL", format!("http://{}", cp.addr))
        .env("POLYBOT_TOKEN", OPERATOR)
        .env("POLYBOT_LOG", "warn")
        .output()
        .unwrap()
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_fleet_rollout_commands_roll_settings_across_local_workers_and_refuse_an_image(
    _pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let dir = tempfile::tempdir().unwrap();
    let url = url_for(&options);
    let path = dir.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let cp = ControlPlane::start(&url, &path);
        let none = fleet(&cp, &["rollout", "status"]);
        assert!(!none.status.success());
        let stderr = String::from_utf8_lossy(&none.stderr);
        assert!(
            stderr.contains("GET /fleet/rollouts/current failed (404): rollout not found"),
            "{stderr}"
        );
        ok(&tenants(&cp, Some(OPERATOR), &["create", "--name", "acme"]));
        ok(&tenants(
            &cp,
            Some(OPERATOR),
            &["create", "--name", "bravo"],
        ));

        // The local launcher has no image to roll out.
        let image = fleet(&cp, &["rollout", "start", "--image", "polybot:v2"]);
        assert!(!image.status.success());
        let stderr = String::from_utf8_lossy(&image.stderr);
        assert!(
            stderr.contains("POST /fleet/rollouts failed (422)"),
            "{stderr}"
        );
        assert!(
            stderr.contains("\n  image: the local launcher runs"),
            "{stderr}"
        );

        let started = ok(&fleet(
            &cp,
            &[
                "rollout",
                "start",
                "--setting",
                "POLYBOT_LOG=debug",
                "--per-minute",
                "6",
            ],
        ));
        assert!(
            started.starts_with("rollout 1: running (6 a minute): POLYBOT_LOG=debug\n"),
            "{started}"
        );
        // The second tenant begins 10 s after the first: rollout 1 is
        // still running.
        let again = fleet(&cp, &["rollout", "start", "--setting", "POLYBOT_LOG=info"]);
        assert!(!again.status.success());
        let stderr = String::from_utf8_lossy(&again.stderr);
        assert!(
            stderr.contains("(409): rollout 1 is running: resume or abort it"),
            "{stderr}"
        );

        // Each tenant's worker is replaced by one with the setting.
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            let status: Value =
                serde_json::from_str(&ok(&fleet(&cp, &["rollout", "status", "--json"]))).unwrap();
            if status["state"] == "done" || Instant::now() > deadline {
                break status;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(status["state"], "done", "{status}");
        assert_eq!(
            status["progress"],
            serde_json::json!({"total": 2, "done": 2, "rolling": 0, "pending": 0})
        );
        let mut names: Vec<&str> = status["recent"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["acme", "bravo"], "{status}");
        let text = ok(&fleet(&cp, &["rollout", "status", "--id", "1"]));
        assert!(
            text.contains("  2 of 2 tenants done, 0 rolling, 0 pending\n"),
            "{text}"
        );
        let late = fleet(&cp, &["rollout", "pause"]);
        assert!(!late.status.success());
        let stderr = String::from_utf8_lossy(&late.stderr);
        assert!(stderr.contains("(409): rollout 1 is done"), "{stderr}");
    })
    .await
    .unwrap();
}
