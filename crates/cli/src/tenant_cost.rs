//! `polybot cost --per-tenant`: each tenant's cost and margin in a month,
//! from the control plane's usage (`GET /billing/usage`: worker-hours at the
//! plan's worker size) and the price table (`deploy/prices`).
//!
//! Cost is the Fargate time of the tenant's worker (vCPU-hours and GB-hours
//! at On-Demand prices of the chosen architecture); the platform's shared
//! costs (database, load balancer, control plane) are in the fleet estimate
//! of `polybot cost`, not here. Revenue is the plan's monthly price,
//! prorated when the month is not over; metered charges priced in Stripe are
//! not included. Nothing here calls AWS or Stripe.

use anyhow::Context;
use chrono::{DateTime, Datelike, Utc};
use polybot_control_plane::billing::api::{TenantUsageView, UsageList};
use polybot_deploy_spec::FargateSize;
use polybot_deploy_spec::cost::{Architecture, PriceTable, format_usd};
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

/// One tenant's month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantMargin {
    pub tenant_id: Uuid,
    pub name: String,
    /// `None`: no plan (no revenue).
    pub plan: Option<String>,
    pub payment_state: String,
    /// CPU units and MiB the worker-hours are priced at.
    pub worker_cpu: u32,
    pub worker_memory: u32,
    pub worker_hours: Decimal,
    pub orders: i64,
    pub api_calls: i64,
    /// USD, to the cent.
    pub cost: Decimal,
    pub revenue: Decimal,
    pub margin: Decimal,
    /// Margin as a percentage of revenue; `None` without revenue.
    pub margin_percent: Option<Decimal>,
}

/// The part of the month `[from, to)` covers (1 for a whole month).
fn month_share(from: DateTime<Utc>, to: DateTime<Utc>) -> Decimal {
    let start = from
        .date_naive()
        .with_day(1)
        .unwrap_or(from.date_naive())
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let Some(end) = start
        .date_naive()
        .checked_add_months(chrono::Months::new(1))
        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
    else {
        return Decimal::ONE;
    };
    let month = (end - start).num_seconds();
    let covered = (to.min(end) - from.max(start)).num_seconds().max(0);
    if month <= 0 {
        return Decimal::ONE;
    }
    Decimal::from(covered) / Decimal::from(month)
}

/// Each tenant's cost and margin. `default_size` prices tenants whose plan
/// names no size (or who have none): the launcher's configured size.
pub fn margins(
    prices: &PriceTable,
    architecture: Architecture,
    default_size: FargateSize,
    usage: &UsageList,
) -> anyhow::Result<Vec<TenantMargin>> {
    let unit = match architecture {
        Architecture::Arm64 => prices.fargate.arm64,
        Architecture::X86_64 => prices.fargate.x86_64,
    };
    let share = month_share(usage.from, usage.to);
    usage
        .items
        .iter()
        .map(|t| margin(t, unit, default_size, share))
        .collect()
}

fn margin(
    t: &TenantUsageView,
    unit: polybot_deploy_spec::cost::FargateUnitPrices,
    default_size: FargateSize,
    share: Decimal,
) -> anyhow::Result<TenantMargin> {
    let size = match (t.worker_cpu, t.worker_memory) {
        (Some(cpu), Some(memory)) => FargateSize::new(
            u32::try_from(cpu).unwrap_or_default(),
            u32::try_from(memory).unwrap_or_default(),
        )
        .with_context(|| {
            format!(
                "tenant {} ({}): its plan's worker size",
                t.name, t.tenant_id
            )
        })?,
        _ => default_size,
    };
    let hours: Decimal = t.worker_hours.parse().with_context(|| {
        format!(
            "tenant {}: worker_hours {:?} is not a number",
            t.name, t.worker_hours
        )
    })?;
    let hourly = size.vcpu() * unit.vcpu_hour + size.memory_gb() * unit.gb_hour;
    let cost = (hours * hourly).round_dp(2);
    let price: Decimal = match &t.monthly_price {
        Some(p) => p
            .parse()
            .with_context(|| format!("tenant {}: monthly_price {p:?} is not a number", t.name))?,
        None => Decimal::ZERO,
    };
    let revenue = (price * share).round_dp(2);
    let margin = revenue - cost;
    Ok(TenantMargin {
        tenant_id: t.tenant_id,
        name: t.name.clone(),
        plan: t.plan.clone(),
        payment_state: t.payment_state.clone(),
        worker_cpu: size.cpu(),
        worker_memory: size.memory(),
        worker_hours: hours.normalize(),
        orders: t.orders,
        api_calls: t.api_calls,
        cost: cost.normalize(),
        revenue: revenue.normalize(),
        margin: margin.normalize(),
        margin_percent: (revenue > Decimal::ZERO)
            .then(|| (margin * Decimal::ONE_HUNDRED / revenue).round_dp(1)),
    })
}

