//! Metered usage to Stripe: one replica (an advisory lock apart from the
//! reconciler's and the alert evaluator's) reports, for each tenant on a
//! metered plan with a Stripe customer, each whole UTC day's worker-minutes,
//! orders and API calls as Stripe meter events.
//!
//! Exactly once: each event's `identifier` is derived from the tenant, the
//! day and the metric, so Stripe drops a resend; each sent metric is
//! recorded (`usage_reports`) before the next is sent and never sent again;
//! `tenant_billing.reported_until` moves past a day only once all of its
//! metrics are recorded. A reporter that dies between sending and recording
//! resends the same identifier, which Stripe ignores. A day is reported
//! [`SETTLE`] after it ends, once the counters feeding it (API calls, worker
//! availability) have been written. What is counted lives in
//! `repo::billing::usage`; the HTTP call in [`super::stripe`].

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use polybot_core::TenantId;
use polybot_store::repo::billing::{self, Metered};
use polybot_store::{Db, DbError};
use tokio_util::sync::CancellationToken;

use super::stripe::{MeterEvent, Stripe, StripeError};

/// The advisory-lock key of the usage reporter.
pub const REPORTER_KEY: i64 = 0x706f_6c79_626f_7415;

/// How often the leader looks for days to report.
pub const REPORT_EVERY: Duration = Duration::from_secs(300);

/// How long after a day ends it is reported.
pub const SETTLE: Duration = Duration::from_secs(1800);

/// Stripe refuses meter events older than 35 days; older days are skipped.
const MAX_DAYS_BACK: i64 = 30;

/// A reported quantity: its `usage_reports.metric` and its Stripe meter's
/// `event_name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Minutes the worker ran (with a fresh heartbeat), at the plan's size.
    WorkerMinutes,
    /// Orders the worker sent (trades recorded).
    Orders,
    /// Requests made with the tenant's tokens.
    ApiCalls,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::WorkerMinutes, Metric::Orders, Metric::ApiCalls];

    pub const fn as_str(self) -> &'static str {
        match self {
            Metric::WorkerMinutes => "worker_minutes",
            Metric::Orders => "orders",
            Metric::ApiCalls => "api_calls",
        }
    }

    /// The `event_name` of the Stripe meter it is reported to.
    pub const fn event_name(self) -> &'static str {
        match self {
            Metric::WorkerMinutes => "polybot_worker_minutes",
            Metric::Orders => "polybot_orders",
            Metric::ApiCalls => "polybot_api_calls",
        }
    }

    fn of(self, usage: &billing::Usage) -> i64 {
        match self {
            // To the nearest minute.
            Metric::WorkerMinutes => (usage.worker_up_ms + 30_000) / 60_000,
            Metric::Orders => usage.orders,
            Metric::ApiCalls => usage.api_calls,
        }
    }
}

/// The meter event identifier of `tenant`'s `metric` on `day`: the same on
/// every attempt, so that Stripe counts it once.
pub fn identifier(tenant: TenantId, day: NaiveDate, metric: Metric) -> String {
    format!("polybot-{tenant}-{day}-{}", metric.as_str())
}

/// The whole days after `reported_until` that can be reported at `now`
/// (ended at least [`SETTLE`] ago), oldest first, none older than
/// [`MAX_DAYS_BACK`].
pub fn due_days(reported_until: DateTime<Utc>, now: DateTime<Utc>) -> Vec<NaiveDate> {
    let settle = chrono::Duration::from_std(SETTLE).unwrap_or_default();
    let oldest = (now - chrono::Duration::days(MAX_DAYS_BACK)).date_naive();
    let mut day = reported_until.date_naive().max(oldest);
    let mut days = Vec::new();
    while let Some(next) = day.succ_opt() {
        if start_of(next) + settle > now {
            break;
        }
        days.push(day);
        day = next;
    }
    days
}

