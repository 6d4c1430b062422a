//! B35: the send proxy takes every body the Graph messages endpoint takes,
//! and checks every person a body names.

use serde_json::{Value, json};

use super::{
    BSUID, LINE_A, NUMBER, OTHER_NUMBER, World, assert_blocked, fixture, graph_answer, today,
};
use crate::send_proxy::{GRAPH_PATH, assert_graph_error};

fn text_to(to: Option<&str>, recipient: Option<&str>) -> String {
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "type": "text",
        "text": {"body": "Your order has shipped"}
    });
    if let Some(to) = to {
        body["to"] = json!(to);
    }
    if let Some(recipient) = recipient {
        body["recipient"] = json!(recipient);
    }
    body.to_string()
}

#[tokio::test]
async fn b35_send_to_recipient_bsuid_without_to_is_checked_and_forwarded() {
    let world = World::new().await;
    let answer = graph_answer(
        json!([{"input": BSUID, "user_id": BSUID}]),
        "wamid.B35SENT1",
    );
    world.graph_answers_json(answer.clone()).await;
    let body = fixture("graph-send-bsuid.request.json");
    let response = world.send(&body).await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(response.json(), answer);

    let requests = world.graph_requests().await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].url.path(), GRAPH_PATH);
    assert_eq!(requests[0].body, body.as_bytes().to_vec(), "byte for byte");

    let chat = world
        .api
        .call("GET", &format!("/v1/chats/{LINE_A}/{BSUID}"), None)
        .await;
    assert_eq!(
        chat.status, 200,
        "the send is recorded on the BSUID's chat: {:?}",
        chat.body
    );
    assert!(chat.body["last_outbound_at"].is_string(), "{:?}", chat.body);
    assert!(world.events(BSUID, "outbound_refused").await.is_empty());
}

#[tokio::test]
async fn b35_recipient_bsuid_blocked_is_refused_audited_and_counted() {
    let world = World::new().await;
    world.block(BSUID, LINE_A).await;
    let response = world.send(&fixture("graph-send-bsuid.request.json")).await;
    let error_data = assert_blocked(&response);
    assert_eq!(
        error_data,
        json!({"reason": "recipient_blocked", "recipient": BSUID, "scope": LINE_A})
    );
    assert_eq!(response.json()["error"]["type"], "BlocklistRefusal");
    assert!(world.graph_requests().await.is_empty());
    let refusals = world.events(BSUID, "outbound_refused").await;
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0]["number"], Value::Null);
    assert_eq!(today(&world, "outbound_refused").await, 1);
}

#[tokio::test]
async fn b35_to_and_recipient_are_both_checked() {
    let world = World::new().await;
    world.block(BSUID, "all").await;
    // `to` is fine, `recipient` is blocked: refused, naming the blocked one
    // in the answer and in the audit trail.
    let response = world.send(&text_to(Some(NUMBER), Some(BSUID))).await;
    let error_data = assert_blocked(&response);
    assert_eq!(error_data["recipient"], BSUID, "{error_data}");
    assert_eq!(world.events(BSUID, "outbound_refused").await.len(), 1);
    assert!(world.events(NUMBER, "outbound_refused").await.is_empty());
    // `to` is blocked, `recipient` is fine: refused.
    world.block(OTHER_NUMBER, "all").await;
    let response = world
        .send(&text_to(
            Some(OTHER_NUMBER),
            Some("US.55511112222333344445"),
        ))
        .await;
    assert_blocked(&response);
    assert!(world.graph_requests().await.is_empty(), "nothing sent");
    assert_eq!(today(&world, "outbound_refused").await, 2);

    // Neither blocked: forwarded as it came.
    let body = text_to(Some("+16505550100"), Some("US.99911112222333344445"));
    let response = world.send(&body).await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(
        world.graph_requests().await[0].body,
        body.as_bytes().to_vec()
    );
}

