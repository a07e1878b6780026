//! Fargate capacity: the account's vCPU quotas (Service Quotas, or the
//! operator's override), cached, and the admission of a launch against what
//! the cluster's live tasks already hold.
//!
//! A launch that would exceed the quota is refused before RunTask with
//! [`LaunchError::Capacity`](crate::LaunchError::Capacity): the reconciler
//! shows the tenant as `capacity` and tries again on its next pass, which
//! starts it once a task has stopped. Without a known quota (no override,
//! and Service Quotas unreachable or not permitted) every launch is admitted
//! and RunTask's own refusal backs off like any failed launch.
//!
//! What does not live here: listing the tasks ([`observe`](super::observe)
//! counts their CPU) and RunTask itself ([`launcher`](super::launcher)).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::lock;

/// Service Quotas' service code of Fargate.
pub const SERVICE_CODE: &str = "fargate";
/// "Fargate On-Demand vCPU resource count".
pub const ON_DEMAND_VCPU_QUOTA: &str = "L-3032A538";
/// "Fargate Spot vCPU resource count".
pub const SPOT_VCPU_QUOTA: &str = "L-36FBB829";
/// How long a quota read from Service Quotas is trusted (quota increases are
/// rare and take hours to be granted).
pub const QUOTA_REFRESH: Duration = Duration::from_secs(900);
/// CPU units of one vCPU.
const UNITS_PER_VCPU: u32 = 1024;

/// CPU units (1024 = 1 vCPU) the cluster's live tasks hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InUse {
    pub on_demand: u32,
    pub spot: u32,
}

/// The account's Fargate vCPU quotas, where known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quotas {
    pub on_demand: Option<u32>,
    pub spot: Option<u32>,
}

impl Quotas {
    /// `self`, with each quota `other` knows replacing this one's.
    fn overridden_by(self, other: Quotas) -> Quotas {
        Quotas {
            on_demand: other.on_demand.or(self.on_demand),
            spot: other.spot.or(self.spot),
        }
    }
}

/// Where the quotas come from: Service Quotas in production, a fixed value
/// in tests (the emulator does not serve Fargate's quotas).
#[async_trait]
pub trait QuotaSource: Send + Sync + fmt::Debug {
    /// The account's Fargate vCPU quotas in the client's region.
    async fn fargate_vcpus(&self) -> Result<Quotas, String>;
}

/// Service Quotas' `GetServiceQuota` for Fargate's two vCPU quotas.
#[derive(Debug, Clone)]
pub struct ServiceQuotas {
    client: aws_sdk_servicequotas::Client,
}

impl ServiceQuotas {
    pub fn new(client: aws_sdk_servicequotas::Client) -> Self {
        Self { client }
    }

    async fn vcpus(&self, code: &str) -> Result<Option<u32>, String> {
        let out = self
            .client
            .get_service_quota()
            .service_code(SERVICE_CODE)
            .quota_code(code)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "Service Quotas GetServiceQuota {SERVICE_CODE}/{code}: {}",
                    aws_sdk_servicequotas::error::DisplayErrorContext(&e)
                )
            })?;
        // Quotas are whole vCPUs; a fraction (never seen) rounds down.
        Ok(out
            .quota()
            .and_then(|q| q.value())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| v.floor() as u32))
    }
}

#[async_trait]
impl QuotaSource for ServiceQuotas {
    async fn fargate_vcpus(&self) -> Result<Quotas, String> {
        Ok(Quotas {
            on_demand: self.vcpus(ON_DEMAND_VCPU_QUOTA).await?,
            spot: self.vcpus(SPOT_VCPU_QUOTA).await?,
        })
    }
}

/// What a launch of `needed` CPU units may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead: `needed` units are reserved until the next listing.
    Admitted,
    /// Wait: the quota is taken. The message says by how much.
    Full(String),
}

