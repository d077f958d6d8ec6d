//! The origin's TOML config (`config/origin.toml`), typed and validated.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use service::config::{Problem, Validate};

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// HTTP server limits.
    #[serde(default)]
    pub server: service::ServerConfig,
    /// Limits on pushed (HTTP/UDP) input.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// The streams served.
    pub streams: Vec<StreamConfig>,
    /// Require a secret header on playlist and segment requests (a CDN-only origin).
    #[serde(default)]
    pub pull_auth: Option<PullAuth>,
}

/// Only clients that send one of `secrets` in `header` may pull playlists and segments
/// (the edges, configured with `upstream.auth_header`); anyone else gets 403.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullAuth {
    /// The request header carrying the secret (`x-cdn-auth`).
    pub header: String,
    /// Accepted secrets, at least 16 characters each (several, so they can rotate).
    pub secrets: Vec<String>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// Limits on pushed input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// How far a push may run ahead of real time before it is refused with 429.
    #[serde(with = "humantime_serde")]
    pub max_lead: Duration,
    /// Largest single segment, bytes; a bigger one (no keyframes?) ends an HTTP push with 413.
    pub max_segment_bytes: usize,
    /// An input silent this long counts as dropped (the partial segment is closed).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_lead: Duration::from_secs(10),
            max_segment_bytes: 32 << 20,
            idle_timeout: Duration::from_secs(10),
        }
    }
}

/// Where a stream's media comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Replays TS files (the embedded fixtures by default) forever, anchored to the wall clock.
    Loop,
    /// MPEG-TS pushed over HTTP to `/ingest/{stream}/{rendition}`.
    Push,
    /// MPEG-TS over UDP, one socket per rendition.
    Udp,
}

/// One stream (one ABR ladder).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Name in URLs (`/live/{name}/...`).
    pub name: String,
    /// Where media comes from.
    pub source: SourceKind,
    /// Target segment duration; segments are cut at the first IDR at or after it.
    #[serde(default = "default_segment", with = "humantime_serde")]
    pub segment_duration: Duration,
    /// Segments listed in each media playlist.
    #[serde(default = "default_window")]
    pub window: usize,
    /// Append EXT-X-ENDLIST when the input has been gone this long (never, when unset).
    #[serde(default, with = "humantime_serde::option")]
    pub endlist_after: Option<Duration>,
    /// Push streams: the secret a push must present (`Authorization: Bearer SECRET` or
    /// `?token=SECRET`); unset, anyone who can reach the origin may push.
    #[serde(default)]
    pub ingest_secret: Option<String>,
    /// The renditions; a loop stream without any uses the embedded 360p/240p/144p ladder.
    #[serde(default)]
    pub renditions: Vec<RenditionConfig>,
}

fn default_segment() -> Duration {
    Duration::from_secs(2)
}
fn default_window() -> usize {
    6
}

/// One rendition of a stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenditionConfig {
    /// Name in URLs (`/live/{stream}/{name}/...`).
    pub name: String,
    /// Loop source: a TS file to replay instead of the embedded fixture of the same name.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// UDP source: the address to receive on.
    #[serde(default)]
    pub udp: Option<SocketAddr>,
}

impl Config {
    /// Parses a config from TOML text (`file` names it in errors).
    pub fn parse(file: &str, src: &str) -> Result<Self, service::ConfigError> {
        service::config::parse(file, src)
    }

    /// Reads and parses a config file.
    pub fn load(path: &std::path::Path) -> Result<Self, service::ConfigError> {
        service::config::load(path)
    }