#[tokio::test]
async fn b35_to_and_recipient_of_two_different_people_is_422_recipient_mismatch() {
    let world = World::new().await;
    // The BSUID is known to be +16505551234's.
    world.deliver(&fixture("inbound-bsuid-linked.json")).await;

    let response = world.send(&text_to(Some(OTHER_NUMBER), Some(BSUID))).await;
    let error_data = assert_graph_error(&response, 422, "recipient_mismatch");
    assert_eq!(error_data["field"], "recipient", "{error_data}");
    assert!(world.graph_requests().await.is_empty());

    // The same person under both: forwarded.
    let response = world.send(&text_to(Some(NUMBER), Some(BSUID))).await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(world.graph_requests().await.len(), 1);
}

#[tokio::test]
async fn b35_mark_as_read_is_forwarded_unchecked() {
    let world = World::new().await;
    // Even where unknown recipients are refused, a read receipt goes out.
    world
        .settings(LINE_A, json!({"allow_unknown_numbers": false}))
        .await;
    let answer = json!({"success": true});
    world.graph_answers_json(answer.clone()).await;
    let with_typing = fixture("graph-mark-read.request.json");
    let mut without_typing: Value = serde_json::from_str(&with_typing).unwrap();
    without_typing
        .as_object_mut()
        .unwrap()
        .remove("typing_indicator");
    let without_typing = without_typing.to_string();

    for body in [&with_typing, &without_typing] {
        let response = world.send(body).await;
        assert_eq!(response.status, 200, "{body}: {:?}", response.json());
        assert_eq!(response.json(), answer);
    }
    let requests = world.graph_requests().await;
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body, with_typing.as_bytes().to_vec());
    assert_eq!(requests[1].body, without_typing.as_bytes().to_vec());
    assert_eq!(requests[0].url.path(), GRAPH_PATH);
    assert_eq!(today(&world, "outbound_refused").await, 0);
}

#[tokio::test]
async fn b35_group_send_is_forwarded_unchecked() {
    let world = World::new().await;
    world
        .settings(LINE_A, json!({"allow_unknown_numbers": false}))
        .await;
    let body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "group",
        "to": "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyOTM4MjAZD",
        "type": "text",
        "text": {"body": "Hello, group"}
    })
    .to_string();
    let response = world.send(&body).await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    let requests = world.graph_requests().await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].body, body.as_bytes().to_vec());
    assert_eq!(today(&world, "outbound_refused").await, 0);
}

#[tokio::test]
async fn b35_body_naming_nobody_is_422_missing_recipient() {
    let world = World::new().await;
    let body = json!({
        "messaging_product": "whatsapp",
        "type": "text",
        "text": {"body": "to whom?"}
    })
    .to_string();
    let response = world.send(&body).await;
    assert_graph_error(&response, 422, "missing_recipient");
    assert!(world.graph_requests().await.is_empty());
}

#[tokio::test]
async fn b35_malformed_recipient_bsuid_is_422_invalid_user_id() {
    let world = World::new().await;
    for recipient in ["US.13-49", "us.1349", &format!("US.{}", "9".repeat(129))] {
        let response = world.send(&text_to(None, Some(recipient))).await;
        let error_data = assert_graph_error(&response, 422, "invalid_user_id");
        assert_eq!(
            error_data["field"], "recipient",
            "{recipient}: {error_data}"
        );
    }
    assert!(world.graph_requests().await.is_empty());
}

#[tokio::test]
async fn b35_a_status_other_than_read_without_recipient_is_422_missing_recipient() {
    let world = World::new().await;
    let body =
        json!({"messaging_product": "whatsapp", "status": "delivered", "message_id": "wamid.X"});
    let response = world.send(&body.to_string()).await;
    assert_graph_error(&response, 422, "missing_recipient");
    assert!(world.graph_requests().await.is_empty(), "nothing sent");
}

#[tokio::test]
async fn b60_recipients_check_names_a_malformed_bsuid_invalid_user_id() {
    let world = World::new().await;
    world.block(BSUID, "all").await;
    let body = json!({"numbers": [BSUID, "US.13-49", "not a number", "+16505550100"]});
    let response = world.check(&body.to_string()).await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(
        response.json(),
        json!({
            "allowed": ["+16505550100"],
            "refused": [
                {"number": BSUID, "reason": "recipient_blocked"},
                {"number": "US.13-49", "reason": "invalid_user_id"},
                {"number": "not a number", "reason": "invalid_number"}
            ]
        })
    );
}
