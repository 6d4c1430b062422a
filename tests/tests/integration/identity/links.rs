//! B61: identities Meta shows together are linked, and a block of either
//! one stops the person on every path.

use serde_json::{Value, json};

use super::{
    BSUID, LINE_A, LINE_B, NUMBER, OTHER_BSUID, OTHER_NUMBER, World, assert_blocked, bsuid_only,
    contact, delivery, delivery_on, fixture, graph_answer, linked_numbers, linked_user_ids,
    shown_then_hidden, text_message, today,
};
use crate::send_proxy::text_send_to;

const LINKED_ID: &str = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRCSUQxAA==";
const BSUID_ONLY_ID: &str = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRCSUQyAA==";

/// Every `identity_linked` event in the histories of `subjects`.
async fn link_events(world: &World, subjects: &[&str]) -> Vec<Value> {
    let mut events = Vec::new();
    for subject in subjects {
        events.extend(world.events(subject, "identity_linked").await);
    }
    events
}

#[tokio::test]
async fn b61_link_shown_by_a_message_is_stored_on_both_identities_and_audited() {
    let world = World::new().await;
    let response = world.deliver(&fixture("inbound-bsuid-linked.json")).await;
    assert_eq!(response.body["forwarded"], 1, "{:?}", response.body);
    assert_eq!(world.forwarded_message_ids().await, vec![LINKED_ID]);

    for subject in [NUMBER, BSUID] {
        let view = world.view(subject).await;
        let mut keys: Vec<&str> = view
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "blocks",
                "chats",
                "consents",
                "contact",
                "linked_blocks",
                "links",
                "number",
                "rules",
                "subject"
            ],
            "{view}"
        );
        let links = view["links"].as_array().unwrap();
        assert_eq!(links.len(), 1, "{subject}: {view}");
        let link = &links[0];
        let mut keys: Vec<&str> = link
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["number", "parent_user_id", "seen_at", "user_id"],
            "{link}"
        );
        assert_eq!(link["number"], NUMBER);
        assert_eq!(link["user_id"], BSUID);
        assert_eq!(link["parent_user_id"], Value::Null);
        let seen_at = link["seen_at"].as_str().expect("seen_at is a time");
        chrono::DateTime::parse_from_rfc3339(seen_at).expect("RFC 3339");
        assert_eq!(view["blocks"], json!([]));
        assert_eq!(view["linked_blocks"], json!([]));
    }

    let events = link_events(&world, &[NUMBER, BSUID]).await;
    assert_eq!(events.len(), 1, "one identity_linked event: {events:?}");
    let text = events[0].to_string();
    assert!(text.contains(BSUID) && text.contains(NUMBER), "{text}");

    // Seen again: nothing new is written.
    let again = fixture("inbound-bsuid-linked.json").replace(LINKED_ID, "wamid.B61AGAIN");
    world.deliver(&again).await;
    assert_eq!(link_events(&world, &[NUMBER, BSUID]).await.len(), 1);
    assert_eq!(
        world.view(BSUID).await["links"].as_array().unwrap().len(),
        1
    );
}

#[tokio::test]
async fn b61_bsuid_only_message_from_blocked_number_is_suppressed() {
    let world = World::new().await;
    world.block(NUMBER, "all").await;
    // The person writes showing both identities: suppressed (the number is
    // blocked), and the link is learned all the same.
    let first = world.deliver(&fixture("inbound-bsuid-linked.json")).await;
    assert_eq!(first.body["suppressed"], 1, "{:?}", first.body);
    // Later with the number hidden.
    let response = world.deliver(&fixture("inbound-bsuid-only.json")).await;
    assert_eq!(response.body["suppressed"], 1, "{:?}", response.body);
    assert_eq!(response.body["forwarded"], 0);
    assert!(
        world.ingress.crm_bodies().await.is_empty(),
        "the CRM got nothing"
    );

    let suppressed = world.events(BSUID, "inbound_suppressed").await;
    assert_eq!(suppressed.len(), 1, "{suppressed:?}");
    assert_eq!(suppressed[0]["subject"], BSUID);
    assert_eq!(suppressed[0]["details"]["message_id"], BSUID_ONLY_ID);
    assert_eq!(today(&world, "inbound_suppressed").await, 2);
    let chat = world
        .api
        .call("GET", &format!("/v1/chats/{LINE_A}/{BSUID}"), None)
        .await;
    assert_eq!(chat.status, 404, "a suppressed message opens no chat");

    let view = world.view(BSUID).await;
    assert_eq!(view["blocks"], json!([]), "the BSUID itself is not blocked");
    let linked = view["linked_blocks"].as_array().unwrap();
    assert_eq!(linked.len(), 1, "{view}");
    assert_eq!(linked[0]["subject"], NUMBER);
    assert_eq!(linked[0]["scope"], "all");
}

