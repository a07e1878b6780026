//! The cost model against hand-computed figures.

use rust_decimal_macros::dec;

use super::*;

fn prices() -> PriceTable {
    PriceTable::us_east_1().unwrap()
}

fn row<'a>(estimate: &'a Estimate, component: &str) -> &'a CostRow {
    estimate
        .rows
        .iter()
        .find(|r| r.component == component)
        .unwrap_or_else(|| panic!("no {component} row"))
}

#[test]
fn the_price_table_is_dated_sourced_and_exact() {
    let p = prices();
    assert_eq!(p.region, "us-east-1");
    assert_eq!(p.as_of, "2024-06-01");
    assert!(p.note.contains("Verify before relying on it"));
    assert!(
        p.sources
            .iter()
            .all(|s| s.url.starts_with("https://aws.amazon.com/"))
    );
    assert_eq!(p.hours_per_month, dec!(730));
    assert_eq!(p.fargate.arm64.vcpu_hour, dec!(0.03238));
    assert_eq!(p.fargate.arm64.gb_hour, dec!(0.00356));
    assert_eq!(p.fargate.x86_64.vcpu_hour, dec!(0.04048));
    assert_eq!(p.fargate.x86_64.gb_hour, dec!(0.004445));
    assert_eq!(p.fargate.arm64_spot, None);
    assert_eq!(p.alb.hour, dec!(0.0225));
    assert_eq!(p.secrets_manager.secret_month, dec!(0.40));
    assert_eq!(p.cloudwatch_logs.ingestion_gb, dec!(0.50));
}

#[test]
fn the_smallest_fargate_task_costs_the_design_figures() {
    let p = prices();
    let size = FargateSize::SMALLEST;
    // DESIGN.md "Scale": ARM64 ≈ $7.21, x86-64 ≈ $9.01, x86-64 Spot ≈ $2.77.
    assert_eq!(
        p.fargate_task_month(size, Architecture::Arm64, false),
        Some(dec!(7.20875))
    );
    assert_eq!(
        p.fargate_task_month(size, Architecture::X86_64, false),
        Some(dec!(9.010025))
    );
    assert_eq!(
        p.fargate_task_month(size, Architecture::X86_64, true),
        Some(dec!(2.77451465))
    );
    assert_eq!(p.fargate_task_month(size, Architecture::Arm64, true), None);
}

#[test]
fn rds_connections_follow_the_memory_formula() {
    let p = prices();
    let max = |class: &str| p.instance(class).unwrap().max_connections();
    assert_eq!(max("db.t4g.micro"), 112);
    assert_eq!(max("db.t4g.small"), 225);
    assert_eq!(max("db.t4g.medium"), 450);
    assert_eq!(max("db.r6g.large"), 1802);
    assert_eq!(max("db.r6g.2xlarge"), 5000, "capped");
}

