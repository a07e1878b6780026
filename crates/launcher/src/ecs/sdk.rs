//! The AWS SDK configuration every AWS client of the platform (this
//! launcher's ECS client, the Secrets Manager store) is built from. What does
//! not live here: each client's own retry and timeout settings.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_ecs::config::SharedHttpClient;

/// The HTTPS client of every AWS client: hyper 1 with rustls on ring (the
/// crypto provider the rest of the workspace already builds), trusting the
/// system's root certificates. Plain `http://` endpoints (an emulator on
/// loopback) work too.
pub fn https_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The AWS SDK configuration as every AWS tool reads it: the standard
/// credential chain (environment, profile, web identity, ECS container and
/// EC2 instance credentials), the region (`AWS_REGION`, the profile), and
/// endpoint overrides (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_ECS`,
/// `AWS_ENDPOINT_URL_SECRETS_MANAGER`). SSO profiles and `credential_process`
/// are not built in (they are SDK features this binary leaves out).
pub async fn load_aws_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}
