//! One live player on a tokio task: master playlist → rendition choice → media playlist
//! reloads as RFC 8216 §6.3.4 prescribes → segments in order at the live edge, through its
//! emulated link, with a playback clock, stalls, retries, down-switches and abandonment.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hls::playlist::MediaPlaylist;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tokio::time::{Instant, sleep_until, timeout_at};

use super::Shared;
use super::link::{Link, from_ms, ms};
use crate::abr::{ABANDON_CHECK_MS, Abandon, Abr, Context, LOOKAHEAD, Progress, Report};
use crate::cmcd;
use crate::offline::Step;
use crate::playback::{Media, Playback, State};
use crate::qoe::{REBUF_PENALTY, Session};
use crate::schedule::SplitMix;
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

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(s, _) => write!(f, "HTTP {s}"),
            Failure::Timeout => write!(f, "timed out"),
            Failure::Transport(e) => write!(f, "{e}"),
        }
    }
}

/// Where a download's abandon timer stands.
#[derive(Clone, Copy)]
enum Check {
    /// Ask the controller at this moment.
    Next(Instant),
    /// Abort at this moment (the controller said so).
    AbortAt(Instant),
    /// Not asking again for this download.
    Stopped,
}

enum Got {
    Body {
        body: Bytes,
        latency_ms: f64,
        transfer_ms: f64,
    },
    /// Aborted for the controller's choice of rung.
    Abandoned { to: usize },
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
        abr: spec.abr,
        playback: Playback::new(
            shared.settings.start_threshold_ms,
            shared.settings.resume_threshold_ms,
        ),
        ladder: Vec::new(),
        playlists: Vec::new(),
        rng: SplitMix(shared.settings.seed ^ (spec.id as u64).wrapping_mul(0x9e37_79b9)),
        steps: Vec::new(),
        record: spec.record,
        segments: 0,
        last_quality: None,
        switches: 0,
        change_kbps: 0.0,
        qoe_bitrate: 0.0,
        requests: 0,
        abandoned: 0,
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
        first_listed: 0,
    };
    let error = match timeout_at(spec.leave_at, p.play(&url)).await {
        Ok(Err(e)) => {
            m.failed.inc();
            Some(e)
        }
        Ok(Ok(())) | Err(_) => None,
    };
    let now_ms = p.link.elapsed_ms();
    p.playback.advance(now_ms);
    p.sync_metrics();
    if p.stalled_now {
        m.stalled.dec();
    }
    m.active.dec();
    let pb = &p.playback;
    let stalled_s = pb.stalled_ms / 1000.0;
    let session = Session {
        id: spec.id,
        trace: Some(trace.name.clone()),
        startup_s: pb.started_at_ms.unwrap_or(now_ms) / 1000.0,
        never_started: pb.started_at_ms.is_none(),
        rebuffer_count: pb.stalls,
        rebuffer_s: stalled_s,
        rebuffer_ratio: pb.rebuffer_ratio(),
        avg_bitrate_kbps: pb.avg_bitrate_kbps(),
        switches: p.switches,
        bitrate_change_kbps: if p.segments > 1 {
            p.change_kbps / (p.segments - 1) as f64
        } else {
            0.0
        },
        latency_s: pb.mean_latency_ms().map(|l| l / 1000.0),
        qoe_lin: p.qoe_bitrate / 1000.0 - REBUF_PENALTY * stalled_s - p.change_kbps / 1000.0,
        sabre: None,
        error,
    };
    Outcome {
        session,
        steps: p.steps,
        requests: p.requests,
        abandoned: p.abandoned,
        ladder_kbps: p.ladder.iter().map(|v| v.kbps).collect(),
        stall_spans: p.playback.stall_spans(),
    }
}

