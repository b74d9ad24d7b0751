//! The wire log: which jobs' unrepeatable requests a process may have put on the wire, kept where a
//! SIGKILL cannot erase it.
//!
//! A job notes (durably, in the store) that it is about to make a call that must not be repeated, then
//! makes it. A process killed between the two leaves a note whose call never left, and the store alone
//! cannot tell that job from one whose call went out: it was held for an operator. The kernel can tell.
//! Right before the request's body is handed to the socket, the job appends `<job id> <attempt>` to this
//! process's wire log with one `write(2)`. A write that returned is in the page cache and survives the
//! process's death; the body leaves only after it. So once the process that wrote a log is dead, a note
//! whose line is missing from its log is a call that never left, and the job can simply run again.
//!
//! The log is trusted only when nothing can have hidden a line: the machine has not rebooted since (the
//! page cache would be gone), the checker sees the same process namespace (so the writer's pid means the
//! same process), and that process is no longer running (it can no longer write). Anything else, or a log
//! that is missing, answers "may have left", and the job is held as before: the log can only spare a
//! hold, never cause a repeat.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// A log grows to about this size before the next attempts start a new one; the old one is removed once
/// no running attempt refers to it.
const ROTATE_BYTES: u64 = 4 << 20;

/// Logs of dead processes older than this are removed when a process opens its own in the same folder.
/// By then every job they name has long been taken over; one still waiting is held rather than re-run.
const KEEP_DEAD: Duration = Duration::from_secs(7 * 24 * 3600);

const SUFFIX: &str = "wire";

/// Which process wrote a log, in terms that say whether it can still write: the boot (the page cache
/// lasts as long), the process namespace (what a pid means) and the pid with its start time (pids are
/// reused; the pair is not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    boot: String,
    namespace: u64,
    pid: u32,
    start: u64,
}

impl Identity {
    /// This process.
    pub fn current() -> io::Result<Self> {
        Self::of_process(std::process::id())
    }

    /// A running process on this machine, as seen from this process's namespace.
    pub fn of_process(pid: u32) -> io::Result<Self> {
        Ok(Self {
            boot: boot_id()?,
            namespace: pid_namespace()?,
            pid,
            start: start_time(pid)?.ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no process {pid}"))
            })?,
        })
    }

    fn file_name(&self, seq: u32) -> String {
        format!(
            "{}.{}.{}.{}.{seq}.{SUFFIX}",
            self.boot, self.namespace, self.pid, self.start
        )
    }

    fn from_file_name(name: &str) -> Option<Self> {
        let mut parts = name.strip_suffix(SUFFIX)?.strip_suffix('.')?.split('.');
        let identity = Self {
            boot: parts.next()?.to_owned(),
            namespace: parts.next()?.parse().ok()?,
            pid: parts.next()?.parse().ok()?,
            start: parts.next()?.parse().ok()?,
        };
        parts.next()?.parse::<u32>().ok()?;
        parts.next().is_none().then_some(identity)
    }
}

/// This process's wire log, in a folder that processes restarted on this machine share.
pub struct WireLog {
    dir: PathBuf,
    identity: Identity,
    seq: AtomicU32,
    current: Mutex<Arc<WireFile>>,
}

impl std::fmt::Debug for WireLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireLog").field("dir", &self.dir).finish()
    }
}

impl WireLog {
    /// Opens this process's log in `dir` (created if missing), removing dead processes' logs older than a
    /// week.
    pub fn open(dir: &Path) -> io::Result<Self> {
        Self::open_as(dir, Identity::current()?)
    }

    /// [`WireLog::open`] under another process's identity: what that process would have written (tests).
    pub fn open_as(dir: &Path, identity: Identity) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        remove_stale(dir, &identity);
        let first = WireFile::create(dir.join(identity.file_name(0)))?;
        Ok(Self {
            dir: dir.to_owned(),
            identity,
            seq: AtomicU32::new(0),
            current: Mutex::new(Arc::new(first)),
        })
    }

    /// The log an attempt starting now notes its calls in. The attempt keeps it for its whole run, so its
    /// note and its line name the same file even if the log moves on meanwhile.
    pub fn file(&self) -> io::Result<Arc<WireFile>> {
        let mut current = self
            .current
            .lock()
            .map_err(|_| io::Error::other("wire log lock poisoned"))?;
        if current.len.load(Ordering::Relaxed) >= ROTATE_BYTES {
            let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
            let next = Arc::new(WireFile::create(
                self.dir.join(self.identity.file_name(seq)),
            )?);
            current.retired.store(true, Ordering::Relaxed);
            *current = next;
        }
        Ok(current.clone())
    }
}

