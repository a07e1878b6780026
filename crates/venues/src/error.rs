//! The one error type of this crate: [`VenueError`].
//!
//! Every error carries the venue, the endpoint (method and path, never the
//! query string, which is where Binance puts signatures), the HTTP status when
//! there was one, and a short excerpt of the response body. Secrets never
//! reach it: request credentials are not part of it and any value the client
//! sent in a sensitive header is redacted from the excerpt. Its `Display` is
//! never empty and always names the venue.

use std::fmt;
use std::time::Duration;

use crate::model::Api;

/// Longest body excerpt kept, in characters.
pub const EXCERPT_MAX_CHARS: usize = 200;

/// What went wrong, without the context (see [`VenueError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// HTTP 429: the venue's rate limit was hit.
    RateLimited {
        /// The venue's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// HTTP 418 (Binance): this IP is banned; no calls until the ban ends.
    Banned {
        /// Time left on the ban when the error was made.
        remaining: Duration,
    },
    /// HTTP 451: the venue refuses this host's location.
    GeoBlocked,
    /// HTTP 401/403: the endpoint needs (valid) API keys, or a WAF refused us.
    Unauthorized,
    /// HTTP 5xx, still failing after the bounded retries.
    Server {
        /// Attempts made, including the first.
        attempts: u32,
    },
    /// Any other unexpected HTTP status.
    Status,
    /// The venue answered (often with HTTP 200) with an error in the body,
    /// e.g. Kraken's `{"error":["EQuery:Unknown asset pair"]}`.
    Api {
        /// The venue's error text.
        message: String,
    },
    /// The response was not the JSON we expected.
    Decode {
        /// What failed to parse.
        detail: String,
    },
    /// The venue could not be reached (DNS, refused, reset, TLS).
    Unreachable {
        /// The transport's reason.
        detail: String,
    },
    /// No answer within the timeout.
    Timeout {
        /// The timeout that elapsed.
        after: Duration,
    },
    /// Bad configuration (URL, key format).
    Config {
        /// What is wrong.
        detail: String,
    },
    /// A request could not be signed (bad key encoding).
    Signing {
        /// What is wrong with the key (never the key).
        detail: String,
    },
    /// A streaming connection failed.
    Stream {
        /// What failed.
        detail: String,
    },
}

/// An error talking to a venue, with its context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenueError {
    api: Api,
    endpoint: String,
    status: Option<u16>,
    excerpt: Option<String>,
    kind: ErrorKind,
}

impl VenueError {
    /// An error for `venue` at `endpoint` (e.g. `GET /api/v3/depth`).
    pub fn new(api: Api, endpoint: impl Into<String>, kind: ErrorKind) -> Self {
        Self {
            api,
            endpoint: endpoint.into(),
            status: None,
            excerpt: None,
            kind,
        }
    }

    /// Adds the HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Adds a body excerpt, collapsed to one line and cut to
    /// [`EXCERPT_MAX_CHARS`] characters.
    pub fn with_body(mut self, body: &[u8]) -> Self {
        self.excerpt = excerpt(body);
        self
    }

    /// Replaces every occurrence of the given values in the excerpt with
    /// `[redacted]`. The HTTP client calls it with the sensitive header values
    /// it sent, so a venue that echoes headers cannot leak them into logs.
    pub fn redact(mut self, secrets: &[String]) -> Self {
        if let Some(text) = self.excerpt.as_mut() {
            for secret in secrets.iter().filter(|s| s.len() >= 4) {
                if text.contains(secret.as_str()) {
                    *text = text.replace(secret.as_str(), "[redacted]");
                }
            }
        }
        self
    }

    /// The venue.
    pub fn api(&self) -> Api {
        self.api
    }

    /// Method and path, without the query string.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// HTTP status, when there was a response.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// Short, one-line excerpt of the response body.
    pub fn body_excerpt(&self) -> Option<&str> {
        self.excerpt.as_deref()
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The recommended fix for an operator, when there is a known one.
    pub fn fix(&self) -> Option<String> {
        match &self.kind {
            ErrorKind::GeoBlocked => Some(geo_block_fix(self.api)),
            ErrorKind::Unauthorized => Some(format!(
                "{} needs API keys for this endpoint: add them to the tenant's secret",
                self.api
            )),
            ErrorKind::Banned { .. } => {
                Some("wait for the ban to end and lower the request rate".to_owned())
            }
            ErrorKind::Unreachable { .. } | ErrorKind::Timeout { .. } => Some(format!(
                "check network access to {} and its endpoint variable",
                self.api
            )),
            _ => None,
        }
    }
}

/// The fix for a 451 from `venue`.
pub fn geo_block_fix(api: Api) -> String {
    match api {
        Api::Binance => "use Binance US instead of Binance global: set POLYBOT_BINANCE_US_URL \
             (default https://api.binance.us) and trade the US venue"
            .to_owned(),
        other => format!(
            "{other} refuses this host's location: run the worker in a region the venue serves"
        ),
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::RateLimited {
                retry_after: Some(d),
            } => write!(f, "rate limited; Retry-After {}s", d.as_secs()),
            ErrorKind::RateLimited { retry_after: None } => {
                f.write_str("rate limited; no Retry-After given")
            }
            ErrorKind::Banned { remaining } => write!(
                f,
                "IP banned for repeated rate-limit violations; no calls for another {}s",
                remaining.as_secs()
            ),
            ErrorKind::GeoBlocked => {
                f.write_str("geo-blocked: the venue refuses requests from this host's location")
            }
            ErrorKind::Unauthorized => f.write_str(
                "unauthorised: this endpoint needs valid API keys (or a WAF refused the request)",
            ),
            ErrorKind::Server { attempts } => {
                write!(
                    f,
                    "venue server error, still failing after {attempts} attempt(s)"
                )
            }
            ErrorKind::Status => f.write_str("unexpected HTTP status"),
            ErrorKind::Api { message } => write!(f, "venue returned an error: {message}"),
            ErrorKind::Decode { detail } => write!(f, "malformed response: {detail}"),
            ErrorKind::Unreachable { detail } => write!(f, "unreachable: {detail}"),
            ErrorKind::Timeout { after } => {
                write!(f, "unreachable: no answer within {}ms", after.as_millis())
            }
            ErrorKind::Config { detail } => write!(f, "invalid configuration: {detail}"),
            ErrorKind::Signing { detail } => write!(f, "cannot sign the request: {detail}"),
            ErrorKind::Stream { detail } => write!(f, "stream error: {detail}"),
        }
    }
}

