//! The agent and host ends joined by an in-memory pipe (standing for the engine's attach
//! stream), with real TCP sockets on both sides.

use std::net::SocketAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::{agent, host};

/// Starts agent and host ends; returns the agent's listening address (where a job connects).
async fn relay_to(server: SocketAddr) -> SocketAddr {
    // Small pipes, as an engine's stream gives no big buffer either.
    let (agent_side, host_side) = tokio::io::duplex(16 * 1024);
    let (agent_in, agent_out) = tokio::io::split(agent_side);
    let (host_in, host_out) = tokio::io::split(host_side);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(agent::serve(listener, agent_in, agent_out));
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(host::serve(host_in, host_out, server, ready_tx));
    ready_rx.await.unwrap().unwrap();
    address
}

/// A server answering each connection as `answer` does.
async fn server<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(answer(socket));
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transfers_both_ways_arrive_intact_and_half_close_works() {
    // Echoes everything, then closes when the client has shut down its writing.
    let server = server(|socket| async move {
        let (mut rd, mut wr) = socket.into_split();
        let _ = tokio::io::copy(&mut rd, &mut wr).await;
        let _ = wr.shutdown().await;
    })
    .await;
    let relay = relay_to(server).await;
    let mut clients = Vec::new();
    for seed in 0..3u8 {
        clients.push(tokio::spawn(async move {
            let data: Vec<u8> = (0..8 * 1024 * 1024u32)
                .map(|i| (i.wrapping_mul(31) as u8) ^ seed)
                .collect();
            let sent = Sha256::digest(&data);
            let socket = TcpStream::connect(relay).await.unwrap();
            let (mut rd, mut wr) = socket.into_split();
            let writer = tokio::spawn(async move {
                wr.write_all(&data).await.unwrap();
                wr.shutdown().await.unwrap();
            });
            let mut back = Vec::new();
            rd.read_to_end(&mut back).await.unwrap();
            writer.await.unwrap();
            assert_eq!(back.len(), 8 * 1024 * 1024);
            assert_eq!(Sha256::digest(&back), sent);
        }));
    }
    for client in clients {
        tokio::time::timeout(Duration::from_secs(120), client)
            .await
            .expect("transfers finish")
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_is_held_back_and_others_keep_flowing() {
    // `stall`: never read again. `ping`: answer `pong`.
    let server = server(|socket| async move {
        let mut socket = BufReader::new(socket);
        let mut line = String::new();
        socket.read_line(&mut line).await.unwrap();
        if line.trim() == "stall" {
            tokio::time::sleep(Duration::from_secs(60)).await;
        } else {
            socket.get_mut().write_all(b"pong\n").await.unwrap();
        }
    })
    .await;
    let relay = relay_to(server).await;

    let stalled = tokio::spawn(async move {
        let mut socket = TcpStream::connect(relay).await.unwrap();
        socket.write_all(b"stall\n").await.unwrap();
        // Far more than the window and every socket buffer on the way.
        let big = vec![7u8; 256 * 1024 * 1024];
        socket.write_all(&big).await.unwrap();
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut other = TcpStream::connect(relay).await.unwrap();
    other.write_all(b"ping\n").await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        BufReader::new(&mut other).read_line(&mut answer),
    )
    .await
    .expect("the other connection is not held up")
    .unwrap();
    assert_eq!(answer, "pong\n");

    // The stalled writer is held back by the window instead of being buffered in the relay.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !stalled.is_finished(),
        "256 MiB went into a server that reads nothing"
    );
    stalled.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_server_connection_closes_the_jobs_connection() {
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = closed.local_addr().unwrap();
    drop(closed);
    let relay = relay_to(server).await;
    let mut socket = TcpStream::connect(relay).await.unwrap();
    let _ = socket.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut buf))
        .await
        .expect("the connection is closed, not left hanging");
    assert!(read.is_err() || buf.is_empty(), "{read:?} {buf:?}");
}
