//! The worker's main loop: events from the source into the engine, decisions
//! into the batch, the batch into the database, health into heartbeats.
//!
//! One task, one `select!`, in priority order: SIGTERM (the cancellation
//! token) first, then the heartbeat, then the batch's flush timer, then the
//! next event. The source is paused while the batch is backed up (the
//! database is down), so memory stays bounded whatever the feed does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use polybot_core::worker::{
    BreakerPosition, EngineCounters, FeedStatus, PnlSummary, PositionSummary, SourceStatus,
    StrategyHealth, StrategyPnlSummary, StrategyStatus, WorkerHealth, WorkerPhase, WrittenCounters,
};
use polybot_core::{Mode, TenantId};
use polybot_engine::{BreakerState, Clock, Engine, EngineConfig, EventClock, PortfolioSnapshot};
use polybot_store::Db;
use polybot_store::repo::audit;
use polybot_venues::execution::ExecutionKind;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::execution::{DbFence, Execution};
use crate::live::LiveSource;
use crate::persist::{CARRIED, Recorder};
use crate::source::{EventSource, ReplaySource, SystemClock, TickSource};
use crate::{
    TenantConfig, WorkerConfig, WorkerError, final_heartbeat, heartbeat, load_config, take_lease,
};

/// Rows waiting to be written above which the source is paused.
const BACKLOG_LIMIT: usize = 20_000;
/// How long SIGTERM's final flush may take (ECS kills at 30 s).
const FINAL_FLUSH: Duration = Duration::from_secs(20);
/// How long the final heartbeat may take.
const FINAL_HEARTBEAT: Duration = Duration::from_secs(5);

/// Why the engine sees no market data, when no recording is given.
pub const NO_FEED: &str = "no market data feed: POLYBOT_LIVE_DATA=0 turned the venues' live \
     public data off; unset it to trade on them, or set POLYBOT_REPLAY to trade on a recording";

/// The `tracing` target of the worker's database write timings
/// (`POLYBOT_LOG=polybot_worker::writes=debug`): one event per heartbeat and
/// per non-empty flush, with its latency, which the fleet benchmark reads
/// from the workers' logs for the fleet's p99.
pub const WRITES_TARGET: &str = "polybot_worker::writes";

fn log_write(what: &'static str, started: std::time::Instant) {
    tracing::debug!(
        target: WRITES_TARGET,
        write = what,
        micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "database write"
    );
}

