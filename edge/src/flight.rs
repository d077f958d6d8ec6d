//! Single flight: at most one upstream fetch per cache key, its body streamed to every
//! waiter as the bytes arrive (no polling, no waiting for the whole body).
//!
//! The fetch runs in its own task and owns a [`Writer`]; clients hold [`FlightBody`]s that
//! read the shared, growing chunk list. A client leaving only drops its reader; a slow
//! client only falls behind in the list; and a writer dropped without finishing marks the
//! flight [`Outcome::Dangling`], which releases every waiter at once. Outcomes use the
//! vocabulary of Pingora's cache lock.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

use crate::key::CacheKey;

/// The response head of a flight, shared by all its readers.
#[derive(Debug, Clone)]
pub struct Head {
    /// Upstream status.
    pub status: StatusCode,
    /// What every reader's response carries: the end-to-end headers, plus `Age` and, when
    /// the upstream announced it, `Content-Length` (set once per flight, not per reader).
    pub headers: HeaderMap,
    /// Body length, when the upstream announced it.
    pub content_length: Option<u64>,
    /// The upstream that answered (its `host:port`), for the access log.
    pub upstream: Arc<str>,
}

/// Why an upstream fetch failed (where it came from: always the upstream side).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// No response head (or no body progress) in time.
    #[error("upstream timed out: {0}")]
    Timeout(String),
    /// Connection refused/reset or a 5xx answer.
    #[error("upstream failed: {0}")]
    Unavailable(String),
    /// The body broke off after the head was sent.
    #[error("upstream body broke off: {0}")]
    Body(String),
    /// Every upstream's breaker is open.
    #[error("no upstream available (all circuit breakers open)")]
    NoUpstream,
}

impl FetchError {
    /// A short name of the variant (log rate-limit key).
    pub fn as_str(&self) -> &'static str {
        match self {
            FetchError::Timeout(_) => "timeout",
            FetchError::Unavailable(_) => "unavailable",
            FetchError::Body(_) => "body",
            FetchError::NoUpstream => "no_upstream",
        }
    }

    /// The status a client gets when there is nothing stale to serve instead.
    pub fn status(&self) -> StatusCode {
        match self {
            FetchError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// How a flight ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The whole body arrived.
    Done,
    /// The fetch failed; the next request for the key elects a new writer.
    TransientError(FetchError),
    /// The writer went away without finishing (a bug or a cancelled task): waiters are
    /// released rather than left hanging.
    Dangling,
}

/// What a waiter can see instead of bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// The fetch failed.
    #[error("{0}")]
    Failed(FetchError),
    /// The writer was dropped without finishing.
    #[error("upstream fetch abandoned")]
    Dangling,
    /// Nothing arrived within the waiter's deadline.
    #[error("timed out waiting for the upstream fetch")]
    WaitTimeout,
}

