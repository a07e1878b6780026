//! `polybot tenants …`: the `/tenants` API from the command line.
//!
//! Where it connects: `--url` / `POLYBOT_URL`, else the local default
//! listen address (`POLYBOT_LISTEN`, `127.0.0.1:8080`). With what:
//! `--token` / `POLYBOT_TOKEN`, else the data dir's `operator-token`
//! (`--data-dir` / `POLYBOT_DATA_DIR`, `.polybot`). Human tables by default;
//! `--json` prints the API's JSON. Exchange keys are read from a file or
//! standard input, never from the command line (where `ps` would show them).

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

#[derive(Debug, Args)]
pub struct TenantsArgs {
    /// The control plane's base URL (default: http:// and POLYBOT_LISTEN or 127.0.0.1:8080).
    #[arg(long, env = "POLYBOT_URL", global = true)]
    pub url: Option<String>,
    /// A bearer token (operator pbo_… or tenant pbt_…); default: <data-dir>/operator-token.
    #[arg(long, env = "POLYBOT_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<SecretString>,
    /// The local data dir whose operator token to use when no token is given.
    #[arg(
        long,
        env = "POLYBOT_DATA_DIR",
        default_value = ".polybot",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: TenantsCommand,
}

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Every tenant (a tenant token: itself) with its worker's state.
    List {
        /// Only tenants in this lifecycle state.
        #[arg(long)]
        state: Option<String>,
    },
    /// One tenant: configuration, worker, heartbeat, strategies, last error.
    Show {
        /// The tenant's id or name.
        tenant: String,
    },
    /// Onboard a tenant (validated exactly like POST /tenants).
    Create {
        #[arg(long)]
        name: String,
        /// paper (live is refused until a venue has live execution).
        #[arg(long, default_value = "paper")]
        mode: String,
        /// Strategies as JSON, e.g. '{"complement_arb": {}}'.
        #[arg(long)]
        strategies: Option<String>,
        /// Risk limits as JSON.
        #[arg(long)]
        risk: Option<String>,
        /// A JSON file of exchange keys (venue → fields); `-` reads standard input.
        #[arg(long)]
        exchange_keys_file: Option<PathBuf>,
        /// Makes a retried create return the first result.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Stop a tenant's worker until resumed. An operator's pause is a hold
    /// that the tenant's own tokens cannot lift.
    Pause {
        tenant: String,
        /// Why the operator holds the tenant (shown to it; operators only).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Start a paused tenant's worker again (or retry a failed onboarding).
    Resume { tenant: String },
    /// Offboard a tenant (worker stopped, keys scheduled for deletion).
    /// Asks first; `--yes` skips the question (needed without a terminal).
    Delete {
        tenant: String,
        /// Also erase all of the tenant's data.
        #[arg(long)]
        purge: bool,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Create a bearer token for a tenant (shown once).
    Token {
        tenant: String,
        #[arg(long, default_value = "")]
        label: String,
        /// Days until it expires (default 90, at most 365).
        #[arg(long)]
        expires_in_days: Option<i64>,
    },
    /// A tenant's tokens: id, label, created, expires, last used (never the secret).
    Tokens { tenant: String },
    /// Revoke one of a tenant's tokens (its id from `tokens`). Asks first;
    /// `--yes` skips the question (needed without a terminal).
    RevokeToken {
        tenant: String,
        token_id: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// A tenant's newest trades (fills and settlements).
    Trades {
        tenant: String,
        /// Only this strategy's trades.
        #[arg(long)]
        strategy: Option<String>,
        /// At most this many (1 to 200).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// A tenant's cross-venue pairs (the paired-position ledger): status,
    /// sets matched, locked edge, realised loss, and the legs' fills.
    Pairs {
        tenant: String,
        /// Only pairs in this status (open, locked, completed, unwound,
        /// broken, unfilled).
        #[arg(long)]
        status: Option<String>,
        /// At most this many (1 to 200).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// A tenant's open positions at their marks.
    Positions { tenant: String },
    /// A tenant's PnL: equity, realized, unrealized (locked by arbitrage),
    /// fees, net, today, and per strategy.
    Pnl { tenant: String },
}

/// Asks `question` on the terminal; without one, refuses and says to pass
/// `--yes`.
fn confirm(question: &str) -> anyhow::Result<()> {
    use std::io::{BufRead as _, IsTerminal as _, Write as _};
    if !std::io::stdin().is_terminal() {
        bail!("{question} Not confirmed: no terminal to ask on; pass --yes to confirm");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        bail!("not confirmed; nothing was changed")
    }
}

/// Money to the cent, from the API's decimal string.
fn cents(v: &Value) -> String {
    v.as_str()
        .and_then(|s| s.parse::<rust_decimal::Decimal>().ok())
        .map(|d| {
            format!(
                "{:.2}",
                d.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
            )
        })
        .unwrap_or_else(|| "-".to_owned())
}

/// A price or shares: at most four places.
fn places(v: &Value) -> String {
    v.as_str()
        .and_then(|s| s.parse::<rust_decimal::Decimal>().ok())
        .map(|d| d.round_dp(4).normalize().to_string())
        .unwrap_or_else(|| text(v))
}

pub(crate) struct Api {
    client: reqwest::Client,
    base: String,
    token: SecretString,
}

impl Api {
    fn new(args: &TenantsArgs) -> anyhow::Result<Self> {
        Self::connect(args.url.as_deref(), args.token.as_ref(), &args.data_dir)
    }

    /// A client of the control plane at `url` (default: the local listen
    /// address) with `token` (default: the data dir's operator token).
    pub(crate) fn connect(
        url: Option<&str>,
        token: Option<&SecretString>,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let base = match url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let listen =
                    std::env::var("POLYBOT_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
                format!("http://{}", listen.replace("0.0.0.0", "127.0.0.1"))
            }
        };
        let token = match token {
            Some(t) => t.clone(),
            None => {
                let path = data_dir.join("operator-token");
                let text = std::fs::read_to_string(&path).with_context(|| {
                    format!(
                        "no token: pass --token or POLYBOT_TOKEN, or run where {} exists",
                        path.display()
                    )
                })?;
                SecretString::from(text.trim().to_owned())
            }
        };
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Self {
            client,
            base,
            token,
        })
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, String)],
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(self.token.expose_secret());
        for (k, v) in headers {
            request = request.header(*k, v);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| {
            format!(
                "{method} {}{path}: the control plane did not answer",
                self.base
            )
        })?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status >= 400 {
            let mut message = value
                .get("detail")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("HTTP {status}"));
            if let Some(errors) = value.get("errors").and_then(Value::as_array) {
                for e in errors {
                    message.push_str(&format!(
                        "\n  {}: {}",
                        e["field"].as_str().unwrap_or("?"),
                        e["message"].as_str().unwrap_or("?")
                    ));
                }
            }
            bail!("{method} {path} failed ({status}): {message}");
        }
        Ok((status, value))
    }

    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self.call(reqwest::Method::GET, path, None, &[]).await?.1)
    }

    /// Every page of a paged list.
    async fn all(&self, path: &str, query: &str) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{path}?limit=200{query}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page = self.get(&url).await?;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return Ok(items),
            }
        }
    }

    /// A tenant id from an id or a unique name.
    async fn resolve(&self, tenant: &str) -> anyhow::Result<String> {
        if tenant.parse::<uuid_like::Id>().is_ok() {
            return Ok(tenant.to_owned());
        }
        let named: Vec<Value> = self
            .all("/tenants", "")
            .await?
            .into_iter()
            .filter(|t| t["name"] == tenant)
            .collect();
        // A live tenant's name is unique; offboarded namesakes may remain.
        let live: Vec<&Value> = named
            .iter()
            .filter(|t| t["state"] != "offboarded")
            .collect();
        let chosen: Vec<&Value> = if live.is_empty() {
            named.iter().collect()
        } else {
            live
        };
        let matches: Vec<String> = chosen
            .into_iter()
            .filter_map(|t| t["id"].as_str().map(str::to_owned))
            .collect();
        match matches.as_slice() {
            [one] => Ok(one.clone()),
            [] => bail!("no tenant is named {tenant:?}"),
            _ => bail!("{} tenants are named {tenant:?}: use the id", matches.len()),
        }
    }
}

