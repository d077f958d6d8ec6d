//! One player's decisions, shared by the live and offline drivers: a pure, clock-free state
//! machine that owns the ABR controller, the playback/buffer model, the QoE tally, the
//! abandon timer, and the retry/down-switch rule. Drivers feed it events — time passed,
//! bytes arrived, a download done or failed — and do what it answers: wait, fetch segment
//! at rung r, abort, retry. The live driver keeps HTTP, link pacing and playlist reloads; the
//! offline driver steps a virtual clock through the network model.
//!
//! Time only moves by [`Core::elapse`], so offline arithmetic is exactly the old loop's.

use crate::abr::{ABANDON_CHECK_MS, Abandon, Abr, Context, Progress, Report};
use crate::offline::Step;
use crate::playback::{Media, Playback};
use crate::qoe::{REBUF_PENALTY, SabreMetrics, Session};

/// How a player behaves, whichever driver runs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Largest buffer, ms: the next segment waits until it fits.
    pub buffer_max_ms: f64,
    /// Buffer needed to start playback, ms.
    pub start_threshold_ms: f64,
    /// Buffer needed to resume after a stall, ms.
    pub resume_threshold_ms: f64,
    /// The resume threshold doubles after each stall up to this, ms (0: fixed).
    pub resume_growth_max_ms: f64,
    /// Run the controller's abandon rule during downloads.
    pub abandon: bool,
    /// Failed attempts at one request before the session gives up.
    pub max_retries: u32,
}

/// The ladder a session plays: average and peak bitrates, kbit/s, ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct Ladder {
    /// AVERAGE-BANDWIDTH (else BANDWIDTH) per rung.
    pub avg_kbps: Vec<f64>,
    /// BANDWIDTH per rung.
    pub peak_kbps: Vec<f64>,
    /// The rung the master playlist lists first.
    pub first_listed: usize,
}

impl Ladder {
    /// A ladder whose peaks are its averages (offline movies, bare media playlists).
    pub fn flat(kbps: Vec<f64>) -> Self {
        Self {
            peak_kbps: kbps.clone(),
            avg_kbps: kbps,
            first_listed: 0,
        }
    }
}

/// The segment a driver offers next.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    /// Its duration, ms.
    pub duration_ms: f64,
    /// EXT-X-PROGRAM-DATE-TIME, Unix ms.
    pub pdt_ms: Option<f64>,
    /// Sizes of it and the following segments, bits per rung (estimates when unknown).
    pub upcoming_bits: &'a [Vec<f64>],
    /// A live stream.
    pub live: bool,
}

/// What to do for the segment offered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// The buffer is too full: let this many ms pass, then offer it again.
    Wait(f64),
    /// Fetch it at this rung: call [`Core::start`] when the request goes out.
    Fetch(usize),
    /// First fetch the previous segment again at this rung (hls.js reloads its start
    /// fragment on its first switch): [`Core::start`], then [`Core::done`] or
    /// [`Core::failed`] as for a fetch; its media adds nothing to the buffer. Then offer this
    /// segment again. A driver that cannot fetch it calls [`Core::skip_refetch`].
    Refetch(usize),
}

/// What to do with a download in progress.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Downloading {
    /// Go on.
    Continue,
    /// Abort it and fetch the same segment at this rung.
    Abort(usize),
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Retry {
    /// Try again at this rung after the wait.
    At(usize),
    /// Too many failures in a row.
    GiveUp,
}

/// What happened when a segment arrived.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrived {
    /// Playback started (or resumed) with it.
    pub started: bool,
    /// The rung before it, when it differs.
    pub switched_from: Option<usize>,
}

/// Errors of a session's core.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// An event about a download came with none in progress.
    #[error("no download in progress")]
    NoDownload,
    /// The ladder has no rung.
    #[error("the ladder is empty")]
    EmptyLadder,
}

/// The abandon timer of the download in progress.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Check {
    /// Ask the controller once the download has run this long, ms.
    At(f64),
    /// Abort once it has run this long, ms.
    AbortAt(f64),
    /// Abort when the driver says this rung's playlist is in ([`Core::playlist_in`]).
    AbortOnPlaylist(usize),
    /// Not asking again.
    Stopped,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    quality: usize,
    asked_ms: f64,
    duration_ms: f64,
    pdt_ms: Option<f64>,
    live: bool,
    stalled_before_ms: f64,
    check: Check,
    /// A segment fetched again, and which; `None` for the segment offered.
    again: Option<Again>,
}

/// Which segment a download fetches again.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Again {
    /// The start segment ([`Next::Refetch`]): its media adds nothing.
    Start,
    /// The newest segment, at the rung switched to at the live edge
    /// ([`Core::start_refetch_last`]): its media replaces the buffered copy.
    Newest,
}

