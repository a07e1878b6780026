//! News headlines: NewsAPI's `/v2/everything` with a tenant's key, and RSS
//! 2.0, RDF and Atom feeds.
//!
//! [`NewsClient`] makes one request per call and says exactly what failed: a
//! NewsAPI `429` comes back as [`NewsError::rate_limited`] with its
//! `Retry-After`, and no message ever contains the key. Polling, back-off
//! and de-duplication across polls are the caller's (the worker's live news
//! feed); matching headlines to markets is the engine's.

use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::http::ClientOptions;

/// NewsAPI's public base URL.
pub const DEFAULT_NEWSAPI_URL: &str = "https://newsapi.org";

/// One headline, as a source published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headline {
    /// The source's id for it (a GUID or URL; the title when it has neither),
    /// for de-duplication across polls.
    pub id: String,
    /// The publisher (NewsAPI's source name, or the feed's title or URL).
    pub source: String,
    pub title: String,
    /// The description or summary; empty when the source gives none.
    pub summary: String,
    /// When it was published; none when the source gives no readable date.
    pub published: Option<DateTime<Utc>>,
}

/// Why a news request failed: always the source, the endpoint and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NewsError {
    pub message: String,
    /// NewsAPI answered `429`.
    pub rate_limited: bool,
    /// Its `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
}

impl NewsError {
    fn new(message: String) -> Self {
        debug_assert!(!message.is_empty(), "an empty error message is a bug");
        Self {
            message,
            rate_limited: false,
            retry_after: None,
        }
    }
}

/// NewsAPI and feed requests over one HTTP client.
#[derive(Debug, Clone)]
pub struct NewsClient {
    http: reqwest::Client,
    newsapi_url: String,
}

