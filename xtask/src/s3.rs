//! An S3-compatible server in this process: `s3s-fs` (objects as files in a folder) behind
//! hyper on a loopback port, with SigV4 signatures checked (a tampered or expired presigned URL
//! is refused, as AWS would). Used by the test harness, `cargo xtask up` and the benchmarks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

/// A running S3 server; stops when dropped.
#[derive(Debug)]
pub struct S3Server {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    /// The folder holding buckets (each a sub-folder) and in-progress multipart parts
    /// (`.upload_id-*` files at the top).
    pub root: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl S3Server {
    /// Serve `root` on `127.0.0.1:port` (0: any free port) with one access key.
    pub fn start(root: &Path, port: u16, access_key: &str, secret_key: &str) -> Result<Self> {
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| anyhow!("s3s-fs on {}: {e:?}", root.display()))?;
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(access_key, secret_key));
        let service = builder.build();

        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .with_context(|| format!("binding the S3 server to port {port}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3-server")
            .enable_all()
            .build()
            .context("starting the S3 server's runtime")?;
        let thread = std::thread::Builder::new().name("s3-server".into()).spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                loop {
                    let (stream, _) = tokio::select! {
                        _ = &mut stopped => return,
                        accepted = listener.accept() => match accepted {
                            Ok(accepted) => accepted,
                            Err(_) => continue,
                        },
                    };
                    let service = service.clone();
                    tokio::spawn(async move {
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                    });
                }
            });
        })?;
        Ok(Self {
            endpoint: format!("http://{addr}"),
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            root: root.to_path_buf(),
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Multipart parts S3 still holds (of uploads neither completed nor aborted).
    pub fn pending_parts(&self) -> Result<Vec<String>> {
        let mut parts = Vec::new();
        for entry in std::fs::read_dir(&self.root)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.starts_with(".upload_id-") && name.contains(".part-") {
                parts.push(name);
            }
        }
        Ok(parts)
    }

    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
