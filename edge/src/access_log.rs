//! Access log: one line per response (JSON lines, or the combined log format), written by a
//! thread of its own from a bounded queue, so request handling never waits for the disk;
//! lines that find the queue full are dropped and counted.
//!
//! A line is finished when its response body ends (or the client goes), so it carries the
//! bytes actually sent and the time to the last byte.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

/// Line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line with every field.
    #[default]
    Json,
    /// NCSA combined log format (a subset of the fields).
    Combined,
}

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// Standard output.
    Stdout,
    /// A file, appended to (and reopened on request, for logrotate).
    File(PathBuf),
}

/// Everything one line says about one response.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// When the request arrived.
    pub time: Option<SystemTime>,
    /// The peer's address.
    pub client: String,
    /// `Forwarded` / `X-Forwarded-For`, when the peer is a trusted proxy.
    pub forwarded: Option<String>,
    /// Method.
    pub method: String,
    /// Path and query as requested.
    pub path: String,
    /// `HTTP/1.1`, `HTTP/2`.
    pub protocol: &'static str,
    /// `TLSv1.3`, `TLSv1.2`; none on plain HTTP.
    pub tls: Option<&'static str>,
    /// Status sent.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// Time to the response head.
    pub ttfb: Duration,
    /// Time to the last body byte handed to the connection.
    pub last_byte: Duration,
    /// `hit`, `miss`, `coalesced`, `stale`, `bypass`.
    pub cache: &'static str,
    /// The upstream that answered (`host:port`), when one was asked.
    pub upstream: Option<String>,
    /// The upstream's status, when one was asked.
    pub upstream_status: Option<u16>,
    /// User-Agent.
    pub user_agent: String,
    /// CMCD (CTA-5004) keys and values, from the `CMCD` query parameter or `CMCD-*` headers.
    pub cmcd: Vec<(String, String)>,
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// RFC 3339 UTC with milliseconds.
fn rfc3339(t: SystemTime) -> String {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    hls::date::format_unix_ms(ms)
}

impl Entry {
    /// The line in `format`, with its newline.
    pub fn line(&self, format: Format) -> String {
        let mut o = String::with_capacity(320);
        let time = self.time.map(rfc3339).unwrap_or_default();
        match format {
            Format::Json => {
                o.push_str("{\"time\":");
                json_str(&mut o, &time);
                o.push_str(",\"client\":");
                json_str(&mut o, &self.client);
                if let Some(f) = &self.forwarded {
                    o.push_str(",\"forwarded\":");
                    json_str(&mut o, f);
                }
                o.push_str(",\"method\":");
                json_str(&mut o, &self.method);
                o.push_str(",\"path\":");
                json_str(&mut o, &self.path);
                o.push_str(",\"protocol\":");
                json_str(&mut o, self.protocol);
                if let Some(t) = self.tls {
                    o.push_str(",\"tls\":");
                    json_str(&mut o, t);
                }
                let _ = write!(
                    o,
                    ",\"status\":{},\"bytes\":{},\"ttfb_ms\":{:.3},\"last_byte_ms\":{:.3},\"cache\":",
                    self.status,
                    self.bytes,
                    self.ttfb.as_secs_f64() * 1e3,
                    self.last_byte.as_secs_f64() * 1e3
                );
                json_str(&mut o, self.cache);
                if let Some(u) = &self.upstream {
                    o.push_str(",\"upstream\":");
                    json_str(&mut o, u);
                }
                if let Some(s) = self.upstream_status {
                    let _ = write!(o, ",\"upstream_status\":{s}");
                }
                o.push_str(",\"user_agent\":");
                json_str(&mut o, &self.user_agent);
                if !self.cmcd.is_empty() {
                    o.push_str(",\"cmcd\":{");
                    for (i, (k, v)) in self.cmcd.iter().enumerate() {
                        if i > 0 {
                            o.push(',');
                        }
                        json_str(&mut o, k);
                        o.push(':');
                        json_str(&mut o, v);
                    }
                    o.push('}');
                }
                o.push_str("}\n");
            }
            Format::Combined => {
                // host ident authuser [date] "request" status bytes "referer" "user-agent"
                let clean = |s: &str| s.replace(['"', '\n', '\r'], "'");
                let _ = writeln!(
                    o,
                    "{} - - [{}] \"{} {} {}\" {} {} \"-\" \"{}\"",
                    self.client,
                    time,
                    clean(&self.method),
                    clean(&self.path),
                    self.protocol,
                    self.status,
                    self.bytes,
                    clean(&self.user_agent)
                );
            }
        }
        o
    }
}

