//! A scenario file: the topology (origins, shields, edges), the player populations attached
//! to edges, timed events, and the ranges the run's figures must fall in.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use service::config::{Problem, Validate};

/// The whole scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name in the summary (default: the file's stem).
    #[serde(default)]
    pub name: String,
    /// What it rehearses and what it expects, in a sentence or two.
    #[serde(default)]
    pub description: String,
    /// How long the players play (events are timed from their start).
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// The live stream every origin produces (its loop source).
    #[serde(default)]
    pub stream: StreamSpec,
    /// Origins, shields and edges.
    pub nodes: Vec<NodeSpec>,
    /// Player populations, each attached to one edge.
    #[serde(default)]
    pub players: Vec<PlayersSpec>,
    /// Timed events.
    #[serde(default)]
    pub events: Vec<EventSpec>,
    /// The steady window, from the players' start: rates and the capacity model's figures
    /// are measured over it (default: from 40 % of the duration to 3 s before its end, after
    /// the usual join ramps).
    #[serde(default, with = "humantime_serde")]
    pub steady_from: Option<Duration>,
    /// Ranges (`[min, max]`) that figures must fall in for the run to pass.
    #[serde(default)]
    pub expect: BTreeMap<String, [f64; 2]>,
}

/// The origins' stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSpec {
    /// Segment duration.
    #[serde(with = "humantime_serde")]
    pub segment_duration: Duration,
    /// Segments in a playlist.
    pub window: usize,
}

impl Default for StreamSpec {
    fn default() -> Self {
        Self {
            segment_duration: Duration::from_secs(2),
            window: 5,
        }
    }
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Produces the stream (loop source).
    Origin,
    /// An edge in front of origins, that edges use as their upstream pool.
    Shield,
    /// An edge that players attach to.
    Edge,
}

impl Role {
    /// Its name in the summary and in node names.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Origin => "origin",
            Role::Shield => "shield",
            Role::Edge => "edge",
        }
    }
}

/// One origin, shield or edge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Unique name (letters, digits, `-`).
    pub name: String,
    /// What it is.
    pub role: Role,
    /// Shields and edges: the nodes they fetch from (origins for a shield, shields or
    /// origins for an edge), in order of preference.
    #[serde(default)]
    pub upstreams: Vec<String>,
    /// How an object's upstream is chosen: `ordered` or `hashed` (default: `hashed` when
    /// the upstreams are two or more shields, else `ordered`).
    #[serde(default)]
    pub pick: Option<String>,
    /// Pre-warming of newly listed segments (default: on at edges, off at shields — the
    /// edges' prefetches already reach each segment's owning shield first, while a shield's
    /// own would fetch segments that another shield owns: a second origin fetch).
    #[serde(default)]
    pub prefetch: Option<bool>,
    /// Rate limit of the node's link (tc tbf), e.g. "200mbit"; none by default.
    #[serde(default)]
    pub link: Option<String>,
    /// One-way delay added to everything sent to and from the node's content port, e.g.
    /// "25ms" for an origin in another region (a relay in the node's namespace).
    #[serde(default, with = "humantime_serde")]
    pub delay: Option<Duration>,
}

/// A player population.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlayersSpec {
    /// The edge they play through (by its namespace address).
    pub edge: String,
    /// How many.
    pub count: usize,
    /// Controller: throughput, bba, bola, mpc, fixed[:N].
    #[serde(default = "d_abr")]
    pub abr: String,
    /// Bandwidth schedule (player-sim `--bandwidth`).
    #[serde(default = "d_bandwidth")]
    pub bandwidth: String,
    /// Per-player bandwidth spread in [0, 1).
    #[serde(default)]
    pub vary: f64,
    /// Join pattern (player-sim `--join`).
    #[serde(default = "d_join")]
    pub join: String,
    /// Mass exit (player-sim `--exit`), empty for none.
    #[serde(default)]
    pub exit: String,
    /// Seed (default: the population's index).
    #[serde(default)]
    pub seed: Option<u64>,
}

fn d_abr() -> String {
    "throughput".into()
}
fn d_bandwidth() -> String {
    "4000kbps".into()
}
fn d_join() -> String {
    "ramp:5s".into()
}

/// A timed event.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    /// When, from the players' start.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// What happens.
    pub action: Action,
    /// To which node.
    pub node: String,
    /// `link`: the new rate ("10mbit"; "none" lifts the limit).
    #[serde(default)]
    pub rate: Option<String>,
}

/// What an event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// SIGKILL the node (a crash: no drain).
    Kill,
    /// Start a killed or stopped node again, with its config (an empty cache).
    Restart,
    /// SIGTERM the node: it drains and exits.
    Stop,
    /// Change the node's link rate.
    Link,
}

