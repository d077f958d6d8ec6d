//! Config loading: TOML text → typed config, with every error naming the file, line and key.
//!
//! Parsing takes `&str` so tests feed strings; [`load`] adds the file read. Semantic checks go
//! through [`Validate`], which reports every problem at once; each is then located in the
//! source so the operator is pointed at the line to fix.

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::de::DeValue;

/// One semantic problem in a config: the dotted key path (`streams[0].name`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, array indices in brackets.
    pub key: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl Problem {
    /// A problem at `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A problem placed in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// 1-based line of the key, when it is present in the file.
    pub line: Option<usize>,
    /// The problem.
    pub problem: Problem,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(
                f,
                "line {l}: key `{}`: {}",
                self.problem.key, self.problem.message
            ),
            None => write!(f, "key `{}`: {}", self.problem.key, self.problem.message),
        }
    }
}

/// Everything that can go wrong loading a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read config: {source}")]
    Read {
        /// Path of the file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or a value has the wrong type / an unknown key.
    #[error("{file}:{line}: key `{key}`: {message}")]
    Parse {
        /// Path of the file.
        file: String,
        /// 1-based line.
        line: usize,
        /// Dotted key path (`.` for the document root).
        key: String,
        /// The parser's message.
        message: String,
    },
    /// The TOML parsed but values are out of range or inconsistent; all problems are listed.
    #[error("{file}: invalid config:\n  {}", .problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  "))]
    Invalid {
        /// Path of the file.
        file: String,
        /// Every problem found.
        problems: Vec<Located>,
    },
}

/// Semantic validation of a parsed config.
pub trait Validate {
    /// Every problem in the config (empty when it is valid).
    fn validate(&self) -> Vec<Problem>;
}

/// Reads and parses `path`.
pub fn load<T: DeserializeOwned + Validate>(path: &Path) -> Result<T, ConfigError> {
    let file = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    parse(&file, &src)
}

/// Parses `src` (named `file` in errors) and validates it.
pub fn parse<T: DeserializeOwned + Validate>(file: &str, src: &str) -> Result<T, ConfigError> {
    let de = toml::de::Deserializer::parse(src).map_err(|e| ConfigError::Parse {
        file: file.to_string(),
        line: e.span().map(|s| line_of(src, s.start)).unwrap_or(1),
        key: ".".to_string(),
        message: first_line(e.message()),
    })?;
    let value: T = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let line = inner
            .span()
            .map(|s| line_of(src, s.start))
            .or_else(|| locate(src, &path))
            .unwrap_or(1);
        ConfigError::Parse {
            file: file.to_string(),
            line,
            key: path,
            message: first_line(inner.message()),
        }
    })?;
    let problems = value.validate();
    if problems.is_empty() {
        return Ok(value);
    }
    Err(ConfigError::Invalid {
        file: file.to_string(),
        problems: problems
            .into_iter()
            .map(|problem| Located {
                line: locate(src, &problem.key),
                problem,
            })
            .collect(),
    })
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_string()
}

/// 1-based line number of byte offset `at` in `src`.
fn line_of(src: &str, at: usize) -> usize {
    src.as_bytes()[..at.min(src.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Finds the line of a dotted key path (`streams[1].renditions[0].name`) in `src`.
pub fn locate(src: &str, path: &str) -> Option<usize> {
    let table = toml::de::DeTable::parse(src).ok()?;
    let span = table.span();
    let root = toml::Spanned::new(span, DeValue::Table(table.into_inner()));
    let mut cur = &root;
    let mut span = root.span();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, indices) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            cur = cur.get_ref().get(name)?;
            span = cur.span();
        }
        for idx in indices
            .split(['[', ']'])
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<usize>().ok())
        {
            cur = cur.get_ref().get(idx?)?;
            span = cur.span();
        }
    }
    Some(line_of(src, span.start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // fields exist to be parsed
    struct Cfg {
        listen: String,
        #[serde(default)]
        items: Vec<Item>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        name: String,
        size: u32,
    }
    impl Validate for Cfg {
        fn validate(&self) -> Vec<Problem> {
            self.items
                .iter()
                .enumerate()
                .filter(|(_, i)| i.size == 0)
                .map(|(n, _)| Problem::new(format!("items[{n}].size"), "must be > 0"))
                .collect()
        }
    }

    #[test]
    fn parse_error_names_line_and_key() {
        let src = "listen = \"x\"\n[[items]]\nname = \"a\"\nsize = \"big\"\n";
        let e = parse::<Cfg>("t.toml", src).unwrap_err().to_string();
        assert!(e.starts_with("t.toml:4: key `items[0].size`"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let src = "listen = \"x\"\nlisten_port = 3\n";
        let e = parse::<Cfg>("t.toml", src).unwrap_err().to_string();
        assert!(e.contains("t.toml:2") && e.contains("listen_port"), "{e}");
    }

    #[test]
    fn all_validation_problems_are_located() {
        let src = "listen = \"x\"\n[[items]]\nname = \"a\"\nsize = 0\n\n[[items]]\nname = \"b\"\nsize = 0\n";
        let e = parse::<Cfg>("t.toml", src).unwrap_err().to_string();
        assert!(e.contains("line 4: key `items[0].size`"), "{e}");
        assert!(e.contains("line 8: key `items[1].size`"), "{e}");
    }

    #[test]
    fn syntax_error_has_line() {
        let e = parse::<Cfg>("t.toml", "listen = \"x\"\nitems = [\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:"), "{e}");
    }
}
