//! Many TCP connections over one framed stream, the same on both ends (agent and host).
//!
//! Flow control: each side may have at most [`WINDOW`] bytes of a connection in flight, sent
//! but not yet written to the socket on the other end (`Ack` frames give the credit back).
//! So the shared stream never waits for one slow socket: a git clone that a job reads slowly
//! stalls only itself, every other connection keeps flowing, and what is buffered is bounded
//! by the window per connection. The loop that reads the stream never waits on anything but
//! the stream (both ends waiting to write to each other would deadlock).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::frame::{Frame, MAX_PAYLOAD};

/// Bytes of one connection in flight per direction.
pub(crate) const WINDOW: usize = 256 * 1024;
/// Largest read from a socket (one `Data` frame).
const CHUNK: usize = 32 * 1024;
const _: () = assert!(CHUNK <= MAX_PAYLOAD && CHUNK <= WINDOW);
/// Frames waiting for the stream writer.
const OUTGOING_FRAMES: usize = 64;
/// The writer sends what is queued in one write, up to this much.
const BATCH: usize = 256 * 1024;

/// The connections of one stream.
pub(crate) struct Mux {
    out: mpsc::Sender<Frame>,
    conns: Mutex<HashMap<u32, Conn>>,
}

struct Conn {
    /// Bytes for the socket; dropped at the peer's `Eof`, which ends the socket's writing.
    to_socket: Option<mpsc::UnboundedSender<Bytes>>,
    /// Received, not yet written to the socket: never above [`WINDOW`] from a correct peer.
    queued: Arc<AtomicUsize>,
    /// What this side may still send.
    credit: Arc<Semaphore>,
    reset: CancellationToken,
}

/// The socket side of a registered connection, for [`Mux::pump`].
pub(crate) struct ConnEnds {
    id: u32,
    from_peer: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
    credit: Arc<Semaphore>,
    reset: CancellationToken,
}

/// A frame the caller acts on (the rest the mux handles itself).
pub(crate) enum Incoming {
    Ready(Bytes),
    Open(u32),
    Handled,
}

