//! The end-to-end harness: real servers, started here, torn down here.
//!
//! [`Infra`] is one PostgreSQL server per test run. Each test gets its own [`Platform`]: a fresh
//! nats-server with JetStream in a temp folder, a fresh database, two identity replicas and a
//! gateway (in-process tasks with their own NATS connections), so tests never see each other's
//! data and can stop replicas freely.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod spans;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use coursebus_contracts::subjects::srv;
use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use xtask::s3::S3Server;
use xtask::stack::{Durability, Mongo, Nats, Postgres, Smtp, Stripe, StripeWebhook, Tools, workspace_root};

/// One PostgreSQL, one MongoDB-wire and one SMTP server shared by every test of the run (each
/// platform gets its own databases on them; tests tell their emails apart by recipient).
#[derive(Debug)]
pub struct Infra {
    pub tools: Tools,
    pub pg: Postgres,
    pub mongo: Mongo,
    pub smtp: Smtp,
    /// S3 (s3s-fs, signatures checked); each platform has its own bucket.
    pub s3: S3Server,
    _dir: tempfile::TempDir,
}

impl Infra {
    pub fn start() -> Result<Self> {
        let tools = Tools::ensure(&workspace_root())?;
        let dir = tempfile::Builder::new().prefix("coursebus-test-").tempdir()?;
        let pg = Postgres::start(&tools, &dir.path().join("pg"), 0, Durability::Fast, &dir.path().join("pg.log"))?;
        let mongo = Mongo::start(&tools, &dir.path().join("mongo"), 0, &dir.path().join("mongo.log"))?;
        let smtp = Smtp::start(&tools, &dir.path().join("maildir"), 0, &dir.path().join("smtp.log"))?;
        let secret = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
        let s3 = S3Server::start(&dir.path().join("s3"), 0, "coursebus-test", &secret)?;
        Ok(Self { tools, pg, mongo, smtp, s3, _dir: dir })
    }
}

/// How a test wants its platform.
#[derive(Debug, Clone)]
pub struct Options {
    pub identity_replicas: usize,
    pub catalog_replicas: usize,
    pub search_replicas: usize,
    pub enrollment_replicas: usize,
    pub notifications_replicas: usize,
    pub content_replicas: usize,
    pub media_replicas: usize,
    /// Payments replicas; any starts a Stripe-compatible server (localstripe) for the platform,
    /// delivering webhooks to its gateway.
    pub payments_replicas: usize,
    pub assessment_replicas: usize,
    pub rate_limit_burst: u32,
    pub rate_limit_replenish: Duration,
    pub access_ttl: Duration,
    /// NATS with the production users and permissions (`nats/secure.conf`): each service
    /// connects as its own user; tests talk to NATS as `operator`.
    pub secured: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            identity_replicas: 2,
            catalog_replicas: 0,
            search_replicas: 0,
            enrollment_replicas: 0,
            notifications_replicas: 0,
            content_replicas: 0,
            media_replicas: 0,
            payments_replicas: 0,
            assessment_replicas: 0,
            rate_limit_burst: 10_000,
            rate_limit_replenish: Duration::from_millis(500),
            access_ttl: Duration::from_secs(900),
            secured: false,
        }
    }
}

/// The bootstrap admin every platform has.
pub const ADMIN_EMAIL: &str = "root@coursebus.test";
pub const ADMIN_PASSWORD: &str = "bootstrap-secret-2026";

struct Task {
    shutdown: CancellationToken,
    handle: Option<JoinHandle<()>>,
    /// A replica running on a runtime of its own, so that it can be killed whole (every task it
    /// spawned, its connections and child processes), as a crash would.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Task {
    /// Run `replica` on a runtime of its own (see [`Task::kill`]).
    fn isolated(name: &str, replica: impl FnOnce(CancellationToken) -> JoinHandleFuture) -> Self {
        let shutdown = CancellationToken::new();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
            .expect("a runtime for a replica");
        let handle = runtime.spawn(replica(shutdown.clone()));
        Self { shutdown, handle: Some(handle), runtime: Some(runtime) }
    }