impl WaitError {
    /// The status a client gets when nothing stale can be served instead.
    pub fn status(&self) -> StatusCode {
        match self {
            WaitError::Failed(e) => e.status(),
            WaitError::Dangling => StatusCode::BAD_GATEWAY,
            WaitError::WaitTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

#[derive(Default)]
struct State {
    head: Option<Arc<Head>>,
    /// Body chunks not yet dropped; `chunks[i]` is chunk number `base + i`.
    chunks: std::collections::VecDeque<Bytes>,
    /// Chunks dropped from the front (pass-through flights only).
    base: usize,
    /// Bytes received in all.
    len: usize,
    /// Bytes held in `chunks`.
    buffered: usize,
    outcome: Option<Outcome>,
}

/// One in-flight upstream fetch.
#[derive(Default)]
pub struct Flight {
    state: Mutex<State>,
    notify: Notify,
    waiters: AtomicUsize,
    /// Requests attached to this flight that have not produced their response head yet.
    pending_heads: AtomicUsize,
    /// Signalled when `pending_heads` drops to zero or the barrier times out (kept apart
    /// from `notify`, which fires on every body chunk and would wake the bodies held at the
    /// barrier for nothing).
    heads_done: Notify,
    /// Set [`HEADS_FIRST_MAX`] after the head is published: bodies stop waiting for heads.
    barrier_open: AtomicBool,
    /// The object will not be stored (too large): chunks every reader has passed are
    /// dropped, and the writer waits while more than [`PASS_THROUGH_BUFFER`] is held.
    pass_through: AtomicBool,
    /// Each reader's next chunk number (read only in pass-through mode).
    positions: Mutex<Vec<Arc<AtomicUsize>>>,
    /// Signalled when a pass-through reader advances or leaves.
    drained: Notify,
    /// Started by pre-warming, and no viewer has joined it yet.
    unclaimed_prefetch: AtomicBool,
}

/// Most bytes a pass-through flight holds for its slowest reader before it stops reading
/// from the upstream (backpressure instead of buffering a huge body whole).
pub const PASS_THROUGH_BUFFER: usize = 4 << 20;

/// Held by a request from joining a flight until its response head exists (dropped then, or
/// when the request is abandoned).
pub struct HeadTicket(Arc<Flight>);

impl Drop for HeadTicket {
    fn drop(&mut self) {
        if self.0.pending_heads.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.heads_done.notify_waiters();
            if self.0.is_pass_through() {
                self.0.drained.notify_waiters();
            }
        }
    }
}

/// Longest a body holds its first data frame back so the other waiters' heads go out first.
const HEADS_FIRST_MAX: Duration = Duration::from_millis(150);

impl Flight {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Readers currently attached.
    pub fn waiters(&self) -> usize {
        self.waiters.load(Ordering::Relaxed)
    }

    /// Registers a request that will answer from this flight; see [`HeadTicket`].
    pub fn head_ticket(self: &Arc<Self>) -> HeadTicket {
        self.pending_heads.fetch_add(1, Ordering::AcqRel);
        HeadTicket(self.clone())
    }

    /// Waits until every attached request has its head, or the barrier has timed out.
    /// Heads first, then bodies: when a herd's fetch lands, every viewer gets its first byte
    /// before the bodies compete for the machine. One timer per flight (see
    /// [`Writer::head`]), not one per waiter: a herd's fan-out is paid per waiter.
    async fn heads_sent(&self) {
        loop {
            let done = self.heads_done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if self.pending_heads.load(Ordering::Acquire) == 0
                || self.barrier_open.load(Ordering::Acquire)
            {
                return;
            }
            done.await;
        }
    }

    /// True once, for the first viewer to join a flight that pre-warming started; at the
    /// end of the fetch, whether none did (the stored object then carries the claim).
    pub fn claim_prefetch(&self) -> bool {
        self.unclaimed_prefetch.load(Ordering::Relaxed)
            && self.unclaimed_prefetch.swap(false, Ordering::AcqRel)
    }

    /// Bytes received so far.
    pub fn received(&self) -> usize {
        self.lock().len
    }

    /// Bytes held for readers now.
    pub fn buffered(&self) -> usize {
        self.lock().buffered
    }

    /// Whether this flight streams its body through without keeping it.
    pub fn is_pass_through(&self) -> bool {
        self.pass_through.load(Ordering::Acquire)
    }

    /// Drops the chunks every reader (and every request still waiting for its head) has
    /// passed; returns the bytes still held.
    fn trim(&self) -> usize {
        let min = if self.pending_heads.load(Ordering::Acquire) > 0 {
            None
        } else {
            self.positions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|p| p.load(Ordering::Acquire))
                .min()
        };
        let mut s = self.lock();
        // With no reader left everything may go.
        let upto = min.unwrap_or(if self.pending_heads.load(Ordering::Acquire) > 0 {
            s.base
        } else {
            usize::MAX
        });
        while s.base < upto {
            let Some(c) = s.chunks.pop_front() else { break };
            s.base += 1;
            s.buffered -= c.len();
        }
        s.buffered
    }

    /// Waits until `check` yields, re-checking on every change. Registering before checking
    /// means no wake-up can fall between the check and the wait.
    async fn wait_for<T>(&self, mut check: impl FnMut(&State) -> Option<T>) -> T {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = check(&self.lock()) {
                return v;
            }
            notified.await;
        }
    }