/// One player's decision state.
pub struct Core {
    abr: Box<dyn Abr>,
    rules: Rules,
    ladder: Ladder,
    playback: Playback,
    clock_ms: f64,
    download: Option<InFlight>,
    /// The controller has picked this rung for the segment being offered.
    decided: Option<usize>,
    /// The segment being offered: duration, PROGRAM-DATE-TIME, live.
    offered: Option<(f64, Option<f64>, bool)>,
    /// A [`Next::Refetch`] is due before the segment offered.
    refetch_due: bool,
    /// The start segment's refetch has been decided (it happens once at most).
    refetch_decided: bool,
    /// Σ bitrate of the segments fetched (Sabre's played-bitrate sum).
    bitrate_sum: f64,
    /// The last segment duration offered, ms.
    segment_ms: f64,
    failures: u32,
    last_quality: Option<usize>,
    segments: usize,
    switches: u32,
    change_kbps: f64,
    qoe: f64,
    stalled_in_steps_ms: f64,
    abandoned: u32,
    first_download_ms: Option<f64>,
    record: bool,
    /// The driver loads playlists (see [`Core::loading_playlists`]).
    loads_playlists: bool,
    steps: Vec<Step>,
}

impl Core {
    /// A session that has not fetched anything, at clock 0.
    pub fn new(abr: Box<dyn Abr>, rules: Rules, ladder: Ladder) -> Result<Self, Error> {
        if ladder.avg_kbps.is_empty() {
            return Err(Error::EmptyLadder);
        }
        Ok(Self {
            abr,
            playback: Playback::new(rules.start_threshold_ms, rules.resume_threshold_ms)
                .with_resume_growth(rules.resume_growth_max_ms),
            rules,
            ladder,
            clock_ms: 0.0,
            download: None,
            decided: None,
            offered: None,
            refetch_due: false,
            refetch_decided: false,
            bitrate_sum: 0.0,
            segment_ms: 0.0,
            failures: 0,
            last_quality: None,
            segments: 0,
            switches: 0,
            change_kbps: 0.0,
            qoe: 0.0,
            stalled_in_steps_ms: 0.0,
            abandoned: 0,
            first_download_ms: None,
            record: false,
            loads_playlists: false,
            steps: Vec::new(),
        })
    }

    /// Keeps a per-segment timeline.
    pub fn recording(mut self, on: bool) -> Self {
        self.record = on;
        self
    }

    /// The driver loads playlists: a controller's [`Abandon::AbortOnPlaylist`] waits for
    /// [`Core::playlist_in`] instead of its estimated arrival.
    pub fn loading_playlists(mut self) -> Self {
        self.loads_playlists = true;
        self
    }

    /// Milliseconds since the session began.
    pub fn clock_ms(&self) -> f64 {
        self.clock_ms
    }

    /// The playback machine (buffer, stalls, latency).
    pub fn playback(&self) -> &Playback {
        &self.playback
    }

    /// The controller's bandwidth estimate, kbit/s, if it keeps one.
    pub fn estimate_kbps(&self) -> Option<f64> {
        self.abr.estimate_kbps()
    }

    /// Failed attempts in a row at the current segment.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Downloads aborted for a lower rung.
    pub fn abandoned(&self) -> u32 {
        self.abandoned
    }

    /// The rung of the download in progress.
    pub fn downloading(&self) -> Option<usize> {
        self.download.map(|d| d.quality)
    }

    /// `dt_ms` passes: playback plays or stalls.
    pub fn elapse(&mut self, dt_ms: f64) {
        if dt_ms > 0.0 {
            self.playback.play_for(dt_ms);
            self.clock_ms += dt_ms;
        }
    }

    /// Records a live-latency sample against the wall clock's Unix ms.
    pub fn sample_latency(&mut self, unix_now_ms: f64) {
        self.playback.sample_latency(unix_now_ms);
    }

    /// The rung the controller would start with, before anything is offered (a live player
    /// loads that rung's playlist first).
    pub fn first_choice(&mut self, duration_ms: f64, upcoming_bits: &[Vec<f64>]) -> usize {
        self.choose(duration_ms, upcoming_bits, true)
    }

    /// Asks the controller.
    fn choose(&mut self, duration_ms: f64, upcoming: &[Vec<f64>], live: bool) -> usize {
        let ctx = Context {
            segment: self.segments,
            buffer_ms: self.playback.level_ms(),
            buffer_max_ms: self.rules.buffer_max_ms,
            last_quality: self.last_quality,
            bitrates_kbps: &self.ladder.avg_kbps,
            segment_ms: duration_ms,
            upcoming_bits: upcoming,
            peak_kbps: &self.ladder.peak_kbps,
            first_listed: self.ladder.first_listed,
            live,
        };
        self.abr.choose(&ctx).min(self.ladder.avg_kbps.len() - 1)
    }

    /// The next segment is `seg`: wait for room in the buffer, or fetch it at the rung the
    /// controller picks (asked once per segment; a retry or abort keeps its own rung).
    pub fn offer(&mut self, seg: &Segment<'_>) -> Next {
        // The first segment never waits (an empty buffer has room).
        if self.segments > 0 || self.decided.is_some() {
            let full = self.playback.level_ms() + seg.duration_ms - self.rules.buffer_max_ms;
            if full > 0.0 {
                return Next::Wait(full);
            }
        }
        let q = match self.decided {
            Some(q) => q,
            None => {
                let q = self.choose(seg.duration_ms, seg.upcoming_bits, seg.live);
                self.decided = Some(q);
                // The first switch, right after the start segment.
                if self.segments == 1
                    && !self.refetch_decided
                    && self.last_quality != Some(q)
                    && self.abr.reloads_start_segment()
                {
                    self.refetch_decided = true;
                    self.refetch_due = true;
                }
                q
            }
        };
        self.offered = Some((seg.duration_ms, seg.pdt_ms, seg.live));
        self.segment_ms = seg.duration_ms;
        if self.refetch_due {
            Next::Refetch(q)
        } else {
            Next::Fetch(q)
        }
    }

