//! Calls people make (`field: calls`, Meta's Calling API): judged like
//! their messages. A blocked person's call never reaches the CRM (B23, by
//! number or BSUID), an allowed one is forwarded once per event (B22,
//! B24), and the business's own calls go on as Meta sent them.

use serde_json::{Value, json};

use crate::identity::{BSUID, LINE_A, World};

/// A `calls` change on LINE_A with one call event per `(call id, event,
/// from, from_user_id)`, each with its `contacts[]` entry, as Meta sends
/// a call a person made.
fn calls_from(calls: &[(&str, &str, &str, &str)]) -> String {
    let now = chrono::Utc::now().timestamp().to_string();
    let items: Vec<Value> = calls
        .iter()
        .map(|(id, event, from, user_id)| {
            let mut call = json!({
                "from": from,
                "from_user_id": user_id,
                "id": id,
                "to": "15550783881",
                "event": event,
                "timestamp": now,
                "direction": "USER_INITIATED",
            });
            if *event == "connect" {
                call["session"] = json!({"sdp_type": "offer", "sdp": "<SDP>"});
            } else {
                call["status"] = json!("COMPLETED");
            }
            call
        })
        .collect();
    let contacts: Vec<Value> = calls
        .iter()
        .map(|(_, _, from, user_id)| {
            json!({"wa_id": from, "profile": {"name": format!("Caller {user_id}")}, "user_id": user_id})
        })
        .collect();
    calls_change(json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": LINE_A},
        "contacts": contacts,
        "calls": items,
    }))
}

fn calls_change(value: Value) -> String {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "calls", "value": value}]}]
    })
    .to_string()
}

