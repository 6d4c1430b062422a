//! B60: a subject is a canonical number or a BSUID, on every route.

use serde_json::{Value, json};

use super::{BSUID, LINE_A, NUMBER, World, delivery, text_message};
use crate::block_api::error_code;

#[tokio::test]
async fn b60_bsuid_is_blocked_read_and_unblocked_like_a_number() {
    let world = World::new().await;
    let created = world
        .api
        .block(BSUID, json!({"reason": "spam", "scope": "all"}))
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["subject"], BSUID, "stored as given");
    assert_eq!(created.body["number"], Value::Null);
    assert!(
        created.body.as_object().unwrap().contains_key("number"),
        "number is present, null: {}",
        created.body
    );
    assert_eq!(created.body["scope"], "all");
    assert_eq!(created.body["source"], "manual");

    // The same BSUID again: the existing record.
    let again = world
        .api
        .block(BSUID, json!({"reason": "again", "scope": "all"}))
        .await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body["reason"], "spam");

    let view = world.view(BSUID).await;
    assert_eq!(view["subject"], BSUID);
    assert_eq!(view["number"], Value::Null);
    let blocks = view["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 1, "{view}");
    assert_eq!(blocks[0]["subject"], BSUID);
    assert_eq!(view["linked_blocks"], json!([]));
    assert_eq!(view["links"], json!([]));

    // Percent-encoded in the path: the same subject.
    let encoded = world
        .api
        .call("GET", "/v1/blocks/US%2E13491208655302741918", None)
        .await;
    assert_eq!(encoded.status, 200, "{:?}", encoded.body);
    assert_eq!(encoded.body["blocks"].as_array().unwrap().len(), 1);

    let history = world.history(BSUID).await;
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["action"], "blocked");
    assert_eq!(history[0]["subject"], BSUID);
    assert_eq!(history[0]["number"], Value::Null);

    // A number's block is not the BSUID's, and the other way round.
    assert_eq!(world.view(NUMBER).await["blocks"], json!([]));

    let removed = world.unblock(BSUID, "all").await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    assert_eq!(removed.body["subject"], BSUID);
    assert_eq!(world.view(BSUID).await["blocks"], json!([]));
    let again = world.unblock(BSUID, "all").await;
    assert_eq!(again.status, 404);
    assert_eq!(error_code(&again), "not_blocked");
    let actions: Vec<Value> = world
        .history(BSUID)
        .await
        .iter()
        .map(|e| e["action"].clone())
        .collect();
    assert_eq!(actions, vec![json!("unblocked"), json!("blocked")]);
}

#[tokio::test]
async fn b60_number_subjects_carry_subject_and_number() {
    let world = World::new().await;
    let created = world.block("1 (650) 555-1234", "all").await;
    assert_eq!(created["subject"], NUMBER);
    assert_eq!(created["number"], NUMBER);
    let view = world.view("16505551234").await;
    assert_eq!(view["subject"], NUMBER);
    assert_eq!(view["number"], NUMBER);
    let history = world.history(NUMBER).await;
    assert_eq!(history[0]["subject"], NUMBER);
    assert_eq!(history[0]["number"], NUMBER);
}

#[tokio::test]
async fn b60_parent_bsuid_is_a_subject_of_its_own() {
    let world = World::new().await;
    let parent = "US.ENT.11815799212886844830";
    let created = world.block(parent, LINE_A).await;
    assert_eq!(created["subject"], parent);
    assert_eq!(created["number"], Value::Null);
    let view = world.view(parent).await;
    assert_eq!(view["blocks"][0]["scope"], LINE_A);
    assert_eq!(
        world.view(BSUID).await["blocks"],
        json!([]),
        "a parent BSUID is not its children"
    );
}