    /// The driver could not fetch the start segment again (its window moved on): go on
    /// with the segment offered.
    pub fn skip_refetch(&mut self) {
        self.refetch_due = false;
    }

    /// The request for the segment offered went out now.
    pub fn start(&mut self) -> Result<(), Error> {
        let (duration_ms, pdt_ms, live) = self.offered.ok_or(Error::NoDownload)?;
        let quality = self.decided.ok_or(Error::NoDownload)?;
        let again = std::mem::take(&mut self.refetch_due).then_some(Again::Start);
        self.begin(quality, duration_ms, pdt_ms, live, again);
        Ok(())
    }

    /// A download of `quality` goes out now. Its abandon timer runs unless it fetches a
    /// segment again (hls.js's watches that too, but it is small and at the new rung, or, at
    /// the live edge, the buffer is long enough that it could only say keep).
    fn begin(
        &mut self,
        quality: usize,
        duration_ms: f64,
        pdt_ms: Option<f64>,
        live: bool,
        again: Option<Again>,
    ) {
        self.download = Some(InFlight {
            quality,
            asked_ms: self.clock_ms,
            duration_ms,
            pdt_ms,
            live,
            stalled_before_ms: self.playback.stalled_ms_at(self.clock_ms),
            check: if again.is_some() {
                Check::Stopped
            } else {
                Check::At(0.0)
            },
            again,
        });
    }

    /// Waiting at the live edge (the next segment is not listed yet), asks the controller
    /// as hls.js's stream controller does on every tick, for a controller that
    /// [`Abr::switches_at_live_edge`]: the rung to switch to now, if another than the last
    /// one's. The driver then loads that rung's playlist and offers the next segment when it
    /// lists it (the rung is kept for it), else fetches the newest segment again at that rung
    /// ([`Core::start_refetch_last`]).
    pub fn switch_at_live_edge(
        &mut self,
        duration_ms: f64,
        upcoming_bits: &[Vec<f64>],
    ) -> Option<usize> {
        if !self.abr.switches_at_live_edge() || self.download.is_some() || self.decided.is_some() {
            return None;
        }
        let last = self.last_quality?;
        let q = self.choose(duration_ms, upcoming_bits, true);
        if q == last {
            return None;
        }
        self.decided = Some(q);
        Some(q)
    }

    /// The request for the newest segment (`duration_ms`, `pdt_ms`) at the rung
    /// [`Core::switch_at_live_edge`] chose went out now; then [`Core::done`] (its media
    /// replaces the buffered copy) or [`Core::failed`] as for a fetch. Its abandon timer is
    /// off.
    pub fn start_refetch_last(
        &mut self,
        duration_ms: f64,
        pdt_ms: Option<f64>,
    ) -> Result<(), Error> {
        let quality = self.decided.ok_or(Error::NoDownload)?;
        self.begin(quality, duration_ms, pdt_ms, true, Some(Again::Newest));
        Ok(())
    }

    /// When the abandon timer next wants a [`Core::progress`] call, in ms since the request
    /// (`None`: no more calls needed).
    pub fn next_check_ms(&self) -> Option<f64> {
        if !self.rules.abandon {
            return None;
        }
        match self.download?.check {
            Check::At(t) | Check::AbortAt(t) => Some(t),
            Check::AbortOnPlaylist(_) | Check::Stopped => None,
        }
    }

    /// The rung whose playlist the driver should load now, the download in flight to be
    /// aborted when it is in (only for a core made [`Core::loading_playlists`]).
    pub fn awaiting_playlist(&self) -> Option<usize> {
        match self.download?.check {
            Check::AbortOnPlaylist(r) => Some(r),
            _ => None,
        }
    }

    /// The playlist [`Core::awaiting_playlist`] asked for is in (or failed): the download in
    /// flight is aborted at the next [`Core::progress`].
    pub fn playlist_in(&mut self) {
        if let Some(d) = self.download.as_mut()
            && let Check::AbortOnPlaylist(_) = d.check
        {
            d.check = Check::AbortAt(0.0);
        }
    }

