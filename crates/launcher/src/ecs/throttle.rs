//! Client-side throttling of ECS calls: a token bucket per API class, sized
//! from ECS's documented account limits ([`RateLimits`]), and retries of
//! throttling, 5xx and transport errors with jittered exponential backoff
//! ([`RetryPolicy`]). `Throttle::call` is the one way the launcher calls
//! ECS.
//!
//! What does not live here: which call is made and what its answer means
//! (the launcher and [`observe`](super::observe)). Idempotency of a retried
//! RunTask is the clientToken's job, not the retry loop's.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use rand::Rng;
use tokio::time::Instant;

use super::{LAUNCHER, failed, lock};
use crate::LaunchError;

/// How a throttled or failed call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Calls in all, the first included.
    pub max_attempts: u32,
    /// The backoff before the second call; it doubles after each.
    pub base_delay: Duration,
    /// The most the backoff grows to.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// "Full jitter": a random delay up to the exponential bound, so that
    /// clients throttled together do not retry together.
    fn backoff(&self, attempt: u32) -> Duration {
        let bound = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max_delay);
        let millis = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }
}

/// A token bucket: `burst` calls at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub burst: u32,
    pub per_second: u32,
}

/// Client-side rate limits per ECS API class, from ECS's documented
/// account-level limits (us-east-1 defaults, DESIGN.md "Scale"): RunTask and
/// StopTask share a bucket (burst 100, 40/s); ListTasks, DescribeTasks and
/// the task-definition reads another (burst 100, 20/s);
/// RegisterTaskDefinition has its own (burst 20, 1/s). A RunTask also draws
/// its task from Fargate's launch rate (burst 100, 20/s): without that
/// bucket, past the burst every other RunTask was throttled by ECS and
/// retried (the ECS fleet benchmark, docs/benchmarks.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub run_stop: Bucket,
    pub describe: Bucket,
    pub register: Bucket,
    pub launch: Bucket,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            run_stop: Bucket {
                burst: 100,
                per_second: 40,
            },
            describe: Bucket {
                burst: 100,
                per_second: 20,
            },
            register: Bucket {
                burst: 20,
                per_second: 1,
            },
            launch: Bucket {
                burst: 100,
                per_second: 20,
            },
        }
    }
}

/// The API class a call is counted against.
#[derive(Debug, Clone, Copy)]
pub(super) enum Api {
    /// RunTask: the RunTask/StopTask bucket and Fargate's launch rate.
    Launch,
    RunStop,
    Describe,
    Register,
}

/// The buckets of every API class and the retry policy.
#[derive(Debug)]
pub(super) struct Throttle {
    retry: RetryPolicy,
    run_stop: TokenBucket,
    describe: TokenBucket,
    register: TokenBucket,
    launch: TokenBucket,
}

impl Throttle {
    pub(super) fn new(limits: RateLimits, retry: RetryPolicy) -> Self {
        Self {
            retry,
            run_stop: TokenBucket::new(limits.run_stop),
            describe: TokenBucket::new(limits.describe),
            register: TokenBucket::new(limits.register),
            launch: TokenBucket::new(limits.launch),
        }
    }

    pub(super) fn set_retry_policy(&mut self, retry: RetryPolicy) {
        self.retry = retry;
    }

    pub(super) fn set_rate_limits(&mut self, limits: RateLimits) {
        *self = Self::new(limits, self.retry);
    }

    /// One API call with the class's rate limit, retrying throttling, 5xx
    /// and transport errors with jittered backoff.
    pub(super) async fn call<T, E, F, Fut>(
        &self,
        api: Api,
        operation: &'static str,
        mut send: F,
    ) -> Result<T, LaunchError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let (bucket, launch) = match api {
            Api::Launch => (&self.run_stop, Some(&self.launch)),
            Api::RunStop => (&self.run_stop, None),
            Api::Describe => (&self.describe, None),
            Api::Register => (&self.register, None),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            bucket.acquire().await;
            if let Some(launch) = launch {
                launch.acquire().await;
            }
            let err = match send().await {
                Ok(out) => return Ok(out),
                Err(err) => err,
            };
            let kind = classify(&err);
            let message = describe_error(&err);
            if kind == Retry::No {
                return Err(failed(operation, message));
            }
            if attempt >= self.retry.max_attempts {
                let message = format!("{message} (gave up after {attempt} attempts)");
                return Err(if kind == Retry::Throttled {
                    LaunchError::Throttled {
                        launcher: LAUNCHER,
                        operation,
                        message,
                    }
                } else {
                    failed(operation, message)
                });
            }
            let delay = self.retry.backoff(attempt);
            tracing::debug!(operation, attempt, ?delay, error = %message, "retrying an ECS call");
            tokio::time::sleep(delay).await;
        }
    }
}

