//! Live HLS origin: MPEG-TS in (loop source, HTTP push, UDP), an aligned ABR ladder of HLS
//! segments and playlists out.
//!
//! [`run`] takes a bound listener, a config and a shutdown future, so tests start the real
//! server in-process on port 0.

mod anchor;
pub mod config;
pub mod demux;
mod fixtures;
pub mod h264;
mod http;
mod input;
mod loopsrc;
mod metrics;
mod pipeline;
mod push;
pub mod segmenter;
mod store;
mod timeline;
mod ts;
pub mod tsmux;
mod udp;
mod window;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::anchor::Anchors;
use crate::config::{Config, SourceKind};
use crate::input::Input;
use crate::input::lifecycle::Limits;
use crate::loopsrc::Fixture;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::segmenter::{SegmenterConfig, Timing};
use crate::store::Stream;
use crate::timeline::TICKS_PER_SECOND;

/// Why the origin could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A loop file could not be read.
    #[error("stream {stream:?} rendition {rendition:?}: cannot read {path}: {source}")]
    ReadFile {
        /// Stream name.
        stream: String,
        /// Rendition name.
        rendition: String,
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A loop file is not loopable.
    #[error("stream {stream:?} rendition {rendition:?}: {source}")]
    Fixture {
        /// Stream name.
        stream: String,
        /// Rendition name.
        rendition: String,
        /// What is wrong with it.
        source: loopsrc::FixtureError,
    },
    /// A loop's length is not a whole number of segments, so numbers would not be stable.
    #[error(
        "stream {stream:?}: loop length {loop_secs} s is not a multiple of segment_duration {segment_secs} s"
    )]
    LoopLength {
        /// Stream name.
        stream: String,
        /// Loop length.
        loop_secs: f64,
        /// Segment target.
        segment_secs: f64,
    },
    /// A UDP socket could not be bound.
    #[error("stream {stream:?} rendition {rendition:?}: cannot bind udp {addr}: {source}")]
    Udp {
        /// Stream name.
        stream: String,
        /// Rendition name.
        rendition: String,
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Metrics could not be registered (a bug).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Shared state of a running origin.
struct App {
    /// Streams by name.
    streams: HashMap<String, Arc<Stream>>,
    /// Inputs by (stream, rendition).
    inputs: HashMap<(String, String), Arc<Input>>,
    /// Metrics.
    metrics: Arc<Metrics>,
    /// Who may pull playlists and segments.
    pull_auth: Option<config::PullAuth>,
}

/// What moves bytes into an input.
enum Driver {
    Loop(Arc<Fixture>, Duration),
    Udp(tokio::net::UdpSocket),
    Push,
}

async fn build(config: &Config) -> Result<(Arc<App>, Vec<(Arc<Input>, Driver)>), StartError> {
    let metrics = Arc::new(Metrics::new()?);
    let mut streams = HashMap::new();
    let mut inputs = HashMap::new();
    let mut drivers = Vec::new();
    for sc in &config.streams {
        let names: Vec<String> = if sc.source == SourceKind::Loop && sc.renditions.is_empty() {
            loopsrc::EMBEDDED_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            sc.renditions.iter().map(|r| r.name.clone()).collect()
        };
        let stream = Arc::new(Stream::new(
            &sc.name,
            sc.segment_duration,
            sc.window,
            &names,
            metrics.clone(),
        ));
        // Live renditions of one stream share their wall-clock anchors, so they stay aligned.
        let anchors = Arc::new(Anchors::default());
        for (idx, name) in names.iter().enumerate() {
            let rc = sc.renditions.iter().find(|r| &r.name == name);
            let mut seg_cfg =
                SegmenterConfig::for_target(stream.target, config.ingest.max_segment_bytes);
            seg_cfg.timing = Timing::Arrival(anchors.clone());
            let limits = match sc.source {
                // The loop source paces itself and never stops.
                SourceKind::Loop => Limits {
                    idle_timeout: None,
                    max_lead: None,
                    endlist_after: None,
                },
                SourceKind::Udp => Limits {
                    idle_timeout: Some(config.ingest.idle_timeout),
                    max_lead: Some(config.ingest.max_lead),
                    endlist_after: sc.endlist_after,
                },
                SourceKind::Push => Limits {
                    idle_timeout: Some(config.ingest.idle_timeout),
                    max_lead: Some(config.ingest.max_lead),
                    endlist_after: sc.endlist_after,
                },
            };
            let driver = match sc.source {
                SourceKind::Loop => {
                    let bytes: std::borrow::Cow<'static, [u8]> =
                        match rc.and_then(|r| r.file.as_ref()) {
                            Some(path) => std::fs::read(path)
                                .map_err(|source| StartError::ReadFile {
                                    stream: sc.name.clone(),
                                    rendition: name.clone(),
                                    path: path.display().to_string(),
                                    source,
                                })?
                                .into(),
                            None => loopsrc::embedded(name).unwrap_or_default().into(),
                        };
                    let fixture = Fixture::parse(&bytes).map_err(|source| StartError::Fixture {
                        stream: sc.name.clone(),
                        rendition: name.clone(),
                        source,
                    })?;
                    if fixture.duration % stream.target != 0 {
                        return Err(StartError::LoopLength {
                            stream: sc.name.clone(),
                            loop_secs: fixture.duration as f64 / TICKS_PER_SECOND as f64,
                            segment_secs: stream.target as f64 / TICKS_PER_SECOND as f64,
                        });
                    }
                    seg_cfg.timing = Timing::Epoch(loopsrc::epoch_ticks());
                    // Enough history that the playlist is full (and stays so) at start-up.
                    let backfill = sc.segment_duration * (sc.window as u32 + 2);
                    Driver::Loop(Arc::new(fixture), backfill)
                }
                SourceKind::Udp => {
                    let addr = rc.and_then(|r| r.udp).ok_or_else(|| StartError::Udp {
                        stream: sc.name.clone(),
                        rendition: name.clone(),
                        addr: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
                        source: std::io::Error::other("no udp address configured"),
                    })?;
                    let sock = udp::bind(addr).await.map_err(|source| StartError::Udp {
                        stream: sc.name.clone(),
                        rendition: name.clone(),
                        addr,
                        source,
                    })?;
                    Driver::Udp(sock)
                }
                SourceKind::Push => Driver::Push,
            };
            let pipe = Pipeline::new(stream.clone(), idx, seg_cfg, metrics.clone());
            let input = Arc::new(Input::new(
                stream.clone(),
                idx,
                sc.source,
                sc.ingest_secret.clone(),
                pipe,
                limits,
                metrics.clone(),
            ));
            inputs.insert((sc.name.clone(), name.clone()), input.clone());
            drivers.push((input, driver));
        }
        streams.insert(sc.name.clone(), stream);
    }
    let app = Arc::new(App {
        streams,
        inputs,
        metrics,
        pull_auth: config.pull_auth.clone(),
    });
    Ok((app, drivers))
}

/// Checks everything `run` would need (config values, loop files), without serving.
pub async fn check(config: &Config) -> Result<(), StartError> {
    let mut c = config.clone();
    // Do not hold UDP ports for a check.
    for s in &mut c.streams {
        if s.source == SourceKind::Udp {
            s.source = SourceKind::Push;
            for r in &mut s.renditions {
                r.udp = None;
            }
        }
    }
    build(&c).await.map(|_| ())
}

/// Runs the origin on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let (app, drivers) = build(&config).await?;
    let mut tasks = JoinSet::new();
    for (input, driver) in drivers {
        tasks.spawn(input.clone().supervise());
        match driver {
            Driver::Loop(fixture, backfill) => {
                tasks.spawn(loopsrc::run(fixture, input, backfill));
            }
            Driver::Udp(sock) => {
                tasks.spawn(udp::run(sock, input));
            }
            Driver::Push => {}
        }
    }
    tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), streams = app.streams.len(), "origin serving");
    let handler_app = app.clone();
    service::serve_listeners(
        vec![service::Listener {
            tcp: listener,
            tls: None,
        }],
        move |req, _peer| http::handle(handler_app.clone(), req),
        config.server.limits(),
        Some(app.metrics.conns.clone()),
        shutdown,
    )
    .await;
    tasks.abort_all();
    tracing::info!("origin stopped");
    Ok(())
}

