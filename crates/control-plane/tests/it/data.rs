//! `GET /tenants/{id}/opportunities`, `/trades`, `/balances` and `/pnl` on the
//! real router and a fresh database: newest first, keyset pages, money as
//! strings, and another tenant's token answered 404.

use crate::common;

use std::collections::HashSet;

use axum::http::{Method, StatusCode};
use common::{Harness, OPERATOR};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

/// Rows as a worker writes them, stored as the superuser (what is really there).
async fn seed(h: &Harness, tenant: &str) {
    let tenant: Uuid = tenant.parse().unwrap();
    for i in 0..5i64 {
        sqlx::query(
            "INSERT INTO opportunities (id, tenant_id, strategy, venue, market, description, edge, \
               expected_profit, size, details, detected_at, executed_at, epoch) \
             VALUES ($1, $2, $3, 'polymarket', $4, $5, $6::numeric, $7::numeric, 100, '{\"legs\": []}', \
               timestamptz '2026-04-29 13:00:00+00' + make_interval(secs => $8::float8), \
               CASE WHEN $8 % 2 = 0 THEN timestamptz '2026-04-29 13:00:00+00' + make_interval(secs => $8::float8) END, 1)",
        )
        .bind(Uuid::new_v4())
        .bind(tenant)
        .bind(if i % 2 == 0 { "complement_arb" } else { "news_arb" })
        .bind(format!("market-{i}"))
        .bind(format!("opportunity {i}"))
        .bind(format!("0.01{i}0"))
        .bind(format!("1.{i}"))
        .bind(i)
        .execute(&h.pool)
        .await
        .unwrap();
    }
    for (i, (side, price, fee, pnl)) in [
        ("buy", "0.40", "1.68", "0"),
        ("buy", "0.55", "1.7325", "0"),
        ("settle", "1", "0", "5"),
    ]
    .into_iter()
    .enumerate()
    {
        sqlx::query(
            "INSERT INTO trades (id, tenant_id, strategy, venue, market, side, outcome, price, size, fee, \
               realized_pnl, mode, executed_at, epoch) \
             VALUES ($1, $2, 'complement_arb', 'polymarket', 'pm-eth-5k', $3, 'Yes', $4::numeric, 100, \
               $5::numeric, $6::numeric, 'paper', timestamptz '2026-04-29 13:00:00+00' + make_interval(secs => $7::float8), 1)",
        )
        .bind(Uuid::new_v4())
        .bind(tenant)
        .bind(side)
        .bind(price)
        .bind(fee)
        .bind(pnl)
        .bind(i as i64)
        .execute(&h.pool)
        .await
        .unwrap();
    }
    for (venue, asset, amount) in [
        ("polymarket", "USDC", "1059.454"),
        ("kalshi", "USD", "958.32"),
    ] {
        sqlx::query(
            "INSERT INTO balances (tenant_id, venue, asset, amount, epoch) VALUES ($1, $2, $3, $4::numeric, 1)",
        )
        .bind(tenant)
        .bind(venue)
        .bind(asset)
        .bind(amount)
        .execute(&h.pool)
        .await
        .unwrap();
    }
    for (i, (status, matched, edge, loss)) in [
        ("locked", "100", "6.57", "0"),
        ("unwound", "0", "0", "5.3292"),
    ]
    .into_iter()
    .enumerate()
    {
        sqlx::query(
            "INSERT INTO paired_positions (id, tenant_id, epoch, strategy, opportunity, status, matched, \
               locked_edge, realised_loss, legs, resolution, opened_at) \
             VALUES ($1, $2, 1, 'cross_venue_arb', $3, $4, $5::numeric, $6::numeric, $7::numeric, $8, $9, \
               timestamptz '2026-04-29 13:00:00+00' + make_interval(secs => $3::float8))",
        )
        .bind(Uuid::new_v4())
        .bind(tenant)
        .bind(i as i64)
        .bind(status)
        .bind(matched)
        .bind(edge)
        .bind(loss)
        .bind(json!([
            {"leg": 0, "step": "entry", "venue": "polymarket", "side": "buy", "price": "0.4", "filled": "100"},
            {"leg": 1, "step": "entry", "venue": "kalshi", "side": "buy", "price": "0.5", "filled": matched},
        ]))
        .bind(format!("{matched} complete sets"))
        .execute(&h.pool)
        .await
        .unwrap();
    }
    sqlx::query("INSERT INTO worker_heartbeats (tenant_id, epoch, health) VALUES ($1, 1, $2)")
        .bind(tenant)
        .bind(
            // After the two buys, before the settlement (13:00:02).
            json!({"phase": "running", "engine": {"clock": 1_777_467_601_000_i64, "events": 4,
                "opportunities": 1, "orders": 2, "fills": 2, "cancels": 0, "rejections": 0, "data_errors": 0},
            "pnl": {"realized": "0", "unrealized": "5", "locked": "5",
            "daily": "1.5875", "fees": "3.4125", "equity": "2001.5875", "starting_equity": "2000",
            "exposure": "95",
            "by_strategy": {"complement_arb": {"realized": "0", "unrealized": "5", "locked": "5", "fees": "3.4125"}},
            "positions": [
                {"strategy": "complement_arb", "venue": "polymarket", "market": "pm-eth-5k", "outcome": "Yes",
                 "quantity": "100", "avg_price": "0.4", "mark": "0.38", "locked": "100"},
                {"strategy": "complement_arb", "venue": "polymarket", "market": "pm-eth-5k", "outcome": "No",
                 "quantity": "100", "avg_price": "0.55", "mark": "0.5", "locked": "100"}
            ]}}),
        )
        .execute(&h.pool)
        .await
        .unwrap();
}

