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
//! page cache would be gone), and the process that wrote it no longer runs, so it can no longer write.
//! A writer holds an exclusive lock (`flock`) on its log file for as long as it has the file open, and the
//! kernel drops the lock when the process dies, however it dies; a checker that gets a shared lock knows
//! the writer is gone. This works across process namespaces (a container restarted with its volume) and
//! needs no pid. Anything else, or a log that is missing, answers "may have left", and the job is held as
//! before: the log can only spare a hold, never cause a repeat.

use std::fs::{File, OpenOptions, TryLockError};
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
const REFUSED: &str = "refused";

/// This process's wire log, in a folder that processes restarted on this machine share. Its files stay
/// when it closes (a process that stops cleanly leaves them as a killed one would); the next process to
/// open a log in the folder removes those of dead processes once they are a week old.
pub struct WireLog {
    dir: PathBuf,
    /// `<boot>.<process instance>`: the boot, for the reader; the instance keeps processes apart. Short,
    /// because every note names its file.
    prefix: String,
    seq: AtomicU32,
    current: Mutex<Arc<WireFile>>,
}

impl std::fmt::Debug for WireLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireLog").field("dir", &self.dir).finish()
    }
}

impl WireLog {
    /// Opens a log for this process in `dir` (created if missing), removing dead processes' logs older than
    /// a week.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        remove_stale(dir);
        let instance = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("{}.{}", boot_id()?, instance.get(..12).unwrap_or(&instance));
        let first = WireFile::create(dir.join(format!("{prefix}.0.{SUFFIX}")))?;
        Ok(Self {
            dir: dir.to_owned(),
            prefix,
            seq: AtomicU32::new(0),
            current: Mutex::new(Arc::new(first)),
        })
    }

    /// What the log file named `name` in this log's folder (a note names it) says about `attempt` of `job`.
    /// A file of this very log is read while this process still writes it, which is final for the job once
    /// no attempt of this process runs it any more: `running_here` says whether one does.
    pub fn check(
        &self,
        name: &str,
        job: i64,
        attempt: u32,
        running_here: impl FnOnce() -> bool,
    ) -> Wire {
        if writer_boot(name).is_none() || name.contains(['/', '\\']) {
            return Wire::MayHaveLeft("the note names no wire log".to_owned());
        }
        let path = self.dir.join(name);
        if name.starts_with(&format!("{}.", self.prefix)) {
            // A call's line is written before its request is released, so every line an attempt that has
            // ended could write is in the file. (An attempt that never started, say a claim whose job never
            // reached this process's worker, wrote none.)
            if running_here() {
                return Wire::MayHaveLeft(
                    "an attempt of this process is still running it".to_owned(),
                );
            }
            return match std::fs::read(&path) {
                Ok(content) => verdict(&content, job, attempt),
                Err(_) => Wire::MayHaveLeft("its wire log cannot be read".to_owned()),
            };
        }
        check(&path, job, attempt)
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
                self.dir.join(format!("{}.{seq}.{SUFFIX}", self.prefix)),
            )?);
            current.retired.store(true, Ordering::Relaxed);
            *current = next;
        }
        Ok(current.clone())
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
        // Held until the file is closed: by the kernel, when this process dies.
        file.try_lock().map_err(io::Error::from)?;
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

    /// The file's name in its folder, as a note names it.
    pub fn name(&self) -> &str {
        self.path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
    }

    /// Records that `attempt` of job `job` is handing an unrepeatable request to the socket. One `write`
    /// on an append-only file: lines from concurrent attempts never interleave, and once it returns the line
    /// outlives this process.
    pub fn mark(&self, job: i64, attempt: u32) -> io::Result<()> {
        self.append(&format!("{job} {attempt}\n"))
    }

    /// Records that the request `attempt` of job `job` last marked was answered without being done (a
    /// non-2xx status): until it marks another, the attempt has nothing on the wire.
    pub fn mark_refused(&self, job: i64, attempt: u32) -> io::Result<()> {
        self.append(&format!("{job} {attempt} {REFUSED}\n"))
    }

    fn append(&self, line: &str) -> io::Result<()> {
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

/// Whether a wire log can be kept in `dir`: it can be created, written and locked there (`fieldbot doctor`).
pub fn probe(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(".probe-{}", uuid::Uuid::new_v4().simple()));
    let result = WireFile::create(path.clone()).and_then(|file| file.mark(0, 0));
    let _ = std::fs::remove_file(&path);
    result
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
fn check(path: &Path, job: i64, attempt: u32) -> Wire {
    let may = |why: &str| Wire::MayHaveLeft(why.to_owned());
    let Some(boot) = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(writer_boot)
    else {
        return may("the note names no wire log");
    };
    match boot_id() {
        Ok(now) if now == boot => {}
        Ok(_) => {
            return may(
                "the machine restarted since, which may have lost the wire log's last lines",
            );
        }
        Err(_) => return may("this system cannot tell whether it restarted"),
    }
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(_) => return may("its wire log is gone"),
    };
    match file.try_lock_shared() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return may("the process that sent it is still running"),
        Err(TryLockError::Error(_)) => {
            return may("cannot tell whether the process that sent it is still running");
        }
    }
    // The writer is gone: its log is final.
    let mut content = Vec::new();
    if io::Read::read_to_end(&mut file, &mut content).is_err() {
        return may("its wire log cannot be read");
    }
    verdict(&content, job, attempt)
}

