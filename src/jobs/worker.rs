//! Leases due jobs and performs them. One worker per process; on PostgreSQL several processes share the
//! queue safely because each claim is a lease taken with `FOR UPDATE SKIP LOCKED`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;

use super::effect::{Effect, EffectContext, EffectError, EffectOutcome, base_conversation};
use super::in_flight::Noted;
use super::wire::{Wire, WireFile, WireLog};
use crate::botframework::connector::ConnectorError;
use crate::botframework::retry::RetryPolicy;
use crate::clock::{Clock, millis};
use crate::graph::GraphError;
use crate::store::{BirthClaim, ChainNext, Job, JobStatus, NewJob, Store, StoreError};

/// Jobs one slot runs in a row by taking over the next job of their chain.
const MAX_TAKE_OVERS: usize = 64;

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub concurrency: usize,
    pub lease: Duration,
    pub policy: RetryPolicy,
    pub poll_interval: Duration,
    pub dedup_retention: Duration,
    /// How long after it was queued a job's throttled retries do not use up attempts.
    pub max_throttled: Duration,
    /// How long after a mail or draft that may have been made its job looks it up: Exchange files a sent
    /// mail in Sent Items a little after accepting it.
    pub check_after: Duration,
    /// Where attempts mark their unrepeatable calls as they leave, so that one cut off before its call
    /// left can run again instead of being held (see [`super::wire`]). `None`: such jobs are held.
    pub wire_log: Option<Arc<super::wire::WireLog>>,
    /// Replies claimed in passing carry their first attempt's note from the claim (see
    /// [`super::in_flight::claim_note`]); only with a wire log that the next attempt can read: SQLite's.
    pub note_with_claim: bool,
}

#[derive(Clone)]
pub struct Worker {
    id: String,
    store: Arc<dyn Store>,
    ctx: EffectContext,
    clock: Clock,
    settings: WorkerSettings,
    notify: Arc<Notify>,
    /// One permit per job slot; a job holds one while it runs, whether the loop claimed it or it was born
    /// claimed. Empty until [`Worker::run`] starts, so nothing is born claimed without a loop to run it.
    slots: Arc<Semaphore>,
    handoff: mpsc::UnboundedSender<Handoff>,
    handed_off: Arc<std::sync::Mutex<Option<mpsc::UnboundedReceiver<Handoff>>>>,
    /// Set on shutdown: a finishing job no longer takes over the next one of its chain.
    stopping: Arc<AtomicBool>,
    /// The jobs this process's attempts are running, by id, with how many attempts run each.
    running: Arc<std::sync::Mutex<HashMap<i64, usize>>>,
}

/// Counts an attempt of `id` among the running ones until dropped.
struct Running {
    jobs: Arc<std::sync::Mutex<HashMap<i64, usize>>>,
    id: i64,
}

impl Running {
    fn start(jobs: &Arc<std::sync::Mutex<HashMap<i64, usize>>>, id: i64) -> Self {
        if let Ok(mut running) = jobs.lock() {
            *running.entry(id).or_default() += 1;
        }
        Self {
            jobs: jobs.clone(),
            id,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut running) = self.jobs.lock()
            && let Some(n) = running.get_mut(&self.id)
        {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.id);
            }
        }
    }
}

/// A job claimed in its turn's commit, on its way to the worker loop with the slot reserved for it.
struct Handoff {
    job: Job,
    slot: Option<OwnedSemaphorePermit>,
    /// The wire log file the claim's note named, if it wrote one.
    noted_in: Option<Arc<WireFile>>,
}

/// The webhook's side of born claims ([`BirthClaim`]): reserves worker slots for a turn's replies before
/// its commit and hands the jobs the commit claimed to the worker loop.
#[derive(Clone)]
pub struct BornClaims {
    worker: String,
    lease: Duration,
    clock: Clock,
    slots: Arc<Semaphore>,
    handoff: mpsc::UnboundedSender<Handoff>,
    /// Set when the claims write the replies' notes (see [`WorkerSettings::note_with_claim`]).
    noting: Option<Arc<WireLog>>,
}

/// Worker slots held for a turn's commit; those its commit did not use go back when it is dropped.
pub struct Reservation {
    slots: OwnedSemaphorePermit,
    handoff: mpsc::UnboundedSender<Handoff>,
    noted_in: Option<Arc<WireFile>>,
}

