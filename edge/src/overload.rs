//! Load shedding that protects viewers already watching: past a first threshold, new joins
//! (multivariant playlists) are refused; past the limit, everything is. Refused requests get
//! `503` with `Retry-After` at once instead of queueing (goodput over throughput).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::classify::Kind;
use crate::config::OverloadConfig;

/// Counts requests in progress; a request stays counted until its body is done.
#[derive(Debug)]
pub struct Admission {
    active: Arc<AtomicUsize>,
    // The limits, replaced on reload while requests are admitted.
    max_active: AtomicUsize,
    new_joins_above: AtomicUsize,
    retry_after_secs: AtomicU64,
    gauge: prometheus::IntGauge,
}

/// Why a request was shed; the `edge_shed_total` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// New join refused to keep room for current viewers.
    NewJoin,
    /// At the hard limit.
    Overloaded,
}

impl Shed {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Shed::NewJoin => "new_join",
            Shed::Overloaded => "overloaded",
        }
    }
}

/// Holds one admission slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Ticket {
    active: Arc<AtomicUsize>,
    gauge: prometheus::IntGauge,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
        self.gauge.dec();
    }
}

impl Admission {
    /// Admission under `cfg`, reporting to `gauge`.
    pub fn new(cfg: &OverloadConfig, gauge: prometheus::IntGauge) -> Self {
        let a = Self {
            active: Arc::new(AtomicUsize::new(0)),
            max_active: AtomicUsize::new(0),
            new_joins_above: AtomicUsize::new(0),
            retry_after_secs: AtomicU64::new(1),
            gauge,
        };
        a.set_limits(cfg);
        a
    }

    /// Applies reloaded limits; requests already admitted keep their slots.
    pub fn set_limits(&self, cfg: &OverloadConfig) {
        self.max_active.store(cfg.max_active, Ordering::Relaxed);
        self.new_joins_above
            .store(cfg.new_joins_above, Ordering::Relaxed);
        self.retry_after_secs
            .store(cfg.retry_after.as_secs().max(1), Ordering::Relaxed);
    }

    /// Admits a request of `kind`, or says why not.
    pub fn admit(&self, kind: Kind) -> Result<Ticket, Shed> {
        let now = self.active.fetch_add(1, Ordering::Relaxed) + 1;
        let refuse = if now > self.max_active.load(Ordering::Relaxed) {
            Some(Shed::Overloaded)
        } else if now > self.new_joins_above.load(Ordering::Relaxed)
            && !kind.serves_current_viewers()
        {
            Some(Shed::NewJoin)
        } else {
            None
        };
        if let Some(r) = refuse {
            self.active.fetch_sub(1, Ordering::Relaxed);
            return Err(r);
        }
        self.gauge.inc();
        Ok(Ticket {
            active: self.active.clone(),
            gauge: self.gauge.clone(),
        })
    }

    /// Seconds for `Retry-After`.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after_secs.load(Ordering::Relaxed)
    }
}

/// A body that keeps its request's admission ticket until it has been sent or dropped.
pub struct Ticketed {
    inner: service::Body,
    _ticket: Ticket,
}

impl Ticketed {
    /// Wraps `inner`.
    pub fn new(inner: service::Body, ticket: Ticket) -> Self {
        Self {
            inner,
            _ticket: ticket,
        }
    }
}

impl Body for Ticketed {
    type Data = Bytes;
    type Error = service::body::BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_joins_are_shed_first() {
        let cfg = OverloadConfig {
            max_active: 3,
            new_joins_above: 1,
            retry_after: std::time::Duration::from_secs(1),
        };
        let a = Admission::new(&cfg, prometheus::IntGauge::new("g", "g").unwrap());
        let t1 = a.admit(Kind::Master).unwrap();
        assert_eq!(a.admit(Kind::Master).unwrap_err(), Shed::NewJoin);
        let t2 = a.admit(Kind::Segment).unwrap();
        let _t3 = a.admit(Kind::Playlist).unwrap();
        assert_eq!(a.admit(Kind::Segment).unwrap_err(), Shed::Overloaded);
        drop((t1, t2));
        assert!(a.admit(Kind::Segment).is_ok());
    }
}
