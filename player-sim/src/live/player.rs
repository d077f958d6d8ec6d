//! One live player on a tokio task: the I/O driver of the session core. It fetches the
//! master playlist, reloads media playlists as RFC 8216 §6.3.4 prescribes, and fetches the
//! segments the core asks for, in order at the live edge, through its emulated link; the
//! core (`crate::session`) decides rungs, waits, aborts and retries, and keeps the playback
//! clock and QoE.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hls::playlist::MediaPlaylist;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tokio::time::{Instant, sleep_until, timeout_at};

use super::Shared;
use super::link::{Link, from_ms, ms};
use crate::abr::{ABANDON_CHECK_MS, Abr, LOOKAHEAD};
use crate::cmcd;
use crate::offline::Step;
use crate::playback::State;
use crate::qoe::Session;
use crate::schedule::SplitMix;
use crate::session::{self, Core, Downloading, Ladder, Next, Retry, Rules, Segment};
use crate::trace::Trace;

/// Who a player is and when it plays.
pub struct Spec {
    /// Player id (also seeds its random choices).
    pub id: usize,
    /// Its controller.
    pub abr: Box<dyn Abr>,
    /// Its bandwidth schedule.
    pub trace: Arc<Trace>,
    /// When it joins.
    pub join_at: Instant,
    /// When it leaves.
    pub leave_at: Instant,
    /// Keep a per-segment timeline (for plots).
    pub record: bool,
}

/// What a finished player reports.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Its QoE.
    pub session: Session,
    /// Per-segment timeline (when recorded).
    pub steps: Vec<Step>,
    /// HTTP requests it made.
    pub requests: u64,
    /// Downloads abandoned for a lower rendition.
    pub abandoned: u32,
    /// The ladder it saw, kbit/s by quality index.
    pub ladder_kbps: Vec<f64>,
    /// Its stalls as (start, end) ms since it joined.
    pub stall_spans: Vec<(f64, f64)>,
}

/// Why a request failed.
#[derive(Debug)]
enum Failure {
    Status(StatusCode, Option<Duration>),
    Timeout,
    Transport(String),
}

impl Failure {
    /// Its outcome label in `player_requests_total`.
    fn label(&self) -> &'static str {
        match self {
            Failure::Status(s, _) if s.is_client_error() => "4xx",
            Failure::Status(s, _) if s.is_server_error() => "5xx",
            Failure::Status(..) => "other",
            Failure::Timeout => "timeout",
            Failure::Transport(_) => "error",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(s, _) => write!(f, "HTTP {s}"),
            Failure::Timeout => write!(f, "timed out"),
            Failure::Transport(e) => write!(f, "{e}"),
        }
    }
}

/// Why a player's session ended early.
#[derive(Debug, thiserror::Error)]
enum PlayError {
    #[error("{kind} {url}: {failure}")]
    Request {
        kind: &'static str,
        url: String,
        failure: Failure,
    },
    #[error("{url}: not an HLS playlist: {reason}")]
    NotHls { url: String, reason: String },
    #[error("{url}: no variant streams")]
    NoVariants { url: String },
    #[error("{url}: bad playlist: {reason}")]
    BadPlaylist { url: String, reason: String },
    #[error(transparent)]
    Core(#[from] session::Error),
}

enum Got {
    Body {
        body: Bytes,
        latency_ms: f64,
        transfer_ms: f64,
    },
    /// Aborted for the core's choice of rung.
    Abandoned { to: usize },
    /// Aborted because the live window moved past the stalled playhead: the player goes to
    /// the live sync point.
    Resync,
}

/// The segment a request is for.
#[derive(Clone, Copy)]
struct Wanted {
    rung: usize,
    duration_ms: f64,
    /// Its media sequence number.
    msn: u64,
}

/// A segment download under way.
struct Flight {
    wanted: Wanted,
    asked: Instant,
    first_byte: Instant,
    /// Its Content-Length, bytes.
    expected: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Master,
    Playlist,
    Segment,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Master => "master",
            Kind::Playlist => "playlist",
            Kind::Segment => "segment",
        }
    }
}

struct Variant {
    url: String,
    /// AVERAGE-BANDWIDTH when given, else BANDWIDTH, kbit/s.
    kbps: f64,
    /// BANDWIDTH, kbit/s.
    peak_kbps: f64,
}

struct Loaded {
    pl: MediaPlaylist,
    url: String,
    next_reload_at: Instant,
}

/// Why a playlist loads beside a segment download.
#[derive(Clone, Copy)]
enum Why {
    /// A switch decided during the download: the download is aborted when it is in.
    Switch,
    /// The reload timer (due at this instant).
    Timer(Instant),
}

/// A playlist loading beside a segment download; the load stops if this is dropped.
struct Beside {
    rung: usize,
    why: Why,
    began: Instant,
    handle: tokio::task::JoinHandle<Result<Bytes, Failure>>,
}