/// Figures a scenario may set ranges for (see `figures`).
pub const FIGURES: &[&str] = &[
    "origin_fetches_per_segment",
    "origin_segment_requests",
    "segments_published",
    "edge_hit_ratio",
    "shield_hit_ratio",
    "edge_segment_ttfb_p99_ms",
    "edge_segment_upstream_waits",
    "edge_errors",
    "prefetched",
    "prefetch_used_ratio",
    "players",
    "players_failed",
    "rebuffer_ratio_mean",
    "rebuffer_count_mean",
    "startup_p95_s",
    "bitrate_mean_kbps",
    "edge_egress_mbps",
    "origin_rps",
    "shield_rps",
    "edge_cpu_cores_mean",
    "players_per_edge_core",
    "model_edge_egress_mbps",
    "model_origin_rps",
    "model_egress_ratio",
    "model_origin_ratio",
    "prometheus_queries",
    "prometheus_queries_empty",
];

impl Scenario {
    /// Parses a scenario (`file` names it in errors).
    #[cfg(test)]
    pub fn parse(file: &str, src: &str) -> Result<Self, service::ConfigError> {
        service::config::parse(file, src)
    }

    /// Reads and parses a scenario file; its name defaults to the file's stem.
    pub fn load(path: &std::path::Path) -> Result<Self, service::ConfigError> {
        let mut s: Self = service::config::load(path)?;
        if s.name.is_empty() {
            s.name = path
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        Ok(s)
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The steady window (from, to), from the players' start.
    pub fn steady_window(&self) -> (Duration, Duration) {
        let to = self.duration.saturating_sub(Duration::from_secs(3));
        let from = self.steady_from.unwrap_or(self.duration * 2 / 5).min(to);
        (from, to)
    }

    /// Whether `n` pre-warms.
    pub fn prefetch_of(n: &NodeSpec) -> bool {
        n.prefetch.unwrap_or(n.role == Role::Edge)
    }

    /// How `n` picks among its upstreams.
    pub fn pick_of<'a>(&self, n: &'a NodeSpec) -> &'a str {
        match n.pick.as_deref() {
            Some(p) => p,
            None if n.upstreams.len() > 1
                && n.upstreams
                    .iter()
                    .all(|u| self.node(u).is_some_and(|x| x.role == Role::Shield)) =>
            {
                "hashed"
            }
            None => "ordered",
        }
    }
}

fn valid_rate(r: &str) -> bool {
    let digits = r.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &r[digits.len()..];
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && matches!(unit, "kbit" | "mbit" | "gbit" | "bit")
}

