//! MPEG-TS over UDP (as broadcast encoders send it), unicast or multicast.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use crate::pipeline::Pipeline;
use crate::store::Stream;

/// Binds the socket for `addr`, joining the group when it is multicast.
pub async fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    match addr {
        SocketAddr::V4(v4) if v4.ip().is_multicast() => {
            let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, v4.port())).await?;
            sock.join_multicast_v4(*v4.ip(), Ipv4Addr::UNSPECIFIED)?;
            Ok(sock)
        }
        _ => UdpSocket::bind(addr).await,
    }
}

/// Receives datagrams into `pipe` forever. Silence for `idle` closes the partial segment
/// (the next datagram starts a new connection); silence for `endlist_after` ends the stream.
pub async fn run(
    sock: UdpSocket,
    pipe: Arc<tokio::sync::Mutex<Pipeline>>,
    stream: Arc<Stream>,
    idx: usize,
    idle: Duration,
    endlist_after: Option<Duration>,
) {
    let mut buf = vec![0u8; 65_536];
    let mut active = false;
    let mut last_data = Instant::now();
    loop {
        match tokio::time::timeout(idle.min(Duration::from_secs(1)), sock.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                let mut p = pipe.lock().await;
                if !active {
                    active = true;
                    tracing::info!(stream = %stream.name, rendition = %p.rendition(), "udp input started");
                    p.begin();
                }
                last_data = Instant::now();
                // UDP cannot be slowed down; pacing errors are counted by the pipeline only.
                let _ = p.feed(&buf[..n]);
            }
            Ok(Err(e)) => {
                tracing::warn!(stream = %stream.name, error = %e, "udp receive failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => {
                let silent = last_data.elapsed();
                if active && silent >= idle {
                    active = false;
                    let mut p = pipe.lock().await;
                    tracing::warn!(stream = %stream.name, rendition = %p.rendition(), silent = ?silent, "udp input silent; closing the partial segment");
                    p.end(false);
                }
                if !active && endlist_after.is_some_and(|d| silent >= d) && !stream.has_ended(idx) {
                    stream.end(idx);
                }
            }
        }
    }
}