#[test]
fn twenty_five_tenants_cost_these_exact_figures() {
    let e = estimate(&prices(), &Assumptions::for_tenants(25)).unwrap();
    assert_eq!(row(&e, "Fargate workers").monthly_usd, dec!(180.22));
    assert_eq!(
        row(&e, "Fargate workers").specification,
        "25 × 0.25 vCPU / 0.5 GB, ARM64, On-Demand"
    );
    // 2 × (0.5 × 0.03238 + 1 × 0.00356) × 730
    assert_eq!(row(&e, "Fargate control plane").monthly_usd, dec!(28.84));
    // 25 + 20 + 3 = 48 connections, 53 with headroom: a t4g.micro, twice for Multi-AZ.
    assert_eq!(row(&e, "RDS PostgreSQL").monthly_usd, dec!(23.36));
    assert!(
        row(&e, "RDS PostgreSQL")
            .specification
            .starts_with("db.t4g.micro, Multi-AZ")
    );
    assert_eq!(row(&e, "RDS storage").monthly_usd, dec!(4.60));
    assert_eq!(
        row(&e, "Application Load Balancer").monthly_usd,
        dec!(22.27)
    );
    // 26 × 0.40 + 2,500 calls × 0.05 / 10,000
    assert_eq!(row(&e, "Secrets Manager").monthly_usd, dec!(10.41));
    // 14.5 GB × 0.50 + 14.5 GB × 0.03
    assert_eq!(row(&e, "CloudWatch Logs").monthly_usd, dec!(7.69));
    // 730 × 0.045 + 150 GB × 0.045
    assert_eq!(row(&e, "NAT gateway").monthly_usd, dec!(39.60));
    assert_eq!(row(&e, "Public IPv4 addresses").monthly_usd, dec!(10.95));
    assert_eq!(row(&e, "Data transfer out").monthly_usd, dec!(0.00));
    assert_eq!(
        e.total_usd,
        e.rows.iter().map(|r| r.monthly_usd).sum::<Decimal>()
    );
    assert_eq!(e.total_usd, dec!(327.94));
    assert_eq!(e.per_tenant_usd, Some(dec!(13.12)));
    assert_eq!(e.flags.len(), 1, "{:?}", e.flags);
    assert_eq!(e.flags[0].assumption, "7.25 vCPU of Fargate On-Demand");
    assert_eq!(
        e.flags[0].problem,
        "above the default quota of 6 vCPU: ask for a raise before onboarding"
    );
}

#[test]
fn a_256_mb_task_is_flagged_and_priced_as_the_smallest_offered_size() {
    let a = Assumptions {
        worker_memory: 256,
        ..Assumptions::for_tenants(10)
    };
    let e = estimate(&prices(), &a).unwrap();
    assert_eq!(e.flags.len(), 1);
    assert_eq!(e.flags[0].assumption, "worker size 256 CPU units / 256 MB");
    assert!(e.flags[0].problem.starts_with(
        "256 MB is not a valid Fargate memory size for 0.25 vCPU: use 512, 1024 or 2048; priced as 0.25 vCPU / 0.5 GB"
    ));
    assert_eq!(row(&e, "Fargate workers").monthly_usd, dec!(72.09));
}

#[test]
fn spot_for_arm64_is_flagged_and_priced_on_demand() {
    let a = Assumptions {
        spot_share: dec!(0.5),
        ..Assumptions::for_tenants(10)
    };
    let e = estimate(&prices(), &a).unwrap();
    assert_eq!(e.flags.len(), 1);
    assert!(
        e.flags[0]
            .problem
            .starts_with("Fargate Spot does not run ARM64 tasks")
    );
    assert_eq!(row(&e, "Fargate workers").monthly_usd, dec!(72.09));
}

#[test]
fn a_spot_share_of_x86_workers_mixes_the_two_prices() {
    let a = Assumptions {
        architecture: Architecture::X86_64,
        spot_share: dec!(0.5),
        ..Assumptions::for_tenants(10)
    };
    let e = estimate(&prices(), &a).unwrap();
    // 10 × (0.5 × 9.010025 + 0.5 × 2.77451465)
    assert_eq!(row(&e, "Fargate workers").monthly_usd, dec!(58.92));
    assert_eq!(
        row(&e, "Fargate workers").specification,
        "10 × 0.25 vCPU / 0.5 GB, x86-64, 50% Spot"
    );
    assert!(e.flags.is_empty(), "{:?}", e.flags);
}

#[test]
fn a_thousand_tenants_need_a_quota_raise_and_a_bigger_database() {
    let e = estimate(&prices(), &Assumptions::for_tenants(1000)).unwrap();
    assert_eq!(e.flags.len(), 1, "{:?}", e.flags);
    assert_eq!(e.flags[0].assumption, "251 vCPU of Fargate On-Demand");
    assert_eq!(row(&e, "Fargate workers").monthly_usd, dec!(7208.75));
    assert!(
        row(&e, "RDS PostgreSQL")
            .specification
            .starts_with("db.r6g.large, Multi-AZ")
    );
    assert_eq!(row(&e, "RDS PostgreSQL").monthly_usd, dec!(328.50));
}