/// What a final wire log's `content` says about `attempt` of `job`: its last line for it wins.
fn verdict(content: &[u8], job: i64, attempt: u32) -> Wire {
    let left = format!("{job} {attempt}");
    let refused = format!("{left} {REFUSED}");
    let on_the_wire = content.split(|b| *b == b'\n').fold(false, |on, line| {
        if line == left.as_bytes() {
            true
        } else if line == refused.as_bytes() {
            false
        } else {
            on
        }
    });
    if on_the_wire {
        Wire::MayHaveLeft("its request was handed to the socket".to_owned())
    } else {
        Wire::NeverSent
    }
}

/// The boot a log file's name says it was written in.
fn writer_boot(name: &str) -> Option<&str> {
    let mut parts = name.strip_suffix(SUFFIX)?.strip_suffix('.')?.split('.');
    let boot = parts.next()?;
    parts.next()?;
    parts.next()?.parse::<u32>().ok()?;
    parts.next().is_none().then_some(boot)
}

/// Whether the process that wrote the log at `path` is gone (its lock is free).
fn abandoned(path: &Path) -> bool {
    File::open(path).is_ok_and(|f| f.try_lock_shared().is_ok())
}

fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let path = entry.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(writer_boot)
            .is_none()
        {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > KEEP_DEAD);
        if old && abandoned(&path) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// This boot, as the first 12 hex digits of the kernel's random boot id (48 random bits).