/// The quotas (cached) and what the launcher's tasks hold.
pub(super) struct Capacity {
    source: Option<Arc<dyn QuotaSource>>,
    overrides: Quotas,
    refresh: Duration,
    state: Mutex<CapacityState>,
}

#[derive(Debug, Default)]
struct CapacityState {
    fetched: Option<(Instant, Quotas)>,
    /// From the last listing, plus the launches admitted since.
    in_use: InUse,
}

impl fmt::Debug for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capacity")
            .field("source", &self.source)
            .field("overrides", &self.overrides)
            .finish_non_exhaustive()
    }
}

impl Capacity {
    pub(super) fn new(source: Option<Arc<dyn QuotaSource>>, overrides: Quotas) -> Self {
        Self {
            source,
            overrides,
            refresh: QUOTA_REFRESH,
            state: Mutex::new(CapacityState::default()),
        }
    }

    pub(super) fn source(&self) -> Option<Arc<dyn QuotaSource>> {
        self.source.clone()
    }

    pub(super) fn set_source(&mut self, source: Arc<dyn QuotaSource>) {
        self.source = Some(source);
        lock(&self.state).fetched = None;
    }

    /// The quotas: the overrides, else Service Quotas' (read at most once per
    /// refresh; a failed read is logged and leaves the quota unknown until
    /// the next refresh).
    pub(super) async fn quotas(&self) -> Quotas {
        let known = Quotas {
            on_demand: self.overrides.on_demand,
            spot: self.overrides.spot,
        };
        if known.on_demand.is_some() && known.spot.is_some() {
            return known;
        }
        let Some(source) = &self.source else {
            return known;
        };
        if let Some((at, quotas)) = lock(&self.state).fetched
            && at.elapsed() < self.refresh
        {
            return quotas.overridden_by(known);
        }
        let fetched = match source.fargate_vcpus().await {
            Ok(quotas) => {
                tracing::info!(
                    on_demand_vcpus = ?quotas.on_demand,
                    spot_vcpus = ?quotas.spot,
                    "read the account's Fargate vCPU quotas"
                );
                quotas
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    "cannot read the account's Fargate vCPU quotas; launches are not held back \
                     until it can (set --ecs-fargate-vcpu-quota to say it)"
                );
                Quotas::default()
            }
        };
        lock(&self.state).fetched = Some((Instant::now(), fetched));
        fetched.overridden_by(known)
    }

    /// What the last listing found the live tasks hold.
    pub(super) fn observed(&self, in_use: InUse) {
        lock(&self.state).in_use = in_use;
    }

    pub(super) fn in_use(&self) -> InUse {
        lock(&self.state).in_use
    }

    /// Reserves `needed` CPU units on Spot or On-Demand if the quota allows.
    pub(super) async fn admit(&self, spot: bool, needed: u32) -> Admission {
        let quotas = self.quotas().await;
        let quota = if spot { quotas.spot } else { quotas.on_demand };
        let mut state = lock(&self.state);
        let used = if spot {
            &mut state.in_use.spot
        } else {
            &mut state.in_use.on_demand
        };
        if let Some(quota) = quota {
            let limit = quota.saturating_mul(UNITS_PER_VCPU);
            if used.saturating_add(needed) > limit {
                return Admission::Full(format!(
                    "the account's Fargate {} vCPU quota is {quota} vCPU, {} are in use and this \
                     worker needs {}; it starts when a task stops or the quota is raised",
                    if spot { "Spot" } else { "On-Demand" },
                    vcpus(*used),
                    vcpus(needed),
                ));
            }
        }
        *used = used.saturating_add(needed);
        Admission::Admitted
    }

    /// Gives back a reservation whose launch failed.
    pub(super) fn release(&self, spot: bool, needed: u32) {
        let mut state = lock(&self.state);
        let used = if spot {
            &mut state.in_use.spot
        } else {
            &mut state.in_use.on_demand
        };
        *used = used.saturating_sub(needed);
    }
}

