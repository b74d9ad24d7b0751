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
pub mod wire;
mod worker;

pub use effect::{
    Effect, EffectContext, EffectError, EffectOutcome, MemberTarget, ReplyTarget, SendActivity,
    UpdateActivity, card_activity, send_job, text_activity,
};
pub use invite::{InviteData, SchedulingSettings, fm_mailbox, invite_card_with};
pub use worker::{BornClaims, Reservation, Worker, WorkerSettings};

use crate::botframework::activity::OutboundActivity;
use crate::clock::Millis;
use crate::store::{NewJob, PayloadPart, part_marker};

/// The kind of job claimed without a claim of its own: in the commit that queues it
/// ([`crate::store::BirthClaim`]) or by the completion of the job before it in its chain
/// ([`crate::store::ChainNext`]). Replies are the jobs a conversation queues one after another.
const CLAIMED_IN_PASSING: &str = "connector_send";

/// Whether a job of `kind` may be claimed in the commit that queues it (see [`CLAIMED_IN_PASSING`]).
pub fn born_claimable(kind: &str) -> bool {
    kind == CLAIMED_IN_PASSING
}

/// Activities shorter than this stay inside their job's payload: a part costs a row and a lookup.
const PART_MIN_BYTES: usize = 1024;

/// Builds the queued form of an effect. `ordering_key` keeps one conversation's effects in order. A
/// message's activity of a kilobyte or more (a card) becomes the payload's [`PayloadPart`], stored once
/// for every job that posts the same activity.
pub fn job(effect: &Effect, idempotency_key: String, now: Millis, max_attempts: u32) -> NewJob {
    // A card goes to the part; the payload carries its marker instead.
    let split = |activity: &OutboundActivity| {
        if activity.as_json().len() < PART_MIN_BYTES {
            return None;
        }
        let (digest, text) = activity.shared();
        let marker = serde_json::value::RawValue::from_string(part_marker(&digest)).ok()?;
        Some((
            OutboundActivity::from_raw(marker),
            PayloadPart { digest, text },
        ))
    };
    let (marked, part) = match effect {
        Effect::ConnectorSend(s) => split(&s.activity).map(|(activity, part)| {
            let s = SendActivity {
                activity,
                ..s.clone()
            };
            (Effect::ConnectorSend(s), part)
        }),
        Effect::ConnectorUpdate(u) => split(&u.activity).map(|(activity, part)| {
            let u = UpdateActivity {
                activity,
                ..u.clone()
            };
            (Effect::ConnectorUpdate(u), part)
        }),
        _ => None,
    }
    .unzip();
    let payload = serde_json::to_string(marked.as_ref().unwrap_or(effect)).unwrap_or_else(|e| {
        // Effects are plain data; `effects_round_trip_through_json` keeps this unreachable.
        tracing::error!(error = %e, kind = effect.kind(), "an effect could not be serialised");
        "null".to_owned()
    });
    NewJob {
        kind: effect.kind().to_string(),
        payload,
        idempotency_key,
        ordering_key: effect.ordering_key(),
        run_at: now,
        max_attempts,
        part,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use serde_json::json;

    use super::*;

    fn send(activity: OutboundActivity) -> Effect {
        Effect::ConnectorSend(SendActivity {
            service_url: "https://smba.trafficmanager.net/emea/".into(),
            conversation_id: "19:c@thread.tacv2".into(),
            reply_to_id: Some("1".into()),
            activity,
            card_key: None,
        })
    }

    #[test]
    fn a_card_is_queued_as_a_part_shared_by_every_job_that_posts_it() {
        let card: OutboundActivity = json!({
            "type": "message",
            "attachments": [{ "contentType": "application/vnd.microsoft.card.adaptive",
                              "content": { "body": [{ "type": "TextBlock", "text": "x\"{\"$part\"".repeat(200) }] } }],
        })
        .into();
        let first = job(&send(card.clone()), "k1".into(), 0, 5);
        let second = job(&send(card.clone()), "k2".into(), 0, 5);
        let part = first.part.clone().expect("a card is a part");
        assert_eq!(
            second.part.as_ref(),
            Some(&part),
            "one part, whatever the job"
        );
        assert_eq!(&*part.text, card.as_json());
        assert_eq!(part.digest.len(), 64);
        assert!(first.payload.len() < 400, "{}", first.payload);
        assert!(first.payload.contains(&part_marker(&part.digest)));
        assert_eq!(
            Effect::from_payload(&first.whole_payload()).unwrap(),
            send(card),
            "put back together, the payload is the effect"
        );

        let update = Effect::ConnectorUpdate(UpdateActivity {
            service_url: "https://smba.trafficmanager.net/emea/".into(),
            conversation_id: "19:c@thread.tacv2".into(),
            activity_id: "2".into(),
            activity: json!({ "type": "message", "text": "y".repeat(2000) }).into(),
        });
        let queued = job(&update, "k3".into(), 0, 5);
        assert!(queued.part.is_some());
        assert_eq!(
            Effect::from_payload(&queued.whole_payload()).unwrap(),
            update
        );
    }

    #[test]
    fn a_short_message_stays_in_its_payload() {
        let effect = send(text_activity("Done."));
        let queued = job(&effect, "k".into(), 0, 5);
        assert_eq!(queued.part, None);
        assert_eq!(queued.whole_payload(), queued.payload);
        assert_eq!(Effect::from_payload(&queued.payload).unwrap(), effect);
    }
}
