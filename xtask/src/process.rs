//! Child processes that never outlive us: each server is started with a parent-death signal,
//! and [`Server`]'s `Drop` stops it (SIGTERM, then SIGKILL after a grace period).

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Ask the kernel to SIGTERM `cmd`'s process when we die, however we die.
#[allow(unsafe_code)]
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which is
    // async-signal-safe; it allocates nothing and touches no locks.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Spawn `cmd` from one long-lived thread. The parent-death signal fires when the *thread* that
/// forked the child exits, not the process; spawning from short-lived threads (test threads,
/// blocking-pool threads) would kill servers early. This thread lives as long as the process.
pub fn spawn(cmd: Command) -> std::io::Result<Child> {
    use std::sync::mpsc;
    use std::sync::{Mutex, OnceLock};
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("server-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| eprintln!("cannot start the spawner thread: {e}"));
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    let sent = spawner.lock().map(|tx| tx.send((cmd, reply_tx)).is_ok());
    if !sent.unwrap_or(false) {
        return Err(std::io::Error::other("the spawner thread is gone"));
    }
    reply_rx.recv().map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

/// Send `signal` to `pid`.
#[allow(unsafe_code)]
pub fn signal(pid: u32, signal: i32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; a stale pid only yields ESRCH.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// A started server.
#[derive(Debug)]
pub struct Server {
    pub name: String,
    child: Option<Child>,
    /// Where its output goes (shown when it fails).
    pub log: PathBuf,
    /// The signal that shuts it down cleanly (SIGINT is PostgreSQL's "fast" shutdown).
    stop_signal: i32,
}

impl Server {
    pub fn new(name: &str, child: Child, log: PathBuf, stop_signal: i32) -> Self {
        Self { name: name.to_owned(), child: Some(child), log, stop_signal }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Has it exited already? (Then its log says why.)
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Stop it cleanly, waiting up to `grace` before killing it.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        signal(child.id(), self.stop_signal);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// Start `cmd` as `name`, its output in `<logs>/<name>.log`, dying with us.
pub fn start_logged(mut cmd: Command, name: &str, logs: &std::path::Path) -> anyhow::Result<Server> {
    use anyhow::Context as _;
    let log = logs.join(format!("{name}.log"));
    let file = std::fs::File::create(&log)?;
    cmd.stdin(std::process::Stdio::null()).stdout(file.try_clone()?).stderr(file);
    die_with_parent(&mut cmd);
    let child = spawn(cmd).with_context(|| format!("starting {name}"))?;
    Ok(Server::new(name, child, log, libc::SIGTERM))
}

/// Poll `GET url` until it succeeds, failing at once if one of `servers` exits, and after 60 s.
pub async fn wait_http_ok(url: &str, servers: &mut [Server]) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if http.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        for server in servers.iter_mut() {
            if let Some(status) = server.exited() {
                anyhow::bail!("{} exited ({status}):\n{}", server.name, server.log_tail(20));
            }
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("{url} did not answer within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
