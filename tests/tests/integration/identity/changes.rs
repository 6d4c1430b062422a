//! B62: a blocked person's blocks follow them to a changed number.

use serde_json::{Value, json};

use super::{
    BSUID, LINE_A, LINE_B, NUMBER, World, assert_blocked, delivery, fixture, text_message,
};
use crate::send_proxy::text_send_to;

const NEW_NUMBER: &str = "+16505559876";
const SYSTEM_ID: &str = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBRTWVNURU1DSEFOR0UxAA==";

fn changed_number() -> String {
    fixture("system-user-changed-number.json")
}

/// The new number's blocks, as `GET /v1/blocks/{subject}` shows them.
async fn new_blocks(world: &World) -> Vec<Value> {
    world.view(NEW_NUMBER).await["blocks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn scopes(blocks: &[Value]) -> Vec<String> {
    let mut scopes: Vec<String> = blocks
        .iter()
        .map(|b| b["scope"].as_str().unwrap().to_owned())
        .collect();
    scopes.sort();
    scopes
}

#[tokio::test]
async fn b62_changed_number_of_a_blocked_person_carries_the_block_and_is_suppressed() {
    let world = World::new().await;
    world.block(NUMBER, "all").await;
    let response = world.deliver(&changed_number()).await;
    assert_eq!(response.body["suppressed"], 1, "{:?}", response.body);
    assert!(
        world.ingress.crm_bodies().await.is_empty(),
        "the system message of a blocked person is not forwarded"
    );

    let blocks = new_blocks(&world).await;
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0]["subject"], NEW_NUMBER);
    assert_eq!(blocks[0]["scope"], "all");
    assert_eq!(blocks[0]["source"], "carried");
    // The old number keeps its own block.
    let old = world.view(NUMBER).await;
    assert_eq!(old["blocks"][0]["source"], "manual");

    for subject in [NUMBER, NEW_NUMBER] {
        let events = world.events(subject, "identity_changed").await;
        assert_eq!(events.len(), 1, "{subject}: {events:?}");
        let text = events[0].to_string();
        assert!(
            text.contains(NUMBER) && text.contains(NEW_NUMBER),
            "{subject}: {text}"
        );
    }

    // The person under the new number is stopped on both paths.
    let inbound = delivery(
        vec![],
        vec![text_message(Some("16505559876"), None, "wamid.B62NEW1")],
        vec![],
    );
    let response = world.deliver(&inbound).await;
    assert_eq!(response.body["suppressed"], 1, "{:?}", response.body);
    assert_blocked(&world.send(&text_send_to(NEW_NUMBER)).await);
    assert!(world.graph_requests().await.is_empty());

    // Redelivered: carried once.
    world.deliver(&changed_number()).await;
    assert_eq!(new_blocks(&world).await.len(), 1);
    assert_eq!(world.events(NEW_NUMBER, "identity_changed").await.len(), 1);
    assert_eq!(world.events(NUMBER, "identity_changed").await.len(), 1);
}

/// B62: the change of number and the first message from the new number
/// in one delivery: the carry is written after the forward, so the new
/// number's message is judged with the blocks the change carries to it,
/// unless carrying is off where the change was reported.
#[tokio::test]
async fn b62_a_message_from_the_new_number_in_the_same_delivery_is_suppressed() {
    let world = World::new().await;
    world.block(NUMBER, "all").await;
    let together = |id: &str| {
        let mut body: Value =
            serde_json::from_str(&changed_number().replace(SYSTEM_ID, id)).unwrap();
        body["entry"][0]["changes"][0]["value"]["messages"]
            .as_array_mut()
            .unwrap()
            .push(text_message(
                Some("16505559876"),
                None,
                &format!("{id}.NEW"),
            ));
        body.to_string()
    };
    let response = world.deliver(&together("wamid.B62TOGETHER")).await;
    assert_eq!(response.body["suppressed"], 2, "{:?}", response.body);
    assert!(world.ingress.crm_bodies().await.is_empty());

    // Where carrying is off, the new number is not held by the old one.
    let world = World::new().await;
    world
        .settings(LINE_A, json!({"carry_blocks_on_change": false}))
        .await;
    world.block(NUMBER, "all").await;
    let response = world.deliver(&together("wamid.B62OFF")).await;
    assert_eq!(
        (&response.body["suppressed"], &response.body["forwarded"]),
        (&json!(1), &json!(1)),
        "{:?}",
        response.body
    );
    assert_eq!(world.forwarded_message_ids().await, ["wamid.B62OFF.NEW"]);
}

