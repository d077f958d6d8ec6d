//! `config/player-sim.toml`: the defaults of `player-sim run` and `player-sim demo` (flags
//! override them), typed and validated with file:line:key errors.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use service::config::{Problem, Validate};

use crate::join::{Exit, Join};
use crate::live::Settings;
use crate::{abr, schedule};

/// The whole config file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The population and its outputs.
    #[serde(default)]
    pub run: RunConfig,
    /// How every player behaves.
    #[serde(default)]
    pub player: PlayerConfig,
}

/// `[run]`: who plays, for how long, under what bandwidth, and where results go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Master playlist URL (`run` only; the demo serves its own).
    pub url: String,
    /// Number of players.
    pub players: usize,
    /// Length of the run.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Controller: hlsjs, throughput, bba, bola, mpc, fixed[:N].
    pub abr: String,
    /// Bandwidth schedule (see `--bandwidth`).
    pub bandwidth: String,
    /// Per-player bandwidth spread: each player's schedule is scaled by a seeded factor in
    /// [1 − vary, 1 + vary].
    pub vary: f64,
    /// Latency per request for schedules without their own.
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// Join pattern: all, ramp:D, flash:T[,F,S], poisson:R/s[,seed=N].
    pub join: String,
    /// Mass exit: `T[,FRACTION]`; empty for none.
    pub exit: String,
    /// Address for `/metrics` during the run; empty for none.
    pub metrics_listen: String,
    /// Edge `/metrics` URL to read origin offload from after a `run`; empty for none.
    pub edge_metrics: String,
    /// Folder for report.json, sessions.csv and the plots.
    pub out_dir: PathBuf,
    /// Players whose timelines are plotted.
    pub plot_players: usize,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8081/live/demo/master.m3u8".into(),
            players: 300,
            duration: Duration::from_secs(60),
            abr: "hlsjs".into(),
            bandwidth: "3000kbps@0s,600kbps@20s,1500kbps@40s".into(),
            vary: 0.25,
            latency: Duration::from_millis(20),
            join: "ramp:10s".into(),
            exit: String::new(),
            metrics_listen: String::new(),
            edge_metrics: String::new(),
            out_dir: PathBuf::from("player-sim-out"),
            plot_players: 4,
        }
    }
}

/// `[player]`: buffer, thresholds, retries, abandonment, seed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlayerConfig {
    /// Largest buffer.
    #[serde(with = "humantime_serde")]
    pub buffer_max: Duration,
    /// Buffer needed to start playing.
    #[serde(with = "humantime_serde")]
    pub start_threshold: Duration,
    /// Buffer needed to resume after a stall.
    #[serde(with = "humantime_serde")]
    pub resume_threshold: Duration,
    /// After each stall the resume threshold doubles up to this (Chromium: 3 s); 0s: fixed.
    #[serde(with = "humantime_serde")]
    pub resume_threshold_max: Duration,
    /// Hold-back from the live edge, in target durations (RFC 8216 asks at least 3).
    pub live_sync_segments: u32,
    /// Added to the hold-back per stall, up to one target duration (hls.js's
    /// `liveSyncOnStallIncrease`); 0s: never.
    #[serde(with = "humantime_serde")]
    pub live_sync_stall_increase: Duration,
    /// Deadline of one request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Retries before a session fails.
    pub max_retries: u32,
    /// First backoff ceiling (doubles per attempt; full jitter).
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    /// Largest backoff ceiling.
    #[serde(with = "humantime_serde")]
    pub retry_cap: Duration,
    /// Abandon downloads that would not finish before the buffer runs dry.
    pub abandon: bool,
    /// Seed of every random choice (schedules, joins, exits, backoff jitter).
    pub seed: u64,
    /// CMCD (CTA-5004) with every request: `off`, `query` (one `CMCD` parameter) or
    /// `headers` (`CMCD-*`), so edge access logs can be joined with the sessions.
    pub cmcd: crate::cmcd::Mode,
}

impl Default for PlayerConfig {
    fn default() -> Self {
        let s = Settings::default();
        Self {
            buffer_max: Duration::from_secs_f64(s.buffer_max_ms / 1000.0),
            start_threshold: Duration::from_secs_f64(s.start_threshold_ms / 1000.0),
            resume_threshold: Duration::from_secs_f64(s.resume_threshold_ms / 1000.0),
            resume_threshold_max: Duration::from_secs_f64(s.resume_growth_max_ms / 1000.0),
            live_sync_segments: s.live_sync_segments,
            live_sync_stall_increase: Duration::from_secs_f64(
                s.live_sync_stall_increase_ms / 1000.0,
            ),
            request_timeout: s.request_timeout,
            max_retries: s.max_retries,
            retry_base: s.retry_base,
            retry_cap: s.retry_cap,
            abandon: s.abandon,
            seed: s.seed,
            cmcd: s.cmcd,
        }
    }
}

impl RunConfig {
    /// The live population this describes, playing `url` (the caller's: `run` takes
    /// `self.url`, the demo its own stack's). Errors name the key.
    pub fn population(&self, url: &str) -> Result<crate::live::Population, String> {
        let duration_ms = self.duration.as_secs_f64() * 1000.0;
        let mut schedule = schedule::parse(
            &self.bandwidth,
            self.latency.as_secs_f64() * 1000.0,
            duration_ms,
        )
        .map_err(|e| format!("bandwidth: {e}"))?;
        schedule.name = "schedule".into();
        Ok(crate::live::Population {
            url: url.to_string(),
            players: self.players,
            duration: self.duration,
            abr: self.abr.clone(),
            schedule,
            vary: self.vary,
            join: Join::parse(&self.join).map_err(|e| format!("join: {e}"))?,
            exit: (!self.exit.is_empty())
                .then(|| Exit::parse(&self.exit))
                .transpose()
                .map_err(|e| format!("exit: {e}"))?,
            record: self.plot_players,
        })
    }
}

