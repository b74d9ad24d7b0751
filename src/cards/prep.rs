//! The `prep` card: the checklist before the account team call, ticked from the card.
//!
//! The card is updated in place for the whole channel after each tick, so it shows who ticked what
//! and never anything about the person looking at it.

use serde_json::{Value, json};

use super::engagement::{Run, customer_text, runs};
use super::{adaptive_card, execute_action, heading, plain, subtle, text, truncate};
use crate::domain::engagement::{Motion, PrepItem};

/// Verb of the buttons that show the prep card; data `{"engagementId": i64}`.
pub const VERB_PREP_SHOW: &str = "prep.show";
/// Verb of an item's button; data `{"engagementId": i64, "item": PrepItem::as_str(), "done": bool}`,
/// `done` being the state the click asks for, so a repeated click is harmless.
pub const VERB_PREP_TOGGLE: &str = "prep.toggle";

const MAX_TICKER_CHARS: usize = 64;
const MAX_TICKED_AT_CHARS: usize = 40;

/// Who ticked an item and when, ready to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickInfo {
    pub by: String,
    /// Already formatted in the channel's time zone, e.g. "24 Nov 10:02".
    pub at: String,
}

pub fn prep_card(
    engagement_id: i64,
    customer: &str,
    motion: Motion,
    items: &[(PrepItem, Option<TickInfo>)],
) -> Value {
    let done = items.iter().filter(|(_, tick)| tick.is_some()).count();
    let mut body = vec![
        heading("Prep before the account team call"),
        subtle(&format!(
            "{} · {} engagement",
            customer_text(customer),
            motion.label()
        )),
    ];
    if items.is_empty() {
        body.push(text("Nothing to prepare for this engagement."));
    } else {
        body.push(json!({
            "type": "TextBlock",
            "text": format!("{done} of {} done", items.len()),
            "weight": "Bolder",
            "wrap": true,
        }));
        body.extend(
            items
                .iter()
                .map(|(item, tick)| item_row(engagement_id, *item, tick.as_ref())),
        );
        if done == items.len() {
            body.push(runs(&[
                Run::Text("All done. Next: "),
                Run::Code("invite"),
                Run::Text(" to find a time with the account team."),
            ]));
        }
    }
    adaptive_card(body, Vec::new())
}

fn item_row(engagement_id: i64, item: PrepItem, tick: Option<&TickInfo>) -> Value {
    let (mark, button) = match tick {
        Some(_) => (
            json!({ "type": "TextBlock", "text": "✓", "color": "Good", "weight": "Bolder", "size": "Medium" }),
            "Undo",
        ),
        None => (
            json!({ "type": "TextBlock", "text": "○", "isSubtle": true, "size": "Medium" }),
            "Done",
        ),
    };
    let mut words = vec![json!({
        "type": "TextBlock",
        "text": item.text(),
        "wrap": true,
        "isSubtle": tick.is_some(),
    })];
    if let Some(tick) = tick {
        words.push(json!({
            "type": "TextBlock",
            "text": ticked_by(tick),
            "wrap": true,
            "isSubtle": true,
            "size": "Small",
            "spacing": "None",
        }));
    }
    let toggle = execute_action(
        button,
        VERB_PREP_TOGGLE,
        json!({
            "engagementId": engagement_id,
            "item": item.as_str(),
            "done": tick.is_none(),
        }),
    );
    json!({
        "type": "ColumnSet",
        "separator": true,
        "spacing": "Small",
        "columns": [
            { "type": "Column", "width": "auto", "items": [mark] },
            { "type": "Column", "width": "stretch", "items": words },
            {
                "type": "Column",
                "width": "auto",
                "verticalContentAlignment": "Center",
                "items": [{ "type": "ActionSet", "actions": [toggle] }],
            },
        ],
    })
}