    fn outcome_error(o: &Outcome) -> Option<WaitError> {
        match o {
            Outcome::Done => None,
            Outcome::TransientError(e) => Some(WaitError::Failed(e.clone())),
            Outcome::Dangling => Some(WaitError::Dangling),
        }
    }

    /// The response head, once known.
    pub async fn head(&self, deadline: Duration) -> Result<Arc<Head>, WaitError> {
        let wait = self.wait_for(|s| match (&s.head, &s.outcome) {
            (Some(h), _) => Some(Ok(h.clone())),
            (None, Some(o)) => Some(Err(Self::outcome_error(o).unwrap_or(WaitError::Dangling))),
            (None, None) => None,
        });
        tokio::time::timeout(deadline, wait)
            .await
            .map_err(|_| WaitError::WaitTimeout)?
    }

    /// Chunk `idx`, waiting for it; `None` after the last chunk of a complete body.
    pub async fn chunk(&self, idx: usize) -> Option<Result<Bytes, WaitError>> {
        self.wait_for(|s| {
            if idx < s.base {
                // Only a reader that registered late can find its chunk gone.
                return Some(Some(Err(WaitError::Dangling)));
            }
            if let Some(c) = s.chunks.get(idx - s.base) {
                return Some(Some(Ok(c.clone())));
            }
            match &s.outcome {
                None => None,
                Some(Outcome::Done) => Some(None),
                Some(o) => Some(Some(Err(
                    Self::outcome_error(o).unwrap_or(WaitError::Dangling)
                ))),
            }
        })
        .await
    }

    /// The whole body, once complete (for range requests on a miss).
    pub async fn complete(&self, deadline: Duration) -> Result<(Arc<Head>, Bytes), WaitError> {
        let wait = self.wait_for(|s| match &s.outcome {
            None => None,
            Some(Outcome::Done) => Some(match &s.head {
                Some(_) if s.base > 0 => Err(WaitError::Failed(FetchError::Body(
                    "streamed through without keeping it (larger than cache.max_object_bytes)"
                        .into(),
                ))),
                Some(h) => Ok((h.clone(), concat(&s.chunks, s.len))),
                None => Err(WaitError::Dangling),
            }),
            Some(o) => Some(Err(Self::outcome_error(o).unwrap_or(WaitError::Dangling))),
        });
        tokio::time::timeout(deadline, wait)
            .await
            .map_err(|_| WaitError::WaitTimeout)?
    }
}

fn concat(chunks: &std::collections::VecDeque<Bytes>, len: usize) -> Bytes {
    // Always a copy of exactly `len` bytes, even for one chunk: a chunk is a slice of the
    // client's read buffer, and storing the slice would keep the whole buffer alive.
    let mut b = BytesMut::with_capacity(len);
    for c in chunks {
        b.extend_from_slice(c);
    }
    b.freeze()
}

/// The in-flight table: key → flight.
#[derive(Default)]
pub struct FlightTable {
    map: Mutex<HashMap<CacheKey, Arc<Flight>>>,
}

/// The caller's part in a flight.
pub enum Role {
    /// Start the fetch: you hold the only writer.
    Writer(Writer),
    /// A fetch is under way: read from it.
    Waiter(Arc<Flight>),
}

impl FlightTable {
    fn lock(&self) -> MutexGuard<'_, HashMap<CacheKey, Arc<Flight>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins the flight for `key`, or creates it and makes the caller its writer.
    pub fn join_or_start(self: &Arc<Self>, key: &CacheKey) -> Role {
        let mut map = self.lock();
        if let Some(f) = map.get(key) {
            return Role::Waiter(f.clone());
        }
        let flight = Arc::new(Flight::default());
        map.insert(key.clone(), flight.clone());
        Role::Writer(Writer {
            flight,
            table: self.clone(),
            key: key.clone(),
            finished: false,
        })
    }

    /// The flight for `key`, if one is under way.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<Flight>> {
        self.lock().get(key).cloned()
    }

    /// Flights under way.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no flight is under way.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The one writer of a flight. Dropping it unfinished releases the waiters as `Dangling`.