    /// Run a worker's `run(config, shutdown)` as a replica, logging its failure: on the test's
    /// runtime, or (`isolated`) on a runtime of its own so that it can be killed.
    fn replica<F, Fut, E>(name: &'static str, isolated: bool, run: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let body = move |token: CancellationToken| -> JoinHandleFuture {
            let replica = run(token);
            Box::pin(async move {
                if let Err(err) = replica.await {
                    tracing::error!(error = %err, replica = name, "replica failed");
                }
            })
        };
        if isolated {
            return Self::isolated(name, body);
        }
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(body(shutdown.clone()));
        Self { shutdown, handle: Some(handle), runtime: None }
    }

    /// Ask the replica to stop and wait until it has.
    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
    }

    /// Stop the replica at once with nothing handed back: its runtime is dropped, so every task
    /// it spawned stops where it was, its NATS connections close and its ffmpeg children die.
    fn kill(mut self) {
        match self.runtime.take() {
            Some(runtime) => runtime.shutdown_background(),
            None => panic!("only replicas started on a runtime of their own can be killed"),
        }
    }
}

type JoinHandleFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl Drop for Task {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One isolated coursebus: NATS, a database, identity replicas, a gateway.
pub struct Platform {
    pub nats: Nats,
    pub base_url: String,
    pub database_url: String,
    pub mongodb_url: String,
    /// This platform's catalog database on the shared MongoDB server.
    pub catalog_db: String,
    /// This platform's enrollment database on the shared PostgreSQL server.
    pub enrollment_database_url: String,
    /// This platform's notifications database on the shared PostgreSQL server.
    pub notifications_database_url: String,
    /// Where notifications send email (the shared SMTP server).
    pub smtp_url: String,
    /// This platform's content database on the shared PostgreSQL server.
    pub content_database_url: String,
    /// This platform's bucket on the shared S3 server.
    pub s3: coursebus_bus::s3::S3Config,
    /// ffmpeg, for media replicas and for tests that make clips.
    pub ffmpeg: std::path::PathBuf,
    /// This platform's payments database on the shared PostgreSQL server.
    pub payments_database_url: String,
    /// This platform's assessment database on the shared PostgreSQL server.
    pub assessment_database_url: String,
    /// This platform's Stripe-compatible server (with payments replicas).
    pub stripe: Option<Stripe>,
    /// The secret key payments uses with it.
    pub stripe_secret_key: String,
    /// The webhook signing secret it and the gateway share.
    pub stripe_webhook_secret: String,
    pub http: reqwest::Client,
    pub options: Options,
    /// The clock of the workers that decide by time (payments): a test moves it forward instead
    /// of editing rows.
    pub clock: coursebus_bus::clock::Clock,
    /// The running replicas of each service, by service name.
    replicas: std::collections::HashMap<&'static str, Vec<Task>>,
    gateway: Option<Task>,
    _dir: tempfile::TempDir,
}

/// Every worker service a platform can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Identity,
    Catalog,
    Search,
    Enrollment,
    Notifications,
    Content,
    Media,
    Payments,
    Assessment,
}

impl Service {
    /// Every service, in the order replicas are stopped.
    pub const ALL: [Service; 9] = [
        Service::Identity,
        Service::Catalog,
        Service::Search,
        Service::Enrollment,
        Service::Notifications,
        Service::Content,
        Service::Media,
        Service::Payments,
        Service::Assessment,
    ];

    /// Its micro-service name (`$SRV.PING.<name>`).
    pub fn name(self) -> &'static str {
        use coursebus_contracts::subjects as s;
        match self {
            Service::Identity => s::identity::SERVICE,
            Service::Catalog => s::catalog::SERVICE,
            Service::Search => s::search::SERVICE,
            Service::Enrollment => s::enrollment::SERVICE,
            Service::Notifications => s::notifications::SERVICE,
            Service::Content => s::content::SERVICE,
            Service::Media => s::media::SERVICE,
            Service::Payments => s::payments::SERVICE,
            Service::Assessment => s::assessment::SERVICE,
        }
    }
}