/// "by Dana, 24 Nov 10:02".
fn ticked_by(tick: &TickInfo) -> String {
    let by = plain(&truncate(tick.by.trim(), MAX_TICKER_CHARS));
    let at = plain(&truncate(tick.at.trim(), MAX_TICKED_AT_CHARS));
    match (by.is_empty(), at.is_empty()) {
        (false, false) => format!("by {by}, {at}"),
        (false, true) => format!("by {by}"),
        (true, false) => format!("done {at}"),
        (true, true) => "done".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use crate::cards::engagement::hostile::{CUSTOMER, NAME, assert_json_clean};
    use crate::cards::test_support::{assert_card_ok, execute_actions, texts};

    fn tick(by: &str) -> Option<TickInfo> {
        Some(TickInfo {
            by: by.into(),
            at: "24 Nov 10:02".into(),
        })
    }

    fn checklist(motion: Motion, ticked: &[PrepItem]) -> Vec<(PrepItem, Option<TickInfo>)> {
        PrepItem::for_motion(motion)
            .into_iter()
            .map(|item| (item, ticked.contains(&item).then(|| tick("Dana")).flatten()))
            .collect()
    }

    #[test]
    fn every_state_is_a_valid_card() {
        for motion in [Motion::Rfa, Motion::Health] {
            let all = PrepItem::for_motion(motion);
            for ticked in [&[][..], &all[..1], &all[..]] {
                for customer in ["Contoso Ltd", CUSTOMER, ""] {
                    let card = prep_card(3, customer, motion, &checklist(motion, ticked));
                    assert_card_ok(&card);
                    assert_json_clean(&card, &[]);
                }
            }
        }
        assert_card_ok(&prep_card(3, "Contoso", Motion::Rfa, &[]));
        let hostile: Vec<_> = PrepItem::for_motion(Motion::Rfa)
            .into_iter()
            .map(|item| {
                (
                    item,
                    Some(TickInfo {
                        by: NAME.into(),
                        at: "[t](https://evil)".repeat(100),
                    }),
                )
            })
            .collect();
        let card = prep_card(3, &"\\".repeat(10_000), Motion::Rfa, &hostile);
        assert_card_ok(&card);
        assert_json_clean(&card, &[]);
    }

    #[test]
    fn items_follow_the_motion_in_playbook_words() {
        let texts = texts(&prep_card(
            3,
            "Contoso",
            Motion::Health,
            &checklist(Motion::Health, &[]),
        ));
        assert!(texts.contains(&"Prep before the account team call".to_owned()));
        assert!(texts.contains(&"Contoso · Health engagement".to_owned()));
        for item in PrepItem::for_motion(Motion::Health) {
            assert!(texts.contains(&item.text().to_owned()), "{item:?}");
        }
        assert!(!texts.contains(&PrepItem::ReviewRequestDetails.text().to_owned()));
        assert!(texts.contains(&"0 of 3 done".to_owned()));
    }

    #[test]
    fn toggle_data_carries_the_new_state() {
        let items = checklist(Motion::Rfa, &[PrepItem::FtaAligned]);
        let card = prep_card(3, "Contoso", Motion::Rfa, &items);
        let actions = execute_actions(&card);
        assert_eq!(actions.len(), 3);
        for (action, (item, tick)) in actions.iter().zip(&items) {
            assert_eq!(action["verb"], VERB_PREP_TOGGLE);
            let data = &action["data"];
            assert_eq!(data["engagementId"], 3);
            assert_eq!(data["item"], item.as_str());
            assert_eq!(PrepItem::parse(data["item"].as_str().unwrap()), Some(*item));
            assert_eq!(data["done"], tick.is_none(), "{item:?}");
            assert_eq!(action["fallback"]["data"]["done"], tick.is_none());
            let title = if tick.is_some() { "Undo" } else { "Done" };
            assert_eq!(action["title"], title);
        }
    }

    #[test]
    fn ticked_items_show_who_and_when() {
        let items = checklist(Motion::Rfa, &[PrepItem::CompanyBackground]);
        let texts = texts(&prep_card(3, "Contoso", Motion::Rfa, &items));
        assert!(texts.contains(&"✓".to_owned()));
        assert!(texts.contains(&"by Dana, 24 Nov 10:02".to_owned()));
        assert!(texts.contains(&"1 of 3 done".to_owned()));
        assert!(!texts.iter().any(|t| t.starts_with("All done")));
    }

    #[test]
    fn all_ticked_points_to_invite() {
        let all = PrepItem::for_motion(Motion::Rfa);
        let texts = texts(&prep_card(
            3,
            "Contoso",
            Motion::Rfa,
            &checklist(Motion::Rfa, &all),
        ));
        assert!(texts.contains(&"3 of 3 done".to_owned()));
        assert!(texts.contains(&"All done. Next: ".to_owned()));
    }

    #[test]
    fn tick_info_degrades_gracefully() {
        let blank = TickInfo {
            by: " ".into(),
            at: String::new(),
        };
        assert_eq!(ticked_by(&blank), "done");
        let no_time = TickInfo {
            by: "Dana".into(),
            at: String::new(),
        };
        assert_eq!(ticked_by(&no_time), "by Dana");
    }
}
