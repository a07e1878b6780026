//! Where the worker's market events come from.
//!
//! [`EventSource`] is what the run loop pulls events from. Two sources live
//! here: [`ReplaySource`], a recorded JSONL file (the engine's replay format)
//! streamed line by line and paced by the events' timestamps or played as
//! fast as possible, and [`TickSource`], the clock ticks a live engine needs
//! between market events. The venues' live feeds (crate `polybot-venues`)
//! plug in behind the same trait ([`crate::live::LiveSource`]).
//!
//! [`SystemClock`] is the engine's clock for live streams; a replay runs on
//! the engine's `EventClock`, so that recorded time is the engine's time.

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use polybot_core::worker::FeedStatus;
use polybot_engine::{Clock, Event, EventKind, ReplayParser, Timestamp};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use tokio::time::Instant;

/// A failure of a source, always with what was being read and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    pub message: String,
    /// The source cannot go on (the file vanished, the feed is gone); a bad
    /// line or message is not fatal and is skipped.
    pub fatal: bool,
}

impl SourceError {
    fn skipped(message: String) -> Self {
        debug_assert!(!message.is_empty(), "an empty error message is a bug");
        Self {
            message,
            fatal: false,
        }
    }

    fn fatal(message: String) -> Self {
        debug_assert!(!message.is_empty(), "an empty error message is a bug");
        Self {
            message,
            fatal: true,
        }
    }
}

/// Market events for one engine, in order.
pub trait EventSource: Send {
    /// The next event; `Ok(None)` once the source is exhausted (a replay's
    /// end; a live feed never ends). Cancel-safe: dropping the future before
    /// it completes loses no event.
    fn next_event(&mut self) -> impl Future<Output = Result<Option<Event>, SourceError>> + Send;

    /// For health and logs: what this source reads.
    fn describe(&self) -> String;

    /// Whether time comes from the events (a recording) rather than the wall clock.
    fn is_replay(&self) -> bool;

    /// Whether market data flows at all (clock ticks alone are not market data).
    fn has_market_data(&self) -> bool {
        true
    }

    /// Each live feed's health for heartbeats, by feed (`polymarket_clob`,
    /// `binance_us`, `newsapi`, …); empty for a recording. What a failing
    /// feed means for the strategies reaches the engine in the stream itself,
    /// as `EventKind::FeedHealth` events.
    fn health(&self) -> BTreeMap<String, FeedStatus> {
        BTreeMap::new()
    }
}

/// How fast a recording is played.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// No waiting: each event as soon as the engine takes it (benchmarks, tests).
    AsFastAsPossible,
    /// Event-time gaps divided by this factor (1 is real time, 10 ten times faster).
    Speed(Decimal),
}

impl FromStr for Pace {
    type Err = String;

    /// `max` (or `0`) for as fast as possible, else a positive speed factor.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("max") {
            return Ok(Pace::AsFastAsPossible);
        }
        let factor: Decimal = s.parse().map_err(|_| {
            format!("{s:?} is not a replay speed: use \"max\" or a factor such as 1 or 10")
        })?;
        if factor.is_zero() {
            Ok(Pace::AsFastAsPossible)
        } else if factor.is_sign_negative() {
            Err(format!("replay speed must not be negative, got {s}"))
        } else {
            Ok(Pace::Speed(factor))
        }
    }
}

/// How many events a fast replay hands out between yields to the runtime, so
/// that heartbeats, flushes and SIGTERM are served during a long replay.
const YIELD_EVERY: u32 = 256;

/// A recorded JSONL file, read one line at a time (never loaded whole).
#[derive(Debug)]
pub struct ReplaySource<R> {
    reader: R,
    parser: ReplayParser,
    line: String,
    label: String,
    pace: Pace,
    /// The first event's time and when it was handed out.
    origin: Option<(Timestamp, Instant)>,
    /// An event read but not yet handed out (its due time had not come).
    pending: Option<Event>,
    since_yield: u32,
    finished: bool,
}

