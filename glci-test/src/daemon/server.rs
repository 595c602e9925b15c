//! The daemon process: accepts clients on the socket, holds the sessions, shuts idle ones
//! down, and exits when idle or asked to stop.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines, Take};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, watch};

use super::protocol::{build_id, encode, DaemonStatus, JobRequest, Reply, Request, SessionRequest};
use super::sessions::{self, LogChunk, Table};
use super::{recovery, DaemonError, DaemonSettings, Paths, SESSION_LINGER};

/// What one connection may send in all (a hello and one request; a job request carries the
/// pipeline's options and variables): a longer one is cut there, its request unreadable, so
/// a runaway client cannot make the daemon hold an endless line.
const MAX_CONNECTION_BYTES: u64 = 64 * 1024 * 1024;

/// How long a stopping daemon waits for sessions still starting, to shut them down properly.
const SESSION_START_PATIENCE: Duration = Duration::from_secs(120);

/// Serves until idle or stopped. Its output is the log the starter opened (see `spawn`).
pub(super) fn run() -> Result<(), DaemonError> {
    let paths = Paths::from_env()?;
    let settings = DaemonSettings::from_settings()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("glci-daemon")
        .build()
        .map_err(|e| DaemonError::io("cannot start the async runtime", e))?;
    let result = runtime.block_on(serve(paths, settings));
    // Sessions are shut down; nothing of ours is left to wait for.
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

struct Daemon {
    paths: Paths,
    settings: DaemonSettings,
    started_at: u64,
    table: Table,
    /// Connections open now.
    connections: AtomicUsize,
    /// Clients waiting for a job now.
    job_clients: AtomicUsize,
    last_activity: Mutex<Instant>,
    /// `Some(force)` once asked to stop.
    stop: watch::Sender<Option<bool>>,
}

impl Daemon {
    fn touch(&self) {
        *self
            .last_activity
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        self.last_activity
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
    }

    fn request_stop(&self, force: bool) {
        self.stop.send_modify(|stop| {
            *stop = Some(force || stop.unwrap_or(false));
        });
    }

    fn status(&self) -> DaemonStatus {
        DaemonStatus {
            pid: std::process::id(),
            build: build_id(),
            socket: self.paths.socket.clone(),
            started_at: self.started_at,
            idle_timeout_secs: self.settings.idle_timeout.as_secs(),
            stopping: self.stop.borrow().is_some(),
            sessions: self.table.started().iter().map(|h| h.status()).collect(),
        }
    }
}

async fn serve(paths: Paths, settings: DaemonSettings) -> Result<(), DaemonError> {
    let recovered = recovery::recover(&paths.sessions()).await;
    let listener = bind(&paths)?;
    eprintln!(
        "glci daemon {}, pid {}, listening on {} (idle timeout {}s; {recovered} pipeline(s) of a dead daemon recovered)",
        build_id(),
        std::process::id(),
        paths.socket.display(),
        settings.idle_timeout.as_secs()
    );
    let daemon = Arc::new(Daemon {
        paths,
        settings,
        started_at: crate::pipeline::past_runs::now_secs(),
        table: Table::default(),
        connections: AtomicUsize::new(0),
        job_clients: AtomicUsize::new(0),
        last_activity: Mutex::new(Instant::now()),
        stop: watch::channel(None).0,
    });
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|e| DaemonError::io("cannot listen for SIGTERM", e))?;
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| DaemonError::io("cannot listen for SIGINT", e))?;
    // Detached already; a stray hang-up must not end it.
    let _hangup = signal(SignalKind::hangup());
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let force = loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    daemon.touch();
                    tokio::spawn(handle(Arc::clone(&daemon), stream));
                }
            }
            _ = terminate.recv() => {
                eprintln!("SIGTERM: stopping, canceling running jobs");
                daemon.request_stop(true);
            }
            _ = interrupt.recv() => {
                eprintln!("SIGINT: stopping, canceling running jobs");
                daemon.request_stop(true);
            }
            _ = tick.tick() => {
                let idle = daemon.table.take(|h| h.idle_for(SESSION_LINGER));
                if !idle.is_empty() {
                    tokio::spawn(sessions::shut_down(idle));
                }
                let stop = *daemon.stop.borrow();
                match stop {
                    Some(true) => break true,
                    Some(false) => {
                        let busy = daemon.job_clients.load(Ordering::SeqCst) > 0
                            || daemon.table.started().iter().any(|h| h.has_running_jobs());
                        if !busy {
                            break false;
                        }
                    }
                    None => {
                        let unused = daemon.table.is_empty()
                            && daemon.connections.load(Ordering::SeqCst) == 0;
                        if !unused {
                            daemon.touch();
                        } else if daemon.idle_for() >= daemon.settings.idle_timeout {
                            eprintln!("idle for {}s: exiting", daemon.settings.idle_timeout.as_secs());
                            break false;
                        }
                    }
                }
            }
        }
    };
    // New clients start a new daemon from here on.
    drop(listener);
    remove_socket_if_ours(&daemon.paths.socket);
    let sessions = daemon.table.take_all(SESSION_START_PATIENCE).await;
    if force {
        for hosted in &sessions {
            hosted.session.cancel();
        }
    }
    sessions::shut_down(sessions).await;
    eprintln!("stopped");
    Ok(())
}