#[tokio::test]
async fn b60_longest_bsuid_is_accepted_and_kept_as_given() {
    let world = World::new().await;
    let longest = format!(
        "BR.{}",
        "aZ9".repeat(43).chars().take(128).collect::<String>()
    );
    assert_eq!(longest.len(), 3 + 128);
    let created = world.block(&longest, "all").await;
    assert_eq!(created["subject"], longest.as_str(), "case kept");
    assert_eq!(
        world.view(&longest).await["blocks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn b60_malformed_bsuids_are_422_invalid_user_id_on_put() {
    let world = World::new().await;
    let over = format!("US.{}", "1".repeat(129));
    // Shaped like a BSUID (a two-letter country prefix and a dot), but
    // not one: invalid_user_id.
    let malformed: Vec<(&str, String)> = vec![
        (
            "lower-case country prefix",
            "us.13491208655302741918".into(),
        ),
        ("empty body", "US.".into()),
        ("empty parent body", "US.ENT.".into()),
        ("a dash", "US.1349-1208655302741918".into()),
        ("an underscore", "US.1349_1208655302741918".into()),
        ("a second dot", "US.1349.1208655302741918".into()),
        ("a non-ASCII letter", "US.%C3%B11349".into()),
        ("a space", "US.1349%201208".into()),
        ("over 128 characters", over.clone()),
        (
            "a parent id over 128 characters",
            format!("US.ENT.{}", "2".repeat(129)),
        ),
    ];
    for (what, raw) in &malformed {
        let response = world
            .api
            .block(raw, json!({"reason": "spam", "scope": "all"}))
            .await;
        assert_eq!(response.status, 422, "{what} ({raw}): {:?}", response.body);
        assert_eq!(error_code(&response), "invalid_user_id", "{what} ({raw})");
        let field = &response.body["error"]["field"];
        assert!(
            field == "subject" || field == "number",
            "{what}: {:?}",
            response.body
        );
    }
    // Without a country prefix: neither a BSUID nor a number.
    let unprefixed = [
        ("no dot after the country", "US13491208655302741918"),
        (
            "country prefix of three letters",
            "USA.13491208655302741918",
        ),
        ("country prefix of one letter", "U.13491208655302741918"),
        ("no country prefix", "ENT.13491208655302741918"),
        ("digits alone", "13491208655302741918"),
        ("a dot and digits", ".13491208655302741918"),
    ];
    for (what, raw) in unprefixed {
        let response = world
            .api
            .block(raw, json!({"reason": "spam", "scope": "all"}))
            .await;
        assert_eq!(response.status, 422, "{what} ({raw}): {:?}", response.body);
        let code = error_code(&response);
        assert!(
            code == "invalid_user_id" || code == "invalid_number",
            "{what} ({raw}): {code}"
        );
    }

    // Nothing was stored.
    let stats = world.api.call("GET", "/v1/stats", None).await;
    assert_eq!(stats.body["currently_blocked"], 0, "{:?}", stats.body);
    let listed = world.api.call("GET", "/v1/blocks", None).await;
    assert_eq!(listed.body["items"], json!([]));

    // The other routes refuse them the same way.
    for uri in [
        format!("/v1/blocks/{over}"),
        "/v1/numbers/us.1349/history".to_owned(),
        "/v1/contacts/US.13-49".to_owned(),
    ] {
        let response = world.api.call("GET", &uri, None).await;
        assert_eq!(response.status, 422, "{uri}: {:?}", response.body);
        assert_eq!(error_code(&response), "invalid_user_id", "{uri}");
    }
    let delete = world
        .api
        .call(
            "DELETE",
            "/v1/blocks/US.13_49?scope=all",
            Some(json!({"reason": "x"})),
        )
        .await;
    assert_eq!(delete.status, 422, "{:?}", delete.body);
    assert_eq!(error_code(&delete), "invalid_user_id");
}

#[tokio::test]
async fn b60_batch_takes_bsuids_beside_numbers() {
    let world = World::new().await;
    let response = world
        .api
        .call(
            "POST",
            "/v1/blocks:batch",
            Some(json!({
                "action": "block",
                "reason": "spam wave",
                "scope": "all",
                "numbers": [BSUID, NUMBER, "US.13-49", BSUID]
            })),
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let results = response.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["number"], BSUID);
    assert_eq!(results[0]["status"], "blocked");
    assert_eq!(results[1]["status"], "blocked");
    assert_ne!(results[2]["status"], "blocked");
    assert_eq!(
        results[2]["error"]["code"], "invalid_user_id",
        "{results:?}"
    );
    assert_eq!(results[3]["status"], "already_blocked");

    let view = world.view(BSUID).await;
    assert_eq!(view["blocks"][0]["source"], "bulk");
    assert_eq!(view["blocks"][0]["subject"], BSUID);

    let unblocked = world
        .api
        .call(
            "POST",
            "/v1/blocks:batch",
            Some(json!({"action": "unblock", "reason": "over", "numbers": [BSUID]})),
        )
        .await;
    assert_eq!(unblocked.status, 200, "{:?}", unblocked.body);
    assert_eq!(unblocked.body["results"][0]["status"], "unblocked");
    assert_eq!(world.view(BSUID).await["blocks"], json!([]));
}

#[tokio::test]
async fn b60_contact_and_chat_of_a_bsuid_carry_subject_and_null_number() {
    let world = World::new().await;
    let put = world
        .api
        .call(
            "PUT",
            &format!("/v1/contacts/{BSUID}"),
            Some(json!({"name": "Sheena Nelson", "email": "sheena@example.com"})),
        )
        .await;
    assert_eq!(put.status, 201, "{:?}", put.body);
    assert_eq!(put.body["subject"], BSUID);
    assert_eq!(put.body["number"], Value::Null);
    let got = world
        .api
        .call("GET", &format!("/v1/contacts/{BSUID}"), None)
        .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(got.body["name"], "Sheena Nelson");
    assert_eq!(got.body["subject"], BSUID);
    assert_eq!(
        world.events(BSUID, "contact_updated").await.len(),
        1,
        "audited under the BSUID"
    );

    // A message whose number is hidden opens a chat under the BSUID.
    world
        .deliver(&delivery(
            vec![],
            vec![text_message(None, Some(BSUID), "wamid.B60CHAT")],
            vec![],
        ))
        .await;
    assert_eq!(world.forwarded_message_ids().await, vec!["wamid.B60CHAT"]);
    let chat = world
        .api
        .call("GET", &format!("/v1/chats/{LINE_A}/{BSUID}"), None)
        .await;
    assert_eq!(chat.status, 200, "{:?}", chat.body);
    assert_eq!(chat.body["subject"], BSUID);
    assert_eq!(chat.body["number"], Value::Null);
    assert_eq!(chat.body["status"], "active");
    assert_eq!(chat.body["known_contact"], true, "{:?}", chat.body);
    let view = world.view(BSUID).await;
    assert_eq!(view["contact"]["name"], "Sheena Nelson");
    assert_eq!(view["chats"].as_array().unwrap().len(), 1, "{view}");
}
