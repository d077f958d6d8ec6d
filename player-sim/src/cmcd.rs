//! Common Media Client Data (CTA-5004): what a player tells the CDN with each request, so
//! that edge access logs can be joined with the simulator's sessions. Keys in alphabetical
//! order; strings quoted; a true boolean is its bare key and a false one is left out;
//! buffer length rounded to 100 ms and throughput to 100 kbit/s as the spec asks.

use serde::Deserialize;

/// How the data travels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Not sent.
    #[default]
    Off,
    /// One `CMCD` query parameter.
    Query,
    /// The four `CMCD-*` headers.
    Headers,
}

impl Mode {
    /// Parses `off`, `query` or `headers`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Mode::Off),
            "query" => Ok(Mode::Query),
            "headers" => Ok(Mode::Headers),
            _ => Err(format!("{s:?}: off, query or headers")),
        }
    }
}

/// What is being fetched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Object {
    /// A playlist (`ot=m`).
    Manifest,
    /// A muxed audio + video segment of `duration_ms` at `bitrate_kbps` (`ot=av`, `d`, `br`).
    Segment {
        /// Encoded bitrate of the rendition, kbit/s.
        bitrate_kbps: f64,
        /// Segment duration, ms.
        duration_ms: f64,
    },
}

/// One request's data.
#[derive(Debug, Clone, PartialEq)]
pub struct Data<'a> {
    /// The object.
    pub object: Object,
    /// Buffer length, ms (`bl`).
    pub buffer_ms: f64,
    /// Measured throughput, kbit/s (`mtp`), once there is a measurement.
    pub throughput_kbps: Option<f64>,
    /// Session id (`sid`).
    pub session: &'a str,
    /// Content id (`cid`).
    pub content: &'a str,
    /// Live stream (`st=l`) or not (`st=v`).
    pub live: bool,
    /// Playback has not started yet (`su`).
    pub startup: bool,
    /// The buffer ran dry since the last request (`bs`).
    pub starved: bool,
}

/// Integer value of a non-negative measurement, rounded to `step`.
fn rounded(v: f64, step: f64) -> u64 {
    if !v.is_finite() || v <= 0.0 {
        return 0;
    }
    ((v / step).round() * step) as u64
}

/// A string value: quoted, with `"` and `\` escaped.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The keys by header (Object, Request, Session, Status), each list in key order.
fn groups(d: &Data<'_>) -> [Vec<String>; 4] {
    let mut object = Vec::new();
    let mut request = Vec::new();
    let mut session = Vec::new();
    let mut status = Vec::new();
    match d.object {
        Object::Manifest => object.push("ot=m".to_string()),
        Object::Segment {
            bitrate_kbps,
            duration_ms,
        } => {
            object.push(format!("br={}", rounded(bitrate_kbps, 1.0)));
            object.push(format!("d={}", rounded(duration_ms, 1.0)));
            object.push("ot=av".to_string());
        }
    }
    request.push(format!("bl={}", rounded(d.buffer_ms, 100.0)));
    if let Some(t) = d.throughput_kbps {
        request.push(format!("mtp={}", rounded(t, 100.0)));
    }
    if d.startup {
        request.push("su".to_string());
    }
    session.push(format!("cid={}", quoted(d.content)));
    session.push("sf=h".to_string());
    session.push(format!("sid={}", quoted(d.session)));
    session.push(format!("st={}", if d.live { "l" } else { "v" }));
    if d.starved {
        status.push("bs".to_string());
    }
    [object, request, session, status]
}

/// The `CMCD` query parameter's value (all keys in alphabetical order), not yet
/// percent-encoded.
pub fn query_value(d: &Data<'_>) -> String {
    let mut all: Vec<String> = groups(d).into_iter().flatten().collect();
    all.sort_by(|a, b| key(a).cmp(key(b)));
    all.join(",")
}

fn key(kv: &str) -> &str {
    kv.split('=').next().unwrap_or(kv)
}

/// `url` with `CMCD=value` (percent-encoded) added to its query.
pub fn append_query(url: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}CMCD={}", service::percent::encode(value))
}

/// The `CMCD-*` headers that have keys.
pub fn headers(d: &Data<'_>) -> Vec<(&'static str, String)> {
    let names = ["cmcd-object", "cmcd-request", "cmcd-session", "cmcd-status"];
    names
        .into_iter()
        .zip(groups(d))
        .filter(|(_, keys)| !keys.is_empty())
        .map(|(n, keys)| (n, keys.join(",")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment() -> Data<'static> {
        Data {
            object: Object::Segment {
                bitrate_kbps: 1000.0,
                duration_ms: 2000.0,
            },
            buffer_ms: 6_049.0,
            throughput_kbps: Some(2_460.0),
            session: "7-12",
            content: "/live/demo/master.m3u8",
            live: true,
            startup: false,
            starved: true,
        }
    }

    #[test]
    fn query_keys_are_sorted_rounded_and_typed() {
        assert_eq!(
            query_value(&segment()),
            "bl=6000,br=1000,bs,cid=\"/live/demo/master.m3u8\",d=2000,mtp=2500,ot=av,sf=h,sid=\"7-12\",st=l"
        );
        let pl = Data {
            object: Object::Manifest,
            throughput_kbps: None,
            startup: true,
            starved: false,
            ..segment()
        };
        assert_eq!(
            query_value(&pl),
            "bl=6000,cid=\"/live/demo/master.m3u8\",ot=m,sf=h,sid=\"7-12\",st=l,su"
        );
    }

    #[test]
    fn headers_group_the_keys() {
        assert_eq!(
            headers(&segment()),
            vec![
                ("cmcd-object", "br=1000,d=2000,ot=av".to_string()),
                ("cmcd-request", "bl=6000,mtp=2500".to_string()),
                (
                    "cmcd-session",
                    "cid=\"/live/demo/master.m3u8\",sf=h,sid=\"7-12\",st=l".to_string()
                ),
                ("cmcd-status", "bs".to_string()),
            ]
        );
        let calm = Data {
            starved: false,
            ..segment()
        };
        assert_eq!(headers(&calm).len(), 3, "an empty group sends no header");
    }

    #[test]
    fn the_query_parameter_is_percent_encoded_and_appended() {
        let u = append_query("http://e/live/a/0.ts?x=1", &query_value(&segment()));
        assert!(
            u.starts_with(
                "http://e/live/a/0.ts?x=1&CMCD=bl%3D6000%2Cbr%3D1000%2Cbs%2Ccid%3D%22%2Flive"
            ),
            "{u}"
        );
        assert!(append_query("http://e/m.m3u8", "su").ends_with("m.m3u8?CMCD=su"));
    }

    #[test]
    fn strings_are_escaped_and_bad_numbers_are_zero() {
        let d = Data {
            session: "a\"b",
            buffer_ms: f64::NAN,
            throughput_kbps: Some(-5.0),
            ..segment()
        };
        let q = query_value(&d);
        assert!(
            q.contains("sid=\"a\\\"b\"") && q.contains("bl=0") && q.contains("mtp=0"),
            "{q}"
        );
        assert_eq!(Mode::parse("headers"), Ok(Mode::Headers));
        assert!(Mode::parse("loud").is_err());
    }
}