impl Options {
    /// How many replicas of `service` a platform with these options starts.
    pub fn replicas(&self, service: Service) -> usize {
        match service {
            Service::Identity => self.identity_replicas,
            Service::Catalog => self.catalog_replicas,
            Service::Search => self.search_replicas,
            Service::Enrollment => self.enrollment_replicas,
            Service::Notifications => self.notifications_replicas,
            Service::Content => self.content_replicas,
            Service::Media => self.media_replicas,
            Service::Payments => self.payments_replicas,
            Service::Assessment => self.assessment_replicas,
        }
    }

    fn replicas_mut(&mut self, service: Service) -> &mut usize {
        match service {
            Service::Identity => &mut self.identity_replicas,
            Service::Catalog => &mut self.catalog_replicas,
            Service::Search => &mut self.search_replicas,
            Service::Enrollment => &mut self.enrollment_replicas,
            Service::Notifications => &mut self.notifications_replicas,
            Service::Content => &mut self.content_replicas,
            Service::Media => &mut self.media_replicas,
            Service::Payments => &mut self.payments_replicas,
            Service::Assessment => &mut self.assessment_replicas,
        }
    }
}

/// A platform described service by service: `Platform::builder().with(Service::Enrollment,
/// 2).start(&infra)`. It starts with the defaults of [`Options`] (two identity replicas, the
/// bootstrap admin, generous rate limits).
#[derive(Debug, Clone, Default)]
pub struct Builder {
    options: Options,
}

impl Builder {
    /// Run `replicas` replicas of `service` (0 runs none).
    pub fn with(mut self, service: Service, replicas: usize) -> Self {
        *self.options.replicas_mut(service) = replicas;
        self
    }

    /// NATS with the production users and permissions (see [`Options::secured`]).
    pub fn secured(mut self) -> Self {
        self.options.secured = true;
        self
    }

    /// The gateway's rate limit: `burst` requests, one more every `replenish`.
    pub fn rate_limit(mut self, burst: u32, replenish: Duration) -> Self {
        self.options.rate_limit_burst = burst;
        self.options.rate_limit_replenish = replenish;
        self
    }

    /// How long access tokens live.
    pub fn access_ttl(mut self, ttl: Duration) -> Self {
        self.options.access_ttl = ttl;
        self
    }

    pub async fn start(self, infra: &Infra) -> Result<Platform> {
        Platform::start(infra, self.options).await
    }
}

