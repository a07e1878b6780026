//! Fargate task sizes: the CPU and memory pairs AWS offers, and nothing else.
//!
//! From the ECS developer guide, "Task CPU and memory" (Linux tasks on
//! platform version 1.4.0): memory in MiB for each CPU value in CPU units
//! (1024 units = 1 vCPU). A task definition with another pair is rejected by
//! `RegisterTaskDefinition`; catching it here gives the operator a message
//! that says what to use instead.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The CPU values Fargate offers, in CPU units.
pub const CPU_UNITS: [u32; 7] = [256, 512, 1024, 2048, 4096, 8192, 16384];

/// A valid Fargate task size. Built only by [`FargateSize::new`] (or the
/// constants), so holding one means AWS accepts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "RawSize", into = "RawSize")]
pub struct FargateSize {
    cpu: u32,
    memory: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSize {
    cpu: u32,
    memory: u32,
}

impl TryFrom<RawSize> for FargateSize {
    type Error = FargateSizeError;
    fn try_from(raw: RawSize) -> Result<Self, Self::Error> {
        FargateSize::new(raw.cpu, raw.memory)
    }
}

impl From<FargateSize> for RawSize {
    fn from(size: FargateSize) -> Self {
        RawSize {
            cpu: size.cpu,
            memory: size.memory,
        }
    }
}

/// A CPU and memory pair that Fargate does not offer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FargateSizeError {
    #[error(
        "{cpu} CPU units is not a valid Fargate CPU size: use 256, 512, 1024, 2048, 4096, 8192 \
         or 16384 (1024 units = 1 vCPU)"
    )]
    Cpu { cpu: u32 },
    #[error(
        "{memory} MB is not a valid Fargate memory size for {} vCPU: use {}",
        vcpu_text(*cpu),
        choices_text(*cpu)
    )]
    Memory { cpu: u32, memory: u32 },
}

impl FargateSize {
    /// The smallest size, and the default: 0.25 vCPU with 512 MiB.
    pub const SMALLEST: FargateSize = FargateSize {
        cpu: 256,
        memory: 512,
    };

    /// `cpu` in CPU units (1024 = 1 vCPU), `memory` in MiB.
    pub fn new(cpu: u32, memory: u32) -> Result<Self, FargateSizeError> {
        let valid = memory_sizes(cpu).ok_or(FargateSizeError::Cpu { cpu })?;
        if valid.contains(&memory) {
            Ok(FargateSize { cpu, memory })
        } else {
            Err(FargateSizeError::Memory { cpu, memory })
        }
    }

    /// The smallest (cheapest: least CPU, then least memory) size with at
    /// least `cpu` units and `memory` MiB, or `None` past the largest.
    pub fn smallest_fitting(cpu: u32, memory: u32) -> Option<Self> {
        Self::all().find(|s| s.cpu >= cpu && s.memory >= memory)
    }

    /// Every valid size, by CPU and then memory.
    pub fn all() -> impl Iterator<Item = FargateSize> {
        CPU_UNITS.into_iter().flat_map(|cpu| {
            memory_sizes(cpu)
                .unwrap_or_default()
                .into_iter()
                .map(move |memory| FargateSize { cpu, memory })
        })
    }

    /// CPU units, as the task definition's `cpu` wants them.
    pub const fn cpu(&self) -> u32 {
        self.cpu
    }

    /// MiB, as the task definition's `memory` wants them.
    pub const fn memory(&self) -> u32 {
        self.memory
    }

    /// vCPUs, the unit Fargate is priced in (0.25 for 256 units).
    pub fn vcpu(&self) -> Decimal {
        (Decimal::from(self.cpu) / Decimal::from(1024)).normalize()
    }

    /// GB as Fargate prices them (1 GB = 1024 MiB; 0.5 for 512 MiB).
    pub fn memory_gb(&self) -> Decimal {
        (Decimal::from(self.memory) / Decimal::from(1024)).normalize()
    }
}

impl Default for FargateSize {
    fn default() -> Self {
        Self::SMALLEST
    }
}

impl fmt::Display for FargateSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} vCPU / {} GB", self.vcpu(), self.memory_gb())
    }
}

/// The memory sizes (MiB) Fargate offers with `cpu` units, or `None` for a
/// CPU value it does not offer.
pub fn memory_sizes(cpu: u32) -> Option<Vec<u32>> {
    let (min, max, step) = match cpu {
        256 => return Some(vec![512, 1024, 2048]),
        512 => (1024, 4096, 1024),
        1024 => (2048, 8192, 1024),
        2048 => (4096, 16384, 1024),
        4096 => (8192, 30720, 1024),
        8192 => (16384, 61440, 4096),
        16384 => (32768, 122880, 8192),
        _ => return None,
    };
    Some((min..=max).step_by(step as usize).collect())
}