    /// The embedded default: the loop stream `demo` on 127.0.0.1:8080.
    pub fn demo() -> Self {
        Config {
            listen: default_listen(),
            server: service::ServerConfig::default(),
            ingest: IngestConfig::default(),
            pull_auth: None,
            streams: vec![StreamConfig {
                name: "demo".into(),
                source: SourceKind::Loop,
                segment_duration: default_segment(),
                window: default_window(),
                endlist_after: None,
                ingest_secret: None,
                renditions: Vec::new(),
            }],
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.streams.is_empty() {
            p.push(Problem::new("streams", "at least one stream is required"));
        }
        p.extend(self.server.problems("server"));
        if let Some(a) = &self.pull_auth {
            if http::HeaderName::from_bytes(a.header.as_bytes()).is_err() {
                p.push(Problem::new("pull_auth.header", "must be a header name"));
            }
            if a.secrets.is_empty() || a.secrets.iter().any(|s| s.len() < 16) {
                p.push(Problem::new(
                    "pull_auth.secrets",
                    "at least one secret, each at least 16 characters",
                ));
            }
        }
        if self.ingest.max_segment_bytes < 188 * 16 {
            p.push(Problem::new(
                "ingest.max_segment_bytes",
                "must be at least 3008 (16 packets)",
            ));
        }
        if self.ingest.idle_timeout.is_zero() {
            p.push(Problem::new("ingest.idle_timeout", "must be more than 0s"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, s) in self.streams.iter().enumerate() {
            let k = |f: &str| format!("streams[{i}].{f}");
            if !hls::path::valid_name(&s.name) {
                p.push(Problem::new(k("name"), "must be 1-64 of A-Z a-z 0-9 _ -"));
            } else if !names.insert(&s.name) {
                p.push(Problem::new(
                    k("name"),
                    format!("stream {:?} is defined twice", s.name),
                ));
            }
            let seg = s.segment_duration;
            if seg < Duration::from_millis(500) || seg > Duration::from_secs(30) {
                p.push(Problem::new(
                    k("segment_duration"),
                    "must be between 500ms and 30s",
                ));
            }
            if s.window < 3 {
                p.push(Problem::new(
                    k("window"),
                    "must be at least 3 (RFC 8216 §6.2.2: three target durations)",
                ));
            } else if s.window > 10_000 {
                p.push(Problem::new(k("window"), "must be at most 10000"));
            }
            if let Some(secret) = &s.ingest_secret {
                if s.source != SourceKind::Push {
                    p.push(Problem::new(
                        k("ingest_secret"),
                        "only for source = \"push\" (UDP cannot authenticate)",
                    ));
                } else if secret.len() < 16 || secret.len() > 256 {
                    p.push(Problem::new(
                        k("ingest_secret"),
                        "must be 16 to 256 characters",
                    ));
                } else if !secret.bytes().all(|b| b.is_ascii_graphic()) {
                    p.push(Problem::new(
                        k("ingest_secret"),
                        "must be printable ASCII without spaces (it travels in a header or URL)",
                    ));
                }
            }
            if s.source != SourceKind::Loop && s.renditions.is_empty() {
                p.push(Problem::new(
                    k("renditions"),
                    "push and udp streams must list their renditions",
                ));
            }
            let mut rnames = std::collections::HashSet::new();
            for (j, r) in s.renditions.iter().enumerate() {
                let rk = |f: &str| format!("streams[{i}].renditions[{j}].{f}");
                if !hls::path::valid_name(&r.name) {
                    p.push(Problem::new(rk("name"), "must be 1-64 of A-Z a-z 0-9 _ -"));
                } else if !rnames.insert(&r.name) {
                    p.push(Problem::new(
                        rk("name"),
                        format!("rendition {:?} is defined twice", r.name),
                    ));
                }
                match s.source {
                    SourceKind::Loop => {
                        if r.file.is_none() && crate::fixtures::embedded(&r.name).is_none() {
                            p.push(Problem::new(
                                rk("file"),
                                format!(
                                    "no embedded fixture named {:?} (have {}); give a file",
                                    r.name,
                                    crate::fixtures::EMBEDDED_NAMES.join(", ")
                                ),
                            ));
                        }
                        if r.udp.is_some() {
                            p.push(Problem::new(rk("udp"), "only for source = \"udp\""));
                        }
                    }
                    SourceKind::Udp => {
                        if r.udp.is_none() {
                            p.push(Problem::new(
                                rk("name"),
                                "udp renditions need `udp = \"host:port\"`",
                            ));
                        }
                        if r.file.is_some() {
                            p.push(Problem::new(rk("file"), "only for source = \"loop\""));
                        }
                    }
                    SourceKind::Push => {
                        if r.udp.is_some() || r.file.is_some() {
                            p.push(Problem::new(
                                rk("name"),
                                "push renditions take no `file` or `udp`",
                            ));
                        }
                    }
                }
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_loop_config() {
        let c = Config::parse(
            "o.toml",
            "[[streams]]\nname = \"demo\"\nsource = \"loop\"\n",
        )
        .unwrap();
        assert_eq!(c.listen, default_listen());
        assert_eq!(c.streams[0].segment_duration, Duration::from_secs(2));
    }

    #[test]
    fn reports_every_problem_with_line_and_key() {
        let src = "[[streams]]\nname = \"bad name\"\nsource = \"push\"\nwindow = 1\n\n[[streams]]\nname = \"ok\"\nsource = \"udp\"\n[[streams.renditions]]\nname = \"a\"\n";
        let e = Config::parse("o.toml", src).unwrap_err().to_string();
        assert!(e.contains("line 2: key `streams[0].name`"), "{e}");
        assert!(e.contains("line 4: key `streams[0].window`"), "{e}");
        assert!(e.contains("key `streams[0].renditions`"), "{e}");
        assert!(
            e.contains("line 10: key `streams[1].renditions[0].name`"),
            "{e}"
        );
    }

    #[test]
    fn ingest_secret_is_checked_with_line_and_key() {
        let src = "[[streams]]\nname = \"a\"\nsource = \"push\"\ningest_secret = \"short\"\n[[streams.renditions]]\nname = \"r\"\n\n[[streams]]\nname = \"b\"\nsource = \"udp\"\ningest_secret = \"0123456789abcdef\"\n[[streams.renditions]]\nname = \"r\"\nudp = \"127.0.0.1:5000\"\n\n[[streams]]\nname = \"c\"\nsource = \"push\"\ningest_secret = \"0123456789 abcdef\"\n[[streams.renditions]]\nname = \"r\"\n";
        let e = Config::parse("o.toml", src).unwrap_err().to_string();
        assert!(
            e.contains("line 4: key `streams[0].ingest_secret`: must be 16 to 256"),
            "{e}"
        );
        assert!(
            e.contains("line 11: key `streams[1].ingest_secret`: only for source"),
            "{e}"
        );
        assert!(
            e.contains("line 19: key `streams[2].ingest_secret`: must be printable"),
            "{e}"
        );
        let ok = "[[streams]]\nname = \"a\"\nsource = \"push\"\ningest_secret = \"0123456789abcdef\"\n[[streams.renditions]]\nname = \"r\"\n";
        assert_eq!(
            Config::parse("o.toml", ok).unwrap().streams[0]
                .ingest_secret
                .as_deref(),
            Some("0123456789abcdef")
        );
    }

    #[test]
    fn bad_duration_names_the_key() {
        let e = Config::parse(
            "o.toml",
            "[[streams]]\nname = \"d\"\nsource = \"loop\"\nsegment_duration = \"2 parsecs\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("o.toml:4: key `streams[0].segment_duration`"),
            "{e}"
        );
    }
}
