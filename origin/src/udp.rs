//! MPEG-TS over UDP (as broadcast encoders send it), unicast or multicast.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use crate::input::lifecycle::Refusal;
use crate::input::{Input, Session};
use crate::segmenter::Arrival;

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

/// Receives datagrams into `input` forever. UDP has no connections: the first datagram
/// attaches a session, and after the input drops it (silence, too fast) the next one attaches
/// anew. A refused datagram is dropped: UDP cannot be told to wait, so the input is not asked
/// again before the refusal's time is up (an ended rendition never).
pub async fn run(sock: UdpSocket, input: Arc<Input>) {
    let mut buf = vec![0u8; 65_536];
    let mut session: Option<Session> = None;
    let mut refused_until: Option<Option<Instant>> = None;
    loop {
        let n = match sock.recv(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(stream = %input.stream_name(), error = %e, "udp receive failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let at = Arrival::now();
        if !session.as_ref().is_some_and(Session::is_live) {
            session = None;
            match refused_until {
                Some(None) => continue,
                Some(Some(t)) if at.at < t => continue,
                _ => {}
            }
            // Refusals are counted by the input.
            match input.attach(at.at, None) {
                Ok(s) => {
                    session = Some(s);
                    refused_until = None;
                }
                Err(Refusal::TooFast(wait)) => refused_until = Some(Some(at.at + wait)),
                Err(_) => refused_until = Some(None),
            }
        }
        if let Some(s) = &mut session
            && s.feed(&buf[..n], at).is_err()
        {
            // Cut off (counted and logged by the input); a later datagram starts anew.
            session = None;
        }
    }
}