impl ReplaySource<BufReader<File>> {
    /// Opens `path`; the error names the file and the reason.
    pub fn open(path: &Path, pace: Pace) -> Result<Self, SourceError> {
        let file = File::open(path).map_err(|e| {
            SourceError::fatal(format!("opening the replay {}: {e}", path.display()))
        })?;
        Ok(Self::new(
            BufReader::with_capacity(64 * 1024, file),
            format!("replay {}", path.display()),
            pace,
        ))
    }
}

impl<R: BufRead> ReplaySource<R> {
    pub fn new(reader: R, label: String, pace: Pace) -> Self {
        Self {
            reader,
            parser: ReplayParser::new(),
            line: String::with_capacity(1024),
            label,
            pace,
            origin: None,
            pending: None,
            since_yield: 0,
            finished: false,
        }
    }

    /// Reads lines until one is an event (comments and blank lines are skipped).
    fn read_event(&mut self) -> Result<Option<Event>, SourceError> {
        loop {
            self.line.clear();
            let read = self
                .reader
                .read_line(&mut self.line)
                .map_err(|e| SourceError::fatal(format!("{}: reading failed: {e}", self.label)))?;
            if read == 0 {
                self.finished = true;
                return Ok(None);
            }
            match self.parser.parse_line(&self.line) {
                Ok(Some(event)) => return Ok(Some(event)),
                Ok(None) => continue,
                Err(e) => {
                    return Err(SourceError::skipped(format!(
                        "{}: {e}; the line was skipped",
                        self.label
                    )));
                }
            }
        }
    }

    /// When `event` is due, for a paced replay.
    fn due(&mut self, ts: Timestamp, speed: Decimal) -> Instant {
        let (t0, i0) = *self.origin.get_or_insert((ts, Instant::now()));
        let gap_ms = Decimal::from(ts.millis_since(t0).max(0)) / speed;
        let gap_us = (gap_ms * Decimal::ONE_THOUSAND)
            .trunc()
            .to_u64()
            .unwrap_or(u64::MAX);
        i0.checked_add(Duration::from_micros(gap_us))
            .unwrap_or_else(|| i0 + Duration::from_secs(86_400 * 365))
    }
}

impl<R: BufRead + Send> EventSource for ReplaySource<R> {
    async fn next_event(&mut self) -> Result<Option<Event>, SourceError> {
        let event = match self.pending.take() {
            Some(event) => event,
            None if self.finished => return Ok(None),
            None => match self.read_event()? {
                Some(event) => event,
                None => return Ok(None),
            },
        };
        match self.pace {
            Pace::AsFastAsPossible => {
                self.since_yield += 1;
                if self.since_yield >= YIELD_EVERY {
                    self.since_yield = 0;
                    // Kept aside while yielding so that a cancelled call loses nothing.
                    self.pending = Some(event);
                    tokio::task::yield_now().await;
                    return Ok(self.pending.take());
                }
                Ok(Some(event))
            }
            Pace::Speed(speed) => {
                let due = self.due(event.ts, speed);
                if due > Instant::now() {
                    self.pending = Some(event);
                    tokio::time::sleep_until(due).await;
                    return Ok(self.pending.take());
                }
                Ok(Some(event))
            }
        }
    }

    fn describe(&self) -> String {
        self.label.clone()
    }

    fn is_replay(&self) -> bool {
        true
    }
}

/// Clock ticks at a fixed interval of wall-clock time: what a live engine
/// sees while no market data arrives (time decay, breaker cooldowns).
#[derive(Debug)]
pub struct TickSource {
    interval: tokio::time::Interval,
}

impl TickSource {
    pub fn every(period: Duration) -> Self {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { interval }
    }
}