/// Runs the worker until `stop`, until it is fenced, or (with
/// `POLYBOT_REPLAY_EXIT=1`) until its recording is played out.
pub async fn run(config: WorkerConfig, stop: CancellationToken) -> Result<(), WorkerError> {
    let tenant = config.tenant;
    let db = Db::connect_worker(config.database.clone(), tenant, config.claim.clone(), 2)
        .await
        .context("connecting to the database as the tenant's worker")?;
    let ttl = config.heartbeat * 3;
    let epoch = take_lease(&db, tenant, ttl).await?;
    tracing::info!(%tenant, epoch, mode = %config.mode, venues = ?config.keys.venues().collect::<Vec<_>>(), "worker holds the lease");
    let tenant_config = load_config(&db, tenant).await?;
    tracing::info!(%tenant, name = %tenant_config.name, "configuration loaded");
    let mut ctx = Ctx {
        db,
        tenant,
        epoch,
        ttl,
        spec_hash: config.spec_hash.clone(),
        mode: config.mode,
        kill_switch: tenant_config.risk.kill_switch,
        heartbeat: config.heartbeat,
        flush_every: config.flush_every,
        flush_rows: config.flush_rows,
        last_error: None,
        errors: 0,
        poll_every: config.execution.poll_every,
        venue_heartbeat_every: config.execution.venue_heartbeat_every,
    };
    let engine_config = EngineConfig {
        strategies: tenant_config.strategies.clone(),
        risk: tenant_config.risk.clone(),
        balances: config.paper_balances.clone(),
    };
    let fence = Arc::new(DbFence {
        db: ctx.db.clone(),
        tenant,
        epoch,
    });
    let execution = match crate::execution::start(
        config.mode,
        &config.keys,
        &config.execution,
        fence,
        tenant,
        epoch,
    )
    .await
    {
        Ok(execution) => execution,
        Err(e) => {
            let result = ctx.fail(&tenant_config, format!("{e:#}")).await;
            ctx.db.close().await;
            return result;
        }
    };
    let mut execution = execution;
    {
        let exec = &mut execution;
        exec.set_pair_limits(crate::execution::pair_limits(&tenant_config.risk));
        // Only live pairs hold positions: shadow pairs are in their
        // opportunity's orders.
        if config.mode == Mode::Live {
            exec.track_pairs(ctx.db.clone(), tenant);
        }
    }
    // Trades say what really happened: only a live executor's fills are live.
    let trade_mode = if config.mode == Mode::Live {
        Mode::Live
    } else {
        Mode::Paper
    };
    let result = match &config.replay {
        Some(replay) => {
            let opened = ReplaySource::open(&replay.path, replay.pace)
                .map_err(|e| e.message)
                .and_then(|source| {
                    replay_key(tenant, &replay.path, &engine_config).map(|key| (source, key))
                });
            match opened {
                Ok((source, key)) => {
                    let recorder = Recorder::new(key, trade_mode);
                    match Engine::new(engine_config, EventClock::default()) {
                        Ok(engine) => {
                            drive(
                                &mut ctx,
                                engine,
                                source,
                                recorder,
                                execution,
                                replay.exit_at_end,
                                &stop,
                            )
                            .await
                        }
                        Err(e) => ctx.fail(&tenant_config, format!("{e}")).await,
                    }
                }
                Err(message) => ctx.fail(&tenant_config, message).await,
            }
        }
        None => {
            let recorder = Recorder::new(live_key(tenant), trade_mode);
            match Engine::new(engine_config, SystemClock) {
                Ok(engine) => match &config.live {
                    Some(settings) => {
                        match LiveSource::start(
                            settings.clone(),
                            &tenant_config.strategies,
                            &config.keys,
                        ) {
                            Ok(source) => {
                                drive(&mut ctx, engine, source, recorder, execution, false, &stop)
                                    .await
                            }
                            Err(e) => ctx.fail(&tenant_config, e.message).await,
                        }
                    }
                    None => {
                        let source = TickSource::every(Duration::from_secs(1));
                        drive(&mut ctx, engine, source, recorder, execution, false, &stop).await
                    }
                },
                Err(e) => ctx.fail(&tenant_config, format!("{e}")).await,
            }
        }
    };
    ctx.db.close().await;
    result
}

/// Row ids of a replay depend on the tenant, the recording and the settings
/// (so that a restart replaying the same recording writes nothing twice, and
/// two tenants on one recording never share an id).
fn replay_key(
    tenant: TenantId,
    path: &std::path::Path,
    config: &EngineConfig,
) -> Result<[u8; 32], String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)
        .map_err(|e| format!("opening the replay {}: {e}", path.display()))?;
    let mut hash = Sha256::new();
    hash.update(tenant.as_uuid().as_bytes());
    hash.update(format!("{config:?}").as_bytes());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("reading the replay {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(hash.finalize().into())
}

fn live_key(tenant: TenantId) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(tenant.as_uuid().as_bytes());
    hash.update(uuid::Uuid::new_v4().as_bytes());
    hash.finalize().into()
}

/// What the loop needs besides the engine and the source.
struct Ctx {
    db: Db,
    tenant: TenantId,
    epoch: i64,
    ttl: Duration,
    spec_hash: String,
    mode: polybot_core::Mode,
    kill_switch: bool,
    heartbeat: Duration,
    flush_every: Duration,
    flush_rows: usize,
    /// The newest failure, with its context, for the heartbeat.
    last_error: Option<String>,
    errors: u64,
    /// How often trades are polled while the user channel is down.
    poll_every: Duration,
    /// How often the venue's cancel-on-disconnect heartbeat goes out (live).
    venue_heartbeat_every: Duration,
}

