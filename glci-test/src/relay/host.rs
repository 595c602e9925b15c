//! The relay's host side: starts the relay container on the engine, attaches to its
//! stdin/stdout and connects every connection the agent announces to the server in this
//! process. Also what the executor needs to put the relay where a job looks for the server.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, HostConfigLogConfig, NetworkConnectRequest,
    NetworkDisconnectRequest,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::docker::{Engine, Owner};

use super::agent::AGENT_ARG;
use super::frame::HELLO;
use super::image::{ensure_image, AGENT_PATH};
use super::mux::{read_frames, write_frames, Incoming, Mux};
use super::RelayError;

/// How long the agent gets to say it listens (a first start on a slow engine included).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of the agent's stderr is kept for an error message.
const STDERR_TAIL: usize = 4096;

/// A running relay: one container per pipeline, on the engine's default network and joined
/// to each job network while the job runs. Cheap to clone; the last clone stops the stream
/// (the container goes with the run's other objects, by its labels).
#[derive(Debug, Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    container: String,
    name: String,
    /// The relay's address on the engine's default network.
    address: String,
    /// The name jobs know the server by: [`SERVER_HOST`](super::SERVER_HOST) unless
    /// `[network] container_host` names another.
    server_host: String,
    stream: tokio::task::AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stream.abort();
    }
}

impl Relay {
    /// Makes the relay image if needed (from `agent`, see `image.rs`), starts the relay
    /// container listening on `server`'s port and waits until the agent says it listens.
    /// Every connection it accepts is connected to `server`. Jobs find it under
    /// `server_host`.
    pub async fn start(
        engine: &Engine,
        owner: &Owner,
        agent: &Path,
        server: SocketAddr,
        server_host: &str,
    ) -> Result<Relay, RelayError> {
        let image = ensure_image(engine, agent).await?;
        let name = format!("{}-relay", owner.name_prefix());
        let mut labels = owner.labels();
        labels.insert("io.glci.role".to_string(), "relay".to_string());
        let body = ContainerCreateBody {
            image: Some(image.tag.clone()),
            cmd: Some(vec![
                AGENT_PATH.to_string(),
                AGENT_ARG.to_string(),
                server.port().to_string(),
            ]),
            env: Some(vec![format!("LD_LIBRARY_PATH={}", image.library_path)]),
            labels: Some(labels),
            tty: Some(false),
            open_stdin: Some(true),
            // The stream's end (glci gone) closes the agent's stdin, and the agent exits.
            stdin_once: Some(true),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            host_config: Some(HostConfig {
                // The engine would otherwise log every byte of every git fetch and cache.
                log_config: Some(HostConfigLogConfig {
                    typ: Some("none".to_string()),
                    config: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let docker = engine.client();
        let id = docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                body,
            )
            .await
            .map_err(|e| RelayError::docker(format!("create container `{name}`"), e))?
            .id;
        match Relay::attach_and_start(engine, &id, &name, server, server_host).await {
            Ok(relay) => Ok(relay),
            Err(e) => {
                let rm = RemoveContainerOptionsBuilder::new().force(true).build();
                let _ = docker.remove_container(&id, Some(rm)).await;
                Err(e)
            }
        }
    }

    async fn attach_and_start(
        engine: &Engine,
        id: &str,
        name: &str,
        server: SocketAddr,
        server_host: &str,
    ) -> Result<Relay, RelayError> {
        let docker = engine.client();
        let options = AttachContainerOptionsBuilder::new()
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .stream(true)
            .build();
        let attached = docker
            .attach_container(id, Some(options))
            .await
            .map_err(|e| RelayError::docker(format!("attach to container `{name}`"), e))?;
        docker
            .start_container(id, None)
            .await
            .map_err(|e| RelayError::docker(format!("start container `{name}`"), e))?;

        // The engine hands stdout and stderr as a stream of chunks; the frames are read from
        // a pipe fed with stdout (a full pipe stops the reading: backpressure all the way to
        // the agent). Stderr holds the agent's complaints.
        let (mut pipe_in, pipe_out) = tokio::io::duplex(256 * 1024);
        let stderr = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = oneshot::channel();
        let mut output = attached.output;
        let demux = {
            let stderr = stderr.clone();
            async move {
                while let Some(Ok(chunk)) = output.next().await {
                    let message = match chunk {
                        LogOutput::StdOut { message } => message,
                        LogOutput::StdErr { message } => {
                            let text = String::from_utf8_lossy(&message);
                            tracing::warn!("relay agent: {}", text.trim_end());
                            let mut tail = stderr.lock().unwrap_or_else(|e| e.into_inner());
                            tail.push_str(&text);
                            if tail.len() > STDERR_TAIL {
                                let cut = tail.len() - STDERR_TAIL;
                                let cut = (cut..tail.len())
                                    .find(|i| tail.is_char_boundary(*i))
                                    .unwrap_or(tail.len());
                                tail.drain(..cut);
                            }
                            continue;
                        }
                        _ => continue,
                    };
                    if pipe_in.write_all(&message).await.is_err() {
                        break;
                    }
                }
            }
        };
        let stream = tokio::spawn(async move {
            let serve = serve(pipe_out, attached.input, server, ready_tx);
            let (_, served) = tokio::join!(demux, serve);
            if let Err(e) = served {
                tracing::warn!("relay: {e}");
            }
        });
        let stream = stream.abort_handle();
        let why_not = |reason: String| {
            let tail = stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let tail = tail.trim();
            RelayError::NotReady(if tail.is_empty() {
                reason
            } else {
                format!("{reason}; the agent said: {tail}")
            })
        };
        match tokio::time::timeout(READY_TIMEOUT, ready_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                stream.abort();
                return Err(why_not(e.to_string()));
            }
            Ok(Err(_)) => {
                stream.abort();
                return Err(why_not("the agent exited before it listened".to_string()));
            }
            Err(_) => {
                stream.abort();
                return Err(why_not(format!(
                    "the agent did not listen within {}s",
                    READY_TIMEOUT.as_secs()
                )));
            }
        }
        let inspected = docker
            .inspect_container(id, None)
            .await
            .map_err(|e| RelayError::docker(format!("inspect container `{name}`"), e))?;
        let address = inspected
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|nets| {
                let mut nets: Vec<_> = nets.into_iter().collect();
                // The default bridge first (Docker's name); any other default otherwise.
                nets.sort_by_key(|(name, _)| name != "bridge");
                nets.into_iter()
                    .find_map(|(_, n)| n.ip_address.filter(|ip| !ip.is_empty()))
            })
            .ok_or_else(|| {
                stream.abort();
                RelayError::NotReady(format!("container `{name}` has no address"))
            })?;
        Ok(Relay {
            inner: Arc::new(Inner {
                container: id.to_string(),
                name: name.to_string(),
                address,
                server_host: server_host.to_string(),
                stream,
            }),
        })
    }

    /// The `extra_hosts` entry that makes the server's name
    /// ([`SERVER_HOST`](super::SERVER_HOST) unless configured) the relay for a container on
    /// the engine's default network (which has no DNS for aliases).
    pub fn host_entry(&self) -> String {
        format!("{}:{}", self.inner.server_host, self.inner.address)
    }

    /// Connects the relay to a job's network under the server's name as its alias, so the
    /// job and its services find the server there.
    pub async fn join(&self, engine: &Engine, network: &str) -> Result<(), RelayError> {
        let request = NetworkConnectRequest {
            container: self.inner.container.clone(),
            endpoint_config: Some(EndpointSettings {
                aliases: Some(vec![self.inner.server_host.clone()]),
                ..Default::default()
            }),
        };
        engine
            .client()
            .connect_network(network, request)
            .await
            .map_err(|e| {
                RelayError::docker(
                    format!("connect `{}` to network `{network}`", self.inner.name),
                    e,
                )
            })
    }

    /// Disconnects the relay from a job's network (before the network is removed: a network
    /// with a container on it cannot be).
    pub async fn leave(&self, engine: &Engine, network: &str) {
        let request = NetworkDisconnectRequest {
            container: self.inner.container.clone(),
            force: Some(true),
        };
        let _ = engine.client().disconnect_network(network, request).await;
    }
}

/// The agent's hello named another protocol than this glci's [`HELLO`]: the agent is a
/// binary of another version. Reported on [`serve`]'s `ready`.
#[derive(Debug, thiserror::Error)]
#[error(
    "the agent speaks {:?}, this glci {:?} (a binary of another version)",
    String::from_utf8_lossy(heard),
    String::from_utf8_lossy(HELLO)
)]
pub(crate) struct ForeignAgent {
    heard: bytes::Bytes,
}