pub struct Writer {
    flight: Arc<Flight>,
    table: Arc<FlightTable>,
    key: CacheKey,
    finished: bool,
}

impl Writer {
    /// The flight being written.
    pub fn flight(&self) -> &Arc<Flight> {
        &self.flight
    }

    /// Marks the flight as started by pre-warming (before anyone can join it).
    pub fn mark_prefetch(&self) {
        self.flight
            .unclaimed_prefetch
            .store(true, Ordering::Release);
    }

    /// Publishes the response head, and opens the heads-first barrier after at most
    /// [`HEADS_FIRST_MAX`] whatever happens to the requests holding it.
    pub fn head(&self, head: Head) {
        self.flight.lock().head = Some(Arc::new(head));
        self.flight.notify.notify_waiters();
        // Weak: a strong reference kept every finished flight's chunks (its whole body, in
        // the client's read buffers) alive for the timer's 150 ms — at a few hundred misses
        // a second, hundreds of MiB beyond the cache's capacity.
        let f = Arc::downgrade(&self.flight);
        tokio::spawn(async move {
            tokio::time::sleep(HEADS_FIRST_MAX).await;
            if let Some(f) = f.upgrade() {
                f.barrier_open.store(true, Ordering::Release);
                f.heads_done.notify_waiters();
            }
        });
    }

    /// Appends body bytes; every waiter can read them at once.
    pub fn push(&self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        {
            let mut s = self.flight.lock();
            s.len += chunk.len();
            s.buffered += chunk.len();
            s.chunks.push_back(chunk);
        }
        self.flight.notify.notify_waiters();
    }

    /// Turns the flight into a pass-through: it leaves the table (later requests start their
    /// own fetch, since the start of the body will be gone), and from now on holds only what
    /// its slowest reader has not read yet.
    pub fn pass_through(&self) {
        if self.flight.pass_through.swap(true, Ordering::AcqRel) {
            return;
        }
        self.leave_table();
        self.flight.trim();
    }

    /// Waits until a pass-through flight holds at most [`PASS_THROUGH_BUFFER`] bytes (at once
    /// for other flights). Returns `false` when no reader is left to send to.
    pub async fn room(&self) -> bool {
        let f = &self.flight;
        if !f.is_pass_through() {
            return true;
        }
        loop {
            let drained = f.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            let held = f.trim();
            if f.waiters() == 0 && f.pending_heads.load(Ordering::Acquire) == 0 {
                return false;
            }
            if held <= PASS_THROUGH_BUFFER {
                return true;
            }
            drained.await;
        }
    }

    /// The body so far as one buffer (to store once complete).
    pub fn body(&self) -> Bytes {
        let s = self.flight.lock();
        concat(&s.chunks, s.len)
    }

    /// Ends the flight. Call after storing a complete object, so a request arriving once
    /// the flight is gone finds it in the cache.
    pub fn finish(mut self, outcome: Outcome) {
        self.end(outcome);
    }

    fn end(&mut self, outcome: Outcome) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.flight.lock().outcome = Some(outcome);
        self.leave_table();
        self.flight.notify.notify_waiters();
    }

    fn leave_table(&self) {
        let mut map = self.table.lock();
        if map
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            map.remove(&self.key);
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.end(Outcome::Dangling);
    }
}

type ChunkFuture = Pin<Box<dyn Future<Output = Option<Result<Bytes, WaitError>>> + Send>>;

/// Largest frame handed to the connection at once: bodies of many waiters interleave in
/// pieces of this size instead of one client's whole body going out before another's head.
const MAX_FRAME: usize = 64 * 1024;

/// A response body that streams a flight to one client.
///
/// Fair to the herd: the first frame waits at the flight's heads-first barrier, so when a
/// flight's head lands every waiter's response head is written first; after that the body
/// yields to the scheduler once before every frame, so bodies share the machine round-robin
/// in frames of at most [`MAX_FRAME`].
pub struct FlightBody {
    flight: Arc<Flight>,
    idx: usize,
    /// `idx` as the flight sees it (for dropping chunks every reader has passed).
    position: Arc<AtomicUsize>,
    pending: Option<ChunkFuture>,
    rest: Option<Bytes>,
    yielded: bool,
    hint: Option<u64>,
}

