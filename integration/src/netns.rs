//! Simulated hosts: one Linux network namespace per node, on a bridge.
//!
//! Loopback hides what real networks do: every node sees the same addresses, shares one
//! port space, and nothing between them can be cut except by the node's own fault switch.
//! [`Hosts`] instead gives each node a host of its own:
//!
//! - a network namespace `<prefix>n<N>` with one veth interface `eth0` at `198.18.<s>.<10+N>`,
//!   whose other end is a port of a bridge in the test's namespace, which holds
//!   `198.18.<s>.1` (so the test, as a client, reaches every node directly);
//! - a host name `tkv<N>`, in an `/etc/netns/<namespace>/hosts` file that `ip netns exec`
//!   mounts over `/etc/hosts` for the node's process only: nodes advertise names and
//!   resolve each other's, as on real machines;
//! - addresses from 198.18.0.0/15, the range set aside for benchmarking networks (RFC
//!   2544), so that no real network of the machine is shadowed;
//! - the same ports on every host (they no longer collide).
//!
//! Faults are made in the kernel, not in the node: [`Hosts::isolate`] gives a node's
//! namespace a blackhole route to every other node, and the other namespaces one to it,
//! so that packets between them vanish as on a cut link (no reset, no error: the sender
//! times out), while the test still reaches every node, as the chaos runner's partitions
//! expect. [`Hosts::set_delay`] adds latency and loss with `tc netem` when the kernel has
//! it ([`Hosts::netem_available`]).
//!
//! A kernel without netem can join the hosts with a [`DelaySwitch`] instead of the
//! bridge ([`Link::UserspaceSwitch`]): TAP devices whose frames this process forwards,
//! delayed and dropped as asked.
//!
//! Namespaces need root (or CAP_SYS_ADMIN and CAP_NET_ADMIN); [`Hosts::create`] says why
//! it could not, and callers skip with that message. Everything is removed on drop.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::delay_switch::DelaySwitch;

/// What joins the hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// A kernel bridge and veth pairs; delay and loss with `tc netem`.
    Bridge,
    /// A [`DelaySwitch`] in this process and TAP devices: delay and loss without netem,
    /// at the cost of the switch's CPU.
    UserspaceSwitch,
}

/// The simulated hosts of one cluster; see the module documentation.
pub struct Hosts {
    prefix: String,
    subnet: u8,
    count: u64,
    /// The last byte of each node's address (node N starts at 10 + N).
    last_bytes: Mutex<BTreeMap<u64, u8>>,
    /// The switch joining the hosts, for [`Link::UserspaceSwitch`]; port 0 is the test's
    /// own address, port N node N.
    switch: Option<DelaySwitch>,
}

impl std::fmt::Debug for Hosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosts")
            .field("prefix", &self.prefix)
            .field("count", &self.count)
            .field("userspace_switch", &self.switch.is_some())
            .finish()
    }
}

/// Counts the host sets this process made, for unique names and subnets.
static MADE: AtomicU32 = AtomicU32::new(0);

/// Runs `program args`, returning its stderr on failure.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

impl Hosts {
    /// Makes `count` hosts (at most 200) on a new bridge, or says why it cannot.
    pub fn create(count: u64) -> Result<Hosts, String> {
        Hosts::create_linked(count, Link::Bridge)
    }

    /// Makes `count` hosts (at most 200) joined by `link`, or says why it cannot.
    pub fn create_linked(count: u64, link: Link) -> Result<Hosts, String> {
        assert!((1..=200).contains(&count), "1 to 200 hosts");
        let made = MADE.fetch_add(1, Ordering::Relaxed);
        // Unique across concurrent test processes too: their pids differ.
        let tag = (std::process::id() % 10_000) * 10 + made % 10;
        let prefix = format!("tk{tag}");
        let switch = match link {
            Link::Bridge => None,
            Link::UserspaceSwitch => {
                let names: Vec<String> = (0..=count).map(|n| format!("{prefix}t{n}")).collect();
                Some(DelaySwitch::open(&names)?)
            }
        };
        let hosts = Hosts {
            prefix,
            subnet: (tag % 250) as u8,
            count,
            last_bytes: Mutex::new((1..=count).map(|n| (n, 10 + n as u8)).collect()),
            switch,
        };
        let built = match hosts.switch {
            None => hosts.build(),
            Some(_) => hosts.build_switched(),
        };
        built.inspect_err(|_| hosts.remove())?;
        Ok(hosts)
    }