async fn two_tenants(h: &Harness) -> (String, String) {
    let a = h.onboard(json!({"name": "a"})).await;
    let b = h.onboard(json!({"name": "b"})).await;
    seed(h, &a).await;
    (a, b)
}

async fn token_for(h: &Harness, tenant: &str) -> String {
    let reply = h
        .call(
            Method::POST,
            &format!("/tenants/{tenant}/tokens"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.body["token"].as_str().unwrap().to_owned()
}

fn descriptions(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["description"].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn opportunities_come_newest_first_in_keyset_pages(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let (a, _) = two_tenants(&h).await;
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut uri = format!("/tenants/{a}/opportunities?limit=2");
    loop {
        let reply = h.call(Method::GET, &uri, Some(OPERATOR), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        pages += 1;
        assert!(reply.body["items"].as_array().unwrap().len() <= 2);
        seen.extend(descriptions(&reply.body));
        match reply.body["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/tenants/{a}/opportunities?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen,
        [
            "opportunity 4",
            "opportunity 3",
            "opportunity 2",
            "opportunity 1",
            "opportunity 0"
        ]
    );

    let first = h
        .call(
            Method::GET,
            &format!("/tenants/{a}/opportunities?limit=1"),
            Some(OPERATOR),
            None,
        )
        .await;
    let item = &first.body["items"][0];
    assert_eq!(item["strategy"], "complement_arb");
    assert_eq!(item["market"], "market-4");
    assert_eq!(item["edge"], "0.014");
    assert_eq!(item["expected_profit"], "1.4");
    assert_eq!(item["size"], "100");
    assert_eq!(item["detected_at"], "2026-04-29T13:00:04Z");
    assert_eq!(item["executed_at"], "2026-04-29T13:00:04Z");
    assert_eq!(item["epoch"], 1);
    assert_eq!(item["details"], json!({"legs": []}));

    let news = h
        .call(
            Method::GET,
            &format!("/tenants/{a}/opportunities?strategy=news_arb"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(descriptions(&news.body), ["opportunity 3", "opportunity 1"]);
    assert_eq!(news.body["items"][0]["executed_at"], Value::Null);
    assert_eq!(news.body["next_cursor"], Value::Null);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn another_tenants_token_gets_404_and_its_own_data_only(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let (a, b) = two_tenants(&h).await;
    let a_token = token_for(&h, &a).await;
    let b_token = token_for(&h, &b).await;
    for path in ["opportunities", "trades", "balances", "pnl", "pairs"] {
        let other = h
            .call(
                Method::GET,
                &format!("/tenants/{a}/{path}"),
                Some(&b_token),
                None,
            )
            .await;
        assert_eq!(
            other.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            other.text
        );
        assert_eq!(other.body["detail"], "tenant not found");
        let own = h
            .call(
                Method::GET,
                &format!("/tenants/{a}/{path}"),
                Some(&a_token),
                None,
            )
            .await;
        assert_eq!(own.status, StatusCode::OK, "{path}: {}", own.text);
        let empty = h
            .call(
                Method::GET,
                &format!("/tenants/{b}/{path}"),
                Some(&b_token),
                None,
            )
            .await;
        assert_eq!(empty.status, StatusCode::OK, "{path}: {}", empty.text);
        if path == "pnl" {
            assert_eq!(empty.body["trades"], 0);
            assert_eq!(empty.body["realized"], "0");
            assert_eq!(empty.body["source"], "trades");
        } else {
            assert!(!own.body["items"].as_array().unwrap().is_empty(), "{path}");
            assert_eq!(empty.body["items"], json!([]), "{path}");
        }
        let unknown = h
            .call(
                Method::GET,
                &format!("/tenants/{}/{path}", Uuid::new_v4()),
                Some(OPERATOR),
                None,
            )
            .await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{path}");
        let anonymous = h
            .call(Method::GET, &format!("/tenants/{a}/{path}"), None, None)
            .await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn trades_balances_and_pnl_carry_money_as_decimal_strings(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let (a, _) = two_tenants(&h).await;
    let trades = h
        .call(
            Method::GET,
            &format!("/tenants/{a}/trades?limit=2"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(trades.status, StatusCode::OK, "{}", trades.text);
    let items = trades.body["items"].as_array().unwrap();
    let rows: Vec<(&str, &str, &str, &str)> = items
        .iter()
        .map(|t| {
            (
                t["side"].as_str().unwrap(),
                t["price"].as_str().unwrap(),
                t["fee"].as_str().unwrap(),
                t["realized_pnl"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [("settle", "1", "0", "5"), ("buy", "0.55", "1.7325", "0")]
    );
    assert_eq!(items[0]["mode"], "paper");
    let cursor = trades.body["next_cursor"].as_str().unwrap();
    let rest = h
        .call(
            Method::GET,
            &format!("/tenants/{a}/trades?limit=2&cursor={cursor}"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(rest.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest.body["items"][0]["price"], "0.4");
    assert_eq!(rest.body["next_cursor"], Value::Null);
    let ids: HashSet<&str> = items
        .iter()
        .chain(rest.body["items"].as_array().unwrap())
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);

    let balances = h
        .call(
            Method::GET,
            &format!("/tenants/{a}/balances?limit=1"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(balances.body["items"][0]["venue"], "kalshi");
    assert_eq!(balances.body["items"][0]["asset"], "USD");
    assert_eq!(balances.body["items"][0]["amount"], "958.32");
    let cursor = balances.body["next_cursor"].as_str().unwrap();
    let next = h
        .call(
            Method::GET,
            &format!("/tenants/{a}/balances?limit=1&cursor={cursor}"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(next.body["items"][0]["amount"], "1059.454");
    assert_eq!(next.body["next_cursor"], Value::Null);

    let pnl = h
        .call(
            Method::GET,
            &format!("/tenants/{a}/pnl"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(pnl.status, StatusCode::OK, "{}", pnl.text);
    assert_eq!(pnl.body["source"], "heartbeat");
    // The set bought for 95 pays 100: 5 locked, not realized yet, and the
    // fees on their own line; equity moved by 5 − 3.4125.
    assert_eq!(pnl.body["realized"], "0");
    assert_eq!(pnl.body["unrealized"], "5");
    assert_eq!(pnl.body["locked"], "5");
    assert_eq!(pnl.body["fees"], "3.4125");
    assert_eq!(pnl.body["net"], "1.5875");
    assert_eq!(pnl.body["daily"], "1.5875");
    // The replayed tenant's trades carry the recording's dates, yet the
    // metric counts the engine's day, as the pages and `/pnl` do.
    let metrics = h.call(Method::GET, "/metrics", Some(OPERATOR), None).await;
    assert_eq!(metrics.status, StatusCode::OK, "{}", metrics.text);
    let series = format!("polybot_tenant_pnl_today{{tenant_id=\"{a}\"}} ");
    let today = metrics
        .text
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .unwrap_or_else(|| panic!("no {series} in {}", metrics.text));
    assert_eq!(today, pnl.body["daily"].as_str().unwrap());
    assert_eq!(pnl.body["equity"], "2001.5875");
    assert_eq!(pnl.body["starting_equity"], "2000");
    assert_eq!(pnl.body["data_time"], "2026-04-29T13:00:01Z");
    // The trades up to the heartbeat's moment: the two buys, not the
    // settlement written after it, so they agree with the heartbeat.
    assert_eq!(pnl.body["trades"], 2);
    assert_eq!(pnl.body["trades_realized"], "0");
    assert_eq!(pnl.body["trades_fees"], "3.4125");
    assert_eq!(
        pnl.body["by_strategy"],
        json!([{"strategy": "complement_arb", "trades": 2, "realized": "0", "fees": "3.4125",
                "unrealized": "5", "locked": "5"}])
    );
    assert_eq!(pnl.body["positions"][1]["outcome"], "No");
    assert_eq!(pnl.body["positions"][1]["locked"], "100");
    assert_eq!(pnl.body["positions"].as_array().map(Vec::len), Some(2));
    assert!(pnl.body["as_of"].is_string());
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn bad_paging_is_a_422_naming_each_field(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let (a, _) = two_tenants(&h).await;
    let reply = h
        .call(
            Method::GET,
            &format!("/tenants/{a}/opportunities?limit=0&cursor=nonsense&strategy=martingale"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    let mut fields: Vec<&str> = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["cursor", "limit", "strategy"]);
    let reply = h
        .call(
            Method::GET,
            &format!("/tenants/{a}/balances?limit=201"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_openapi_document_describes_the_data_endpoints(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let doc = h.call(Method::GET, "/openapi.json", None, None).await;
    for path in ["opportunities", "trades", "balances", "pnl", "pairs"] {
        assert!(
            doc.body["paths"][format!("/tenants/{{id}}/{path}")]["get"].is_object(),
            "{path}"
        );
    }
    for schema in [
        "OpportunityPage",
        "TradePage",
        "BalancePage",
        "PnlView",
        "PairPage",
        "PairView",
    ] {
        assert!(
            doc.body["components"]["schemas"][schema].is_object(),
            "{schema}"
        );
    }
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn the_paired_position_ledger_comes_newest_first_and_filters_by_status(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let (a, _) = two_tenants(&h).await;
    let token = token_for(&h, &a).await;
    let all = h
        .call(
            Method::GET,
            &format!("/tenants/{a}/pairs?limit=1"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    let first = &all.body["items"][0];
    assert_eq!(first["status"], "unwound");
    assert_eq!(first["matched"], "0");
    assert_eq!(first["realised_loss"], "5.3292");
    assert_eq!(first["legs"][0]["venue"], "polymarket");
    assert_eq!(first["strategy"], "cross_venue_arb");
    let cursor = all.body["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let next = h
        .call(
            Method::GET,
            &format!("/tenants/{a}/pairs?limit=1&cursor={cursor}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(next.body["items"][0]["status"], "locked");
    assert_eq!(next.body["items"][0]["locked_edge"], "6.57");
    assert_eq!(next.body["items"][0]["resolution"], "100 complete sets");
    assert_eq!(next.body["next_cursor"], Value::Null);
    let locked = h
        .call(
            Method::GET,
            &format!("/tenants/{a}/pairs?status=locked"),
            Some(OPERATOR),
            None,
        )
        .await;
    let statuses: Vec<&str> = locked.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["status"].as_str())
        .collect();
    assert_eq!(statuses, ["locked"]);
    let bad = h
        .call(
            Method::GET,
            &format!("/tenants/{a}/pairs?status=lost"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["errors"][0]["field"], "status", "{}", bad.text);
}

#[sqlx::test(migrator = "polybot_store::MIGRATOR")]
async fn refused_pairs_are_listed_with_their_reason_to_their_tenant_only(
    pool_opts: PgPoolOptions,
    options: PgConnectOptions,
) {
    let h = Harness::new(pool_opts, options).await;
    let (a, b) = two_tenants(&h).await;
    let reason = "basis risk chainlink_vs_cf_benchmarks: polymarket btc-updown-15m-1777467600 \
                  resolves on Chainlink, kalshi KXBTC15M-26APR290915 on CF Benchmarks; refused";
    // As the worker's recorder writes a refused pair, twice (two runs).
    for secs in [0i64, 60] {
        sqlx::query(
            "INSERT INTO opportunities (id, tenant_id, strategy, venue, market, description, details, \
               detected_at, epoch) \
             VALUES ($1, $2, 'cross_venue_arb', 'polymarket+kalshi', \
               'btc-updown-15m-1777467600 / KXBTC15M-26APR290915', $3, $4, \
               timestamptz '2026-04-29 13:00:00+00' + make_interval(secs => $5::float8), 1)",
        )
        .bind(Uuid::new_v4())
        .bind(a.parse::<Uuid>().unwrap())
        .bind(reason)
        .bind(json!({"refused": {
            "polymarket": "btc-updown-15m-1777467600", "kalshi": "KXBTC15M-26APR290915",
            "reason": reason, "basis_risk": "chainlink_vs_cf_benchmarks"}}))
        .bind(secs)
        .execute(&h.pool)
        .await
        .unwrap();
    }
    let a_token = token_for(&h, &a).await;
    let b_token = token_for(&h, &b).await;
    let own = h
        .call(
            Method::GET,
            &format!("/tenants/{a}/pairs/refused"),
            Some(&a_token),
            None,
        )
        .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    assert_eq!(
        own.body,
        json!({"items": [{
            "polymarket": "btc-updown-15m-1777467600",
            "kalshi": "KXBTC15M-26APR290915",
            "reason": reason,
            "basis_risk": "chainlink_vs_cf_benchmarks",
            "refused_at": "2026-04-29T13:01:00Z",
        }]})
    );
    let other = h
        .call(
            Method::GET,
            &format!("/tenants/{a}/pairs/refused"),
            Some(&b_token),
            None,
        )
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND, "{}", other.text);
    let empty = h
        .call(
            Method::GET,
            &format!("/tenants/{b}/pairs/refused"),
            Some(&b_token),
            None,
        )
        .await;
    assert_eq!(empty.body, json!({"items": []}));
}