#[tokio::test]
async fn b61_number_blocked_after_the_link_suppresses_bsuid_only_messages_until_unblocked() {
    let world = World::new().await;
    world.deliver(&fixture("inbound-bsuid-linked.json")).await;
    assert_eq!(world.forwarded_message_ids().await, vec![LINKED_ID]);

    world.block(NUMBER, LINE_A).await;
    let view = world.view(BSUID).await;
    let linked = view["linked_blocks"].as_array().unwrap();
    assert_eq!(
        linked.len(),
        1,
        "the block is mirrored on the BSUID: {view}"
    );
    assert_eq!(linked[0]["subject"], NUMBER);
    assert_eq!(linked[0]["scope"], LINE_A);

    let response = world.deliver(&fixture("inbound-bsuid-only.json")).await;
    assert_eq!(response.body["suppressed"], 1, "{:?}", response.body);
    assert_eq!(world.forwarded_message_ids().await, vec![LINKED_ID]);

    // The block was on LINE_A only: the same person writing to LINE_B
    // gets through.
    let other_line = fixture("inbound-bsuid-only.json")
        .replace(LINE_A, LINE_B)
        .replace(BSUID_ONLY_ID, "wamid.B61LINEB");
    let response = world.deliver(&other_line).await;
    assert_eq!(response.body["forwarded"], 1, "{:?}", response.body);

    let unblocked = world.unblock(NUMBER, LINE_A).await;
    assert_eq!(unblocked.status, 200, "{:?}", unblocked.body);
    assert_eq!(world.view(BSUID).await["linked_blocks"], json!([]));
    let response = world.deliver(&bsuid_only("wamid.B61AFTER")).await;
    assert_eq!(response.body["forwarded"], 1, "{:?}", response.body);
    let ids = world.forwarded_message_ids().await;
    assert_eq!(ids, vec![LINKED_ID, "wamid.B61LINEB", "wamid.B61AFTER"]);
}

#[tokio::test]
async fn b61_bsuid_blocked_directly_then_bsuid_only_webhook_is_suppressed() {
    let world = World::new().await;
    world.block(BSUID, "all").await;
    let body = delivery(
        vec![
            contact(None, Some(BSUID)),
            contact(Some("16505557777"), Some(OTHER_BSUID)),
        ],
        vec![
            text_message(None, Some(BSUID), "wamid.B61BLOCKED"),
            text_message(Some("16505557777"), Some(OTHER_BSUID), "wamid.B61OTHER"),
        ],
        vec![],
    );
    let response = world.deliver(&body).await;
    assert_eq!(response.body["suppressed"], 1, "{:?}", response.body);
    assert_eq!(world.forwarded_message_ids().await, vec!["wamid.B61OTHER"]);
    let forwarded = &world.ingress.crm_bodies().await[0];
    let contacts = forwarded["entry"][0]["changes"][0]["value"]["contacts"]
        .as_array()
        .unwrap();
    assert_eq!(contacts.len(), 1, "the blocked person's profile is dropped");
    assert_eq!(contacts[0]["user_id"], OTHER_BSUID);

    let suppressed = world.events(BSUID, "inbound_suppressed").await;
    assert_eq!(suppressed.len(), 1);
    assert_eq!(suppressed[0]["details"]["message_id"], "wamid.B61BLOCKED");
    assert_eq!(suppressed[0]["number"], Value::Null);
    assert_eq!(today(&world, "inbound_suppressed").await, 1);
}