impl PlayerConfig {
    /// The live players' settings.
    pub fn settings(&self) -> Settings {
        Settings {
            buffer_max_ms: self.buffer_max.as_secs_f64() * 1000.0,
            start_threshold_ms: self.start_threshold.as_secs_f64() * 1000.0,
            resume_threshold_ms: self.resume_threshold.as_secs_f64() * 1000.0,
            resume_growth_max_ms: self.resume_threshold_max.as_secs_f64() * 1000.0,
            live_sync_segments: self.live_sync_segments,
            live_sync_stall_increase_ms: self.live_sync_stall_increase.as_secs_f64() * 1000.0,
            request_timeout: self.request_timeout,
            max_retries: self.max_retries,
            retry_base: self.retry_base,
            retry_cap: self.retry_cap,
            abandon: self.abandon,
            seed: self.seed,
            cmcd: self.cmcd,
        }
    }
}

impl Config {
    /// Parses config text (`file` names it in errors).
    pub fn parse(file: &str, src: &str) -> Result<Self, service::ConfigError> {
        service::config::parse(file, src)
    }

    /// Reads and parses a config file.
    pub fn load(path: &std::path::Path) -> Result<Self, service::ConfigError> {
        service::config::load(path)
    }
}

/// Checks the `[run]` values that flags can also set; `key` names where each came from.
pub fn run_problems(r: &RunConfig, key: impl Fn(&str) -> String) -> Vec<Problem> {
    let mut p = Vec::new();
    match r.url.parse::<http::Uri>() {
        Ok(u) if u.scheme_str() == Some("http") && u.host().is_some() => {}
        Ok(u) if u.scheme_str() == Some("https") => p.push(Problem::new(
            key("url"),
            "https is not supported (the simulator speaks plain HTTP; put it behind an edge)",
        )),
        _ => p.push(Problem::new(
            key("url"),
            format!("{:?} is not an http:// URL", r.url),
        )),
    }
    if r.players == 0 || r.players > 200_000 {
        p.push(Problem::new(key("players"), "must be within 1..=200000"));
    }
    if r.duration.is_zero() {
        p.push(Problem::new(key("duration"), "must be more than 0s"));
    }
    if abr::by_name(&r.abr).is_none() {
        p.push(Problem::new(
            key("abr"),
            format!(
                "unknown controller {:?} (have {}, fixed:N)",
                r.abr,
                abr::NAMES.join(", ")
            ),
        ));
    }
    if let Err(e) = schedule::parse(
        &r.bandwidth,
        r.latency.as_secs_f64() * 1000.0,
        r.duration.as_secs_f64() * 1000.0,
    ) {
        p.push(Problem::new(key("bandwidth"), e.to_string()));
    }
    if !(0.0..1.0).contains(&r.vary) {
        p.push(Problem::new(key("vary"), "must be within 0..1"));
    }
    if let Err(e) = Join::parse(&r.join) {
        p.push(Problem::new(key("join"), e));
    }
    if !r.exit.is_empty()
        && let Err(e) = Exit::parse(&r.exit)
    {
        p.push(Problem::new(key("exit"), e));
    }
    if !r.metrics_listen.is_empty() && r.metrics_listen.parse::<SocketAddr>().is_err() {
        p.push(Problem::new(
            key("metrics_listen"),
            "must be an address like 127.0.0.1:9102",
        ));
    }
    p
}

impl Validate for Config {
    fn validate(&self) -> Vec<Problem> {
        let mut p = run_problems(&self.run, |k| format!("run.{k}"));
        let pl = &self.player;
        for (k, d) in [
            ("buffer_max", pl.buffer_max),
            ("start_threshold", pl.start_threshold),
            ("resume_threshold", pl.resume_threshold),
            ("request_timeout", pl.request_timeout),
            ("retry_cap", pl.retry_cap),
        ] {
            if d.is_zero() {
                p.push(Problem::new(format!("player.{k}"), "must be more than 0s"));
            }
        }
        if pl.start_threshold > pl.buffer_max
            || pl.resume_threshold > pl.buffer_max
            || pl.resume_threshold_max > pl.buffer_max
        {
            p.push(Problem::new(
                "player.buffer_max",
                "must be at least start_threshold, resume_threshold and resume_threshold_max",
            ));
        }
        if pl.live_sync_segments == 0 {
            p.push(Problem::new(
                "player.live_sync_segments",
                "must be at least 1 (RFC 8216 asks 3)",
            ));
        }
        if pl.retry_base > pl.retry_cap {
            p.push(Problem::new(
                "player.retry_base",
                "must not exceed retry_cap",
            ));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_is_valid_and_equals_the_default() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/player-sim.toml");
        let c = Config::load(std::path::Path::new(path)).unwrap();
        let d = Config::default();
        assert_eq!(c.run.players, d.run.players);
        assert_eq!(c.run.bandwidth, d.run.bandwidth);
        assert_eq!(c.player.seed, d.player.seed);
        assert!(Config::default().validate().is_empty());
    }

    #[test]
    fn problems_name_line_and_key() {
        let src = "[run]\nplayers = 0\nabr = \"nope\"\n\n[player]\nlive_sync_segments = 0\n";
        let e = Config::parse("p.toml", src).unwrap_err().to_string();
        assert!(e.contains("line 2: key `run.players`"), "{e}");
        assert!(e.contains("line 3: key `run.abr`"), "{e}");
        assert!(e.contains("line 6: key `player.live_sync_segments`"), "{e}");
        let e = Config::parse("p.toml", "[run]\nduration = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p.toml:2: key `run.duration`"), "{e}");
    }
}