/// Just enough to tell an id from a name, without another dependency.
mod uuid_like {
    pub struct Id;

    impl std::str::FromStr for Id {
        type Err = ();

        fn from_str(s: &str) -> Result<Self, ()> {
            let groups: Vec<&str> = s.split('-').collect();
            let lengths = [8, 4, 4, 4, 12];
            if groups.len() == 5
                && groups
                    .iter()
                    .zip(lengths)
                    .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
            {
                Ok(Id)
            } else {
                Err(())
            }
        }
    }
}

pub(crate) fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A plain text table: a header row and aligned columns.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(headers.iter().map(|h| (*h).to_owned()).collect());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.clone()));
        out.push('\n');
    }
    out
}

pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn heartbeat(status: &Value) -> String {
    status["last_heartbeat"]["age_seconds"]
        .as_i64()
        .map(|s| format!("{s}s ago"))
        .unwrap_or_else(|| "never".to_owned())
}

fn parse_json(flag: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| format!("--{flag} is not valid JSON"))
}

pub async fn run(args: TenantsArgs) -> anyhow::Result<()> {
    let api = Api::new(&args)?;
    match &args.command {
        TenantsCommand::List { state } => {
            let query = state
                .as_ref()
                .map(|s| format!("&state={s}"))
                .unwrap_or_default();
            let tenants = api.all("/tenants", &query).await?;
            let fleet = api.all("/fleet", "").await?;
            if args.json {
                return print_json(&json!({"items": tenants}));
            }
            let rows: Vec<Vec<String>> = tenants
                .iter()
                .map(|t| {
                    let status = fleet
                        .iter()
                        .find(|s| s["tenant_id"] == t["id"])
                        .cloned()
                        .unwrap_or(Value::Null);
                    vec![
                        text(&t["id"]),
                        text(&t["name"]),
                        text(&t["state"]),
                        text(&t["mode"]),
                        text(&status["worker"]["state"]),
                        heartbeat(&status),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["ID", "NAME", "STATE", "MODE", "WORKER", "HEARTBEAT"],
                    &rows
                )
            );
            Ok(())
        }
        TenantsCommand::Show { tenant } => {
            let id = api.resolve(tenant).await?;
            let view = api.get(&format!("/tenants/{id}")).await?;
            let status = api.get(&format!("/tenants/{id}/status")).await?;
            let billing = api.get(&format!("/tenants/{id}/billing")).await?;
            if args.json {
                return print_json(&json!({"tenant": view, "status": status, "billing": billing}));
            }
            let mut rows = vec![
                vec!["id".into(), text(&view["id"])],
                vec!["name".into(), text(&view["name"])],
                vec!["state".into(), text(&view["state"])],
                vec![
                    "operator hold".into(),
                    match view["held_by_operator"].as_bool() {
                        Some(true) => match view["hold_reason"].as_str() {
                            Some(reason) => format!("yes: {reason}"),
                            None => "yes".into(),
                        },
                        _ => "no".into(),
                    },
                ],
                vec!["mode".into(), text(&view["mode"])],
                vec!["onboarding".into(), text(&view["provisioning"]["step"])],
                vec!["desired".into(), text(&status["desired"])],
                vec!["worker".into(), text(&status["worker"]["state"])],
                vec!["instance".into(), text(&status["worker"]["instance_id"])],
                vec!["restarts".into(), text(&status["worker"]["restarts"])],
                vec!["heartbeat".into(), heartbeat(&status)],
                vec!["last error".into(), text(&status["last_error"])],
                vec![
                    "plan".into(),
                    billing["plan"]["id"]
                        .as_str()
                        .unwrap_or("none (not limited, not billed)")
                        .to_owned(),
                ],
                vec!["payment".into(), text(&billing["payment_state"])],
                vec!["payment hold".into(), text(&billing["payment_hold"])],
                vec![
                    "usage this month".into(),
                    format!(
                        "{} worker-hours, {} orders ({} live), {} API calls",
                        text(&billing["usage"]["worker_hours"]),
                        text(&billing["usage"]["orders"]),
                        text(&billing["usage"]["live_orders"]),
                        text(&billing["usage"]["api_calls"])
                    ),
                ],
            ];
            if let Some(keys) = view["exchange_keys"].as_object() {
                for (venue, fp) in keys {
                    rows.push(vec![format!("keys {venue}"), text(fp)]);
                }
            }
            if let Some(strategies) = status["strategies"].as_object() {
                for (name, health) in strategies {
                    rows.push(vec![
                        format!("strategy {name}"),
                        format!(
                            "{} (breaker {})",
                            text(&health["status"]),
                            text(&health["breaker"])
                        ),
                    ]);
                }
            }
            print!("{}", table(&["FIELD", "VALUE"], &rows));
            Ok(())
        }
        TenantsCommand::Create {
            name,
            mode,
            strategies,
            risk,
            exchange_keys_file,
            idempotency_key,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            body.insert("mode".into(), json!(mode));
            if let Some(s) = strategies {
                body.insert("strategies".into(), parse_json("strategies", s)?);
            }
            if let Some(r) = risk {
                body.insert("risk".into(), parse_json("risk", r)?);
            }
            if let Some(path) = exchange_keys_file {
                let mut keys = String::new();
                if path.as_os_str() == "-" {
                    std::io::stdin().read_to_string(&mut keys)?;
                } else {
                    keys = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                }
                body.insert(
                    "exchange_keys".into(),
                    serde_json::from_str(&keys)
                        .context("the exchange keys file is not valid JSON")?,
                );
            }
            let headers: Vec<(&str, String)> = idempotency_key
                .iter()
                .map(|k| ("idempotency-key", k.clone()))
                .collect();
            let (_, view) = api
                .call(
                    reqwest::Method::POST,
                    "/tenants",
                    Some(Value::Object(body)),
                    &headers,
                )
                .await?;
            if args.json {
                return print_json(&view);
            }
            println!(
                "created tenant {} ({}); onboarding runs in the background: polybot tenants show {}",
                text(&view["id"]),
                text(&view["name"]),
                text(&view["id"])
            );
            Ok(())
        }
        TenantsCommand::Pause { tenant, .. } | TenantsCommand::Resume { tenant } => {
            let (action, body) = match &args.command {
                TenantsCommand::Pause {
                    reason: Some(reason),
                    ..
                } => ("pause", Some(json!({"reason": reason}))),
                TenantsCommand::Pause { .. } => ("pause", None),
                _ => ("resume", None),
            };
            let id = api.resolve(tenant).await?;
            let (_, view) = api
                .call(
                    reqwest::Method::POST,
                    &format!("/tenants/{id}/{action}"),
                    body,
                    &[],
                )
                .await?;
            if args.json {
                return print_json(&view);
            }
            println!("tenant {id} is {}", text(&view["state"]));
            Ok(())
        }
        TenantsCommand::Delete { tenant, purge, yes } => {
            let id = api.resolve(tenant).await?;
            if !yes {
                confirm(&if *purge {
                    format!("Offboard tenant {tenant} ({id}) and erase all of its data?")
                } else {
                    format!(
                        "Offboard tenant {tenant} ({id})? Its worker stops and its keys are scheduled for deletion."
                    )
                })?;
            }
            let path = if *purge {
                format!("/tenants/{id}?purge=true")
            } else {
                format!("/tenants/{id}")
            };
            let (status, view) = api.call(reqwest::Method::DELETE, &path, None, &[]).await?;
            if args.json {
                return print_json(&view);
            }
            if status == 204 {
                println!("tenant {id} offboarded and its data erased");
            } else {
                println!("tenant {id} is {}", text(&view["state"]));
            }
            Ok(())
        }
        TenantsCommand::Token {
            tenant,
            label,
            expires_in_days,
        } => {
            let id = api.resolve(tenant).await?;
            let mut body = json!({"label": label});
            if let Some(days) = expires_in_days {
                body["expires_in_days"] = json!(days);
            }
            let (_, created) = api
                .call(
                    reqwest::Method::POST,
                    &format!("/tenants/{id}/tokens"),
                    Some(body),
                    &[],
                )
                .await?;
            if args.json {
                return print_json(&created);
            }
            println!("{}", text(&created["token"]));
            eprintln!(
                "(shown once; only its hash is stored; expires {})",
                text(&created["expires_at"])
            );
            Ok(())
        }
        TenantsCommand::Tokens { tenant } => {
            let id = api.resolve(tenant).await?;
            let list = api.get(&format!("/tenants/{id}/tokens")).await?;
            if args.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list["items"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    let expired = if t["expired"] == json!(true) {
                        " (expired)"
                    } else {
                        ""
                    };
                    vec![
                        text(&t["id"]),
                        text(&t["label"]),
                        text(&t["created_at"]),
                        format!("{}{expired}", text(&t["expires_at"])),
                        text(&t["last_used_at"]),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["ID", "LABEL", "CREATED", "EXPIRES", "LAST USED"], &rows)
            );
            Ok(())
        }
        TenantsCommand::RevokeToken {
            tenant,
            token_id,
            yes,
        } => {
            let id = api.resolve(tenant).await?;
            if !yes {
                confirm(&format!(
                    "Revoke token {token_id} of tenant {tenant}? Whoever uses it is signed out at once."
                ))?;
            }
            api.call(
                reqwest::Method::DELETE,
                &format!("/tenants/{id}/tokens/{token_id}"),
                None,
                &[],
            )
            .await?;
            println!("token {token_id} of tenant {id} is revoked");
            Ok(())
        }
        TenantsCommand::Trades {
            tenant,
            strategy,
            limit,
        } => {
            let id = api.resolve(tenant).await?;
            let mut path = format!("/tenants/{id}/trades?limit={limit}");
            if let Some(s) = strategy {
                path.push_str(&format!("&strategy={s}"));
            }
            let page = api.get(&path).await?;
            if args.json {
                return print_json(&page);
            }
            let rows: Vec<Vec<String>> = page["items"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    vec![
                        text(&t["executed_at"]).chars().take(19).collect(),
                        text(&t["strategy"]),
                        text(&t["market"]).chars().take(34).collect(),
                        text(&t["side"]),
                        text(&t["outcome"]),
                        places(&t["price"]),
                        places(&t["size"]),
                        cents(&t["fee"]),
                        cents(&t["realized_pnl"]),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "EXECUTED", "STRATEGY", "MARKET", "SIDE", "OUTCOME", "PRICE", "SHARES",
                        "FEE", "REALIZED"
                    ],
                    &rows
                )
            );
            Ok(())
        }
        TenantsCommand::Pairs {
            tenant,
            status,
            limit,
        } => {
            let id = api.resolve(tenant).await?;
            let mut path = format!("/tenants/{id}/pairs?limit={limit}");
            if let Some(s) = status {
                path.push_str(&format!("&status={s}"));
            }
            let page = api.get(&path).await?;
            if args.json {
                return print_json(&page);
            }
            let rows: Vec<Vec<String>> = page["items"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    let legs: Vec<String> = p["legs"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                        .iter()
                        .map(|l| {
                            format!(
                                "{} {} {} {}@{}",
                                text(&l["step"]),
                                text(&l["venue"]),
                                text(&l["side"]),
                                text(&l["filled"]),
                                text(&l["price"]),
                            )
                        })
                        .collect();
                    vec![
                        text(&p["opened_at"]).chars().take(19).collect(),
                        text(&p["status"]),
                        places(&p["matched"]),
                        cents(&p["locked_edge"]),
                        cents(&p["realised_loss"]),
                        legs.join(", "),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["OPENED", "STATUS", "SETS", "EDGE", "LOSS", "ORDERS"],
                    &rows
                )
            );
            Ok(())
        }
        TenantsCommand::Positions { tenant } => {
            let id = api.resolve(tenant).await?;
            let pnl = api.get(&format!("/tenants/{id}/pnl")).await?;
            if args.json {
                return print_json(&pnl["positions"]);
            }
            let rows: Vec<Vec<String>> = pnl["positions"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    vec![
                        text(&p["strategy"]),
                        text(&p["market"]).chars().take(34).collect(),
                        text(&p["outcome"]),
                        places(&p["quantity"]),
                        places(&p["avg_price"]),
                        places(&p["mark"]),
                        places(&p["locked"]),
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("no open positions");
                return Ok(());
            }
            print!(
                "{}",
                table(
                    &[
                        "STRATEGY", "MARKET", "OUTCOME", "SHARES", "AVG", "MARK", "LOCKED"
                    ],
                    &rows
                )
            );
            Ok(())
        }
        TenantsCommand::Pnl { tenant } => {
            let id = api.resolve(tenant).await?;
            let pnl = api.get(&format!("/tenants/{id}/pnl")).await?;
            if args.json {
                return print_json(&pnl);
            }
            let rows = vec![
                vec!["equity".into(), cents(&pnl["equity"])],
                vec!["starting equity".into(), cents(&pnl["starting_equity"])],
                vec!["net".into(), cents(&pnl["net"])],
                vec!["realized".into(), cents(&pnl["realized"])],
                vec!["unrealized".into(), cents(&pnl["unrealized"])],
                vec!["  locked by arbitrage".into(), cents(&pnl["locked"])],
                vec!["fees".into(), cents(&pnl["fees"])],
                vec!["today".into(), cents(&pnl["daily"])],
                vec!["trades".into(), text(&pnl["trades"])],
                vec!["as of (data time)".into(), text(&pnl["data_time"])],
            ];
            print!("{}", table(&["FIELD", "VALUE"], &rows));
            let strategies: Vec<Vec<String>> = pnl["by_strategy"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|s| {
                    vec![
                        text(&s["strategy"]),
                        text(&s["trades"]),
                        cents(&s["realized"]),
                        cents(&s["unrealized"]),
                        cents(&s["locked"]),
                        cents(&s["fees"]),
                    ]
                })
                .collect();
            if !strategies.is_empty() {
                println!();
                print!(
                    "{}",
                    table(
                        &[
                            "STRATEGY",
                            "TRADES",
                            "REALIZED",
                            "UNREALIZED",
                            "LOCKED",
                            "FEES"
                        ],
                        &strategies
                    )
                );
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let out = table(
            &["ID", "NAME"],
            &[
                vec!["1".into(), "alpha".into()],
                vec!["22".into(), "b".into()],
            ],
        );
        assert_eq!(out, "ID  NAME\n1   alpha\n22  b\n");
    }

    #[test]
    fn ids_are_told_from_names() {
        assert!(
            "0f8b6e1c-3a1d-4c7e-9b2a-1d2e3f4a5b6c"
                .parse::<uuid_like::Id>()
                .is_ok()
        );
        assert!("alpha".parse::<uuid_like::Id>().is_err());
    }
}
