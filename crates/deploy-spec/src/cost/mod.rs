//! The monthly cost model behind `polybot cost`: pure arithmetic over a dated
//! price table and a set of assumptions, in `Decimal` (money is never `f64`).
//!
//! The price table is data, `deploy/prices/aws-us-east-1.json`, compiled in as
//! [`US_EAST_1_PRICES`] and parsed by [`PriceTable::from_json`]; it carries its
//! date and sources, and the estimate repeats them. Assumptions that AWS would
//! not accept (a 256 MB Fargate task, Spot for ARM64) or that meet a default
//! quota are reported as [`Flag`]s next to the figures, which are then computed
//! for what AWS would actually run. What is not here: taxes, support plans,
//! savings plans and reserved instances, ECR storage, and cross-AZ traffic.

use std::fmt;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::fargate::FargateSize;

/// `deploy/prices/aws-us-east-1.json`.
pub const US_EAST_1_PRICES: &str = include_str!("../../../../deploy/prices/aws-us-east-1.json");

/// Fargate's default On-Demand (and, separately, Spot) vCPU quota per region.
pub const FARGATE_DEFAULT_VCPU_QUOTA: u32 = 6;
/// Bytes of instance memory per connection in RDS PostgreSQL's default
/// `max_connections = LEAST({DBInstanceClassMemory/9531392}, 5000)`.
pub const RDS_BYTES_PER_CONNECTION: u64 = 9_531_392;
/// The cap in that formula.
pub const RDS_MAX_CONNECTIONS_CAP: u64 = 5000;
/// Connections RDS keeps for its own superuser (`rds.rds_superuser_reserved_connections`
/// and `superuser_reserved_connections`).
pub const RDS_RESERVED_CONNECTIONS: u64 = 3;
/// Public IPv4 addresses of an internet-facing ALB (one per AZ, two AZs at least).
pub const ALB_PUBLIC_ADDRESSES: u32 = 2;

mod prices;
#[cfg(test)]
mod tests;

pub use prices::*;

// --- assumptions -------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Architecture {
    #[default]
    #[serde(rename = "arm64")]
    Arm64,
    #[serde(rename = "x86_64")]
    X86_64,
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Architecture::Arm64 => "ARM64",
            Architecture::X86_64 => "x86-64",
        })
    }
}

/// How tasks in private subnets reach the venues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Egress {
    /// Private subnets behind NAT gateways (what `infra/` expects).
    #[default]
    NatGateway,
    /// Public subnets, one public IPv4 address per task.
    PublicIpv4,
}

/// What the estimate assumes. `Default` is the platform as `infra/` builds it:
/// ARM64 workers of the smallest size, On-Demand, two control-plane replicas,
/// a Multi-AZ database of the smallest class whose connections fit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Assumptions {
    pub tenants: u32,
    /// CPU units per worker task (1024 = 1 vCPU).
    pub worker_cpu: u32,
    /// MiB per worker task.
    pub worker_memory: u32,
    pub architecture: Architecture,
    /// Share of workers on Fargate Spot, 0 to 1.
    pub spot_share: Decimal,
    pub control_plane_replicas: u32,
    pub control_plane_cpu: u32,
    pub control_plane_memory: u32,
    /// `None`: the cheapest class in the price table whose connections fit.
    pub db_instance_class: Option<String>,
    pub db_multi_az: bool,
    pub db_storage_min_gb: Decimal,
    pub db_storage_gb_per_tenant: Decimal,
    /// Connections a worker holds (one; two at most during a lease hand-over).
    pub db_connections_per_worker: u32,
    /// Pool size of each control-plane replica.
    pub db_connections_per_control_plane: u32,
    /// Load-balancer capacity units used on average (the operator API is light).
    pub alb_lcu: Decimal,
    /// Secrets Manager calls per tenant a month: ECS reads each `secrets`
    /// reference at every task start, and the control plane writes on
    /// onboarding and rotation.
    pub secret_api_calls_per_tenant_month: u32,
    pub log_gb_per_tenant_month: Decimal,
    pub control_plane_log_gb_month: Decimal,
    pub log_retention_days: u32,
    /// Market data in (free from the internet, but a NAT gateway charges for it).
    pub internet_in_gb_per_tenant_month: Decimal,
    /// Requests out to the venues.
    pub internet_out_gb_per_tenant_month: Decimal,
    pub egress: Egress,
    pub nat_gateways: u32,
}

