//! The news feed: drives `polybot_venues::news` on the news strategy's poll
//! interval (NewsAPI with the tenant's key, the strategy's RSS/Atom feeds),
//! backs off NewsAPI on a `429` and reports the rate limit, and hands the
//! engine each headline once.
//!
//! Not here: the HTTP requests and parsing (crate `polybot-venues`).

use std::collections::HashSet;
use std::time::Duration;

use polybot_core::worker::FeedState;
use polybot_engine::{Clock, Event, EventKind, Headline};
use polybot_venues::news::{NewsClient, NewsError};
use secrecy::SecretString;
use tokio::time::Instant;

use super::health::now_ms;
use super::plan::{FeedPlan, NEWSAPI, RSS};
use super::translate::headline;
use super::{Ctx, LiveSettings};
use crate::source::SystemClock;

/// Headline ids remembered for de-duplication before the set is reset.
const SEEN_HEADLINES_MAX: usize = 10_000;
/// Longest NewsAPI back-off after repeated 429s.
const NEWS_BACKOFF_MAX: Duration = Duration::from_secs(3600);

/// The news feed's client and what it remembers between polls.
pub(super) struct NewsFeed {
    client: NewsClient,
    query: Option<String>,
    key: Option<SecretString>,
    rss: Vec<String>,
    seen: HashSet<String>,
    /// Consecutive 429s, for the back-off.
    limited: u32,
    next_newsapi: Option<Instant>,
}

impl NewsFeed {
    pub(super) fn new(
        settings: &LiveSettings,
        plan: &FeedPlan,
        key: Option<SecretString>,
    ) -> Result<Self, NewsError> {
        Ok(Self {
            client: NewsClient::new(&settings.newsapi_url, &settings.client)?,
            query: plan.newsapi_query.clone(),
            key,
            rss: plan.rss_feeds.clone(),
            seen: HashSet::new(),
            limited: 0,
            next_newsapi: None,
        })
    }

    /// Headlines not seen before, oldest first.
    fn fresh(&mut self, mut headlines: Vec<Headline>) -> Vec<Headline> {
        if self.seen.len() > SEEN_HEADLINES_MAX {
            self.seen.clear();
        }
        headlines.retain(|h| self.seen.insert(h.id.clone()));
        headlines.sort_by_key(|h| h.published);
        headlines
    }

    /// How long NewsAPI is left alone after a 429: its `Retry-After` (never
    /// less than the poll interval), else a doubling back-off.
    fn backoff(&mut self, every: Duration, retry_after: Option<Duration>) -> Duration {
        self.limited = self.limited.saturating_add(1);
        let backoff = every
            .saturating_mul(1 << self.limited.min(6))
            .min(NEWS_BACKOFF_MAX);
        retry_after.map_or(backoff, |r| r.max(every))
    }
}

pub(super) async fn news_feed(ctx: Ctx, mut news: NewsFeed, every: Duration) {
    if news.query.is_some() && news.key.is_none() {
        ctx.shared.fail(
            NEWSAPI,
            FeedState::NeedsKeys,
            "news_arb.newsapi_query is set but the tenant's keys have no newsapi.api_key"
                .to_owned(),
            Some("add newsapi.api_key to the tenant's exchange keys".to_owned()),
        );
    }
    loop {
        let now = SystemClock.now();
        let mut headlines = Vec::new();
        let newsapi_due = news.next_newsapi.is_none_or(|t| Instant::now() >= t);
        if let (Some(query), Some(key), true) = (news.query.clone(), news.key.clone(), newsapi_due)
        {
            match news.client.newsapi(&query, &key).await {
                Ok(found) => {
                    news.limited = 0;
                    news.next_newsapi = None;
                    ctx.shared.news_answered();
                    ctx.shared.ok(NEWSAPI);
                    headlines.extend(found.into_iter().map(|h| headline(h, now)));
                }
                Err(err) if err.rate_limited => {
                    let wait = news.backoff(every, err.retry_after);
                    news.next_newsapi = Some(Instant::now() + wait);
                    let until = now_ms()
                        .saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
                    let reason = format!(
                        "rate limited: {}; NewsAPI is not asked again for {}s",
                        err.message,
                        wait.as_secs()
                    );
                    ctx.shared.news_rate_limited(until, reason);
                    ctx.shared
                        .fail(NEWSAPI, FeedState::RateLimited, err.message, None);
                }
                Err(err) => ctx
                    .shared
                    .fail(NEWSAPI, FeedState::Error, err.message, None),
            }
        }
        let mut rss_errors = Vec::new();
        for url in &news.rss {
            match news.client.feed(url).await {
                Ok(found) => headlines.extend(found.into_iter().map(|h| headline(h, now))),
                Err(err) => rss_errors.push(err.message),
            }
        }
        if !news.rss.is_empty() {
            if rss_errors.is_empty() {
                ctx.shared.ok(RSS);
            } else {
                ctx.shared
                    .fail(RSS, FeedState::Error, rss_errors.join("; "), None);
            }
        }
        let ts = SystemClock.now();
        for headline in news.fresh(headlines) {
            if !ctx
                .emit(Event::new(ts, EventKind::Headline(Box::new(headline))))
                .await
            {
                return;
            }
        }
        if !ctx.pause(every).await {
            return;
        }
    }
}
