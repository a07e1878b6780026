//! `polybot up --replay FILE`: the workers play a recording (the engine's
//! JSONL replay format, what `polybot record` writes) instead of the venues'
//! live public market data. Tenants are onboarded as usual; their mode
//! decides what becomes of the opportunities (paper fills, or signed orders
//! to the venue for a tenant switched to live).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use polybot_control_plane::tenants::recording::Recording;
use polybot_core::worker::env;
use polybot_engine::EventKind;

/// A checked recording, for the workers.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// Absolute, so that workers find it whatever their working directory.
    pub path: PathBuf,
    /// Its markets and assets: strategy settings naming others are refused.
    pub recording: Recording,
}

impl Replayed {
    /// Reads `path` and checks that it is a recording: every line an event
    /// of the replay format, and at least one market among them.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--replay {}: cannot read the recording", path.display()))?;
        let events = polybot_engine::parse_jsonl(&text).with_context(|| {
            format!(
                "--replay {}: not a recording in the engine's JSONL replay format \
                 (what `polybot record` writes)",
                path.display()
            )
        })?;
        if !events
            .iter()
            .any(|e| matches!(e.kind, EventKind::Market(_)))
        {
            anyhow::bail!(
                "--replay {}: the recording lists no market (no `\"type\": \"market\"` line), \
                 so no strategy would have anything to trade",
                path.display()
            );
        }
        let path = path
            .canonicalize()
            .with_context(|| format!("--replay {}: resolving the path", path.display()))?;
        Ok(Self {
            path,
            recording: Recording::from_jsonl(&text),
        })
    }

    /// What every worker gets on top of the inherited `POLYBOT_*` settings:
    /// the recording, played at its recorded pace unless
    /// `POLYBOT_REPLAY_SPEED` says otherwise.
    pub fn worker_env(&self) -> BTreeMap<String, String> {
        let mut vars = BTreeMap::new();
        vars.insert(env::REPLAY.to_owned(), self.path.display().to_string());
        if std::env::var_os(env::REPLAY_SPEED).is_none() {
            vars.insert(env::REPLAY_SPEED.to_owned(), "1".to_owned());
        }
        vars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("recording.jsonl");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_recording_is_read_with_its_markets() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            concat!(
                r#"{"type":"market","ts":1000,"market":"m1","venue":"polymarket","outcomes":["Yes","No"],"fee_rate":"0.07"}"#,
                "\n",
                r#"{"type":"book","ts":1001,"market":"m1","outcome":"Yes","bids":[["0.40","10"]],"asks":[["0.45","20"]]}"#,
                "\n"
            ),
        );
        let replayed = Replayed::open(&path).unwrap();
        assert!(replayed.path.is_absolute());
        assert_eq!(
            replayed.recording.markets.iter().collect::<Vec<_>>(),
            ["m1"]
        );
        assert_eq!(
            replayed.worker_env().get(env::REPLAY).map(String::as_str),
            Some(replayed.path.display().to_string().as_str())
        );
    }

    #[test]
    fn a_missing_file_or_one_that_is_not_a_recording_is_refused_naming_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let missing = format!(
            "{:#}",
            Replayed::open(&dir.path().join("nope.jsonl")).unwrap_err()
        );
        assert!(
            missing.starts_with("--replay ") && missing.contains("cannot read"),
            "{missing}"
        );

        let not_json = write(&dir, "ts,market,price\n1,m1,0.4\n");
        let err = format!("{:#}", Replayed::open(&not_json).unwrap_err());
        assert!(
            err.starts_with("--replay ") && err.contains("replay line 1"),
            "{err}"
        );

        let no_market = write(
            &dir,
            r#"{"type":"spot","ts":1000,"venue":"binance_us","asset":"BTC","price":"60000"}"#,
        );
        let err = format!("{:#}", Replayed::open(&no_market).unwrap_err());
        assert!(
            err.starts_with("--replay ") && err.contains("lists no market"),
            "{err}"
        );
    }
}
