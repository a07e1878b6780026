//! A [`Launcher`] that counts its calls by outcome in [`Metrics`].

use std::sync::Arc;

use async_trait::async_trait;
use polybot_launcher::{Instance, LaunchError, LaunchSpec, Launcher};

use super::Metrics;

/// A [`Launcher`] that counts its calls by outcome.
#[derive(Debug)]
pub struct InstrumentedLauncher {
    inner: Arc<dyn Launcher>,
    metrics: Metrics,
}

impl InstrumentedLauncher {
    pub fn wrap(inner: Arc<dyn Launcher>, metrics: Metrics) -> Arc<dyn Launcher> {
        Arc::new(Self { inner, metrics })
    }

    fn count<T>(&self, operation: &'static str, result: &Result<T, LaunchError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(LaunchError::Throttled { .. }) => "throttled",
            Err(LaunchError::Capacity { .. }) => "capacity",
            Err(_) => "error",
        };
        self.metrics
            .launcher_call(self.inner.kind(), operation, outcome);
    }
}

#[async_trait]
impl Launcher for InstrumentedLauncher {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn injects_secrets(&self) -> bool {
        self.inner.injects_secrets()
    }

    fn set_worker_size(
        &self,
        tenant: polybot_core::TenantId,
        size: Option<(u32, u32)>,
    ) -> Result<(), LaunchError> {
        self.inner.set_worker_size(tenant, size)
    }

    fn runs_images(&self) -> bool {
        self.inner.runs_images()
    }

    fn set_worker_image(
        &self,
        tenant: polybot_core::TenantId,
        image: Option<&str>,
    ) -> Result<(), LaunchError> {
        self.inner.set_worker_image(tenant, image)
    }

    async fn ensure_spec(&self, spec: &LaunchSpec) -> Result<(), LaunchError> {
        let result = self.inner.ensure_spec(spec).await;
        self.count("ensure_spec", &result);
        result
    }

    async fn list(&self) -> Result<Vec<Instance>, LaunchError> {
        let result = self.inner.list().await;
        self.count("list", &result);
        result
    }

    async fn start(&self, spec: &LaunchSpec) -> Result<Instance, LaunchError> {
        let result = self.inner.start(spec).await;
        self.count("start", &result);
        result
    }

    async fn stop(&self, instance: &Instance, reason: &str) -> Result<(), LaunchError> {
        let result = self.inner.stop(instance, reason).await;
        self.count("stop", &result);
        result
    }
}