#[tokio::test]
async fn b61_blocked_bsuid_suppresses_messages_from_the_linked_number() {
    let world = World::new().await;
    world.deliver(&fixture("inbound-bsuid-linked.json")).await;
    world.block(BSUID, "all").await;
    assert_eq!(
        world.view(NUMBER).await["linked_blocks"][0]["subject"],
        BSUID,
        "mirrored on the number"
    );
    // inbound-text.json: the number alone, as before BSUIDs.
    let response = world.deliver(&fixture("inbound-text.json")).await;
    assert_eq!(response.body["suppressed"], 1, "{:?}", response.body);
    assert_eq!(world.forwarded_message_ids().await, vec![LINKED_ID]);
    assert_eq!(world.events(NUMBER, "inbound_suppressed").await.len(), 1);
}

#[tokio::test]
async fn b61_send_with_recipient_bsuid_of_blocked_number_is_refused_with_outbound_refused() {
    let world = World::new().await;
    world.deliver(&fixture("inbound-bsuid-linked.json")).await;
    world.block(NUMBER, "all").await;

    let response = world.send(&fixture("graph-send-bsuid.request.json")).await;
    let error_data = assert_blocked(&response);
    assert_eq!(
        error_data,
        json!({"reason": "recipient_blocked", "recipient": BSUID, "scope": "all"})
    );
    assert!(world.graph_requests().await.is_empty(), "nothing sent");

    let refusals = world.events(BSUID, "outbound_refused").await;
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0]["subject"], BSUID);
    assert_eq!(refusals[0]["reason"], "recipient_blocked");
    assert_eq!(refusals[0]["actor"], "crm");
    assert_eq!(refusals[0]["details"]["phone_number_id"], LINE_A);
    assert_eq!(today(&world, "outbound_refused").await, 1);
}

#[tokio::test]
async fn b61_send_to_number_of_blocked_bsuid_is_refused() {
    let world = World::new().await;
    world.deliver(&fixture("inbound-bsuid-linked.json")).await;
    world.block(BSUID, LINE_A).await;

    let response = world.send(&text_send_to("16505551234")).await;
    let error_data = assert_blocked(&response);
    assert_eq!(error_data["recipient"], NUMBER);
    assert_eq!(error_data["scope"], LINE_A);
    assert!(world.graph_requests().await.is_empty());
    assert_eq!(world.events(NUMBER, "outbound_refused").await.len(), 1);

    // The BSUID's block is for LINE_A only.
    let other_line = world.send_on(LINE_B, &text_send_to(NUMBER)).await;
    assert_eq!(other_line.status, 200, "{:?}", other_line.json());
    assert_eq!(world.graph_requests().await.len(), 1);
}

#[tokio::test]
async fn b61_send_proxy_learns_the_link_from_graphs_answer() {
    let world = World::new().await;
    let answer = graph_answer(
        json!([{"input": BSUID, "wa_id": "16505551234", "user_id": BSUID}]),
        "wamid.B61GRAPH1",
    );
    world.graph_answers_json(answer.clone()).await;
    let body = fixture("graph-send-bsuid.request.json");
    let response = world.send(&body).await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(response.json(), answer, "Graph's answer, unchanged");
    assert_eq!(
        world.graph_requests().await[0].body,
        body.as_bytes().to_vec()
    );

    assert_eq!(linked_user_ids(&world.view(NUMBER).await), vec![BSUID]);
    assert_eq!(linked_numbers(&world.view(BSUID).await), vec![NUMBER]);
    assert_eq!(link_events(&world, &[NUMBER, BSUID]).await.len(), 1);

    // Now a block of the number stops sends to the BSUID and messages from it.
    world.block(NUMBER, "all").await;
    let refused = world.send(&body).await;
    assert_blocked(&refused);
    assert_eq!(world.graph_requests().await.len(), 1, "still one send");
    let inbound = world.deliver(&fixture("inbound-bsuid-only.json")).await;
    assert_eq!(inbound.body["suppressed"], 1, "{:?}", inbound.body);
}