/// Serves the host end of the stream: checks the agent's hello (reported on `ready`) and
/// connects every connection it announces to `server`. Ends with the stream.
pub(crate) async fn serve(
    input: impl AsyncRead + Unpin,
    output: impl AsyncWrite + Unpin + Send + 'static,
    server: SocketAddr,
    ready: oneshot::Sender<Result<(), ForeignAgent>>,
) -> Result<(), RelayError> {
    let (mux, frames) = Mux::new();
    let writer = tokio::spawn(write_frames(frames, output));
    let mut ready = Some(ready);
    let result = read_frames(input, |frame| match mux.handle(frame) {
        Incoming::Ready(hello) => {
            if let Some(ready) = ready.take() {
                let _ = ready.send(if hello == HELLO {
                    Ok(())
                } else {
                    Err(ForeignAgent { heard: hello })
                });
            }
        }
        Incoming::Open(id) => {
            // Registered before the next frame is read: its data waits for the socket.
            let ends = mux.register(id);
            let mux = mux.clone();
            tokio::spawn(async move {
                match TcpStream::connect(server).await {
                    Ok(socket) => mux.pump(ends, socket).await,
                    Err(e) => {
                        tracing::warn!("relay: connecting to the server at {server}: {e}");
                        mux.refuse(id).await;
                    }
                }
            });
        }
        Incoming::Handled => {}
    })
    .await;
    mux.reset_all();
    writer.abort();
    result
}