impl Default for Assumptions {
    fn default() -> Self {
        Assumptions {
            tenants: 25,
            worker_cpu: FargateSize::SMALLEST.cpu(),
            worker_memory: FargateSize::SMALLEST.memory(),
            architecture: Architecture::Arm64,
            spot_share: Decimal::ZERO,
            control_plane_replicas: 2,
            control_plane_cpu: 512,
            control_plane_memory: 1024,
            db_instance_class: None,
            db_multi_az: true,
            db_storage_min_gb: Decimal::from(20),
            db_storage_gb_per_tenant: Decimal::new(2, 1),
            db_connections_per_worker: 1,
            db_connections_per_control_plane: 10,
            alb_lcu: Decimal::ONE,
            secret_api_calls_per_tenant_month: 100,
            log_gb_per_tenant_month: Decimal::new(5, 1),
            control_plane_log_gb_month: Decimal::from(2),
            log_retention_days: 30,
            internet_in_gb_per_tenant_month: Decimal::from(5),
            internet_out_gb_per_tenant_month: Decimal::ONE,
            egress: Egress::NatGateway,
            nat_gateways: 1,
        }
    }
}

impl Assumptions {
    /// The defaults for `tenants` tenants.
    pub fn for_tenants(tenants: u32) -> Self {
        Assumptions {
            tenants,
            ..Assumptions::default()
        }
    }
}

// --- the estimate ------------------------------------------------------------

/// One line of the estimate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CostRow {
    pub component: String,
    pub specification: String,
    /// Rounded to the cent.
    pub monthly_usd: Decimal,
}

/// An assumption AWS would not accept, or that needs a quota raised first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    pub assumption: String,
    pub problem: String,
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.assumption, self.problem)
    }
}

/// The monthly estimate: rows by component, their total, the total per tenant,
/// and the flags. Serializes to the `--json` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Estimate {
    pub region: String,
    pub currency: String,
    pub prices_as_of: String,
    pub price_note: String,
    pub tenants: u32,
    pub rows: Vec<CostRow>,
    /// The sum of the rounded rows.
    pub total_usd: Decimal,
    /// `None` for zero tenants.
    pub per_tenant_usd: Option<Decimal>,
    pub flags: Vec<Flag>,
    pub assumptions: Assumptions,
}

/// Why no estimate could be made at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CostError {
    #[error("the price table is malformed: {0}")]
    PriceTable(String),
    #[error("{class:?} is not in the price table: use one of {known}")]
    UnknownInstanceClass { class: String, known: String },
    #[error("the price table lists no RDS instance")]
    NoInstances,
}

