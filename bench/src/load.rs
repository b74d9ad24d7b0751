//! Closed-loop load: N keep-alive HTTP/1.1 connections, each sending the next activity as soon as the
//! previous one is acknowledged. A raw hyper connection per task keeps the generator's own cost per request
//! at a few microseconds, which matters on a 2-core machine shared with the bot.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Teams channel messages that @mention the bot, shaped like the ones in fieldbot's API tests.
pub struct ActivityTemplate {
    pub service_url: String,
    pub tenant_id: String,
    pub bot_id: String,
    /// Prefix of every activity id, unique per benchmark run, so no id is ever seen twice by a bot. The
    /// sequence number after it is zero-padded: ids sort in the order they were sent, as Teams message ids
    /// (epoch milliseconds) do, and a store's index sees them arrive as it would in production.
    pub run_tag: String,
    /// How many channels the activities are spread over; 0: one channel per connection.
    pub channels: usize,
}

impl ActivityTemplate {
    /// By default each connection talks in its own channel, as concurrent Teams traffic comes from many
    /// conversations (fieldbot keeps one conversation's replies in order, so this matters); `help` and
    /// `roles TAM` alternate. Every activity starts a thread of its own (`;messageid=`), like a new post.
    pub fn body(&self, connection: usize, seq: u64) -> Bytes {
        let command = if seq.is_multiple_of(2) {
            "help"
        } else {
            "roles TAM"
        };
        let Self {
            service_url,
            tenant_id,
            bot_id,
            run_tag,
            channels,
        } = self;
        let channel = match *channels {
            0 => connection,
            n => (seq % n as u64) as usize,
        };
        let channel = format!("19:bench{channel}@thread.tacv2");
        Bytes::from(format!(
            r#"{{"type":"message","id":"{run_tag}-{seq:09}","timestamp":"2026-11-23T10:15:30.123Z","serviceUrl":"{service_url}","channelId":"msteams","from":{{"id":"29:dana","name":"Dana Lee","aadObjectId":"5f0c6c0e-1d2b-4c55-9a35-0d5a1b2c3d4e"}},"conversation":{{"isGroup":true,"conversationType":"channel","tenantId":"{tenant_id}","id":"{channel};messageid={seq}"}},"recipient":{{"id":"{bot_id}","name":"fieldbot"}},"textFormat":"plain","text":"<at>fieldbot</at> {command}","entities":[{{"type":"mention","text":"<at>fieldbot</at>","mentioned":{{"id":"{bot_id}","name":"fieldbot"}}}},{{"type":"clientInfo","locale":"en-US","platform":"Web"}}],"channelData":{{"teamsChannelId":"{channel}","teamsTeamId":"19:benchteam@thread.tacv2","channel":{{"id":"{channel}"}},"team":{{"id":"19:benchteam@thread.tacv2"}},"tenant":{{"id":"{tenant_id}"}}}},"locale":"en-US"}}"#
        ))
    }
}

pub struct LoadSpec {
    pub addr: SocketAddr,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub request_timeout: Duration,
    /// Bearer tokens used round-robin; `None` sends no Authorization header (the Node bot has auth off).
    pub tokens: Option<Arc<Vec<HeaderValue>>>,
    pub activity: Arc<ActivityTemplate>,
    /// Per connection, the least time between the starts of two requests (open-loop pacing); `None`: the
    /// next request leaves as soon as the previous one is acknowledged.
    pub pace: Option<Duration>,
    pub seq: Arc<AtomicU64>,
}

#[derive(Default)]
pub struct LoadResult {
    pub end: Option<Instant>,
    /// When the last in-flight request finished (after `end`).
    pub finished: Option<Instant>,
    /// Latencies (µs) of requests acknowledged inside the measured window, sorted.
    pub latencies_us: Vec<u32>,
    pub measured_acks: u64,
    pub measured_failures: u64,
    pub sent: u64,
    /// Sequence numbers of every acknowledged activity, warm-up included: each must get a reply.
    pub acked: Vec<u64>,
    pub transport_errors: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub connects: u64,
}

impl LoadResult {
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        // Nearest-rank: the smallest sample at or above p percent of all samples.
        let rank = ((p / 100.0) * self.latencies_us.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.latencies_us.len()) - 1;
        self.latencies_us
            .get(index)
            .map_or(f64::NAN, |us| f64::from(*us) / 1000.0)
    }

    pub fn mean_ms(&self) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let sum: u64 = self.latencies_us.iter().map(|&us| u64::from(us)).sum();
        sum as f64 / self.latencies_us.len() as f64 / 1000.0
    }
}

