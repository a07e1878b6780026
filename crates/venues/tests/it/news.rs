//! NewsAPI and RSS against a local server: headlines, a 429 with its
//! Retry-After, and errors that never carry the key.

use std::time::Duration;

use polybot_venues::ClientOptions;
use polybot_venues::news::{Headline, NewsClient};
use secrecy::SecretString;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "newsapi-test-key-1234";

fn key() -> SecretString {
    SecretString::from(KEY.to_owned())
}

#[tokio::test]
async fn newsapi_articles_become_headlines_with_their_source_and_time() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/everything"))
        .and(query_param("q", "fed"))
        .and(header("X-Api-Key", KEY))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"{"status":"ok","articles":[
                {"source":{"name":"Wire"},"title":"Fed cuts rates","description":"Powell spoke.",
                 "url":"https://w.example/1","publishedAt":"2026-04-29T13:00:00Z"},
                {"source":{"name":"Wire"},"title":"  ","url":"https://w.example/2"}
            ]}"#,
        ))
        .mount(&server)
        .await;
    let client = NewsClient::new(&server.uri(), &ClientOptions::default()).unwrap();
    let headlines = client.newsapi("fed", &key()).await.unwrap();
    assert_eq!(
        headlines,
        vec![Headline {
            id: "https://w.example/1".into(),
            source: "Wire".into(),
            title: "Fed cuts rates".into(),
            summary: "Powell spoke.".into(),
            published: Some("2026-04-29T13:00:00Z".parse().unwrap()),
        }]
    );
}

#[tokio::test]
async fn a_429_is_rate_limited_with_its_retry_after_and_never_shows_the_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/everything"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "120")
                .set_body_string(format!(
                    r#"{{"status":"error","code":"rateLimited","message":"key {KEY} made too many requests"}}"#
                )),
        )
        .mount(&server)
        .await;
    let client = NewsClient::new(&server.uri(), &ClientOptions::default()).unwrap();
    let err = client.newsapi("fed", &key()).await.unwrap_err();
    assert!(err.rate_limited);
    assert_eq!(err.retry_after, Some(Duration::from_secs(120)));
    assert!(
        err.message.starts_with(
            "NewsAPI GET /v2/everything: rate limited (HTTP 429), Retry-After 120s; body: "
        ),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("key [redacted] made"),
        "{}",
        err.message
    );
    assert!(!err.message.contains(KEY));
}

#[tokio::test]
async fn a_feed_that_is_not_xml_is_an_error_naming_the_url() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/rss.xml"))
        .respond_with(ResponseTemplate::new(200).set_body_string("not a feed"))
        .mount(&server)
        .await;
    let client = NewsClient::new(&server.uri(), &ClientOptions::default()).unwrap();
    let url = format!("{}/rss.xml", server.uri());
    let err = client.feed(&url).await.unwrap_err();
    assert!(!err.rate_limited);
    assert!(
        err.message
            .starts_with(&format!("RSS feed GET {url}: not an RSS or Atom feed: ")),
        "{}",
        err.message
    );
    assert!(
        err.message.ends_with("; body: not a feed"),
        "{}",
        err.message
    );
}
