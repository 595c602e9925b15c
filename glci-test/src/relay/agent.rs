//! The relay's engine side: glci's own binary, run in the relay container with the hidden
//! argument [`AGENT_ARG`]. It listens on the server's port inside its container, tells the
//! host about every connection a job opens and carries its bytes over stdin/stdout.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::frame::{Frame, HELLO};
use super::mux::{read_frames, write_frames, Mux};
use super::RelayError;

/// The hidden first argument that makes a glci binary the relay agent:
/// `<binary> __glci-relay-agent <port>`.
pub const AGENT_ARG: &str = "__glci-relay-agent";

/// Set when this process's `main` called [`serve_if_asked`]: its own executable then works
/// as the agent, and is what the relay image is made from.
static THIS_EXE_IS_AGENT: AtomicBool = AtomicBool::new(false);

pub(crate) fn this_exe_is_agent() -> bool {
    THIS_EXE_IS_AGENT.load(Ordering::Relaxed)
}

/// First thing in `main` of every glci binary (`cargo-glci`, `glci_test::main!()`): when
/// started as the relay agent, serve and exit; otherwise return at once. Also records that
/// this executable can serve as the agent.
pub fn serve_if_asked() {
    THIS_EXE_IS_AGENT.store(true, Ordering::Relaxed);
    let mut args = std::env::args_os().skip(1);
    if args.next().is_none_or(|a| a != AGENT_ARG) {
        return;
    }
    let arg = args.next();
    if arg.as_ref().is_some_and(|a| a == "--version") {
        // How `agent_binary` tells a build that speaks this protocol from an older one.
        use std::io::Write;
        let _ = std::io::stdout().write_all(HELLO);
        std::process::exit(0);
    }
    let port = arg.and_then(|p| p.to_str().and_then(|p| p.parse::<u16>().ok()));
    let Some(port) = port else {
        eprintln!("usage: {AGENT_ARG} PORT");
        std::process::exit(2);
    };
    let code = match run(port) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("glci relay agent: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn run(port: u16) -> Result<(), RelayError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(RelayError::Stream)?;
    rt.block_on(async {
        // All interfaces of the relay container (not of any host): the job networks it is
        // connected to. Its port is never published.
        let listener = TcpListener::bind(("0.0.0.0", port))
            .await
            .map_err(RelayError::Stream)?;
        let (input, output) = tokio::io::split(std_streams());
        serve(listener, input, output).await
    })
}

/// This process's stdin and stdout as one async stream, each direction moved by a thread of
/// its own (what tokio's `io-std` does; that feature is not among the workspace's).
fn std_streams() -> tokio::io::DuplexStream {
    use std::io::{Read, Write};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut from_mux, mut to_mux) = tokio::io::split(theirs);
    let runtime = tokio::runtime::Handle::current();
    let input = runtime.clone();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = stdin.read(&mut buf) {
            if input.block_on(to_mux.write_all(&buf[..n])).is_err() {
                break;
            }
        }
        // Dropping `to_mux` is the end of the stream for the mux.
    });
    std::thread::spawn(move || {
        let mut stdout = std::io::stdout().lock();
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = runtime.block_on(from_mux.read(&mut buf)) {
            if stdout
                .write_all(&buf[..n])
                .and_then(|()| stdout.flush())
                .is_err()
            {
                break;
            }
        }
    });
    ours
}

/// Serves until `input` ends (glci went away or removed the container): every accepted
/// connection is announced with `Open` and carried by the mux.
pub(crate) async fn serve(
    listener: TcpListener,
    input: impl AsyncRead + Unpin,
    output: impl AsyncWrite + Unpin + Send + 'static,
) -> Result<(), RelayError> {
    let (mux, frames) = Mux::new();
    let writer = tokio::spawn(write_frames(frames, output));
    mux.send(Frame::Ready(Bytes::from_static(HELLO))).await;
    let accept = {
        let mux = mux.clone();
        async move {
            let mut next: u32 = 0;
            loop {
                let (socket, _) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    // Out of file descriptors and the like: back off, keep serving.
                    Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                next = next.wrapping_add(1);
                let ends = mux.register(next);
                if !mux.send(Frame::Open(next)).await {
                    return;
                }
                tokio::spawn(mux.clone().pump(ends, socket));
            }
        }
    };
    let read = read_frames(input, |frame| {
        mux.handle(frame);
    });
    let result = tokio::select! {
        r = read => r,
        () = accept => Ok(()),
    };
    mux.reset_all();
    drop(mux);
    writer.abort();
    result
}
