//! Chat commands end to end: what reaches the fake Connector, with its Authorization header, for help,
//! roles, unknown input and the mention shapes Teams produces.

use serde_json::{Value, json};

use crate::helpers::*;

/// Sends one message and returns the single activity the bot posted in reply.
async fn reply_to(app: &TestApp, activity: Value) -> Value {
    assert_eq!(app.post_activity(&activity).await.status(), 200);
    app.run_pending_jobs().await;
    let sent = app.connector_requests().await;
    let last = sent.last().expect("a reply was sent");
    assert_eq!(
        last.headers.get("authorization").unwrap().to_str().unwrap(),
        format!("Bearer {CONNECTOR_TOKEN}")
    );
    let conversation = urlencode(activity["conversation"]["id"].as_str().unwrap());
    let reply_to = urlencode(activity["id"].as_str().unwrap());
    assert_eq!(
        last.url.path(),
        format!("/v3/conversations/{conversation}/activities/{reply_to}")
    );
    serde_json::from_slice(&last.body).unwrap()
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2D", "-")
        .replace("%2E", ".")
        .replace("%5F", "_")
        .replace("%7E", "~")
}

fn card_text(reply: &Value) -> String {
    let cards = cards_in(reply);
    assert_eq!(cards.len(), 1, "expected one card: {reply}");
    assert_valid_card(&cards[0]);
    cards[0].to_string()
}

#[tokio::test]
async fn help_answers_with_a_card_listing_every_command() {
    let app = spawn_app().await;
    let reply = reply_to(&app, app.message("help")).await;
    let text = card_text(&reply);
    for spec in fieldbot::commands::COMMANDS {
        assert!(
            text.contains(spec.usage) || text.contains(spec.name),
            "help lacks {}",
            spec.name
        );
    }
    // The connector token was fetched once from the bot's own tenant, with the Bot Framework scope.
    let token_calls: Vec<_> = app
        .identity
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == format!("/{TENANT}/token"))
        .collect();
    assert_eq!(token_calls.len(), 1);
    let form = String::from_utf8_lossy(&token_calls[0].body).to_string();
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    assert!(
        form.contains("scope=https%3A%2F%2Fapi.botframework.com%2F.default"),
        "{form}"
    );
}

#[tokio::test]
async fn roles_answers_from_the_playbook() {
    let app = spawn_app().await;
    let all = card_text(&reply_to(&app, app.message("roles")).await);
    for title in [
        "Account Technology Strategist",
        "Technical Account Manager",
        "Account Executive",
        "Customer Success Manager",
        "Account Delivery Executive",
        "Technical Specialists",
        "Specialists, formally known as Solutions Sales Professionals",
    ] {
        assert!(all.contains(title), "roles lacks {title}");
    }
    assert!(all.contains("Sales") && all.contains("Services"));

    let tam = card_text(&reply_to(&app, app.message("roles TAM")).await);
    assert!(tam.contains("Technical Account Manager"));
    assert!(!tam.contains("Account Technology Strategist"));

    let atu = card_text(&reply_to(&app, app.message("ROLES atu")).await);
    for yes in [
        "Account Technology Strategist",
        "Account Executive",
        "Customer Success Manager",
        "Solutions Sales Professionals",
    ] {
        assert!(atu.contains(yes), "ATU lacks {yes}");
    }
    assert!(!atu.contains("Technical Account Manager"), "TAM is not ATU");
}

#[tokio::test]
async fn unknown_input_gets_a_specific_error_with_the_usage_line() {
    let app = spawn_app().await;
    let reply = reply_to(&app, app.message("frobnicate now")).await;
    let text = reply["text"].as_str().unwrap();
    assert!(text.contains("frobnicate"), "{text}");
    assert!(text.contains("help"), "{text}");

    let reply = reply_to(&app, app.message("roles XYZ")).await;
    let text = reply["text"].as_str().unwrap();
    assert!(text.contains("XYZ"), "{text}");
    assert!(text.contains("roles"), "{text}");
    assert!(text.contains("TAM"), "lists the valid roles: {text}");
}

#[tokio::test]
async fn mentions_are_stripped_however_teams_writes_them() {
    let app = spawn_app().await;
    let cases: Vec<(&str, Value)> = vec![
        ("crlf", json!("\r\n<at>fieldbot</at> roles TAM\r\n")),
        ("nbsp", json!("<at>fieldbot</at>&nbsp;roles&nbsp;TAM")),
        ("renamed bot", json!("<at>Field Helper</at> roles TAM")),
        (
            "two mentions",
            json!("<at>fieldbot</at> <at>fieldbot</at> roles TAM"),
        ),
    ];
    for (case, text) in cases {
        let mut a = app.message("");
        a["text"] = text.clone();
        if case == "renamed bot" {
            a["entities"][0]["text"] = json!("<at>Field Helper</at>");
            a["entities"][0]["mentioned"]["name"] = json!("Field Helper");
        }
        if case == "two mentions" {
            let m = a["entities"][0].clone();
            a["entities"].as_array_mut().unwrap().push(m);
        }
        let reply = reply_to(&app, a).await;
        let card = card_text(&reply);
        assert!(
            card.contains("Technical Account Manager"),
            "case {case}: {reply}"
        );
    }
}

#[tokio::test]
async fn personal_chat_needs_no_mention() {
    let app = spawn_app().await;
    let mut a = app.message("");
    a["text"] = json!("roles ae");
    a["entities"] = json!([]);
    a["conversation"] =
        json!({ "id": "a:1personal", "conversationType": "personal", "tenantId": TENANT });
    a["channelData"] = json!({ "tenant": { "id": TENANT } });
    let card = card_text(&reply_to(&app, a).await);
    assert!(card.contains("Account Executive"));
}

#[tokio::test]
async fn card_actions_answer_in_the_invoke_response() {
    let app = spawn_app().await;
    let r: Value = app
        .post_activity(&app.card_action("help.show", json!({})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["statusCode"], 200);
    assert_eq!(r["type"], "application/vnd.microsoft.card.adaptive");
    assert_valid_card(&r["value"]);

    let r: Value = app
        .post_activity(&app.card_action("roles.show", json!({ "query": "TAM" })))
        .await
        .json()
        .await
        .unwrap();
    assert!(r["value"].to_string().contains("Technical Account Manager"));

    let response = app
        .post_activity(&app.card_action("no.such.verb", json!({})))
        .await;
    assert_eq!(response.status(), 200);
    let r: Value = response.json().await.unwrap();
    assert_eq!(r["statusCode"], 400);
    assert_eq!(r["type"], "application/vnd.microsoft.error");
    assert_eq!(r["value"]["code"], "UnknownVerb");

    let mut no_action = app.card_action("help.show", json!({}));
    no_action["value"] = json!({});
    let r: Value = app.post_activity(&no_action).await.json().await.unwrap();
    assert_eq!(r["statusCode"], 400);
    assert_eq!(r["type"], "application/vnd.microsoft.error");
}

#[tokio::test]
async fn the_action_submit_fallback_replies_in_the_conversation() {
    let app = spawn_app().await;
    let mut submit = app.message("");
    submit["text"] = Value::Null;
    submit["value"] = json!({ "verb": "roles.show", "query": "atu" });
    let card = card_text(&reply_to(&app, submit).await);
    assert!(card.contains("Account Executive"));
    assert_all_sent_cards_valid(&app).await;
}