/// The input path without a server, for the segmenter benchmark (`benches/segmenter.rs`).
#[doc(hidden)]
pub mod bench {
    use std::sync::Arc;
    use std::time::Instant;

    use crate::loopsrc::{Fixture, embedded, epoch_ticks};
    use crate::metrics::Metrics;
    use crate::pipeline::Pipeline;
    use crate::segmenter::SegmenterConfig;
    use crate::store::Stream;

    /// Names of the embedded loop renditions.
    pub use crate::fixtures::EMBEDDED_NAMES;

    /// `iterations` loops of the embedded rendition `name`, ending now, as one TS byte string.
    pub fn loop_input(name: &str, iterations: usize) -> Option<Vec<u8>> {
        let f = Fixture::parse(embedded(name)?).ok()?;
        let k = epoch_ticks() / f.duration - iterations as i64;
        Some(f.render(k, iterations))
    }

    /// Demuxes, segments and publishes `inputs` (rendition name, TS bytes) as one 2 s-segment
    /// stream; returns how many segments the first rendition published.
    pub fn ingest(inputs: &[(String, Vec<u8>)]) -> prometheus::Result<u64> {
        let metrics = Arc::new(Metrics::new()?);
        let names: Vec<String> = inputs.iter().map(|(n, _)| n.clone()).collect();
        let stream = Arc::new(Stream::new(
            "demo",
            std::time::Duration::from_secs(2),
            6,
            &names,
            metrics.clone(),
        ));
        for (idx, (_, data)) in inputs.iter().enumerate() {
            let mut seg = SegmenterConfig::for_target(stream.target, 32 << 20);
            seg.timing = crate::segmenter::Timing::Epoch(epoch_ticks());
            let mut p = Pipeline::new(stream.clone(), idx, seg, metrics.clone());
            p.begin();
            for chunk in data.chunks(64 * 1024) {
                let _ = p.feed(chunk, Instant::now().into());
            }
            p.end(true);
        }
        let first = names.first().map(String::as_str).unwrap_or("");
        Ok(metrics
            .segments_published
            .with_label_values(&["demo", first])
            .get())
    }
}