/// The `calls[]` ids (with their events) of every change the CRM got.
async fn forwarded_calls(world: &World) -> Vec<String> {
    world
        .ingress
        .crm_bodies()
        .await
        .iter()
        .flat_map(|body| body["entry"].as_array().cloned().unwrap_or_default())
        .flat_map(|entry| entry["changes"].as_array().cloned().unwrap_or_default())
        .flat_map(|change| {
            change["value"]["calls"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|call| {
            format!(
                "{}#{}",
                call["id"].as_str().unwrap_or(""),
                call["event"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// B23, B60: a blocked person's call, by number or by BSUID with the
/// number hidden (`from` empty), never reaches the CRM: neither its
/// connect (the business cannot answer it) nor its end. Each event is an
/// `inbound_suppressed` event of type `call`, once. Before, a `calls`
/// change went to the CRM whole, from anyone.
#[tokio::test]
async fn b23_a_blocked_persons_call_does_not_reach_the_crm() {
    let world = World::new().await;
    world.block("+16505550190", "all").await;
    world.block(BSUID, LINE_A).await;

    for event in ["connect", "terminate"] {
        let body = calls_from(&[(
            "wacid.BLOCKED1",
            event,
            "16505550190",
            "US.1000000000000000190",
        )]);
        for attempt in 0..2 {
            let answer = world.deliver(&body).await;
            assert_eq!(answer.status, 200, "{:?}", answer.body);
            let (suppressed, duplicates) = if attempt == 0 { (1, 0) } else { (0, 1) };
            assert_eq!(
                answer.body["suppressed"], suppressed,
                "{event}: {:?}",
                answer.body
            );
            assert_eq!(
                answer.body["duplicates"], duplicates,
                "{event}: {:?}",
                answer.body
            );
        }
    }
    let hidden = calls_from(&[("wacid.BLOCKED2", "connect", "", BSUID)]);
    let answer = world.deliver(&hidden).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["suppressed"], 1, "{:?}", answer.body);

    assert!(
        world.ingress.crm_bodies().await.is_empty(),
        "the CRM got a blocked call"
    );
    let events = world.events("+16505550190", "inbound_suppressed").await;
    assert_eq!(events.len(), 2, "{events:?}");
    for event in &events {
        assert_eq!(event["details"]["message_type"], "call", "{event}");
    }
    assert_eq!(world.events(BSUID, "inbound_suppressed").await.len(), 1);
}

/// B22, B24: an allowed person's call is forwarded as Meta sent it (the
/// caller's contact too), each event once; beside a blocked caller's in
/// the same change, only the allowed one and its contact go on. A call is
/// not a written message: it opens no chat session.
#[tokio::test]
async fn b22_b24_an_allowed_call_is_forwarded_once_and_a_blocked_one_beside_it_is_not() {
    let world = World::new().await;
    let body = calls_from(&[(
        "wacid.ALLOWED1",
        "connect",
        "16505550191",
        "US.1000000000000000191",
    )]);
    for _ in 0..2 {
        let answer = world.deliver(&body).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }
    assert_eq!(
        forwarded_calls(&world).await,
        vec!["wacid.ALLOWED1#connect"]
    );
    let forwarded = &world.ingress.crm_bodies().await[0];
    let sent: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(forwarded, &sent, "forwarded as Meta sent it");
    let chat = world
        .stack()
        .store
        .get_chat(
            &blocklist::model::PhoneNumberId::parse(LINE_A).unwrap(),
            &blocklist::Subject::parse("+16505550191").unwrap(),
        )
        .await
        .unwrap();
    assert!(chat.is_none(), "{chat:?}");

    world.block("+16505550192", "all").await;
    let mixed = calls_from(&[
        (
            "wacid.MIXED1",
            "connect",
            "16505550192",
            "US.1000000000000000192",
        ),
        (
            "wacid.MIXED2",
            "connect",
            "16505550193",
            "US.1000000000000000193",
        ),
    ]);
    let answer = world.deliver(&mixed).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["suppressed"], 1, "{:?}", answer.body);
    assert_eq!(
        forwarded_calls(&world).await,
        vec!["wacid.ALLOWED1#connect", "wacid.MIXED2#connect"]
    );
    let last = world.ingress.crm_bodies().await.pop().unwrap();
    let contacts = &last["entry"][0]["changes"][0]["value"]["contacts"];
    assert_eq!(contacts.as_array().map(Vec::len), Some(1), "{contacts}");
    assert_eq!(contacts[0]["wa_id"], "16505550193", "{contacts}");

    // Both numbers hidden (empty `from` and `wa_id`): the blocked caller's
    // contact still does not go on beside the allowed one's.
    world.block("US.1000000000000000195", LINE_A).await;
    let hidden = calls_from(&[
        ("wacid.HIDDEN1", "connect", "", "US.1000000000000000195"),
        ("wacid.HIDDEN2", "connect", "", "US.1000000000000000196"),
    ]);
    let answer = world.deliver(&hidden).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["suppressed"], 1, "{:?}", answer.body);
    let last = world.ingress.crm_bodies().await.pop().unwrap();
    let value = &last["entry"][0]["changes"][0]["value"];
    assert_eq!(value["calls"].as_array().map(Vec::len), Some(1), "{value}");
    assert_eq!(value["calls"][0]["id"], "wacid.HIDDEN2", "{value}");
    let contacts = value["contacts"].as_array().cloned().unwrap_or_default();
    assert_eq!(contacts.len(), 1, "{value}");
    assert_eq!(contacts[0]["user_id"], "US.1000000000000000196", "{value}");
}

/// The business's own calls (`BUSINESS_INITIATED`) are not a person
/// reaching the business: they go on as Meta sent them, also to someone
/// blocked, and once (claimed by their digest, B22).
#[tokio::test]
async fn b24_the_business_own_calls_go_on_as_meta_sent_them() {
    let world = World::new().await;
    world.block("+16505550194", "all").await;
    let body = calls_change(json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": LINE_A},
        "contacts": [{"profile": {"name": "Callee"}, "user_id": "US.1000000000000000194"}],
        "calls": [{
            "session": {"sdp_type": "answer", "sdp": "<SDP>"},
            "from": "15550783881",
            "id": "wacid.OURS1",
            "to": "16505550194",
            "to_user_id": "US.1000000000000000194",
            "event": "connect",
            "timestamp": chrono::Utc::now().timestamp().to_string(),
            "direction": "BUSINESS_INITIATED"
        }]
    }));
    for _ in 0..2 {
        let answer = world.deliver(&body).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }
    let bodies = world.ingress.crm_bodies().await;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0], serde_json::from_str::<Value>(&body).unwrap());
}

/// B22: the business's own call beside a person's, in one change, is
/// forwarded once like the person's: a redelivery of the change forwards
/// neither again. Before, the business's call was not claimed and went to
/// the CRM on every attempt.
#[tokio::test]
async fn b22_the_business_own_call_beside_a_persons_is_forwarded_once() {
    let world = World::new().await;
    let mut body: Value = serde_json::from_str(&calls_from(&[(
        "wacid.THEIRS1",
        "connect",
        "16505550197",
        "US.1000000000000000197",
    )]))
    .unwrap();
    body["entry"][0]["changes"][0]["value"]["calls"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "from": "15550783881",
            "id": "wacid.OURS2",
            "to": "16505550198",
            "event": "terminate",
            "timestamp": chrono::Utc::now().timestamp().to_string(),
            "direction": "BUSINESS_INITIATED",
            "status": "COMPLETED"
        }));
    for _ in 0..2 {
        let answer = world.deliver(&body.to_string()).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }
    assert_eq!(
        forwarded_calls(&world).await,
        vec!["wacid.THEIRS1#connect", "wacid.OURS2#terminate"]
    );
}