impl Drop for Beside {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Largest playlist loaded beside a download (a hostile server cannot make it grow).
const MAX_PLAYLIST_BYTES: usize = 16 << 20;

/// A player's GET of `target` with `headers` (CMCD's, or none).
fn get_request(
    target: String,
    headers: Vec<(&'static str, String)>,
) -> Result<Request<service::body::Body>, Failure> {
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(target)
        .header("user-agent", "player-sim");
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.body(service::body::empty())
        .map_err(|e| Failure::Transport(e.to_string()))
}

/// The result of the playlist loading beside a download; never ready when there is none.
async fn arrival(beside: &mut Option<Beside>) -> Result<Bytes, Failure> {
    match beside {
        Some(b) => match (&mut b.handle).await {
            Ok(r) => r,
            Err(e) => Err(Failure::Transport(e.to_string())),
        },
        None => std::future::pending().await,
    }
}

/// Ready at `at`; never when there is none.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// RFC 3986 reference resolution, enough for playlist URIs (absolute, absolute-path and
/// relative references; query strings of the base are dropped).
pub fn resolve(base: &str, reference: &str) -> String {
    if reference.starts_with("http://") || reference.starts_with("https://") {
        return reference.to_string();
    }
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    if reference.starts_with('/') {
        return format!("{}{reference}", &base[..path_start]);
    }
    let base_path = base.split(['?', '#']).next().unwrap_or(base);
    let dir_end = base_path
        .rfind('/')
        .map(|i| i + 1)
        .unwrap_or(base_path.len());
    let mut segs: Vec<&str> = base_path[path_start..dir_end]
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (ref_path, ref_rest) = match reference.find(['?', '#']) {
        Some(i) => reference.split_at(i),
        None => (reference, ""),
    };
    let parts: Vec<&str> = ref_path.split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        match *p {
            "." => {}
            ".." => {
                segs.pop();
            }
            p if i + 1 == parts.len() || !p.is_empty() => segs.push(p),
            _ => {}
        }
    }
    format!("{}/{}{ref_rest}", &base[..path_start], segs.join("/"))
}

/// Runs one player from its join to its leave (or a fatal error).
pub async fn run(spec: Spec, url: String, shared: Arc<Shared>) -> Outcome {
    sleep_until(spec.join_at).await;
    let m = &shared.metrics;
    m.joined.inc();
    m.active.inc();
    let joined = Instant::now();
    let trace = spec.trace.clone();
    let mut p = Player {
        shared: shared.clone(),
        link: Link::new(&trace, joined),
        core: None,
        ladder: Vec::new(),
        playlists: Vec::new(),
        rng: SplitMix(shared.settings.seed ^ (spec.id as u64).wrapping_mul(0x9e37_79b9)),
        record: spec.record,
        requests: 0,
        seen_stalls: 0,
        seen_stalled_ms: 0.0,
        stalled_now: false,
        sid: format!("{}-{}", shared.settings.seed, spec.id),
        cid: url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
            .unwrap_or_default(),
        last_kbps: None,
        cmcd_stalls: 0,
        timed: None,
    };
    let error = match timeout_at(spec.leave_at, p.play(&url, spec.abr)).await {
        Ok(Err(e)) => {
            m.failed.inc();
            Some(e.to_string())
        }
        Ok(Ok(())) | Err(_) => None,
    };
    let now_ms = p.advance();
    if p.stalled_now {
        m.stalled.dec();
    }
    m.active.dec();
    let ladder_kbps = p.ladder.iter().map(|v| v.kbps).collect();
    let requests = p.requests;
    let trace_name = Some(trace.name.clone());
    match p.core.take() {
        Some(core) => {
            let abandoned = core.abandoned();
            let (session, steps, stall_spans) = core.finish(spec.id, trace_name, false, error);
            Outcome {
                session,
                steps,
                requests,
                abandoned,
                ladder_kbps,
                stall_spans,
            }
        }
        // Left or failed before the master playlist was in.
        None => Outcome {
            session: Session {
                id: spec.id,
                trace: trace_name,
                startup_s: now_ms / 1000.0,
                never_started: true,
                error,
                ..Session::default()
            },
            steps: Vec::new(),
            requests,
            abandoned: 0,
            ladder_kbps,
            stall_spans: Vec::new(),
        },
    }
}

struct Player<'t> {
    shared: Arc<Shared>,
    link: Link<'t>,
    /// The session's decisions, once the master playlist is in.
    core: Option<Core>,
    ladder: Vec<Variant>,
    playlists: Vec<Option<Loaded>>,
    rng: SplitMix,
    record: bool,
    requests: u64,
    seen_stalls: u32,
    seen_stalled_ms: f64,
    stalled_now: bool,
    /// CMCD session id (`seed-id`).
    sid: String,
    /// CMCD content id: the master playlist's path.
    cid: String,
    /// Throughput of the last segment download, kbit/s (CMCD `mtp`).
    last_kbps: Option<f64>,
    /// Stalls counted at the last request (CMCD `bs`: one since).
    cmcd_stalls: u32,
    /// The rung whose playlist the reload timer keeps fresh (the last one reloaded).
    timed: Option<usize>,
}

/// Sizes of the next [`LOOKAHEAD`] segments of `seg_ms` per rung, bits, estimated from the
/// ladder (a live player cannot know them); `cache` is reused while the duration holds.
fn estimate<'c>(cache: &'c mut Vec<Vec<f64>>, bitrates: &[f64], seg_ms: f64) -> &'c [Vec<f64>] {
    let fresh = cache.first().is_some_and(|row| {
        row.len() == bitrates.len() && row.iter().zip(bitrates).all(|(b, k)| *b == k * seg_ms)
    });
    if !fresh {
        *cache = vec![bitrates.iter().map(|k| k * seg_ms).collect(); LOOKAHEAD];
    }
    cache
}

/// Longest Retry-After a player honours: a server may ask for any wait, but a player that
/// slept past its own run would never report; and the sleep's deadline cannot overflow.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The wait before retry `attempt` (1-based): full-jitter backoff (`unit` in [0, 1) scales
/// `min(cap, base·2^(attempt-1))`), never shorter than the server's `retry_after`, capped.
fn retry_wait(
    unit: f64,
    attempt: u32,
    base: Duration,
    cap: Duration,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = base.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
    let wait =
        Duration::from_secs_f64((unit.clamp(0.0, 1.0) * exp.min(cap.as_secs_f64())).max(0.0));
    match retry_after {
        Some(r) => wait.max(r.min(MAX_RETRY_AFTER)),
        None => wait,
    }
}

/// EXT-X-PROGRAM-DATE-TIME of segment `i`, carried forward from the last tagged segment.
fn pdt_of(pl: &MediaPlaylist, i: usize) -> Option<f64> {
    let mut acc = 0.0;
    for j in (0..=i).rev() {
        let s = &pl.segments[j];
        if let Some(p) = s.program_date_time_ms {
            return Some(p as f64 + acc);
        }
        if j > 0 {
            acc += pl.segments[j - 1].duration * 1000.0;
        }
    }
    None
}

/// The segment a player joining `pl` starts at: the last one that begins at least `hold_back`
/// target durations, plus `extra_s` (at most one target duration), before the end of the
/// playlist (RFC 8216 §6.3.3). `extra_s` is hls.js's growth of its live sync distance after
/// stalls (`liveSyncOnStallIncrease` per stall, capped at one target duration).
pub fn live_start(pl: &MediaPlaylist, hold_back: u32, extra_s: f64) -> u64 {
    if pl.endlist {
        return pl.media_sequence;
    }
    let td = pl.target_duration as f64;
    let want = f64::from(hold_back) * td + extra_s.clamp(0.0, td);
    let mut from_end = 0.0;
    for (i, s) in pl.segments.iter().enumerate().rev() {
        from_end += s.duration;
        if from_end >= want {
            return pl.media_sequence + i as u64;
        }
    }
    pl.media_sequence
}

