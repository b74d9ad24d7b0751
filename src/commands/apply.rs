//! Applying stateful commands: read what the command needs from the store, decide, and return the reply
//! plus the state changes and jobs to commit with the activity. Nothing here performs I/O beyond store
//! reads; lookups and Graph calls are jobs.

use serde_json::json;

use super::{Command, Reply, Who};
use crate::cards;
use crate::clock::Millis;
use crate::domain::engagement::{Person, PrepItem, RosterMember};
use crate::domain::roles::Role;
use crate::jobs::{self, Effect, MemberTarget, ReplyTarget};
use crate::store::{Change, Engagement, NewJob, Store, StoreError, new_id, person_key};

/// What a stateful command may use.
pub struct Ctx<'a> {
    pub store: &'a dyn Store,
    pub now: Millis,
    /// Who typed the command.
    pub actor: Person,
    /// The channel (or chat) the command came from, without a thread suffix.
    pub conversation_id: String,
    pub conversation_type: Option<String>,
    pub service_url: String,
    /// Where replies go: the thread and the message to reply to.
    pub reply: ReplyTarget,
    /// Unique per inbound activity: the base of every idempotency key this command creates.
    pub activity_key: String,
    /// The message whose card was clicked (an invoke's `replyToId`).
    pub clicked: Option<String>,
    pub max_attempts: u32,
    pub templates: &'a crate::templates::Templates,
    pub leads: &'a crate::leads::LeadDirectory,
    /// IANA zone for rhythms given without `tz:`.
    pub default_tz: &'a str,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub reply: Option<Reply>,
    /// A new version of the card that was clicked: shown to the clicking user at once (invoke response)
    /// and put in place for everyone.
    pub updated_card: Option<serde_json::Value>,
    pub changes: Vec<Change>,
    pub jobs: Vec<NewJob>,
}

impl Outcome {
    fn reply(reply: Reply) -> Self {
        Outcome {
            reply: Some(reply),
            ..Outcome::default()
        }
    }

