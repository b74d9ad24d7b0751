//! Turning raw samples into the numbers the issue asks for, and printing them (terminal, JSON, markdown).

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::fakes::ReplyTally;
use crate::load::LoadResult;
use crate::{Args, Sample, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    Fast,
    SlowConnector,
    /// The slow Connector under a paced load over many conversations (see `--paced-rate`).
    SlowPaced,
}

pub struct StepInput<'a> {
    pub target: &'a Target,
    pub scenario: Scenario,
    pub connections: usize,
    pub load: &'a LoadResult,
    pub expected: &'a HashSet<u64>,
    pub tally: &'a ReplyTally,
    /// Before the warm-up, at the start and end of the measured window, and once replies were drained.
    pub start: Sample,
    pub window_start: Sample,
    pub window_end: Sample,
    pub drained: Sample,
    pub peak_rss_mib: f64,
    pub token_requests: u64,
    pub connector_delay_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Replies {
    /// Activities acknowledged with 2xx (warm-up included): each owes exactly one reply.
    pub expected: usize,
    pub delivered: usize,
    pub missing: usize,
    pub duplicated: u64,
    /// Replies naming an activity that was never acknowledged (e.g. its request timed out).
    pub unexpected: usize,
    /// Connector calls that named no bench activity at all.
    pub unmatched_calls: u64,
    /// Every answered Connector call, and those carrying the fake token endpoint's bearer token.
    pub calls: u64,
    pub with_token: u64,
    /// Delivered replies per second, from the start of the load to the last reply.
    pub per_s: f64,
    /// From the end of the load to the last reply.
    pub drain_secs: f64,
    pub complete: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cpu {
    /// Bot CPU from the start of the warm-up until every reply was delivered (or the wait ran out).
    pub bot_secs: f64,
    pub bot_secs_per_1000: f64,
    /// Cores the bot used during the measured window.
    pub bot_cores: f64,
    /// This process (load generator + fakes) over the same span as `bot_secs`.
    pub bench_secs: f64,
    pub bench_load_gen_secs: f64,
    pub bench_fakes_secs: f64,
    pub bench_cores: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub target: String,
    pub scenario: Scenario,
    pub connections: usize,
    pub connector_delay_ms: u64,
    pub measured_secs: f64,
    /// Acknowledgements inside the measured window.
    pub acks: u64,
    pub activities_per_s: f64,
    pub latency: Latency,
    pub sent: u64,
    pub measured_failures: u64,
    pub transport_errors: u64,
    pub statuses: BTreeMap<String, u64>,
    pub connections_opened: u64,
    pub replies: Replies,
    pub cpu: Cpu,
    pub peak_rss_mib: f64,
    pub token_requests: u64,
}

fn secs(a: std::time::Instant, b: std::time::Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64()
}

impl StepReport {
    pub fn build(input: StepInput<'_>) -> StepReport {
        let StepInput {
            target,
            scenario,
            connections,
            load,
            expected,
            tally,
            start,
            window_start,
            window_end,
            drained,
            peak_rss_mib,
            token_requests,
            connector_delay_ms,
        } = input;
        let measured_secs = secs(window_start.at, window_end.at);
        let delivered = expected
            .iter()
            .filter(|id| tally.seen.contains_key(id))
            .count();
        let duplicated: u64 = tally
            .seen
            .values()
            .map(|&n| u64::from(n.saturating_sub(1)))
            .sum();
        let unexpected = tally
            .seen
            .keys()
            .filter(|id| !expected.contains(id))
            .count();
        let load_end = load.end.unwrap_or(window_end.at);
        let (per_s, drain_secs) = match tally.last_reply {
            Some(last) => (
                delivered as f64 / secs(start.at, last).max(1e-9),
                secs(load_end, last),
            ),
            None => (0.0, f64::NAN),
        };
        let bot_secs = drained.bot_cpu - start.bot_cpu;
        let own = drained.own.since(start.own);
        let acked_total = load.acked.len();
        StepReport {
            target: target.label.clone(),
            scenario,
            connections,
            connector_delay_ms,
            measured_secs,
            acks: load.measured_acks,
            activities_per_s: load.measured_acks as f64 / measured_secs.max(1e-9),
            latency: Latency {
                p50_ms: load.percentile_ms(50.0),
                p90_ms: load.percentile_ms(90.0),
                p99_ms: load.percentile_ms(99.0),
                max_ms: load.percentile_ms(100.0),
                mean_ms: load.mean_ms(),
            },
            sent: load.sent,
            measured_failures: load.measured_failures,
            transport_errors: load.transport_errors,
            statuses: load
                .statuses
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            connections_opened: load.connects,
            replies: Replies {
                expected: expected.len(),
                delivered,
                missing: expected.len() - delivered,
                duplicated,
                unexpected,
                unmatched_calls: tally.unmatched,
                calls: tally.replies,
                with_token: tally.with_token,
                per_s,
                drain_secs,
                complete: delivered == expected.len(),
            },
            cpu: Cpu {
                bot_secs,
                bot_secs_per_1000: bot_secs / (acked_total.max(1) as f64) * 1000.0,
                bot_cores: (window_end.bot_cpu - window_start.bot_cpu) / measured_secs.max(1e-9),
                bench_secs: own.total,
                bench_load_gen_secs: own.load_gen,
                bench_fakes_secs: own.fakes,
                bench_cores: window_end.own.since(window_start.own).total / measured_secs.max(1e-9),
            },
            peak_rss_mib,
            token_requests,
        }
    }

    pub fn one_line(&self) -> String {
        format!(
            "{} acks/s, p50 {} ms, p99 {} ms, replies {}/{} ({} missing, {} dup), bot {} cores, \
             {} CPU s/1000, peak RSS {} MiB, bench {} cores",
            num(self.activities_per_s),
            num(self.latency.p50_ms),
            num(self.latency.p99_ms),
            self.replies.delivered,
            self.replies.expected,
            self.replies.missing,
            self.replies.duplicated,
            num(self.cpu.bot_cores),
            num(self.cpu.bot_secs_per_1000),
            num(self.peak_rss_mib),
            num(self.cpu.bench_cores),
        )
    }
}

/// Three significant digits or so: enough for a benchmark, short enough for a table.
fn num(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn ratio(x: f64) -> String {
    if x.is_finite() {
        format!("{}×", num(x))
    } else {
        "–".into()
    }
}

#[derive(Debug, Serialize)]
pub struct Comparison {
    pub connections: usize,
    pub fieldbot: String,
    pub node: String,
    /// fieldbot / Node for each metric.
    pub activities_per_s: f64,
    pub p50: f64,
    pub p99: f64,
    pub cpu_per_1000: f64,
    pub peak_rss: f64,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub fieldbot: String,
    pub name: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub node: String,
    pub fieldbot_commit: String,
}

#[derive(Debug, Serialize)]
pub struct Settings {
    pub connections: Vec<usize>,
    pub warmup_secs: f64,
    pub duration_secs: f64,
    pub reply_wait_secs: f64,
    pub slow_delay_ms: Option<u64>,
    pub slow_connections: usize,
    pub slow_duration_secs: f64,
    pub slow_reply_wait_secs: f64,
    /// The paced slow step: activities/s in all (0: not run), conversations, fieldbot's `jobs.concurrency`.
    pub paced_rate: f64,
    pub paced_channels: usize,
    pub paced_concurrency: usize,
    /// 0: one Teams channel per connection.
    pub channels: usize,
    pub fieldbot_env: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Document {
    pub generated_at: String,
    pub command: String,
    pub machine: Machine,
    pub settings: Settings,
    pub steps: Vec<StepReport>,
    pub comparisons: Vec<Comparison>,
    pub checks: Vec<Check>,
    #[serde(skip)]
    labels: Vec<String>,
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The commit the binary was built from, flagged when the build included uncommitted changes.
fn fieldbot_commit(dir: &str) -> String {
    let commit = command_output("git", &["-C", dir, "rev-parse", "--short", "HEAD"]);
    let changed = command_output(
        "git",
        &[
            "-C",
            dir,
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            "src",
            "migrations",
            "Cargo.toml",
            "Cargo.lock",
        ],
    );
    if changed.is_empty() {
        commit
    } else {
        format!("{commit} + uncommitted changes")
    }
}

impl Document {
    pub fn new(args: &Args, targets: &[Target], steps: Vec<StepReport>) -> Document {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_default();
        let fieldbot_dir = args.fieldbot_dir.to_string_lossy().into_owned();
        let machine = Machine {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            node: if args.node_dir.is_some() {
                command_output(&args.node_bin, &["--version"])
            } else {
                String::new()
            },
            fieldbot_commit: args
                .fieldbot_commit
                .clone()
                .unwrap_or_else(|| fieldbot_commit(&fieldbot_dir)),
        };
        let settings = Settings {
            connections: args.connections.clone(),
            warmup_secs: args.warmup_secs,
            duration_secs: args.duration_secs,
            reply_wait_secs: args.reply_wait_secs,
            slow_delay_ms: (!args.no_slow).then_some(args.slow_delay_ms),
            slow_connections: args.slow_connections,
            slow_duration_secs: args.slow_duration_secs,
            slow_reply_wait_secs: args.slow_reply_wait_secs,
            paced_rate: if args.no_slow { 0.0 } else { args.paced_rate },
            paced_channels: args.paced_channels,
            paced_concurrency: args.paced_concurrency,
            channels: args.channels,
            fieldbot_env: args
                .fieldbot_env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        };
        let labels: Vec<String> = targets.iter().map(|t| t.label.clone()).collect();
        let mut doc = Document {
            generated_at: command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
            command: "scripts/bench".into(),
            machine,
            settings,
            steps,
            comparisons: Vec::new(),
            checks: Vec::new(),
            labels,
        };
        doc.compare();
        doc
    }

    /// How a slow step's load was offered, for its rows.
    fn slow_load(&self, s: &StepReport) -> String {
        match s.scenario {
            Scenario::SlowPaced if s.target.starts_with("fieldbot") => format!(
                "paced {}/s over {} conversations, jobs.concurrency {}",
                num(self.settings.paced_rate),
                self.settings.paced_channels,
                self.settings.paced_concurrency
            ),
            Scenario::SlowPaced => format!(
                "paced {}/s over {} conversations",
                num(self.settings.paced_rate),
                self.settings.paced_channels
            ),
            _ => "load as fast as acked, a conversation per connection".to_owned(),
        }
    }

    fn step(&self, scenario: Scenario, label: &str, connections: usize) -> Option<&StepReport> {
        self.steps
            .iter()
            .find(|s| s.scenario == scenario && s.target == label && s.connections == connections)
    }

    fn fieldbot_labels(&self) -> Vec<String> {
        self.labels
            .iter()
            .filter(|l| l.starts_with("fieldbot"))
            .cloned()
            .collect()
    }

    fn compare(&mut self) {
        let mut comparisons = Vec::new();
        let mut checks = Vec::new();
        for &c in &self.settings.connections {
            let Some(node) = self.step(Scenario::Fast, "node", c) else {
                continue;
            };
            for label in self.fieldbot_labels() {
                let Some(f) = self.step(Scenario::Fast, &label, c) else {
                    continue;
                };
                let cmp = Comparison {
                    connections: c,
                    fieldbot: label.clone(),
                    node: node.target.clone(),
                    activities_per_s: f.activities_per_s / node.activities_per_s,
                    p50: f.latency.p50_ms / node.latency.p50_ms,
                    p99: f.latency.p99_ms / node.latency.p99_ms,
                    cpu_per_1000: f.cpu.bot_secs_per_1000 / node.cpu.bot_secs_per_1000,
                    peak_rss: f.peak_rss_mib / node.peak_rss_mib,
                };
                if c == 64 {
                    checks.push(Check {
                        fieldbot: label.clone(),
                        name: "throughput at 64 connections".into(),
                        target: "≥ 10× Node".into(),
                        measured: ratio(cmp.activities_per_s),
                        met: cmp.activities_per_s >= 10.0,
                    });
                    checks.push(Check {
                        fieldbot: label.clone(),
                        name: "p99 at 64 connections".into(),
                        target: "≤ 5 ms".into(),
                        measured: format!("{} ms", num(f.latency.p99_ms)),
                        met: f.latency.p99_ms <= 5.0,
                    });
                    checks.push(Check {
                        fieldbot: label.clone(),
                        name: "peak RSS".into(),
                        target: "≤ 1/4 of Node (0.25×)".into(),
                        measured: ratio(cmp.peak_rss),
                        met: cmp.peak_rss <= 0.25,
                    });
                    checks.push(Check {
                        fieldbot: label.clone(),
                        name: "CPU per activity".into(),
                        target: "≤ 1/10 of Node (0.1×)".into(),
                        measured: ratio(cmp.cpu_per_1000),
                        met: cmp.cpu_per_1000 <= 0.1,
                    });
                }
                comparisons.push(cmp);
            }
        }
        for s in self
            .steps
            .iter()
            .filter(|s| s.scenario != Scenario::Fast && s.target.starts_with("fieldbot"))
        {
            let load = self.slow_load(s);
            checks.push(Check {
                fieldbot: s.target.clone(),
                name: format!(
                    "p99 ack with the Connector answering after {} ms ({load})",
                    s.connector_delay_ms
                ),
                target: "< 50 ms".into(),
                measured: format!("{} ms", num(s.latency.p99_ms)),
                met: s.latency.p99_ms < 50.0,
            });
            checks.push(Check {
                fieldbot: s.target.clone(),
                name: format!("every reply arrives (slow Connector, {load})"),
                target: format!(
                    "{} of {} within {} s",
                    s.replies.expected, s.replies.expected, self.settings.slow_reply_wait_secs
                ),
                measured: format!(
                    "{} of {} ({} dup)",
                    s.replies.delivered, s.replies.expected, s.replies.duplicated
                ),
                met: s.replies.complete && s.replies.duplicated == 0,
            });
        }
        self.comparisons = comparisons;
        self.checks = checks;
    }

    /// One table per concurrency (metric rows, a column per bot, then fieldbot/Node ratios), the slow
    /// Connector table, and the targets.
    fn tables(&self) -> Vec<(String, Vec<Vec<String>>)> {
        let mut out = Vec::new();
        let node = self.labels.iter().find(|l| *l == "node").cloned();
        let fieldbots = self.fieldbot_labels();
        for &c in &self.settings.connections {
            let steps: Vec<&StepReport> = self
                .labels
                .iter()
                .filter_map(|l| self.step(Scenario::Fast, l, c))
                .collect();
            if steps.is_empty() {
                continue;
            }
            let node_step = node.as_ref().and_then(|n| self.step(Scenario::Fast, n, c));
            let ratio_cols: Vec<&StepReport> = if node_step.is_some() {
                fieldbots
                    .iter()
                    .filter_map(|l| self.step(Scenario::Fast, l, c))
                    .collect()
            } else {
                Vec::new()
            };
            let mut header = vec!["metric".to_owned()];
            header.extend(steps.iter().map(|s| s.target.clone()));
            header.extend(ratio_cols.iter().map(|s| format!("{} / node", s.target)));
            let mut rows = vec![header];
            type Metric = (&'static str, fn(&StepReport) -> f64);
            let metrics: [Metric; 5] = [
                ("activities/s", |s| s.activities_per_s),
                ("p50 latency (ms)", |s| s.latency.p50_ms),
                ("p99 latency (ms)", |s| s.latency.p99_ms),
                ("CPU s / 1,000 activities", |s| s.cpu.bot_secs_per_1000),
                ("peak RSS (MiB)", |s| s.peak_rss_mib),
            ];
            for (name, get) in metrics {
                let mut row = vec![name.to_owned()];
                row.extend(steps.iter().map(|s| num(get(s))));
                if let Some(n) = node_step {
                    row.extend(ratio_cols.iter().map(|s| ratio(get(s) / get(n))));
                }
                rows.push(row);
            }
            type Extra = (&'static str, fn(&StepReport) -> String);
            let extra: [Extra; 5] = [
                ("bot cores used (measured window)", |s| num(s.cpu.bot_cores)),
                ("replies/s (load start → last reply)", |s| {
                    num(s.replies.per_s)
                }),
                ("replies delivered / missing / dup", |s| {
                    format!(
                        "{} / {} / {}",
                        s.replies.delivered, s.replies.missing, s.replies.duplicated
                    )
                }),
                ("reply drain after load (s)", |s| num(s.replies.drain_secs)),
                ("bench tool cores (gen + fakes)", |s| num(s.cpu.bench_cores)),
            ];
            for (name, get) in extra {
                let mut row = vec![name.to_owned()];
                row.extend(steps.iter().map(|s| get(s)));
                row.extend(ratio_cols.iter().map(|_| String::new()));
                rows.push(row);
            }
            let measured = steps.first().map_or(0.0, |s| s.measured_secs);
            out.push((
                format!(
                    "{c} connections ({measured:.1} s measured after {:.1} s warm-up)",
                    self.settings.warmup_secs
                ),
                rows,
            ));
        }

        let slow: Vec<&StepReport> = self
            .steps
            .iter()
            .filter(|s| s.scenario != Scenario::Fast)
            .collect();
        if let Some(first) = slow.first() {
            let mut rows = vec![vec![
                "bot".to_owned(),
                "activities/s".to_owned(),
                "p50 ack (ms)".to_owned(),
                "p99 ack (ms)".to_owned(),
                "max ack (ms)".to_owned(),
                "replies delivered / expected".to_owned(),
                "replies/s".to_owned(),
                "duplicated".to_owned(),
                "last reply after load (s)".to_owned(),
            ]];
            for s in &slow {
                rows.push(vec![
                    format!("{} ({})", s.target, self.slow_load(s)),
                    num(s.activities_per_s),
                    num(s.latency.p50_ms),
                    num(s.latency.p99_ms),
                    num(s.latency.max_ms),
                    format!("{} / {}", s.replies.delivered, s.replies.expected),
                    num(s.replies.per_s),
                    s.replies.duplicated.to_string(),
                    num(s.replies.drain_secs),
                ]);
            }
            out.push((
                format!(
                    "slow Connector: replies answered after {} ms, {} connections, {} s, replies awaited up to {} s",
                    first.connector_delay_ms,
                    first.connections,
                    num(first.measured_secs),
                    num(self.settings.slow_reply_wait_secs)
                ),
                rows,
            ));
        }

        if !self.checks.is_empty() {
            let mut rows = vec![vec![
                "bot".to_owned(),
                "target".to_owned(),
                "wanted".to_owned(),
                "measured".to_owned(),
                "met".to_owned(),
            ]];
            for c in &self.checks {
                rows.push(vec![
                    c.fieldbot.clone(),
                    c.name.clone(),
                    c.target.clone(),
                    c.measured.clone(),
                    if c.met { "yes" } else { "NO" }.to_owned(),
                ]);
            }
            out.push(("targets (issue 8)".to_owned(), rows));
        }
        out
    }

    fn preamble(&self) -> String {
        let m = &self.machine;
        format!(
            "{} · {} CPUs ({}) · Linux {} · node {} · fieldbot {}",
            self.generated_at, m.cpus, m.cpu_model, m.kernel, m.node, m.fieldbot_commit
        )
    }

    pub fn text_tables(&self) -> String {
        let mut out = format!("{}\n", self.preamble());
        for (title, rows) in self.tables() {
            out.push_str(&format!("\n== {title} ==\n"));
            let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
                .map(|i| {
                    rows.iter()
                        .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            for row in &rows {
                let cells: Vec<String> = row
                    .iter()
                    .zip(&widths)
                    .enumerate()
                    .map(|(i, (cell, w))| {
                        let pad = w.saturating_sub(cell.chars().count());
                        if i == 0 {
                            format!("{cell}{}", " ".repeat(pad))
                        } else {
                            format!("{}{cell}", " ".repeat(pad))
                        }
                    })
                    .collect();
                out.push_str(cells.join("  ").trim_end());
                out.push('\n');
            }
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = format!(
            "# fieldbot load benchmark\n\n`{}` — {}\n",
            self.command,
            self.preamble()
        );
        out.push_str(
            "\nfieldbot runs in production mode (JWT validation against a local fake OpenID/JWKS, SQLite \
             store with every acknowledged write synced to disk, durable job queue); the Node bot is a Bot Framework SDK v4 \
             echo bot on express with authentication disabled. Both reply through the same fake \
             Connector. Latency is the webhook's HTTP response time; CPU counts from the start of the \
             warm-up until every reply was delivered.\n",
        );
        for (title, rows) in self.tables() {
            out.push_str(&format!("\n## {title}\n\n"));
            for (i, row) in rows.iter().enumerate() {
                out.push_str(&format!("| {} |\n", row.join(" | ")));
                if i == 0 {
                    let align: Vec<&str> = (0..row.len())
                        .map(|c| if c == 0 { "---" } else { "---:" })
                        .collect();
                    out.push_str(&format!("| {} |\n", align.join(" | ")));
                }
            }
        }
        out
    }
}
