//! Typed configuration: what every worker reads from the environment ([`CommonConfig`]), the
//! parsers each worker's own section uses ([`var`], [`required`], [`or`]), and [`Secret`] for
//! values that must never be printed.
//!
//! Every malformed value is one [`ConfigError`] naming the variable and what it must be; a worker
//! refuses to start with it rather than run on a default the operator did not choose.

use std::str::FromStr;
use std::time::Duration;

use crate::runtime::env;

/// A setting from the environment that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is required")]
    Missing { name: String },
    #[error("{name}={value:?} is not valid: {reason}")]
    Invalid { name: String, value: String, reason: String },
}

/// A value that must never reach a log: `Debug` and `Display` print `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The value itself, for the one place that needs it (a connection, a signature).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret<String> {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl<T> std::fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `name` parsed as `T`; `None` when unset or empty.
pub fn var<T: FromStr>(name: &str) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    env(name)
        .map(|value| {
            value.trim().parse::<T>().map_err(|err| ConfigError::Invalid {
                name: name.to_owned(),
                reason: err.to_string(),
                value,
            })
        })
        .transpose()
}

/// `name` parsed as `T`, which must be set.
pub fn required<T: FromStr>(name: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    var(name)?.ok_or_else(|| ConfigError::Missing { name: name.to_owned() })
}

/// `name` parsed as `T`, or `default` when unset.
pub fn or<T: FromStr>(name: &str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    Ok(var(name)?.unwrap_or(default))
}

/// `name` as whole seconds, or `default` when unset.
pub fn secs(name: &str, default: Duration) -> Result<Duration, ConfigError> {
    Ok(var::<u64>(name)?.map(Duration::from_secs).unwrap_or(default))
}

/// `name` as milliseconds, or `default` when unset.
pub fn millis(name: &str, default: Duration) -> Result<Duration, ConfigError> {
    Ok(var::<u64>(name)?.map(Duration::from_millis).unwrap_or(default))
}

/// `name` checked by `check` (which says what is wrong), or `default` when unset.
pub fn checked<T: FromStr>(name: &str, default: T, check: impl Fn(&T) -> Result<(), String>) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    let value = or(name, default)?;
    check(&value).map_err(|reason| ConfigError::Invalid {
        name: name.to_owned(),
        value: env(name).unwrap_or_default(),
        reason,
    })?;
    Ok(value)
}

/// How logs are written (`CB_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("must be text or json".into()),
        }
    }
}

/// What every worker is configured with, from the same variables:
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `CB_NATS_URL` | NATS servers, comma-separated; `user:password@` allowed | `nats://127.0.0.1:4222` |
/// | `CB_LOG_FORMAT` | `text` or `json` | `text` |
/// | `CB_STREAM_REPLICAS` | JetStream replicas of the streams the worker owns (1–5) | 1 |
/// | `CB_<SERVICE>_DATABASE_URL` | its PostgreSQL (workers that have one) | — |
/// | `CB_<SERVICE>_DB_MAX_CONNECTIONS` | its pool size | 10 |
/// | `CB_<SERVICE>_CALL_DEADLINE_MS` | deadline of each call it makes to another service | 2000 |
#[derive(Clone)]
pub struct CommonConfig {
    pub nats_url: Secret<String>,
    pub log_format: LogFormat,
    pub stream_replicas: usize,
    /// The worker's PostgreSQL, when it has one.
    pub database_url: Option<Secret<String>>,
    pub db_max_connections: u32,
    pub call_deadline: Duration,
}

impl std::fmt::Debug for CommonConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommonConfig")
            .field("nats_url", &crate::client::redact(self.nats_url.expose()))
            .field("log_format", &self.log_format)
            .field("stream_replicas", &self.stream_replicas)
            .field("database_url", &self.database_url.as_ref().map(|_| "***"))
            .field("db_max_connections", &self.db_max_connections)
            .field("call_deadline", &self.call_deadline)
            .finish()
    }
}

impl CommonConfig {
    /// The defaults, on `nats_url` (tests and embedding).
    pub fn new(nats_url: impl Into<String>) -> Self {
        Self {
            nats_url: Secret::new(nats_url.into()),
            log_format: LogFormat::Text,
            stream_replicas: 1,
            database_url: None,
            db_max_connections: 10,
            call_deadline: Duration::from_secs(2),
        }
    }

    /// The defaults with a database.
    pub fn with_database(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(Secret::new(url.into()));
        self
    }

    /// Read from the environment; `service` names the worker's own variables
    /// (`CB_<SERVICE>_DATABASE_URL`, …; `service` in any case).
    pub fn from_env(service: &str) -> Result<Self, ConfigError> {
        let own = |suffix: &str| format!("CB_{}_{suffix}", service.to_ascii_uppercase());
        let defaults = Self::new("nats://127.0.0.1:4222");
        Ok(Self {
            nats_url: Secret::new(or("CB_NATS_URL", defaults.nats_url.expose().clone())?),
            log_format: or("CB_LOG_FORMAT", LogFormat::Text)?,
            stream_replicas: checked("CB_STREAM_REPLICAS", 1usize, |n| {
                (1..=5).contains(n).then_some(()).ok_or_else(|| "must be 1 to 5".to_owned())
            })?,
            database_url: var::<String>(&own("DATABASE_URL"))?.map(Secret::new),
            db_max_connections: checked(&own("DB_MAX_CONNECTIONS"), defaults.db_max_connections, |n| {
                (1..=1000).contains(n).then_some(()).ok_or_else(|| "must be 1 to 1000".to_owned())
            })?,
            call_deadline: millis(&own("CALL_DEADLINE_MS"), defaults.call_deadline)?,
        })
    }

    /// The database URL, which this worker cannot start without.
    pub fn require_database(&self, service: &str) -> Result<&Secret<String>, ConfigError> {
        self.database_url
            .as_ref()
            .ok_or_else(|| ConfigError::Missing { name: format!("CB_{}_DATABASE_URL", service.to_ascii_uppercase()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2".to_owned());
        assert_eq!(format!("{secret:?} {secret}"), "*** ***");
        assert_eq!(secret.expose(), "hunter2");
        let common = CommonConfig::new("nats://svc:pw@127.0.0.1:4222").with_database("postgres://u:pw@db/x");
        let shown = format!("{common:?}");
        assert!(!shown.contains("pw"), "{shown}");
    }

    #[test]
    fn a_malformed_value_names_its_variable() {
        let err = ConfigError::Invalid { name: "CB_X".into(), value: "ten".into(), reason: "invalid digit".into() };
        assert_eq!(err.to_string(), "CB_X=\"ten\" is not valid: invalid digit");
        assert_eq!(ConfigError::Missing { name: "CB_Y".into() }.to_string(), "CB_Y is required");
        assert!("yaml".parse::<LogFormat>().is_err());
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
    }
}