    /// Bytes arrived (`loaded_bits` so far; the first came `first_byte_ms` after the request;
    /// `total_bits` when the response said): runs the abandon timer when it is due.
    pub fn progress(
        &mut self,
        loaded_bits: f64,
        first_byte_ms: Option<f64>,
        total_bits: Option<f64>,
    ) -> Result<Downloading, Error> {
        let d = self.download.ok_or(Error::NoDownload)?;
        if !self.rules.abandon {
            return Ok(Downloading::Continue);
        }
        let elapsed = self.clock_ms - d.asked_ms;
        let due = match d.check {
            Check::At(t) | Check::AbortAt(t) => elapsed >= t,
            Check::AbortOnPlaylist(_) | Check::Stopped => false,
        };
        if !due {
            return Ok(Downloading::Continue);
        }
        let p = Progress {
            quality: d.quality,
            segment_ms: d.duration_ms,
            elapsed_ms: elapsed,
            first_byte_ms,
            loaded_bits,
            total_bits,
            buffer_ms: self.playback.level_ms(),
            playing: self.playback.started_at_ms.is_some(),
            live: d.live,
            bitrates_kbps: &self.ladder.avg_kbps,
            peak_kbps: &self.ladder.peak_kbps,
        };
        let next = match d.check {
            Check::AbortAt(_) => None,
            _ => match self.abr.abandon(&p) {
                Abandon::Keep => Some(Check::At(elapsed + ABANDON_CHECK_MS)),
                Abandon::Stop => Some(Check::Stopped),
                Abandon::AbortAt(t) if t <= elapsed => None,
                Abandon::AbortAt(t) => Some(Check::AbortAt(t)),
                Abandon::AbortOnPlaylist { rung, .. } if self.loads_playlists => {
                    Some(Check::AbortOnPlaylist(rung))
                }
                Abandon::AbortOnPlaylist { eta_ms, .. } if eta_ms <= elapsed => None,
                Abandon::AbortOnPlaylist { eta_ms, .. } => Some(Check::AbortAt(eta_ms)),
            },
        };
        let Some(next) = next else {
            let to = self.abr.abort(&p).min(self.ladder.avg_kbps.len() - 1);
            self.abandoned += 1;
            self.download = None;
            self.decided = Some(to);
            return Ok(Downloading::Abort(to));
        };
        if let Some(d) = self.download.as_mut() {
            d.check = next;
        }
        Ok(Downloading::Continue)
    }

    /// The download finished: `bits` in all, `latency_ms` to the first byte and
    /// `transfer_ms` after it. `kbps` overrides the rung's bitrate for the played-bitrate
    /// tally (a ladder of unknown bitrates). Playback gets the segment; the controller learns.
    pub fn done(
        &mut self,
        bits: f64,
        latency_ms: f64,
        transfer_ms: f64,
        kbps: Option<f64>,
    ) -> Result<Arrived, Error> {
        let d = self.download.take().ok_or(Error::NoDownload)?;
        let q = d.quality;
        match d.again {
            Some(Again::Start) => return Ok(self.refetched(d, bits, latency_ms, transfer_ms)),
            Some(Again::Newest) => {
                return Ok(self.replaced(d, bits, latency_ms, transfer_ms, kbps));
            }
            None => {}
        }
        self.decided = None;
        self.offered = None;
        self.failures = 0;
        let b = &self.ladder.avg_kbps;
        let kbps = kbps.unwrap_or(b[q]);
        // The driver's measure of the download (offline: exactly the network model's).
        let took_ms = latency_ms + transfer_ms;
        if self.first_download_ms.is_none() {
            self.first_download_ms = Some(took_ms);
        }
        let started = self.playback.append(
            self.clock_ms,
            Media {
                quality: q,
                kbps,
                duration_ms: d.duration_ms,
                pdt_ms: d.pdt_ms,
            },
        );
        let stall = self.account(&d, bits, latency_ms, transfer_ms, self.segments);
        let mut switched_from = None;
        if let Some(p) = self.last_quality {
            if p != q {
                self.switches += 1;
                switched_from = Some(p);
            }
            let b = &self.ladder.avg_kbps;
            self.change_kbps += (b[q] - b[p]).abs();
            self.qoe -= (b[q] - b[p]).abs() / 1000.0;
        }
        self.qoe += kbps / 1000.0 - REBUF_PENALTY * stall / 1000.0;
        self.bitrate_sum += self.ladder.avg_kbps[q];
        self.last_quality = Some(q);
        self.segments += 1;
        Ok(Arrived {
            started,
            switched_from,
        })
    }

    /// A segment fetched again arrived (the start segment: the one offered comes next at the
    /// same rung): the controller learns from it, the timeline shows it, the buffer does not
    /// grow.
    fn refetched(&mut self, d: InFlight, bits: f64, latency_ms: f64, transfer_ms: f64) -> Arrived {
        self.failures = 0;
        let stall = self.account(
            &d,
            bits,
            latency_ms,
            transfer_ms,
            self.segments.saturating_sub(1),
        );
        self.qoe -= REBUF_PENALTY * stall / 1000.0;
        Arrived {
            started: false,
            switched_from: None,
        }
    }

    /// The newest segment arrived again at the rung switched to at the live edge: the
    /// controller learns from it, the buffered copy is now at that rung (the switch is
    /// counted here), the buffer does not grow; the next segment is decided afresh.
    fn replaced(
        &mut self,
        d: InFlight,
        bits: f64,
        latency_ms: f64,
        transfer_ms: f64,
        kbps: Option<f64>,
    ) -> Arrived {
        self.decided = None;
        self.refetched(d, bits, latency_ms, transfer_ms);
        let q = d.quality;
        let b = &self.ladder.avg_kbps;
        self.playback.replace_last(q, kbps.unwrap_or(b[q]));
        let mut switched_from = None;
        if let Some(p) = self.last_quality.filter(|&p| p != q) {
            let delta = b[q] - b[p];
            self.switches += 1;
            self.change_kbps += delta.abs();
            self.qoe += (delta - delta.abs()) / 1000.0;
            self.bitrate_sum += delta;
            switched_from = Some(p);
        }
        self.last_quality = Some(q);
        Arrived {
            started: false,
            switched_from,
        }
    }