/// Whether a playhead `buffered_ms` before the start of segment `msn` is behind the window of
/// live playlist `pl` by more than hls.js's look-up tolerance (`maxFragLookUpTolerance`,
/// 250 ms): hls.js then counts it outside the sliding window. Segments already gone from the
/// window count a target duration each.
pub fn before_window(pl: &MediaPlaylist, msn: u64, buffered_ms: f64) -> bool {
    if pl.endlist {
        return false;
    }
    let ahead_ms = if msn >= pl.media_sequence {
        let n = usize::try_from(msn - pl.media_sequence).unwrap_or(usize::MAX);
        pl.segments
            .iter()
            .take(n)
            .map(|s| s.duration * 1000.0)
            .sum()
    } else {
        -((pl.media_sequence - msn) as f64) * pl.target_duration as f64 * 1000.0
    };
    ahead_ms - buffered_ms.max(0.0) < -LOOKUP_TOLERANCE_MS
}

/// hls.js's `maxFragLookUpTolerance`, ms.
const LOOKUP_TOLERANCE_MS: f64 = 250.0;

impl Player<'_> {
    fn settings(&self) -> &super::Settings {
        &self.shared.settings
    }

    /// Mirrors the playback machine's stalls into the metrics.
    fn sync_metrics(&mut self) {
        let Some(pb) = self.core.as_ref().map(Core::playback) else {
            return;
        };
        let (stalls, stalled_ms) = (pb.stalls, pb.stalled_ms);
        let stalled = matches!(pb.state(), State::Stalled(_));
        let m = &self.shared.metrics;
        if stalls > self.seen_stalls {
            m.rebuffers.inc_by(u64::from(stalls - self.seen_stalls));
            self.seen_stalls = stalls;
        }
        if stalled_ms > self.seen_stalled_ms {
            m.rebuffer_seconds
                .inc_by((stalled_ms - self.seen_stalled_ms) / 1000.0);
            self.seen_stalled_ms = stalled_ms;
        }
        if stalled != self.stalled_now {
            if stalled {
                m.stalled.inc();
            } else {
                m.stalled.dec();
            }
            self.stalled_now = stalled;
        }
    }

    /// Lets the wall time since the last call pass for the core; returns ms since joining.
    fn advance(&mut self) -> f64 {
        let now = self.link.elapsed_ms();
        if let Some(core) = self.core.as_mut() {
            core.elapse(now - core.clock_ms());
        }
        self.sync_metrics();
        now
    }

    /// Waits until `t`, but wakes when the buffer runs dry on the way so a stall shows in the
    /// state (and `/metrics`) when it starts, not when the wait ends.
    async fn pause_until(&mut self, t: Instant) {
        loop {
            self.advance();
            let now = Instant::now();
            if now >= t {
                return;
            }
            let wake = match self.core.as_ref().map(Core::playback) {
                Some(pb) if pb.state() == State::Playing => {
                    t.min(now + from_ms(pb.level_ms() + 1.0))
                }
                _ => t,
            };
            sleep_until(wake).await;
        }
    }

    /// The wait before retry number `attempt` (1-based) after `f`: full-jitter backoff,
    /// never shorter than the server's Retry-After.
    fn retry_wait(&mut self, attempt: u32, f: &Failure) -> Duration {
        let s = self.settings();
        let (base, cap) = (s.retry_base, s.retry_cap);
        let retry_after = match f {
            Failure::Status(_, r) => *r,
            _ => None,
        };
        retry_wait(self.rng.unit(), attempt, base, cap, retry_after)
    }

    /// GETs `url` through the link. For segments (`segment` says which), the core's abandon
    /// timer runs while bytes arrive, and a stalled player keeps its playlist fresh.
    async fn get(
        &mut self,
        kind: Kind,
        url: &str,
        segment: Option<Wanted>,
    ) -> Result<Got, Failure> {
        let asked = Instant::now();
        let send_at = self.link.request_at();
        self.pause_until(send_at).await;
        self.requests += 1;
        let deadline = send_at + self.settings().request_timeout;
        let cmcd = self.cmcd(kind, segment);
        let result = self.exchange(url, cmcd, asked, deadline, segment).await;
        let label = match &result {
            Ok(Got::Body { .. }) => "2xx",
            Ok(Got::Abandoned { .. }) => "abandoned",
            Ok(Got::Resync) => "resync",
            Err(f) => f.label(),
        };
        self.count_request(kind, label);
        result
    }

    /// Counts a finished request in `player_requests_total{kind, outcome}`.
    fn count_request(&self, kind: Kind, outcome: &str) {
        self.shared
            .metrics
            .requests
            .with_label_values(&[kind.label(), outcome])
            .inc();
    }

    /// This request's CMCD, as the settings ask: (query value, headers).
    fn cmcd(
        &mut self,
        kind: Kind,
        segment: Option<Wanted>,
    ) -> Option<(String, Vec<(&'static str, String)>)> {
        let mode = self.settings().cmcd;
        if mode == cmcd::Mode::Off {
            return None;
        }
        let object = match (kind, segment) {
            (Kind::Segment, Some(w)) => cmcd::Object::Segment {
                bitrate_kbps: self.ladder.get(w.rung).map_or(0.0, |v| v.kbps),
                duration_ms: w.duration_ms,
            },
            _ => cmcd::Object::Manifest,
        };
        let pb = self.core.as_ref().map(Core::playback);
        let stalls = pb.map_or(0, |p| p.stalls);
        let starved = stalls > self.cmcd_stalls;
        self.cmcd_stalls = stalls;
        let d = cmcd::Data {
            object,
            buffer_ms: pb.map_or(0.0, |p| p.level_ms()),
            throughput_kbps: self.last_kbps,
            session: &self.sid,
            content: &self.cid,
            live: !self.playlists.iter().flatten().any(|l| l.pl.endlist),
            startup: pb.is_none_or(|p| p.started_at_ms.is_none()),
            starved,
        };
        Some(match mode {
            cmcd::Mode::Query => (cmcd::query_value(&d), Vec::new()),
            _ => (String::new(), cmcd::headers(&d)),
        })
    }

    async fn exchange(
        &mut self,
        url: &str,
        cmcd: Option<(String, Vec<(&'static str, String)>)>,
        asked: Instant,
        deadline: Instant,
        segment: Option<Wanted>,
    ) -> Result<Got, Failure> {
        let (query, headers) = cmcd.unwrap_or_default();
        let target = if query.is_empty() {
            url.to_string()
        } else {
            cmcd::append_query(url, &query)
        };
        let req = get_request(target, headers)?;
        let resp = match timeout_at(deadline, self.shared.client.request(req)).await {
            Err(_) => return Err(Failure::Timeout),
            Ok(Err(e)) => return Err(Failure::Transport(service::client::error_chain(&e))),
            Ok(Ok(r)) => r,
        };
        if !resp.status().is_success() {
            // Delta-seconds only (an HTTP-date is ignored), capped at 2^31 s.
            let retry_after = resp
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(service::delta::parse);
            return Err(Failure::Status(resp.status(), retry_after));
        }
        let expected: Option<usize> = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let first_byte = Instant::now();
        let latency_ms = ms(first_byte - asked);
        let flight = segment.map(|wanted| Flight {
            wanted,
            asked,
            first_byte,
            expected,
        });
        let mut body = resp.into_body();
        let mut buf = Vec::with_capacity(expected.unwrap_or(16 * 1024).min(8 << 20));
        let mut beside: Option<Beside> = None;
        loop {
            if let Some(f) = &flight
                && let Some(got) = self.tend_beside(&mut beside, buf.len(), f).await
            {
                return Ok(got);
            }
            // Woken for the reload timer too when no bytes come (a slow first byte).
            let timer = match (&flight, &beside) {
                (Some(f), None) => self.timer_at(f.wanted.rung),
                _ => None,
            };
            let next = tokio::select! {
                f = timeout_at(deadline, body.frame()) => f,
                () = until(timer) => continue,
                got = arrival(&mut beside) => {
                    let ended = match (beside.take(), &flight) {
                        (Some(b), Some(f)) => self.playlist_beside(b, got, buf.len(), f),
                        _ => None,
                    };
                    match ended {
                        Some(got) => return Ok(got),
                        None => continue,
                    }
                }
            };
            let frame = match next {
                Err(_) => return Err(Failure::Timeout),
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    return Err(Failure::Transport(service::client::error_chain(&e)));
                }
                Ok(Some(Ok(f))) => f,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            // Delivered in slices of at most one abandon-check interval of link time, so
            // that the controller's timer can fire in the middle of a large read.
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = self
                    .link
                    .bytes_within(ABANDON_CHECK_MS)
                    .clamp(1, rest.len());
                let at = self.link.deliver(n);
                if at > deadline {
                    self.pause_until(deadline).await;
                    return Err(Failure::Timeout);
                }
                self.pause_until(at).await;
                self.shared.metrics.bytes.inc_by(n as u64);
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                let Some(f) = &flight else {
                    continue;
                };
                if let Some(to) = self.judge(buf.len(), f) {
                    return Ok(Got::Abandoned { to });
                }
                if let Some(got) = self.tend_beside(&mut beside, buf.len(), f).await {
                    return Ok(got);
                }
            }
        }
        Ok(Got::Body {
            body: Bytes::from(buf),
            latency_ms,
            transfer_ms: ms(Instant::now() - first_byte),
        })
    }

    /// Playlists loaded beside a segment download, as hls.js's stream and level controllers
    /// load them: a switch decided during the download loads the new rung's playlist and the
    /// download is aborted when it is in; the rung's playlist is reloaded on the reload timer
    /// and, when the window has moved past a stalled player's playhead, the download is
    /// aborted to go to the live sync point. Starts such a load when due; once one is in, what ends the
    /// download (`loaded` bytes of it so far), if anything.
    async fn tend_beside(
        &mut self,
        beside: &mut Option<Beside>,
        loaded: usize,
        f: &Flight,
    ) -> Option<Got> {
        let switch = self.core.as_ref().and_then(Core::awaiting_playlist);
        match (beside.as_ref().map(|b| b.why), switch) {
            // A switch outranks a timer reload (dropping that load stops it).
            (None | Some(Why::Timer(_)), Some(r)) => {
                *beside = Some(self.load_beside(r, Why::Switch));
            }
            (None, None) => {
                if let Some(at) = self.timer_due(f.wanted.rung) {
                    *beside = Some(self.load_beside(f.wanted.rung, Why::Timer(at)));
                }
            }
            _ => {}
        }
        if !beside.as_ref().is_some_and(|b| b.handle.is_finished()) {
            return None;
        }
        let result = arrival(beside).await;
        let b = beside.take()?;
        self.playlist_beside(b, result, loaded, f)
    }

    /// When the reload timer for rung `r` has come. hls.js reloads on it while a fragment
    /// downloads, and so does this player: against a server that serves stale playlists
    /// while it revalidates (an edge's stale-while-revalidate), what a reload returns is
    /// the copy the previous reload refreshed, so skipping the reloads hls.js makes changes
    /// when the player learns of a new segment by seconds.
    fn timer_due(&self, r: usize) -> Option<Instant> {
        self.timer_at(r).filter(|at| Instant::now() >= *at)
    }

    /// When rung `r`'s reload timer is next due, if it is the rung on the timer.
    fn timer_at(&self, r: usize) -> Option<Instant> {
        let at = self.playlists.get(r)?.as_ref()?.next_reload_at;
        (self.timed == Some(r)).then_some(at)
    }

    /// Starts loading rung `r`'s playlist beside the download in progress: after the link's
    /// latency (not charged to the link: the download goes on meanwhile; the playlist's
    /// few bytes are not paced either), through the shared client.
    fn load_beside(&mut self, r: usize, why: Why) -> Beside {
        let url = self.ladder[r].url.clone();
        let wait = self.link.latency_now();
        let shared = self.shared.clone();
        let timeout = self.settings().request_timeout;
        self.requests += 1;
        let began = Instant::now();
        let handle = tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let req = get_request(url, Vec::new())?;
            let fetch = async {
                let resp = shared
                    .client
                    .request(req)
                    .await
                    .map_err(|e| Failure::Transport(service::client::error_chain(&e)))?;
                if !resp.status().is_success() {
                    return Err(Failure::Status(resp.status(), None));
                }
                let mut body = resp.into_body();
                let mut buf = Vec::new();
                while let Some(frame) = body.frame().await {
                    let frame =
                        frame.map_err(|e| Failure::Transport(service::client::error_chain(&e)))?;
                    if let Ok(data) = frame.into_data() {
                        if buf.len().saturating_add(data.len()) > MAX_PLAYLIST_BYTES {
                            return Err(Failure::Transport("playlist too large".into()));
                        }
                        buf.extend_from_slice(&data);
                    }
                }
                Ok(Bytes::from(buf))
            };
            match tokio::time::timeout(timeout, fetch).await {
                Ok(r) => r,
                Err(_) => Err(Failure::Timeout),
            }
        });
        Beside {
            rung: r,
            why,
            began,
            handle,
        }
    }

    /// A playlist loaded beside a download is in (or failed: the main loop loads it again):
    /// keep it; then, for a switch, let the core abort the download (`loaded` bytes of it so
    /// far) for the new rung; for a timer reload, abort it when the stalled playhead is now
    /// behind the window.
    fn playlist_beside(
        &mut self,
        b: Beside,
        got: Result<Bytes, Failure>,
        loaded: usize,
        f: &Flight,
    ) -> Option<Got> {
        self.count_request(
            Kind::Playlist,
            got.as_ref().map_or_else(Failure::label, |_| "2xx"),
        );
        // A rung switched to starts its reload timer from this load; a timer reload keeps it.
        let timer = match b.why {
            Why::Timer(at) => Some(at),
            Why::Switch => None,
        };
        if let Ok(text) = got {
            let url = self.ladder[b.rung].url.clone();
            if let Err(e) = self.store_playlist(b.rung, url, &text, timer, false, b.began) {
                tracing::debug!(player = %self.sid, error = %e, "playlist loaded beside a download");
            }
        }
        self.advance();
        match b.why {
            Why::Switch => {
                if let Some(core) = self.core.as_mut() {
                    core.playlist_in();
                }
                self.judge(loaded, f).map(|to| Got::Abandoned { to })
            }
            Why::Timer(_) => self
                .behind_window(b.rung, f.wanted.msn)
                .then_some(Got::Resync),
        }
    }

    /// Whether a stalled player's playhead (just before segment `msn`, less what is buffered)
    /// is behind the window of rung `r`'s playlist as last loaded.
    fn behind_window(&self, r: usize, msn: u64) -> bool {
        let Some(core) = self.core.as_ref() else {
            return false;
        };
        let pb = core.playback();
        matches!(pb.state(), State::Stalled(_))
            && self
                .playlists
                .get(r)
                .and_then(Option::as_ref)
                .is_some_and(|l| before_window(&l.pl, msn, pb.level_ms()))
    }

    /// Tells the core how the download stands when its abandon timer is due (`loaded` bytes
    /// so far): the rung to switch to when it says abort.
    fn judge(&mut self, loaded: usize, f: &Flight) -> Option<usize> {
        let due = self.core.as_ref()?.next_check_ms()?;
        if ms(Instant::now() - f.asked) < due {
            return None;
        }
        self.advance();
        let core = self.core.as_mut()?;
        match core.progress(
            loaded as f64 * 8.0,
            Some(ms(f.first_byte - f.asked)),
            f.expected.map(|e| e as f64 * 8.0),
        ) {
            Ok(Downloading::Abort(to)) => Some(to),
            Ok(Downloading::Continue) | Err(_) => None,
        }
    }

    /// Fetches with retries: full-jitter backoff (at least any Retry-After), up to the limit.
    async fn get_retrying(&mut self, kind: Kind, url: &str) -> Result<Bytes, PlayError> {
        let mut attempt = 0;
        loop {
            let failure = match self.get(kind, url, None).await {
                Ok(Got::Body { body, .. }) => return Ok(body),
                // Only segment downloads run the abandon timer; count it as a failure.
                Ok(Got::Abandoned { .. } | Got::Resync) => Failure::Transport("abandoned".into()),
                Err(f) => f,
            };
            attempt += 1;
            if attempt > self.settings().max_retries {
                return Err(PlayError::Request {
                    kind: kind.label(),
                    url: url.to_string(),
                    failure,
                });
            }
            let wait = self.retry_wait(attempt, &failure);
            self.pause_until(Instant::now() + wait).await;
        }
    }

    /// Loads the master playlist: the ladder, ascending, and which rung is listed first.
    async fn load_master(&mut self, url: &str) -> Result<Ladder, PlayError> {
        let text = self.get_retrying(Kind::Master, url).await?;
        let mut first_listed = 0;
        self.ladder = match m3u8_rs::parse_playlist_res(&text) {
            Ok(m3u8_rs::Playlist::MasterPlaylist(m)) => {
                let mut v: Vec<Variant> = m
                    .variants
                    .iter()
                    .filter(|v| !v.is_i_frame)
                    .map(|v| Variant {
                        url: resolve(url, &v.uri),
                        kbps: v.average_bandwidth.unwrap_or(v.bandwidth) as f64 / 1000.0,
                        peak_kbps: v.bandwidth as f64 / 1000.0,
                    })
                    .collect();
                let first = v.first().map(|f| f.url.clone());
                v.sort_by(|a, b| a.kbps.total_cmp(&b.kbps));
                first_listed = v
                    .iter()
                    .position(|x| Some(&x.url) == first.as_ref())
                    .unwrap_or(0);
                v
            }
            // A bare media playlist: one rendition of unknown bitrate.
            Ok(m3u8_rs::Playlist::MediaPlaylist(_)) => vec![Variant {
                url: url.to_string(),
                kbps: 0.0,
                peak_kbps: 0.0,
            }],
            Err(e) => {
                return Err(PlayError::NotHls {
                    url: url.to_string(),
                    reason: format!("{e:?}"),
                });
            }
        };
        if self.ladder.is_empty() {
            return Err(PlayError::NoVariants {
                url: url.to_string(),
            });
        }
        self.playlists = (0..self.ladder.len()).map(|_| None).collect();
        Ok(Ladder {
            avg_kbps: self.ladder.iter().map(|v| v.kbps).collect(),
            peak_kbps: self.ladder.iter().map(|v| v.peak_kbps).collect(),
            first_listed,
        })
    }

    async fn play(&mut self, url: &str, abr: Box<dyn Abr>) -> Result<(), PlayError> {
        let ladder = self.load_master(url).await?;
        let s = self.settings();
        let rules = Rules {
            buffer_max_ms: s.buffer_max_ms,
            start_threshold_ms: s.start_threshold_ms,
            resume_threshold_ms: s.resume_threshold_ms,
            resume_growth_max_ms: s.resume_growth_max_ms,
            abandon: s.abandon,
            max_retries: s.max_retries,
        };
        let hold_back = s.live_sync_segments;
        let stall_increase_s = s.live_sync_stall_increase_ms / 1000.0;
        let bitrates = ladder.avg_kbps.clone();
        let mut core = Core::new(abr, rules, ladder)?
            .recording(self.record)
            .loading_playlists();
        // The core's clock counts from the join, as the link's does.
        core.elapse(self.link.elapsed_ms());
        let mut upcoming = Vec::new();
        let mut q = core.first_choice(2000.0, estimate(&mut upcoming, &bitrates, 2000.0));
        self.core = Some(core);
        let mut next: Option<u64> = None;
        loop {
            self.advance();
            let unix_now = hls::date::now_unix_ms() as f64;
            if let Some(core) = self.core.as_mut() {
                core.sample_latency(unix_now);
            }
            self.ensure_playlist(q).await?;
            let stalls = self.core.as_ref().map_or(0, |c| c.playback().stalls);
            let extra_s = f64::from(stalls) * stall_increase_s;
            let Some(loaded) = self.playlists[q].as_ref() else {
                continue;
            };
            let pl = &loaded.pl;
            let msn = *next.get_or_insert_with(|| live_start(pl, hold_back, extra_s));
            let last = pl.end_msn();
            let seek = self.behind_window(q, msn);
            if seek || msn < pl.media_sequence {
                // Fell out of the window: on to the live sync point. A stalled playhead behind
                // the window seeks there (hls.js's synchronizeToLiveEdge), dropping what is
                // buffered; a playing one gets there when its buffer runs out.
                let to = live_start(pl, hold_back, extra_s);
                next = Some(to);
                tracing::debug!(player = %self.sid, msn, to, seek, "fell out of the live window");
                if let Some(core) = self.core.as_mut() {
                    if seek {
                        core.resync();
                    } else {
                        core.skip();
                    }
                }
                continue;
            }
            if msn >= last {
                if pl.endlist {
                    return Ok(());
                }
                // At the live edge: a controller that switches while it waits does so now.
                let seg_ms = pl.segments.last().map_or(2000.0, |s| s.duration * 1000.0);
                let upcoming_bits = estimate(&mut upcoming, &bitrates, seg_ms);
                if let Some(r) = self
                    .core
                    .as_mut()
                    .and_then(|c| c.switch_at_live_edge(seg_ms, upcoming_bits))
                {
                    q = r;
                    self.switch_at_edge(msn, r).await?;
                    continue;
                }
                self.reload(q).await?;
                continue;
            }
            let i = (msn - pl.media_sequence) as usize;
            let seg_ms = pl.segments[i].duration * 1000.0;
            let seg_url = resolve(&loaded.url, &pl.segments[i].uri);
            let seg = Segment {
                duration_ms: seg_ms,
                pdt_ms: pdt_of(pl, i),
                upcoming_bits: estimate(&mut upcoming, &bitrates, seg_ms),
                live: !pl.endlist,
            };
            let Some(core) = self.core.as_mut() else {
                return Ok(());
            };
            match core.offer(&seg) {
                Next::Wait(ms) => {
                    self.pause_until(Instant::now() + from_ms(ms)).await;
                    continue;
                }
                Next::Refetch(r) => {
                    self.refetch(msn, r, false).await?;
                    continue;
                }
                // Another rung: its playlist, and the segment's place in it, first.
                Next::Fetch(chosen) if chosen != q => {
                    q = chosen;
                    continue;
                }
                Next::Fetch(_) => core.start()?,
            }
            let wanted = Wanted {
                rung: q,
                duration_ms: seg_ms,
                msn,
            };
            match self.get(Kind::Segment, &seg_url, Some(wanted)).await {
                Ok(Got::Body {
                    body,
                    latency_ms,
                    transfer_ms,
                }) => {
                    self.advance();
                    let bits = body.len() as f64 * 8.0;
                    // A ladder of unknown bitrate counts what arrived.
                    let kbps = (bitrates[q] <= 0.0).then(|| bits / seg_ms.max(1.0));
                    let Some(core) = self.core.as_mut() else {
                        return Ok(());
                    };
                    let first_start = core.playback().started_at_ms.is_none();
                    let arrived = core.done(bits, latency_ms, transfer_ms, kbps)?;
                    tracing::debug!(
                        player = %self.sid,
                        at_ms = core.clock_ms() as u64,
                        msn,
                        rung = q,
                        bytes = body.len(),
                        download_ms = (latency_ms + transfer_ms) as u64,
                        buffer_ms = core.playback().level_ms() as u64,
                        stalls = core.playback().stalls,
                        estimate_kbps = core.estimate_kbps().map(|e| e as u64),
                        "segment"
                    );
                    let m = &self.shared.metrics;
                    if arrived.started && first_start {
                        m.startup_seconds.observe(core.clock_ms() / 1000.0);
                    }
                    if let Some(from) = arrived.switched_from {
                        let dir = if q > from { "up" } else { "down" };
                        m.switches.with_label_values(&[dir]).inc();
                    }
                    self.sync_metrics();
                    // Bits per ms is kbit/s.
                    self.last_kbps = Some(bits / (latency_ms + transfer_ms).max(1.0));
                    next = Some(msn + 1);
                }
                // The core learnt from the partial download and chose the rung.
                Ok(Got::Abandoned { to }) => {
                    tracing::debug!(player = %self.sid, msn, from = q, to, "abandoned");
                    q = to;
                }
                // The playlist that showed it is in: the next loop goes to the sync point.
                Ok(Got::Resync) => {}
                Err(failure) => {
                    let attempt = self.core.as_ref().map_or(1, |c| c.failures() + 1);
                    let wait = self.retry_wait(attempt, &failure);
                    self.advance();
                    let Some(core) = self.core.as_mut() else {
                        return Ok(());
                    };
                    match core.failed(ms(wait))? {
                        Retry::GiveUp => {
                            return Err(PlayError::Request {
                                kind: "segment",
                                url: seg_url,
                                failure,
                            });
                        }
                        Retry::At(r) => q = r,
                    }
                    if let Failure::Status(StatusCode::NOT_FOUND, _) = failure {
                        // Maybe the window moved past us: the next loop re-checks.
                        self.reload(q).await.ok();
                    }
                    self.pause_until(Instant::now() + wait).await;
                }
            }
        }
    }

    /// The core switched to rung `r` at the live edge (the next segment, `msn`, not listed
    /// yet): rung `r`'s playlist is loaded, and unless it lists `msn` the newest segment is
    /// fetched again at `r`, as hls.js does.
    async fn switch_at_edge(&mut self, msn: u64, r: usize) -> Result<(), PlayError> {
        self.reload(r).await?;
        let listed = self.playlists[r]
            .as_ref()
            .is_some_and(|l| msn < l.pl.end_msn());
        if listed {
            return Ok(());
        }
        self.refetch(msn, r, true).await
    }

    /// Fetches the segment before `msn` again at rung `r`: the start segment (the core's
    /// [`Next::Refetch`]), or, `replace`, the newest one after a switch at the live edge.
    async fn refetch(&mut self, msn: u64, r: usize, replace: bool) -> Result<(), PlayError> {
        self.ensure_playlist(r).await?;
        let found = self.playlists[r].as_ref().and_then(|l| {
            let i = usize::try_from(msn.checked_sub(1)?.checked_sub(l.pl.media_sequence)?).ok()?;
            let s = l.pl.segments.get(i)?;
            Some((
                resolve(&l.url, &s.uri),
                s.duration * 1000.0,
                pdt_of(&l.pl, i),
            ))
        });
        let Some((url, seg_ms, pdt)) = found else {
            if let Some(core) = self.core.as_mut() {
                if replace {
                    core.skip();
                } else {
                    core.skip_refetch();
                }
            }
            return Ok(());
        };
        self.advance();
        if let Some(core) = self.core.as_mut() {
            if replace {
                core.start_refetch_last(seg_ms, pdt)?;
            } else {
                core.start()?;
            }
        }
        let wanted = Wanted {
            rung: r,
            duration_ms: seg_ms,
            msn: msn.saturating_sub(1),
        };
        let got = self.get(Kind::Segment, &url, Some(wanted)).await;
        self.advance();
        let Some(core) = self.core.as_mut() else {
            return Ok(());
        };
        match got {
            Ok(Got::Body {
                body,
                latency_ms,
                transfer_ms,
            }) => {
                core.done(body.len() as f64 * 8.0, latency_ms, transfer_ms, None)?;
                tracing::debug!(
                    player = %self.sid,
                    at_ms = core.clock_ms() as u64,
                    msn = msn - 1,
                    rung = r,
                    estimate_kbps = core.estimate_kbps().map(|e| e as u64),
                    "{} segment fetched again",
                    if replace { "newest" } else { "start" }
                );
            }
            // Its abandon timer is off; a failure just moves on to the segment offered.
            Ok(Got::Abandoned { .. } | Got::Resync) | Err(_) => {
                core.failed(0.0)?;
            }
        }
        Ok(())
    }

    /// Loads rendition `q`'s playlist if it has none yet.
    async fn ensure_playlist(&mut self, q: usize) -> Result<(), PlayError> {
        if self.playlists[q].is_none() {
            self.reload(q).await?;
        }
        Ok(())
    }

    /// Reloads rendition `q`'s playlist, no sooner than RFC 8216 §6.3.4 allows: the last
    /// segment's duration after a load that changed it, half the target duration after one
    /// that did not; the next reload is due on the timer [`next_reload`] keeps.
    async fn reload(&mut self, q: usize) -> Result<(), PlayError> {
        let due = self.playlists[q].as_ref().map(|l| l.next_reload_at);
        let timer = due.filter(|_| self.timed == Some(q));
        let late = timer.is_some_and(|at| Instant::now() > at);
        if let Some(at) = due {
            self.pause_until(at).await;
        }
        let url = self.ladder[q].url.clone();
        let began = Instant::now();
        let text = self.get_retrying(Kind::Playlist, &url).await?;
        self.store_playlist(q, url, &text, timer, late, began)
    }

    /// Parses rendition `q`'s playlist as loaded (began at `began`, in now) and keeps it,
    /// with its next reload due on the timer (`timer`, `late`: see [`next_reload`]).
    fn store_playlist(
        &mut self,
        q: usize,
        url: String,
        text: &[u8],
        timer: Option<Instant>,
        late: bool,
        began: Instant,
    ) -> Result<(), PlayError> {
        let pl = match std::str::from_utf8(text)
            .map_err(|e| e.to_string())
            .and_then(|t| MediaPlaylist::parse(t).map_err(|e| e.to_string()))
        {
            Ok(pl) => pl,
            Err(reason) => {
                self.count_request(Kind::Playlist, "unparsable");
                return Err(PlayError::BadPlaylist { url, reason });
            }
        };
        let changed = self.playlists[q].as_ref().is_none_or(|old| {
            old.pl.media_sequence != pl.media_sequence
                || old.pl.segments.len() != pl.segments.len()
                || old.pl.endlist != pl.endlist
        });
        let wait_s = if changed {
            pl.segments
                .last()
                .map(|s| s.duration)
                .unwrap_or(pl.target_duration as f64)
        } else {
            pl.target_duration as f64 / 2.0
        };
        let wait = Duration::from_secs_f64(wait_s.clamp(0.1, 60.0));
        tracing::debug!(
            player = %self.sid,
            at_ms = self.link.elapsed_ms() as u64,
            rung = q,
            last = pl.end_msn().saturating_sub(1),
            changed,
            "playlist"
        );
        self.playlists[q] = Some(Loaded {
            pl,
            url,
            next_reload_at: next_reload(timer, late, began, Instant::now(), wait),
        });
        self.timed = Some(q);
        Ok(())
    }
}