/// Binds the socket with mode 0600: bound under a private name in `GLCI_HOME/daemon/` (mode
/// 0700), restricted, then renamed into place, so it is never reachable with a wider mode.
/// A socket file nobody answers on is a dead daemon's.
fn bind(paths: &Paths) -> Result<UnixListener, DaemonError> {
    let socket = &paths.socket;
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        return Err(DaemonError::Start(format!(
            "a daemon already answers on {}",
            socket.display()
        )));
    }
    let private = paths
        .dir
        .join(format!(".daemon-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&private);
    let listener = UnixListener::bind(&private)
        .map_err(|e| DaemonError::io(format!("cannot listen on {}", private.display()), e))?;
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&private, socket))
        .map_err(|e| {
            DaemonError::io(format!("cannot put the socket at {}", socket.display()), e)
        })?;
    SOCKET_INODE.store(inode(socket), Ordering::SeqCst);
    Ok(listener)
}

static SOCKET_INODE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).map_or(0, |m| m.ino())
}

/// Removes the socket unless a newer daemon has bound its own there since.
fn remove_socket_if_ours(socket: &Path) {
    if inode(socket) == SOCKET_INODE.load(Ordering::SeqCst) {
        let _ = std::fs::remove_file(socket);
    }
}

struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(counter: &'a AtomicUsize) -> Counted<'a> {
        counter.fetch_add(1, Ordering::SeqCst);
        Counted(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn send(write: &mut OwnedWriteHalf, reply: &Reply) -> std::io::Result<()> {
    write.write_all(&encode(reply)).await?;
    write.flush().await
}

async fn read_request(lines: &mut Lines<BufReader<Take<OwnedReadHalf>>>) -> Option<Request> {
    let line = lines.next_line().await.ok()??;
    serde_json::from_str(&line).ok()
}

async fn handle(daemon: Arc<Daemon>, stream: UnixStream) {
    let _open = Counted::new(&daemon.connections);
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(MAX_CONNECTION_BYTES)).lines();
    let Some(Request::Hello { build }) = read_request(&mut lines).await else {
        let _ = send(
            &mut write,
            &Reply::Error {
                message: "expected a hello".to_string(),
            },
        )
        .await;
        return;
    };
    let hello = Reply::Hello {
        build: build_id(),
        pid: std::process::id(),
        settings: super::protocol::configuration_digest().to_string(),
    };
    if send(&mut write, &hello).await.is_err() {
        return;
    }
    let reply = match read_request(&mut lines).await {
        None => return,
        Some(Request::Status) => Reply::Status(daemon.status()),
        Some(Request::Stop { force }) => {
            eprintln!(
                "asked to stop{}",
                if force {
                    " (--force: canceling running jobs)"
                } else {
                    " after the running jobs"
                }
            );
            daemon.request_stop(force);
            Reply::Stopping
        }
        Some(Request::Job(_)) if build != build_id() => Reply::Error {
            message: format!("this daemon is build {}, the client {build}", build_id()),
        },
        Some(Request::Job(_)) if daemon.stop.borrow().is_some() => Reply::Error {
            message: STOPPING.to_string(),
        },
        Some(Request::Job(request)) => {
            let _waiting = Counted::new(&daemon.job_clients);
            serve_job(&daemon, *request, &mut lines, &mut write).await;
            return;
        }
        Some(Request::Prepare(_)) if build != build_id() || daemon.stop.borrow().is_some() => {
            Reply::Error {
                message: STOPPING.to_string(),
            }
        }
        Some(Request::Prepare(request)) => {
            prepare(&daemon, *request);
            Reply::Preparing
        }
        Some(Request::Hello { .. }) => Reply::Error {
            message: "hello twice".to_string(),
        },
    };
    let _ = send(&mut write, &reply).await;
}

/// Starts `request`'s session in the background. Nobody waits on it: a failed start reaches
/// the jobs asked for next as their error (as if the first of them had started it), and a
/// session no job asks for is shut down like any idle one, after [`SESSION_LINGER`].
fn prepare(daemon: &Arc<Daemon>, request: SessionRequest) {
    let daemon = Arc::clone(daemon);
    tokio::spawn(async move {
        let _ = daemon
            .table
            .get_or_start(&request, &daemon.paths.sessions(), true)
            .await;
    });
}

/// What a stopping daemon answers a job request; the client waits and starts a new one.
pub const STOPPING: &str = "the glci daemon is stopping";

async fn serve_job(
    daemon: &Daemon,
    request: JobRequest,
    lines: &mut Lines<BufReader<Take<OwnedReadHalf>>>,
    write: &mut OwnedWriteHalf,
) {
    let hosted = match daemon
        .table
        .get_or_start(&request.session, &daemon.paths.sessions(), false)
        .await
    {
        Ok(hosted) => hosted,
        Err(e) => {
            let message = format!("the pipeline could not start: {e}");
            let _ = send(write, &Reply::Error { message }).await;
            return;
        }
    };
    let _attached = hosted.attach();
    let mut logs = None;
    if request.stream {
        let (so_far, receiver) = hosted.observer.subscribe(&request.job);
        logs = Some(receiver);
        if !so_far.is_empty() {
            let replay = Reply::Log {
                job: request.job.clone(),
                text: so_far,
            };
            if send(write, &replay).await.is_err() {
                return;
            }
        }
    }
    let job = hosted.session.job(&request.job);
    tokio::pin!(job);
    loop {
        tokio::select! {
            result = &mut job => {
                // The job's last chunks were broadcast before it finished but may not have
                // been sent yet: the log first, then the report, nothing lost.
                if let Some(receiver) = logs.as_mut() {
                    while let Ok(chunk) = receiver.try_recv() {
                        if chunk.job == request.job {
                            let log = Reply::Log { job: chunk.job, text: chunk.text };
                            if send(write, &log).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let reply = match result {
                    Ok(report) => Reply::Report {
                        report: Box::new(report),
                        reports: hosted.observer.reports(),
                    },
                    Err(e) => Reply::Error { message: e.to_string() },
                };
                let _ = send(write, &reply).await;
                return;
            }
            chunk = next_chunk(&mut logs) => {
                let text = match chunk {
                    Ok(chunk) if chunk.job == request.job => chunk.text,
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        format!("\n[glci: {n} chunks of the log were not sent; the full log is in the report]\n")
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        logs = None;
                        continue;
                    }
                };
                let log = Reply::Log { job: request.job.clone(), text };
                if send(write, &log).await.is_err() {
                    break;
                }
            }
            line = lines.next_line() => {
                if matches!(line, Ok(None) | Err(_)) {
                    break;
                }
            }
        }
    }
    // The client is gone; the job belongs to the run and goes on.
    eprintln!(
        "[{}] client pid {} left while waiting for `{}`: the job goes on",
        hosted.run, request.session.client_pid, request.job
    );
}

async fn next_chunk(
    logs: &mut Option<broadcast::Receiver<LogChunk>>,
) -> Result<LogChunk, broadcast::error::RecvError> {
    match logs {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}