impl Drop for WireLog {
    fn drop(&mut self) {
        if let Ok(current) = self.current.lock() {
            current.retired.store(true, Ordering::Relaxed);
        }
    }
}

/// One file of a wire log.
#[derive(Debug)]
pub struct WireFile {
    path: PathBuf,
    file: File,
    len: AtomicU64,
    /// No new attempt will use it: removed when the last one that did is over.
    retired: AtomicBool,
}

impl WireFile {
    fn create(path: PathBuf) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        Ok(Self {
            path,
            file,
            len: AtomicU64::new(len),
            retired: AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records that `attempt` of job `job` is handing an unrepeatable request to the socket. One `write`
    /// on an append-only file: lines from concurrent attempts never interleave, and once it returns the line
    /// outlives this process.
    pub fn mark(&self, job: i64, attempt: u32) -> io::Result<()> {
        let line = format!("{job} {attempt}\n");
        (&self.file).write_all(line.as_bytes())?;
        self.len.fetch_add(line.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for WireFile {
    fn drop(&mut self) {
        if self.retired.load(Ordering::Relaxed) {
            // A leftover only makes a later check look further; nothing depends on the removal.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What a wire log says about an attempt that was cut off after noting an unrepeatable call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wire {
    /// The attempt's request never reached the socket: running the job again repeats nothing.
    NeverSent,
    /// It may have left (the line is there), or the log cannot be trusted to say; the reason.
    MayHaveLeft(String),
}

/// Whether `attempt` of `job`, which noted an unrepeatable call in the log at `path`, may have put it on
/// the wire.
pub fn check(path: &Path, job: i64, attempt: u32) -> Wire {
    let may = |why: &str| Wire::MayHaveLeft(why.to_owned());
    let Some(writer) = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(Identity::from_file_name)
    else {
        return may("the note names no wire log");
    };
    match (boot_id(), pid_namespace()) {
        (Ok(boot), _) if boot != writer.boot => {
            return may(
                "the machine restarted since, which may have lost the wire log's last lines",
            );
        }
        (_, Ok(namespace)) if namespace != writer.namespace => {
            return may("the process that sent it ran in another process namespace");
        }
        (Err(_), _) | (_, Err(_)) => {
            return may("this system cannot tell which processes are alive");
        }
        _ => {}
    }
    match start_time(writer.pid) {
        Ok(Some(start)) if start == writer.start => {
            return may("the process that sent it is still running");
        }
        Err(_) => return may("cannot tell whether the process that sent it is still running"),
        _ => {}
    }
    // The writer is dead: its log is final.
    let content = match std::fs::read(path) {
        Ok(content) => content,
        Err(_) => return may("its wire log is gone"),
    };
    let line = format!("{job} {attempt}");
    if content.split(|b| *b == b'\n').any(|l| l == line.as_bytes()) {
        may("its request was handed to the socket")
    } else {
        Wire::NeverSent
    }
}

fn remove_stale(dir: &Path, me: &Identity) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(writer) = name.to_str().and_then(Identity::from_file_name) else {
            continue;
        };
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > KEEP_DEAD);
        let running = writer.boot == me.boot
            && writer.namespace == me.namespace
            && start_time(writer.pid).ok().flatten() == Some(writer.start);
        if old && !running {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn boot_id() -> io::Result<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?;
    Ok(id.trim().to_owned())
}

/// The inode of this process's pid namespace (`/proc/self/ns/pid` reads `pid:[4026531836]`).
fn pid_namespace() -> io::Result<u64> {
    let link = std::fs::read_link("/proc/self/ns/pid")?;
    link.to_str()
        .and_then(|l| l.strip_prefix("pid:["))
        .and_then(|l| l.strip_suffix(']'))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| io::Error::other(format!("unexpected pid namespace {}", link.display())))
}

/// When process `pid` started (clock ticks since boot, field 22 of `/proc/<pid>/stat`), or `None` when
/// there is no such process.
fn start_time(pid: u32) -> io::Result<Option<u64>> {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // The command name (field 2) may hold spaces and parentheses; the fields after its last `)` do not.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19))
        .and_then(|s| s.parse().ok())
        .map(Some)
        .ok_or_else(|| io::Error::other(format!("unreadable /proc/{pid}/stat")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    /// A process that ran and is gone, as its wire log names it.
    fn dead_process() -> Identity {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let identity = Identity::of_process(child.id()).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        identity
    }

    #[test]
    fn a_dead_processs_log_tells_a_call_that_never_left_from_one_that_may_have() {
        let dir = tempfile::tempdir().unwrap();
        let log = WireLog::open_as(dir.path(), dead_process()).unwrap();
        let file = log.file().unwrap();
        file.mark(7, 2).unwrap();
        file.mark(17, 1).unwrap();
        assert!(matches!(
            check(file.path(), 7, 2),
            Wire::MayHaveLeft(why) if why.contains("handed to the socket")
        ));
        assert_eq!(check(file.path(), 7, 1), Wire::NeverSent);
        assert_eq!(
            check(file.path(), 1, 2),
            Wire::NeverSent,
            "not a prefix match"
        );
        assert_eq!(check(file.path(), 71, 2), Wire::NeverSent);
    }

    #[test]
    fn a_running_processs_log_proves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = WireLog::open(dir.path()).unwrap();
        let file = log.file().unwrap();
        assert!(matches!(
            check(file.path(), 7, 2),
            Wire::MayHaveLeft(why) if why.contains("still running")
        ));
    }

    #[test]
    fn a_log_from_before_a_reboot_or_another_namespace_or_gone_proves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dead_process();
        let rebooted = Identity {
            boot: "00000000-0000-0000-0000-000000000000".to_owned(),
            ..dead.clone()
        };
        let elsewhere = Identity {
            namespace: dead.namespace + 1,
            ..dead.clone()
        };
        for (identity, why) in [(rebooted, "restarted"), (elsewhere, "namespace")] {
            let log = WireLog::open_as(dir.path(), identity).unwrap();
            let file = log.file().unwrap();
            assert!(
                matches!(check(file.path(), 7, 2), Wire::MayHaveLeft(w) if w.contains(why)),
                "{why}"
            );
        }
        let gone = dir.path().join(dead.file_name(3));
        assert!(matches!(check(&gone, 7, 2), Wire::MayHaveLeft(w) if w.contains("gone")));
        assert!(matches!(
            check(&dir.path().join("notes.txt"), 7, 2),
            Wire::MayHaveLeft(w) if w.contains("names no wire log")
        ));
    }

    #[test]
    fn a_full_log_moves_on_and_the_old_file_goes_when_its_last_attempt_ends() {
        let dir = tempfile::tempdir().unwrap();
        let log = WireLog::open_as(dir.path(), dead_process()).unwrap();
        let first = log.file().unwrap();
        first.len.store(ROTATE_BYTES, Ordering::Relaxed);
        let second = log.file().unwrap();
        assert_ne!(first.path(), second.path());
        assert!(first.path().exists(), "an attempt still holds it");
        let old = first.path().to_owned();
        drop(first);
        assert!(!old.exists());
        assert_eq!(log.file().unwrap().path(), second.path());
        let current = second.path().to_owned();
        drop(second);
        assert!(
            current.exists(),
            "the current file stays while the log is open"
        );
    }

    #[test]
    fn only_old_logs_of_dead_processes_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dead_process();
        let old = dir.path().join(dead.file_name(0));
        let young = dir.path().join(dead.file_name(1));
        let mine = dir.path().join(Identity::current().unwrap().file_name(9));
        let other = dir.path().join("README");
        for path in [&old, &young, &mine, &other] {
            File::create(path).unwrap();
        }
        let week_ago = SystemTime::now() - KEEP_DEAD - Duration::from_secs(60);
        for path in [&old, &mine, &other] {
            File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(week_ago)
                .unwrap();
        }
        let _log = WireLog::open(dir.path()).unwrap();
        assert!(!old.exists());
        assert!(young.exists() && mine.exists() && other.exists());
    }

    #[test]
    fn file_names_carry_the_writer() {
        let me = Identity::current().unwrap();
        assert_eq!(Identity::from_file_name(&me.file_name(4)), Some(me));
        for bad in [
            "x.wire",
            "a.1.2.3.wire",
            "a.b.2.3.4.wire",
            "a.1.2.3.4.5.wire",
            "a.1.2.3.4",
        ] {
            assert_eq!(Identity::from_file_name(bad), None, "{bad}");
        }
    }
}