    /// What every arrival does: the controller learns from the download, the stall during
    /// it is counted, and the timeline shows it as segment `segment`. Returns that stall, ms.
    fn account(
        &mut self,
        d: &InFlight,
        bits: f64,
        latency_ms: f64,
        transfer_ms: f64,
        segment: usize,
    ) -> f64 {
        self.abr.report(&Report {
            quality: d.quality,
            bits,
            latency_ms,
            transfer_ms,
        });
        let stall = self.playback.stalled_ms_at(self.clock_ms) - d.stalled_before_ms;
        self.stalled_in_steps_ms += stall;
        if self.record {
            self.steps.push(Step {
                segment,
                quality: d.quality,
                at_ms: d.asked_ms,
                // The driver's measure (offline: exactly the network model's).
                download_ms: latency_ms + transfer_ms,
                buffer_ms: self.playback.level_ms(),
                stall_ms: stall,
            });
        }
        stall
    }

    /// The attempt failed; the driver will wait `wait_ms` before the next. Same rung only
    /// while the buffer covers the wait; else (or after two failures in a row) one down.
    pub fn failed(&mut self, wait_ms: f64) -> Result<Retry, Error> {
        let d = self.download.take().ok_or(Error::NoDownload)?;
        match d.again {
            // A start segment fetched again is not needed: on with the segment offered.
            Some(Again::Start) => return Ok(Retry::At(d.quality)),
            // Nor is a copy of the newest at another rung: the next is decided afresh.
            Some(Again::Newest) => {
                self.decided = None;
                return Ok(Retry::At(d.quality));
            }
            None => {}
        }
        self.failures += 1;
        if self.failures > self.rules.max_retries {
            return Ok(Retry::GiveUp);
        }
        let mut q = d.quality;
        if q > 0 && (self.failures >= 2 || wait_ms >= self.playback.level_ms()) {
            q -= 1;
        }
        self.decided = Some(q);
        Ok(Retry::At(q))
    }

    /// The segment offered was not fetched after all (a live window moved past it): the
    /// controller will be asked afresh for the next one.
    pub fn skip(&mut self) {
        self.download = None;
        self.decided = None;
        self.offered = None;
    }

    /// A stalled live player's playhead fell behind the live window, and it seeks to the
    /// live sync point (hls.js's `synchronizeToLiveEdge`): the segment offered (and any
    /// download of it) is dropped, and so is what is buffered behind the new position.
    pub fn resync(&mut self) {
        self.skip();
        self.playback.flush();
    }

    /// Plays out what is buffered (the offline end of a movie).
    pub fn play_out(&mut self) {
        let level = self.playback.level_ms();
        self.elapse(level);
    }