static DB_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Platform {
    /// Describe a platform service by service (see [`Builder`]).
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub async fn start(infra: &Infra, options: Options) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("coursebus-platform-").tempdir()?;
        let nats = {
            let (tools, store, log) = (infra.tools.clone(), dir.path().join("nats"), dir.path().join("nats.log"));
            let secured = options.secured;
            tokio::task::spawn_blocking(move || {
                if secured {
                    Nats::start_secured(&tools, &store, &log)
                } else {
                    Nats::start(&tools, &store, 0, 0, &log)
                }
            })
            .await??
        };
        let db = format!("identity_{}_{}", std::process::id(), DB_COUNTER.fetch_add(1, Ordering::SeqCst));
        infra.pg.create_database(&db)?;
        let database_url = infra.pg.url(&db);
        let enrollment_db = db.replace("identity", "enrollment");
        infra.pg.create_database(&enrollment_db)?;
        let notifications_db = db.replace("identity", "notifications");
        infra.pg.create_database(&notifications_db)?;
        let content_db = db.replace("identity", "content");
        infra.pg.create_database(&content_db)?;
        let payments_db = db.replace("identity", "payments");
        infra.pg.create_database(&payments_db)?;
        let assessment_db = db.replace("identity", "assessment");
        infra.pg.create_database(&assessment_db)?;
        let mut platform = Self {
            nats,
            base_url: String::new(),
            database_url,
            mongodb_url: infra.mongo.url(),
            catalog_db: db.replace("identity", "catalog"),
            enrollment_database_url: infra.pg.url(&enrollment_db),
            notifications_database_url: infra.pg.url(&notifications_db),
            smtp_url: infra.smtp.url(),
            content_database_url: infra.pg.url(&content_db),
            s3: coursebus_bus::s3::S3Config {
                endpoint: infra.s3.endpoint.clone(),
                public_endpoint: None,
                region: "us-east-1".into(),
                bucket: db.replace("identity_", "content-").replace('_', "-"),
                access_key: infra.s3.access_key.clone(),
                secret_key: infra.s3.secret_key.clone(),
            },
            ffmpeg: infra.tools.ffmpeg.clone(),
            payments_database_url: infra.pg.url(&payments_db),
            assessment_database_url: infra.pg.url(&assessment_db),
            stripe: None,
            stripe_secret_key: format!("sk_test_{}", uuid::Uuid::new_v4().simple()),
            stripe_webhook_secret: format!("whsec_{}", uuid::Uuid::new_v4().simple()),
            http: reqwest::Client::builder().timeout(Duration::from_secs(20)).build()?,
            options: options.clone(),
            clock: coursebus_bus::clock::Clock::system(),
            replicas: Default::default(),
            gateway: None,
            _dir: dir,
        };
        // Payments replicas start once the gateway's address (their Stripe webhooks) is known.
        for service in Service::ALL.into_iter().filter(|s| *s != Service::Payments) {
            for _ in 0..options.replicas(service) {
                platform.start_replica(service);
            }
        }

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        platform.base_url = format!("http://{}", listener.local_addr()?);
        if options.payments_replicas > 0 {
            let webhook = StripeWebhook {
                url: platform.url("/v1/payments/webhooks/stripe"),
                secret: platform.stripe_webhook_secret.clone(),
            };
            let (tools, log) = (infra.tools.clone(), platform._dir.path().join("stripe.log"));
            let stripe =
                tokio::task::spawn_blocking(move || Stripe::start(&tools, 0, Some(&webhook), None, &log)).await??;
            platform.stripe = Some(stripe);
            for _ in 0..options.payments_replicas {
                platform.start_payments_replica();
            }
        }
        let mut config = coursebus_gateway::Config::new(platform.nats.url_as("gateway"));
        config.bus_deadline = Duration::from_secs(3);
        config.auth_rate_limit.burst = options.rate_limit_burst;
        config.auth_rate_limit.replenish = options.rate_limit_replenish;
        config.stripe_webhook_secret =
            Some(coursebus_gateway::webhook::WebhookSecret::new(platform.stripe_webhook_secret.clone()));
        platform.gateway =
            Some(Task::replica("gateway", false, |token| coursebus_gateway::serve(config, listener, token)));
        platform.wait_identity_replicas(options.identity_replicas).await?;
        platform.wait_replicas("catalog", options.catalog_replicas).await?;
        platform.wait_replicas("search", options.search_replicas).await?;
        platform.wait_replicas("enrollment", options.enrollment_replicas).await?;
        platform.wait_replicas("notifications", options.notifications_replicas).await?;
        platform.wait_replicas("content", options.content_replicas).await?;
        platform.wait_replicas("media", options.media_replicas).await?;
        platform.wait_replicas("payments", options.payments_replicas).await?;
        platform.wait_replicas("assessment", options.assessment_replicas).await?;
        Ok(platform)
    }

    pub fn identity_config(&self) -> coursebus_worker_identity::Config {
        let mut config =
            coursebus_worker_identity::Config::new(self.nats.url_as("identity"), self.database_url.clone());
        config.access_ttl = self.options.access_ttl;
        config.common.db_max_connections = 5;
        config.bootstrap_admin = Some(coursebus_worker_identity::BootstrapAdmin {
            email: ADMIN_EMAIL.into(),
            password: ADMIN_PASSWORD.into(),
        });
        config
    }

    /// Start one more identity replica (returns at once; see [`Platform::wait_identity_replicas`]).
    pub fn start_identity_replica(&mut self) {
        let config = self.identity_config();
        self.tasks("identity")
            .push(Task::replica("identity-replica", false, |token| coursebus_worker_identity::run(config, token)));
    }

    /// Start one more catalog replica (returns at once; see [`Platform::wait_replicas`]).
    pub fn start_catalog_replica(&mut self) {
        let mut config = coursebus_worker_catalog::Config::new(self.nats.url_as("catalog"), self.mongodb_url.clone());
        config.database = self.catalog_db.clone();
        self.tasks("catalog")
            .push(Task::replica("catalog-replica", false, |token| coursebus_worker_catalog::run(config, token)));
    }

    /// The configuration a search replica of this platform starts with.
    pub fn search_config(&self) -> coursebus_worker_search::Config {
        coursebus_worker_search::Config::new(self.nats.url_as("search"))
    }

    /// Start one more search replica (returns at once; see [`Platform::wait_replicas`]).
    pub fn start_search_replica(&mut self) {
        let config = self.search_config();
        self.start_search_replica_with(config);
    }

    pub fn start_search_replica_with(&mut self, config: coursebus_worker_search::Config) {
        self.tasks("search")
            .push(Task::replica("search-replica", false, |token| coursebus_worker_search::run(config, token)));
    }

    /// The configuration an enrollment replica of this platform starts with.
    pub fn enrollment_config(&self) -> coursebus_worker_enrollment::Config {
        let mut config = coursebus_worker_enrollment::Config::new(
            self.nats.url_as("enrollment"),
            self.enrollment_database_url.clone(),
        );
        config.common.db_max_connections = 5;
        config
    }

    /// Start one more enrollment replica (returns at once; see [`Platform::wait_replicas`]).
    /// It runs on a runtime of its own: [`Platform::kill_replicas`] can crash it mid-saga.
    pub fn start_enrollment_replica(&mut self) {
        let config = self.enrollment_config();
        self.tasks("enrollment")
            .push(Task::replica("enrollment-replica", true, |token| coursebus_worker_enrollment::run(config, token)));
    }

    /// The configuration a payments replica of this platform starts with: its localstripe, a
    /// 14-day / 30 % refund window, and no timer-driven reconciliation (tests run it by hand).
    pub fn payments_config(&self) -> coursebus_worker_payments::Config {
        let mut config = coursebus_worker_payments::Config::new(
            self.nats.url_as("payments"),
            self.payments_database_url.clone(),
            self.stripe_secret_key.clone(),
        );
        if let Some(stripe) = &self.stripe {
            config.stripe_api_base = stripe.url();
        }
        config.common.db_max_connections = 5;
        config.clock = self.clock.clone();
        config.reconcile_every = Duration::from_secs(3600);
        config.stale_after = Duration::ZERO;
        config
    }

    /// The configuration an assessment replica of this platform starts with: grading jobs come
    /// back 2 s after a replica died with them; overdue attempts are looked for twice a second.
    pub fn assessment_config(&self) -> coursebus_worker_assessment::Config {
        let mut config = coursebus_worker_assessment::Config::new(
            self.nats.url_as("assessment"),
            self.assessment_database_url.clone(),
        );
        config.common.db_max_connections = 5;
        config.grading_ack_wait = Duration::from_secs(2);
        config.sweep_every = Duration::from_millis(500);
        config
    }

    /// Start one more assessment replica on a runtime of its own (it can be killed mid-job).
    pub fn start_assessment_replica(&mut self) {
        let config = self.assessment_config();
        self.tasks("assessment")
            .push(Task::replica("assessment-replica", true, |token| coursebus_worker_assessment::run(config, token)));
    }

    /// Start one more payments replica (returns at once; see [`Platform::wait_replicas`]).
    pub fn start_payments_replica(&mut self) {
        let config = self.payments_config();
        self.tasks("payments")
            .push(Task::replica("payments-replica", true, |token| coursebus_worker_payments::run(config, token)));
    }

    /// The configuration a notifications replica of this platform starts with: the shared SMTP
    /// server, short retry delays.
    pub fn notifications_config(&self) -> coursebus_worker_notifications::Config {
        let mut config = coursebus_worker_notifications::Config::new(
            self.nats.url_as("notifications"),
            self.notifications_database_url.clone(),
            self.smtp_url.clone(),
        );
        config.common.db_max_connections = 5;
        config.sender_concurrency = 4;
        config.max_deliver = 40;
        config.retry =
            coursebus_bus::consume::RetryPolicy { first: Duration::from_millis(100), cap: Duration::from_millis(1000) };
        config.smtp_timeout = Duration::from_secs(5);
        config
    }

    /// Start one more notifications replica (returns at once; see [`Platform::wait_replicas`]).
    pub fn start_notifications_replica(&mut self) {
        let config = self.notifications_config();
        self.start_notifications_replica_with(config);
    }

    pub fn start_notifications_replica_with(&mut self, config: coursebus_worker_notifications::Config) {
        self.tasks("notifications").push(Task::replica("notifications-replica", false, |token| {
            coursebus_worker_notifications::run(config, token)
        }));
    }

    /// Stop every replica of `service` (gracefully).
    pub async fn stop_replicas(&mut self, service: &str) {
        for task in self.tasks(service).drain(..) {
            task.stop().await;
        }
    }

    fn tasks(&mut self, service: &str) -> &mut Vec<Task> {
        let Some(known) = Service::ALL.into_iter().find(|s| s.name() == service) else {
            panic!("no service {service}");
        };
        self.replicas.entry(known.name()).or_default()
    }

    /// Start one more replica of `service` with this platform's configuration for it (returns
    /// at once; see [`Platform::wait_replicas`]).
    pub fn start_replica(&mut self, service: Service) {
        match service {
            Service::Identity => self.start_identity_replica(),
            Service::Catalog => self.start_catalog_replica(),
            Service::Search => self.start_search_replica(),
            Service::Enrollment => self.start_enrollment_replica(),
            Service::Notifications => self.start_notifications_replica(),
            Service::Content => self.start_content_replica(),
            Service::Media => self.start_media_replica(),
            Service::Payments => self.start_payments_replica(),
            Service::Assessment => self.start_assessment_replica(),
        }
    }

    /// Wait until `n` replicas of `service` answer `$SRV.PING`.
    pub async fn wait_replicas(&self, service: &str, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let client = self.nats_client().await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let replies = collect_replies(&client, &srv::ping(service), n, Duration::from_millis(300)).await?;
            if replies.len() >= n {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{} of {n} {service} replicas answered", replies.len());
            }
        }
    }

    /// A plain NATS client on this platform's server.
    pub async fn nats_client(&self) -> Result<async_nats::Client> {
        let url = self.nats.url_as("operator");
        Ok(coursebus_bus::connect(&url, "tests", Duration::from_secs(5)).await?)
    }

    /// Wait until `n` identity replicas answer `$SRV.PING.identity` and the gateway is ready.
    pub async fn wait_identity_replicas(&self, n: usize) -> Result<()> {
        self.wait_replicas("identity", n).await?;
        eventually(Duration::from_secs(30), "the gateway to be ready", || async {
            let ready = self.http.get(self.url("/readyz")).send().await.map(|r| r.status().is_success());
            Ok(ready.unwrap_or(false).then_some(()))
        })
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The configuration a content replica of this platform starts with: parts of S3's
    /// smallest size (5 MiB), so test clips upload in several parts.
    pub fn content_config(&self) -> coursebus_worker_content::Config {
        let mut config = coursebus_worker_content::Config::new(
            self.nats.url_as("content"),
            self.content_database_url.clone(),
            self.s3.clone(),
        );
        config.common.db_max_connections = 5;
        config.settings.part_size = 5 * 1024 * 1024;
        config
    }

    /// Start one more content replica (returns at once; see [`Platform::wait_replicas`]).
    pub fn start_content_replica(&mut self) {
        let config = self.content_config();
        self.tasks("content")
            .push(Task::replica("content-replica", false, |token| coursebus_worker_content::run(config, token)));
    }

    /// The configuration a media replica of this platform starts with: a short `ack_wait`,
    /// so a killed replica's job comes back within seconds.
    pub fn media_config(&self) -> coursebus_worker_media::Config {
        let mut config =
            coursebus_worker_media::Config::new(self.nats.url_as("media"), self.s3.clone(), self.ffmpeg.clone());
        config.ack_wait = Duration::from_secs(4);
        config.preset = "ultrafast".into();
        config
    }

    /// Start one more media replica (returns at once; see [`Platform::wait_replicas`]).
    pub fn start_media_replica(&mut self) {
        let config = self.media_config();
        self.start_media_replica_with(config);
    }

    /// Media replicas run on runtimes of their own: [`Platform::kill_replicas`] can crash them.
    pub fn start_media_replica_with(&mut self, config: coursebus_worker_media::Config) {
        self.tasks("media")
            .push(Task::replica("media-replica", true, |token| coursebus_worker_media::run(config, token)));
    }

    /// Kill one replica of `service` (the oldest), as a crash would; the others keep running.
    pub fn kill_one_replica(&mut self, service: &str) {
        let tasks = self.tasks(service);
        if !tasks.is_empty() {
            tasks.remove(0).kill();
        }
    }

    /// Kill every replica of `service` at once, as a crash would: no graceful stop, nothing
    /// acknowledged or handed back (its child processes die with it).
    pub fn kill_replicas(&mut self, service: &str) {
        for task in self.tasks(service).drain(..) {
            task.kill();
        }
    }

    /// A connection to this platform's identity database.
    pub async fn db(&self) -> Result<sqlx::PgPool> {
        Ok(sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&self.database_url).await?)
    }

    pub async fn shutdown(mut self) {
        let gateway = self.gateway.take();
        if let Some(gateway) = gateway {
            gateway.stop().await;
        }
        for service in Service::ALL {
            self.stop_replicas(service.name()).await;
        }
    }
}