#[tokio::test]
async fn b61_graph_answer_links_a_number_that_was_blocked_before() {
    let world = World::new().await;
    world.block(NUMBER, "all").await;
    // Nothing links the BSUID to the number yet: the send goes out.
    world
        .graph_answers_json(graph_answer(
            json!([{"input": BSUID, "wa_id": "16505551234", "user_id": BSUID}]),
            "wamid.B61GRAPH2",
        ))
        .await;
    let body = fixture("graph-send-bsuid.request.json");
    let first = world.send(&body).await;
    assert_eq!(first.status, 200, "{:?}", first.json());

    // Graph's answer showed who it is: the next send is refused.
    let view = world.view(BSUID).await;
    assert_eq!(linked_numbers(&view), vec![NUMBER], "{view}");
    assert_eq!(view["linked_blocks"][0]["subject"], NUMBER, "{view}");
    let second = world.send(&body).await;
    let error_data = assert_blocked(&second);
    assert_eq!(error_data["recipient"], BSUID);
    assert_eq!(world.graph_requests().await.len(), 1);
}

/// B61: one delivery shows a number with its BSUID on one business number,
/// and the BSUID alone on another (the number hidden there), where the
/// number is blocked: the link is not stored until after the forward, so
/// the BSUID's message is judged with the identities the delivery itself
/// shows, and with the number's blocks in every scope.
#[tokio::test]
async fn b61_a_link_shown_in_one_change_holds_for_the_other_changes_of_the_delivery() {
    let world = World::new().await;
    // Blocked where the number is hidden only.
    world.block(NUMBER, LINE_B).await;
    let body = shown_then_hidden("wamid.B61SHOWN", "wamid.B61HIDDEN");
    let response = world.deliver(&body).await;
    assert_eq!(response.body["suppressed"], 1, "{:?}", response.body);
    assert_eq!(world.forwarded_message_ids().await, ["wamid.B61SHOWN"]);
    // A person the delivery does not tie to the number is not held.
    let stranger = delivery_on(
        LINE_B,
        vec![contact(None, Some(OTHER_BSUID))],
        vec![text_message(None, Some(OTHER_BSUID), "wamid.B61OTHER")],
        vec![],
    );
    assert_eq!(world.deliver(&stranger).await.body["forwarded"], 1);
}

#[tokio::test]
async fn b61_one_bsuid_shown_with_two_numbers_in_one_delivery_links_neither() {
    let world = World::new().await;
    world.block(NUMBER, "all").await;
    let body = delivery(
        vec![
            contact(Some("16505551234"), Some(BSUID)),
            contact(Some("16505557777"), Some(BSUID)),
        ],
        vec![
            text_message(Some("16505551234"), None, "wamid.B61AMB1"),
            text_message(Some("16505557777"), None, "wamid.B61AMB2"),
        ],
        vec![],
    );
    let response = world.deliver(&body).await;
    assert_eq!(response.body["suppressed"], 1, "{:?}", response.body);
    // Each number is still enforced by its own blocks.
    assert_eq!(world.forwarded_message_ids().await, vec!["wamid.B61AMB2"]);

    for subject in [NUMBER, OTHER_NUMBER, BSUID] {
        let view = world.view(subject).await;
        assert_eq!(view["links"], json!([]), "{subject} linked: {view}");
        assert_eq!(view["linked_blocks"], json!([]), "{subject}: {view}");
    }
    assert!(
        link_events(&world, &[NUMBER, OTHER_NUMBER, BSUID])
            .await
            .is_empty()
    );
    // The BSUID is nobody's in particular: its messages are not stopped
    // by the blocked number.
    let response = world.deliver(&bsuid_only("wamid.B61AMB3")).await;
    assert_eq!(response.body["forwarded"], 1, "{:?}", response.body);
    // And the blocked number stays blocked.
    let response = world
        .deliver(&delivery(
            vec![],
            vec![text_message(Some("16505551234"), None, "wamid.B61AMB4")],
            vec![],
        ))
        .await;
    assert_eq!(response.body["suppressed"], 1, "{:?}", response.body);
}