impl Validate for Scenario {
    fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.duration < Duration::from_secs(5) || self.duration > Duration::from_secs(3600) {
            p.push(Problem::new("duration", "must be between 5s and 1h"));
        }
        if self.stream.segment_duration < Duration::from_millis(500)
            || self.stream.segment_duration > Duration::from_secs(10)
        {
            p.push(Problem::new(
                "stream.segment_duration",
                "must be between 500ms and 10s",
            ));
        }
        if !(4..=20).contains(&self.stream.window) {
            p.push(Problem::new("stream.window", "must be between 4 and 20"));
        }
        if self.nodes.is_empty() || self.nodes.len() > 60 {
            p.push(Problem::new("nodes", "needs 1 to 60 nodes"));
        }
        if !self.nodes.iter().any(|n| n.role == Role::Origin) {
            p.push(Problem::new("nodes", "needs at least one origin"));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let key = |k: &str| format!("nodes[{i}].{k}");
            if n.name.is_empty()
                || n.name.len() > 24
                || !n
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                p.push(Problem::new(key("name"), "1 to 24 letters, digits or '-'"));
            }
            if self.nodes.iter().filter(|m| m.name == n.name).count() > 1 {
                p.push(Problem::new(
                    key("name"),
                    format!("{} is used twice", n.name),
                ));
            }
            match n.role {
                Role::Origin if !n.upstreams.is_empty() => {
                    p.push(Problem::new(key("upstreams"), "an origin has no upstreams"))
                }
                Role::Shield | Role::Edge if n.upstreams.is_empty() => p.push(Problem::new(
                    key("upstreams"),
                    "needs at least one upstream",
                )),
                _ => {}
            }
            for (j, u) in n.upstreams.iter().enumerate() {
                let ok = matches!(
                    (n.role, self.node(u).map(|x| x.role)),
                    (Role::Shield, Some(Role::Origin))
                        | (Role::Edge, Some(Role::Origin | Role::Shield))
                );
                if !ok {
                    p.push(Problem::new(
                        format!("nodes[{i}].upstreams[{j}]"),
                        format!(
                            "{u} is not a node a {} can fetch from (shields fetch from origins, edges from shields or origins)",
                            n.role.as_str()
                        ),
                    ));
                }
            }
            if let Some(pick) = &n.pick
                && !matches!(pick.as_str(), "ordered" | "hashed")
            {
                p.push(Problem::new(key("pick"), "ordered or hashed"));
            }
            if n.delay.is_some_and(|d| d > Duration::from_secs(2)) {
                p.push(Problem::new(key("delay"), "at most 2s"));
            }
            if let Some(r) = &n.link
                && !valid_rate(r)
            {
                p.push(Problem::new(key("link"), "a rate such as 200mbit or 1gbit"));
            }
        }
        for (i, pl) in self.players.iter().enumerate() {
            if self.node(&pl.edge).map(|n| n.role) != Some(Role::Edge) {
                p.push(Problem::new(
                    format!("players[{i}].edge"),
                    format!("{} is not an edge", pl.edge),
                ));
            }
            if pl.count == 0 || pl.count > 20_000 {
                p.push(Problem::new(
                    format!("players[{i}].count"),
                    "must be between 1 and 20000",
                ));
            }
        }
        for (i, e) in self.events.iter().enumerate() {
            if e.at >= self.duration {
                p.push(Problem::new(
                    format!("events[{i}].at"),
                    "must fall within the duration",
                ));
            }
            if self.node(&e.node).is_none() {
                p.push(Problem::new(
                    format!("events[{i}].node"),
                    format!("no node called {}", e.node),
                ));
            }
            match (e.action, &e.rate) {
                (Action::Link, Some(r)) if r == "none" || valid_rate(r) => {}
                (Action::Link, _) => p.push(Problem::new(
                    format!("events[{i}].rate"),
                    "a link event needs a rate such as 10mbit, or \"none\"",
                )),
                (_, Some(_)) => p.push(Problem::new(
                    format!("events[{i}].rate"),
                    "only a link event has a rate",
                )),
                _ => {}
            }
        }
        for (k, [lo, hi]) in &self.expect {
            if !FIGURES.contains(&k.as_str()) {
                p.push(Problem::new(
                    format!("expect.{k}"),
                    format!("no such figure; known: {}", FIGURES.join(", ")),
                ));
            } else if lo.is_nan() || hi.is_nan() || lo > hi {
                p.push(Problem::new(
                    format!("expect.{k}"),
                    "must be [min, max] with min <= max",
                ));
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
duration = "30s"
[[nodes]]
name = "origin-a"
role = "origin"
[[nodes]]
name = "shield-1"
role = "shield"
upstreams = ["origin-a"]
[[nodes]]
name = "shield-2"
role = "shield"
upstreams = ["origin-a"]
[[nodes]]
name = "edge-1"
role = "edge"
upstreams = ["shield-1", "shield-2"]
[[players]]
edge = "edge-1"
count = 10
[[events]]
at = "10s"
action = "kill"
node = "shield-1"
[expect]
edge_hit_ratio = [0.9, 1.0]
"#;

    #[test]
    fn a_good_scenario_parses_with_defaults() {
        let s = Scenario::parse("s.toml", OK).unwrap();
        assert_eq!(s.pick_of(s.node("edge-1").unwrap()), "hashed");
        assert_eq!(s.pick_of(s.node("shield-1").unwrap()), "ordered");
        assert_eq!(s.players[0].join, "ramp:5s");
        assert_eq!(s.stream.window, 5);
    }

    #[test]
    fn problems_name_their_key_and_line() {
        let bad = OK
            .replace(
                "upstreams = [\"shield-1\", \"shield-2\"]",
                "upstreams = [\"nobody\"]",
            )
            .replace(
                "edge_hit_ratio = [0.9, 1.0]",
                "edge_hit_ratio = [1.0, 0.9]\nhappiness = [0, 1]",
            )
            .replace("at = \"10s\"", "at = \"99s\"");
        let e = Scenario::parse("s.toml", &bad).unwrap_err().to_string();
        assert!(
            e.contains("key `nodes[3].upstreams[0]`: nobody is not a node"),
            "{e}"
        );
        assert!(e.contains("key `expect.edge_hit_ratio`"), "{e}");
        assert!(e.contains("key `expect.happiness`: no such figure"), "{e}");
        assert!(e.contains("key `events[0].at`"), "{e}");
    }

    #[test]
    fn rates_are_checked() {
        assert!(valid_rate("200mbit") && valid_rate("1gbit") && valid_rate("640kbit"));
        assert!(
            !valid_rate("fast")
                && !valid_rate("mbit")
                && !valid_rate("10 mbit")
                && !valid_rate("1.5mbit")
        );
    }
}
