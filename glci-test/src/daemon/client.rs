//! The client side, blocking (a trial blocks its own test thread anyway): connect, start or
//! restart the daemon as needed, ask for a job and stream its log, status, stop.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::pipeline::JobReport;

use super::protocol::{
    build_id, configuration_digest, encode, DaemonStatus, JobRequest, Reply, Request,
    SessionRequest,
};
use super::recovery::process_alive;
use super::server::STOPPING;
use super::{spawn, DaemonError, Paths};

/// One connection to a daemon, after the hello.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// The daemon's process id.
    pub pid: u32,
    /// The daemon's build id.
    pub build: String,
    /// The daemon's configuration digest (`protocol::configuration_digest`).
    settings: String,
}

impl Client {
    /// The daemon that answers on the socket, if any.
    pub fn connect(paths: &Paths) -> Result<Option<Client>, DaemonError> {
        let stream = match UnixStream::connect(&paths.socket) {
            Ok(stream) => stream,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None)
            }
            Err(e) => {
                return Err(DaemonError::io(
                    format!("cannot connect to {}", paths.socket.display()),
                    e,
                ))
            }
        };
        let writer = stream
            .try_clone()
            .map_err(|e| DaemonError::io("the daemon's socket", e))?;
        let mut client = Client {
            reader: BufReader::new(stream),
            writer,
            pid: 0,
            build: String::new(),
            settings: String::new(),
        };
        client.send(&Request::Hello { build: build_id() })?;
        match client.receive()? {
            Reply::Hello {
                build,
                pid,
                settings,
            } => {
                client.pid = pid;
                client.build = build;
                client.settings = settings;
                Ok(Some(client))
            }
            other => Err(DaemonError::Protocol(format!(
                "expected a hello, got {other:?}"
            ))),
        }
    }

    /// Whether this daemon runs pipelines as this process would: the same build, read the
    /// same settings and environment.
    fn is_like_this_process(&self) -> bool {
        self.build == build_id() && self.settings == configuration_digest()
    }

    /// A daemon of this build and settings: the one running, else a new one. One of another
    /// build or other settings is asked to stop after its running jobs first.
    pub fn connect_or_start(paths: &Paths) -> Result<Client, DaemonError> {
        for _ in 0..10 {
            match Client::connect(paths)? {
                Some(client) if client.is_like_this_process() => return Ok(client),
                Some(client) => {
                    if client.build != build_id() {
                        eprintln!(
                            "glci: the daemon (pid {}) is build {}, this program {}: restarting it once its running jobs are done",
                            client.pid, client.build, build_id()
                        );
                    } else {
                        eprintln!(
                            "glci: the daemon (pid {}) read other glci settings (another project's .glci.toml, other GLCI_* or Docker variables): restarting it once its running jobs are done",
                            client.pid
                        );
                    }
                    client.stop(false)?;
                }
                None => spawn::start(paths)?,
            }
        }
        Err(DaemonError::Start(format!(
            "no daemon of build {} answers on {}",
            build_id(),
            paths.socket.display()
        )))
    }

    fn send(&mut self, request: &Request) -> Result<(), DaemonError> {
        self.writer
            .write_all(&encode(request))
            .and_then(|()| self.writer.flush())
            .map_err(|e| DaemonError::io("cannot write to the glci daemon", e))
    }

    fn receive(&mut self) -> Result<Reply, DaemonError> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| DaemonError::io("cannot read from the glci daemon", e))?;
        if n == 0 {
            return Err(DaemonError::Protocol(
                "it closed the connection (see `cargo glci daemon logs`)".to_string(),
            ));
        }
        serde_json::from_str(&line).map_err(|e| DaemonError::Protocol(e.to_string()))
    }

    pub fn status(mut self) -> Result<DaemonStatus, DaemonError> {
        self.send(&Request::Status)?;
        match self.receive()? {
            Reply::Status(status) => Ok(status),
            Reply::Error { message } => Err(DaemonError::Remote(message)),
            other => Err(DaemonError::Protocol(format!("{other:?}"))),
        }
    }

    /// Asks the daemon to stop and waits until its process has ended: after its running
    /// jobs, or at once with `force` (running jobs are canceled).
    pub fn stop(mut self, force: bool) -> Result<(), DaemonError> {
        self.send(&Request::Stop { force })?;
        match self.receive()? {
            Reply::Stopping => {}
            Reply::Error { message } => return Err(DaemonError::Remote(message)),
            other => return Err(DaemonError::Protocol(format!("{other:?}"))),
        }
        wait_for_exit(self.pid);
        Ok(())
    }

    /// Runs `request`'s job in its run's session and returns its report and every report of
    /// the session so far; `on_log` hears the job's log (when asked for) as it comes.
    pub fn job(
        mut self,
        request: JobRequest,
        on_log: &mut dyn FnMut(&str, &str),
    ) -> Result<(JobReport, Vec<JobReport>), DaemonError> {
        self.send(&Request::Job(Box::new(request)))?;
        loop {
            match self.receive()? {
                Reply::Log { job, text } => on_log(&job, &text),
                Reply::Report { report, reports } => return Ok((*report, reports)),
                Reply::Error { message } => return Err(DaemonError::Remote(message)),
                other => return Err(DaemonError::Protocol(format!("{other:?}"))),
            }
        }
    }
}

/// Asks the daemon under `GLCI_HOME` (started if none answers) to start `request`'s session
/// now, and returns as soon as it has the request. A daemon of another build or settings is
/// left alone: restarting it means waiting for its running jobs, which the first job's client
/// does.
pub fn prepare(request: SessionRequest) -> Result<(), DaemonError> {
    let paths = Paths::from_env()?;
    let client = match Client::connect(&paths)? {
        Some(client) => client,
        None => {
            spawn::start(&paths)?;
            Client::connect(&paths)?.ok_or_else(|| {
                DaemonError::Start(format!("no answer on {}", paths.socket.display()))
            })?
        }
    };
    if !client.is_like_this_process() {
        return Ok(());
    }
    let mut client = client;
    client.send(&Request::Prepare(Box::new(request)))?;
    match client.receive()? {
        Reply::Preparing => Ok(()),
        Reply::Error { message } => Err(DaemonError::Remote(message)),
        other => Err(DaemonError::Protocol(format!("{other:?}"))),
    }
}

/// Waits until process `pid` has ended (a stopping daemon waits for its running jobs, so
/// there is no time limit).
pub fn wait_for_exit(pid: u32) {
    while process_alive(pid) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `request`'s job through the daemon under `GLCI_HOME`, starting it if needed.
pub fn run_job(
    request: &JobRequest,
    on_log: &mut dyn FnMut(&str, &str),
) -> Result<(JobReport, Vec<JobReport>), DaemonError> {
    let paths = Paths::from_env()?;
    loop {
        let client = Client::connect_or_start(&paths)?;
        let pid = client.pid;
        match client.job(request.clone(), on_log) {
            // Stopping (a restart for another build, `daemon stop`): ask the next one.
            Err(DaemonError::Remote(message)) if message == STOPPING => wait_for_exit(pid),
            other => return other,
        }
    }
}