    /// Gives each namespace its TAP device of the switch as `eth0`, and the test's
    /// namespace the switch's port 0 with the first address.
    fn build_switched(&self) -> Result<(), String> {
        self.give_test_address(&format!("{}t0", self.prefix))?;
        for n in 1..=self.count {
            let tap = format!("{}t{n}", self.prefix);
            run("ip", &["netns", "add", &self.namespace(n)])?;
            run("ip", &["link", "set", &tap, "netns", &self.namespace(n)])?;
            self.in_namespace(n, &["ip", "link", "set", &tap, "name", "eth0"])?;
            self.bring_up(n)?;
        }
        self.write_hosts_files()
    }

    /// Gives device `dev` of the test's namespace the first address of the subnet.
    fn give_test_address(&self, dev: &str) -> Result<(), String> {
        let address = format!("198.18.{}.1/24", self.subnet);
        run("ip", &["addr", "add", &address, "dev", dev])?;
        run("ip", &["link", "set", dev, "up"])
    }

    /// Gives node `n`'s `eth0` its address, and brings it and loopback up.
    fn bring_up(&self, n: u64) -> Result<(), String> {
        let address = format!("{}/24", self.ip(n));
        self.in_namespace(n, &["ip", "addr", "add", &address, "dev", "eth0"])?;
        self.in_namespace(n, &["ip", "link", "set", "eth0", "up"])?;
        self.in_namespace(n, &["ip", "link", "set", "lo", "up"])
    }