impl Ctx {
    /// The kill switch takes effect without a restart: each heartbeat reads
    /// the tenant's risk settings, and when the switch is turned on the
    /// engine stops sending and every open order at the venue is cancelled.
    async fn watch_kill_switch<C: Clock>(
        &mut self,
        engine: &mut Engine<C>,
        execution: &mut Execution,
    ) {
        let on = match crate::load_config(&self.db, self.tenant).await {
            Ok(config) => config.risk.kill_switch,
            Err(e) => {
                self.note_error(format!("reading the kill switch: {e}"));
                return;
            }
        };
        if on == self.kill_switch {
            return;
        }
        self.kill_switch = on;
        engine.set_kill_switch(on);
        tracing::warn!(tenant = %self.tenant, on, "kill switch changed");
        if on {
            match execution
                .cancel_all(engine, "cancelled: the kill switch is on")
                .await
            {
                Ok(cancelled) => tracing::warn!(
                    tenant = %self.tenant,
                    cancelled = cancelled.len(),
                    "kill switch: every open order cancelled"
                ),
                Err(e) => self.note_error(format!("kill switch: cancelling open orders: {e}")),
            }
        }
    }

    /// A send refused by the fence (or a lease that cannot be checked):
    /// the worker stops.
    fn execution_stopped(&mut self, err: polybot_venues::execution::ExecError) -> WorkerError {
        use polybot_venues::execution::ExecError;
        match err {
            ExecError::Fenced { epoch } => WorkerError::Fenced(polybot_store::DbError::Fenced {
                tenant: self.tenant,
                mine: self.epoch,
                current: epoch,
            }),
            other => {
                let message = format!("sending an order: {other}");
                self.note_error(message.clone());
                WorkerError::Other(anyhow::anyhow!(message))
            }
        }
    }

    /// The venue's heartbeat failed and the worker cancelled the tenant's
    /// orders: said in health, the log and the tenant's audit log.
    async fn venue_heartbeat_lost(&mut self, message: String) {
        self.note_error(message.clone());
        let written = async {
            let mut tx = self.db.fenced(self.tenant, self.epoch).await?;
            audit::append(
                &mut tx,
                "worker",
                "venue.heartbeat_lost",
                serde_json::json!({ "error": message }),
            )
            .await?;
            tx.commit().await?;
            Ok::<(), polybot_store::DbError>(())
        };
        if let Err(e) = written.await {
            tracing::warn!(tenant = %self.tenant, error = %e, "the heartbeat loss could not be written to the audit log");
        }
    }

    fn note_error(&mut self, message: String) {
        debug_assert!(!message.is_empty(), "an empty error message is a bug");
        tracing::warn!(tenant = %self.tenant, error = %message, "worker error");
        self.errors += 1;
        self.last_error = Some(message);
    }

    /// Writes the batch; a fenced worker stops, any other failure is kept
    /// in health and the batch is retried at the next flush.
    async fn flush<C: Clock>(
        &mut self,
        recorder: &mut Recorder,
        engine: &Engine<C>,
    ) -> Result<(), WorkerError> {
        let balances = engine.portfolio().balances;
        let started = std::time::Instant::now();
        match recorder
            .flush(&self.db, self.tenant, self.epoch, &balances)
            .await
        {
            Ok(written) => {
                if written != crate::persist::Written::default() {
                    log_write("flush", started);
                }
                Ok(())
            }
            Err(err) => match WorkerError::from(err) {
                fenced @ WorkerError::Fenced(_) => Err(fenced),
                WorkerError::Other(err) => {
                    self.note_error(format!("writing {} decisions: {err:#}", recorder.pending()));
                    Ok(())
                }
            },
        }
    }

    async fn beat(&mut self, health: &WorkerHealth) -> Result<(), WorkerError> {
        let started = std::time::Instant::now();
        heartbeat(&self.db, self.tenant, self.epoch, self.ttl, health)
            .await
            .map_err(WorkerError::from)?;
        log_write("heartbeat", started);
        Ok(())
    }

