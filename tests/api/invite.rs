//! The intro invite and the sync notes through `/api/messages`, against the Graph and Connector fakes:
//! availability, the intro email draft, the preview card, Send invite (one event, whatever the clicks), and
//! the follow-up draft.

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

const FM: &str = "5f0c6c0e-1d2b-4c55-9a35-0d5a1b2c3d4e";
const START: &str = "engagement start \"Contoso Ltd\" motion:rfa tpid:12345";

fn fm_path(rest: &str) -> String {
    format!("/graph/users/{FM}{rest}")
}

async fn mount_user(app: &TestApp, email: &str, name: &str) {
    Mock::given(method("GET"))
        .and(path(format!("/graph/users/{}", email.replace('@', "%40"))))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": format!("oid-{name}"), "displayName": name, "mail": email, "userPrincipalName": email,
        })))
        .mount(&app.identity)
        .await;
}

/// Graph answers for the FM's mailbox: Berlin time, everyone's calendar as `view`.
async fn mount_calendar(app: &TestApp, view: &str) {
    Mock::given(method("GET"))
        .and(path(fm_path("/mailboxSettings")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "timeZone": "Europe/Berlin" })),
        )
        .mount(&app.identity)
        .await;
    let schedule: Vec<Value> = ["ada@contoso.com", "tom@contoso.com", "al@contoso.com"]
        .iter()
        .map(|a| json!({ "scheduleId": a, "availabilityView": view }))
        .collect();
    Mock::given(method("POST"))
        .and(path(fm_path("/calendar/getSchedule")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "value": schedule })))
        .mount(&app.identity)
        .await;
    Mock::given(method("POST"))
        .and(path(fm_path("/messages")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": "draft-1", "isDraft": true,
            "webLink": "https://outlook.office365.com/owa/?ItemID=draft-1",
        })))
        .mount(&app.identity)
        .await;
    Mock::given(method("POST"))
        .and(path(fm_path("/events")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": "event-1", "webLink": "https://outlook.office365.com/owa/?itemid=event-1",
            "onlineMeetingProvider": "teamsForBusiness",
            "onlineMeeting": { "joinUrl": "https://teams.microsoft.com/l/meetup-join/abc" },
        })))
        .mount(&app.identity)
        .await;
}

/// An engagement with ATS, TAM and an optional AE on the roster.
async fn staffed(view: &str) -> TestApp {
    let app = spawn_app().await;
    app.say(START).await;
    for (email, name) in [
        ("ada@contoso.com", "Ada Ats"),
        ("tom@contoso.com", "Tom Tam"),
        ("al@contoso.com", "Al Ae"),
    ] {
        mount_user(&app, email, name).await;
    }
    mount_calendar(&app, view).await;
    app.say("team add ATS ada@contoso.com").await;
    app.say("team add TAM tom@contoso.com").await;
    app.say("team add AE al@contoso.com").await;
    app
}

async fn graph_calls(app: &TestApp, m: &str, p: &str) -> Vec<Value> {
    app.graph_requests()
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == m && r.url.path() == p)
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect()
}

/// The data of the card's Action.Execute with this verb.
fn action_data(card: &Value, verb: &str) -> Value {
    fn find(v: &Value, verb: &str) -> Option<Value> {
        match v {
            Value::Object(o) => {
                if o.get("type").and_then(Value::as_str) == Some("Action.Execute")
                    && o.get("verb").and_then(Value::as_str) == Some(verb)
                {
                    return o.get("data").cloned();
                }
                o.values().find_map(|c| find(c, verb))
            }
            Value::Array(a) => a.iter().find_map(|c| find(c, verb)),
            _ => None,
        }
    }
    find(card, verb).unwrap_or_else(|| panic!("no {verb} button on {card}"))
}