/// CPU units as vCPUs in words: `0.25`, `2`.
fn vcpus(units: u32) -> String {
    let whole = units / UNITS_PER_VCPU;
    let hundredths = (units % UNITS_PER_VCPU) * 100 / UNITS_PER_VCPU;
    if hundredths == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{hundredths:02}")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Debug)]
    struct Fixed {
        quotas: Result<Quotas, String>,
        reads: AtomicUsize,
    }

    #[async_trait]
    impl QuotaSource for Fixed {
        async fn fargate_vcpus(&self) -> Result<Quotas, String> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.quotas.clone()
        }
    }

    fn source(quotas: Result<Quotas, String>) -> Arc<Fixed> {
        Arc::new(Fixed {
            quotas,
            reads: AtomicUsize::new(0),
        })
    }

    #[test]
    fn cpu_units_read_as_vcpus() {
        assert_eq!(vcpus(256), "0.25");
        assert_eq!(vcpus(2048), "2");
        assert_eq!(vcpus(1536), "1.50");
    }

    #[tokio::test]
    async fn a_launch_past_the_quota_waits_and_one_within_it_reserves() {
        let quotas = source(Ok(Quotas {
            on_demand: Some(1),
            spot: Some(4),
        }));
        let capacity = Capacity::new(Some(quotas.clone()), Quotas::default());
        capacity.observed(InUse {
            on_demand: 512,
            spot: 0,
        });
        assert_eq!(capacity.admit(false, 256).await, Admission::Admitted);
        assert_eq!(capacity.admit(false, 256).await, Admission::Admitted);
        let Admission::Full(message) = capacity.admit(false, 256).await else {
            panic!("a fifth quarter vCPU fits no 1 vCPU quota");
        };
        assert_eq!(
            message,
            "the account's Fargate On-Demand vCPU quota is 1 vCPU, 1 are in use and this worker \
             needs 0.25; it starts when a task stops or the quota is raised"
        );
        // Spot has a quota of its own.
        assert_eq!(capacity.admit(true, 1024).await, Admission::Admitted);
        // A failed launch gives its reservation back.
        capacity.release(false, 256);
        assert_eq!(capacity.admit(false, 256).await, Admission::Admitted);
        // The quota was read once, then cached.
        assert_eq!(quotas.reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn capacity_frees_when_a_listing_finds_fewer_tasks() {
        let capacity = Capacity::new(
            None,
            Quotas {
                on_demand: Some(1),
                spot: None,
            },
        );
        capacity.observed(InUse {
            on_demand: 1024,
            spot: 0,
        });
        assert!(matches!(
            capacity.admit(false, 256).await,
            Admission::Full(_)
        ));
        capacity.observed(InUse::default());
        assert_eq!(capacity.admit(false, 256).await, Admission::Admitted);
    }

    #[tokio::test]
    async fn the_override_wins_over_service_quotas() {
        let quotas = source(Ok(Quotas {
            on_demand: Some(100),
            spot: Some(100),
        }));
        let capacity = Capacity::new(
            Some(quotas.clone()),
            Quotas {
                on_demand: Some(2),
                spot: None,
            },
        );
        assert_eq!(
            capacity.quotas().await,
            Quotas {
                on_demand: Some(2),
                spot: Some(100)
            }
        );
    }

    #[tokio::test]
    async fn an_unknown_quota_admits_every_launch_and_is_read_again_after_the_refresh() {
        let quotas = source(Err("AccessDenied".into()));
        let mut capacity = Capacity::new(Some(quotas.clone()), Quotas::default());
        capacity.refresh = Duration::ZERO;
        capacity.observed(InUse {
            on_demand: 1_000_000,
            spot: 0,
        });
        assert_eq!(capacity.admit(false, 256).await, Admission::Admitted);
        assert_eq!(capacity.admit(false, 256).await, Admission::Admitted);
        assert_eq!(quotas.reads.load(Ordering::SeqCst), 2);
    }
}