/// Estimates a month of the platform under `assumptions` at `prices`.
pub fn estimate(prices: &PriceTable, assumptions: &Assumptions) -> Result<Estimate, CostError> {
    let a = assumptions;
    let hours = prices.hours_per_month;
    let tenants = Decimal::from(a.tenants);
    let mut rows = Vec::new();
    let mut flags = Vec::new();
    let mut flag = |assumption: String, problem: String| {
        flags.push(Flag {
            assumption,
            problem,
        })
    };

    if a.tenants == 0 {
        flag(
            "0 tenants".into(),
            "there is nothing to divide the cost by; only the fixed costs are shown".into(),
        );
    }

    // Fargate: workers.
    let worker = priced_size(a.worker_cpu, a.worker_memory, "worker size", &mut flag);
    let mut spot_share = a.spot_share;
    if spot_share < Decimal::ZERO || spot_share > Decimal::ONE {
        let clamped = spot_share.clamp(Decimal::ZERO, Decimal::ONE);
        flag(
            format!("Spot share {}", percent(spot_share)),
            format!(
                "a share is between 0% and 100%; priced as {}",
                percent(clamped)
            ),
        );
        spot_share = clamped;
    }
    let on_demand_month = prices
        .fargate_task_month(worker, a.architecture, false)
        .unwrap_or_default();
    let spot_month = match prices.fargate_task_month(worker, a.architecture, true) {
        Some(month) => month,
        None => {
            if spot_share > Decimal::ZERO {
                flag(
                    format!(
                        "{} Spot for {} workers",
                        percent(spot_share),
                        a.architecture
                    ),
                    format!(
                        "Fargate Spot does not run {} tasks; priced as On-Demand (use x86-64 for Spot)",
                        a.architecture
                    ),
                );
                spot_share = Decimal::ZERO;
            }
            on_demand_month
        }
    };
    let per_worker = (Decimal::ONE - spot_share) * on_demand_month + spot_share * spot_month;
    let purchase = if spot_share.is_zero() {
        "On-Demand".to_owned()
    } else {
        format!("{} Spot", percent(spot_share))
    };
    rows.push(row(
        "Fargate workers",
        format!("{} × {}, {}, {purchase}", a.tenants, worker, a.architecture),
        tenants * per_worker,
    ));

    // Fargate: control plane (ARM64 On-Demand, like its task definition).
    let control = priced_size(
        a.control_plane_cpu,
        a.control_plane_memory,
        "control-plane size",
        &mut flag,
    );
    let control_month = prices
        .fargate_task_month(control, Architecture::Arm64, false)
        .unwrap_or_default();
    rows.push(row(
        "Fargate control plane",
        format!(
            "{} × {}, ARM64, On-Demand",
            a.control_plane_replicas, control
        ),
        Decimal::from(a.control_plane_replicas) * control_month,
    ));

    // Quotas.
    let spot_tasks = tenants * spot_share;
    let on_demand_vcpu = (tenants - spot_tasks) * worker.vcpu()
        + Decimal::from(a.control_plane_replicas) * control.vcpu();
    let spot_vcpu = spot_tasks * worker.vcpu();
    for (kind, vcpu) in [("On-Demand", on_demand_vcpu), ("Spot", spot_vcpu)] {
        if vcpu > Decimal::from(FARGATE_DEFAULT_VCPU_QUOTA) {
            flag(
                format!("{} vCPU of Fargate {kind}", vcpu.normalize()),
                format!(
                    "above the default quota of {FARGATE_DEFAULT_VCPU_QUOTA} vCPU: ask for a raise before onboarding"
                ),
            );
        }
    }

    // Database.
    let needed = u64::from(a.tenants) * u64::from(a.db_connections_per_worker)
        + u64::from(a.control_plane_replicas) * u64::from(a.db_connections_per_control_plane)
        + RDS_RESERVED_CONNECTIONS;
    let with_headroom = needed + needed.div_ceil(10);
    let instance = match &a.db_instance_class {
        Some(class) => prices
            .instance(class)
            .ok_or_else(|| CostError::UnknownInstanceClass {
                class: class.clone(),
                known: prices
                    .rds_postgres
                    .instances
                    .iter()
                    .map(|i| i.class.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?,
        None => {
            let fitting = prices
                .rds_postgres
                .instances
                .iter()
                .filter(|i| i.max_connections() >= with_headroom)
                .min_by_key(|i| i.hourly);
            match fitting {
                Some(instance) => instance,
                None => prices
                    .rds_postgres
                    .instances
                    .iter()
                    .max_by_key(|i| i.max_connections())
                    .ok_or(CostError::NoInstances)?,
            }
        }
    };
    if instance.max_connections() < with_headroom {
        flag(
            format!("{needed} database connections"),
            format!(
                "{} allows about {} (memory / 9.5 MB): use a larger class, a connection pooler \
                 (RDS Proxy, PgBouncer) or a second database",
                instance.class,
                instance.max_connections()
            ),
        );
    }
    let az = if a.db_multi_az {
        prices.rds_postgres.multi_az_factor
    } else {
        Decimal::ONE
    };
    let az_text = if a.db_multi_az {
        "Multi-AZ"
    } else {
        "Single-AZ"
    };
    rows.push(row(
        "RDS PostgreSQL",
        format!(
            "{}, {az_text}, {} GiB ≈ {} connections for {needed} needed",
            instance.class,
            instance.memory_gib.normalize(),
            instance.max_connections()
        ),
        instance.hourly * az * hours,
    ));
    let storage = (tenants * a.db_storage_gb_per_tenant)
        .max(a.db_storage_min_gb)
        .ceil();
    rows.push(row(
        "RDS storage",
        format!("{storage} GB gp3, {az_text}"),
        storage * prices.rds_postgres.gp3_gb_month * az,
    ));

    // Load balancer.
    rows.push(row(
        "Application Load Balancer",
        format!("1 ALB, {} LCU", a.alb_lcu.normalize()),
        (prices.alb.hour + a.alb_lcu * prices.alb.lcu_hour) * hours,
    ));

    // Secrets Manager: one secret per tenant and the control plane's database secret.
    let secrets = tenants + Decimal::ONE;
    let calls = tenants * Decimal::from(a.secret_api_calls_per_tenant_month);
    rows.push(row(
        "Secrets Manager",
        format!("{} secrets, {} API calls", count(secrets), count(calls)),
        secrets * prices.secrets_manager.secret_month
            + calls / Decimal::from(10_000) * prices.secrets_manager.per_10k_api_calls,
    ));

    // CloudWatch Logs: at a steady state a group holds `retention` days of logs
    // (uncompressed here; CloudWatch bills storage compressed, so this is high).
    let ingested = tenants * a.log_gb_per_tenant_month + a.control_plane_log_gb_month;
    let stored = ingested * Decimal::from(a.log_retention_days) / Decimal::from(30);
    rows.push(row(
        "CloudWatch Logs",
        format!(
            "{} GB ingested, {} GB stored ({}-day retention)",
            count(ingested),
            count(stored.round_dp(1)),
            a.log_retention_days
        ),
        ingested * prices.cloudwatch_logs.ingestion_gb
            + stored * prices.cloudwatch_logs.storage_gb_month,
    ));

    // Network.
    let inbound = tenants * a.internet_in_gb_per_tenant_month;
    let outbound = tenants * a.internet_out_gb_per_tenant_month;
    let mut addresses = ALB_PUBLIC_ADDRESSES;
    match a.egress {
        Egress::NatGateway => {
            addresses += a.nat_gateways;
            let processed = inbound + outbound;
            rows.push(row(
                "NAT gateway",
                format!(
                    "{} NAT gateway{}, {} GB processed",
                    a.nat_gateways,
                    if a.nat_gateways == 1 { "" } else { "s" },
                    count(processed)
                ),
                Decimal::from(a.nat_gateways) * prices.network.nat_gateway_hour * hours
                    + processed * prices.network.nat_gateway_gb,
            ));
        }
        Egress::PublicIpv4 => addresses += a.tenants + a.control_plane_replicas,
    }
    rows.push(row(
        "Public IPv4 addresses",
        format!("{addresses} addresses"),
        Decimal::from(addresses) * prices.network.public_ipv4_hour * hours,
    ));
    let billable = (outbound - prices.network.internet_egress_free_gb_month).max(Decimal::ZERO);
    rows.push(row(
        "Data transfer out",
        format!(
            "{} GB to the internet, first {} GB free",
            count(outbound),
            prices.network.internet_egress_free_gb_month.normalize()
        ),
        billable * prices.network.internet_egress_gb,
    ));

    let total_usd: Decimal = rows.iter().map(|r| r.monthly_usd).sum();
    let per_tenant_usd = (a.tenants > 0).then(|| cents(total_usd / tenants));
    Ok(Estimate {
        region: prices.region.clone(),
        currency: prices.currency.clone(),
        prices_as_of: prices.as_of.clone(),
        price_note: prices.note.clone(),
        tenants: a.tenants,
        rows,
        total_usd,
        per_tenant_usd,
        flags,
        assumptions: a.clone(),
    })
}

/// The size to price: the requested one when AWS offers it, else the smallest
/// offered size that holds it (what `RegisterTaskDefinition` would force), flagged.
fn priced_size(
    cpu: u32,
    memory: u32,
    what: &str,
    flag: &mut impl FnMut(String, String),
) -> FargateSize {
    match FargateSize::new(cpu, memory) {
        Ok(size) => size,
        Err(err) => {
            let instead = FargateSize::smallest_fitting(cpu, memory);
            let priced = instead.unwrap_or(FargateSize::SMALLEST);
            let how = match instead {
                Some(size) => format!("priced as {size}, the smallest size that holds it"),
                None => format!("nothing that large exists; priced as {priced}"),
            };
            flag(
                format!("{what} {cpu} CPU units / {memory} MB"),
                format!("{err}; {how}"),
            );
            priced
        }
    }
}

fn row(component: &str, specification: String, monthly: Decimal) -> CostRow {
    CostRow {
        component: component.to_owned(),
        specification,
        monthly_usd: cents(monthly),
    }
}

fn cents(amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

fn percent(share: Decimal) -> String {
    format!("{}%", (share * Decimal::ONE_HUNDRED).normalize())
}

/// `12345` → `"12,345"` (fractions kept: `1234.5` → `"1,234.5"`).
fn count(n: Decimal) -> String {
    let text = n.normalize().abs().to_string();
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w.to_owned(), format!(".{f}")),
        None => (text.clone(), String::new()),
    };
    format!("{}{fraction}", group_thousands(&whole))
}

fn group_thousands(digits: &str) -> String {
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// `1234.5` → `"1,234.50"`.
pub fn format_usd(amount: Decimal) -> String {
    let text = cents(amount).abs().to_string();
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let grouped = group_thousands(whole);
    let sign = if amount.is_sign_negative() && !amount.is_zero() {
        "-"
    } else {
        ""
    };
    format!("{sign}{grouped}.{fraction:0<2}")
}

impl Estimate {
    /// The table `polybot cost` prints: component, specification, monthly
    /// cost; the total and the cost per tenant; the flags; the price date.
    pub fn render_table(&self) -> String {
        let header = ("component", "specification", "monthly USD");
        let mut lines: Vec<(String, String, String)> = self
            .rows
            .iter()
            .map(|r| {
                (
                    r.component.clone(),
                    r.specification.clone(),
                    format_usd(r.monthly_usd),
                )
            })
            .collect();
        lines.push(("total".into(), String::new(), format_usd(self.total_usd)));
        if let Some(per_tenant) = self.per_tenant_usd {
            lines.push(("per tenant".into(), String::new(), format_usd(per_tenant)));
        }
        let width = |f: fn(&(String, String, String)) -> usize, head: &str| {
            lines
                .iter()
                .map(f)
                .chain([head.chars().count()])
                .max()
                .unwrap_or(0)
        };
        let w0 = width(|l| l.0.chars().count(), header.0);
        let w1 = width(|l| l.1.chars().count(), header.1);
        let w2 = width(|l| l.2.chars().count(), header.2);

        let mut out = String::new();
        out.push_str(&format!(
            "PolyBot Cloud, {} tenants: monthly estimate ({} list prices of {}; verify before relying on it)\n\n",
            self.tenants, self.region, self.prices_as_of
        ));
        let mut line = |c0: &str, c1: &str, c2: &str| {
            let text = format!("{c0:<w0$}  {c1:<w1$}  {c2:>w2$}");
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(header.0, header.1, header.2);
        line(&"-".repeat(w0), &"-".repeat(w1), &"-".repeat(w2));
        let rows = self.rows.len();
        for (i, (c0, c1, c2)) in lines.iter().enumerate() {
            if i == rows {
                line(&"-".repeat(w0), &"-".repeat(w1), &"-".repeat(w2));
            }
            line(c0, c1, c2);
        }
        if !self.flags.is_empty() {
            out.push_str("\nflags:\n");
            for flag in &self.flags {
                out.push_str("  ! ");
                out.push_str(&flag.to_string());
                out.push('\n');
            }
        }
        out
    }
}