    /// Runs `args` (a program and its arguments) inside node `n`'s namespace.
    fn in_namespace(&self, n: u64, args: &[&str]) -> Result<(), String> {
        let ns = self.namespace(n);
        let mut all = vec!["netns", "exec", ns.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// What joins the hosts.
    pub fn link(&self) -> Link {
        match self.switch {
            None => Link::Bridge,
            Some(_) => Link::UserspaceSwitch,
        }
    }

    fn build(&self) -> Result<(), String> {
        let bridge = self.bridge();
        run("ip", &["link", "add", &bridge, "type", "bridge"])?;
        self.give_test_address(&bridge)?;
        for n in 1..=self.count {
            let ns = self.namespace(n);
            let outside = format!("{}v{n}", self.prefix);
            run("ip", &["netns", "add", &ns])?;
            let veth = [
                "link", "add", &outside, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ];
            run("ip", &veth)?;
            run("ip", &["link", "set", &outside, "master", &bridge])?;
            run("ip", &["link", "set", &outside, "up"])?;
            self.bring_up(n)?;
        }
        self.write_hosts_files()
    }

    /// Writes every namespace's hosts file from the nodes' current addresses.
    fn write_hosts_files(&self) -> Result<(), String> {
        let names: String = (1..=self.count)
            .map(|n| format!("{} {}\n", self.ip(n), self.name(n)))
            .collect();
        for n in 1..=self.count {
            let dir = self.etc_dir(n);
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            std::fs::write(dir.join("hosts"), format!("127.0.0.1 localhost\n{names}"))
                .map_err(|e| format!("cannot write {}/hosts: {e}", dir.display()))?;
        }
        Ok(())
    }

    /// Moves node `n`'s host to a new address, as a machine that comes back elsewhere (or
    /// a pod rescheduled) does: the old address stops answering at once (no reset for
    /// open connections), and the host name resolves to the new one for every process
    /// that looks it up from now on. Returns the new address.
    pub fn move_host(&self, n: u64) -> Result<String, String> {
        let old = self.ip(n);
        let new_byte = {
            let mut bytes = self.last_bytes.lock().unwrap_or_else(|p| p.into_inner());
            let byte = bytes.get_mut(&n).ok_or(format!("no node {n}"))?;
            *byte = byte.checked_add(100).ok_or("out of addresses")?;
            *byte
        };
        let new = format!("198.18.{}.{new_byte}", self.subnet);
        // Deleted first: deleting an interface's primary address takes its secondary
        // addresses of the same subnet with it.
        self.in_namespace(
            n,
            &["ip", "addr", "del", &format!("{old}/24"), "dev", "eth0"],
        )?;
        self.in_namespace(
            n,
            &["ip", "addr", "add", &format!("{new}/24"), "dev", "eth0"],
        )?;
        self.write_hosts_files()?;
        Ok(new)
    }

    /// The namespace of node `n`.
    pub fn namespace(&self, n: u64) -> String {
        format!("{}n{n}", self.prefix)
    }

    /// The address of node `n`, as every other host and the test reach it.
    pub fn ip(&self, n: u64) -> String {
        let bytes = self.last_bytes.lock().unwrap_or_else(|p| p.into_inner());
        let last = bytes.get(&n).copied().unwrap_or(10 + n as u8);
        format!("198.18.{}.{last}", self.subnet)
    }

    /// The host name node `n` advertises (resolved inside the namespaces only).
    pub fn name(&self, n: u64) -> String {
        format!("tkv{n}")
    }

    fn bridge(&self) -> String {
        format!("{}br", self.prefix)
    }

    fn etc_dir(&self, n: u64) -> PathBuf {
        PathBuf::from("/etc/netns").join(self.namespace(n))
    }

    /// A command running `program` inside node `n`'s namespace (with its hosts file).
    pub fn command(&self, n: u64, program: &std::path::Path) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace(n)])
            .arg(program);
        command
    }

    /// Cuts node `n` off from every other node (not from the test), or heals it
    /// (`cut == false`). Idempotent.
    pub fn isolate(&self, n: u64, cut: bool) -> Result<(), String> {
        let verb = if cut { "replace" } else { "del" };
        for other in (1..=self.count).filter(|o| *o != n) {
            for (from, to) in [(n, other), (other, n)] {
                let dest = format!("{}/32", self.ip(to));
                let result = self.in_namespace(from, &["ip", "route", verb, "blackhole", &dest]);
                // Healing a route that is not there is fine.
                if cut {
                    result?;
                }
            }
        }
        Ok(())
    }

    /// Whether delay and loss can be set: always through the userspace switch, else if
    /// the kernel has `tc netem` (a module some kernels lack).
    pub fn netem_available(&self) -> bool {
        self.set_delay(1, 0, 0.0).is_ok()
    }

    /// Delays every packet node `n` sends by `delay_ms` (so a round trip with another
    /// node grows by that much) and drops `loss_percent` of them; `0, 0.0` removes both.
    /// With a bridge this is `tc netem`; with the userspace switch, the switch does it.
    pub fn set_delay(&self, n: u64, delay_ms: u64, loss_percent: f64) -> Result<(), String> {
        if let Some(switch) = &self.switch {
            switch.shape(n as usize, Duration::from_millis(delay_ms), loss_percent);
            return Ok(());
        }
        let delay = format!("{delay_ms}ms");
        let loss = format!("{loss_percent}%");
        let netem = [
            "tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", &delay,
        ];
        self.in_namespace(n, &[&netem[..], &["loss", &loss]].concat())
    }

    fn remove(&self) {
        for n in 1..=self.count {
            let _ = run("ip", &["netns", "del", &self.namespace(n)]);
            let _ = std::fs::remove_dir_all(self.etc_dir(n));
        }
        let _ = run("ip", &["link", "del", &self.bridge()]);
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.remove();
    }
}
