//! The recurring Field team sync through `/api/messages` against the Graph fake: the exact recurrence sent,
//! attendees following the roster, the reminder before each sync, `sync join`, and refusals.

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

const FM: &str = "5f0c6c0e-1d2b-4c55-9a35-0d5a1b2c3d4e";

async fn staffed() -> TestApp {
    let app = spawn_app().await;
    app.say("engagement start \"Contoso Ltd\" motion:rfa").await;
    for (email, name) in [
        ("ada@contoso.com", "Ada Ats"),
        ("tom@contoso.com", "Tom Tam"),
        ("al@contoso.com", "Al Ae"),
    ] {
        Mock::given(method("GET"))
            .and(path(format!("/graph/users/{}", email.replace('@', "%40"))))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({ "id": format!("oid-{name}"), "displayName": name, "mail": email }),
            ))
            .mount(&app.identity)
            .await;
    }
    Mock::given(method("POST"))
        .and(path(format!("/graph/users/{FM}/events")))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({ "id": "series-1", "webLink": "https://outlook.office365.com/series-1" }),
        ))
        .mount(&app.identity)
        .await;
    Mock::given(method("PATCH"))
        .and(path_regex(format!("^/graph/users/{FM}/events/series-1$")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "series-1" })))
        .mount(&app.identity)
        .await;
    app.say("team add ATS ada@contoso.com").await;
    app.say("team add TAM tom@contoso.com").await;
    app
}