#[tokio::test]
async fn b61_status_with_both_recipient_ids_links_them() {
    let world = World::new().await;
    let status = json!({
        "id": "wamid.B61STATUS",
        "status": "delivered",
        "timestamp": chrono::Utc::now().timestamp().to_string(),
        "recipient_id": "16505551234",
        "recipient_user_id": BSUID
    });
    world.deliver(&delivery(vec![], vec![], vec![status])).await;
    assert_eq!(linked_user_ids(&world.view(NUMBER).await), vec![BSUID]);
    assert_eq!(linked_numbers(&world.view(BSUID).await), vec![NUMBER]);

    world.block(BSUID, "all").await;
    let refused = world.send(&text_send_to(NUMBER)).await;
    assert_blocked(&refused);
    assert!(world.graph_requests().await.is_empty());
}

#[tokio::test]
async fn b61_block_of_a_parent_bsuid_stops_the_person() {
    let world = World::new().await;
    let parent = "US.ENT.11815799212886844830";
    world.block(parent, "all").await;
    // The contacts[] entry names the parent beside the BSUID and number.
    let mut linked = contact(Some("16505551234"), Some(BSUID));
    linked["parent_user_id"] = json!(parent);
    let body = delivery(
        vec![linked],
        vec![text_message(
            Some("16505551234"),
            Some(BSUID),
            "wamid.B61PARENT1",
        )],
        vec![],
    );
    let response = world.deliver(&body).await;
    assert_eq!(response.body["suppressed"], 1, "{:?}", response.body);

    let view = world.view(NUMBER).await;
    let links = view["links"].as_array().unwrap();
    assert_eq!(links.len(), 1, "{view}");
    assert_eq!(links[0]["parent_user_id"], parent);
    assert_eq!(links[0]["user_id"], BSUID);

    // Later, the number alone and the BSUID alone are both stopped.
    let response = world.deliver(&fixture("inbound-text.json")).await;
    assert_eq!(response.body["suppressed"], 1, "{:?}", response.body);
    let response = world.deliver(&fixture("inbound-bsuid-only.json")).await;
    assert_eq!(response.body["suppressed"], 1, "{:?}", response.body);
    assert!(world.ingress.crm_bodies().await.is_empty());
    assert_blocked(&world.send(&text_send_to(NUMBER)).await);
    assert_blocked(&world.send(&fixture("graph-send-bsuid.request.json")).await);
    assert!(world.graph_requests().await.is_empty());
}

#[tokio::test]
async fn b61_a_relinked_number_keeps_both_bsuids_and_an_unblock_reaches_both() {
    let world = World::new().await;
    let new_bsuid = "US.88811112222333344445";
    world.deliver(&fixture("inbound-bsuid-linked.json")).await;
    world.block(NUMBER, "all").await;
    // WhatsApp issued the number a new BSUID: Meta now shows that pair.
    let relinked = delivery(
        vec![contact(Some("16505551234"), Some(new_bsuid))],
        vec![text_message(
            Some("16505551234"),
            Some(new_bsuid),
            "wamid.B61RELINK",
        )],
        vec![],
    );
    let response = world.deliver(&relinked).await;
    assert_eq!(response.body["suppressed"], 1, "{:?}", response.body);
    // Links accumulate: both BSUIDs are the person's, both stay stopped.
    assert_eq!(
        linked_user_ids(&world.view(NUMBER).await),
        vec![BSUID, new_bsuid]
    );
    for user in [BSUID, new_bsuid] {
        assert!(
            !world.view(user).await["linked_blocks"]
                .as_array()
                .unwrap()
                .is_empty(),
            "{user} is stopped by the number's block"
        );
    }

    // The number is unblocked: no identity of the person is blocked any
    // more, so nothing of them may stay suppressed.
    let unblocked = world.unblock(NUMBER, "all").await;
    assert_eq!(unblocked.status, 200, "{:?}", unblocked.body);
    for subject in [NUMBER, new_bsuid, BSUID] {
        let view = world.view(subject).await;
        assert_eq!(
            view["linked_blocks"],
            json!([]),
            "{subject} still mirrors a block that is gone: {view}"
        );
    }
    let response = world.deliver(&bsuid_only("wamid.B61OLDBSUID")).await;
    assert_eq!(
        response.body["forwarded"], 1,
        "a message under the old BSUID after the unblock: {:?}",
        response.body
    );
}