#[tokio::test]
async fn invite_proposes_free_slots_drafts_the_email_and_sends_one_event() {
    let app = staffed(&"0".repeat(2000)).await;
    let replies = app.say("invite within:10 duration:60").await;
    assert_eq!(replies.len(), 1, "one preview card: {replies:?}");
    let card = cards_in(&replies[0]).remove(0);
    assert_valid_card(&card);
    let text = card.to_string();
    assert!(
        text.contains("Ada Ats") && text.contains("Tom Tam") && text.contains("Al Ae"),
        "{text}"
    );
    assert!(
        text.contains("https://outlook.office365.com/owa/?ItemID=draft-1"),
        "links the draft"
    );

    // Availability was asked for every attendee over the window, in 30-minute steps.
    let schedule = graph_calls(&app, "POST", &fm_path("/calendar/getSchedule")).await;
    assert_eq!(schedule.len(), 1);
    let asked: Vec<&str> = schedule[0]["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(asked.len(), 3);
    assert_eq!(schedule[0]["availabilityViewInterval"], 30);
    assert_graph_body("/users/{user-id}/calendar/getSchedule", &schedule[0]);
    // The intro email is a draft in the FM's mailbox, to the whole roster, naming the customer.
    let drafts = graph_calls(&app, "POST", &fm_path("/messages")).await;
    assert_eq!(drafts.len(), 1);
    assert!(
        drafts[0]["subject"]
            .as_str()
            .unwrap()
            .contains("Contoso Ltd")
    );
    assert_eq!(drafts[0]["toRecipients"].as_array().unwrap().len(), 3);
    let body = drafts[0]["body"]["content"].as_str().unwrap();
    assert!(
        body.contains("MANDATORY") && body.contains("OPTIONAL"),
        "{body}"
    );

    // Send invite, with the second slot chosen.
    let mut data = action_data(&card, "invite.send");
    data["slot"] = json!("1");
    let click = app.card_action("invite.send", data.clone());
    let answer: Value = app.post_activity(&click).await.json().await.unwrap();
    assert_eq!(answer["statusCode"], 200);
    assert!(
        answer["value"].as_str().unwrap().contains("Sending"),
        "{answer}"
    );
    app.run_pending_jobs().await;

    let events = graph_calls(&app, "POST", &fm_path("/events")).await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_graph_body("event", event);
    let invite_id = data["inviteId"].as_i64().unwrap();
    assert_eq!(
        event["transactionId"],
        format!("fieldbot-invite-{invite_id}")
    );
    assert_eq!(event["isOnlineMeeting"], true);
    assert_eq!(event["onlineMeetingProvider"], "teamsForBusiness");
    let attendees: Vec<(String, String)> = event["attendees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["emailAddress"]["address"].as_str().unwrap().to_string(),
                a["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(attendees.contains(&("ada@contoso.com".into(), "required".into())));
    assert!(attendees.contains(&("tom@contoso.com".into(), "required".into())));
    assert!(attendees.contains(&("al@contoso.com".into(), "optional".into())));
    let html = event["body"]["content"].as_str().unwrap();
    assert_eq!(event["body"]["contentType"], "html");
    for letter in "abcdefghijklmn".chars() {
        assert!(
            html.contains(&format!("<strong>{letter}.</strong>")),
            "agenda item {letter} missing"
        );
    }
    assert!(html.contains("FastTrack Process"), "{html}");

    // The preview card now says "sent" for everyone (a PUT on the card's message).
    let puts: Vec<Value> = app
        .connector_requests()
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == "PUT")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let sent = puts.last().expect("card updated in place");
    let sent_text = text_of(sent);
    assert!(
        sent_text.contains("Invite sent") || sent_text.contains("sent by"),
        "{sent_text}"
    );
    assert!(
        sent_text.contains("https://teams.microsoft.com/l/meetup-join/abc"),
        "{sent_text}"
    );

    // A second click (or a stale one from another client) creates nothing and says what happened.
    let again: Value = app
        .post_activity(&app.card_action("invite.send", data))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        again["value"]
            .as_str()
            .unwrap()
            .contains("already sent by Dana Lee"),
        "{again}"
    );
    app.run_pending_jobs().await;
    assert_eq!(
        graph_calls(&app, "POST", &fm_path("/events")).await.len(),
        1
    );
    assert_all_sent_cards_valid(&app).await;
}

#[tokio::test]
async fn invite_refuses_without_ats_and_tam_or_an_engagement() {
    let app = spawn_app().await;
    let outside = text_of(&app.say("invite").await[0]);
    assert!(outside.contains("no active engagement"), "{outside}");
    app.say(START).await;
    let refused = text_of(&app.say("invite").await[0]);
    assert!(refused.contains("ATS and TAM"), "{refused}");
    mount_user(&app, "tom@contoso.com", "Tom Tam").await;
    app.say("team add TAM tom@contoso.com").await;
    let refused = text_of(&app.say("invite").await[0]);
    assert!(refused.contains("mandatory ATS is missing"), "{refused}");
    assert!(
        app.graph_requests()
            .await
            .iter()
            .all(|r| !r.url.path().contains("getSchedule"))
    );
}

#[tokio::test]
async fn no_free_slot_offers_a_wider_window() {
    let app = staffed(&"2".repeat(2000)).await;
    let replies = app.say("invite within:3").await;
    let card = cards_in(&replies[0]).remove(0);
    let text = card.to_string();
    assert!(
        text.contains("No time in the next 3 business days"),
        "{text}"
    );
    let more = action_data(&card, "invite.other_times");
    assert_eq!(more["within"], 13);
    assert!(
        graph_calls(&app, "POST", &fm_path("/messages"))
            .await
            .is_empty(),
        "no draft without a time"
    );
}

#[tokio::test]
async fn a_graph_403_becomes_a_plain_sentence() {
    let app = spawn_app().await;
    app.say(START).await;
    for (email, name) in [
        ("ada@contoso.com", "Ada Ats"),
        ("tom@contoso.com", "Tom Tam"),
    ] {
        mount_user(&app, email, name).await;
    }
    app.say("team add ATS ada@contoso.com").await;
    app.say("team add TAM tom@contoso.com").await;
    Mock::given(method("GET"))
        .and(path(fm_path("/mailboxSettings")))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "error": { "code": "ErrorAccessDenied", "message": "Access to OData is disabled." }
        })))
        .mount(&app.identity)
        .await;
    let replies = app.say("invite").await;
    let text = text_of(&replies[0]);
    assert!(
        text.contains(FM) && text.to_lowercase().contains("admin"),
        "{text}"
    );
}