struct Player<'t> {
    shared: Arc<Shared>,
    link: Link<'t>,
    abr: Box<dyn Abr>,
    playback: Playback,
    ladder: Vec<Variant>,
    playlists: Vec<Option<Loaded>>,
    rng: SplitMix,
    steps: Vec<Step>,
    record: bool,
    segments: usize,
    last_quality: Option<usize>,
    switches: u32,
    change_kbps: f64,
    qoe_bitrate: f64,
    requests: u64,
    abandoned: u32,
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
    /// Ladder index of the variant the master playlist lists first.
    first_listed: usize,
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
/// target durations before the end of the playlist (RFC 8216 §6.3.3).
pub fn live_start(pl: &MediaPlaylist, hold_back: u32) -> u64 {
    if pl.endlist {
        return pl.media_sequence;
    }
    let want = f64::from(hold_back) * pl.target_duration as f64;
    let mut from_end = 0.0;
    for (i, s) in pl.segments.iter().enumerate().rev() {
        from_end += s.duration;
        if from_end >= want {
            return pl.media_sequence + i as u64;
        }
    }
    pl.media_sequence
}

impl Player<'_> {
    fn settings(&self) -> &super::Settings {
        &self.shared.settings
    }

    /// Mirrors the playback machine's stalls into the metrics.
    fn sync_metrics(&mut self) {
        let m = &self.shared.metrics;
        let pb = &self.playback;
        if pb.stalls > self.seen_stalls {
            m.rebuffers.inc_by(u64::from(pb.stalls - self.seen_stalls));
            self.seen_stalls = pb.stalls;
        }
        if pb.stalled_ms > self.seen_stalled_ms {
            m.rebuffer_seconds
                .inc_by((pb.stalled_ms - self.seen_stalled_ms) / 1000.0);
            self.seen_stalled_ms = pb.stalled_ms;
        }
        let stalled = matches!(pb.state(), State::Stalled(_));
        if stalled != self.stalled_now {
            if stalled {
                m.stalled.inc();
            } else {
                m.stalled.dec();
            }
            self.stalled_now = stalled;
        }
    }

    fn advance(&mut self) -> f64 {
        let now = self.link.elapsed_ms();
        self.playback.advance(now);
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
            let wake = match self.playback.state() {
                State::Playing => t.min(now + from_ms(self.playback.level_ms() + 1.0)),
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

    /// GETs `url` through the link. For segments with `abandon_from = Some(q)`, gives up for a
    /// lower rendition when the rest will not arrive before the buffer runs dry.
    async fn get(
        &mut self,
        kind: Kind,
        url: &str,
        abandon_from: Option<(usize, f64)>,
    ) -> Result<Got, Failure> {
        let asked = Instant::now();
        let send_at = self.link.request_at();
        self.pause_until(send_at).await;
        self.requests += 1;
        let deadline = send_at + self.settings().request_timeout;
        let cmcd = self.cmcd(kind, abandon_from);
        let result = self
            .exchange(url, cmcd, asked, deadline, abandon_from)
            .await;
        let label = match &result {
            Ok(Got::Body { .. }) => "2xx",
            Ok(Got::Abandoned { .. }) => "abandoned",
            Err(Failure::Status(s, _)) if s.is_client_error() => "4xx",
            Err(Failure::Status(s, _)) if s.is_server_error() => "5xx",
            Err(Failure::Status(..)) => "other",
            Err(Failure::Timeout) => "timeout",
            Err(Failure::Transport(_)) => "error",
        };
        self.shared
            .metrics
            .requests
            .with_label_values(&[kind.label(), label])
            .inc();
        result
    }

    /// This request's CMCD, as the settings ask: (query value, headers).
    fn cmcd(
        &mut self,
        kind: Kind,
        segment: Option<(usize, f64)>,
    ) -> Option<(String, Vec<(&'static str, String)>)> {
        let mode = self.settings().cmcd;
        if mode == cmcd::Mode::Off {
            return None;
        }
        let object = match (kind, segment) {
            (Kind::Segment, Some((q, seg_ms))) => cmcd::Object::Segment {
                bitrate_kbps: self.ladder.get(q).map_or(0.0, |v| v.kbps),
                duration_ms: seg_ms,
            },
            _ => cmcd::Object::Manifest,
        };
        let starved = self.playback.stalls > self.cmcd_stalls;
        self.cmcd_stalls = self.playback.stalls;
        let d = cmcd::Data {
            object,
            buffer_ms: self.playback.level_ms(),
            throughput_kbps: self.last_kbps,
            session: &self.sid,
            content: &self.cid,
            live: !self.playlists.iter().flatten().any(|l| l.pl.endlist),
            startup: self.playback.started_at_ms.is_none(),
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
        abandon_from: Option<(usize, f64)>,
    ) -> Result<Got, Failure> {
        let (query, headers) = cmcd.unwrap_or_default();
        let target = if query.is_empty() {
            url.to_string()
        } else {
            cmcd::append_query(url, &query)
        };
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(target)
            .header("user-agent", "player-sim");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req
            .body(service::body::empty())
            .map_err(|e| Failure::Transport(e.to_string()))?;
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
        let mut check = Check::Next(first_byte);
        let mut body = resp.into_body();
        let mut buf = Vec::with_capacity(expected.unwrap_or(16 * 1024).min(8 << 20));
        loop {
            let frame = match timeout_at(deadline, body.frame()).await {
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
                if let Some((q, seg_ms)) = abandon_from
                    && let Some(to) = self.judge(
                        &mut check,
                        q,
                        seg_ms,
                        buf.len(),
                        expected,
                        asked,
                        first_byte,
                    )
                {
                    return Ok(Got::Abandoned { to });
                }
            }
        }
        Ok(Got::Body {
            body: Bytes::from(buf),
            latency_ms,
            transfer_ms: ms(Instant::now() - first_byte),
        })
    }

    /// Runs the controller's abandon rule when its timer is due: the rung to switch to when
    /// the download is to be aborted now.
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &mut self,
        check: &mut Check,
        q: usize,
        seg_ms: f64,
        got: usize,
        expected: Option<usize>,
        asked: Instant,
        first_byte: Instant,
    ) -> Option<usize> {
        if !self.settings().abandon {
            return None;
        }
        let now = Instant::now();
        match *check {
            Check::Next(t) | Check::AbortAt(t) if now < t => return None,
            Check::Stopped => return None,
            _ => {}
        }
        self.advance();
        let bitrates: Vec<f64> = self.ladder.iter().map(|v| v.kbps).collect();
        let peaks: Vec<f64> = self.ladder.iter().map(|v| v.peak_kbps).collect();
        let p = Progress {
            quality: q,
            segment_ms: seg_ms,
            elapsed_ms: ms(now - asked),
            first_byte_ms: Some(ms(first_byte - asked)),
            loaded_bits: got as f64 * 8.0,
            total_bits: expected.map(|e| e as f64 * 8.0),
            buffer_ms: self.playback.level_ms(),
            playing: self.playback.started_at_ms.is_some(),
            live: !self.playlists.iter().flatten().any(|l| l.pl.endlist),
            bitrates_kbps: &bitrates,
            peak_kbps: &peaks,
        };
        if let Check::AbortAt(_) = check {
            return Some(self.abr.abort(&p).min(bitrates.len() - 1));
        }
        match self.abr.abandon(&p) {
            Abandon::Keep => {
                *check = Check::Next(now + from_ms(ABANDON_CHECK_MS));
                None
            }
            Abandon::Stop => {
                *check = Check::Stopped;
                None
            }
            Abandon::AbortAt(t) if t <= p.elapsed_ms => {
                Some(self.abr.abort(&p).min(bitrates.len() - 1))
            }
            Abandon::AbortAt(t) => {
                *check = Check::AbortAt(asked + from_ms(t));
                None
            }
        }
    }

    /// Fetches with retries: full-jitter backoff (at least any Retry-After), up to the limit.
    async fn get_retrying(&mut self, kind: Kind, url: &str) -> Result<Bytes, String> {
        let mut attempt = 0;
        loop {
            match self.get(kind, url, None).await {
                Ok(Got::Body { body, .. }) => return Ok(body),
                // Only segment downloads are abandonable; this one was not.
                Ok(Got::Abandoned { .. }) => {
                    return Err(format!("{} {url}: abandoned", kind.label()));
                }
                Err(f) => {
                    attempt += 1;
                    if attempt > self.settings().max_retries {
                        return Err(format!("{} {url}: {f}", kind.label()));
                    }
                    let wait = self.retry_wait(attempt, &f);
                    self.pause_until(Instant::now() + wait).await;
                }
            }
        }
    }

    async fn play(&mut self, url: &str) -> Result<(), String> {
        let text = self.get_retrying(Kind::Master, url).await?;
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
                self.first_listed = v
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
                return Err(format!("{url}: not an HLS playlist: {e:?}"));
            }
        };
        if self.ladder.is_empty() {
            return Err(format!("{url}: no variant streams"));
        }
        self.playlists = (0..self.ladder.len()).map(|_| None).collect();
        let bitrates: Vec<f64> = self.ladder.iter().map(|v| v.kbps).collect();
        let peaks: Vec<f64> = self.ladder.iter().map(|v| v.peak_kbps).collect();
        let mut upcoming = Vec::new();
        let mut q = self
            .abr
            .choose(&self.context(
                (&bitrates, &peaks),
                estimate(&mut upcoming, &bitrates, 2000.0),
                0.0,
                2000.0,
            ))
            .min(bitrates.len() - 1);
        let mut next: Option<u64> = None;
        // The segment the controller has already decided on (asked once per segment).
        let mut decided: Option<u64> = None;
        let mut failures = 0u32;
        loop {
            let now = self.advance();
            self.playback
                .sample_latency(hls::date::now_unix_ms() as f64);
            self.ensure_playlist(q).await?;
            let Some(loaded) = self.playlists[q].as_ref() else {
                continue;
            };
            let pl = &loaded.pl;
            let target_ms = pl.target_duration as f64 * 1000.0;
            // Leave room: wait while the next segment would overfill the buffer.
            let over = self.playback.level_ms() + target_ms - self.settings().buffer_max_ms;
            if over > 0.0 {
                self.pause_until(Instant::now() + from_ms(over)).await;
                continue;
            }
            let hold_back = self.settings().live_sync_segments;
            let msn = *next.get_or_insert_with(|| live_start(pl, hold_back));
            let last = pl.media_sequence + pl.segments.len() as u64;
            if msn < pl.media_sequence {
                // Fell out of the window: jump to the live edge.
                next = Some(live_start(pl, hold_back));
                continue;
            }
            if msn >= last {
                if pl.endlist {
                    return Ok(());
                }
                self.reload(q).await?;
                continue;
            }
            let i = (msn - pl.media_sequence) as usize;
            let seg_ms = pl.segments[i].duration * 1000.0;
            let seg_url = resolve(&loaded.url, &pl.segments[i].uri);
            let pdt = pdt_of(pl, i);
            if decided != Some(msn) {
                decided = Some(msn);
                let chosen = self
                    .abr
                    .choose(&self.context(
                        (&bitrates, &peaks),
                        estimate(&mut upcoming, &bitrates, seg_ms),
                        self.playback.level_ms(),
                        seg_ms,
                    ))
                    .min(bitrates.len() - 1);
                if chosen != q {
                    q = chosen;
                    continue;
                }
            }
            let asked_ms = now;
            let stall_before = self.playback.stalled_ms_at(now);
            match self.get(Kind::Segment, &seg_url, Some((q, seg_ms))).await {
                Ok(Got::Body {
                    body,
                    latency_ms,
                    transfer_ms,
                }) => {
                    failures = 0;
                    let kbps = if bitrates[q] > 0.0 {
                        bitrates[q]
                    } else {
                        body.len() as f64 * 8.0 / seg_ms.max(1.0)
                    };
                    let now = self.link.elapsed_ms();
                    if self.playback.append(
                        now,
                        Media {
                            quality: q,
                            kbps,
                            duration_ms: seg_ms,
                            pdt_ms: pdt,
                        },
                    ) && self.playback.started_at_ms == Some(now)
                    {
                        self.shared.metrics.startup_seconds.observe(now / 1000.0);
                    }
                    self.sync_metrics();
                    self.abr.report(&Report {
                        quality: q,
                        bits: body.len() as f64 * 8.0,
                        latency_ms,
                        transfer_ms,
                    });
                    // Bits per ms is kbit/s.
                    self.last_kbps =
                        Some(body.len() as f64 * 8.0 / (latency_ms + transfer_ms).max(1.0));
                    self.count_segment(q, kbps, &bitrates);
                    if self.record {
                        self.steps.push(Step {
                            segment: self.segments - 1,
                            quality: q,
                            at_ms: asked_ms,
                            download_ms: now - asked_ms,
                            buffer_ms: self.playback.level_ms(),
                            stall_ms: self.playback.stalled_ms_at(now) - stall_before,
                        });
                    }
                    next = Some(msn + 1);
                }
                Ok(Got::Abandoned { to }) => {
                    // The controller learnt from the partial download in `abort`.
                    self.abandoned += 1;
                    q = to;
                }
                Err(f) => {
                    failures += 1;
                    if failures > self.settings().max_retries {
                        return Err(format!("segment {seg_url}: {f}"));
                    }
                    let wait = self.retry_wait(failures, &f);
                    // Same rendition only while the buffer covers the wait; else (or after
                    // two failures in a row) one rendition down.
                    self.advance();
                    let level = self.playback.level_ms();
                    if q > 0 && (failures >= 2 || ms(wait) >= level) {
                        q -= 1;
                    }
                    if let Failure::Status(StatusCode::NOT_FOUND, _) = f {
                        // Maybe the window moved past us: the next loop re-checks.
                        self.reload(q).await.ok();
                    }
                    self.pause_until(Instant::now() + wait).await;
                }
            }
        }
    }

    fn count_segment(&mut self, q: usize, kbps: f64, bitrates: &[f64]) {
        self.segments += 1;
        self.qoe_bitrate += kbps;
        if let Some(p) = self.last_quality {
            if p != q {
                self.switches += 1;
                let dir = if q > p { "up" } else { "down" };
                self.shared.metrics.switches.with_label_values(&[dir]).inc();
            }
            self.change_kbps += (bitrates[q] - bitrates[p]).abs();
        }
        self.last_quality = Some(q);
    }

    fn context<'a>(
        &self,
        (bitrates, peaks): (&'a [f64], &'a [f64]),
        upcoming_bits: &'a [Vec<f64>],
        buffer_ms: f64,
        seg_ms: f64,
    ) -> Context<'a> {
        Context {
            segment: self.segments,
            buffer_ms,
            buffer_max_ms: self.settings().buffer_max_ms,
            last_quality: self.last_quality,
            bitrates_kbps: bitrates,
            segment_ms: seg_ms,
            upcoming_bits,
            peak_kbps: peaks,
            first_listed: self.first_listed,
            live: !self.playlists.iter().flatten().any(|l| l.pl.endlist),
        }
    }

    /// Loads rendition `q`'s playlist if it has none yet.
    async fn ensure_playlist(&mut self, q: usize) -> Result<(), String> {
        if self.playlists[q].is_none() {
            self.reload(q).await?;
        }
        Ok(())
    }

    /// Reloads rendition `q`'s playlist, no sooner than RFC 8216 §6.3.4 allows: the last
    /// segment's duration after a load that changed it, half the target duration after one
    /// that did not.
    async fn reload(&mut self, q: usize) -> Result<(), String> {
        if let Some(at) = self.playlists[q].as_ref().map(|l| l.next_reload_at) {
            self.pause_until(at).await;
        }
        let url = self.ladder[q].url.clone();
        let began = Instant::now();
        let text = self.get_retrying(Kind::Playlist, &url).await?;
        let pl = match std::str::from_utf8(&text)
            .map_err(|e| e.to_string())
            .and_then(|t| MediaPlaylist::parse(t).map_err(|e| e.to_string()))
        {
            Ok(pl) => pl,
            Err(e) => {
                self.shared
                    .metrics
                    .requests
                    .with_label_values(&["playlist", "unparsable"])
                    .inc();
                return Err(format!("{url}: bad playlist: {e}"));
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
        self.playlists[q] = Some(Loaded {
            pl,
            url,
            next_reload_at: began + Duration::from_secs_f64(wait_s.clamp(0.1, 60.0)),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(live_start(&pl(6, 2.0, false), 3), 103);
        assert_eq!(live_start(&pl(2, 2.0, false), 3), 100);
        assert_eq!(
            live_start(&pl(6, 2.0, true), 3),
            100,
            "VOD starts at the top"
        );
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