impl FlightBody {
    /// A reader of `flight`; `content_length` sizes the body for clients.
    pub fn new(flight: Arc<Flight>, content_length: Option<u64>) -> Self {
        flight.waiters.fetch_add(1, Ordering::Relaxed);
        let position = Arc::new(AtomicUsize::new(0));
        flight
            .positions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(position.clone());
        Self {
            flight,
            idx: 0,
            position,
            pending: None,
            rest: None,
            // The barrier orders the first frame; a yield there would cost every waiter of
            // a herd one more trip through the scheduler before its head is written.
            yielded: true,
            hint: content_length,
        }
    }
}

impl FlightBody {
    /// Returns at most [`MAX_FRAME`] bytes of `b`, keeping the rest for the next frame.
    fn split(&mut self, mut b: Bytes) -> Bytes {
        if b.len() > MAX_FRAME {
            self.rest = Some(b.split_off(MAX_FRAME));
        }
        b
    }
}

impl Drop for FlightBody {
    fn drop(&mut self) {
        self.flight.waiters.fetch_sub(1, Ordering::Relaxed);
        let mut p = self
            .flight
            .positions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(i) = p.iter().position(|x| Arc::ptr_eq(x, &self.position)) {
            p.swap_remove(i);
        }
        drop(p);
        if self.flight.is_pass_through() {
            self.flight.drained.notify_waiters();
        }
    }
}

impl Body for FlightBody {
    type Data = Bytes;
    type Error = service::body::BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if !this.yielded {
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if let Some(rest) = this.rest.take() {
            this.yielded = false;
            return Poll::Ready(Some(Ok(Frame::data(this.split(rest)))));
        }
        let fut = this.pending.get_or_insert_with(|| {
            let f = this.flight.clone();
            let idx = this.idx;
            Box::pin(async move {
                if idx == 0 {
                    f.heads_sent().await;
                }
                f.chunk(idx).await
            })
        });
        match fut.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                this.pending = None;
                match r {
                    None => Poll::Ready(None),
                    Some(Ok(b)) => {
                        this.idx += 1;
                        this.position.store(this.idx, Ordering::Release);
                        if this.flight.is_pass_through() {
                            this.flight.drained.notify_waiters();
                        }
                        this.yielded = false;
                        Poll::Ready(Some(Ok(Frame::data(this.split(b)))))
                    }
                    Some(Err(e)) => Poll::Ready(Some(Err(Box::new(e)))),
                }
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.hint {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn key(s: &str) -> CacheKey {
        crate::key::normalize(s, &[]).unwrap()
    }

    fn head() -> Head {
        Head {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            content_length: Some(6),
            upstream: "up:1".into(),
        }
    }

    #[tokio::test]
    async fn one_writer_many_waiters_stream_as_bytes_arrive() {
        let t = Arc::new(FlightTable::default());
        let Role::Writer(w) = t.join_or_start(&key("/a")) else {
            panic!("first is writer")
        };
        let Role::Waiter(f) = t.join_or_start(&key("/a")) else {
            panic!("second waits")
        };
        let mut body = FlightBody::new(f.clone(), Some(6));
        w.head(head());
        w.push(Bytes::from_static(b"abc"));
        // The first half is readable before the writer goes on.
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"abc");
        w.push(Bytes::from_static(b"def"));
        w.finish(Outcome::Done);
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(&rest[..], b"def");
        assert!(t.is_empty(), "a finished flight leaves the table");
        assert_eq!(f.waiters(), 0);
    }

    #[tokio::test]
    async fn dropped_writer_releases_waiters() {
        let t = Arc::new(FlightTable::default());
        let Role::Writer(w) = t.join_or_start(&key("/a")) else {
            panic!()
        };
        let Role::Waiter(f) = t.join_or_start(&key("/a")) else {
            panic!()
        };
        let waiting = tokio::spawn(async move { f.head(Duration::from_secs(10)).await });
        tokio::task::yield_now().await;
        drop(w);
        assert_eq!(waiting.await.unwrap().unwrap_err(), WaitError::Dangling);
        // The next request elects a new writer.
        assert!(matches!(t.join_or_start(&key("/a")), Role::Writer(_)));
    }

    #[tokio::test]
    async fn failure_mid_body_reaches_readers_and_timeouts_bound_waits() {
        let t = Arc::new(FlightTable::default());
        let Role::Writer(w) = t.join_or_start(&key("/a")) else {
            panic!()
        };
        let f = w.flight().clone();
        assert_eq!(
            f.head(Duration::from_millis(20)).await.unwrap_err(),
            WaitError::WaitTimeout
        );
        w.head(head());
        w.push(Bytes::from_static(b"abc"));
        let mut body = FlightBody::new(f.clone(), None);
        w.finish(Outcome::TransientError(FetchError::Body("reset".into())));
        assert!(body.frame().await.unwrap().is_ok());
        assert!(body.frame().await.unwrap().is_err());
    }

    /// A flight whose whole body ("abcdef") is in, with one reader and one request that has
    /// not produced its head yet (its ticket).
    fn complete_flight_with_a_pending_head() -> (HeadTicket, FlightBody) {
        let t = Arc::new(FlightTable::default());
        let Role::Writer(w) = t.join_or_start(&key("/a")) else {
            panic!()
        };
        let f = w.flight().clone();
        let ticket = f.head_ticket();
        let body = FlightBody::new(f, Some(6));
        w.head(head());
        w.push(Bytes::from_static(b"abcdef"));
        w.finish(Outcome::Done);
        (ticket, body)
    }

    /// The barrier opens when the last head is out, not at its timeout (a one-chunk body
    /// gets no later chunk wake-up that could re-check it).
    #[tokio::test(start_paused = true)]
    async fn bodies_start_when_the_last_head_is_out() {
        let (ticket, mut body) = complete_flight_with_a_pending_head();
        let t0 = tokio::time::Instant::now();
        let reader = tokio::spawn(async move { body.frame().await.unwrap().unwrap() });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!reader.is_finished(), "held while a head is pending");
        drop(ticket);
        let frame = reader.await.unwrap().into_data().unwrap();
        assert_eq!(&frame[..], b"abcdef");
        assert!(t0.elapsed() < HEADS_FIRST_MAX, "{:?}", t0.elapsed());
    }

