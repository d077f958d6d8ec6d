//! The HTTP push driver: moves one ingest request's body into its input [`Session`] and says
//! how the push ended. Every decision (idle, too fast, too large) is the input's.

use std::time::Instant;

use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::input::Session;
use crate::input::lifecycle::Cutoff;
use crate::segmenter::Arrival;

/// How a push ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The body ended cleanly.
    Done,
    /// The input cut it off.
    Cut(Cutoff),
    /// The body broke off (the client went away mid-stream).
    Broken(String),
}

/// Feeds `body` through `session` until it ends, breaks or is cut off; the session is
/// finished (the partial segment closed, the absence timer armed) however it ends.
pub async fn run(mut session: Session, mut body: Incoming) -> Outcome {
    loop {
        let deadline = match session.deadline() {
            Ok(d) => d,
            Err(cut) => return Outcome::Cut(cut),
        };
        let frame = match deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), body.frame()).await {
                Ok(f) => f,
                Err(_) => match session.expire(Instant::now()) {
                    Ok(()) => continue,
                    Err(cut) => return Outcome::Cut(cut),
                },
            },
            None => body.frame().await,
        };
        match frame {
            None => {
                session.finish(true, Instant::now());
                return Outcome::Done;
            }
            Some(Err(e)) => {
                session.finish(false, Instant::now());
                return Outcome::Broken(format!("ingest body broke off: {e}"));
            }
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if let Err(cut) = session.feed(&data, Arrival::now()) {
                    return Outcome::Cut(cut);
                }
            }
        }
    }
}