    fn text(text: impl Into<String>) -> Self {
        Self::reply(Reply::Text(text.into()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub async fn apply(ctx: &Ctx<'_>, command: Command) -> Result<Outcome, CommandError> {
    match command {
        Command::Help | Command::Roles(_) => Ok(Outcome::reply(super::execute(&command))),
        Command::EngagementStart {
            customer,
            motion,
            tpid,
            tenant,
        } => {
            if ctx.conversation_type.as_deref() == Some("personal") {
                return Ok(Outcome::text(
                    "Start an engagement in the account team's channel, so the whole team sees it: \
                     `@fieldbot engagement start \"Customer\" motion:rfa`.",
                ));
            }
            if let Some(active) = ctx.store.active_engagement(&ctx.conversation_id).await? {
                return Ok(Outcome::text(format!(
                    "This channel already has an active engagement: **{}** ({}). Close it with \
                     `engagement close` before starting another.",
                    cards::plain(&active.customer),
                    active.motion.label()
                )));
            }
            let engagement = Engagement {
                id: new_id(),
                conversation_id: ctx.conversation_id.clone(),
                service_url: ctx.service_url.clone(),
                customer,
                motion,
                tpid,
                tenant,
                fm: ctx.actor.clone(),
                active: true,
                created_at: ctx.now,
                closed_at: None,
                closed_by: None,
                roster: Vec::new(),
                prep: Vec::new(),
            };
            let card = cards::welcome_engagement_card(&view(&engagement));
            Ok(Outcome {
                reply: Some(Reply::Card(card)),
                changes: vec![Change::StartEngagement(engagement)],
                ..Outcome::default()
            })
        }
        Command::EngagementShow => with_engagement(ctx, |e| {
            Outcome::reply(Reply::Card(cards::engagement_summary_card(&view(&e))))
        })
        .await,
        Command::EngagementClose => with_engagement(ctx, |e| Outcome {
            reply: Some(Reply::Text(format!(
                "Closed the engagement for **{}**. Its record stays available; start a new one with \
                 `engagement start`.",
                cards::plain(&e.customer)
            ))),
            changes: vec![Change::CloseEngagement {
                id: e.id,
                by: ctx.actor.name.clone(),
            }],
            ..Outcome::default()
        })
        .await,
        Command::TeamShow => with_engagement(ctx, |e| {
            Outcome::reply(Reply::Card(cards::roster_card(e.id, &e.customer, &e.roster)))
        })
        .await,
        Command::TeamAdd { role, who } => {
            with_engagement(ctx, |e| {
                let target = match who {
                    Who::Mention(m) => MemberTarget::Mention {
                        teams_id: m.id,
                        name: m.name,
                    },
                    Who::Email(email) => MemberTarget::Email { address: email },
                };
                // Resolving the person is a lookup (Connector or Graph): a job, so the webhook stays fast.
                let effect = Effect::ResolveRosterMember {
                    engagement_id: e.id,
                    role,
                    target,
                    requested_by: ctx.actor.name.clone(),
                    service_url: ctx.service_url.clone(),
                    conversation_id: ctx.conversation_id.clone(),
                    reply: ctx.reply.clone(),
                };
                Outcome {
                    jobs: vec![jobs::job(
                        &effect,
                        format!("{}:team-add", ctx.activity_key),
                        ctx.now,
                        ctx.max_attempts,
                    )],
                    ..Outcome::default()
                }
            })
            .await
        }
        Command::TeamRemove { role, who } => {
            with_engagement(ctx, |e| {
                let engagement_id = e.id;
                let mut outcome = team_remove(e, role, who);
                if !outcome.changes.is_empty() {
                    outcome.jobs.push(jobs::sync::attendees_job(
                        ctx.now,
                        ctx.max_attempts,
                        engagement_id,
                        &ctx.activity_key,
                    ));
                }
                outcome
            })
            .await
        }
        Command::Invite { within, duration } => match ctx
            .store
            .active_engagement(&ctx.conversation_id)
            .await?
        {
            Some(e) => Ok(invite(ctx, e, within, duration).await),
            None => with_engagement(ctx, |_| Outcome::default()).await,
        },
        Command::InviteSend {
            engagement_id,
            invite_id,
            slot,
        } => {
            with_clicked_engagement(ctx, engagement_id, async |e| {
                invite_click(ctx, e, invite_id, InviteClick::Send(slot)).await
            })
            .await
        }
        Command::InviteOtherTimes {
            engagement_id,
            invite_id,
            within,
        } => {
            with_clicked_engagement(ctx, engagement_id, async |e| {
                invite_click(ctx, e, invite_id, InviteClick::OtherTimes(within)).await
            })
            .await
        }
        Command::InviteCancel {
            engagement_id,
            invite_id,
        } => {
            with_clicked_engagement(ctx, engagement_id, async |e| {
                invite_click(ctx, e, invite_id, InviteClick::Cancel).await
            })
            .await
        }
        Command::SyncNotes => with_engagement(ctx, |e| {
            Outcome::reply(Reply::Card(cards::sync_notes_form_card(
                e.id,
                &e.customer,
                &cards::SyncNotesForm::default(),
                None,
            )))
        })
        .await,
        Command::SyncNotesSubmit {
            engagement_id,
            data,
        } => {
            with_clicked_engagement(ctx, engagement_id, async |e| {
                Ok(sync_notes_submit(ctx, e, &data))
            })
            .await
        }
        Command::Sync(command) => sync_command(ctx, command).await,
        Command::Fta(command) => super::fta_apply::apply(ctx, command).await,
        Command::FtaCard { verb, data } => super::fta_apply::apply_card(ctx, &verb, &data).await,
        Command::PrepShow => with_engagement(ctx, |e| {
            Outcome::reply(Reply::Card(prep_card(&e, &[])))
        })
        .await,
        Command::PrepToggle {
            engagement_id,
            item,
            done,
        } => {
            let engagement = ctx.store.engagement(engagement_id).await?;
            let Some(e) = engagement.filter(|e| e.conversation_id == ctx.conversation_id) else {
                return Ok(Outcome::text(
                    "That checklist belongs to an engagement I can't find in this channel.",
                ));
            };
            if !e.active {
                return Ok(Outcome::text(format!(
                    "The engagement for **{}** is closed; its checklist no longer changes.",
                    cards::plain(&e.customer)
                )));
            }
            if !PrepItem::for_motion(e.motion).contains(&item) {
                return Ok(Outcome::text(format!(
                    "That item is not on the {} checklist for **{}**.",
                    e.motion.label(),
                    cards::plain(&e.customer)
                )));
            }
            let current = e.prep.iter().find(|t| t.item == item).is_some_and(|t| t.done);
            if current == done {
                // A repeated or stale click: the first tick (who and when) stands.
                return Ok(Outcome {
                    updated_card: Some(prep_card(&e, &[])),
                    ..Outcome::default()
                });
            }
            let tick = crate::store::PrepTick {
                item,
                done,
                by: ctx.actor.name.clone(),
                at: ctx.now,
            };
            let card = prep_card(&e, std::slice::from_ref(&tick));
            Ok(Outcome {
                updated_card: Some(card),
                changes: vec![Change::SetPrepTick {
                    engagement_id,
                    item,
                    done,
                    by: ctx.actor.name.clone(),
                }],
                ..Outcome::default()
            })
        }
    }
}

async fn sync_command(
    ctx: &Ctx<'_>,
    command: super::sync_schedule::SyncCommand,
) -> Result<Outcome, CommandError> {
    use super::sync_schedule::SyncCommand;
    let Some(e) = ctx.store.active_engagement(&ctx.conversation_id).await? else {
        return with_engagement(ctx, |_| Outcome::default()).await;
    };
    let series = ctx.store.sync_series(e.id).await?;
    match command {
        SyncCommand::Show => Ok(Outcome::text(match &series {
            Some(s) if s.kind == "joined" => format!(
                "The account team joins an existing Field sync: {} (recorded by {}).",
                s.data.get("link").and_then(|l| l.as_str()).unwrap_or_default(),
                cards::plain(&s.updated_by)
            ),
            Some(s) => match jobs::sync::rhythm_of(s) {
                Some(r) => format!("Field team sync: {} (set by {}).", r.describe(), cards::plain(&s.updated_by)),
                None => "The Field team sync is being set up.".into(),
            },
            None => "No Field team sync yet. Schedule one with `sync schedule biweekly tue 15:00`, or record \
                     the one the Field already runs with `sync join <meeting link>`."
                .into(),
        })),
        SyncCommand::Join { link } => Ok(Outcome {
            reply: Some(Reply::Text(format!(
                "Recorded: the account team joins the existing Field sync {link}. `sync` shows it."
            ))),
            changes: vec![Change::SetSyncSeries {
                engagement_id: e.id,
                kind: "joined".into(),
                data: json!({ "link": link }),
                by: ctx.actor.name.clone(),
            }],
            ..Outcome::default()
        }),
        SyncCommand::Schedule {
            cadence,
            weekday,
            time,
            tz,
            duration,
            until,
        } => {
            let now = jiff::Timestamp::from_millisecond(ctx.now).unwrap_or_else(|_| jiff::Timestamp::now());
            let rhythm = match crate::domain::recurrence::rhythm(
                &cadence,
                &weekday,
                &time,
                tz.as_deref(),
                duration.as_deref(),
                until.as_deref(),
                ctx.default_tz,
                now,
            ) {
                Ok(r) => r,
                Err(err) => {
                    return Ok(Outcome::text(super::sync_schedule::rhythm_error_message(&err)));
                }
            };
            let missing = crate::domain::engagement::missing_mandatory(&e.roster);
            if !missing.is_empty() {
                let names: Vec<&str> = missing.iter().map(|r| r.abbr()).collect();
                return Ok(Outcome::text(format!(
                    "The Field team sync invites the roster, and the mandatory {} {} missing: add them with \
                     `team add <ROLE> @name` first.",
                    names.join(" and "),
                    if names.len() > 1 { "are" } else { "is" }
                )));
            }
            let version = series
                .as_ref()
                .and_then(|s| s.data.get("rhythm_version"))
                .and_then(|v| v.as_i64())
                .unwrap_or(0)
                + 1;
            let mut data = json!({ "rhythm": rhythm, "rhythm_version": version });
            // A new rhythm re-patterns the same series rather than making a second one.
            if let Some(id) = series
                .as_ref()
                .filter(|s| s.kind == "scheduled")
                .and_then(|s| s.data.get("event_id"))
                && let Some(map) = data.as_object_mut()
            {
                map.insert("event_id".into(), id.clone());
            }
            let effect = Effect::ScheduleSync {
                engagement_id: e.id,
                version,
            };
            Ok(Outcome {
                changes: vec![Change::SetSyncSeries {
                    engagement_id: e.id,
                    kind: "scheduled".into(),
                    data,
                    by: ctx.actor.name.clone(),
                }],
                jobs: vec![jobs::job(
                    &effect,
                    format!("{}:sync", ctx.activity_key),
                    ctx.now,
                    ctx.max_attempts,
                )],
                ..Outcome::default()
            })
        }
    }
}

/// Runs `f` on the engagement a card click names, after checking it belongs to this channel and is active.
async fn with_clicked_engagement(
    ctx: &Ctx<'_>,
    engagement_id: i64,
    f: impl AsyncFnOnce(Engagement) -> Result<Outcome, CommandError>,
) -> Result<Outcome, CommandError> {
    let engagement = ctx.store.engagement(engagement_id).await?;
    match engagement.filter(|e| e.conversation_id == ctx.conversation_id) {
        None => Ok(Outcome::text(
            "That card belongs to an engagement I can't find in this channel.",
        )),
        Some(e) if !e.active => Ok(Outcome::text(format!(
            "The engagement for **{}** is closed.",
            cards::plain(&e.customer)
        ))),
        Some(e) => f(e).await,
    }
}

async fn invite(ctx: &Ctx<'_>, e: Engagement, within: u32, duration: u32) -> Outcome {
    let missing = crate::domain::engagement::missing_mandatory(&e.roster);
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|r| r.abbr()).collect();
        let first = names.first().copied().unwrap_or("ATS");
        return Outcome::text(format!(
            "I can't propose times yet: the mandatory {} {} missing from the roster. Add {} with \
             `team add {first} @name` (or an email address), then try `invite` again.",
            names.join(" and "),
            if names.len() > 1 { "are" } else { "is" },
            if names.len() > 1 { "them" } else { "it" },
        ));
    }
    let unreachable: Vec<String> = e
        .roster
        .iter()
        .filter(|m| {
            crate::domain::engagement::is_required_attendee(m.role) && m.person.address().is_none()
        })
        .map(|m| format!("{} ({})", cards::plain(&m.person.name), m.role.abbr()))
        .collect();
    if !unreachable.is_empty() {
        return Outcome::text(format!(
            "I have no email address for {}, so I can't check their calendar. Re-add them with their email: \
             `team add <ROLE> name@domain`.",
            unreachable.join(", ")
        ));
    }
    if jobs::fm_mailbox(&e.fm).is_none() {
        return Outcome::text(
            "I don't know the FastTrack Manager's mailbox for this engagement, so I can't check calendars.",
        );
    }
    let invite_id = new_id();
    let data = jobs::InviteData {
        within_days: within,
        duration_minutes: duration,
        requested_by: ctx.actor.name.clone(),
        reply: Some(ctx.reply.clone()),
        ..jobs::InviteData::default()
    };
    let effect = Effect::ProposeInvite {
        engagement_id: e.id,
        invite_id,
        conversation_id: ctx.conversation_id.clone(),
    };
    Outcome {
        changes: vec![Change::SaveInvite {
            invite: crate::store::InviteRecord {
                id: invite_id,
                engagement_id: e.id,
                state: "planning".into(),
                data: data.to_value(),
                version: 1,
            },
            expected_version: None,
        }],
        jobs: vec![jobs::job(
            &effect,
            format!("{}:invite", ctx.activity_key),
            ctx.now,
            ctx.max_attempts,
        )],
        ..Outcome::default()
    }
}

/// A click on the invite preview card.
async fn invite_click(
    ctx: &Ctx<'_>,
    e: Engagement,
    invite_id: i64,
    click: InviteClick,
) -> Result<Outcome, CommandError> {
    let Some(invite) = ctx
        .store
        .invite(invite_id)
        .await?
        .filter(|i| i.engagement_id == e.id)
    else {
        return Ok(Outcome::text("That invite no longer exists."));
    };
    let mut data = jobs::InviteData::from_record(&invite);
    let slot_label = |d: &jobs::InviteData| {
        d.chosen
            .and_then(|i| d.slots.get(i))
            .map(|s| s.label.clone())
            .unwrap_or_default()
    };
    // Repeated and stale clicks change nothing and say what happened.
    match invite.state.as_str() {
        "sending" | "sent" => {
            return Ok(Outcome::text(format!(
                "This invite was already sent by {} for {}.",
                cards::plain(data.decided_by.as_deref().unwrap_or("someone")),
                slot_label(&data)
            )));
        }
        "cancelled" => {
            return Ok(Outcome::text(format!(
                "This invite was cancelled by {}.",
                cards::plain(data.decided_by.as_deref().unwrap_or("someone"))
            )));
        }
        "planning" | "drafting" => {
            return Ok(Outcome::text(
                "This invite is still being prepared; one moment.",
            ));
        }
        _ => {}
    }
    let save = |state: &str, data: &jobs::InviteData| Change::SaveInvite {
        invite: crate::store::InviteRecord {
            state: state.into(),
            data: data.to_value(),
            ..invite.clone()
        },
        expected_version: Some(invite.version),
    };
    match click {
        InviteClick::Send(slot) => {
            if invite.state != "proposed" {
                return Ok(Outcome::text(
                    "There is no proposed time to send; try `invite` again.",
                ));
            }
            let Some(index) = slot.filter(|i| *i < data.slots.len()) else {
                return Ok(Outcome::text(
                    "Pick one of the proposed times, then press Send invite.",
                ));
            };
            data.chosen = Some(index);
            data.decided_by = Some(ctx.actor.name.clone());
            let effect = Effect::CreateInviteEvent {
                engagement_id: e.id,
                invite_id,
                conversation_id: ctx.conversation_id.clone(),
            };
            Ok(Outcome {
                reply: Some(Reply::Text(format!(
                    "Sending the invite for {}…",
                    slot_label(&data)
                ))),
                changes: vec![save("sending", &data)],
                jobs: vec![jobs::job(
                    &effect,
                    format!("invite:{invite_id}:event"),
                    ctx.now,
                    ctx.max_attempts,
                )],
                ..Outcome::default()
            })
        }
        InviteClick::OtherTimes(within) => {
            data.within_days = within.unwrap_or(data.within_days + crate::cards::LOOK_FURTHER_DAYS);
            data.slots.clear();
            let effect = Effect::ProposeInvite {
                engagement_id: e.id,
                invite_id,
                conversation_id: ctx.conversation_id.clone(),
            };
            Ok(Outcome {
                reply: Some(Reply::Text(format!(
                    "Looking at the next {} business days…",
                    data.within_days
                ))),
                changes: vec![save("planning", &data)],
                jobs: vec![jobs::job(
                    &effect,
                    format!("{}:invite", ctx.activity_key),
                    ctx.now,
                    ctx.max_attempts,
                )],
                ..Outcome::default()
            })
        }
        InviteClick::Cancel => {
            data.decided_by = Some(ctx.actor.name.clone());
            let record = crate::store::InviteRecord {
                state: "cancelled".into(),
                data: data.to_value(),
                ..invite.clone()
            };
            let agenda: Vec<(String, String)> = ctx
                .templates
                .agenda()
                .iter()
                .map(|i| (i.letter.clone(), i.text.clone()))
                .collect();
            Ok(Outcome {
                updated_card: Some(jobs::invite_card_with(&e, &record, &agenda)),
                changes: vec![save("cancelled", &data)],
                ..Outcome::default()
            })
        }
    }
}

enum InviteClick {
    Send(Option<usize>),
    OtherTimes(Option<u32>),
    Cancel,
}

/// The notes form's submit: refused with the form kept as typed, or recorded with the follow-up drafted.
fn sync_notes_submit(ctx: &Ctx<'_>, e: Engagement, data: &serde_json::Value) -> Outcome {
    match cards::parse_sync_notes(data) {
        Err(message) => Outcome::reply(Reply::Card(cards::sync_notes_form_card(
            e.id,
            &e.customer,
            &cards::sync_notes_prefill(data),
            Some(&message),
        ))),
        Ok(form) => {
            let lines = |text: &str| -> Vec<String> {
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            };
            let notes = json!({
                "summary": form.summary,
                "open_items": lines(&form.open_items),
                "next_steps": lines(&form.next_steps),
                "intro_email_requested": form.intro_email_requested,
                "teams_channel_joined": form.teams_channel_joined,
                "rhythm": form.rhythm,
            });
            let effect = Effect::DraftFollowup {
                engagement_id: e.id,
                notes: notes.clone(),
                conversation_id: ctx.conversation_id.clone(),
            };
            Outcome {
                updated_card: Some(cards::sync_notes_recorded_card(
                    e.id,
                    &e.customer,
                    &form,
                    &e.fm.name,
                )),
                changes: vec![Change::RecordSyncNotes {
                    engagement_id: e.id,
                    notes,
                    by: ctx.actor.name.clone(),
                }],
                jobs: vec![jobs::job(
                    &effect,
                    format!("{}:followup", ctx.activity_key),
                    ctx.now,
                    ctx.max_attempts,
                )],
                ..Outcome::default()
            }
        }
    }
}

/// The prep card for an engagement, with `overrides` applied on top of the stored ticks.
fn prep_card(e: &Engagement, overrides: &[crate::store::PrepTick]) -> serde_json::Value {
    let items: Vec<(PrepItem, Option<cards::TickInfo>)> = PrepItem::for_motion(e.motion)
        .into_iter()
        .map(|item| {
            let tick = overrides
                .iter()
                .chain(e.prep.iter())
                .find(|t| t.item == item)
                .filter(|t| t.done)
                .map(|t| cards::TickInfo {
                    by: t.by.clone(),
                    at: format_time(t.at),
                });
            (item, tick)
        })
        .collect();
    cards::prep_card(e.id, &e.customer, e.motion, &items)
}

/// "24 Nov 10:02 UTC": card times are for people; the channel's own zone is not known here.
fn format_time(at: Millis) -> String {
    jiff::Timestamp::from_millisecond(at)
        .map(|t| t.strftime("%d %b %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// Runs `f` on the channel's active engagement, or explains how to start one.
async fn with_engagement(
    ctx: &Ctx<'_>,
    f: impl FnOnce(Engagement) -> Outcome,
) -> Result<Outcome, CommandError> {
    match ctx.store.active_engagement(&ctx.conversation_id).await? {
        Some(e) => Ok(f(e)),
        None => Ok(Outcome::text(
            "There is no active engagement in this channel. Start one with \
             `engagement start \"Customer\" motion:<rfa|health>`.",
        )),
    }
}

fn team_remove(e: Engagement, role: Role, who: Option<Who>) -> Outcome {
    let holders: Vec<&RosterMember> = e.roster.iter().filter(|m| m.role == role).collect();
    if holders.is_empty() {
        return Outcome::text(format!("Nobody holds {} on the roster.", role.abbr()));
    }
    let key = match &who {
        None => None,
        Some(who) => {
            let found = holders.iter().find(|m| matches_who(&m.person, who));
            match found {
                Some(m) => Some(person_key(&m.person)),
                None => {
                    return Outcome::text(format!(
                        "{} does not hold {} on the roster.",
                        describe_who(who),
                        role.abbr()
                    ));
                }
            }
        }
    };
    let remaining: Vec<RosterMember> = e
        .roster
        .iter()
        .filter(|m| m.role != role || key.as_ref().is_some_and(|k| *k != person_key(&m.person)))
        .cloned()
        .collect();
    Outcome {
        reply: Some(Reply::Card(cards::roster_card(
            e.id,
            &e.customer,
            &remaining,
        ))),
        changes: vec![Change::RemoveRosterMember {
            engagement_id: e.id,
            role,
            person_key: key,
        }],
        ..Outcome::default()
    }
}

fn matches_who(person: &Person, who: &Who) -> bool {
    match who {
        Who::Email(email) => {
            person.email.as_deref().map(str::to_lowercase).as_deref() == Some(email.as_str())
                || person.upn.as_deref().map(str::to_lowercase).as_deref() == Some(email.as_str())
        }
        Who::Mention(m) => person.teams_id.as_deref() == Some(m.id.as_str()),
    }
}

fn describe_who(who: &Who) -> String {
    match who {
        Who::Email(email) => format!("`{}`", cards::plain(email)),
        Who::Mention(m) => cards::plain(&m.name),
    }
}

/// What the engagement cards show.
pub fn view(e: &Engagement) -> cards::EngagementView {
    let items = PrepItem::for_motion(e.motion);
    let prep_done = items
        .iter()
        .filter(|item| e.prep.iter().any(|t| t.item == **item && t.done))
        .count();
    cards::EngagementView {
        id: e.id,
        customer: e.customer.clone(),
        motion: e.motion,
        tpid: e.tpid,
        tenant: e.tenant.clone(),
        fm: e.fm.clone(),
        active: e.active,
        roster: e.roster.clone(),
        prep_done,
        prep_total: items.len(),
        open_items: Vec::new(),
        phase: "Initiate".into(),
    }
}

/// The JSON record of an engagement for the API (the record to copy into FTOP).
pub fn engagement_json(e: &Engagement) -> serde_json::Value {
    json!({
        "id": e.id,
        "customer": e.customer,
        "motion": e.motion.as_str(),
        "tpid": e.tpid,
        "tenant": e.tenant,
        "status": if e.active { "active" } else { "closed" },
        "fm": e.fm,
        "roster": e.roster,
        "created_at": e.created_at,
        "closed_at": e.closed_at,
    })
}
