//! S3 clients for the workers that keep bytes (content, media): any S3-compatible endpoint,
//! path-style addressing, static credentials from the worker's configuration.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

/// Where the bytes live.
#[derive(Clone)]
pub struct S3Config {
    /// The endpoint workers use (`http://127.0.0.1:9000`).
    pub endpoint: String,
    /// The endpoint clients reach, when it differs (presigned URLs are signed for it).
    pub public_endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("public_endpoint", &self.public_endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key", &self.access_key)
            .field("secret_key", &"***")
            .finish()
    }
}

impl S3Config {
    /// From `CB_S3_ENDPOINT`, `CB_S3_PUBLIC_ENDPOINT`, `CB_S3_REGION` (default `us-east-1`),
    /// `CB_S3_BUCKET` (default `coursebus-content`), `CB_S3_ACCESS_KEY`, `CB_S3_SECRET_KEY`.
    pub fn from_env() -> Result<Self, String> {
        use crate::runtime::env;
        let required = |name: &str| env(name).ok_or_else(|| format!("{name} is required"));
        Ok(Self {
            endpoint: required("CB_S3_ENDPOINT")?,
            public_endpoint: env("CB_S3_PUBLIC_ENDPOINT"),
            region: env("CB_S3_REGION").unwrap_or_else(|| "us-east-1".into()),
            bucket: env("CB_S3_BUCKET").unwrap_or_else(|| "coursebus-content".into()),
            access_key: required("CB_S3_ACCESS_KEY")?,
            secret_key: required("CB_S3_SECRET_KEY")?,
        })
    }

    /// The client for the workers' own calls.
    pub fn client(&self) -> aws_sdk_s3::Client {
        self.client_for(&self.endpoint)
    }

    /// The client that signs URLs handed to browsers and apps.
    pub fn presigning_client(&self) -> aws_sdk_s3::Client {
        self.client_for(self.public_endpoint.as_deref().unwrap_or(&self.endpoint))
    }

    fn client_for(&self, endpoint: &str) -> aws_sdk_s3::Client {
        let credentials = Credentials::new(&self.access_key, &self.secret_key, None, None, "coursebus-config");
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .credentials_provider(credentials)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// Create the bucket unless it exists (idempotent; replicas may race).
    pub async fn ensure_bucket(&self) -> Result<(), String> {
        let client = self.client();
        if client.head_bucket().bucket(&self.bucket).send().await.is_ok() {
            return Ok(());
        }
        match client.create_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(err) => {
                // Another replica may have created it meanwhile.
                if client.head_bucket().bucket(&self.bucket).send().await.is_ok() {
                    Ok(())
                } else {
                    Err(format!(
                        "cannot create bucket {}: {}",
                        self.bucket,
                        aws_sdk_s3::error::DisplayErrorContext(err)
                    ))
                }
            }
        }
    }
}
