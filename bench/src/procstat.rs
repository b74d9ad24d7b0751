//! CPU time and peak memory from /proc, for the bot processes and for this process's own threads.

use std::path::Path;
use std::sync::OnceLock;

/// Clock ticks per second for /proc times; 100 on every Linux this runs on, asked once to be sure.
fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// utime + stime in seconds from a `stat` file (of a process or one of its threads), and its `comm`.
fn stat_cpu(path: &Path) -> Option<(String, f64)> {
    let text = std::fs::read_to_string(path).ok()?;
    // comm may contain spaces and parentheses, so split at the last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // After comm: state is field 3 of proc(5), so utime (14) and stime (15) sit at offsets 11 and 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((comm, (utime + stime) / ticks_per_second()))
}

/// CPU seconds a process has used so far, all threads included.
pub fn process_cpu(pid: u32) -> Option<f64> {
    stat_cpu(Path::new(&format!("/proc/{pid}/stat"))).map(|(_, cpu)| cpu)
}

/// Peak resident set size (VmHWM) in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// This process's CPU, in total and for the threads named `load-gen` and `fakes`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SelfCpu {
    pub total: f64,
    pub load_gen: f64,
    pub fakes: f64,
}

impl SelfCpu {
    pub fn sample() -> SelfCpu {
        let mut out = SelfCpu {
            total: stat_cpu(Path::new("/proc/self/stat")).map_or(0.0, |(_, c)| c),
            ..SelfCpu::default()
        };
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for task in tasks.flatten() {
                if let Some((comm, cpu)) = stat_cpu(&task.path().join("stat")) {
                    match comm.as_str() {
                        "load-gen" => out.load_gen += cpu,
                        "fakes" => out.fakes += cpu,
                        _ => {}
                    }
                }
            }
        }
        out
    }

    pub fn since(self, before: SelfCpu) -> SelfCpu {
        SelfCpu {
            total: self.total - before.total,
            load_gen: self.load_gen - before.load_gen,
            fakes: self.fakes - before.fakes,
        }
    }
}
