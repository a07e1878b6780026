//! The dashboard in headless Chromium (Debian's `chromium`, which
//! scripts/test installs), driven over the DevTools protocol with a small
//! client of our own: sign in, a form error, onboard a tenant through the
//! form, watch it reach `running` on the fleet page, open its page, onboard
//! one with two strategies (no JSON typed) and be refused its name again; and
//! `polybot up --demo`'s trader view: a chart with points, positions, the
//! equity `/pnl` reports, a duplicate name refused, the fleet on a phone.
//! Screenshots land in `<target>/browser-artifacts/`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio_tungstenite::tungstenite::Message;

const OPERATOR: &str = "pbo_browser-operator-token-0123456789abcdef";

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        if signal::kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM).is_ok() {
            let deadline = Instant::now() + Duration::from_secs(40);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if matches!(self.0.try_wait(), Ok(None))
                && let Err(err) = self.0.kill()
            {
                eprintln!("could not kill {}: {err}", self.0.id());
            }
        }
    }
}

fn start_control_plane(database_url: &str, data_dir: &Path) -> (Process, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_polybot"))
        .args(["control-plane", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("DATABASE_URL", database_url)
        .env("POLYBOT_OPERATOR_TOKEN", OPERATOR)
        .env("POLYBOT_MASTER_KEY", "7b".repeat(32))
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
    (Process(child), addr)
}

fn url_for(options: &PgConnectOptions) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL (scripts/test sets it)");
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{}", options.get_database().unwrap())
}

fn chromium_binary() -> PathBuf {
    let path = std::env::var("POLYBOT_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let path = PathBuf::from(path);
    assert!(
        path.exists(),
        "{} is missing: scripts/test installs Debian's chromium (apt-get install chromium)",
        path.display()
    );
    path
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("browser-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One page of a headless Chromium, over the DevTools protocol.
struct Browser {
    _process: Process,
    socket: Socket,
    session: String,
    next_id: u64,
}

impl Browser {
    async fn launch(profile: &Path) -> Self {
        let child = Command::new(chromium_binary())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-port=0",
                "--window-size=1400,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let process = Process(child);
        // Chromium writes its port and browser target path here once ready.
        let port_file = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(60);
        let (port, path) = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break (port.to_owned(), path.to_owned());
                }
            }
            assert!(Instant::now() < deadline, "Chromium did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (socket, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}{path}"))
            .await
            .unwrap();
        let mut browser = Self {
            _process: process,
            socket,
            session: String::new(),
            next_id: 0,
        };
        let target = browser
            .send(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = browser
            .send(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.command("Page.enable", json!({})).await;
        browser
            .command(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
            )
            .await;
        browser
    }

    /// Sends a command and waits for its result (events in between are skipped).
    async fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        match self.send_raw(session, method, params).await {
            Ok(result) => result,
            Err(reply) => panic!("{method}: {reply}"),
        }
    }

    /// Sends a command and waits for its answer: its result, or the error
    /// reply DevTools gave.
    async fn send_raw(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let next = tokio::time::timeout(
                deadline.saturating_duration_since(Instant::now()),
                self.socket.next(),
            )
            .await
            .unwrap_or_else(|_| panic!("{method}: no answer"))
            .expect("the DevTools socket closed")
            .unwrap();
            let Message::Text(text) = next else { continue };
            let reply: Value = serde_json::from_str(&text).unwrap();
            if reply["id"] == id {
                if reply.get("error").is_some() {
                    return Err(reply);
                }
                return Ok(reply["result"].clone());
            }
        }
    }

    async fn command(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(Some(&session), method, params).await
    }

    async fn goto(&mut self, url: &str) {
        self.command("Page.navigate", json!({"url": url})).await;
    }

    /// Evaluates `expression` in the page; None while it navigates or throws.
    async fn eval(&mut self, expression: &str) -> Option<Value> {
        let session = self.session.clone();
        let result = match self
            .send_raw(
                Some(&session),
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await
        {
            Ok(result) => result,
            // The page navigated away while the expression ran (a form's
            // submit, a reload): the next evaluation sees the new page.
            Err(reply)
                if reply["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("navigated or closed")) =>
            {
                return None;
            }
            Err(reply) => panic!("Runtime.evaluate: {reply}"),
        };
        if result.get("exceptionDetails").is_some() {
            return None;
        }
        Some(result["result"]["value"].clone())
    }

    /// Waits until `expression` is true in a loaded page.
    async fn wait_for(&mut self, what: &str, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let check = format!("document.readyState === 'complete' && !!({expression})");
        while self.eval(&check).await != Some(json!(true)) {
            assert!(
                Instant::now() < deadline,
                "never {what}; the page: {:?}",
                self.eval("document.body && document.body.innerText").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self
            .command(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let path = artifacts().join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

fn js(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn an_operator_signs_in_onboards_a_tenant_and_watches_it_run(
    _pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let dir = tempfile::tempdir().unwrap();
    let url = url_for(&options);
    let data_dir = dir.path().join("data");
    let (_cp, addr) = tokio::task::spawn_blocking(move || start_control_plane(&url, &data_dir))
        .await
        .unwrap();
    let base = format!("http://{addr}");
    let mut browser = Browser::launch(&dir.path().join("chromium-profile")).await;

    // Sign in.
    browser.goto(&format!("{base}/")).await;
    browser
        .wait_for("the sign-in page", "document.querySelector('#token')")
        .await;
    browser
        .eval(&format!(
            "document.querySelector('#token').value = {}; document.querySelector('#sign-in').click(); true",
            js(OPERATOR)
        ))
        .await;
    browser
        .wait_for("the fleet page", "document.querySelector('#fleet')")
        .await;
    // The session cookie is HttpOnly: scripts cannot read it.
    assert_eq!(browser.eval("document.cookie").await, Some(json!("")));

    // A form error shows the field's message, as the API words it.
    browser.goto(&format!("{base}/ui/tenants/new")).await;
    browser
        .wait_for("the onboarding form", "document.querySelector('#onboard')")
        .await;
    browser
        .eval(
            "document.querySelector('#name').value = ''; \
             document.getElementById('strategies-complement_arb-min_edge').value = 'lots'; \
             document.querySelector('#create').click(); true",
        )
        .await;
    browser
        .wait_for(
            "the form's errors",
            "document.querySelector('#form-errors')",
        )
        .await;
    let errors = browser
        .eval("Array.from(document.querySelectorAll('.field-error')).map(e => e.innerText).join('\\n')")
        .await
        .unwrap();
    let errors = errors.as_str().unwrap();
    assert!(
        errors.contains("name: must have 1 to 100 characters"),
        "{errors}"
    );
    assert!(
        errors.contains("strategies.complement_arb.min_edge: \"lots\" is not a decimal number"),
        "{errors}"
    );
    let shot = browser.screenshot("onboarding-form-error.png").await;
    eprintln!("screenshot: {}", shot.display());

    // Onboard through the form.
    browser
        .eval(
            "document.querySelector('#name').value = 'browser-co'; \
             document.getElementById('strategies-complement_arb-min_edge').value = '0.01'; \
             document.querySelector('#create').click(); true",
        )
        .await;
    browser
        .wait_for(
            "the new tenant's page",
            "document.querySelector('#tenant-name')",
        )
        .await;
    let location = browser.eval("location.pathname").await.unwrap();
    let id = location
        .as_str()
        .unwrap()
        .trim_start_matches("/ui/tenants/")
        .to_owned();
    assert_eq!(id.len(), 36, "{location}");

    // The fleet page (which refreshes itself) shows it running.
    browser.goto(&format!("{base}/ui/fleet")).await;
    let row = format!("document.querySelector('tr[data-tenant=\"{id}\"] td.worker')");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let state = browser
            .eval(&format!(
                "document.readyState === 'complete' && {row} && {row}.innerText"
            ))
            .await;
        if state
            .as_ref()
            .and_then(Value::as_str)
            .is_some_and(|s| s.starts_with("running"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never running on the fleet page: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let shot = browser.screenshot("fleet.png").await;
    eprintln!("screenshot: {}", shot.display());

    // Open its page from the fleet.
    browser
        .eval(&format!(
            "document.querySelector('tr[data-tenant=\"{id}\"] a').click(); true"
        ))
        .await;
    browser
        .wait_for(
            "the tenant page",
            "document.querySelector('#tenant-name') && document.querySelector('#worker-state')",
        )
        .await;
    let name = browser
        .eval("document.querySelector('#tenant-name').innerText")
        .await;
    assert_eq!(name, Some(json!("browser-co")));
    let worker = browser
        .eval("document.querySelector('#worker-state').innerText")
        .await
        .unwrap();
    assert!(worker.as_str().unwrap().contains("running"), "{worker}");
    let timeline = browser
        .eval("document.querySelector('#timeline').innerText")
        .await
        .unwrap();
    assert!(timeline.as_str().unwrap().contains("started"), "{timeline}");
    assert!(
        browser
            .eval("!!document.querySelector('#action-pause') && !!document.querySelector('input[name=csrf]')")
            .await
            == Some(json!(true))
    );
    let shot = browser.screenshot("tenant.png").await;
    eprintln!("screenshot: {}", shot.display());

    // Two strategies through the form, without typing JSON: tick, fill in,
    // untick a venue, add a curated pair in its row.
    browser.goto(&format!("{base}/ui/tenants/new")).await;
    browser
        .wait_for("the onboarding form", "document.querySelector('#onboard')")
        .await;
    let shot = browser.screenshot("onboarding-form.png").await;
    eprintln!("screenshot: {}", shot.display());
    let filled = browser
        .eval(
            "const set = (id, v) => { document.getElementById(id).value = v; }; \
             const tick = (sel, on) => { document.querySelector(sel).checked = on; }; \
             set('name', 'two-strategies-co'); \
             set('strategies-complement_arb-min_edge', '0.015'); \
             set('strategies-complement_arb-max_size', '60'); \
             tick('input[name=\"strategies.complement_arb.venues\"][value=kalshi]', false); \
             tick('#strategies-cross_venue_arb-enabled', true); \
             set('strategies-cross_venue_arb-min_edge', '0.035'); \
             set('strategies-cross_venue_arb-scan_interval_secs', '9'); \
             set('strategies-cross_venue_arb-assets', 'BTC, SOL'); \
             set('strategies-cross_venue_arb-pairs-0--polymarket', 'pm-fed-cut'); \
             set('strategies-cross_venue_arb-pairs-0--kalshi', 'KXFED-25DEC'); \
             tick('#strategies-cross_venue_arb-pairs-0--inverted', true); \
             set('risk-max_daily_loss', '75'); \
             Array.from(document.querySelectorAll('textarea')).filter(t => !t.closest('#exchange-keys')).length",
        )
        .await;
    assert_eq!(filled, Some(json!(0)), "no text area but the keys'");
    browser
        .eval("document.querySelector('#create').click(); true")
        .await;
    browser
        .wait_for(
            "the second tenant's page",
            "document.querySelector('#tenant-name') && document.querySelector('#tenant-name').innerText === 'two-strategies-co'",
        )
        .await;
    let location = browser.eval("location.pathname").await.unwrap();
    let second = location
        .as_str()
        .unwrap()
        .trim_start_matches("/ui/tenants/")
        .to_owned();
    let tenant: Value = serde_json::from_str(
        &reqwest::Client::new()
            .get(format!("{base}/tenants/{second}"))
            .bearer_auth(OPERATOR)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    let strategies = &tenant["strategies"];
    assert_eq!(
        strategies.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["complement_arb", "cross_venue_arb"],
        "{tenant}"
    );
    let complement = &strategies["complement_arb"];
    assert_eq!(complement["min_edge"], "0.015");
    assert_eq!(complement["max_size"], "60");
    assert_eq!(complement["venues"], json!(["polymarket"]));
    assert_eq!(complement["scan_interval_secs"], 5, "the default");
    let cross = &strategies["cross_venue_arb"];
    assert_eq!(cross["enabled"], true);
    assert_eq!(cross["min_edge"], "0.035");
    assert_eq!(cross["scan_interval_secs"], 9);
    assert_eq!(cross["assets"], json!(["BTC", "SOL"]));
    assert_eq!(
        cross["pairs"],
        json!([{"polymarket": "pm-fed-cut", "kalshi": "KXFED-25DEC", "inverted": true}])
    );
    assert_eq!(tenant["risk"]["max_daily_loss"], "75", "{tenant}");

    // Its settings page shows the same values in the same form, to edit.
    browser
        .eval("document.querySelector('#settings-link').click(); true")
        .await;
    browser
        .wait_for(
            "the settings page",
            "document.querySelector('#edit-config')",
        )
        .await;
    let shown = browser
        .eval(
            "[document.getElementById('strategies-cross_venue_arb-enabled').checked, \
              document.getElementById('strategies-cross_venue_arb-pairs-0--polymarket').value, \
              document.getElementById('strategies-complement_arb-min_edge').value, \
              document.getElementById('risk-max_daily_loss').value]",
        )
        .await;
    assert_eq!(shown, Some(json!([true, "pm-fed-cut", "0.015", "75"])));
    let shot = browser.screenshot("settings.png").await;
    eprintln!("screenshot: {}", shot.display());

    // The same name again is refused beside the name field; nothing is created.
    browser.goto(&format!("{base}/ui/tenants/new")).await;
    browser
        .wait_for("the onboarding form", "document.querySelector('#onboard')")
        .await;
    browser
        .eval("document.querySelector('#name').value = 'two-strategies-co'; document.querySelector('#create').click(); true")
        .await;
    browser
        .wait_for(
            "the name's error",
            "document.querySelector('.field-error[data-field=name]')",
        )
        .await;
    let error = browser
        .eval("document.querySelector('.field-error[data-field=name]').innerText")
        .await
        .unwrap();
    assert!(
        error
            .as_str()
            .unwrap()
            .contains("a tenant named \"two-strategies-co\" already exists"),
        "{error}"
    );
}

/// Signs in with `token` at `base`, landing on the fleet page.
async fn sign_in(browser: &mut Browser, base: &str, token: &str) {
    browser.goto(&format!("{base}/")).await;
    browser
        .wait_for("the sign-in page", "document.querySelector('#token')")
        .await;
    browser
        .eval(&format!(
            "document.querySelector('#token').value = {}; document.querySelector('#sign-in').click(); true",
            js(token)
        ))
        .await;
    browser
        .wait_for("the fleet page", "document.querySelector('#fleet')")
        .await;
}

/// Money as the dashboard shows it: cents.
fn cents(text: &str) -> String {
    let value: rust_decimal::Decimal = text.parse().unwrap();
    format!(
        "{:.2}",
        value.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
    )
}

#[tokio::test]
async fn the_demo_tenants_trader_view_charts_its_pnl_shows_positions_and_the_equity_of_pnl() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    // The 15-minute recording at 60× plays in 15 s, so that its markets
    // resolve within the minute the page is given.
    let up = tokio::task::spawn_blocking(move || crate::demo::start_at(&data_dir, Some("60")))
        .await
        .unwrap();
    let base = format!("http://{}", up.addr);
    let started = Instant::now();
    let mut browser = Browser::launch(&dir.path().join("chromium-profile")).await;
    sign_in(&mut browser, &base, &up.token).await;
    let tenant = loop {
        if let Some(t) = up.demo_tenants().into_iter().next() {
            break t;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no demo tenant"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Within a minute: a chart with points and positions, open or settled,
    // without reloading the page (its live part updates itself).
    browser.goto(&format!("{base}/ui/tenants/{tenant}")).await;
    let ready = "document.querySelector('#pnl-chart polyline') \
        && document.querySelector('#pnl-chart polyline').getAttribute('points').split(' ').length >= 5 \
        && (document.querySelector('#positions') || document.querySelector('#positions-none')) \
        && document.querySelectorAll('#trades tr').length > 3";
    loop {
        if browser.eval(&format!("!!({ready})")).await == Some(json!(true)) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no chart with points and positions within a minute: {:?}",
            browser.eval("document.querySelector('#trader') && document.querySelector('#trader').innerText").await
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        browser
            .eval("document.querySelector('#tenant-name').innerText")
            .await,
        Some(json!("demo"))
    );
    // The equity shown is /pnl's, to the cent (once the recording has
    // ended the figures stop moving; until then a heartbeat may land
    // between the two reads, so read again).
    let deadline = Instant::now() + Duration::from_secs(60);
    let (shown, reported) = loop {
        let shown = browser
            .eval("document.querySelector('#equity').innerText")
            .await
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let (status, pnl) = up.get(&format!("/tenants/{tenant}/pnl"));
        assert_eq!(status, 200, "{pnl}");
        let reported = pnl["equity"].as_str().map(cents).unwrap_or_default();
        if shown == reported || Instant::now() > deadline {
            break (shown, reported);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(shown, reported);
    let (_, pnl) = up.get(&format!("/tenants/{tenant}/pnl"));
    // The books reconcile: equity − start = realized + unrealized − fees.
    let d = |k: &str| -> rust_decimal::Decimal { pnl[k].as_str().unwrap().parse().unwrap() };
    assert_eq!(
        d("equity") - d("starting_equity"),
        d("realized") + d("unrealized") - d("fees"),
        "{pnl}"
    );
    assert_eq!(pnl["realized"], pnl["trades_realized"], "{pnl}");
    // Numbers at the venues' precision: no figure or table number with more
    // than four decimals (prices to a tenth of a tick, cents, shares).
    let numbers = browser
        .eval("Array.from(document.querySelectorAll('td.num, .card strong')).map(e => e.innerText).join(' ')")
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    let long: Vec<&str> = numbers
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|n| n.split_once('.').is_some_and(|(_, f)| f.len() > 4))
        .collect();
    assert_eq!(
        long,
        Vec::<&str>::new(),
        "numbers with more than four decimals"
    );
    assert!(numbers.len() > 100, "the tables have numbers: {numbers}");
    let shot = browser.screenshot("demo-tenant.png").await;
    eprintln!("screenshot: {}", shot.display());

    // The fleet, and the onboarding form refusing a name that is taken.
    browser.goto(&format!("{base}/ui/fleet")).await;
    browser
        .wait_for("the fleet page", "document.querySelector('#fleet')")
        .await;
    let shot = browser.screenshot("demo-fleet.png").await;
    eprintln!("screenshot: {}", shot.display());
    browser.goto(&format!("{base}/ui/tenants/new")).await;
    browser
        .wait_for("the onboarding form", "document.querySelector('#onboard')")
        .await;
    let shot = browser.screenshot("onboarding.png").await;
    eprintln!("screenshot: {}", shot.display());
    browser
        .eval("document.querySelector('#name').value = 'demo'; document.querySelector('#create').click(); true")
        .await;
    browser
        .wait_for(
            "the name's error",
            "document.querySelector('.field-error[data-field=name]')",
        )
        .await;
    let error = browser
        .eval("document.querySelector('.field-error[data-field=name]').innerText")
        .await
        .unwrap();
    assert!(
        error
            .as_str()
            .unwrap()
            .contains("a tenant named \"demo\" already exists"),
        "{error}"
    );
    assert_eq!(up.demo_tenants().len(), 1);

    // On a 390 px phone the fleet fits the screen's width.
    browser
        .command(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true}),
        )
        .await;
    browser.goto(&format!("{base}/ui/fleet")).await;
    browser
        .wait_for("the fleet page", "document.querySelector('#fleet')")
        .await;
    let width = browser
        .eval("document.documentElement.scrollWidth")
        .await
        .unwrap();
    assert!(
        width.as_i64().unwrap() <= 390,
        "the fleet is {width} px wide"
    );
    let shot = browser.screenshot("fleet-phone.png").await;
    eprintln!("screenshot: {}", shot.display());
    up.stop();
}
