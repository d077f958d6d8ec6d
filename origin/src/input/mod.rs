//! The one owner of a rendition's input: which source feeds it, for how long, and what
//! happens when it stops. Drivers (HTTP push, UDP, the loop source) only move bytes: they
//! [`Input::attach`], feed through the [`Session`] they get, and [`Session::finish`] (or drop
//! it). Every decision comes from the pure [`lifecycle::Lifecycle`]; this module applies them
//! to the pipeline and the store, counts them and logs them, and runs the one timer task per
//! input ([`Input::supervise`]) that drops silent sources and ends absent ones.

pub mod auth;
pub mod lifecycle;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

use crate::config::SourceKind;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::segmenter::Arrival;
use crate::store::Stream;
use lifecycle::{Cutoff, Lifecycle, Limits, Refusal, Tick};

/// One rendition's input.
pub struct Input {
    stream: Arc<Stream>,
    idx: usize,
    source: SourceKind,
    /// The credential a source must present (none: any source may feed).
    secret: Option<String>,
    metrics: Arc<Metrics>,
    inner: Mutex<Inner>,
    /// Wakes [`Input::supervise`] when the next deadline may have moved.
    changed: Notify,
}

struct Inner {
    life: Lifecycle,
    pipe: Pipeline,
    /// The session the timer dropped, and why: its driver learns it on its next call.
    dropped: Option<(u64, Cutoff)>,
}

impl Input {
    /// The input of rendition `idx` of `stream`, fed by a `source` through `pipe`; sources
    /// must present `secret` when there is one.
    pub fn new(
        stream: Arc<Stream>,
        idx: usize,
        source: SourceKind,
        secret: Option<String>,
        pipe: Pipeline,
        limits: Limits,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            stream,
            idx,
            source,
            secret,
            metrics,
            inner: Mutex::new(Inner {
                life: Lifecycle::new(limits),
                pipe,
                dropped: None,
            }),
            changed: Notify::new(),
        }
    }

    /// What kind of source feeds this input.
    pub fn source(&self) -> SourceKind {
        self.source
    }

    /// The stream name.
    pub fn stream_name(&self) -> &str {
        &self.stream.name
    }

    /// The rendition name.
    pub fn rendition(&self) -> &str {
        self.stream.rendition_name(self.idx)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reject(&self, reason: &'static str) {
        self.metrics
            .ingest_rejected
            .with_label_values(&[&self.stream.name, reason])
            .inc();
    }

    /// A source presenting `credential` asks to feed at `now`. Refusals are counted here.
    pub fn attach(
        self: &Arc<Self>,
        now: Instant,
        credential: Option<&str>,
    ) -> Result<Session, Refusal> {
        if let Err(r) = auth::check(self.secret.as_deref(), credential) {
            self.reject(r.as_str());
            tracing::warn!(stream = %self.stream.name, rendition = %self.rendition(), reason = %r, "ingest refused");
            return Err(r);
        }
        let mut inner = self.lock();
        match inner.life.attach(now) {
            Ok(id) => {
                inner.pipe.begin();
                drop(inner);
                self.changed.notify_one();
                tracing::info!(stream = %self.stream.name, rendition = %self.rendition(), source = ?self.source, "input attached");
                Ok(Session {
                    input: self.clone(),
                    id,
                    live: true,
                })
            }
            Err(r) => {
                drop(inner);
                self.reject(r.as_str());
                Err(r)
            }
        }
    }

    /// Ends `session`'s part: closes the partial segment and starts the absence timer.
    fn detach(&self, inner: &mut Inner, session: u64, clean: bool, now: Instant) {
        if inner.life.detach(session, now) {
            inner.pipe.end(clean);
            self.changed.notify_one();
        }
    }

    /// Applies a cutoff to `session`: the partial segment is closed, the cut counted and logged.
    fn cut(&self, inner: &mut Inner, session: u64, cut: Cutoff, now: Instant) {
        // The lifecycle may already have detached it (a lead check does so itself).
        inner.life.detach(session, now);
        inner.pipe.end(false);
        self.changed.notify_one();
        self.reject(cut.as_str());
        tracing::warn!(stream = %self.stream.name, rendition = %self.rendition(), reason = %cut, "input cut off");
    }

    /// Applies whatever the lifecycle says is due at `now`.
    fn tick(&self, now: Instant) {
        let mut inner = self.lock();
        match inner.life.tick(now) {
            Tick::Nothing => {}
            Tick::Dropped(session, cut) => {
                inner.pipe.end(false);
                inner.dropped = Some((session, cut));
                self.reject(cut.as_str());
                tracing::warn!(stream = %self.stream.name, rendition = %self.rendition(), reason = %cut, "input dropped; partial segment closed");
            }
            Tick::End => self.stream.end(self.idx),
        }
    }

    /// The input's timer: sleeps until the lifecycle's next deadline (or a change), then ticks.
    /// Runs until the origin stops.
    pub async fn supervise(self: Arc<Self>) {
        loop {
            let deadline = self.lock().life.deadline();
            match deadline {
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(d.into()) => {}
                        _ = self.changed.notified() => continue,
                    }
                }
                None => {
                    self.changed.notified().await;
                    continue;
                }
            }
            self.tick(Instant::now());
        }
    }
}