impl BornClaims {
    /// A claim on those of `jobs` that may be born claimed, with a free worker slot for each; `None` when
    /// none qualifies or the worker is busy (they are then queued and claimed as usual).
    pub fn reserve(&self, jobs: &[NewJob]) -> Option<(BirthClaim, Reservation)> {
        let keys: Vec<String> = jobs
            .iter()
            .filter(|j| super::born_claimable(&j.kind))
            .map(|j| j.idempotency_key.clone())
            .collect();
        let wanted = u32::try_from(keys.len()).ok().filter(|n| *n > 0)?;
        let slots = self.slots.clone().try_acquire_many_owned(wanted).ok()?;
        // A log that cannot be opened now leaves the note to the attempt, as without a log.
        let noted_in = self.noting.as_ref().and_then(|log| log.file().ok());
        let claim = BirthClaim {
            worker: self.worker.clone(),
            lease_until: self.clock.now() + millis(self.lease),
            keys,
            note: noted_in.as_deref().map(super::in_flight::claim_note),
        };
        let reservation = Reservation {
            slots,
            handoff: self.handoff.clone(),
            noted_in,
        };
        Some((claim, reservation))
    }
}

impl Reservation {
    /// Starts the jobs the commit claimed, each in one of the reserved slots.
    pub fn start(mut self, jobs: Vec<Job>) {
        for job in jobs {
            let slot = self.slots.split(1);
            let noted_in = self.noted_in.clone();
            if self
                .handoff
                .send(Handoff {
                    job,
                    slot,
                    noted_in,
                })
                .is_err()
            {
                // Only after the loop stopped, which it does not while a slot is reserved.
                tracing::error!(
                    "a job claimed in its commit found no worker; it runs when its lease ends"
                );
            }
        }
    }
}

impl Worker {
    pub fn new(ctx: EffectContext, settings: WorkerSettings) -> Self {
        let (handoff, handed_off) = mpsc::unbounded_channel();
        Self {
            id: format!("worker-{}", uuid::Uuid::new_v4()),
            store: ctx.store.clone(),
            clock: ctx.clock.clone(),
            ctx,
            settings,
            notify: Arc::new(Notify::new()),
            slots: Arc::new(Semaphore::new(0)),
            handoff,
            handed_off: Arc::new(std::sync::Mutex::new(Some(handed_off))),
            stopping: Arc::new(AtomicBool::new(false)),
            running: Arc::default(),
        }
    }

    /// Lets the webhook claim a turn's replies in the turn's own commit and hand them to this worker's loop.
    pub fn born_claims(&self) -> BornClaims {
        BornClaims {
            worker: self.id.clone(),
            lease: self.settings.lease,
            clock: self.clock.clone(),
            slots: self.slots.clone(),
            handoff: self.handoff.clone(),
            noting: self.noting_log().cloned(),
        }
    }

    /// The wire log whose files the claims' notes name, when claims write the notes.
    fn noting_log(&self) -> Option<&Arc<WireLog>> {
        self.settings
            .wire_log
            .as_ref()
            .filter(|_| self.settings.note_with_claim)
    }

