//! The durable effect queue. Every outbound call is an [`Effect`] stored as a job in the same transaction as
//! the state change that caused it; a [`Worker`] leases due jobs, performs them, and records the outcome.
//!
//! Why not apalis: it has no durable backoff (a failed task is re-fetched at once), no per-task lease, no
//! dead-letter state and no way to keep one conversation's effects in order, and its enqueue-in-transaction
//! path differs per backend. The table-backed queue here is the zero2prod shape: a `jobs` table with
//! `run_at`, `locked_until`, `attempts` and a unique idempotency key, claimed with `FOR UPDATE SKIP LOCKED`
//! on PostgreSQL.

mod effect;
pub mod fta;
mod in_flight;
mod invite;
pub mod sync;
mod worker;

pub use effect::{
    Effect, EffectContext, EffectError, EffectOutcome, MemberTarget, ReplyTarget, SendActivity,
    UpdateActivity, card_activity, send_job, text_activity,
};
pub use invite::{InviteData, SchedulingSettings, fm_mailbox, invite_card_with};
pub use worker::{BornClaims, Reservation, Worker, WorkerSettings};

use crate::clock::Millis;
use crate::store::NewJob;

/// The kind of job claimed without a claim of its own: in the commit that queues it
/// ([`crate::store::BirthClaim`]) or by the completion of the job before it in its chain
/// ([`crate::store::ChainNext`]). Its first call must be the unrepeatable one, so that the in-flight note
/// those claims write is the note the attempt would write first anyway. A Connector send is a POST with
/// nothing before it but fetching the bot's token.
const CLAIMED_IN_PASSING: &str = "connector_send";

/// Whether a job of `kind` may be claimed in the commit that queues it (see [`CLAIMED_IN_PASSING`]).
pub fn born_claimable(kind: &str) -> bool {
    kind == CLAIMED_IN_PASSING
}

/// Builds the queued form of an effect. `ordering_key` keeps one conversation's effects in order.
pub fn job(effect: &Effect, idempotency_key: String, now: Millis, max_attempts: u32) -> NewJob {
    NewJob {
        kind: effect.kind().to_string(),
        payload: serde_json::to_string(effect).unwrap_or_else(|e| {
            // Effects are plain data; `effects_round_trip_through_json` keeps this unreachable.
            tracing::error!(error = %e, kind = effect.kind(), "an effect could not be serialised");
            "null".to_owned()
        }),
        idempotency_key,
        ordering_key: effect.ordering_key(),
        run_at: now,
        max_attempts,
    }
}