/// Parses CMCD data (CTA-5004): comma-separated `key=value` or bare `key` (a true boolean);
/// string values lose their quotes. At most 32 keys of bounded length are kept; anything
/// malformed is skipped, never an error (the data comes from any client).
pub fn parse_cmcd(data: &str, out: &mut Vec<(String, String)>) {
    for part in data.split(',') {
        if out.len() >= 32 {
            return;
        }
        let part = part.trim();
        if part.is_empty() || part.len() > 256 {
            continue;
        }
        let (k, v) = part.split_once('=').unwrap_or((part, "true"));
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            continue;
        }
        let v = v.trim().trim_matches('"');
        out.push((k.to_string(), v.to_string()));
    }
}

/// The CMCD data of a request: the `CMCD` query parameter (percent-decoded) and the four
/// `CMCD-*` headers.
pub fn cmcd_of(query: Option<&str>, headers: &http::HeaderMap) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(q) = query {
        for kv in q.split('&') {
            if let Some(v) = kv.strip_prefix("CMCD=") {
                parse_cmcd(&percent_decode(v), &mut out);
            }
        }
    }
    for h in ["cmcd-request", "cmcd-object", "cmcd-session", "cmcd-status"] {
        if let Some(v) = headers.get(h).and_then(|v| v.to_str().ok()) {
            parse_cmcd(v, &mut out);
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

enum Msg {
    Line(String),
    Reopen,
}

/// The writer: a bounded queue in front of a thread that owns the sink.
#[derive(Debug)]
pub struct AccessLog {
    tx: SyncSender<Msg>,
    format: Format,
    dropped: prometheus::IntCounter,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

/// Lines queued at most before new ones are dropped.
pub const QUEUE_LINES: usize = 65_536;

impl AccessLog {
    /// Starts the writer thread for `sink`; `dropped` counts lines lost to a full queue.
    pub fn start(
        sink: Sink,
        format: Format,
        dropped: prometheus::IntCounter,
    ) -> std::io::Result<Self> {
        let out = open(&sink)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_LINES);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_loop(sink, out, rx))?;
        Ok(Self {
            tx,
            format,
            dropped,
        })
    }

    /// Queues the line for `e`; never waits.
    pub fn log(&self, e: &Entry) {
        match self.tx.try_send(Msg::Line(e.line(self.format))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    /// Reopens the file (after logrotate moved it).
    pub fn reopen(&self) {
        let _ = self.tx.try_send(Msg::Reopen);
    }
}

fn open(sink: &Sink) -> std::io::Result<Box<dyn std::io::Write + Send>> {
    Ok(match sink {
        Sink::Stdout => Box::new(std::io::stdout()),
        Sink::File(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        ),
    })
}

fn write_loop(sink: Sink, out: Box<dyn std::io::Write + Send>, rx: Receiver<Msg>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        // Write what is queued, then flush once: a line is on disk within one batch.
        while let Some(m) = next {
            match m {
                Msg::Line(l) => {
                    let _ = out.write_all(l.as_bytes());
                }
                Msg::Reopen => {
                    let _ = out.flush();
                    match open(&sink) {
                        Ok(o) => out = std::io::BufWriter::with_capacity(64 * 1024, o),
                        Err(e) => tracing::warn!(error = %e, "cannot reopen the access log"),
                    }
                }
            }
            next = rx.try_recv().ok();
        }
        let _ = out.flush();
    }
}

/// A response body that counts what it hands out and writes its access-log line when it
/// ends (or the client goes).
pub struct Logged {
    inner: service::Body,
    entry: Entry,
    app: std::sync::Arc<crate::App>,
    started: tokio::time::Instant,
}

impl Logged {
    /// Wraps `inner`; `entry` is completed and logged on drop.
    pub fn new(
        inner: service::Body,
        entry: Entry,
        app: std::sync::Arc<crate::App>,
        started: tokio::time::Instant,
    ) -> Self {
        Self {
            inner,
            entry,
            app,
            started,
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if let Some(log) = &self.app.access_log {
            self.entry.last_byte = self.started.elapsed();
            log.log(&self.entry);
        }
    }
}

impl http_body::Body for Logged {
    type Data = bytes::Bytes;
    type Error = service::body::BodyError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(f))) = &r
            && let Some(d) = f.data_ref()
        {
            let n = d.len() as u64;
            self.entry.bytes = self.entry.bytes.saturating_add(n);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            time: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            client: "203.0.113.7:5000".into(),
            forwarded: Some("198.51.100.1".into()),
            method: "GET".into(),
            path: "/live/x/360p/7.ts?CMCD=br%3D800".into(),
            protocol: "HTTP/2",
            tls: Some("TLSv1.3"),
            status: 200,
            bytes: 1234,
            ttfb: Duration::from_micros(1500),
            last_byte: Duration::from_millis(20),
            cache: "hit",
            upstream: Some("origin-a:8080".into()),
            upstream_status: Some(200),
            user_agent: "hls.js \"x\"\n".into(),
            cmcd: vec![("br".into(), "800".into()), ("sid".into(), "6e2f".into())],
        }
    }

    #[test]
    fn json_lines_parse_with_every_field() {
        let l = entry().line(Format::Json);
        assert!(l.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(l.trim_end()).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes"], 1234);
        assert_eq!(v["cache"], "hit");
        assert_eq!(v["protocol"], "HTTP/2");
        assert_eq!(v["tls"], "TLSv1.3");
        assert_eq!(v["upstream"], "origin-a:8080");
        assert_eq!(v["upstream_status"], 200);
        assert_eq!(v["forwarded"], "198.51.100.1");
        assert_eq!(v["user_agent"], "hls.js \"x\"\n");
        assert_eq!(v["cmcd"]["br"], "800");
        assert_eq!(v["time"], "2023-11-14T22:13:20.123Z");
        assert!((v["ttfb_ms"].as_f64().unwrap() - 1.5).abs() < 1e-9);
    }

    #[test]
    fn combined_is_one_line() {
        let l = entry().line(Format::Combined);
        assert_eq!(l.matches('\n').count(), 1);
        assert!(l.starts_with("203.0.113.7:5000 - - ["), "{l}");
        assert!(
            l.contains("\"GET /live/x/360p/7.ts?CMCD=br%3D800 HTTP/2\" 200 1234"),
            "{l}"
        );
    }

    #[test]
    fn cmcd_from_query_and_headers() {
        let mut h = http::HeaderMap::new();
        h.insert("cmcd-session", "sid=\"6e2f\",st=l".parse().unwrap());
        h.insert("cmcd-status", "bs".parse().unwrap());
        let c = cmcd_of(Some("x=1&CMCD=br%3D800%2Cbl%3D2100%2Csu"), &h);
        let get = |k: &str| c.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
        assert_eq!(get("br"), Some("800"));
        assert_eq!(get("bl"), Some("2100"));
        assert_eq!(get("su"), Some("true"));
        assert_eq!(get("sid"), Some("6e2f"));
        assert_eq!(get("st"), Some("l"));
        assert_eq!(get("bs"), Some("true"));
        let mut many = Vec::new();
        parse_cmcd(&"k=1,".repeat(100), &mut many);
        assert_eq!(many.len(), 32, "bounded");
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let dropped = prometheus::IntCounter::new("d", "d").unwrap();
        let (tx, _rx) = std::sync::mpsc::sync_channel(2);
        let log = AccessLog {
            tx,
            format: Format::Json,
            dropped: dropped.clone(),
        };
        for _ in 0..5 {
            log.log(&entry());
        }
        assert_eq!(dropped.get(), 3);
    }

    #[test]
    fn lines_reach_the_file() {
        let p = std::env::temp_dir().join(format!("access-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let dropped = prometheus::IntCounter::new("d", "d").unwrap();
        let log = AccessLog::start(Sink::File(p.clone()), Format::Json, dropped).unwrap();
        log.log(&entry());
        for _ in 0..100 {
            if std::fs::read_to_string(&p).is_ok_and(|s| s.ends_with('\n')) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 1);
    }
}