    /// The session's QoE (`sabre`: with Sabre's definitions too), its timeline and stalls.
    pub fn finish(
        mut self,
        id: usize,
        trace: Option<String>,
        sabre: bool,
        error: Option<String>,
    ) -> (Session, Vec<Step>, Vec<(f64, f64)>) {
        let now = self.clock_ms;
        self.playback.advance(now);
        let pb = &self.playback;
        let n = self.segments;
        let mut qoe = self.qoe;
        // Stalls outside downloads (live: waiting for a playlist) weigh in too.
        let unaccounted = pb.stalled_ms - self.stalled_in_steps_ms;
        if unaccounted > 1e-6 {
            qoe -= REBUF_PENALTY * unaccounted / 1000.0;
        }
        let sabre = sabre.then(|| {
            let startup = self.first_download_ms.unwrap_or(0.0);
            let total = startup + pb.played_ms + pb.stalled_ms;
            let per_segment = self.segment_ms / total.max(1e-9);
            SabreMetrics {
                time_average_played_bitrate: self.bitrate_sum * per_segment,
                rebuffer_ratio: pb.stalled_ms / total.max(1e-9),
                time_average_bitrate_change: self.change_kbps * per_segment,
                total_play_time: total / 1000.0,
            }
        });
        let session = Session {
            id,
            trace,
            startup_s: pb.started_at_ms.unwrap_or(now) / 1000.0,
            never_started: pb.started_at_ms.is_none(),
            rebuffer_count: pb.stalls,
            rebuffer_s: pb.stalled_ms / 1000.0,
            rebuffer_ratio: pb.rebuffer_ratio(),
            avg_bitrate_kbps: pb.avg_bitrate_kbps(),
            switches: self.switches,
            bitrate_change_kbps: if n > 1 {
                self.change_kbps / (n - 1) as f64
            } else {
                0.0
            },
            latency_s: pb.mean_latency_ms().map(|l| l / 1000.0),
            qoe_lin: qoe,
            sabre,
            error,
        };
        let spans = pb.stall_spans();
        (session, self.steps, spans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abr::{Fixed, HlsJs};

    fn rules() -> Rules {
        Rules {
            buffer_max_ms: 6000.0,
            start_threshold_ms: 2000.0,
            resume_threshold_ms: 2000.0,
            resume_growth_max_ms: 0.0,
            abandon: true,
            max_retries: 2,
        }
    }

    fn seg(live: bool) -> Segment<'static> {
        Segment {
            duration_ms: 2000.0,
            pdt_ms: None,
            upcoming_bits: &[],
            live,
        }
    }

    /// Fixed top rung of 1000/2000 kbit/s over a scripted network, by hand:
    /// - seg 0: fetched at 0, arrives after 1000 ms: playback starts at 1 s, buffer 2 s.
    /// - seg 1: fetched at 1 s, takes 3000 ms: plays 2 s, stalls 1 s (stall #1), resumes at 4 s.
    /// - seg 2: fetched at 4 s, takes 500 ms: buffer 2 − 0.5 + 2 = 3.5 s.
    /// - seg 3: fits (3.5 + 2 ≤ 6)... after seg 3 (500 ms) buffer 5 s; seg 4 must wait 1 s.
    #[test]
    fn hand_computed_session() {
        let mut c = Core::new(
            Box::new(Fixed(1)),
            rules(),
            Ladder::flat(vec![1000.0, 2000.0]),
        )
        .unwrap()
        .recording(true);
        let fetch = |c: &mut Core, took: f64| {
            assert_eq!(c.offer(&seg(false)), Next::Fetch(1));
            c.start().unwrap();
            c.elapse(took);
            c.done(4e6, 20.0, took - 20.0, None).unwrap()
        };
        let a = fetch(&mut c, 1000.0);
        assert!(a.started);
        assert_eq!(c.playback().started_at_ms, Some(1000.0));
        let a = fetch(&mut c, 3000.0);
        assert!(a.started, "resumed");
        assert_eq!(c.playback().stalls, 1);
        assert_eq!(c.playback().stalled_ms, 1000.0);
        fetch(&mut c, 500.0);
        assert_eq!(c.playback().level_ms(), 3500.0);
        fetch(&mut c, 500.0);
        assert_eq!(c.playback().level_ms(), 5000.0);
        assert_eq!(c.offer(&seg(false)), Next::Wait(1000.0));
        c.elapse(1000.0);
        fetch(&mut c, 1000.0);
        c.play_out();
        let (s, steps, spans) = c.finish(7, None, true, None);
        assert_eq!(s.startup_s, 1.0);
        assert_eq!(s.rebuffer_count, 1);
        assert_eq!(spans, vec![(3000.0, 4000.0)]);
        assert_eq!(steps.len(), 5);
        assert_eq!(
            steps.iter().map(|x| x.at_ms).collect::<Vec<_>>(),
            vec![0.0, 1000.0, 4000.0, 4500.0, 6000.0]
        );
        assert_eq!(steps[1].stall_ms, 1000.0);
        // QoE_lin: 5 × 2 Mbit/s − 4.3 × 1 s, no switches.
        assert!((s.qoe_lin - (10.0 - 4.3)).abs() < 1e-9, "{}", s.qoe_lin);
        assert_eq!(s.avg_bitrate_kbps, 2000.0);
        let sabre = s.sabre.unwrap();
        // Sabre's total: first download 1 s + 10 s played + 1 s stalled.
        assert_eq!(sabre.total_play_time, 12.0);
    }

    /// The abandon timer: asked at the first progress report, then every 100 ms; the simple
    /// rule aborts a download that cannot finish before the buffer runs dry.
    #[test]
    fn abandon_timer_runs_every_check_interval_and_aborts() {
        let mut c = Core::new(
            Box::new(Fixed(1)),
            Rules {
                start_threshold_ms: 0.0,
                resume_threshold_ms: 0.0,
                ..rules()
            },
            Ladder::flat(vec![500.0, 2000.0]),
        )
        .unwrap();
        // Seg 0 at the top rung, fast: 2 s buffered.
        c.offer(&seg(false));
        c.start().unwrap();
        assert_eq!(c.next_check_ms(), Some(0.0));
        c.elapse(200.0);
        assert_eq!(
            c.progress(1e6, Some(20.0), Some(4e6)),
            Ok(Downloading::Continue)
        );
        // Asked once (too early to judge: under half the segment): next at 300 ms.
        assert_eq!(c.next_check_ms(), Some(300.0));
        c.elapse(100.0);
        c.progress(4e6, Some(20.0), Some(4e6)).unwrap();
        c.done(4e6, 20.0, 280.0, None).unwrap();
        // Seg 1: the link collapses to 100 kbit/s. At 1.5 s only 150 kbit are in: 38.5 s to
        // go with 0.5 s buffered, while the 500 kbit/s rung (1000 kbit) would take 10 s:
        // longer than the buffer too, but sooner than finishing, so abort for rung 0.
        assert_eq!(c.offer(&seg(false)), Next::Fetch(1));
        c.start().unwrap();
        c.elapse(1500.0);
        assert_eq!(
            c.progress(150e3, Some(20.0), Some(4e6)),
            Ok(Downloading::Abort(0))
        );
        assert_eq!(c.abandoned(), 1);
        assert_eq!(c.downloading(), None);
        // The same segment is offered again and fetched at the rung the rule chose.
        assert_eq!(c.offer(&seg(false)), Next::Fetch(0));
        assert!(matches!(
            c.progress(0.0, None, None),
            Err(Error::NoDownload)
        ));
    }

    /// Decides a switch to rung 0 once a download has run 1 s, to happen when rung 0's
    /// playlist is in (expected 100 ms later).
    struct SwitchOnPlaylist;

    impl Abr for SwitchOnPlaylist {
        fn name(&self) -> &'static str {
            "switch-on-playlist"
        }
        fn choose(&mut self, _: &Context<'_>) -> usize {
            1
        }
        fn report(&mut self, _: &Report) {}
        fn abandon(&mut self, p: &Progress<'_>) -> Abandon {
            if p.elapsed_ms < 1000.0 {
                return Abandon::Keep;
            }
            Abandon::AbortOnPlaylist {
                rung: 0,
                eta_ms: p.elapsed_ms + 100.0,
            }
        }
        fn abort(&mut self, _: &Progress<'_>) -> usize {
            0
        }
    }

