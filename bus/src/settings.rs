//! Live settings from the central configuration bucket (`cb_config`, NATS KV): a worker
//! declares the keys it uses ([`Settings::live`]) and reads the current value from a [`Live`];
//! the supervisor seeds missing keys with the worker's configured value, applies the bucket's
//! value at start, and watches the bucket: a new value is parsed with the key's own parser
//! (`coursebus_contracts::settings`) and applied without a restart; a malformed one is logged as an
//! error and the last good value kept; a deleted key goes back to the configured value.

use async_nats::jetstream::{self, kv};
use coursebus_contracts::settings::Key;
use coursebus_contracts::subjects::config::BUCKET;
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::BusError;

/// The current value of a setting.
#[derive(Debug, Clone)]
pub struct Live<T>(watch::Receiver<T>);

impl<T: Clone> Live<T> {
    /// A value that never changes (tests, tools).
    pub fn fixed(value: T) -> Self {
        let (_, rx) = watch::channel(value);
        Self(rx)
    }

    pub fn get(&self) -> T {
        self.0.borrow().clone()
    }

    /// Wait until the value changes (`false` once it never can).
    pub async fn changed(&mut self) -> bool {
        self.0.changed().await.is_ok()
    }
}

/// A type a key's value parses into.
pub trait FromSetting: Sized + Clone + Send + Sync + std::fmt::Display + 'static {
    fn parse(key: &Key, raw: &str) -> Result<Self, String>;
}

macro_rules! integer_setting {
    ($($t:ty),*) => {$(
        impl FromSetting for $t {
            fn parse(key: &Key, raw: &str) -> Result<Self, String> {
                let value = key.integer(raw)?;
                <$t>::try_from(value).map_err(|_| format!("{} is out of range for {}", value, key.name))
            }
        }
    )*};
}
integer_setting!(u32, u64, i64, usize);

impl FromSetting for bool {
    fn parse(key: &Key, raw: &str) -> Result<Self, String> {
        key.flag(raw)
    }
}

type Apply = Box<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

struct Entry {
    key: &'static Key,
    /// The worker's configured value: seeds a missing key; restored when the key is deleted.
    configured: String,
    apply: Apply,
}

/// The keys one worker uses.
#[derive(Default)]
pub struct Settings {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.entries.iter().map(|e| e.key.name)).finish()
    }
}

impl Settings {
    /// Use `key`, starting from `configured` (the environment's value or the default).
    pub fn live<T: FromSetting>(&mut self, key: &'static Key, configured: T) -> Live<T> {
        let (tx, rx) = watch::channel(configured.clone());
        let apply: Apply = Box::new(move |raw| {
            let value = T::parse(key, raw)?;
            let shown = value.to_string();
            tx.send_replace(value);
            Ok(shown)
        });
        self.entries.push(Entry { key, configured: configured.to_string(), apply });
        Live(rx)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Open (or create) the bucket, seed the keys it lacks, apply what it holds, then follow it
    /// in a task until `shutdown`. Returns once the current values are applied.
    pub async fn start(
        self,
        js: &jetstream::Context,
        replicas: usize,
        shutdown: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, BusError> {
        let err = |e: &dyn std::fmt::Display| BusError::JetStream(format!("bucket {BUCKET}: {e}"));
        let store = match js.get_key_value(BUCKET).await {
            Ok(store) => store,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: BUCKET.to_owned(),
                    description: "coursebus central configuration".into(),
                    history: 10,
                    num_replicas: replicas.max(1),
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| err(&e))?,
        };
        // Watch first: nothing that changes from here on is missed.
        let keys: Vec<&str> = self.entries.iter().map(|e| e.key.name).collect();
        let mut watch = store.watch_many(keys).await.map_err(|e| err(&e))?;
        for entry in &self.entries {
            // `create` fails when the key exists: the bucket's value wins over the environment.
            if store.create(entry.key.name, entry.configured.clone().into()).await.is_ok() {
                tracing::info!(key = entry.key.name, value = %entry.configured, "setting seeded from the configuration");
            }
            match store.get(entry.key.name).await {
                Ok(Some(raw)) => self.apply(entry.key.name, &raw),
                Ok(None) => {}
                Err(e) => return Err(err(&e)),
            }
        }
        Ok(tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    next = watch.next() => next,
                };
                match next {
                    Some(Ok(update)) => match update.operation {
                        kv::Operation::Put => self.apply(&update.key, &update.value),
                        kv::Operation::Delete | kv::Operation::Purge => self.reset(&update.key),
                    },
                    Some(Err(e)) => tracing::warn!(error = %e, bucket = BUCKET, "configuration watch failed"),
                    None => {
                        tracing::warn!(bucket = BUCKET, "configuration watch ended; live settings stay as they are");
                        return;
                    }
                }
            }
        }))
    }

    fn apply(&self, key: &str, raw: &[u8]) {
        let Some(entry) = self.entries.iter().find(|e| e.key.name == key) else { return };
        let raw = String::from_utf8_lossy(raw);
        match (entry.apply)(&raw) {
            Ok(value) => tracing::info!(key, %value, "setting applied"),
            Err(reason) => tracing::error!(key, value = %raw, %reason, "setting refused; the last good value stays"),
        }
    }

    fn reset(&self, key: &str) {
        let Some(entry) = self.entries.iter().find(|e| e.key.name == key) else { return };
        match (entry.apply)(&entry.configured) {
            Ok(value) => tracing::info!(key, %value, "setting deleted; back to the configured value"),
            Err(reason) => tracing::error!(key, %reason, "the configured value is not valid"),
        }
    }
}

/// Shared handle to the bucket for tools (`cargo xtask config`).
pub async fn bucket(js: &jetstream::Context) -> Result<kv::Store, BusError> {
    js.get_key_value(BUCKET).await.map_err(|e| BusError::JetStream(format!("bucket {BUCKET}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use coursebus_contracts::settings::REFUND_WINDOW_DAYS;

    #[test]
    fn a_bad_value_keeps_the_last_good_one_and_delete_restores_the_configured() {
        let mut settings = Settings::default();
        let days = settings.live::<u32>(&REFUND_WINDOW_DAYS, 14);
        settings.apply(REFUND_WINDOW_DAYS.name, b"30");
        assert_eq!(days.get(), 30);
        settings.apply(REFUND_WINDOW_DAYS.name, b"thirty");
        assert_eq!(days.get(), 30);
        settings.apply(REFUND_WINDOW_DAYS.name, b"9999");
        assert_eq!(days.get(), 30);
        settings.reset(REFUND_WINDOW_DAYS.name);
        assert_eq!(days.get(), 14);
        settings.apply("payments.unknown", b"1");
        assert_eq!(days.get(), 14);
    }
}