    /// Wakes the worker loop after this process enqueued work, so replies leave at once instead of at the
    /// next poll.
    pub fn notifier(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// Claims the jobs due now (up to the concurrency limit) and performs them; returns how many ran.
    pub async fn run_due(&self) -> Result<usize, StoreError> {
        let jobs = self.claim(self.settings.concurrency).await?;
        let count = jobs.len();
        let mut running = JoinSet::new();
        for job in jobs {
            let worker = self.clone();
            running.spawn(async move { worker.run_chain(job, None).await });
        }
        while let Some(done) = running.join_next().await {
            report_panic(done);
        }
        Ok(count)
    }

    /// Runs due jobs until none is left due now (tests use it to drain the queue without sleeping).
    pub async fn drain(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let n = self.run_due().await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }

    /// The background loop. Jobs run side by side up to the concurrency limit, and the loop tops up while
    /// others still run, so one slow call (a Connector answering after seconds) holds one slot, not a batch.
    ///
    /// It claims only when there may be something to claim: this process enqueued work (notified), the next
    /// known job falls due, the last claim filled every free slot, or a due job was waiting behind its
    /// conversation's running head (a finishing job may unblock it). A finished job alone does not cause a
    /// claim: with many slots, a claim per finished job cost more than the jobs themselves. On shutdown it
    /// stops claiming and lets the running jobs finish (each has its own request timeout).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut handed_off = self.handed_off.lock().ok().and_then(|mut rx| rx.take());
        let slots = u32::try_from(self.settings.concurrency).unwrap_or(u32::MAX);
        if handed_off.is_some() {
            self.slots.add_permits(slots as usize);
        }
        let mut running: JoinSet<()> = JoinSet::new();
        let mut last_prune: Option<Instant> = None;
        let mut stopping = false;
        let mut claim_now = true;
        // After a claim: whether a finishing job should lead to the next claim, and when to claim anyway.
        let mut claim_on_finish = false;
        let mut deadline = tokio::time::Instant::now();
        loop {
            while let Some(done) = running.try_join_next() {
                report_panic(done);
            }
            if stopping {
                self.stopping.store(true, Ordering::SeqCst);
                if handed_off.is_some() {
                    // Every slot coming back means no turn still holds one for a job it may hand over; the
                    // waiting acquire also keeps new turns from reserving one meanwhile.
                    let all_back = self.slots.clone().acquire_many_owned(slots);
                    tokio::pin!(all_back);
                    loop {
                        tokio::select! {
                            _ = &mut all_back => break,
                            Some(handoff) = next_handoff(&mut handed_off) => self.spawn_handoff(&mut running, handoff),
                            Some(done) = running.join_next(), if !running.is_empty() => report_panic(done),
                        }
                    }
                    self.slots.close();
                }
                while let Some(done) = running.join_next().await {
                    report_panic(done);
                }
                return;
            }
            let free = if claim_now { self.free_slots() } else { None };
            if let Some(mut free) = free {
                claim_now = false;
                let mut saturated = false;
                let wanted = free.num_permits();
                match self.claim(wanted).await {
                    Ok(jobs) => {
                        saturated = jobs.len() == wanted;
                        for job in jobs {
                            let worker = self.clone();
                            let slot = free.split(1);
                            running.spawn(async move {
                                let _slot = slot;
                                worker.run_chain(job, None).await
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming jobs failed; will retry"),
                }
                drop(free);
                let now = self.clock.now();
                let (on_finish, wait) = if saturated {
                    (true, self.settings.poll_interval)
                } else {
                    match self.store.next_job_due().await {
                        // Due but not claimed: blocked behind a running head of its conversation.
                        Ok(Some(due)) if due <= now => (true, self.settings.poll_interval),
                        Ok(Some(due)) => {
                            let ms = u64::try_from(due - now).unwrap_or(0);
                            (
                                false,
                                Duration::from_millis(ms).min(self.settings.poll_interval),
                            )
                        }
                        _ => (false, self.settings.poll_interval),
                    }
                };
                claim_on_finish = on_finish;
                deadline = tokio::time::Instant::now() + wait;
            } else if claim_now {
                // Every slot is busy: the next finishing job frees one.
                claim_on_finish = true;
                deadline = tokio::time::Instant::now() + self.settings.poll_interval;
            }
            if last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
                last_prune = Some(Instant::now());
                let before = self.clock.now() - millis(self.settings.dedup_retention);
                if let Err(e) = self.store.prune_inbound(before).await {
                    tracing::warn!(error = %e, "pruning inbound activity ids failed");
                }
            }
            tokio::select! {
                _ = &mut shutdown => stopping = true,
                Some(done) = running.join_next(), if !running.is_empty() => {
                    report_panic(done);
                    claim_now = claim_on_finish;
                }
                Some(handoff) = next_handoff(&mut handed_off) => self.spawn_handoff(&mut running, handoff),
                _ = self.notify.notified() => claim_now = true,
                _ = tokio::time::sleep_until(deadline) => claim_now = true,
            }
        }
    }

    /// Takes every free slot for a claim; `None` when all are busy.
    fn free_slots(&self) -> Option<OwnedSemaphorePermit> {
        loop {
            let free = u32::try_from(self.slots.available_permits()).unwrap_or(u32::MAX);
            if free == 0 {
                return None;
            }
            // Fails only when a turn took a slot in between: count again.
            if let Ok(slots) = self.slots.clone().try_acquire_many_owned(free) {
                return Some(slots);
            }
            if self.slots.is_closed() {
                return None;
            }
        }
    }

    fn spawn_handoff(&self, running: &mut JoinSet<()>, handoff: Handoff) {
        let worker = self.clone();
        running.spawn(async move {
            let _slot = handoff.slot;
            worker.run_chain(handoff.job, handoff.noted_in).await
        });
    }

    /// Runs `job`, then the jobs of its chain its completions take over (see [`ChainNext`]), in the same
    /// slot. After [`MAX_TAKE_OVERS`] the slot goes back, so that a busy conversation cannot keep it from
    /// the others: its next job is then claimed in turn, oldest due first. Once the worker is stopping, no
    /// job is taken over: a slow Connector would otherwise stretch the shutdown by a chain's length.
    async fn run_chain(&self, mut job: Job, mut noted_in: Option<Arc<WireFile>>) {
        for n in 0..=MAX_TAKE_OVERS {
            match self.execute(job, n < MAX_TAKE_OVERS, noted_in).await {
                Some(next) => (job, noted_in) = next,
                None => return,
            }
        }
    }

    async fn claim(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        let now = self.clock.now();
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        self.store
            .claim_jobs(&self.id, now, now + millis(self.settings.lease), limit)
            .await
    }

    #[tracing::instrument(skip_all, fields(job.id = job.id, job.kind = %job.kind, job.attempt = job.attempts))]
    /// `take_over`: its completion may claim the next job of its chain, which is returned with the wire
    /// log file its claim's note names. `noted_in`: the file this job's claim named in its note.
    async fn execute(
        &self,
        job: Job,
        take_over: bool,
        noted_in: Option<Arc<WireFile>>,
    ) -> Option<(Job, Option<Arc<WireFile>>)> {
        let effect = match Effect::from_payload(&job.payload) {
            Ok(e) => e,
            Err(e) => {
                self.finish(&job, JobStatus::Dead, &format!("unreadable payload: {e}"))
                    .await;
                return None;
            }
        };
        // A lease that expired after the last allowed attempt: the worker died mid-job too often.
        if job.attempts > job.max_attempts {
            self.finish(&job, JobStatus::Dead, "attempts exhausted")
                .await;
            return None;
        }
        if let Some(cut) = super::in_flight::cut_off_mid_call(&job) {
            let wire = cut.wire.map(|name| match &self.settings.wire_log {
                Some(log) => log.check(name, job.id, cut.attempt, || {
                    // A poisoned lock says nothing: count the job as running, so it is held.
                    self.running
                        .lock()
                        .map_or(true, |running| running.contains_key(&job.id))
                }),
                None => Wire::MayHaveLeft("this process keeps no wire log to read".to_owned()),
            });
            let text = format!(
                "the attempt before was cut off after starting {}, a call that must not be repeated",
                cut.op
            );
            match wire {
                Some(Wire::NeverSent) if !cut.after_lookup => {
                    // Its wire log shows the request never left, or was refused: nothing to repeat, so run
                    // it as usual.
                    tracing::warn!(
                        op = cut.op,
                        "the attempt before was cut off before its call left, or after it was refused; running the job again"
                    );
                }
                Some(Wire::NeverSent) => {
                    // It never left, but the attempt had been checking an earlier attempt's call, which may
                    // have happened: this one must check it again.
                    self.check_later(&job, &format!("{text}, which never left"))
                        .await;
                    return None;
                }
                _ => {
                    let text = match wire {
                        Some(Wire::MayHaveLeft(why)) => format!("{text} ({why})"),
                        _ => text,
                    };
                    if crate::graph::can_look_up(cut.op) {
                        self.check_later(&job, &text).await;
                    } else {
                        tracing::warn!(
                            error = text,
                            "a non-idempotent call may have happened; not re-sending it"
                        );
                        self.finish(&job, JobStatus::Unconfirmed, &text).await;
                    }
                    return None;
                }
            }
        }
        let _running = Running::start(&self.running, job.id);
        let checking = super::in_flight::to_check(&job);
        let noted = noted_in.as_deref().and_then(|file| {
            Noted::for_claimed(&job, file, millis(self.settings.lease), self.clock.clone())
        });
        // Held to the end of the job, so a log file that moves on meanwhile outlives the attempt's outcome.
        // The calls of an attempt noted by its claim are marked in the file the note names.
        let wire_file = match (&noted, noted_in, self.settings.wire_log.as_ref()) {
            (Some(_), Some(file), _) => Some(file),
            (_, _, Some(log)) => match log.file() {
                Ok(file) => Some(file),
                Err(e) => {
                    tracing::warn!(error = %e, "the wire log cannot be opened; this attempt's calls are not marked");
                    None
                }
            },
            _ => None,
        };
        let on_send = super::in_flight::hook(
            self.store.clone(),
            job.id,
            self.id.clone(),
            job.attempts,
            checking,
            wire_file.clone(),
            noted,
        );
        let started = Instant::now();
        let (outcome, sends) = effect
            .perform_noting(&self.ctx, &job.idempotency_key, Some(on_send), checking)
            .await;
        metrics::histogram!("fieldbot_job_duration_seconds", "kind" => job.kind.clone())
            .record(started.elapsed().as_secs_f64());
        let now = self.clock.now();
        match outcome {
            EffectOutcome::Done {
                result,
                changes,
                jobs,
            } => {
                let follow_ups = !jobs.is_empty();
                // Whether the worker is stopping is asked now, when the call is done, not when it began.
                let chain = job.ordering_key.clone().filter(|_| {
                    take_over
                        && changes.is_empty()
                        && jobs.is_empty()
                        && !self.stopping.load(Ordering::SeqCst)
                });
                // The next job's note names this attempt's file, which stays open while the chain runs.
                let next_noted_in = wire_file.filter(|_| self.noting_log().is_some());
                let completed = match chain {
                    Some(ordering_key) => {
                        let next = ChainNext {
                            ordering_key,
                            kind: super::CLAIMED_IN_PASSING.to_owned(),
                            lease_until: now + millis(self.settings.lease),
                            note: next_noted_in.as_deref().map(super::in_flight::claim_note),
                        };
                        self.store
                            .complete_and_claim_next(job.id, &self.id, result, now, next)
                            .await
                            .map(|(applied, next)| {
                                (applied, next.map(|job| (job, next_noted_in.clone())))
                            })
                    }
                    None => self
                        .store
                        .complete_job(job.id, &self.id, result, changes, jobs, now)
                        .await
                        .map(|applied| (applied, None)),
                };
                match completed {
                    Ok((true, next)) => {
                        metrics::counter!("fieldbot_jobs_completed_total", "kind" => job.kind.clone())
                            .increment(1);
                        if follow_ups {
                            self.notify.notify_one();
                        }
                        return next;
                    }
                    Ok((false, _)) => tracing::warn!("job finished after its lease was taken over"),
                    Err(e) => {
                        // The effect happened but its outcome could not be recorded: run it again later.
                        // Every call repeats safely but the unrepeatable ones, and if this attempt made one,
                        // the next must look it up (a mail is found; a Connector message is held).
                        let check = sends.unsure || sends.started;
                        self.handle_failure(&job, EffectError::Store(e), true, None, check)
                            .await
                    }
                }
            }
            EffectOutcome::Failed {
                error,
                idempotent,
                conversation_id,
            } => {
                self.handle_failure(
                    &job,
                    error,
                    idempotent,
                    conversation_id.as_deref(),
                    sends.unsure,
                )
                .await
            }
        }
        None
    }

    /// Queues `job` to look up, after [`WorkerSettings::check_after`], whether the mail or draft an attempt
    /// may have made exists, and to make it only if it does not.
    async fn check_later(&self, job: &Job, why: &str) {
        let now = self.clock.now();
        tracing::info!(
            error = why,
            "a mail or draft may have been made; it will be looked up before sending again"
        );
        metrics::counter!("fieldbot_jobs_retried_total", "kind" => job.kind.clone()).increment(1);
        let text = format!("{}{why}", super::in_flight::TO_CHECK);
        if let Err(e) = self
            .store
            .retry_job(
                job.id,
                &self.id,
                now + millis(self.settings.check_after),
                &text,
                now,
            )
            .await
        {
            tracing::error!(error = %e, "rescheduling a job to be looked up failed");
        }
    }

    /// `unsure`: the attempt was checking for an earlier attempt's call and ended before finding out
    /// whether it was made; the next attempt must check too, so the mark stays on the job.
    async fn handle_failure(
        &self,
        job: &Job,
        error: EffectError,
        idempotent: bool,
        conversation_id: Option<&str>,
        unsure: bool,
    ) {
        let text = if unsure {
            format!("{}{error}", super::in_flight::TO_CHECK)
        } else {
            error.to_string()
        };
        if error.is_throttled() {
            metrics::counter!("fieldbot_throttled_total", "api" => error.api()).increment(1);
        }
        if let (
            EffectError::Connector(ConnectorError::NotInConversation { code, .. }),
            Some(conversation_id),
        ) = (&error, conversation_id)
        {
            let reason = if code.is_empty() {
                "not found"
            } else {
                code.as_str()
            };
            let conversation = base_conversation(conversation_id);
            tracing::warn!(
                conversation.id = conversation,
                reason,
                "conversation reference is dead"
            );
            if let Err(e) = self
                .store
                .mark_conversation_dead(conversation, reason, self.clock.now())
                .await
            {
                tracing::error!(error = %e, "marking a conversation dead failed");
            }
            self.finish(job, JobStatus::Dead, &text).await;
            return;
        }
        if matches!(error, EffectError::Graph(GraphError::Unconfirmed(_))) && !idempotent {
            // A mail or draft without an answer (the only unrepeatable Graph calls) can be looked up.
            self.check_later(job, &error.to_string()).await;
            return;
        }
        if error.is_unconfirmed() && !idempotent {
            let text = error.to_string();
            tracing::warn!(error = %text, "a non-idempotent call may have happened; not re-sending it");
            self.finish(job, JobStatus::Unconfirmed, &text).await;
            return;
        }
        if error.is_throttled()
            && let Some(wait) = error.retry_after()
        {
            // The API asked us to wait (or the Graph client's mailbox gate did, without calling): that is not
            // a failed attempt, so the job is rescheduled at Retry-After and gets its attempt back. Otherwise
            // a backlog behind a rate limit (300 mails for a 30-per-minute mailbox) dead-letters its tail.
            // The bound: once the job was queued more than `max_throttled` ago, the store counts the attempt,
            // so an API that throttles forever still ends in the dead letters (at the claim after the last
            // attempt). A 429 without Retry-After takes the ordinary path below and counts.
            let delay = self.settings.policy.next_delay(job.attempts, Some(wait));
            let now = self.clock.now();
            tracing::info!(error = %text, delay_ms = delay.as_millis() as u64, "throttled; job rescheduled at Retry-After");
            metrics::counter!("fieldbot_jobs_retried_total", "kind" => job.kind.clone())
                .increment(1);
            if let Err(e) = self
                .store
                .retry_throttled_job(
                    job.id,
                    &self.id,
                    now + millis(delay),
                    &text,
                    now,
                    now - millis(self.settings.max_throttled),
                )
                .await
            {
                tracing::error!(error = %e, "rescheduling a throttled job failed");
            }
            return;
        }
        if error.is_retryable(idempotent) && !self.settings.policy.exhausted(job.attempts) {
            let mut delay = self
                .settings
                .policy
                .next_delay(job.attempts, error.retry_after());
            if unsure {
                // The next attempt looks a mail up: not before Exchange would have filed it.
                delay = delay.max(self.settings.check_after);
            }
            let now = self.clock.now();
            tracing::info!(error = %text, delay_ms = delay.as_millis() as u64, "job will be retried");
            metrics::counter!("fieldbot_jobs_retried_total", "kind" => job.kind.clone())
                .increment(1);
            if let Err(e) = self
                .store
                .retry_job(job.id, &self.id, now + millis(delay), &text, now)
                .await
            {
                tracing::error!(error = %e, "rescheduling a job failed");
            }
            return;
        }
        self.finish(job, JobStatus::Dead, &text).await;
    }

    async fn finish(&self, job: &Job, status: JobStatus, error: &str) {
        if status == JobStatus::Dead {
            tracing::error!(error, "job dead-lettered");
        }
        metrics::counter!("fieldbot_jobs_failed_total", "kind" => job.kind.clone(), "status" => status.as_str())
            .increment(1);
        if let Err(e) = self
            .store
            .fail_job(job.id, &self.id, status, error, self.clock.now())
            .await
        {
            tracing::error!(error = %e, "recording a failed job failed");
        }
    }
}

async fn next_handoff(
    handed_off: &mut Option<mpsc::UnboundedReceiver<Handoff>>,
) -> Option<Handoff> {
    match handed_off {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn report_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        tracing::error!(error = %e, "job task failed");
    }
}
