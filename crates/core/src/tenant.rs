//! Tenant identity.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A tenant's identifier: a random (v4) UUID assigned at onboarding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(Uuid);

impl TenantId {
    /// A fresh random identifier.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// The name of the tenant's own database login role, `polybot_t_<32 hex>`.
    ///
    /// The database binds that role to this tenant by its name (see
    /// `polybot.current_tenant()` in the migrations), so the mapping must not
    /// change.
    pub fn db_role(&self) -> String {
        format!("polybot_t_{}", self.0.simple())
    }
}

impl Default for TenantId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<Uuid> for TenantId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

/// A string that is not a tenant id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a tenant id: expected a UUID such as 6f1c0c9e-3b7a-4a55-9d0e-2f4f7f6f1a2b"
)]
pub struct TenantIdError {
    input: String,
}

impl FromStr for TenantId {
    type Err = TenantIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(Self)
            .map_err(|_| TenantIdError {
                input: s.chars().take(64).collect(),
            })
    }
}

/// Whether a tenant's orders are simulated or sent to the venues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Orders are filled against the recorded or live order book, never sent.
    #[default]
    Paper,
    /// Orders are built and signed with the tenant's keys and recorded as
    /// they would have been sent, never sent: a rehearsal for live.
    Shadow,
    /// Orders are sent to the venues with the tenant's keys.
    Live,
}

impl Mode {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Mode::Paper => "paper",
            Mode::Shadow => "shadow",
            Mode::Live => "live",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "paper" => Ok(Mode::Paper),
            "shadow" => Ok(Mode::Shadow),
            "live" => Ok(Mode::Live),
            other => Err(format!(
                "{other:?} is not a mode: use \"paper\", \"shadow\" or \"live\""
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_role_name_is_the_prefix_and_the_uuid_in_hex() {
        let id: TenantId = "6f1c0c9e-3b7a-4a55-9d0e-2f4f7f6f1a2b".parse().unwrap();
        assert_eq!(id.db_role(), "polybot_t_6f1c0c9e3b7a4a559d0e2f4f7f6f1a2b");
        assert!(
            id.db_role().len() <= 63,
            "Postgres truncates identifiers past 63 bytes"
        );
    }

    #[test]
    fn a_malformed_tenant_id_says_what_was_expected() {
        let err = "acme".parse::<TenantId>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"acme\" is not a tenant id: expected a UUID such as 6f1c0c9e-3b7a-4a55-9d0e-2f4f7f6f1a2b"
        );
    }

    #[test]
    fn mode_round_trips_through_its_name() {
        for mode in [Mode::Paper, Mode::Live] {
            assert_eq!(mode.as_str().parse::<Mode>(), Ok(mode));
        }
        assert_eq!(Mode::default(), Mode::Paper);
        assert!("Live".parse::<Mode>().is_err());
    }
}