/// Tokens are counted in thousandths, so the refill needs no floats.
#[derive(Debug)]
struct TokenBucket {
    capacity: u128,
    per_second: u128,
    state: Mutex<(u128, Instant)>,
}

const MILLI: u128 = 1000;

impl TokenBucket {
    fn new(bucket: Bucket) -> Self {
        let capacity = u128::from(bucket.burst.max(1)) * MILLI;
        Self {
            capacity,
            per_second: u128::from(bucket.per_second.max(1)),
            state: Mutex::new((capacity, Instant::now())),
        }
    }

    async fn acquire(&self) {
        loop {
            let wait = {
                let mut state = lock(&self.state);
                let now = Instant::now();
                let refill = now.duration_since(state.1).as_nanos() * self.per_second * MILLI
                    / 1_000_000_000;
                if refill > 0 {
                    state.0 = (state.0 + refill).min(self.capacity);
                    state.1 = now;
                }
                if state.0 >= MILLI {
                    state.0 -= MILLI;
                    return;
                }
                let nanos = (MILLI - state.0) * 1_000_000_000 / (self.per_second * MILLI);
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
                    + Duration::from_micros(100)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    No,
    Throttled,
    Transient,
}

/// Error codes AWS services use for throttling.
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
];

fn classify<E: ProvideErrorMetadata>(err: &SdkError<E>) -> Retry {
    let status = err.raw_response().map(|r| r.status().as_u16());
    match err {
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code();
            if code.is_some_and(|c| THROTTLING_CODES.contains(&c)) || status == Some(429) {
                Retry::Throttled
            } else if code == Some("ServerException") || status.is_some_and(|s| s >= 500) {
                Retry::Transient
            } else {
                Retry::No
            }
        }
        SdkError::TimeoutError(_) => Retry::Transient,
        SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_timeout() => {
            Retry::Transient
        }
        // An answer the SDK could not parse (an empty 429 or 503 from a proxy).
        SdkError::ResponseError(_) if status == Some(429) => Retry::Throttled,
        SdkError::ResponseError(_) if status.is_some_and(|s| s >= 500) => Retry::Transient,
        _ => Retry::No,
    }
}

/// The error code and message AWS sent, with the HTTP status; or the
/// transport error. ECS errors hold no secret values.
fn describe_error<E>(err: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = err
        .raw_response()
        .map(|r| format!(" (HTTP {})", r.status().as_u16()))
        .unwrap_or_default();
    match err {
        SdkError::ServiceError(ctx) => {
            let e = ctx.err();
            match (e.code(), e.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}{status}"),
                (Some(code), None) => format!("{code}{status}"),
                _ => format!("{}{status}", DisplayErrorContext(err)),
            }
        }
        _ => format!("{}{status}", DisplayErrorContext(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::operation::run_task::RunTaskError;

    #[tokio::test(start_paused = true)]
    async fn run_task_is_paced_at_fargates_launch_rate_as_well_as_its_api_limit() {
        let limits = RateLimits {
            run_stop: Bucket {
                burst: 10,
                per_second: 40,
            },
            launch: Bucket {
                burst: 2,
                per_second: 1,
            },
            ..RateLimits::default()
        };
        let throttle = Throttle::new(limits, RetryPolicy::default());
        let start = tokio::time::Instant::now();
        for _ in 0..4 {
            throttle
                .call(Api::Launch, "RunTask", || async {
                    Ok::<(), SdkError<RunTaskError>>(())
                })
                .await
                .unwrap();
        }
        // Two launches at once, two more at one a second.
        let launches = start.elapsed();
        assert!(
            launches >= Duration::from_millis(1900) && launches <= Duration::from_millis(2500),
            "{launches:?}"
        );
        // StopTask draws on the API bucket only: ten at once.
        let start = tokio::time::Instant::now();
        for _ in 0..6 {
            throttle
                .call(Api::RunStop, "StopTask", || async {
                    Ok::<(), SdkError<RunTaskError>>(())
                })
                .await
                .unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_millis(1),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn the_backoff_stays_within_its_bound() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        };
        for attempt in 1..10 {
            assert!(policy.backoff(attempt) <= Duration::from_millis(50));
        }
        assert!(policy.backoff(1) <= Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn the_token_bucket_lets_a_burst_through_then_paces_at_the_refill_rate() {
        let bucket = TokenBucket::new(Bucket {
            burst: 3,
            per_second: 2,
        });
        let start = tokio::time::Instant::now();
        for _ in 0..3 {
            bucket.acquire().await;
        }
        assert!(
            start.elapsed() < Duration::from_millis(1),
            "the burst waits for nothing"
        );
        for _ in 0..4 {
            bucket.acquire().await;
        }
        // Four more at two a second take about two seconds.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1900) && elapsed <= Duration::from_millis(2500),
            "{elapsed:?}"
        );
    }
}