impl Drop for Platform {
    /// A test that failed half-way still stops its tasks (servers stop with their `Drop`).
    fn drop(&mut self) {
        if let Some(gateway) = &self.gateway {
            gateway.shutdown.cancel();
        }
        for tasks in self.replicas.values() {
            for task in tasks {
                task.shutdown.cancel();
            }
        }
    }
}

/// Send a request on `subject` and gather every reply until `want` arrived or `wait` passed
/// (the micro protocol's `$SRV.*` subjects are answered by every replica).
pub async fn collect_replies(
    client: &async_nats::Client,
    subject: &str,
    want: usize,
    wait: Duration,
) -> Result<Vec<serde_json::Value>> {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await?;
    client.publish_with_reply(subject.to_owned(), inbox, "".into()).await?;
    client.flush().await?;
    let mut replies = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while replies.len() < want {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            // An empty status message means nobody is subscribed (no responders).
            Ok(Some(msg)) if msg.payload.is_empty() => continue,
            Ok(Some(msg)) => replies.push(serde_json::from_slice(&msg.payload).context("a $SRV reply is JSON")?),
            _ => break,
        }
    }
    Ok(replies)
}

/// Poll `check` until it returns `Some` or `timeout` passes (for effects that happen
/// asynchronously, like an outbox relay publishing).
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(10);
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}