fn boot_id() -> io::Result<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?;
    let digits: String = id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(12)
        .collect();
    if digits.len() == 12 {
        Ok(digits)
    } else {
        Err(io::Error::other(format!("unexpected boot id {id:?}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    /// A log whose process is gone: closed (its lock released) with its files left behind.
    fn dead_log(dir: &Path, lines: &[(i64, u32)]) -> PathBuf {
        let log = WireLog::open(dir).unwrap();
        let file = log.file().unwrap();
        for (job, attempt) in lines {
            file.mark(*job, *attempt).unwrap();
        }
        file.path().to_owned()
    }

    #[test]
    fn a_dead_processs_log_tells_a_call_that_never_left_from_one_that_may_have() {
        let dir = tempfile::tempdir().unwrap();
        let path = dead_log(dir.path(), &[(7, 2), (17, 1)]);
        assert!(matches!(
            check(&path, 7, 2),
            Wire::MayHaveLeft(why) if why.contains("handed to the socket")
        ));
        assert_eq!(check(&path, 7, 1), Wire::NeverSent);
        assert_eq!(check(&path, 1, 2), Wire::NeverSent, "not a prefix match");
        assert_eq!(check(&path, 71, 2), Wire::NeverSent);
    }

    /// A request answered "not done" leaves the attempt with nothing on the wire, until it sends another.
    #[test]
    fn a_refusal_takes_back_the_line_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = WireLog::open(dir.path()).unwrap();
        let file = log.file().unwrap();
        file.mark(7, 2).unwrap();
        file.mark(8, 1).unwrap();
        file.mark_refused(7, 2).unwrap();
        file.mark(9, 1).unwrap();
        file.mark_refused(9, 1).unwrap();
        file.mark(9, 1).unwrap();
        let path = file.path().to_owned();
        drop(file);
        drop(log);
        assert_eq!(check(&path, 7, 2), Wire::NeverSent);
        assert!(matches!(check(&path, 8, 1), Wire::MayHaveLeft(_)));
        assert!(
            matches!(check(&path, 9, 1), Wire::MayHaveLeft(_)),
            "sent again after the refusal"
        );
    }

    #[test]
    fn a_log_still_open_proves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = WireLog::open(dir.path()).unwrap();
        let file = log.file().unwrap();
        assert!(matches!(
            check(file.path(), 7, 2),
            Wire::MayHaveLeft(why) if why.contains("still running")
        ));
        drop(file);
        drop(log);
        let path = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        assert_eq!(
            check(&path, 7, 2),
            Wire::NeverSent,
            "closed: its writer is gone"
        );
    }

    #[test]
    fn a_log_from_before_a_reboot_or_gone_proves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dead_log(dir.path(), &[]);
        let name = path.file_name().unwrap().to_str().unwrap();
        let (_, rest) = name.split_once('.').unwrap();
        let rebooted = dir.path().join(format!("000000000000.{rest}"));
        std::fs::rename(&path, &rebooted).unwrap();
        assert!(matches!(check(&rebooted, 7, 2), Wire::MayHaveLeft(w) if w.contains("restarted")));
        assert!(matches!(check(&path, 7, 2), Wire::MayHaveLeft(w) if w.contains("gone")));
        assert!(matches!(
            check(&dir.path().join("notes.txt"), 7, 2),
            Wire::MayHaveLeft(w) if w.contains("names no wire log")
        ));
    }

    #[test]
    fn a_full_log_moves_on_and_the_old_file_goes_when_its_last_attempt_ends() {
        let dir = tempfile::tempdir().unwrap();
        let log = WireLog::open(dir.path()).unwrap();
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
        drop(log);
        assert!(current.exists(), "the current file outlives the process");
    }

    #[test]
    fn only_old_logs_of_dead_processes_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let old = dead_log(dir.path(), &[]);
        let young = dead_log(dir.path(), &[]);
        let running = WireLog::open(dir.path()).unwrap();
        let open = running.file().unwrap().path().to_owned();
        let other = dir.path().join("README");
        File::create(&other).unwrap();
        let week_ago = SystemTime::now() - KEEP_DEAD - Duration::from_secs(60);
        for path in [&old, &open, &other] {
            File::options()
                .append(true)
                .open(path)
                .unwrap()
                .set_modified(week_ago)
                .unwrap();
        }
        let _log = WireLog::open(dir.path()).unwrap();
        assert!(!old.exists());
        assert!(young.exists() && open.exists() && other.exists());
    }

    #[test]
    fn a_probe_leaves_nothing_behind_and_fails_where_no_log_can_be_kept() {
        let dir = tempfile::tempdir().unwrap();
        probe(&dir.path().join("wire")).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("wire")).unwrap().count(),
            0
        );
        let file = dir.path().join("a-file");
        File::create(&file).unwrap();
        assert!(probe(&file.join("wire")).is_err());
    }

    #[test]
    fn a_log_checks_only_files_of_its_own_folder() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dead_log(dir.path(), &[(7, 2)]);
        let name = dead.file_name().unwrap().to_str().unwrap();
        let log = WireLog::open(dir.path()).unwrap();
        assert_eq!(log.check(name, 7, 1, || false), Wire::NeverSent);
        assert!(matches!(
            log.check(name, 7, 2, || false),
            Wire::MayHaveLeft(_)
        ));
        for bad in ["../x/a.b.0.wire", "/tmp/a.b.0.wire", "notes"] {
            assert!(
                matches!(log.check(bad, 7, 1, || false), Wire::MayHaveLeft(w) if w.contains("names no")),
                "{bad}"
            );
        }
    }

    /// Another process's open log proves nothing; this process's own does, for a job none of its attempts
    /// still runs.
    #[test]
    fn a_process_reads_its_own_log_for_jobs_it_no_longer_runs() {
        let dir = tempfile::tempdir().unwrap();
        let other = WireLog::open(dir.path()).unwrap();
        let theirs = other.file().unwrap();
        let log = WireLog::open(dir.path()).unwrap();
        assert!(matches!(
            log.check(theirs.name(), 7, 1, || false),
            Wire::MayHaveLeft(w) if w.contains("still running")
        ));
        let mine = log.file().unwrap();
        mine.mark(8, 1).unwrap();
        assert_eq!(log.check(mine.name(), 7, 1, || false), Wire::NeverSent);
        assert!(matches!(
            log.check(mine.name(), 8, 1, || false),
            Wire::MayHaveLeft(w) if w.contains("handed to the socket")
        ));
        assert!(matches!(
            log.check(mine.name(), 7, 1, || true),
            Wire::MayHaveLeft(w) if w.contains("this process is still running")
        ));
    }

    #[test]
    fn file_names_carry_the_boot() {
        assert_eq!(writer_boot("b-1.f00.4.wire"), Some("b-1"));
        for bad in ["x.wire", "b.f.wire", "b.f.x.wire", "b.f.1.2.wire", "b.f.1"] {
            assert_eq!(writer_boot(bad), None, "{bad}");
        }
    }
}