#[derive(Default)]
struct ConnectionStats {
    latencies_us: Vec<u32>,
    measured_acks: u64,
    measured_failures: u64,
    sent: u64,
    acked: Vec<u64>,
    transport_errors: u64,
    statuses: BTreeMap<u16, u64>,
    connects: u64,
}

struct Window {
    warm_end: Instant,
    end: Instant,
}

/// Runs the load from `started` (now or a moment ago) until `started + warmup + duration`.
pub async fn run(spec: Arc<LoadSpec>, started: Instant) -> LoadResult {
    let window = Arc::new(Window {
        warm_end: started + spec.warmup,
        end: started + spec.warmup + spec.duration,
    });
    let mut tasks = JoinSet::new();
    for connection in 0..spec.connections {
        tasks.spawn(drive(Arc::clone(&spec), Arc::clone(&window), connection));
    }
    let mut result = LoadResult {
        end: Some(window.end),
        ..LoadResult::default()
    };
    while let Some(joined) = tasks.join_next().await {
        let Ok(stats) = joined else {
            result.transport_errors += 1;
            continue;
        };
        result.latencies_us.extend(stats.latencies_us);
        result.measured_acks += stats.measured_acks;
        result.measured_failures += stats.measured_failures;
        result.sent += stats.sent;
        result.acked.extend(stats.acked);
        result.transport_errors += stats.transport_errors;
        result.connects += stats.connects;
        for (status, n) in stats.statuses {
            *result.statuses.entry(status).or_default() += n;
        }
    }
    result.finished = Some(Instant::now());
    result.latencies_us.sort_unstable();
    result
}

async fn connect(addr: SocketAddr) -> anyhow::Result<http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await??;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

async fn drive(spec: Arc<LoadSpec>, window: Arc<Window>, connection: usize) -> ConnectionStats {
    let mut stats = ConnectionStats::default();
    let host = HeaderValue::from_str(&spec.addr.to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("127.0.0.1"));
    let mut sender: Option<http1::SendRequest<Full<Bytes>>> = None;
    // Paced connections start spread over one period, so the offered load is even from the start.
    let mut next_start = spec.pace.map(|pace| {
        Instant::now() + pace.mul_f64(connection as f64 / spec.connections.max(1) as f64)
    });
    while Instant::now() < window.end {
        if let (Some(at), Some(pace)) = (next_start, spec.pace) {
            tokio::time::sleep_until(at.into()).await;
            next_start = Some(at + pace);
            if Instant::now() >= window.end {
                break;
            }
        }
        let mut ready = match sender.take() {
            Some(s) => s,
            None => match connect(spec.addr).await {
                Ok(s) => {
                    stats.connects += 1;
                    s
                }
                Err(_) => {
                    stats.transport_errors += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let seq = spec.seq.fetch_add(1, Ordering::Relaxed);
        let mut request = Request::post("/api/messages")
            .header(HOST, host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(tokens) = &spec.tokens
            && let Some(token) = tokens.get(seq as usize % tokens.len().max(1))
        {
            request = request.header(AUTHORIZATION, token.clone());
        }
        let Ok(request) = request.body(Full::new(spec.activity.body(connection, seq))) else {
            stats.transport_errors += 1;
            continue;
        };
        stats.sent += 1;
        let begin = Instant::now();
        let outcome = tokio::time::timeout(spec.request_timeout, async {
            ready.ready().await?;
            let response = ready.send_request(request).await?;
            let status = response.status().as_u16();
            response.into_body().collect().await?;
            Ok::<u16, hyper::Error>(status)
        })
        .await;
        let done = Instant::now();
        // Throughput counts acknowledgements that land in the window, whenever their request started.
        let measured = done >= window.warm_end && done <= window.end;
        match outcome {
            Ok(Ok(status)) => {
                *stats.statuses.entry(status).or_default() += 1;
                if (200..300).contains(&status) {
                    stats.acked.push(seq);
                    if measured {
                        stats.measured_acks += 1;
                        let us = done.duration_since(begin).as_micros();
                        stats
                            .latencies_us
                            .push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                } else if measured {
                    stats.measured_failures += 1;
                }
                sender = Some(ready);
            }
            // A timed-out or broken connection cannot be reused: its next response would be the old one.
            _ => {
                stats.transport_errors += 1;
                if measured {
                    stats.measured_failures += 1;
                }
            }
        }
    }
    stats
}