#[tokio::test]
async fn sync_notes_are_recorded_and_the_follow_up_is_drafted() {
    let app = staffed(&"0".repeat(2000)).await;
    let form = cards_in(&app.say("sync notes").await[0]).remove(0);
    assert_valid_card(&form);
    let mut data = action_data(&form, "sync.notes.submit");

    // Without a summary the form comes back, keeping what was typed, and nothing is stored.
    data["openItems"] = json!("Licenses to confirm");
    let refused: Value = app
        .post_activity(&app.card_action("sync.notes.submit", data.clone()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(refused["type"], "application/vnd.microsoft.card.adaptive");
    assert!(refused["value"].to_string().contains("Licenses to confirm"));
    let engagement = app.store.active_engagement(CHANNEL).await.unwrap().unwrap();
    assert!(
        app.store
            .sync_notes(engagement.id)
            .await
            .unwrap()
            .is_empty()
    );

    data["summary"] = json!("Good call <script>alert(1)</script>, FTA needed");
    data["nextSteps"] = json!("Send intro\nBook workshop");
    data["introEmailRequested"] = json!("true");
    data["teamsChannelJoined"] = json!("false");
    data["rhythm"] = json!("Weekly on Tuesday");
    let recorded: Value = app
        .post_activity(&app.card_action("sync.notes.submit", data))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(recorded["statusCode"], 200);
    assert_valid_card(&recorded["value"]);
    app.run_pending_jobs().await;

    let notes = app.store.sync_notes(engagement.id).await.unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(
        notes[0].notes["next_steps"],
        json!(["Send intro", "Book workshop"])
    );
    assert_eq!(notes[0].notes["intro_email_requested"], true);

    let drafts = graph_calls(&app, "POST", &fm_path("/messages")).await;
    let followup = drafts.last().unwrap();
    assert_graph_body("message", followup);
    let html = followup["body"]["content"].as_str().unwrap();
    assert!(html.contains("Book workshop"), "{html}");
    assert!(
        !html.contains("<script>"),
        "user text is escaped in emails: {html}"
    );
    assert!(html.contains("&lt;script&gt;"), "{html}");
    assert_eq!(followup["toRecipients"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn dry_run_completes_the_invite_without_any_network_call() {
    let app = spawn_with(Options {
        mode: Mode::Local,
        ..Options::default()
    })
    .await;
    let say = |text: &str| {
        let mut m = app.message(text);
        m["from"]["aadObjectId"] = json!(FM);
        m
    };
    for text in [
        START,
        "team add ATS ada@contoso.com",
        "team add TAM tom@contoso.com",
        "invite",
    ] {
        assert_eq!(app.post_with_token(&say(text), None).await.status(), 200);
        app.run_pending_jobs().await;
    }
    assert!(
        app.graph_requests().await.is_empty(),
        "dry-run sends nothing to Graph"
    );
    let posted = app.connector_requests().await;
    let preview = serde_json::from_slice::<Value>(&posted.last().unwrap().body).unwrap();
    let card = cards_in(&preview).remove(0);
    let mut data = action_data(&card, "invite.send");
    data["slot"] = json!("0");
    let mut click = app.card_action("invite.send", data);
    click["from"]["aadObjectId"] = json!(FM);
    assert_eq!(app.post_with_token(&click, None).await.status(), 200);
    app.run_pending_jobs().await;

    let outbox = app.store.graph_outbox(100).await.unwrap();
    let calls: Vec<String> = outbox
        .iter()
        .map(|c| format!("{} {}", c.method, c.path))
        .collect();
    for expected in ["/calendar/getSchedule", "/messages", "/events"] {
        assert!(
            calls.iter().any(|c| c.contains(expected)),
            "{expected} not recorded: {calls:?}"
        );
    }
    let event = outbox.iter().find(|c| c.path.ends_with("/events")).unwrap();
    assert!(
        event.body.as_ref().unwrap()["transactionId"]
            .as_str()
            .unwrap()
            .starts_with("fieldbot-invite-")
    );
}

#[tokio::test]
async fn cancel_and_other_times_update_the_card_and_send_nothing() {
    let app = staffed(&"0".repeat(2000)).await;
    let card = cards_in(&app.say("invite within:5").await[0]).remove(0);

    // Other times looks further out and updates the same card in place.
    let other: Value = app
        .post_activity(&app.card_action(
            "invite.other_times",
            action_data(&card, "invite.other_times"),
        ))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        other["value"]
            .as_str()
            .unwrap()
            .contains("15 business days"),
        "{other}"
    );
    app.run_pending_jobs().await;
    assert_eq!(
        graph_calls(&app, "POST", &fm_path("/calendar/getSchedule"))
            .await
            .len(),
        2
    );
    assert_eq!(
        graph_calls(&app, "POST", &fm_path("/messages")).await.len(),
        1,
        "the draft is reused"
    );
    let puts = app
        .connector_requests()
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == "PUT")
        .count();
    assert_eq!(puts, 1, "the preview card is updated, not posted again");

    let cancel = app.card_action("invite.cancel", action_data(&card, "invite.cancel"));
    let cancelled: Value = app.post_activity(&cancel).await.json().await.unwrap();
    assert!(
        cancelled["value"]
            .to_string()
            .contains("Cancelled by Dana Lee"),
        "{cancelled}"
    );
    let mut send = action_data(&card, "invite.send");
    send["slot"] = json!("0");
    let late: Value = app
        .post_activity(&app.card_action("invite.send", send))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        late["value"]
            .as_str()
            .unwrap()
            .contains("cancelled by Dana Lee"),
        "{late}"
    );
    app.run_pending_jobs().await;
    assert!(
        graph_calls(&app, "POST", &fm_path("/events"))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_throttled_get_schedule_is_retried_after_retry_after() {
    let app = spawn_app().await;
    app.say(START).await;
    for (email, name) in [
        ("ada@contoso.com", "Ada Ats"),
        ("tom@contoso.com", "Tom Tam"),
        ("al@contoso.com", "Al Ae"),
    ] {
        mount_user(&app, email, name).await;
    }
    app.say("team add ATS ada@contoso.com").await;
    app.say("team add TAM tom@contoso.com").await;
    Mock::given(method("POST"))
        .and(path(fm_path("/calendar/getSchedule")))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "20"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.identity)
        .await;
    mount_calendar(&app, &"0".repeat(2000)).await;
    assert!(
        app.say("invite").await.is_empty(),
        "nothing to show while throttled"
    );
    app.clock.advance(std::time::Duration::from_secs(10));
    assert_eq!(app.run_pending_jobs().await, 0, "not before Retry-After");
    app.clock.advance(std::time::Duration::from_secs(15));
    app.run_pending_jobs().await;
    assert_eq!(
        graph_calls(&app, "POST", &fm_path("/calendar/getSchedule"))
            .await
            .len(),
        2
    );
    let posted = app.connector_requests().await;
    let preview: Value = serde_json::from_slice(&posted.last().unwrap().body).unwrap();
    assert!(
        text_of(&preview).contains("invite.send"),
        "the preview arrives after the retry"
    );
}

#[tokio::test]
async fn a_503_on_event_creation_is_retried_with_the_same_transaction_id() {
    let app = staffed(&"0".repeat(2000)).await;
    Mock::given(method("POST"))
        .and(path(fm_path("/events")))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.identity)
        .await;
    let card = cards_in(&app.say("invite").await[0]).remove(0);
    let mut data = action_data(&card, "invite.send");
    data["slot"] = json!("0");
    app.post_activity(&app.card_action("invite.send", data))
        .await;
    app.run_pending_jobs().await;
    assert_eq!(
        graph_calls(&app, "POST", &fm_path("/events")).await.len(),
        1,
        "first try failed"
    );
    app.clock.advance(std::time::Duration::from_secs(600));
    app.run_pending_jobs().await;
    let events = graph_calls(&app, "POST", &fm_path("/events")).await;
    assert_eq!(events.len(), 2, "retried once");
    assert_eq!(
        events[0]["transactionId"], events[1]["transactionId"],
        "a retry can never make a second meeting"
    );
    let sent = app
        .connector_requests()
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == "PUT")
        .count();
    assert_eq!(
        sent, 1,
        "the card shows the sent invite once the event exists"
    );
}

#[tokio::test]
async fn the_day_before_the_meeting_the_fm_gets_the_prep_checklist() {
    // Everyone is busy for the next two days, so every slot offered is more than a day ahead whatever the
    // time the test runs (a slot tomorrow morning, booked this morning, is less than a day ahead).
    let app = staffed(&format!("{}{}", "2".repeat(96), "0".repeat(2000))).await;
    let card = cards_in(&app.say("invite within:5").await[0]).remove(0);
    let mut data = action_data(&card, "invite.send");
    data["slot"] = json!("2");
    app.post_activity(&app.card_action("invite.send", data.clone()))
        .await;
    app.run_pending_jobs().await;
    let event = graph_calls(&app, "POST", &fm_path("/events"))
        .await
        .remove(0);
    let start = jiff::Timestamp::strptime(
        "%Y-%m-%dT%H:%M:%S%z",
        format!("{}+0000", event["start"]["dateTime"].as_str().unwrap()),
    )
    .unwrap()
    .as_millisecond();
    async fn prep_cards(app: &TestApp) -> usize {
        app.connector_requests()
            .await
            .into_iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .filter(|b| text_of(b).contains("Prep before the account team call"))
            .count()
    }
    // Not before the day before…
    let until = start - 86_400_000 - app.clock.now() - 60_000;
    app.clock
        .advance(std::time::Duration::from_millis(until.max(0) as u64));
    app.run_pending_jobs().await;
    assert_eq!(prep_cards(&app).await, 0);
    // …then once.
    app.clock.advance(std::time::Duration::from_secs(120));
    app.run_pending_jobs().await;
    app.run_pending_jobs().await;
    assert_eq!(prep_cards(&app).await, 1);
    let texts: Vec<String> = app
        .connector_requests()
        .await
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .map(|b| text_of(&b))
        .collect();
    assert!(texts.iter().any(|t| t.contains("is tomorrow")), "{texts:?}");
    app.clock
        .advance(std::time::Duration::from_secs(3 * 86_400));
    app.run_pending_jobs().await;
    assert_eq!(prep_cards(&app).await, 1, "only once");
}