fn vcpu_text(cpu: u32) -> String {
    (Decimal::from(cpu) / Decimal::from(1024))
        .normalize()
        .to_string()
}

/// "512, 1024 or 2048" for a short list, "8192 to 30720 in steps of 1024"
/// for a long one.
fn choices_text(cpu: u32) -> String {
    let sizes = memory_sizes(cpu).unwrap_or_default();
    match sizes.as_slice() {
        [] => String::from("nothing"),
        [only] => only.to_string(),
        [first, second, .., last] if sizes.len() > 4 => {
            format!("{first} to {last} in steps of {}", second - first)
        }
        [init @ .., last] => {
            let init: Vec<String> = init.iter().map(u32::to_string).collect();
            format!("{} or {last}", init.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    #[test]
    fn the_default_is_the_smallest_size() {
        assert_eq!(FargateSize::default(), FargateSize::new(256, 512).unwrap());
        assert_eq!(FargateSize::all().next(), Some(FargateSize::SMALLEST));
    }

    #[test]
    fn a_256_mb_task_is_rejected_with_the_sizes_to_use() {
        let err = FargateSize::new(256, 256).unwrap_err();
        assert_eq!(
            err.to_string(),
            "256 MB is not a valid Fargate memory size for 0.25 vCPU: use 512, 1024 or 2048"
        );
    }

    #[test]
    fn a_long_range_is_described_by_its_ends_and_step() {
        let err = FargateSize::new(4096, 4096).unwrap_err();
        assert_eq!(
            err.to_string(),
            "4096 MB is not a valid Fargate memory size for 4 vCPU: use 8192 to 30720 in steps of 1024"
        );
        let err = FargateSize::new(512, 512).unwrap_err();
        assert_eq!(
            err.to_string(),
            "512 MB is not a valid Fargate memory size for 0.5 vCPU: use 1024, 2048, 3072 or 4096"
        );
    }

    #[test]
    fn an_unknown_cpu_value_is_rejected() {
        let err = FargateSize::new(768, 2048).unwrap_err();
        assert_eq!(err, FargateSizeError::Cpu { cpu: 768 });
        assert!(
            err.to_string()
                .starts_with("768 CPU units is not a valid Fargate CPU size")
        );
    }

    #[test]
    fn the_documented_ranges_are_exactly_the_valid_pairs() {
        let count = |cpu| memory_sizes(cpu).map(|v| v.len());
        assert_eq!(count(256), Some(3));
        assert_eq!(count(512), Some(4));
        assert_eq!(count(1024), Some(7));
        assert_eq!(count(2048), Some(13));
        assert_eq!(count(4096), Some(23));
        assert_eq!(count(8192), Some(12));
        assert_eq!(count(16384), Some(12));
        assert_eq!(FargateSize::all().count(), 74);
        assert!(FargateSize::new(8192, 20480).is_ok());
        assert!(
            FargateSize::new(8192, 17408).is_err(),
            "8 vCPU steps by 4096"
        );
        assert!(FargateSize::new(16384, 122880).is_ok());
        assert!(
            FargateSize::new(16384, 36864).is_err(),
            "16 vCPU steps by 8192"
        );
    }

    #[test]
    fn smallest_fitting_rounds_up_to_an_offered_size() {
        assert_eq!(
            FargateSize::smallest_fitting(256, 256),
            Some(FargateSize::SMALLEST)
        );
        assert_eq!(
            FargateSize::smallest_fitting(256, 3000),
            FargateSize::new(512, 3072).ok()
        );
        assert_eq!(FargateSize::smallest_fitting(16384, 200_000), None);
    }

    #[test]
    fn sizes_convert_to_priced_units() {
        let size = FargateSize::new(256, 512).unwrap();
        assert_eq!(size.vcpu(), dec!(0.25));
        assert_eq!(size.memory_gb(), dec!(0.5));
        assert_eq!(size.to_string(), "0.25 vCPU / 0.5 GB");
    }

    #[test]
    fn sizes_deserialize_only_when_valid() {
        let ok: FargateSize = serde_json::from_str(r#"{"cpu": 512, "memory": 1024}"#).unwrap();
        assert_eq!(ok, FargateSize::new(512, 1024).unwrap());
        let err =
            serde_json::from_str::<FargateSize>(r#"{"cpu": 256, "memory": 256}"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("256 MB is not a valid Fargate memory size")
        );
    }
}
