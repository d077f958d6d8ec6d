//! The URL layout origin and edge share, parsed strictly: anything malformed is an error the
//! server answers with 400, never a guess.
//!
//! ```text
//! /live/{stream}/master.m3u8
//! /live/{stream}/{rendition}/index.m3u8
//! /live/{stream}/{rendition}/{msn}.ts
//! /live/{stream}/{rendition}/{msn}.{part}.ts
//! ```

/// A parsed `/live/...` path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HlsPath {
    /// The multivariant (master) playlist of a stream.
    Master {
        /// Stream name.
        stream: String,
    },
    /// A rendition's media playlist.
    Media {
        /// Stream name.
        stream: String,
        /// Rendition name.
        rendition: String,
    },
    /// A whole media segment.
    Segment {
        /// Stream name.
        stream: String,
        /// Rendition name.
        rendition: String,
        /// Media sequence number.
        msn: u64,
    },
    /// An LL-HLS partial segment.
    Part {
        /// Stream name.
        stream: String,
        /// Rendition name.
        rendition: String,
        /// Media sequence number of the parent segment.
        msn: u64,
        /// Part index within the segment.
        part: u32,
    },
}

/// Why a path is not a valid `/live/...` path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not under `/live/` at all (the caller decides whether that is a 404).
    #[error("not an HLS path")]
    NotHls,
    /// Percent-encoding, `.`/`..` segments, empty segments or characters outside the name set.
    #[error("malformed path: {0}")]
    Malformed(&'static str),
    /// A stream or rendition name that is not `[A-Za-z0-9_-]{{1,64}}`.
    #[error("invalid name {0:?}: names are 1-64 of A-Z a-z 0-9 _ -")]
    BadName(String),
    /// A file name that is none of the known kinds.
    #[error("unknown object {0:?}: expected master.m3u8, index.m3u8, N.ts or N.P.ts")]
    UnknownObject(String),
    /// A sequence or part number that is not a plain decimal in range.
    #[error("bad number {0:?}")]
    BadNumber(String),
}

/// Whether `s` is a valid stream or rendition name.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn name(s: &str) -> Result<String, PathError> {
    if valid_name(s) {
        Ok(s.to_string())
    } else {
        Err(PathError::BadName(s.chars().take(80).collect()))
    }
}

fn number<T: std::str::FromStr>(s: &str) -> Result<T, PathError> {
    // Plain decimal only: no sign, no leading zeros (one name, one object).
    if s.is_empty()
        || s.len() > 20
        || !s.bytes().all(|b| b.is_ascii_digit())
        || (s.len() > 1 && s.starts_with('0'))
    {
        return Err(PathError::BadNumber(s.to_string()));
    }
    s.parse().map_err(|_| PathError::BadNumber(s.to_string()))
}

impl HlsPath {
    /// Parses a request path (without query).
    pub fn parse(path: &str) -> Result<Self, PathError> {
        let rest = path.strip_prefix("/live/").ok_or(PathError::NotHls)?;
        if rest.contains('%') {
            return Err(PathError::Malformed(
                "percent-encoding is not used in HLS object names",
            ));
        }
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(PathError::Malformed("empty path segment"));
        }
        if parts.iter().any(|p| *p == "." || *p == "..") {
            return Err(PathError::Malformed("dot segments are not allowed"));
        }
        match parts.as_slice() {
            [stream, "master.m3u8"] => Ok(HlsPath::Master {
                stream: name(stream)?,
            }),
            [stream, rendition, file] => {
                let stream = name(stream)?;
                let rendition = name(rendition)?;
                if *file == "index.m3u8" {
                    return Ok(HlsPath::Media { stream, rendition });
                }
                let stem = file
                    .strip_suffix(".ts")
                    .ok_or_else(|| PathError::UnknownObject(file.chars().take(80).collect()))?;
                match stem.split_once('.') {
                    None => Ok(HlsPath::Segment {
                        stream,
                        rendition,
                        msn: number(stem)?,
                    }),
                    Some((msn, part)) => Ok(HlsPath::Part {
                        stream,
                        rendition,
                        msn: number(msn)?,
                        part: number(part)?,
                    }),
                }
            }
            [_, file] => Err(PathError::UnknownObject(file.chars().take(80).collect())),
            _ => Err(PathError::Malformed("wrong number of path segments")),
        }
    }

    /// The stream this path belongs to.
    pub fn stream(&self) -> &str {
        match self {
            HlsPath::Master { stream }
            | HlsPath::Media { stream, .. }
            | HlsPath::Segment { stream, .. }
            | HlsPath::Part { stream, .. } => stream,
        }
    }

    /// Renders the canonical path (the inverse of [`HlsPath::parse`]).
    pub fn to_path(&self) -> String {
        match self {
            HlsPath::Master { stream } => format!("/live/{stream}/master.m3u8"),
            HlsPath::Media { stream, rendition } => {
                format!("/live/{stream}/{rendition}/index.m3u8")
            }
            HlsPath::Segment {
                stream,
                rendition,
                msn,
            } => format!("/live/{stream}/{rendition}/{msn}.ts"),
            HlsPath::Part {
                stream,
                rendition,
                msn,
                part,
            } => format!("/live/{stream}/{rendition}/{msn}.{part}.ts"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_layout() {
        assert_eq!(
            HlsPath::parse("/live/demo/master.m3u8"),
            Ok(HlsPath::Master {
                stream: "demo".into()
            })
        );
        assert_eq!(
            HlsPath::parse("/live/demo/360p/123.ts"),
            Ok(HlsPath::Segment {
                stream: "demo".into(),
                rendition: "360p".into(),
                msn: 123
            })
        );
        assert_eq!(
            HlsPath::parse("/live/demo/360p/123.4.ts"),
            Ok(HlsPath::Part {
                stream: "demo".into(),
                rendition: "360p".into(),
                msn: 123,
                part: 4
            })
        );
    }

    #[test]
    fn rejects_malformed() {
        for p in [
            "/live/../etc/passwd",
            "/live/demo/../master.m3u8",
            "/live/demo//index.m3u8",
            "/live/de%2Fmo/master.m3u8",
            "/live/demo/360p/01.ts",
            "/live/demo/360p/-1.ts",
            "/live/demo/360p/99999999999999999999999.ts",
            "/live/demo/360p/x.ts",
            "/live/demo/360p/1.mp4",
            "/live/d emo/master.m3u8",
            "/live/demo/a/b/c.ts",
        ] {
            assert!(
                matches!(HlsPath::parse(p), Err(e) if e != PathError::NotHls),
                "{p}"
            );
        }
        assert_eq!(HlsPath::parse("/metrics"), Err(PathError::NotHls));
    }

    proptest! {
        #[test]
        fn roundtrip(s in "[a-z0-9_-]{1,10}", r in "[A-Z0-9]{1,10}", msn in any::<u64>(), part in any::<u32>()) {
            for p in [
                HlsPath::Master { stream: s.clone() },
                HlsPath::Media { stream: s.clone(), rendition: r.clone() },
                HlsPath::Segment { stream: s.clone(), rendition: r.clone(), msn },
                HlsPath::Part { stream: s.clone(), rendition: r.clone(), msn, part },
            ] {
                prop_assert_eq!(HlsPath::parse(&p.to_path()), Ok(p));
            }
        }

        #[test]
        fn never_panics(p in "\\PC{0,80}") {
            let _ = HlsPath::parse(&p);
        }
    }
}
