//! A userspace Ethernet switch that delays and drops frames: `tc netem` for kernels
//! that do not have it.
//!
//! The simulated hosts of [`crate::netns`] normally hang off a kernel bridge, and latency
//! comes from `tc netem` on each host's interface. Some kernels are built without
//! `sch_netem`; on those, [`DelaySwitch`] takes the bridge's place: each host's `eth0` is
//! a TAP device whose other end is a file descriptor of this process, and one more TAP
//! device in the test's namespace stands for the bridge's own address. A thread per port
//! reads the frames its host sends, learns which port each source MAC address lives
//! behind, and queues each frame for its destination port (every other port for a
//! broadcast or an unknown address) due after the sending port's delay, unless the
//! port's loss rate drops it. One thread writes the frames out when they are due, in the
//! order they were due, so a port's frames keep their order, as with netem's constant
//! delay.
//!
//! The switch costs CPU that a kernel bridge does not (two system calls per frame, on a
//! machine the nodes share): a benchmark through it compares its rows with each other,
//! the first with no delay, not with the kernel bridge's.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::Rng;

/// `ioctl` request that attaches a file of `/dev/net/tun` to a new TUN/TAP device.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// A TAP device (Ethernet frames), without the packet-information prefix.
const IFF_TAP_NO_PI: libc::c_short = 0x0002 | 0x1000;

/// How often a port's reader looks up from its device to see whether to stop.
const POLL_MS: libc::c_int = 200;

/// How one port's outgoing frames are shaped.
#[derive(Debug, Clone, Copy, Default)]
struct Shape {
    delay: Duration,
    loss: f64,
}

/// A frame waiting for its time.
struct Queued {
    due: Instant,
    seq: u64,
    to: Vec<usize>,
    frame: Vec<u8>,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// What the threads share.
struct Shared {
    ports: Vec<File>,
    shapes: Mutex<Vec<Shape>>,
    /// Which port each MAC address was last seen behind.
    macs: Mutex<HashMap<[u8; 6], usize>>,
    queue: Mutex<(BinaryHeap<Reverse<Queued>>, u64)>,
    ready: Condvar,
    stop: AtomicBool,
}

/// The switch; see the module documentation. Stops its threads on drop.
pub struct DelaySwitch {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// Opens a new TAP device named `name` (at most 15 bytes), in this namespace.
fn open_tap(name: &str) -> Result<File, String> {
    if name.len() > 15 {
        return Err(format!("TAP name {name:?} is longer than 15 bytes"));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| format!("cannot open /dev/net/tun: {e}"))?;
    // struct ifreq: the name (16 bytes), then the flags (a short), padded to 40 bytes.
    let mut request = [0u8; 40];
    request[..name.len()].copy_from_slice(name.as_bytes());
    request[16..18].copy_from_slice(&IFF_TAP_NO_PI.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `request` holds.
    let result = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, request.as_mut_ptr()) };
    if result < 0 {
        return Err(format!(
            "cannot make TAP device {name}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(file)
}

impl DelaySwitch {
    /// A switch with one TAP device per name, created in this namespace (move them with
    /// `ip link set NAME netns ...`); no delay or loss until [`DelaySwitch::shape`].
    pub fn open(names: &[String]) -> Result<DelaySwitch, String> {
        let ports = names
            .iter()
            .map(|name| open_tap(name))
            .collect::<Result<Vec<_>, _>>()?;
        let shared = Arc::new(Shared {
            shapes: Mutex::new(vec![Shape::default(); ports.len()]),
            ports,
            macs: Mutex::new(HashMap::new()),
            queue: Mutex::new((BinaryHeap::new(), 0)),
            ready: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let mut threads: Vec<JoinHandle<()>> = (0..names.len())
            .map(|port| {
                let shared = shared.clone();
                std::thread::spawn(move || read_port(&shared, port))
            })
            .collect();
        let writer = shared.clone();
        threads.push(std::thread::spawn(move || write_due(&writer)));
        Ok(DelaySwitch { shared, threads })
    }

    /// Delays every frame port `port` sends by `delay`, and drops `loss_percent` of them.
    pub fn shape(&self, port: usize, delay: Duration, loss_percent: f64) {
        let mut shapes = self.shared.shapes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(shape) = shapes.get_mut(port) {
            *shape = Shape {
                delay,
                loss: (loss_percent / 100.0).clamp(0.0, 1.0),
            };
        }
    }
}

impl Drop for DelaySwitch {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.ready.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Reads the frames port `port`'s host sends and queues them for their destinations.
fn read_port(shared: &Shared, port: usize) {
    let mut file = &shared.ports[port];
    let mut buffer = vec![0u8; 65536];
    let mut rng = rand::thread_rng();
    while !shared.stop.load(Ordering::Relaxed) {
        let mut poll = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the length given.
        let ready = unsafe { libc::poll(&mut poll, 1, POLL_MS) };
        if ready <= 0 {
            continue;
        }
        let length = match file.read(&mut buffer) {
            Ok(length) if length >= 14 => length,
            Ok(_) => continue,
            Err(_) => return,
        };
        let frame = &buffer[..length];
        let (destination, source) = (&frame[..6], &frame[6..12]);
        let to: Vec<usize> = {
            let mut macs = shared.macs.lock().unwrap_or_else(|p| p.into_inner());
            let mut source_mac = [0u8; 6];
            source_mac.copy_from_slice(source);
            macs.insert(source_mac, port);
            let known = <[u8; 6]>::try_from(destination)
                .ok()
                .and_then(|mac| macs.get(&mac).copied());
            match known {
                Some(to) if destination[0] & 1 == 0 && to != port => vec![to],
                Some(_) if destination[0] & 1 == 0 => continue,
                _ => (0..shared.ports.len()).filter(|p| *p != port).collect(),
            }
        };
        let shape = shared.shapes.lock().unwrap_or_else(|p| p.into_inner())[port];
        if shape.loss > 0.0 && rng.gen_bool(shape.loss) {
            continue;
        }
        let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.1 += 1;
        let seq = queue.1;
        queue.0.push(Reverse(Queued {
            due: Instant::now() + shape.delay,
            seq,
            to,
            frame: frame.to_vec(),
        }));
        shared.ready.notify_one();
    }
}

/// Writes each queued frame to its destination ports once it is due.
fn write_due(shared: &Shared) {
    let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        match queue.0.peek() {
            Some(Reverse(next)) if next.due <= now => {
                let Some(Reverse(frame)) = queue.0.pop() else {
                    continue;
                };
                drop(queue);
                for port in frame.to {
                    let _ = (&shared.ports[port]).write(&frame.frame);
                }
                queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            }
            Some(Reverse(next)) => {
                let wait = next.due - now;
                queue = shared
                    .ready
                    .wait_timeout(queue, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            None => {
                queue = shared
                    .ready
                    .wait_timeout(queue, Duration::from_millis(POLL_MS as u64))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
    }
}