/// When the playlist just loaded (began at `began`, in at `done`) is due again, keeping
/// hls.js's reload timer: the first load of a rendition (`timer` = None: a new one, or one
/// switched to) sets it to `began` + `wait`; each load on time moves it on by `wait` from where
/// it stood, not from when the load began, so reloads keep the phase of the first one (and a
/// load slower than `wait` makes the next one due at once). Both reload on that timer while a
/// segment downloads; a load that comes after the timer (`late`: the player was busy with
/// something it does not reload beside, such as another playlist) stands in for the one
/// missed, and the next is the timer's first tick at least `wait`/2 after `began` (the RFC's
/// least wait).
fn next_reload(
    timer: Option<Instant>,
    late: bool,
    began: Instant,
    done: Instant,
    wait: Duration,
) -> Instant {
    let Some(at) = timer else {
        return (began + wait).max(done);
    };
    if !late {
        return if at + wait < done { done } else { at + wait };
    }
    let w = wait.as_secs_f64().max(1e-3);
    let behind = (began + wait / 2)
        .saturating_duration_since(at)
        .as_secs_f64();
    let ticks = (behind / w).ceil().clamp(1.0, 1e6);
    (at + Duration::from_secs_f64(ticks * w)).max(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reloads_keep_the_phase_of_the_first() {
        let t0 = Instant::now();
        let s = |x: f64| t0 + Duration::from_secs_f64(x);
        let w = Duration::from_secs(2);
        // First load of a rendition, 0.05 → 0.09: due at 2.05.
        assert_eq!(next_reload(None, false, s(0.05), s(0.09), w), s(2.05));
        // On time (the player waited for 2.05; its load began 3 ms late): 4.05, not 4.053.
        assert_eq!(
            next_reload(Some(s(2.05)), false, s(2.053), s(2.1), w),
            s(4.05)
        );
        // A load slower than the interval: due at once.
        assert_eq!(
            next_reload(Some(s(2.05)), false, s(2.05), s(4.5), w),
            s(4.5)
        );
        // Late (needed at 4.3, the timer stood at 2.05): hls.js loaded at 2.05 and 4.05, the
        // next tick is 6.05 (≥ 4.3 + 1).
        assert_eq!(
            next_reload(Some(s(2.05)), true, s(4.3), s(4.35), w),
            s(6.05)
        );
        // Late by most of an interval (5.9): the tick at 6.05 is under half an interval away,
        // so 8.05.
        assert_eq!(
            next_reload(Some(s(2.05)), true, s(5.9), s(5.95), w),
            s(8.05)
        );
        // Half-target waits after an unchanged playlist tick in halves.
        let h = Duration::from_secs(1);
        assert_eq!(
            next_reload(Some(s(2.05)), false, s(2.05), s(2.1), h),
            s(3.05)
        );
    }

    #[test]
    fn resolves_references() {
        let b = "http://h:1/live/demo/master.m3u8";
        assert_eq!(resolve(b, "360p.m3u8"), "http://h:1/live/demo/360p.m3u8");
        assert_eq!(
            resolve(b, "a/b.m3u8?x=1"),
            "http://h:1/live/demo/a/b.m3u8?x=1"
        );
        assert_eq!(resolve(b, "../x/y.ts"), "http://h:1/live/x/y.ts");
        assert_eq!(resolve(b, "/abs/z.ts"), "http://h:1/abs/z.ts");
        assert_eq!(resolve(b, "http://o/p.ts"), "http://o/p.ts");
    }

    fn pl(n: usize, dur: f64, endlist: bool) -> MediaPlaylist {
        MediaPlaylist {
            version: 3,
            target_duration: dur.ceil() as u64,
            media_sequence: 100,
            segments: (0..n)
                .map(|i| hls::playlist::MediaSegment {
                    uri: format!("{i}.ts"),
                    duration: dur,
                    program_date_time_ms: (i == 0).then_some(1_000_000),
                    discontinuity: false,
                })
                .collect(),
            endlist,
            ..Default::default()
        }
    }

    #[test]
    fn starts_three_target_durations_from_the_end() {
        // 6 segments of 2 s: the last three (msn 103..105) hold 6 s = 3 target durations.
        assert_eq!(live_start(&pl(6, 2.0, false), 3, 0.0), 103);
        assert_eq!(live_start(&pl(2, 2.0, false), 3, 0.0), 100);
        assert_eq!(
            live_start(&pl(6, 2.0, true), 3, 0.0),
            100,
            "VOD starts at the top"
        );
    }

    #[test]
    fn each_stall_moves_the_sync_point_back_up_to_a_target_duration() {
        // hls.js: 6 s + 1 s per stall, at most 6 + 2 s. The segment holding end − 7 s is 102
        // (it spans 4..6 s from the end); end − 8 s begins 102 too; more stalls change nothing.
        let p = pl(6, 2.0, false);
        assert_eq!(live_start(&p, 3, 1.0), 102);
        assert_eq!(live_start(&p, 3, 2.0), 102);
        assert_eq!(live_start(&p, 3, 5.0), 102);
        assert_eq!(live_start(&p, 3, 2.5), 102);
        assert_eq!(live_start(&p, 2, 1.0), 103, "end − 5 s lies in 103");
    }

    #[test]
    fn a_playhead_is_behind_the_window_past_the_lookup_tolerance() {
        // Window 100..105 of 2 s segments.
        let p = pl(6, 2.0, false);
        // Next to load 100 with nothing buffered: the playhead is at the window's start.
        assert!(!before_window(&p, 100, 0.0));
        // 99 has gone: its start is 2 s before the window.
        assert!(before_window(&p, 99, 0.0));
        // Next 101 with 1.8 s buffered: 0.2 s into 100 (inside); with 2.3 s: 0.3 s before.
        assert!(!before_window(&p, 101, 1_800.0));
        assert!(
            !before_window(&p, 101, 2_200.0),
            "within the 250 ms tolerance"
        );
        assert!(before_window(&p, 101, 2_300.0));
        assert!(
            !before_window(&pl(6, 2.0, true), 90, 0.0),
            "VOD has no window"
        );
        // Hostile numbers neither panic nor overflow.
        assert!(!before_window(&p, u64::MAX, 0.0));
        assert!(before_window(&p, 0, 0.0));
    }

    /// Regression: `Retry-After: 18446744073709551615` made the player's retry deadline
    /// overflow `Instant` (a panic); any header value now gives a wait the clock can hold.
    #[test]
    fn retry_after_from_the_wire_never_overflows_the_clock() {
        let now = Instant::now();
        let base = Duration::from_millis(500);
        let cap = Duration::from_secs(8);
        let huge = service::delta::parse("18446744073709551615");
        let w = retry_wait(0.5, 3, base, cap, huge);
        assert_eq!(w, MAX_RETRY_AFTER);
        let _ = now + w;
        assert_eq!(
            retry_wait(0.0, 1, base, cap, service::delta::parse("2")),
            Duration::from_secs(2)
        );
        assert!(retry_wait(0.99, 40, base, cap, None) <= cap);
    }

    proptest::proptest! {
        #[test]
        fn any_retry_after_gives_a_bounded_wait(v in "\\PC{0,30}", unit in 0.0f64..1.0, attempt in 0u32..1000) {
            let w = retry_wait(unit, attempt, Duration::from_millis(500), Duration::from_secs(8), service::delta::parse(&v));
            proptest::prop_assert!(w <= MAX_RETRY_AFTER);
            let _ = Instant::now() + w;
        }
    }

    #[test]
    fn program_date_time_carries_forward() {
        let p = pl(4, 2.0, false);
        assert_eq!(pdt_of(&p, 0), Some(1_000_000.0));
        assert_eq!(pdt_of(&p, 3), Some(1_006_000.0));
    }
}