#[test]
fn a_named_instance_too_small_for_the_connections_is_flagged() {
    let a = Assumptions {
        db_instance_class: Some("db.t4g.micro".into()),
        ..Assumptions::for_tenants(100)
    };
    let e = estimate(&prices(), &a).unwrap();
    let flagged: Vec<&str> = e.flags.iter().map(|f| f.assumption.as_str()).collect();
    assert_eq!(
        flagged,
        ["26 vCPU of Fargate On-Demand", "123 database connections"]
    );
    assert!(
        e.flags[1]
            .problem
            .starts_with("db.t4g.micro allows about 112")
    );
}

#[test]
fn an_unknown_instance_class_is_an_error() {
    let a = Assumptions {
        db_instance_class: Some("db.x99.huge".into()),
        ..Assumptions::default()
    };
    let err = estimate(&prices(), &a).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("\"db.x99.huge\" is not in the price table: use one of db.t4g.micro")
    );
}

#[test]
fn public_addresses_replace_the_nat_gateway_when_tasks_have_their_own() {
    let a = Assumptions {
        egress: Egress::PublicIpv4,
        ..Assumptions::for_tenants(25)
    };
    let e = estimate(&prices(), &a).unwrap();
    assert!(e.rows.iter().all(|r| r.component != "NAT gateway"));
    // (2 ALB + 25 workers + 2 control plane) × 0.005 × 730
    assert_eq!(row(&e, "Public IPv4 addresses").monthly_usd, dec!(105.85));
}

#[test]
fn zero_tenants_have_no_per_tenant_figure() {
    let e = estimate(&prices(), &Assumptions::for_tenants(0)).unwrap();
    assert_eq!(e.per_tenant_usd, None);
    assert_eq!(row(&e, "Fargate workers").monthly_usd, dec!(0));
    assert_eq!(e.flags.len(), 1);
}

#[test]
fn the_table_lists_every_row_the_total_and_the_price_date() {
    let e = estimate(&prices(), &Assumptions::for_tenants(25)).unwrap();
    let table = e.render_table();
    assert!(table.starts_with(
        "PolyBot Cloud, 25 tenants: monthly estimate (us-east-1 list prices of 2024-06-01; verify before relying on it)"
    ));
    for r in &e.rows {
        assert!(table.contains(&r.component), "{table}");
    }
    let total = table.lines().find(|l| l.starts_with("total")).unwrap();
    assert!(total.ends_with("327.94"), "{total}");
    let per_tenant = table.lines().find(|l| l.starts_with("per tenant")).unwrap();
    assert!(per_tenant.ends_with("13.12"), "{per_tenant}");
    assert!(
        table.contains("\nflags:\n  ! 7.25 vCPU of Fargate On-Demand: above the default quota")
    );
}

#[test]
fn the_json_output_carries_money_as_exact_strings() {
    let e = estimate(&prices(), &Assumptions::for_tenants(25)).unwrap();
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["total_usd"], "327.94");
    assert_eq!(json["rows"][0]["component"], "Fargate workers");
    assert_eq!(json["rows"][0]["monthly_usd"], "180.22");
    assert_eq!(json["prices_as_of"], "2024-06-01");
    assert_eq!(json["assumptions"]["tenants"], 25);
}

#[test]
fn usd_amounts_are_grouped_by_thousands() {
    assert_eq!(format_usd(dec!(1234567.891)), "1,234,567.89");
    assert_eq!(format_usd(dec!(7)), "7.00");
    assert_eq!(format_usd(dec!(0.5)), "0.50");
    assert_eq!(format_usd(dec!(-1000)), "-1,000.00");
    assert_eq!(count(dec!(100000)), "100,000");
    assert_eq!(count(dec!(1234.50)), "1,234.5");
}