    /// Regression: the barrier's timer task held the flight (its whole body) for 150 ms
    /// after it ended; a finished flight nobody reads is freed at once.
    #[tokio::test(start_paused = true)]
    async fn a_finished_flight_is_freed_at_once() {
        let t = Arc::new(FlightTable::default());
        let Role::Writer(w) = t.join_or_start(&key("/a")) else {
            panic!()
        };
        let weak = Arc::downgrade(w.flight());
        w.head(head());
        w.push(Bytes::from_static(b"abcdef"));
        w.finish(Outcome::Done);
        tokio::task::yield_now().await;
        assert!(weak.upgrade().is_none(), "the timer still holds the flight");
    }

    /// A request that never produces its head holds the bodies back for at most
    /// HEADS_FIRST_MAX: the flight's own timer opens the barrier.
    #[tokio::test(start_paused = true)]
    async fn a_stuck_head_holds_bodies_back_only_until_the_barrier_times_out() {
        let t0 = tokio::time::Instant::now();
        let (_stuck, mut body) = complete_flight_with_a_pending_head();
        let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&frame[..], b"abcdef");
        assert!(t0.elapsed() >= HEADS_FIRST_MAX, "{:?}", t0.elapsed());
        assert!(t0.elapsed() < HEADS_FIRST_MAX * 2, "{:?}", t0.elapsed());
    }
}

#[cfg(test)]
mod pass_through_tests {
    use super::*;
    use http_body_util::BodyExt;