    /// The heartbeat's fields every phase writes.
    fn base_health(&self, phase: WorkerPhase) -> WorkerHealth {
        WorkerHealth {
            version: WorkerHealth::VERSION,
            phase,
            spec_hash: self.spec_hash.clone(),
            pid: std::process::id(),
            mode: self.mode,
            kill_switch: self.kill_switch,
            errors: self.errors,
            last_error: self.last_error.clone(),
            ..WorkerHealth::default()
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn health<C: Clock>(
        &self,
        engine: &Engine<C>,
        phase: WorkerPhase,
        source: &str,
        source_finished: bool,
        venues: BTreeMap<String, FeedStatus>,
        recorder: &Recorder,
        execution: &Execution,
    ) -> WorkerHealth {
        let strategies = engine
            .health()
            .into_iter()
            .map(|h| {
                let (breaker, breaker_open_until) = match h.breaker {
                    BreakerState::Closed => (BreakerPosition::Closed, None),
                    BreakerState::Open { until } => (BreakerPosition::Open, Some(until.0)),
                    BreakerState::HalfOpen => (BreakerPosition::HalfOpen, None),
                };
                let health = StrategyHealth {
                    status: h.status,
                    breaker,
                    breaker_open_until,
                    reason: h.reason,
                    consecutive_failures: h.consecutive_failures,
                };
                (h.strategy.as_str().to_owned(), health)
            })
            .collect();
        let portfolio = engine.portfolio();
        let stats = engine.stats();
        WorkerHealth {
            execution: Some(execution.kind().as_str().to_owned()),
            strategies,
            pnl: Some(pnl(&portfolio, engine)),
            balances: portfolio
                .balances
                .iter()
                .map(|(venue, amount)| (venue.as_str().to_owned(), *amount))
                .collect(),
            engine: Some(EngineCounters {
                clock: engine.now().0,
                events: stats.events,
                opportunities: stats.opportunities,
                orders: stats.orders,
                fills: stats.fills,
                cancels: stats.cancels,
                rejections: stats.rejections,
                data_errors: stats.data_errors,
            }),
            source: Some(SourceStatus {
                description: source.to_owned(),
                finished: source_finished,
            }),
            written: Some(WrittenCounters {
                opportunities: recorder.totals.opportunities,
                trades: recorder.totals.trades,
                pending: recorder.pending() as u64,
            }),
            venues,
            ..self.base_health(phase)
        }
    }

    /// The worker cannot run its engine: say why in a heartbeat, then stop
    /// with the same error (the reconciler restarts it with back-off).
    async fn fail(&mut self, config: &TenantConfig, message: String) -> Result<(), WorkerError> {
        let message = format!("the engine cannot start: {message}");
        self.note_error(message.clone());
        let strategies = polybot_core::strategy::StrategyKind::ALL
            .into_iter()
            .filter(|kind| config.strategies.is_enabled(*kind))
            .map(|kind| {
                let health = StrategyHealth {
                    status: StrategyStatus::Degraded,
                    breaker: BreakerPosition::Closed,
                    reason: Some(message.clone()),
                    ..StrategyHealth::default()
                };
                (kind.as_str().to_owned(), health)
            })
            .collect();
        let health = WorkerHealth {
            strategies,
            ..self.base_health(WorkerPhase::Failed)
        };
        self.beat(&health).await?;
        Err(WorkerError::Other(anyhow::anyhow!(message)))
    }
}

fn pnl<C: Clock>(p: &PortfolioSnapshot, engine: &Engine<C>) -> PnlSummary {
    PnlSummary {
        realized: p.realised_pnl.normalize(),
        unrealized: p.unrealised_pnl.normalize(),
        daily: engine.daily_pnl().normalize(),
        fees: p.fees_paid.normalize(),
        equity: p.equity.normalize(),
        exposure: p.exposure.normalize(),
        daily_loss_limit_hit: engine.daily_loss_limit_hit(),
        locked: p.locked_pnl.normalize(),
        starting_equity: p.starting_equity.normalize(),
        // What the venue held before the worker started is a row of its
        // own, `carried`, so the rows add up to the totals.
        by_strategy: p
            .by_strategy
            .iter()
            .map(|s| {
                let summary = StrategyPnlSummary {
                    realized: s.realised_pnl.normalize(),
                    unrealized: s.unrealised_pnl.normalize(),
                    locked: s.locked_pnl.normalize(),
                    fees: s.fees_paid.normalize(),
                };
                (s.strategy.as_str().to_owned(), summary)
            })
            .chain(p.carried.iter().map(|c| {
                let summary = StrategyPnlSummary {
                    realized: c.realised_pnl.normalize(),
                    unrealized: c.unrealised_pnl.normalize(),
                    locked: c.locked_pnl.normalize(),
                    fees: c.fees_paid.normalize(),
                };
                (CARRIED.to_owned(), summary)
            }))
            .collect(),
        positions: p
            .positions
            .iter()
            .map(|v| PositionSummary {
                // A position the venue held before the engine started
                // belongs to no strategy.
                strategy: v.strategy.map_or(CARRIED, |s| s.as_str()).to_owned(),
                venue: v.venue.as_str().to_owned(),
                market: v.market.as_str().to_owned(),
                outcome: v.outcome_name.clone(),
                quantity: v.quantity.normalize(),
                avg_price: v.avg_price.round_dp(6).normalize(),
                mark: v.mark.normalize(),
                locked: v.locked.normalize(),
            })
            .collect(),
    }
}

async fn drive<C, S>(
    ctx: &mut Ctx,
    mut engine: Engine<C>,
    mut source: S,
    mut recorder: Recorder,
    mut execution: Execution,
    exit_at_end: bool,
    stop: &CancellationToken,
) -> Result<(), WorkerError>
where
    C: Clock + Send,
    S: EventSource,
{
    if !source.has_market_data() {
        for kind in polybot_core::strategy::StrategyKind::ALL {
            if engine.is_enabled(kind) {
                engine.set_degraded(kind, Some(NO_FEED.to_owned()));
            }
        }
    }
    let description = source.describe();
    if execution.kind() != ExecutionKind::Paper {
        // Nothing is traded before the venue's state is known.
        if let Err(e) = execution.reconcile(&mut engine, &ctx.db, ctx.tenant).await {
            match e {
                fenced @ WorkerError::Fenced(_) => return Err(fenced),
                WorkerError::Other(err) => {
                    ctx.note_error(format!("{err:#}"));
                    return Err(WorkerError::Other(err));
                }
            }
        }
    }
    let mut decisions = Vec::with_capacity(32);
    // A pair a stopped worker left half done is settled before new trades.
    {
        let exec = &mut execution;
        match exec.recover_pairs(&mut engine, &mut decisions).await {
            Ok(done) if !done.is_empty() => {
                tracing::info!(tenant = %ctx.tenant, pairs = ?done, "open pairs recovered from the venues' fills");
                recorder.record(&engine, &decisions);
            }
            Ok(_) => {}
            Err(fenced @ WorkerError::Fenced(_)) => return Err(fenced),
            Err(WorkerError::Other(err)) => {
                ctx.note_error(format!("recovering the pairs left open: {err:#}"));
            }
        }
    }
    tracing::info!(tenant = %ctx.tenant, source = %description, "engine running");
    let mut finished = false;
    let mut heartbeats = tokio::time::interval(ctx.heartbeat);
    heartbeats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut flushes = tokio::time::interval(ctx.flush_every);
    flushes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut polls = tokio::time::interval(ctx.poll_every);
    polls.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut venue_beats = tokio::time::interval(ctx.venue_heartbeat_every);
    venue_beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let live = execution.kind() == ExecutionKind::Live;
    let outcome: Result<(), WorkerError> = loop {
        let phase = if finished {
            WorkerPhase::Finished
        } else {
            WorkerPhase::Running
        };
        tokio::select! {
            biased;
            _ = stop.cancelled() => break Ok(()),
            _ = heartbeats.tick() => {
                ctx.watch_kill_switch(&mut engine, &mut execution).await;
                if let Err(e) = ctx.flush(&mut recorder, &engine).await {
                    break Err(e);
                }
                let health = ctx.health(&engine, phase, &description, finished, source.health(), &recorder, &execution);
                if let Err(e) = ctx.beat(&health).await {
                    break Err(e);
                }
            }
            _ = venue_beats.tick(), if live => {
                if let Some(message) = execution.venue_heartbeat(&mut engine).await {
                    ctx.venue_heartbeat_lost(message).await;
                }
            }
            _ = flushes.tick(), if recorder.pending() > 0 => {
                if let Err(e) = ctx.flush(&mut recorder, &engine).await {
                    break Err(e);
                }
            }
            fill = execution.next_user_fill(), if live => {
                decisions.clear();
                if execution.on_fill(&mut engine, &fill, &mut decisions) {
                    recorder.record(&engine, &decisions);
                }
            }
            _ = polls.tick(), if execution.needs_polling() => {
                decisions.clear();
                match execution.poll_fills(&mut engine, &mut decisions).await {
                    Ok(0) => {}
                    Ok(booked) => {
                        tracing::info!(tenant = %ctx.tenant, booked, "fills found by polling while the user channel is down");
                        recorder.record(&engine, &decisions);
                    }
                    Err(e) => ctx.note_error(format!("polling the venue's trades: {e}")),
                }
            }
            next = source.next_event(), if !finished && recorder.pending() < BACKLOG_LIMIT => {
                match next {
                    Ok(Some(event)) => {
                        decisions.clear();
                        if let Err(e) = engine.on_event(&event, &mut decisions) {
                            ctx.note_error(format!("{description}: event at {}: {e}", event.ts.0));
                        }
                        if decisions.iter().any(|d| matches!(d, polybot_engine::Decision::Order(_))) {
                            match execution.execute(&mut engine, &mut decisions).await {
                                Ok(reports) => recorder.note_orders(reports),
                                Err(e) => break Err(ctx.execution_stopped(e)),
                            }
                        }
                        if !decisions.is_empty() {
                            recorder.record(&engine, &decisions);
                            if recorder.pending() >= ctx.flush_rows
                                && let Err(e) = ctx.flush(&mut recorder, &engine).await
                            {
                                break Err(e);
                            }
                        }
                    }
                    Ok(None) => {
                        finished = true;
                        tracing::info!(tenant = %ctx.tenant, source = %description, events = engine.stats().events, "the recording is played out");
                        if let Err(e) = ctx.flush(&mut recorder, &engine).await {
                            break Err(e);
                        }
                        let health = ctx.health(&engine, WorkerPhase::Finished, &description, true, source.health(), &recorder, &execution);
                        if let Err(e) = ctx.beat(&health).await {
                            break Err(e);
                        }
                        if exit_at_end {
                            break Ok(());
                        }
                    }
                    Err(e) if e.fatal => {
                        finished = true;
                        ctx.note_error(e.message);
                    }
                    Err(e) => ctx.note_error(e.message),
                }
            }
        }
    };
    // Fenced: stop at once, write nothing more.
    outcome?;
    // Stopping: no more events; write what is waiting, then say so.
    match tokio::time::timeout(FINAL_FLUSH, ctx.flush(&mut recorder, &engine)).await {
        Ok(result) => result?,
        Err(_) => ctx.note_error(format!(
            "the final write of {} decisions did not finish within {}s",
            recorder.pending(),
            FINAL_FLUSH.as_secs()
        )),
    }
    // A stopping worker leaves nothing of its own resting at the venue.
    if !execution.open_orders().is_empty() {
        match execution
            .cancel_all(&mut engine, "cancelled: the worker stopped")
            .await
        {
            Ok(cancelled) => {
                tracing::info!(tenant = %ctx.tenant, cancelled = cancelled.len(), "open orders cancelled on stop")
            }
            Err(e) => ctx.note_error(format!("cancelling open orders on stop: {e}")),
        }
    }
    let health = ctx.health(
        &engine,
        WorkerPhase::Stopping,
        &description,
        finished,
        source.health(),
        &recorder,
        &execution,
    );
    let last = final_heartbeat(&ctx.db, ctx.tenant, ctx.epoch, &health);
    match tokio::time::timeout(FINAL_HEARTBEAT, last).await {
        Ok(result) => result?,
        Err(_) => tracing::warn!(tenant = %ctx.tenant, "the final heartbeat timed out"),
    }
    tracing::info!(
        tenant = %ctx.tenant,
        opportunities = recorder.totals.opportunities,
        trades = recorder.totals.trades,
        "worker stopped"
    );
    Ok(())
}