impl EventSource for TickSource {
    async fn next_event(&mut self) -> Result<Option<Event>, SourceError> {
        self.interval.tick().await;
        Ok(Some(Event::new(SystemClock.now(), EventKind::Tick)))
    }

    fn describe(&self) -> String {
        "clock ticks (no market data feed)".to_owned()
    }

    fn is_replay(&self) -> bool {
        false
    }

    fn has_market_data(&self) -> bool {
        false
    }
}

/// The wall clock, for engines on live streams.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp(chrono::Utc::now().timestamp_millis())
    }
}

/// The replay file of `POLYBOT_REPLAY`, with its pace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaySettings {
    pub path: PathBuf,
    pub pace: Pace,
    /// Stop the worker (exit 0) once the recording is played out; otherwise
    /// it keeps heartbeating, idle, until stopped.
    pub exit_at_end: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_EVENTS: &str = concat!(
        "# comment\n",
        r#"{"type":"tick","ts":1000}"#,
        "\n",
        r#"{"type":"tick","ts":"bad"}"#,
        "\n",
        r#"{"type":"tick","ts":3000}"#,
        "\n"
    );

    #[test]
    fn a_replay_speed_is_max_zero_or_a_positive_factor() {
        assert_eq!("max".parse(), Ok(Pace::AsFastAsPossible));
        assert_eq!("0".parse(), Ok(Pace::AsFastAsPossible));
        assert_eq!("10".parse(), Ok(Pace::Speed(Decimal::TEN)));
        assert_eq!(
            "-1".parse::<Pace>(),
            Err("replay speed must not be negative, got -1".to_owned())
        );
        assert_eq!(
            "fast".parse::<Pace>(),
            Err(
                "\"fast\" is not a replay speed: use \"max\" or a factor such as 1 or 10"
                    .to_owned()
            )
        );
    }

    #[tokio::test]
    async fn a_bad_line_is_skipped_with_its_line_number_and_the_replay_goes_on() {
        let mut source = ReplaySource::new(
            TWO_EVENTS.as_bytes(),
            "replay t.jsonl".into(),
            Pace::AsFastAsPossible,
        );
        let first = source.next_event().await.unwrap().unwrap();
        assert_eq!(first.ts, Timestamp(1000));
        let err = source.next_event().await.unwrap_err();
        assert!(!err.fatal);
        assert!(
            err.message.starts_with("replay t.jsonl: replay line 3: "),
            "{}",
            err.message
        );
        let third = source.next_event().await.unwrap().unwrap();
        assert_eq!(third.ts, Timestamp(3000));
        assert_eq!(source.next_event().await, Ok(None));
        assert_eq!(source.next_event().await, Ok(None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_paced_replay_waits_for_each_events_time_divided_by_the_speed() {
        let text = concat!(
            r#"{"type":"tick","ts":1000}"#,
            "\n",
            r#"{"type":"tick","ts":5000}"#,
            "\n"
        );
        let mut source = ReplaySource::new(text.as_bytes(), "r".into(), Pace::Speed(Decimal::TWO));
        let start = Instant::now();
        assert_eq!(
            source.next_event().await.unwrap().map(|e| e.ts),
            Some(Timestamp(1000))
        );
        assert_eq!(start.elapsed(), Duration::ZERO);
        // Cancelled while waiting: the event is kept for the next call.
        let cancelled = tokio::time::timeout(Duration::from_millis(500), source.next_event()).await;
        assert!(cancelled.is_err());
        assert_eq!(
            source.next_event().await.unwrap().map(|e| e.ts),
            Some(Timestamp(5000))
        );
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[test]
    fn opening_a_missing_replay_names_the_file() {
        let err = ReplaySource::open(Path::new("/nonexistent/demo.jsonl"), Pace::AsFastAsPossible)
            .unwrap_err();
        assert!(err.fatal);
        assert!(
            err.message
                .starts_with("opening the replay /nonexistent/demo.jsonl: "),
            "{}",
            err.message
        );
    }
}