impl Mux {
    /// A mux whose frames go to the returned receiver (give it to [`write_frames`]).
    pub(crate) fn new() -> (Arc<Mux>, mpsc::Receiver<Frame>) {
        let (out, rx) = mpsc::channel(OUTGOING_FRAMES);
        let mux = Mux {
            out,
            conns: Mutex::new(HashMap::new()),
        };
        (Arc::new(mux), rx)
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Conn>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a frame (waits while the stream writer is behind).
    pub(crate) async fn send(&self, frame: Frame) -> bool {
        self.out.send(frame).await.is_ok()
    }

    /// Registers connection `id`: data the peer sends for it is kept (within the window) until
    /// its socket is there.
    pub(crate) fn register(&self, id: u32) -> ConnEnds {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let credit = Arc::new(Semaphore::new(WINDOW));
        let reset = CancellationToken::new();
        self.conns().insert(
            id,
            Conn {
                to_socket: Some(tx),
                queued: queued.clone(),
                credit: credit.clone(),
                reset: reset.clone(),
            },
        );
        ConnEnds {
            id,
            from_peer: rx,
            queued,
            credit,
            reset,
        }
    }

    /// Forgets a connection and tells the peer to drop it (its socket could not be opened).
    pub(crate) async fn refuse(&self, id: u32) {
        self.conns().remove(&id);
        self.send(Frame::Reset(id)).await;
    }

    /// Handles one frame from the stream. Never waits.
    pub(crate) fn handle(self: &Arc<Self>, frame: Frame) -> Incoming {
        match frame {
            Frame::Ready(hello) => return Incoming::Ready(hello),
            Frame::Open(id) => return Incoming::Open(id),
            Frame::Data(id, data) => {
                let mut conns = self.conns();
                let Some(conn) = conns.get_mut(&id) else {
                    return Incoming::Handled;
                };
                let queued = conn.queued.fetch_add(data.len(), Ordering::AcqRel) + data.len();
                let sent = queued <= WINDOW
                    && conn
                        .to_socket
                        .as_ref()
                        .is_some_and(|tx| tx.send(data).is_ok());
                if !sent {
                    // Data past the window or after the peer's own end-of-file: the peer
                    // is wrong about this connection; drop it rather than buffer without end.
                    if let Some(conn) = conns.remove(&id) {
                        conn.reset.cancel();
                    }
                    let mux = self.clone();
                    tokio::spawn(async move { mux.send(Frame::Reset(id)).await });
                }
            }
            Frame::Eof(id) => {
                if let Some(conn) = self.conns().get_mut(&id) {
                    conn.to_socket = None;
                }
            }
            Frame::Ack(id, n) => {
                if let Some(conn) = self.conns().get(&id) {
                    conn.credit.add_permits((n as usize).min(WINDOW));
                }
            }
            Frame::Reset(id) => {
                if let Some(conn) = self.conns().remove(&id) {
                    conn.reset.cancel();
                }
            }
        }
        Incoming::Handled
    }

    /// The stream ended: every connection goes.
    pub(crate) fn reset_all(&self) {
        for (_, conn) in self.conns().drain() {
            conn.reset.cancel();
        }
    }

    /// Moves bytes between `socket` and the stream until both directions have ended (or
    /// either fails, or the peer resets), then forgets the connection.
    pub(crate) async fn pump(self: Arc<Self>, ends: ConnEnds, socket: TcpStream) {
        let ConnEnds {
            id,
            mut from_peer,
            queued,
            credit,
            reset,
        } = ends;
        let _ = socket.set_nodelay(true);
        let (mut rd, mut wr) = socket.into_split();
        let to_peer = async {
            let mut buf = vec![0u8; CHUNK];
            loop {
                // At least one byte of credit, then whatever more is there (up to a chunk).
                let Ok(first) = credit.acquire().await else {
                    return Ok(());
                };
                first.forget();
                let extra = credit.available_permits().min(CHUNK - 1);
                if let Ok(more) = credit.try_acquire_many(extra as u32) {
                    more.forget();
                }
                let budget = 1 + extra;
                let n = rd.read(&mut buf[..budget]).await?;
                credit.add_permits(budget - n);
                if n == 0 {
                    self.send(Frame::Eof(id)).await;
                    return Ok::<(), std::io::Error>(());
                }
                if !self
                    .send(Frame::Data(id, Bytes::copy_from_slice(&buf[..n])))
                    .await
                {
                    return Ok(());
                }
            }
        };
        let from_peer = async {
            while let Some(chunk) = from_peer.recv().await {
                wr.write_all(&chunk).await?;
                queued.fetch_sub(chunk.len(), Ordering::AcqRel);
                self.send(Frame::Ack(id, chunk.len() as u32)).await;
            }
            // The peer's end-of-file: ours goes to the socket (a failure here means the
            // socket is closed already).
            let _ = wr.shutdown().await;
            Ok::<(), std::io::Error>(())
        };
        tokio::select! {
            both = async { tokio::try_join!(to_peer, from_peer) } => {
                if both.is_err() {
                    self.send(Frame::Reset(id)).await;
                }
            }
            _ = reset.cancelled() => {}
        }
        self.conns().remove(&id);
    }
}

/// Writes frames to the stream as they come, several per write when they queue up. Ends when
/// every sender is gone or the stream fails.
pub(crate) async fn write_frames(
    mut frames: mpsc::Receiver<Frame>,
    mut stream: impl AsyncWrite + Unpin,
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(BATCH);
    while let Some(frame) = frames.recv().await {
        frame.encode(&mut buf);
        while buf.len() < BATCH {
            match frames.try_recv() {
                Ok(frame) => frame.encode(&mut buf),
                Err(_) => break,
            }
        }
        stream.write_all(&buf).await?;
        stream.flush().await?;
        buf.clear();
    }
    Ok(())
}

/// Reads frames from the stream and hands each to `on_frame` until the stream ends, fails, or
/// holds something that is not a frame.
pub(crate) async fn read_frames(
    mut stream: impl AsyncRead + Unpin,
    mut on_frame: impl FnMut(Frame),
) -> Result<(), super::RelayError> {
    let mut decoder = super::frame::Decoder::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(super::RelayError::Stream)?;
        if n == 0 {
            return Ok(());
        }
        decoder.push(&buf[..n]);
        while let Some(frame) = decoder.next_frame()? {
            on_frame(frame);
        }
    }
}