/// The table: one row per tenant, then the totals.
pub fn render(usage: &UsageList, rows: &[TenantMargin]) -> String {
    let header = [
        "tenant",
        "plan",
        "payment",
        "worker",
        "hours",
        "orders",
        "API calls",
        "cost",
        "revenue",
        "margin",
        "margin %",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for r in rows {
        table.push(vec![
            r.name.clone(),
            r.plan.clone().unwrap_or_else(|| "none".to_owned()),
            r.payment_state.clone(),
            format!("{}/{}", r.worker_cpu, r.worker_memory),
            r.worker_hours.to_string(),
            r.orders.to_string(),
            r.api_calls.to_string(),
            format_usd(r.cost),
            format_usd(r.revenue),
            format_usd(r.margin),
            r.margin_percent
                .map_or_else(|| "-".to_owned(), |p| p.to_string()),
        ]);
    }
    let sum = |f: fn(&TenantMargin) -> Decimal| rows.iter().map(f).sum::<Decimal>();
    let mut total = vec![String::new(); header.len()];
    total[0] = "total".to_owned();
    total[7] = format_usd(sum(|r| r.cost));
    total[8] = format_usd(sum(|r| r.revenue));
    total[9] = format_usd(sum(|r| r.margin));
    table.push(total);
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            table
                .iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = format!(
        "Cost and margin per tenant, {} to {} (USD; worker Fargate time only, revenue prorated)\n",
        usage.from.format("%Y-%m-%d %H:%M"),
        usage.to.format("%Y-%m-%d %H:%M UTC")
    );
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c < 4 {
                    format!("{cell:<w$}", w = widths[c])
                } else {
                    format!("{cell:>w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap_or_default()
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap_or_default()
    }

    fn tenant(name: &str, plan: Option<(&str, &str, i32, i32)>, hours: &str) -> TenantUsageView {
        TenantUsageView {
            tenant_id: Uuid::nil(),
            name: name.to_owned(),
            plan: plan.map(|p| p.0.to_owned()),
            monthly_price: plan.map(|p| p.1.to_owned()),
            payment_state: if plan.is_some() { "active" } else { "none" }.to_owned(),
            worker_cpu: plan.map(|p| p.2),
            worker_memory: plan.map(|p| p.3),
            worker_hours: hours.to_owned(),
            orders: 3,
            live_orders: 0,
            api_calls: 40,
        }
    }

    fn april(to: &str, items: Vec<TenantUsageView>) -> UsageList {
        UsageList {
            from: at("2027-04-01T00:00:00Z"),
            to: at(to),
            items,
        }
    }

    #[test]
    fn cost_is_worker_hours_at_the_plans_size_and_revenue_its_price() -> anyhow::Result<()> {
        let prices = PriceTable::us_east_1()?;
        let usage = april(
            "2027-05-01T00:00:00Z",
            vec![
                tenant("pro", Some(("pro", "49", 512, 1024)), "720"),
                tenant("ops", None, "100"),
            ],
        );
        let rows = margins(&prices, Architecture::Arm64, FargateSize::SMALLEST, &usage)?;
        // 720 h × (0.5 vCPU × 0.03238 + 1 GB × 0.00356) = 720 × 0.01975 = 14.22
        assert_eq!(rows[0].cost, dec("14.22"));
        assert_eq!(rows[0].revenue, dec("49"));
        assert_eq!(rows[0].margin, dec("34.78"));
        assert_eq!(rows[0].margin_percent, Some(dec("71.0")));
        assert_eq!((rows[0].worker_cpu, rows[0].worker_memory), (512, 1024));
        // No plan: the default size, no revenue. 100 h × (0.25 × 0.03238 + 0.5 × 0.00356) = 0.99
        assert_eq!(rows[1].cost, dec("0.99"));
        assert_eq!(rows[1].revenue, dec("0"));
        assert_eq!(rows[1].margin, dec("-0.99"));
        assert_eq!(rows[1].margin_percent, None);
        let table = render(&usage, &rows);
        assert!(
            table.lines().any(|l| l.starts_with("pro ")
                && l.contains("512/1024")
                && l.contains("14.22")
                && l.contains("34.78")
                && l.ends_with("71.0")),
            "{table}"
        );
        assert!(
            table.lines().any(|l| l.starts_with("total")
                && l.contains("15.21")
                && l.contains("49.00")
                && l.contains("33.79")),
            "{table}"
        );
        Ok(())
    }

    #[test]
    fn revenue_is_prorated_for_a_month_not_over_and_x86_costs_more() -> anyhow::Result<()> {
        let prices = PriceTable::us_east_1()?;
        // 9 of April's 30 days.
        let usage = april(
            "2027-04-10T00:00:00Z",
            vec![tenant("live", Some(("live", "199", 1024, 2048)), "216")],
        );
        let arm = margins(&prices, Architecture::Arm64, FargateSize::SMALLEST, &usage)?;
        assert_eq!(arm[0].revenue, dec("59.70"));
        // 216 h × (1 × 0.03238 + 2 × 0.00356) = 216 × 0.0395 = 8.53
        assert_eq!(arm[0].cost, dec("8.53"));
        assert_eq!(arm[0].margin, dec("51.17"));
        let x86 = margins(&prices, Architecture::X86_64, FargateSize::SMALLEST, &usage)?;
        // 216 × (0.04048 + 2 × 0.004445) = 216 × 0.04937 = 10.66
        assert_eq!(x86[0].cost, dec("10.66"));
        Ok(())
    }

    #[test]
    fn a_plan_size_fargate_does_not_offer_is_an_error_naming_the_tenant() {
        let prices = PriceTable::us_east_1().unwrap_or_else(|e| panic!("{e}"));
        let usage = april(
            "2027-05-01T00:00:00Z",
            vec![tenant("odd", Some(("odd", "5", 256, 4096)), "1")],
        );
        let err = margins(&prices, Architecture::Arm64, FargateSize::SMALLEST, &usage)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(err.contains("tenant odd"), "{err}");
        assert!(err.contains("4096"), "{err}");
    }
}