    /// A switch that waits for a playlist: a driver without playlists aborts at the
    /// expected arrival; one that loads them is asked for the playlist and aborts only when
    /// it says the playlist is in, however long that takes.
    #[test]
    fn a_switch_on_a_playlist_aborts_when_it_arrives() {
        let core = |loads: bool| {
            let c = Core::new(
                Box::new(SwitchOnPlaylist),
                rules(),
                Ladder::flat(vec![500.0, 2000.0]),
            )
            .unwrap();
            let mut c = if loads { c.loading_playlists() } else { c };
            assert_eq!(c.offer(&seg(true)), Next::Fetch(1));
            c.start().unwrap();
            c.elapse(1000.0);
            assert_eq!(
                c.progress(1e6, Some(20.0), Some(4e6)),
                Ok(Downloading::Continue)
            );
            c
        };
        // Offline: aborted at 1100 ms, not before; never asks for a playlist.
        let mut c = core(false);
        assert_eq!(c.awaiting_playlist(), None);
        assert_eq!(c.next_check_ms(), Some(1100.0));
        c.elapse(50.0);
        assert_eq!(
            c.progress(1.1e6, Some(20.0), Some(4e6)),
            Ok(Downloading::Continue)
        );
        c.elapse(50.0);
        assert_eq!(
            c.progress(1.2e6, Some(20.0), Some(4e6)),
            Ok(Downloading::Abort(0))
        );
        // Live driver: rung 0's playlist is asked for; no timer runs meanwhile.
        let mut c = core(true);
        assert_eq!(c.awaiting_playlist(), Some(0));
        assert_eq!(c.next_check_ms(), None);
        c.elapse(2000.0);
        assert_eq!(
            c.progress(2e6, Some(20.0), Some(4e6)),
            Ok(Downloading::Continue)
        );
        c.playlist_in();
        assert_eq!(c.awaiting_playlist(), None);
        assert_eq!(
            c.progress(2e6, Some(20.0), Some(4e6)),
            Ok(Downloading::Abort(0))
        );
        assert_eq!(c.abandoned(), 1);
        // With no download (or none waiting), the news changes nothing.
        c.playlist_in();
        assert_eq!(c.offer(&seg(true)), Next::Fetch(0));
    }

    #[test]
    fn failures_keep_the_rung_while_the_buffer_covers_the_wait_then_step_down() {
        let mut c = Core::new(
            Box::new(Fixed(2)),
            rules(),
            Ladder::flat(vec![500.0, 1000.0, 2000.0]),
        )
        .unwrap();
        // Empty buffer: a 300 ms wait is not covered: one down at once.
        assert_eq!(c.offer(&seg(true)), Next::Fetch(2));
        c.start().unwrap();
        assert_eq!(c.failed(300.0), Ok(Retry::At(1)));
        // The retry keeps the rung the failure chose (the controller is not asked again).
        assert_eq!(c.offer(&seg(true)), Next::Fetch(1));
        c.start().unwrap();
        assert_eq!(c.failed(300.0), Ok(Retry::At(0)));
        c.offer(&seg(true));
        c.start().unwrap();
        assert_eq!(c.failed(300.0), Ok(Retry::GiveUp), "max_retries is 2");
        assert_eq!(c.failed(1.0), Err(Error::NoDownload));
    }

    /// hls.js switching right after its start segment fetches that segment again at the new
    /// rung: the controller learns from it, the buffer does not grow, and it happens once.
    #[test]
    fn hls_js_refetches_its_start_segment_on_the_first_switch() {
        let ladder = Ladder {
            avg_kbps: vec![400.0, 800.0, 1600.0],
            peak_kbps: vec![400.0, 800.0, 1600.0],
            first_listed: 2,
        };
        let mut c = Core::new(
            Box::new(HlsJs::default()),
            Rules {
                start_threshold_ms: 0.0,
                resume_threshold_ms: 0.0,
                ..rules()
            },
            ladder,
        )
        .unwrap()
        .recording(true);
        // Start at the top; 3.2 Mbit in 3.2 s: the estimate falls to ~1000 kbit/s.
        assert_eq!(c.offer(&seg(true)), Next::Fetch(2));
        c.start().unwrap();
        c.elapse(3200.0);
        c.done(3.2e6, 20.0, 3180.0, None).unwrap();
        // 800 kbit/s is next: first the start segment again at it.
        assert_eq!(c.offer(&seg(true)), Next::Refetch(1));
        c.start().unwrap();
        assert_eq!(c.next_check_ms(), None, "no abandon timer on it");
        c.elapse(1600.0);
        let a = c.done(1.6e6, 20.0, 1580.0, None).unwrap();
        assert_eq!(a.switched_from, None);
        // 2 s buffered, 1.6 s played: 0.4 s left; the refetch added nothing.
        assert!((c.playback().level_ms() - 400.0).abs() < 1e-9);
        assert_eq!(c.offer(&seg(true)), Next::Fetch(1));
        c.start().unwrap();
        c.elapse(1600.0);
        let a = c.done(1.6e6, 20.0, 1580.0, None).unwrap();
        assert_eq!(a.switched_from, Some(2));
        // Never again, even on a later switch.
        assert!(matches!(c.offer(&seg(true)), Next::Fetch(_)));
        let (s, steps, _) = c.finish(0, None, false, None);
        assert_eq!(
            steps.iter().map(|x| x.segment).collect::<Vec<_>>(),
            [0, 0, 1]
        );
        assert_eq!(s.switches, 1);
        assert_eq!(s.rebuffer_count, 1, "the refetch let the buffer run dry");
    }