#[tokio::test]
async fn b62_blocks_in_every_scope_are_carried() {
    let world = World::new().await;
    world.block(NUMBER, LINE_A).await;
    world.block(NUMBER, LINE_B).await;
    // The system message arrives on LINE_A.
    let response = world.deliver(&changed_number()).await;
    assert_eq!(response.body["suppressed"], 1, "{:?}", response.body);

    let blocks = new_blocks(&world).await;
    assert_eq!(
        scopes(&blocks),
        vec![LINE_A.to_owned(), LINE_B.to_owned()],
        "every active block of the person, same scopes: {blocks:?}"
    );
    assert!(
        blocks.iter().all(|b| b["source"] == "carried"),
        "{blocks:?}"
    );
}

#[tokio::test]
async fn b62_carrying_is_off_when_the_setting_says_so() {
    let world = World::new().await;
    let settings = world
        .settings(LINE_A, json!({"carry_blocks_on_change": false}))
        .await;
    assert_eq!(settings["carry_blocks_on_change"], false, "{settings}");
    world.block(NUMBER, "all").await;

    let response = world.deliver(&changed_number()).await;
    assert_eq!(
        response.body["suppressed"], 1,
        "still suppressed: the sender is blocked: {:?}",
        response.body
    );
    assert!(world.ingress.crm_bodies().await.is_empty());
    assert_eq!(new_blocks(&world).await, Vec::<Value>::new());
    assert!(
        world
            .events(NEW_NUMBER, "identity_changed")
            .await
            .is_empty()
    );
    assert!(world.events(NUMBER, "identity_changed").await.is_empty());

    // On another business number the default (carry) still applies.
    let on_b = changed_number()
        .replace(LINE_A, LINE_B)
        .replace(SYSTEM_ID, "wamid.B62ONB");
    world.deliver(&on_b).await;
    assert_eq!(scopes(&new_blocks(&world).await), vec!["all".to_owned()]);
}

#[tokio::test]
async fn b62_changed_number_of_a_person_not_blocked_is_forwarded_and_carries_nothing() {
    let world = World::new().await;
    // Blocked elsewhere only.
    world.block(NUMBER, LINE_B).await;
    let response = world.deliver(&changed_number()).await;
    assert_eq!(response.body["forwarded"], 1, "{:?}", response.body);
    assert_eq!(world.forwarded_message_ids().await, vec![SYSTEM_ID]);
    let forwarded = &world.ingress.crm_bodies().await[0];
    assert_eq!(
        forwarded["entry"][0]["changes"][0]["value"]["messages"][0]["system"]["type"],
        "user_changed_number"
    );
    assert_eq!(new_blocks(&world).await, Vec::<Value>::new());
    assert!(
        world
            .events(NEW_NUMBER, "identity_changed")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn b62_person_blocked_through_a_linked_bsuid_has_the_block_carried() {
    let world = World::new().await;
    world.deliver(&fixture("inbound-bsuid-linked.json")).await;
    world.block(BSUID, "all").await;
    let response = world.deliver(&changed_number()).await;
    assert_eq!(response.body["suppressed"], 1, "{:?}", response.body);

    let blocks = new_blocks(&world).await;
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0]["scope"], "all");
    assert_eq!(blocks[0]["source"], "carried");
    assert_eq!(world.events(NEW_NUMBER, "identity_changed").await.len(), 1);
}

#[tokio::test]
async fn b62_changed_user_id_of_a_blocked_person_carries_the_block() {
    let world = World::new().await;
    let new_bsuid = "US.66611112222333344445";
    world.block(BSUID, LINE_A).await;
    let message = json!({
        "from_user_id": BSUID,
        "id": "wamid.B62USERID",
        "timestamp": chrono::Utc::now().timestamp().to_string(),
        "type": "system",
        "system": {
            "body": "User A changed their user id",
            "type": "user_changed_user_id",
            "user_id": new_bsuid
        }
    });
    let response = world
        .deliver(&delivery(vec![], vec![message], vec![]))
        .await;
    assert_eq!(response.body["suppressed"], 1, "{:?}", response.body);
    assert!(world.ingress.crm_bodies().await.is_empty());

    let view = world.view(new_bsuid).await;
    let blocks = view["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 1, "{view}");
    assert_eq!(blocks[0]["subject"], new_bsuid);
    assert_eq!(blocks[0]["scope"], LINE_A);
    assert_eq!(blocks[0]["source"], "carried");
    assert_eq!(world.events(BSUID, "identity_changed").await.len(), 1);
    assert_eq!(world.events(new_bsuid, "identity_changed").await.len(), 1);
    let response = world
        .deliver(&delivery(
            vec![],
            vec![text_message(None, Some(new_bsuid), "wamid.B62NEWID")],
            vec![],
        ))
        .await;
    assert_eq!(response.body["suppressed"], 1, "{:?}", response.body);
}
