//! Reading the nodes' `/metrics` (Prometheus text format) and adding up how much each
//! counter grew during a run, across restarts of the node that exports it.

use std::collections::BTreeMap;

/// One sample: metric name, labels (sorted by name), value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels, sorted by name.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
}

impl Sample {
    /// The value of label `k`, or "".
    pub fn label(&self, k: &str) -> &str {
        self.labels
            .iter()
            .find(|(n, _)| n == k)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// Parses Prometheus text format; lines that do not parse are skipped (a node's metrics
/// are the lab's own programs', but a half-written scrape must not stop a run).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (series, value) = match line.find('}') {
        Some(close) => (&line[..=close], line[close + 1..].trim()),
        None => line.split_once(' ')?,
    };
    let value: f64 = value.split_whitespace().next()?.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((n, rest)) => (n, parse_labels(rest.strip_suffix('}')?)?),
        None => (series, Vec::new()),
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn parse_labels(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.trim().is_empty() {
        let (k, after) = rest.split_once('=')?;
        let after = after.strip_prefix('"')?;
        // Values may hold escaped quotes; find the closing unescaped quote.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let end = end?;
        out.push((
            k.trim().trim_start_matches(',').trim().to_string(),
            after[..end].replace("\\\"", "\"").replace("\\\\", "\\"),
        ));
        rest = after[end + 1..].trim_start_matches(',');
    }
    out.sort();
    Some(out)
}

/// How much each counter of each node grew over successive scrapes: a value below the last
/// one means the node restarted, so its whole new value is growth (Prometheus' rule).
#[derive(Debug, Default)]
pub struct Growth {
    last: BTreeMap<(String, String), f64>,
    grown: BTreeMap<(String, String), (Sample, f64)>,
}

impl Growth {
    /// Takes in one scrape of `node`. The first scrape of a series is its baseline.
    pub fn observe(&mut self, node: &str, samples: &[Sample]) {
        for s in samples {
            let id = (node.to_string(), series_id(s));
            let prev = self.last.insert(id.clone(), s.value);
            let delta = match prev {
                None => 0.0,
                Some(p) if s.value >= p => s.value - p,
                Some(_) => s.value,
            };
            let e = self.grown.entry(id).or_insert_with(|| (s.clone(), 0.0));
            e.1 += delta;
        }
    }

    /// Forgets `node`'s last values without counting anything: it restarted and its first
    /// scrape after the restart must count in full (everything it did since it started).
    pub fn restarted(&mut self, node: &str) {
        for ((n, _), v) in self.last.iter_mut() {
            if n == node {
                *v = 0.0;
            }
        }
    }

    /// Every node scraped so far.
    pub fn nodes(&self) -> Vec<String> {
        let mut n: Vec<String> = self.last.keys().map(|(n, _)| n.clone()).collect();
        n.dedup();
        n
    }

    /// The values label `label` takes on series called `name`.
    pub fn labels_of(&self, name: &str, label: &str) -> std::collections::BTreeSet<String> {
        self.grown
            .values()
            .filter(|(s, _)| s.name == name)
            .map(|(s, _)| s.label(label).to_string())
            .collect()
    }

    /// Growth of every series called `name` on nodes for which `node` says yes, whose
    /// labels pass `filter`, summed.
    pub fn sum(
        &self,
        name: &str,
        node: impl Fn(&str) -> bool,
        filter: impl Fn(&Sample) -> bool,
    ) -> f64 {
        self.grown
            .iter()
            .filter(|((n, _), (s, _))| s.name == name && node(n) && filter(s))
            .map(|(_, (_, g))| *g)
            .sum::<f64>()
            + 0.0 // an empty f64 sum is -0.0
    }

    /// The `q` quantile (0..1) of a histogram's growth (`NAME_bucket` series summed by `le`
    /// over the selected nodes and labels), interpolated linearly within its bucket; `None`
    /// without observations.
    pub fn quantile(
        &self,
        name: &str,
        q: f64,
        node: impl Fn(&str) -> bool,
        filter: impl Fn(&Sample) -> bool,
    ) -> Option<f64> {
        let bucket = format!("{name}_bucket");
        let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for ((n, _), (s, g)) in &self.grown {
            if s.name != bucket || !node(n) || !filter(s) {
                continue;
            }
            let le: f64 = match s.label("le") {
                "+Inf" => f64::INFINITY,
                v => v.parse().ok()?,
            };
            by_le.entry(le.to_bits()).or_insert((le, 0.0)).1 += g;
        }
        let mut buckets: Vec<(f64, f64)> = by_le.into_values().collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for (le, count) in buckets {
            if count >= rank {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                let span = count - lower.1;
                let frac = if span > 0.0 {
                    (rank - lower.1) / span
                } else {
                    1.0
                };
                return Some(lower.0 + (le - lower.0) * frac);
            }
            lower = (le, count);
        }
        Some(lower.0)
    }
}

fn series_id(s: &Sample) -> String {
    let mut id = s.name.clone();
    for (k, v) in &s.labels {
        id.push('|');
        id.push_str(k);
        id.push('=');
        id.push_str(v);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_labels_and_values() {
        let s = parse(
            "# HELP x y\nedge_requests_total{kind=\"segment\",cache=\"hit\",status=\"200\"} 42\nup 1\nweird{a=\"q\\\"x\"} 3 1700000000\nbroken{ 7\n",
        );
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "edge_requests_total");
        assert_eq!(s[0].label("cache"), "hit");
        assert_eq!(s[0].value, 42.0);
        assert_eq!((s[1].name.as_str(), s[1].value), ("up", 1.0));
        assert_eq!(s[2].label("a"), "q\"x");
    }

    proptest::proptest! {
        /// Whatever a scrape returns, parsing answers.
        #[test]
        fn any_text_parses_without_panicking(t in "(\\PC|\n|\\{|\\}|=|\"|,| ){0,200}") {
            let _ = parse(&t);
        }
    }

    #[test]
    fn growth_survives_a_restart() {
        let mut g = Growth::default();
        let m = |v: f64| parse(&format!("c_total{{k=\"a\"}} {v}\n"));
        g.observe("n", &m(10.0));
        g.observe("n", &m(15.0));
        g.observe("n", &m(3.0)); // restarted: counted from 0
        g.observe("n", &m(7.0));
        assert_eq!(g.sum("c_total", |_| true, |_| true), 5.0 + 3.0 + 4.0);
        g.restarted("n");
        g.observe("n", &m(2.0));
        assert_eq!(g.sum("c_total", |_| true, |_| true), 14.0);
        assert_eq!(g.sum("c_total", |n| n != "n", |_| true), 0.0);
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let mut g = Growth::default();
        let h = |a: f64, b: f64, c: f64| {
            parse(&format!(
                "d_bucket{{le=\"0.001\"}} {a}\nd_bucket{{le=\"0.01\"}} {b}\nd_bucket{{le=\"+Inf\"}} {c}\n"
            ))
        };
        g.observe("n", &h(0.0, 0.0, 0.0));
        g.observe("n", &h(50.0, 100.0, 100.0));
        let q = g.quantile("d", 0.75, |_| true, |_| true).unwrap();
        assert!((q - 0.0055).abs() < 1e-9, "{q}");
        assert_eq!(g.quantile("nothing", 0.5, |_| true, |_| true), None);
    }
}