    /// hls.js at the live edge: an estimate that allows the upper rung switches now, and the
    /// newest segment is fetched again there, its copy replacing the buffered one, by hand:
    /// - seg 0 at 400 kbit/s (0.8 Mbit) in 200 ms: playing from 200 ms, 2 s buffered, the
    ///   estimate 4 Mbit/s; 0.7 × 4000 ≥ 800 (BANDWIDTH: less than two segments buffered).
    /// - its copy at 800 kbit/s in 400 ms: 1.6 s left, now at 800.
    /// - seg 1 at 800 kbit/s in 500 ms; played out: 0.4 s at 400, 3.6 s at 800 = 760 kbit/s.
    #[test]
    fn hls_js_switches_at_the_live_edge_and_replaces_the_newest_segment() {
        let ladder = || Ladder {
            avg_kbps: vec![400.0, 800.0],
            peak_kbps: vec![400.0, 800.0],
            first_listed: 0,
        };
        let live_rules = Rules {
            start_threshold_ms: 0.0,
            resume_threshold_ms: 0.0,
            ..rules()
        };
        let mut c = Core::new(Box::new(HlsJs::default()), live_rules, ladder())
            .unwrap()
            .recording(true);
        assert_eq!(
            c.switch_at_live_edge(2000.0, &[]),
            None,
            "nothing fetched yet"
        );
        assert_eq!(c.offer(&seg(true)), Next::Fetch(0));
        c.start().unwrap();
        c.elapse(200.0);
        assert!(c.done(0.8e6, 20.0, 180.0, None).unwrap().started);
        assert_eq!(c.switch_at_live_edge(2000.0, &[]), Some(1));
        c.start_refetch_last(2000.0, None).unwrap();
        assert_eq!(c.next_check_ms(), None, "no abandon timer on it");
        c.elapse(400.0);
        let a = c.done(1.6e6, 20.0, 380.0, None).unwrap();
        assert_eq!(a.switched_from, Some(0));
        assert!(
            (c.playback().level_ms() - 1600.0).abs() < 1e-9,
            "the copy added nothing"
        );
        assert_eq!(c.playback().playing_quality(), Some(1));
        assert_eq!(c.switch_at_live_edge(2000.0, &[]), None, "already there");
        assert_eq!(c.offer(&seg(true)), Next::Fetch(1));
        c.start().unwrap();
        c.elapse(500.0);
        assert_eq!(
            c.done(1.6e6, 20.0, 480.0, None).unwrap().switched_from,
            None
        );
        c.play_out();
        let (s, steps, _) = c.finish(0, None, false, None);
        assert_eq!(
            steps
                .iter()
                .map(|x| (x.segment, x.quality))
                .collect::<Vec<_>>(),
            [(0, 0), (0, 1), (1, 1)]
        );
        assert_eq!(s.switches, 1);
        assert_eq!(s.rebuffer_count, 0);
        assert!(
            (s.avg_bitrate_kbps - 760.0).abs() < 1e-6,
            "{}",
            s.avg_bitrate_kbps
        );

        // A controller that does not switch at the live edge is never asked there.
        let mut c = Core::new(Box::new(Fixed(1)), live_rules, ladder()).unwrap();
        assert_eq!(c.offer(&seg(true)), Next::Fetch(1));
        c.start().unwrap();
        c.elapse(200.0);
        c.done(1.6e6, 20.0, 180.0, None).unwrap();
        assert_eq!(c.switch_at_live_edge(2000.0, &[]), None);
    }

    #[test]
    fn hls_js_starts_at_the_variant_listed_first() {
        let ladder = Ladder {
            avg_kbps: vec![380.0, 590.0, 990.0],
            peak_kbps: vec![410.0, 630.0, 1050.0],
            first_listed: 2,
        };
        let mut c = Core::new(Box::new(HlsJs::default()), rules(), ladder).unwrap();
        assert_eq!(c.first_choice(2000.0, &[]), 2);
        assert_eq!(c.offer(&seg(true)), Next::Fetch(2));
        assert!(Core::new(Box::new(Fixed(0)), rules(), Ladder::flat(vec![])).is_err());
    }
}