async fn graph_bodies(app: &TestApp, m: &str, suffix: &str) -> Vec<Value> {
    app.graph_requests()
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == m && r.url.path().ends_with(suffix))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test]
async fn a_biweekly_sync_becomes_one_graph_series_that_follows_the_roster() {
    let app = staffed().await;
    let said = app
        .say("sync schedule biweekly tue 15:00 tz:Europe/Berlin duration:30 until:2027-06-30")
        .await;
    assert!(
        text_of(&said[0]).contains("Every 2 weeks on Tuesday at 15:00"),
        "{}",
        text_of(&said[0])
    );
    let events = graph_bodies(&app, "POST", "/events").await;
    assert_eq!(events.len(), 1, "one series");
    let event = &events[0];
    assert_graph_body("event", event);
    let recurrence = &event["recurrence"];
    assert_eq!(recurrence["pattern"]["type"], "weekly");
    assert_eq!(recurrence["pattern"]["interval"], 2);
    assert_eq!(recurrence["pattern"]["daysOfWeek"], json!(["tuesday"]));
    assert_eq!(recurrence["range"]["type"], "endDate");
    assert_eq!(recurrence["range"]["endDate"], "2027-06-30");
    assert_eq!(recurrence["range"]["recurrenceTimeZone"], "Europe/Berlin");
    assert_eq!(event["start"]["timeZone"], "Europe/Berlin");
    assert!(
        event["start"]["dateTime"]
            .as_str()
            .unwrap()
            .ends_with("T15:00:00")
    );
    assert!(
        event["end"]["dateTime"]
            .as_str()
            .unwrap()
            .ends_with("T15:30:00")
    );
    assert_eq!(event["isOnlineMeeting"], true);
    let start_date = event["start"]["dateTime"].as_str().unwrap()[..10].to_string();
    assert_eq!(recurrence["range"]["startDate"], start_date);
    let weekday = jiff::civil::Date::strptime("%Y-%m-%d", &start_date)
        .unwrap()
        .weekday();
    assert_eq!(weekday, jiff::civil::Weekday::Tuesday);
    let types: Vec<(String, String)> = event["attendees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["emailAddress"]["address"].as_str().unwrap().into(),
                a["type"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        types,
        vec![
            ("ada@contoso.com".into(), "required".into()),
            ("tom@contoso.com".into(), "required".into())
        ]
    );

    let shown = text_of(&app.say("sync").await[0]);
    assert!(
        shown.contains("Every 2 weeks on Tuesday at 15:00 (Europe/Berlin)"),
        "{shown}"
    );

    // The roster changes: the series' attendees follow.
    app.say("team add AE al@contoso.com").await;
    let patches = graph_bodies(&app, "PATCH", "/events/series-1").await;
    let last = patches.last().expect("attendees updated");
    let addresses: Vec<&str> = last["attendees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["emailAddress"]["address"].as_str().unwrap())
        .collect();
    assert!(addresses.contains(&"al@contoso.com"));
    assert!(
        last["attendees"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["emailAddress"]["address"] == "al@contoso.com" && a["type"] == "optional")
    );
    app.say("team remove AE").await;
    let last = graph_bodies(&app, "PATCH", "/events/series-1")
        .await
        .pop()
        .unwrap();
    assert_eq!(last["attendees"].as_array().unwrap().len(), 2);

    // A new rhythm re-patterns the same series instead of making a second one.
    app.say("sync schedule weekly thu 09:30 tz:Europe/Berlin")
        .await;
    assert_eq!(graph_bodies(&app, "POST", "/events").await.len(), 1);
    let repattern = graph_bodies(&app, "PATCH", "/events/series-1")
        .await
        .pop()
        .unwrap();
    assert_eq!(
        repattern["recurrence"]["pattern"]["daysOfWeek"],
        json!(["thursday"])
    );
    assert_eq!(repattern["recurrence"]["range"]["type"], "noEnd");
}

#[tokio::test]
async fn open_follow_up_items_are_listed_before_each_sync() {
    let app = staffed().await;
    let engagement = app.store.active_engagement(CHANNEL).await.unwrap().unwrap();
    app.store
        .commit_activity(None, app.clock.now(), vec![fieldbot::store::Change::RecordSyncNotes {
            engagement_id: engagement.id,
            notes: json!({ "summary": "ok", "open_items": ["Confirm licenses", "Org chart from the customer"] }),
            by: "Dana".into(),
        }], vec![], None)
        .await
        .unwrap();
    app.say("sync schedule weekly wed 10:00 tz:UTC").await;
    async fn reminders(app: &TestApp) -> usize {
        app.connector_requests()
            .await
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .filter(|b| text_of(b).contains("starts in an hour"))
            .count()
    }
    let rhythm = {
        let series = app.store.sync_series(engagement.id).await.unwrap().unwrap();
        fieldbot::jobs::sync::rhythm_of(&series).unwrap()
    };
    let first = rhythm
        .next_after(jiff::Timestamp::from_millisecond(app.clock.now()).unwrap())
        .unwrap();
    let reminder_at = first.as_millisecond() - 3_600_000;
    // Not before…
    app.clock.advance(std::time::Duration::from_millis(
        (reminder_at - app.clock.now() - 60_000).max(0) as u64,
    ));
    app.run_pending_jobs().await;
    assert_eq!(reminders(&app).await, 0);
    // …once, with the open items…
    app.clock.advance(std::time::Duration::from_secs(120));
    app.run_pending_jobs().await;
    assert_eq!(reminders(&app).await, 1);
    let texts: Vec<String> = app
        .connector_requests()
        .await
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .map(|b| text_of(&b))
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Confirm licenses") && t.contains("Org chart")),
        "{texts:?}"
    );
    // …and again before the next week's sync.
    app.clock
        .advance(std::time::Duration::from_secs(7 * 86_400));
    app.run_pending_jobs().await;
    assert_eq!(reminders(&app).await, 2);
}

#[tokio::test]
async fn join_and_refusals() {
    let app = staffed().await;
    for (text, expect) in [
        ("sync schedule weekly tue 25:00", "Usage"),
        ("sync schedule weekly sat 10:00", "Monday to Friday"),
        (
            "sync schedule weekly tue 10:00 tz:Mars/Olympus",
            "Mars/Olympus",
        ),
        ("sync schedule weekly tue 10:00 until:2020-01-01", "Usage"),
        ("sync schedule fortnightly tue 10:00", "Usage"),
        ("sync join https://evil.example/meet", "Teams"),
    ] {
        let reply = text_of(&app.say(text).await[0]);
        assert!(reply.contains(expect), "{text}: {reply}");
    }
    assert!(graph_bodies(&app, "POST", "/events").await.is_empty());
    let link = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_abc%40thread.v2/0";
    let joined = text_of(&app.say(&format!("sync join {link}")).await[0]);
    assert!(joined.contains("Recorded"), "{joined}");
    let shown = text_of(&app.say("sync").await[0]);
    assert!(shown.contains("meetup-join"), "{shown}");

    // Without ATS and TAM there is nobody mandatory to invite.
    let app = spawn_app().await;
    app.say("engagement start \"Fabrikam\" motion:health").await;
    let refused = text_of(&app.say("sync schedule weekly tue 10:00").await[0]);
    assert!(refused.contains("ATS and TAM"), "{refused}");
}