/// The right to feed an input, held by one source at a time. Dropping it without
/// [`Session::finish`] counts as a broken input (Pingora's `Dangling`): the partial segment is
/// closed and the absence timer starts, however the driver went away.
pub struct Session {
    input: Arc<Input>,
    id: u64,
    live: bool,
}

impl Session {
    /// Why this session is no longer feeding, if it is not.
    fn gone(&self, inner: &mut Inner) -> Option<Cutoff> {
        if inner.life.is_feeding(self.id) {
            return None;
        }
        Some(match inner.dropped {
            Some((id, cut)) if id == self.id => cut,
            _ => Cutoff::Idle(std::time::Duration::ZERO),
        })
    }

    /// Feeds bytes that arrived at `at`.
    pub fn feed(&mut self, data: &[u8], at: Arrival) -> Result<(), Cutoff> {
        let now = at.at;
        let input = self.input.clone();
        let mut inner = input.lock();
        if let Some(cut) = self.gone(&mut inner) {
            self.live = false;
            return Err(cut);
        }
        let result = match inner.pipe.feed(data, at) {
            Err(crate::pipeline::TooLarge(n)) => Err(Cutoff::TooLarge(n)),
            Ok(()) => {
                let media = inner.pipe.media_time();
                inner.life.media(self.id, media, at)
            }
        };
        if let Err(cut) = result {
            self.live = false;
            input.cut(&mut inner, self.id, cut, now);
        }
        result
    }

    /// When this session counts as silent unless more data arrives (none: never), or why it
    /// no longer feeds.
    pub fn deadline(&mut self) -> Result<Option<Instant>, Cutoff> {
        let input = self.input.clone();
        let mut inner = input.lock();
        if let Some(cut) = self.gone(&mut inner) {
            self.live = false;
            return Err(cut);
        }
        Ok(inner.life.deadline())
    }

    /// The driver's own timer fired at `now`: applies what is due and says whether this
    /// session survived it.
    pub fn expire(&mut self, now: Instant) -> Result<(), Cutoff> {
        self.input.tick(now);
        let mut inner = self.input.lock();
        match self.gone(&mut inner) {
            Some(cut) => {
                self.live = false;
                Err(cut)
            }
            None => Ok(()),
        }
    }

    /// Whether this session still feeds the input.
    pub fn is_live(&self) -> bool {
        self.live && self.input.lock().life.is_feeding(self.id)
    }

    /// The input ended at `now`; `clean` when on a boundary (end of body), not a break.
    pub fn finish(mut self, clean: bool, now: Instant) {
        self.close(clean, now);
    }

    fn close(&mut self, clean: bool, now: Instant) {
        if !self.live {
            return;
        }
        self.live = false;
        let input = self.input.clone();
        let mut inner = input.lock();
        input.detach(&mut inner, self.id, clean, now);
        tracing::info!(stream = %input.stream.name, rendition = %input.rendition(), clean, "input detached");
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close(false, Instant::now());
    }
}
