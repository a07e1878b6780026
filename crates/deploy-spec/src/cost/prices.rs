//! The dated price table: its serde shape (`deploy/prices/aws-us-east-1.json`)
//! and the unit prices the estimate multiplies.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{
    Architecture, CostError, RDS_BYTES_PER_CONNECTION, RDS_MAX_CONNECTIONS_CAP, US_EAST_1_PRICES,
};
use crate::fargate::FargateSize;

/// A dated price list for one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    pub region: String,
    pub currency: String,
    /// The date the prices were read (YYYY-MM-DD).
    pub as_of: String,
    pub note: String,
    pub hours_per_month: Decimal,
    pub sources: Vec<PriceSource>,
    pub fargate: FargatePrices,
    pub rds_postgres: RdsPrices,
    pub alb: AlbPrices,
    pub secrets_manager: SecretsManagerPrices,
    pub cloudwatch_logs: LogPrices,
    pub network: NetworkPrices,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSource {
    pub what: String,
    pub url: String,
}

/// Fargate's price of one vCPU and one GB of memory for an hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FargateUnitPrices {
    pub vcpu_hour: Decimal,
    pub gb_hour: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FargatePrices {
    pub arm64: FargateUnitPrices,
    pub x86_64: FargateUnitPrices,
    pub x86_64_spot: FargateUnitPrices,
    /// `None`: Fargate Spot does not run ARM64 tasks.
    pub arm64_spot: Option<FargateUnitPrices>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RdsPrices {
    /// Multi-AZ (one standby) costs this many times Single-AZ, instance and storage.
    pub multi_az_factor: Decimal,
    pub gp3_gb_month: Decimal,
    pub instances: Vec<RdsInstance>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RdsInstance {
    pub class: String,
    pub vcpu: u32,
    pub memory_gib: Decimal,
    /// Single-AZ On-Demand, per hour.
    pub hourly: Decimal,
}

impl RdsInstance {
    /// The default `max_connections` for this instance's memory. RDS computes
    /// it from `DBInstanceClassMemory`, which is somewhat below the nominal
    /// memory, so the real figure is a little lower: keep headroom.
    pub fn max_connections(&self) -> u64 {
        let bytes = self.memory_gib * Decimal::from(1u64 << 30);
        let connections = (bytes / Decimal::from(RDS_BYTES_PER_CONNECTION)).floor();
        u64::try_from(connections)
            .unwrap_or(RDS_MAX_CONNECTIONS_CAP)
            .min(RDS_MAX_CONNECTIONS_CAP)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlbPrices {
    pub hour: Decimal,
    pub lcu_hour: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsManagerPrices {
    pub secret_month: Decimal,
    pub per_10k_api_calls: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogPrices {
    pub ingestion_gb: Decimal,
    pub storage_gb_month: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPrices {
    pub internet_egress_gb: Decimal,
    /// Data out to the internet that is free each month (account-wide).
    pub internet_egress_free_gb_month: Decimal,
    pub nat_gateway_hour: Decimal,
    /// Per GB processed, in either direction.
    pub nat_gateway_gb: Decimal,
    pub public_ipv4_hour: Decimal,
}

impl PriceTable {
    /// The compiled-in us-east-1 table.
    pub fn us_east_1() -> Result<Self, CostError> {
        Self::from_json(US_EAST_1_PRICES)
    }

    pub fn from_json(json: &str) -> Result<Self, CostError> {
        serde_json::from_str(json).map_err(|e| CostError::PriceTable(e.to_string()))
    }

    /// A Fargate task of `size` for a month; `None` when the combination is not
    /// offered (Spot for ARM64).
    pub fn fargate_task_month(
        &self,
        size: FargateSize,
        architecture: Architecture,
        spot: bool,
    ) -> Option<Decimal> {
        let unit = match (architecture, spot) {
            (Architecture::Arm64, false) => self.fargate.arm64,
            (Architecture::X86_64, false) => self.fargate.x86_64,
            (Architecture::X86_64, true) => self.fargate.x86_64_spot,
            (Architecture::Arm64, true) => self.fargate.arm64_spot?,
        };
        let hourly = size.vcpu() * unit.vcpu_hour + size.memory_gb() * unit.gb_hour;
        Some(hourly * self.hours_per_month)
    }

    pub(super) fn instance(&self, class: &str) -> Option<&RdsInstance> {
        self.rds_postgres
            .instances
            .iter()
            .find(|i| i.class == class)
    }
}
