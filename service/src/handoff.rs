//! In-place upgrade: a running server hands its listening sockets to a successor over a
//! Unix socket (`SCM_RIGHTS`), then stops accepting and drains.
//!
//! Both processes hold the same kernel sockets, so a connection waiting in a listen queue
//! is accepted by whichever process accepts next and none is reset, which is what binding
//! a second socket with `SO_REUSEPORT` cannot promise (a socket's queue dies with it).
//!
//! The exchange, one line each way:
//! 1. the successor connects to the path and writes `take`;
//! 2. the running server answers `sockets N` with the N listening sockets attached;
//! 3. the successor starts serving on them, then writes `serving`;
//! 4. the running server answers `draining`, stops accepting and drains; the successor
//!    binds the path in its turn, ready for the next upgrade.
//!
//! A successor that disconnects or fails before step 3 changes nothing: the running server
//! keeps serving and waits for the next one.

use std::io::{BufRead, BufReader, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Most sockets one handoff carries.
const MAX_SOCKETS: usize = 32;
/// How long either side waits for the other's next line.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a handoff failed.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// No server answers at the path.
    #[error("no running server answers at {path}: {source}")]
    NoServer {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A server already answers at the path (binding a second offer there).
    #[error("{0} is in use by a running server (start the new one with --upgrade to take over)")]
    InUse(PathBuf),
    /// The exchange broke off or the peer said something else.
    #[error("handoff at {path}: {why}")]
    Protocol {
        /// The path.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// A socket operation failed.
    #[error("handoff at {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Listening sockets taken from the running server; say [`Taken::serving`] once they are
/// accepted on.
#[derive(Debug)]
pub struct Taken {
    path: PathBuf,
    stream: BufReader<UnixStream>,
    /// The listening sockets, non-blocking, for `tokio::net::TcpListener::from_std`.
    pub sockets: Vec<std::net::TcpListener>,
}

/// Takes the listening sockets of the server that offers them at `path` (blocking; call
/// before starting the runtime).
pub fn take(path: &Path) -> Result<Taken, HandoffError> {
    let io = |source| HandoffError::Io {
        path: path.to_path_buf(),
        source,
    };
    let proto = |why: String| HandoffError::Protocol {
        path: path.to_path_buf(),
        why,
    };
    let mut stream = UnixStream::connect(path).map_err(|source| HandoffError::NoServer {
        path: path.to_path_buf(),
        source,
    })?;
    stream.set_read_timeout(Some(STEP_TIMEOUT)).map_err(io)?;
    stream.write_all(b"take\n").map_err(io)?;
    let mut buf = [0u8; 64];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; MAX_SOCKETS]);
    let (n, fds) = {
        let msg = nix::sys::socket::recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| io(e.into()))?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(|e| io(e.into()))? {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(got) = c {
                // SAFETY: the kernel just installed these descriptors in this process for us
                // alone; wrapping each once makes it closed exactly once.
                fds.extend(
                    got.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        (msg.bytes, fds)
    };
    let line = String::from_utf8_lossy(&buf[..n]).trim().to_string();
    let expected = format!("sockets {}", fds.len());
    if line != expected {
        return Err(proto(format!("expected `{expected}`, got `{line}`")));
    }
    let sockets = fds
        .into_iter()
        .map(|fd| {
            let l = std::net::TcpListener::from(fd);
            l.set_nonblocking(true).map(|()| l)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    Ok(Taken {
        path: path.to_path_buf(),
        stream: BufReader::new(stream),
        sockets,
    })
}

impl Taken {
    /// Tells the old server that this one accepts on the sockets; it answers that it is
    /// draining. Blocking (use `spawn_blocking`).
    pub fn serving(mut self) -> Result<(), HandoffError> {
        let path = self.path.clone();
        self.stream
            .get_mut()
            .write_all(b"serving\n")
            .map_err(|source| HandoffError::Io {
                path: path.clone(),
                source,
            })?;
        let line = read_line(&mut self.stream).map_err(|source| HandoffError::Io {
            path: path.clone(),
            source,
        })?;
        if line != "draining" {
            return Err(HandoffError::Protocol {
                path,
                why: format!("expected `draining`, got `{line}`"),
            });
        }
        Ok(())
    }
}

fn read_line(r: &mut BufReader<UnixStream>) -> std::io::Result<String> {
    let mut line = String::new();
    // Bounded: a peer cannot make us buffer more than one short line.
    (&mut *r).take(64).read_line(&mut line)?;
    Ok(line.trim().to_string())
}

/// The running server's side: answers successors at a Unix socket path.
#[derive(Debug)]
pub struct Offer {
    path: PathBuf,
    listener: tokio::net::UnixListener,
}

impl Offer {
    /// Listens at `path` (mode 0600: whoever connects gets the listening sockets). A stale
    /// file from a server that is gone is replaced; a path a running server answers at is
    /// refused. Call inside a runtime.
    pub fn bind(path: &Path) -> Result<Self, HandoffError> {
        if UnixStream::connect(path).is_ok() {
            return Err(HandoffError::InUse(path.to_path_buf()));
        }
        let io = |source| HandoffError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let listener = tokio::net::UnixListener::bind(path).map_err(io)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        Ok(Self {
            path: path.to_path_buf(),
            listener,
        })
    }

    /// The path it answers at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves successors until one has taken `sockets` and said it is serving on them; then
    /// stops answering at the path (so the successor can bind it) and returns, and the caller
    /// drains. Failed attempts are logged and do not end the wait.
    pub async fn hand_over(self, sockets: Vec<OwnedFd>) {
        let sockets = std::sync::Arc::new(sockets);
        loop {
            let stream = match self.listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "upgrade socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let fds = sockets.clone();
            let done = tokio::task::spawn_blocking(move || {
                let stream = stream.into_std()?;
                stream.set_nonblocking(false)?;
                stream.set_read_timeout(Some(STEP_TIMEOUT))?;
                one_successor(stream, &fds)
            })
            .await;
            match done {
                Ok(Ok(mut successor)) => {
                    // Closed before `draining` goes out: once the successor reads it, the
                    // path is free for its own offer.
                    drop(self.listener);
                    if let Err(e) = successor.get_mut().write_all(b"draining\n") {
                        tracing::warn!(error = %e, "the successor left before `draining`");
                    }
                    tracing::info!(path = %self.path.display(), "a successor took the listening sockets; draining");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "upgrade attempt failed; still serving")
                }
                Err(e) => tracing::warn!(error = %e, "upgrade attempt failed; still serving"),
            }
        }
    }
}

/// Sends the sockets to one successor and waits for it to say it is serving; returns the
/// connection to answer `draining` on.
fn one_successor(stream: UnixStream, fds: &[OwnedFd]) -> std::io::Result<BufReader<UnixStream>> {
    let bad = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
    let mut r = BufReader::new(stream);
    let line = read_line(&mut r)?;
    if line != "take" {
        return Err(bad(format!("expected `take`, got `{line}`")));
    }
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_fd().as_raw_fd()).collect();
    let head = format!("sockets {}\n", raw.len());
    nix::sys::socket::sendmsg::<()>(
        r.get_ref().as_raw_fd(),
        &[IoSlice::new(head.as_bytes())],
        &[nix::sys::socket::ControlMessage::ScmRights(&raw)],
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .map_err(std::io::Error::from)?;
    let line = read_line(&mut r)?;
    if line != "serving" {
        return Err(bad(format!(
            "the successor did not start serving (said `{line}`)"
        )));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The successor gets the very same listening socket: a connection queued before the
    /// handoff is accepted by the successor.
    #[tokio::test]
    async fn a_successor_takes_the_same_listening_socket() {
        let dir = std::env::temp_dir().join(format!("handoff-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("up.sock");
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let offer = Offer::bind(&path).unwrap();
        assert!(matches!(Offer::bind(&path), Err(HandoffError::InUse(_))));
        let fd = tcp.as_fd().try_clone_to_owned().unwrap();
        let old = tokio::spawn(offer.hand_over(vec![fd]));
        // Queued while the old server is not accepting.
        let mut queued = std::net::TcpStream::connect(addr).unwrap();
        let p = path.clone();
        let taken = tokio::task::spawn_blocking(move || take(&p)).await.unwrap();
        let taken = taken.unwrap();
        assert_eq!(taken.sockets.len(), 1);
        assert_eq!(taken.sockets[0].local_addr().unwrap(), addr);
        drop(tcp); // the old process's own copy goes; the socket lives on in the successor
        let l = taken.sockets[0].try_clone().unwrap();
        tokio::task::spawn_blocking(move || taken.serving())
            .await
            .unwrap()
            .unwrap();
        old.await.unwrap();
        // The path is free for the successor's own offer at once.
        let next = Offer::bind(&path).unwrap();
        assert_eq!(next.path(), path.as_path());
        l.set_nonblocking(false).unwrap();
        let (mut s, _) = l.accept().unwrap();
        use std::io::Read;
        queued.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A successor that goes away before serving leaves the old server offering.
    #[tokio::test]
    async fn a_failed_successor_changes_nothing() {
        let dir = std::env::temp_dir().join(format!("handoff-fail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("up.sock");
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let offer = Offer::bind(&path).unwrap();
        let old = tokio::spawn(offer.hand_over(vec![tcp.as_fd().try_clone_to_owned().unwrap()]));
        let p = path.clone();
        let taken = tokio::task::spawn_blocking(move || take(&p).unwrap())
            .await
            .unwrap();
        drop(taken); // gone without `serving`
        let mut garbage = UnixStream::connect(&path).unwrap();
        garbage.write_all(b"give me everything\n").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!old.is_finished(), "the old server must keep offering");
        let p = path.clone();
        let taken = tokio::task::spawn_blocking(move || take(&p).unwrap())
            .await
            .unwrap();
        tokio::task::spawn_blocking(move || taken.serving())
            .await
            .unwrap()
            .unwrap();
        old.await.unwrap();
        std::fs::remove_dir_all(&dir).ok();
    }
}
