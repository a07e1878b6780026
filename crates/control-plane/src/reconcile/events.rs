//! The leader's consumer of task state changes (ECS events through SQS):
//! it long-polls the source, hands each exit to the next pass (the inbox),
//! and wakes the reconciler.
//!
//! **Leader only.** The consumer runs while its replica holds the reconciler
//! lock, and ends when it loses it. A standby never receives, so a message
//! waits in the queue for whoever leads; one received by a leader that died
//! before deleting it is delivered again after the queue's visibility
//! timeout. Counting stays exact either way, because a pass records an exit
//! by instance id (`repo::exits`) and counts it only if the row is new: a
//! message delivered twice, an exit seen by both an event and the listing,
//! or by two successive leaders, is one exit.
//!
//! **Deletion.** A message about an exit is deleted only after a pass has
//! recorded that exit (or found it recorded); a message about anything else
//! of ours (a task that started) is deleted once it woke the reconciler; a
//! well-formed event about another cluster's task is deleted at once. A
//! malformed message is logged and left: the queue's redrive policy moves it
//! to the dead-letter queue after `maxReceiveCount` receives.
//!
//! What does not live here: reading a message (the launcher's
//! `ecs::events`), and what an exit does (the pass).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use polybot_launcher::{EventContent, Instance, Phase, TaskEvents};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long the consumer waits after the source failed (a network error, a
/// denied permission) before it receives again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// An exit an event brought, with its message's receipt.
#[derive(Debug, Clone)]
pub struct Pending {
    pub instance: Instance,
    pub receipt: String,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Receives until `stop`: exits go to `inbox` for the next pass, and every
/// event of ours wakes the reconciler.
pub(super) async fn consume(
    source: Arc<dyn TaskEvents>,
    inbox: Arc<Mutex<Vec<Pending>>>,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    tracing::info!(?source, "consuming task state-change events");
    loop {
        let received = tokio::select! {
            _ = stop.cancelled() => return,
            received = source.receive() => received,
        };
        match received {
            Ok(events) => {
                if take(source.as_ref(), &inbox, events).await > 0 {
                    wake.notify_one();
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "receiving task events failed; the listing still runs");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RETRY_AFTER) => {}
                }
            }
        }
    }
}

/// Sorts one batch: exits to `inbox`, other events of ours and events of
/// others deleted, malformed ones left. Returns how many were ours.
pub(super) async fn take(
    source: &dyn TaskEvents,
    inbox: &Mutex<Vec<Pending>>,
    events: Vec<polybot_launcher::TaskEvent>,
) -> usize {
    let mut handled = Vec::new();
    let mut ours = 0;
    for event in events {
        match event.content {
            EventContent::Instance(instance) => {
                ours += 1;
                tracing::debug!(task = %instance.id, tenant = %instance.tenant, phase = ?instance.phase, "task event");
                if matches!(instance.phase, Phase::Exited(_)) {
                    lock(inbox).push(Pending {
                        instance,
                        receipt: event.receipt,
                    });
                } else {
                    handled.push(event.receipt);
                }
            }
            EventContent::Ignored(why) => {
                tracing::debug!(message = %event.message_id, why, "task event ignored");
                handled.push(event.receipt);
            }
            EventContent::Malformed(why) => {
                tracing::warn!(
                    message = %event.message_id,
                    why,
                    "a malformed task event is left for the dead-letter queue"
                );
            }
        }
    }
    if !handled.is_empty()
        && let Err(err) = source.delete(&handled).await
    {
        tracing::warn!(error = %err, "deleting handled task events failed; they come back and change nothing");
    }
    ours
}

/// `actual` with the exits events brought: an exit replaces the listed
/// instance of the same id (the listing may lag the event, and the event is
/// ECS's own account of the stop), and is added if the listing no longer
/// has the task.
pub(super) fn merge(actual: &mut Vec<Instance>, pending: &[Pending]) {
    for p in pending {
        match actual.iter_mut().find(|i| i.id == p.instance.id) {
            Some(listed) => *listed = p.instance.clone(),
            None => actual.push(p.instance.clone()),
        }
    }
}

/// Deletes the messages of `pending` (their exits are recorded).
pub(super) async fn delete(source: &dyn TaskEvents, pending: &[Pending]) {
    let receipts: Vec<String> = pending.iter().map(|p| p.receipt.clone()).collect();
    if let Err(err) = source.delete(&receipts).await {
        tracing::warn!(error = %err, "deleting recorded task events failed; they come back and change nothing");
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use polybot_core::TenantId;
    use polybot_launcher::Exit;

    use super::*;

    fn instance(id: &str, phase: Phase) -> Instance {
        Instance {
            id: id.into(),
            tenant: TenantId::from_uuid(Default::default()),
            spec_hash: "h".into(),
            phase,
            started_at: Utc::now(),
        }
    }

    fn exited() -> Phase {
        Phase::Exited(Exit {
            code: Some(1),
            reason: "exit 1".into(),
            requested: false,
            at: Utc::now(),
        })
    }

    #[test]
    fn an_event_exit_replaces_the_listed_task_and_adds_a_forgotten_one() {
        let mut actual = vec![
            instance("running-then-stopped", Phase::Running),
            instance("listed-stopped", Phase::Stopping),
            instance("untouched", Phase::Running),
        ];
        let pending: Vec<Pending> = ["running-then-stopped", "listed-stopped", "forgotten"]
            .into_iter()
            .map(|id| Pending {
                instance: instance(id, exited()),
                receipt: format!("r-{id}"),
            })
            .collect();
        merge(&mut actual, &pending);
        let phases: Vec<(&str, bool)> = actual
            .iter()
            .map(|i| (i.id.as_str(), i.phase.is_live()))
            .collect();
        assert_eq!(
            phases,
            [
                ("running-then-stopped", false),
                ("listed-stopped", false),
                ("untouched", true),
                ("forgotten", false),
            ]
        );
    }
}
