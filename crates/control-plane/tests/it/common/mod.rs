//! A control plane on a fresh database, driven through its router.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use polybot_control_plane::{AppState, WorkerDatabase, auth, router};
use polybot_secrets::local::{LocalSecretStore, MasterKey};
use polybot_store::{Db, Scope};
use secrecy::SecretString;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tower::ServiceExt;

pub const OPERATOR: &str = "pbo_test-operator-token-0123456789abcdef";

pub struct Harness {
    pub state: AppState,
    pub pool: PgPool,
    pub options: PgConnectOptions,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Harness {
    pub async fn new(pool_opts: PgPoolOptions, options: PgConnectOptions) -> Self {
        let pool = pool_opts.connect_with(options.clone()).await.unwrap();
        let db = Db::from_pool(pool.clone(), Scope::Control);
        let store = Arc::new(LocalSecretStore::new(MasterKey::from_bytes([7u8; 32])));
        let state = AppState::new(db.clone(), store, WorkerDatabase::from_options(&options));
        auth::ensure_operator_token(&db, Some(&SecretString::from(OPERATOR.to_owned())), None)
            .await
            .unwrap();
        Self {
            state,
            pool,
            options,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        self.call_with(method, uri, token, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
            None => request.body(Body::empty()).unwrap(),
        };
        self.raw(request).await
    }

    pub async fn raw(&self, request: Request<Body>) -> Reply {
        let response = router(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    /// Onboards `body` as the operator and waits until the tenant is active.
    pub async fn onboard(&self, body: Value) -> String {
        let reply = self
            .call(Method::POST, "/tenants", Some(OPERATOR), Some(body))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        let id = reply.body["id"].as_str().unwrap().to_owned();
        self.wait_for_state(&id, "active").await;
        id
    }

    pub async fn wait_for_state(&self, id: &str, state: &str) -> Value {
        for _ in 0..200 {
            let reply = self
                .call(Method::GET, &format!("/tenants/{id}"), Some(OPERATOR), None)
                .await;
            if reply.body["state"] == state {
                return reply.body;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("tenant {id} never reached {state}");
    }

    /// Counts rows as the superuser (no RLS): what is really stored.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }
}

/// A syntactically valid 2048-bit RSA key in PKCS#8 PEM (generated for tests).
pub const TEST_PEM: &str = include_str!("../../fixtures/test_rsa_key.pem");