fn start_of(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// What went wrong reporting usage.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("reporting tenant {tenant}'s usage of {day}: {source}")]
    Stripe {
        tenant: TenantId,
        day: NaiveDate,
        #[source]
        source: StripeError,
    },
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReportSummary {
    pub tenants: usize,
    pub days: usize,
    pub events: usize,
    pub errors: usize,
}

/// Reports metered usage to Stripe.
#[derive(Debug, Clone)]
pub struct Reporter {
    db: Db,
    stripe: Stripe,
}

impl Reporter {
    pub fn new(db: Db, stripe: Stripe) -> Self {
        Self { db, stripe }
    }

    /// Stands by until it holds the reporter lock, then reports every
    /// [`REPORT_EVERY`] until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            let lock = tokio::select! {
                () = stop.cancelled() => return,
                lock = self.db.try_lead(REPORTER_KEY) => lock,
            };
            let mut lock = match lock {
                Ok(Some(lock)) => lock,
                Ok(None) => {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(5)) => continue,
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot take the usage reporter lock; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(5)) => continue,
                    }
                }
            };
            loop {
                if !lock.still_held().await {
                    tracing::warn!("lost the usage reporter lock; standing by");
                    break;
                }
                match self.pass(Utc::now()).await {
                    Ok(summary) if summary.events > 0 || summary.errors > 0 => {
                        tracing::info!(?summary, "reported metered usage to Stripe");
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "reporting metered usage failed"),
                }
                tokio::select! {
                    () = stop.cancelled() => {
                        lock.release().await;
                        return;
                    }
                    () = tokio::time::sleep(REPORT_EVERY) => {}
                }
            }
        }
    }

    /// Reports every metered tenant's due days as of `now`. One tenant's
    /// failure (Stripe down, a refused event) is logged and counted; the
    /// others are still reported, and the failed day is retried next pass.
    pub async fn pass(&self, now: DateTime<Utc>) -> Result<ReportSummary, DbError> {
        let mut op = self.db.operator().await?;
        let tenants = billing::metered(&mut op).await?;
        op.commit().await?;
        let mut summary = ReportSummary {
            tenants: tenants.len(),
            ..ReportSummary::default()
        };
        for tenant in tenants {
            match self.report_tenant(&tenant, now, &mut summary).await {
                Ok(()) => {}
                Err(err) => {
                    summary.errors += 1;
                    tracing::warn!(error = %err, "metered usage not reported; retrying next pass");
                }
            }
        }
        Ok(summary)
    }

    async fn report_tenant(
        &self,
        metered: &Metered,
        now: DateTime<Utc>,
        summary: &mut ReportSummary,
    ) -> Result<(), ReportError> {
        let tenant = TenantId::from_uuid(metered.tenant_id);
        let Some(reported_until) = metered.reported_until else {
            // Metering begins today: earlier days were not on this plan.
            let mut tx = self.db.tenant(tenant).await?;
            billing::set_reported_until(&mut tx, start_of(now.date_naive())).await?;
            tx.commit().await?;
            return Ok(());
        };
        for day in due_days(reported_until, now) {
            let mut tx = self.db.tenant(tenant).await?;
            let next = start_of(day.succ_opt().unwrap_or(day));
            let usage = billing::usage(&mut tx, start_of(day), next).await?;
            let done = billing::reports(&mut tx, day).await?;
            tx.commit().await?;
            for metric in Metric::ALL {
                let value = metric.of(&usage);
                if value <= 0
                    || done
                        .iter()
                        .any(|r| r.day == day && r.metric == metric.as_str())
                {
                    continue;
                }
                let id = identifier(tenant, day, metric);
                let event = MeterEvent {
                    event_name: metric.event_name(),
                    customer: &metered.stripe_customer_id,
                    value: value.unsigned_abs(),
                    // Inside the day, so Stripe bills it to the period the day belongs to.
                    at: next - chrono::Duration::seconds(1),
                    identifier: &id,
                };
                self.stripe
                    .send_meter_event(&event)
                    .await
                    .map_err(|source| ReportError::Stripe {
                        tenant,
                        day,
                        source,
                    })?;
                let mut tx = self.db.tenant(tenant).await?;
                billing::record_report(&mut tx, day, metric.as_str(), value, &id).await?;
                tx.commit().await?;
                summary.events += 1;
            }
            let mut tx = self.db.tenant(tenant).await?;
            billing::set_reported_until(&mut tx, next).await?;
            tx.commit().await?;
            summary.days += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap_or_default()
    }

    #[test]
    fn a_day_is_due_once_it_has_settled() {
        let from = at("2027-01-10T00:00:00Z");
        assert_eq!(due_days(from, at("2027-01-11T00:10:00Z")), vec![]);
        let day = |d: u32| NaiveDate::from_ymd_opt(2027, 1, d).unwrap_or_default();
        assert_eq!(due_days(from, at("2027-01-11T00:30:00Z")), vec![day(10)]);
        assert_eq!(
            due_days(from, at("2027-01-13T09:00:00Z")),
            vec![day(10), day(11), day(12)]
        );
    }

    #[test]
    fn days_stripe_would_refuse_are_skipped() {
        let days = due_days(at("2026-01-01T00:00:00Z"), at("2027-01-31T12:00:00Z"));
        assert_eq!(days.len(), 30);
        assert_eq!(days.first().copied(), NaiveDate::from_ymd_opt(2027, 1, 1));
    }

    #[test]
    fn an_identifier_names_the_tenant_day_and_metric() {
        let tenant = TenantId::new();
        let day = NaiveDate::from_ymd_opt(2027, 1, 10).unwrap_or_default();
        let id = identifier(tenant, day, Metric::ApiCalls);
        assert_eq!(id, format!("polybot-{tenant}-2027-01-10-api_calls"));
        assert!(id.len() <= 100, "Stripe's limit");
        assert_ne!(id, identifier(tenant, day, Metric::Orders));
    }

    #[test]
    fn worker_time_is_reported_to_the_nearest_minute() {
        let usage = |ms| billing::Usage {
            worker_up_ms: ms,
            ..billing::Usage::default()
        };
        assert_eq!(Metric::WorkerMinutes.of(&usage(89_999)), 1);
        assert_eq!(Metric::WorkerMinutes.of(&usage(90_000)), 2);
        assert_eq!(Metric::WorkerMinutes.of(&usage(3_600_000)), 60);
    }
}