#[derive(serde::Deserialize)]
struct NewsApiResponse {
    #[serde(default)]
    articles: Vec<NewsApiArticle>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewsApiArticle {
    #[serde(default)]
    source: Option<NewsApiSource>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    published_at: Option<DateTime<Utc>>,
}

#[derive(serde::Deserialize)]
struct NewsApiSource {
    #[serde(default)]
    name: Option<String>,
}

/// A one-line excerpt of a body, at most 200 characters, with `secret` removed.
pub fn excerpt(body: &str, secret: Option<&str>) -> String {
    let mut text: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(secret) = secret.filter(|s| s.len() >= 4) {
        text = text.replace(secret, "[redacted]");
    }
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

impl NewsClient {
    /// A client for NewsAPI at `newsapi_url` (a recorded-response server in
    /// tests) and for any feed URL, with the connectors' timeouts.
    pub fn new(newsapi_url: &str, options: &ClientOptions) -> Result<Self, NewsError> {
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout)
            .user_agent(options.user_agent.clone())
            .build()
            .map_err(|e| NewsError::new(format!("building the news HTTP client: {e}")))?;
        Ok(Self {
            http,
            newsapi_url: newsapi_url.trim_end_matches('/').to_owned(),
        })
    }

    /// The newest English articles matching `query`.
    pub async fn newsapi(
        &self,
        query: &str,
        key: &SecretString,
    ) -> Result<Vec<Headline>, NewsError> {
        let endpoint = "NewsAPI GET /v2/everything";
        let url = format!("{}/v2/everything", self.newsapi_url);
        let response = self
            .http
            .get(&url)
            .query(&[
                ("q", query),
                ("sortBy", "publishedAt"),
                ("language", "en"),
                ("pageSize", "50"),
            ])
            .header("X-Api-Key", key.expose_secret())
            .send()
            .await
            .map_err(|e| NewsError::new(format!("{endpoint}: unreachable: {}", e.without_url())))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.text().await.map_err(|e| {
            NewsError::new(format!(
                "{endpoint}: reading the response (HTTP {}): {}",
                status.as_u16(),
                e.without_url()
            ))
        })?;
        let secret = Some(key.expose_secret());
        if status.as_u16() == 429 {
            return Err(NewsError {
                message: format!(
                    "{endpoint}: rate limited (HTTP 429){}; body: {}",
                    retry_after
                        .map_or(String::new(), |d| format!(", Retry-After {}s", d.as_secs())),
                    excerpt(&body, secret)
                ),
                rate_limited: true,
                retry_after,
            });
        }
        if !status.is_success() {
            let hint = match status.as_u16() {
                401 => "; the tenant's newsapi.api_key was refused",
                _ => "",
            };
            return Err(NewsError::new(format!(
                "{endpoint}: HTTP {}{hint}; body: {}",
                status.as_u16(),
                excerpt(&body, secret)
            )));
        }
        let parsed: NewsApiResponse = serde_json::from_str(&body).map_err(|e| {
            NewsError::new(format!(
                "{endpoint}: malformed response (HTTP {}): {e}; body: {}",
                status.as_u16(),
                excerpt(&body, secret)
            ))
        })?;
        Ok(parsed
            .articles
            .into_iter()
            .filter_map(|a| {
                let title = a.title.filter(|t| !t.trim().is_empty())?;
                let id = a.url.clone().unwrap_or_else(|| title.clone());
                Some(Headline {
                    id,
                    source: a
                        .source
                        .and_then(|s| s.name)
                        .unwrap_or_else(|| "NewsAPI".to_owned()),
                    title,
                    summary: a.description.unwrap_or_default(),
                    published: a.published_at,
                })
            })
            .collect())
    }

    /// The items of the RSS or Atom feed at `url`.
    pub async fn feed(&self, url: &str) -> Result<Vec<Headline>, NewsError> {
        let endpoint = format!("RSS feed GET {url}");
        let response =
            self.http.get(url).send().await.map_err(|e| {
                NewsError::new(format!("{endpoint}: unreachable: {}", e.without_url()))
            })?;
        let status = response.status();
        let body = response.text().await.map_err(|e| {
            NewsError::new(format!(
                "{endpoint}: reading the response (HTTP {}): {}",
                status.as_u16(),
                e.without_url()
            ))
        })?;
        if !status.is_success() {
            return Err(NewsError::new(format!(
                "{endpoint}: HTTP {}; body: {}",
                status.as_u16(),
                excerpt(&body, None)
            )));
        }
        parse_feed(&body, url).map_err(|e| {
            NewsError::new(format!(
                "{endpoint}: not an RSS or Atom feed: {e}; body: {}",
                excerpt(&body, None)
            ))
        })
    }
}

/// Parses an RSS 2.0, RDF or Atom document into headlines (`source` is the
/// feed's title, or its URL).
pub fn parse_feed(xml: &str, url: &str) -> Result<Vec<Headline>, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| e.to_string())?;
    let root = doc.root_element();
    let child_text = |node: roxmltree::Node, name: &str| -> Option<String> {
        node.children()
            .find(|c| c.is_element() && c.tag_name().name() == name)
            .and_then(|c| c.text())
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    };
    let (channel, item_tag) = match root.tag_name().name() {
        "rss" => (
            root.children()
                .find(|c| c.is_element() && c.tag_name().name() == "channel")
                .ok_or("an <rss> without a <channel>")?,
            "item",
        ),
        "RDF" => (root, "item"),
        "feed" => (root, "entry"),
        other => {
            return Err(format!(
                "the root element is <{other}>, not <rss> or <feed>"
            ));
        }
    };
    let source = child_text(channel, "title").unwrap_or_else(|| url.to_owned());
    let mut out = Vec::new();
    for item in channel
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == item_tag)
    {
        let Some(title) = child_text(item, "title") else {
            continue;
        };
        let link = child_text(item, "link").or_else(|| {
            item.children()
                .find(|c| c.is_element() && c.tag_name().name() == "link")
                .and_then(|c| c.attribute("href"))
                .map(str::to_owned)
        });
        let id = child_text(item, "guid")
            .or_else(|| child_text(item, "id"))
            .or(link)
            .unwrap_or_else(|| title.clone());
        let summary = child_text(item, "description")
            .or_else(|| child_text(item, "summary"))
            .unwrap_or_default();
        let published = ["pubDate", "published", "updated", "date"]
            .iter()
            .find_map(|tag| child_text(item, tag))
            .and_then(|text| {
                DateTime::parse_from_rfc2822(&text)
                    .or_else(|_| DateTime::parse_from_rfc3339(&text))
                    .ok()
            })
            .map(|t| t.with_timezone(&Utc));
        out.push(Headline {
            id,
            source: source.clone(),
            title,
            summary,
            published,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> Option<DateTime<Utc>> {
        Some(
            DateTime::parse_from_rfc3339(rfc3339)
                .unwrap()
                .with_timezone(&Utc),
        )
    }

    #[test]
    fn rss_and_atom_items_become_headlines() {
        let rss = r#"<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title>
            <item><title>Fed cuts rates</title><link>https://w.example/1</link><guid>g-1</guid>
            <description>Powell spoke.</description><pubDate>Wed, 29 Apr 2026 13:00:00 +0000</pubDate></item>
            </channel></rss>"#;
        assert_eq!(
            parse_feed(rss, "https://w.example/rss").unwrap(),
            vec![Headline {
                id: "g-1".into(),
                source: "Wire".into(),
                title: "Fed cuts rates".into(),
                summary: "Powell spoke.".into(),
                published: at("2026-04-29T13:00:00Z"),
            }]
        );
        let atom = r#"<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom wire</title>
            <entry><title>SEC approves Solana ETF</title><id>urn:a:2</id>
            <link href="https://a.example/2"/><updated>2026-04-29T13:00:00Z</updated></entry></feed>"#;
        assert_eq!(
            parse_feed(atom, "https://a.example/atom").unwrap(),
            vec![Headline {
                id: "urn:a:2".into(),
                source: "Atom wire".into(),
                title: "SEC approves Solana ETF".into(),
                summary: String::new(),
                published: at("2026-04-29T13:00:00Z"),
            }]
        );
        assert_eq!(
            parse_feed("<html/>", "u").unwrap_err(),
            "the root element is <html>, not <rss> or <feed>"
        );
    }

    #[test]
    fn an_item_without_a_readable_date_has_none() {
        let rss = r#"<rss><channel><item><title>Undated</title><pubDate>soon</pubDate></item></channel></rss>"#;
        let items = parse_feed(rss, "https://u.example/rss").unwrap();
        assert_eq!(items[0].published, None);
        assert_eq!(items[0].source, "https://u.example/rss");
        assert_eq!(items[0].id, "Undated");
    }

    #[test]
    fn an_excerpt_is_one_line_and_never_shows_the_key() {
        assert_eq!(
            excerpt("{\"message\":\n \"bad key abcd1234\"}", Some("abcd1234")),
            "{\"message\": \"bad key [redacted]\"}"
        );
    }
}
