//! The lab's network: one namespace per host, each with a veth pair to a bridge in a switch
//! namespace of its own. Nothing is added to the namespace the lab was started in, and
//! everything is deleted when the [`Net`] is dropped (or, after a crash, by the next run).

use std::net::Ipv4Addr;
use std::process::Command;

/// Why a network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// `ip` or `tc` could not be run.
    #[error("cannot run {0}: {1} (the lab needs iproute2 and root)")]
    Spawn(String, std::io::Error),
    /// It ran and failed.
    #[error("`{0}` failed: {1}")]
    Failed(String, String),
    /// Joining a namespace failed.
    #[error("cannot enter namespace {0}: {1}")]
    Enter(String, String),
}

/// Runs a command, returning its stdout or why it failed.
fn run(cmd: &str, args: &[&str]) -> Result<String, NetError> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| NetError::Spawn(cmd.to_string(), e))?;
    if !out.status.success() {
        return Err(NetError::Failed(
            format!("{cmd} {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The subnet every lab uses (it exists only inside the lab's namespaces).
pub fn address(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, host)
}

/// A lab network; dropping it deletes every namespace it made.
pub struct Net {
    prefix: String,
    switch: String,
    hosts: Vec<String>,
}

impl Net {
    /// Creates the switch namespace (a bridge) for a lab whose namespaces are called
    /// `PREFIX-*`. Namespaces of labs whose process is gone are deleted first.
    pub fn create(prefix: &str) -> Result<Self, NetError> {
        remove_stale();
        let switch = format!("{prefix}-sw");
        run("ip", &["netns", "add", &switch])?;
        let net = Self {
            prefix: prefix.to_string(),
            switch: switch.clone(),
            hosts: Vec::new(),
        };
        run("ip", &["-n", &switch, "link", "set", "lo", "up"])?;
        run(
            "ip",
            &["-n", &switch, "link", "add", "br0", "type", "bridge"],
        )?;
        run("ip", &["-n", &switch, "link", "set", "br0", "up"])?;
        Ok(net)
    }

    /// Adds host `name` (namespace `PREFIX-name`) at `addr`/24 with its link on the bridge;
    /// returns the namespace.
    pub fn add_host(&mut self, name: &str, addr: Ipv4Addr) -> Result<String, NetError> {
        let ns = format!("{}-{name}", self.prefix);
        run("ip", &["netns", "add", &ns])?;
        self.hosts.push(ns.clone());
        let port = format!("p{}", self.hosts.len());
        run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        // Made in the switch namespace with its peer put straight into the host's: the
        // lab's own namespace never sees either end.
        run(
            "ip",
            &[
                "-n",
                &self.switch,
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &ns,
            ],
        )?;
        run(
            "ip",
            &[
                "-n",
                &self.switch,
                "link",
                "set",
                &port,
                "master",
                "br0",
                "up",
            ],
        )?;
        run(
            "ip",
            &[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ],
        )?;
        run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
        Ok(ns)
    }

    /// Limits what host namespace `ns` sends to `rate` (tc tbf), or lifts the limit.
    pub fn set_rate(&self, ns: &str, rate: Option<&str>) -> Result<(), NetError> {
        match rate {
            Some(r) => run(
                "ip",
                &[
                    "netns", "exec", ns, "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf",
                    "rate", r, "burst", "512kb", "latency", "200ms",
                ],
            )
            .map(drop),
            None => {
                // Nothing to delete is fine.
                let _ = run(
                    "ip",
                    &[
                        "netns", "exec", ns, "tc", "qdisc", "del", "dev", "eth0", "root",
                    ],
                );
                Ok(())
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.hosts.iter().rev().chain(std::iter::once(&self.switch)) {
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}

/// Moves the calling thread (and the threads it starts afterwards) into namespace `ns`.
pub fn enter(ns: &str) -> Result<(), NetError> {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}"))
        .map_err(|e| NetError::Enter(ns.to_string(), e.to_string()))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| NetError::Enter(ns.to_string(), e.to_string()))
}

/// Deletes the namespaces of labs (`lab<pid>-*`) whose process no longer runs.
fn remove_stale() {
    let Ok(list) = run("ip", &["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name
            .strip_prefix("lab")
            .and_then(|r| r.split_once('-'))
            .and_then(|(p, _)| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run("ip", &["netns", "del", name]);
        }
    }
}