impl fmt::Display for VenueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.api)?;
        if !self.endpoint.is_empty() {
            write!(f, " {}", self.endpoint)?;
        }
        write!(f, ": {}", self.kind)?;
        if let Some(status) = self.status {
            write!(f, " (HTTP {status})")?;
        }
        if let ErrorKind::GeoBlocked = self.kind {
            write!(f, "; fix: {}", geo_block_fix(self.api))?;
        }
        if let Some(excerpt) = &self.excerpt {
            write!(f, "; body: {excerpt}")?;
        }
        Ok(())
    }
}

impl std::error::Error for VenueError {}

/// One-line excerpt of a body, bounded to [`EXCERPT_MAX_CHARS`] characters.
fn excerpt(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    let mut count = 0;
    let mut last_space = true;
    for c in text.chars() {
        let c = if c.is_whitespace() || c.is_control() {
            ' '
        } else {
            c
        };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        if count == EXCERPT_MAX_CHARS {
            out.push('…');
            break;
        }
        out.push(c);
        count += 1;
    }
    let trimmed = out.trim_end();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<ErrorKind> {
        vec![
            ErrorKind::RateLimited {
                retry_after: Some(Duration::from_secs(3)),
            },
            ErrorKind::RateLimited { retry_after: None },
            ErrorKind::Banned {
                remaining: Duration::from_secs(120),
            },
            ErrorKind::GeoBlocked,
            ErrorKind::Unauthorized,
            ErrorKind::Server { attempts: 4 },
            ErrorKind::Status,
            ErrorKind::Api {
                message: String::new(),
            },
            ErrorKind::Decode {
                detail: String::new(),
            },
            ErrorKind::Unreachable {
                detail: String::new(),
            },
            ErrorKind::Timeout {
                after: Duration::from_millis(1),
            },
            ErrorKind::Config {
                detail: String::new(),
            },
            ErrorKind::Signing {
                detail: String::new(),
            },
            ErrorKind::Stream {
                detail: String::new(),
            },
        ]
    }

    #[test]
    fn every_error_kind_for_every_venue_has_a_message_naming_the_venue() {
        for api in Api::ALL {
            for kind in every_kind() {
                // Even with an empty endpoint and empty details.
                for err in [
                    VenueError::new(api, "", kind.clone()),
                    VenueError::new(api, "GET /x", kind.clone())
                        .with_status(500)
                        .with_body(b""),
                ] {
                    let kind_text = err.kind().to_string();
                    assert!(!kind_text.trim().is_empty(), "{kind:?}");
                    let text = err.to_string();
                    assert!(text.contains(api.name()), "{text}");
                    assert!(text.len() > api.name().len() + 4, "{text}");
                }
            }
        }
    }

    #[test]
    fn a_binance_global_geo_block_names_binance_us_as_the_fix() {
        let err = VenueError::new(Api::Binance, "GET /api/v3/ping", ErrorKind::GeoBlocked)
            .with_status(451);
        let text = err.to_string();
        assert!(text.contains("geo-blocked"), "{text}");
        assert!(text.contains("use Binance US"), "{text}");
        assert!(text.contains("HTTP 451"), "{text}");
    }

    #[test]
    fn a_long_body_is_cut_to_a_bounded_one_line_excerpt() {
        let body = format!("line one\n\n   line two {}", "x".repeat(5000));
        let err = VenueError::new(Api::Kraken, "GET /0/public/Depth", ErrorKind::Status)
            .with_body(body.as_bytes());
        let excerpt = err.body_excerpt().unwrap_or_default();
        assert!(excerpt.starts_with("line one line two xxx"), "{excerpt}");
        assert_eq!(excerpt.chars().count(), EXCERPT_MAX_CHARS + 1);
        assert!(!excerpt.contains('\n'));
    }

    #[test]
    fn echoed_secrets_are_redacted_from_the_excerpt() {
        let err = VenueError::new(Api::AlpacaTrading, "GET /v2/account", ErrorKind::Status)
            .with_body(b"{\"echo\":\"APCA-API-SECRET-KEY: s3cr3t-value\"}")
            .redact(&["s3cr3t-value".to_owned()]);
        let text = err.to_string();
        assert!(!text.contains("s3cr3t-value"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }
}