    /// Regression: a body larger than the cache would take was held whole for its readers
    /// (eight slow clients of 200 MiB objects: 1.84 GB RSS). A pass-through flight holds at
    /// most PASS_THROUGH_BUFFER (plus one chunk) for its slowest reader, makes the writer
    /// wait, and tells it when every reader has gone.
    #[tokio::test]
    async fn holds_only_what_the_slowest_reader_has_not_read() {
        let t = Arc::new(FlightTable::default());
        let k = crate::key::normalize("/huge.ts", &[]).unwrap();
        let Role::Writer(w) = t.join_or_start(&k) else {
            panic!()
        };
        let f = w.flight().clone();
        let mut slow = FlightBody::new(f.clone(), None);
        let mut fast = FlightBody::new(f.clone(), None);
        w.pass_through();
        assert!(t.is_empty(), "later requests start their own fetch");
        w.head(Head {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            content_length: None,
            upstream: "up:1".into(),
        });
        let chunk = Bytes::from(vec![7u8; 256 * 1024]);
        let mut pushed = 0;
        // The writer fills up to the limit, then has to wait.
        while tokio::time::timeout(Duration::from_millis(20), w.room())
            .await
            .is_ok_and(|more| more)
        {
            w.push(chunk.clone());
            pushed += 1;
            assert!(pushed < 100, "room() never pushed back");
        }
        assert!(f.buffered() <= PASS_THROUGH_BUFFER + chunk.len());
        // The fast reader reads everything; the slow one still holds the buffer.
        for _ in 0..pushed * 4 {
            fast.frame().await.unwrap().unwrap();
        }
        assert!(f.buffered() > PASS_THROUGH_BUFFER);
        // The slow reader reads a little: room again, and what both passed is gone.
        for _ in 0..8 {
            slow.frame().await.unwrap().unwrap();
        }
        assert!(w.room().await);
        assert!(f.buffered() <= PASS_THROUGH_BUFFER);
        drop((slow, fast));
        assert!(!w.room().await, "no reader left");
        assert_eq!(f.buffered(), 0, "memory returns when the readers leave");
        w.finish(Outcome::Done);
    }

    #[tokio::test]
    async fn a_range_cannot_be_cut_from_a_body_that_was_not_kept() {
        let t = Arc::new(FlightTable::default());
        let k = crate::key::normalize("/huge.ts", &[]).unwrap();
        let Role::Writer(w) = t.join_or_start(&k) else {
            panic!()
        };
        let f = w.flight().clone();
        let body = FlightBody::new(f.clone(), None);
        w.pass_through();
        w.head(Head {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            content_length: None,
            upstream: "up:1".into(),
        });
        w.push(Bytes::from_static(b"abc"));
        let mut body = body;
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"abc");
        assert!(w.room().await, "trims what the reader passed");
        w.push(Bytes::from_static(b"def"));
        w.finish(Outcome::Done);
        assert!(f.complete(Duration::from_secs(1)).await.is_err());
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(&rest[..], b"def");
    }
}

#[cfg(test)]
mod frame_tests {
    use super::*;
    use http_body_util::BodyExt;

    /// Chunks larger than a frame are split, and every byte arrives in order.
    #[tokio::test]
    async fn large_chunks_are_split_without_loss() {
        let t = Arc::new(FlightTable::default());
        let k = crate::key::normalize("/big", &[]).unwrap();
        let Role::Writer(w) = t.join_or_start(&k) else {
            panic!()
        };
        let f = w.flight().clone();
        let data: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
        let body = FlightBody::new(f, Some(data.len() as u64));
        w.head(Head {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            content_length: None,
            upstream: "up:1".into(),
        });
        w.push(Bytes::copy_from_slice(&data[..200_000]));
        w.push(Bytes::copy_from_slice(&data[200_000..]));
        w.finish(Outcome::Done);
        let mut frames = 0;
        let mut got = Vec::new();
        let mut body = body;
        while let Some(fr) = body.frame().await {
            let d = fr.unwrap().into_data().unwrap();
            assert!(d.len() <= MAX_FRAME);
            got.extend_from_slice(&d);
            frames += 1;
        }
        assert_eq!(got.len(), data.len());
        assert_eq!(got, data);
        assert!(frames >= 10);
    }
}
