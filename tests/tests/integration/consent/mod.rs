//! Consent (B80–B83): opt-outs kept apart from blocks, from keywords,
//! Meta's `user_preferences` and 131050, enforced by the send proxy and
//! `recipients:check`, against DynamoDB Local and fakes on real sockets.

use chrono::Utc;
use integration_tests::{ApiRequest, ApiResponse, TestStack, token};
use serde_json::{Value, json};

use crate::block_api::Api;
use crate::send_proxy::{LINE_A, Proxy};
use crate::webhook_ingress::{Ingress, fixture};

const NUMBER: &str = "+16505551234";
const LINE: &str = "106540352242922";

/// `inbound-text.json` from NUMBER to LINE with `text`, message `id`, at
/// `at` (Unix seconds).
fn text_message(text: &str, id: &str, at: i64) -> String {
    let mut body: Value = serde_json::from_str(&fixture("inbound-text.json")).unwrap();
    let message = &mut body["entry"][0]["changes"][0]["value"]["messages"][0];
    message["text"]["body"] = json!(text);
    message["id"] = json!(id);
    message["timestamp"] = json!(at.to_string());
    body.to_string()
}

/// A quick-reply button tap from NUMBER to LINE with `payload`.
fn button_message(payload: &str, id: &str, at: i64) -> String {
    let mut body: Value = serde_json::from_str(&fixture("inbound-text.json")).unwrap();
    let message = &mut body["entry"][0]["changes"][0]["value"]["messages"][0];
    *message = json!({
        "from": "16505551234", "id": id, "timestamp": at.to_string(), "type": "button",
        "button": {"payload": payload, "text": "Stop promotions"},
    });
    body.to_string()
}

async fn consents(stack: &TestStack, subject: &str) -> Vec<Value> {
    let answer = Api::on(stack)
        .call("GET", &format!("/v1/consents/{subject}"), None)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["consents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn of_scope<'a>(consents: &'a [Value], scope: &str) -> &'a Value {
    consents
        .iter()
        .find(|c| c["phone_number_id"] == scope)
        .unwrap_or_else(|| panic!("no consent record in scope {scope}: {consents:?}"))
}

async fn put_consent(stack: &TestStack, subject: &str, body: Value) -> ApiResponse {
    Api::on(stack)
        .call("PUT", &format!("/v1/consents/{subject}"), Some(body))
        .await
}

async fn events(stack: &TestStack, subject: &str, action: &str) -> Vec<Value> {
    Api::on(stack)
        .history(subject)
        .await
        .into_iter()
        .filter(|e| e["action"] == action)
        .collect()
}

async fn today(stack: &TestStack) -> Value {
    let answer = Api::on(stack).call("GET", "/v1/stats", None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["days"]
        .as_array()
        .unwrap()
        .last()
        .cloned()
        .unwrap()
}

#[tokio::test]
async fn b80_consent_is_set_read_audited_counted_and_shown_beside_blocks() {
    let stack = TestStack::new().await;
    assert!(
        consents(&stack, NUMBER).await.is_empty(),
        "nothing stored yet"
    );
    let set = put_consent(&stack, NUMBER, json!({"marketing": "opted_out"})).await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.body["phone_number_id"], "all");
    assert_eq!(set.body["marketing"], "opted_out");
    assert_eq!(set.body["all"], "opted_in");
    assert_eq!(set.body["source"], "api");

    let again = put_consent(&stack, NUMBER, json!({"marketing": "opted_out"})).await;
    assert_eq!(again.status, 200);
    let stops = events(&stack, NUMBER, "opted_out").await;
    assert_eq!(stops.len(), 1, "a change is audited once: {stops:?}");
    assert_eq!(stops[0]["source"], "api");
    assert_eq!(stops[0]["details"]["category"], "marketing");
    assert_eq!(today(&stack).await["opted_out"], 1);

    let line = put_consent(
        &stack,
        NUMBER,
        json!({"phone_number_id": LINE, "all": "opted_out"}),
    )
    .await;
    assert_eq!(line.status, 200, "{}", line.body);
    let stored = consents(&stack, NUMBER).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(of_scope(&stored, LINE)["all"], "opted_out");

    let subject = Api::on(&stack)
        .call("GET", &format!("/v1/blocks/{NUMBER}"), None)
        .await;
    assert_eq!(subject.status, 200);
    assert_eq!(
        subject.body["blocks"],
        json!([]),
        "an opt-out is not a block"
    );
    assert_eq!(subject.body["consents"].as_array().unwrap().len(), 2);

    let back = put_consent(&stack, NUMBER, json!({"marketing": "opted_in"})).await;
    assert_eq!(back.body["marketing"], "opted_in");
    assert_eq!(events(&stack, NUMBER, "opted_in").await.len(), 1);
    assert_eq!(today(&stack).await["opted_in"], 1);
}

#[tokio::test]
async fn b80_bad_consent_input_is_refused_and_writes_nothing() {
    let stack = TestStack::new().await;
    for (body, status) in [
        (json!({"marketing": "maybe"}), 422),
        (json!({"all": true}), 422),
        (json!({}), 422),
        (
            json!({"phone_number_id": "line-a", "all": "opted_out"}),
            422,
        ),
        (json!({"colour": "red", "all": "opted_out"}), 422),
    ] {
        let answer = put_consent(&stack, NUMBER, body.clone()).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.body);
        assert!(answer.body["error"]["code"].is_string(), "{}", answer.body);
    }
    let bad_subject = put_consent(&stack, "not-a-number", json!({"all": "opted_out"})).await;
    assert_eq!(bad_subject.status, 422);
    let reader = Api::on(&stack)
        .send(
            ApiRequest::new("PUT", &format!("/v1/consents/{NUMBER}"))
                .bearer(&token("reader", &["blocklist:read"]))
                .json(json!({"all": "opted_out"})),
        )
        .await;
    assert_eq!(reader.status, 403, "changing consent needs blocklist:write");
    assert!(consents(&stack, NUMBER).await.is_empty());
    assert!(events(&stack, NUMBER, "opted_out").await.is_empty());
}

#[tokio::test]
async fn b81_stop_and_start_keywords_set_consent_and_the_message_is_still_forwarded() {
    let ingress = Ingress::new(200).await;
    let now = Utc::now().timestamp();
    let stop = ingress
        .deliver(&text_message("  Stop ", "wamid.STOP", now - 60))
        .await;
    assert_eq!(stop.status, 200, "{}", stop.body);
    assert_eq!(
        ingress.forwarded_message_ids().await,
        ["wamid.STOP"],
        "forwarded"
    );
    let stored = consents(&ingress.stack, NUMBER).await;
    let record = of_scope(&stored, LINE);
    assert_eq!(record["all"], "opted_out");
    assert_eq!(record["source"], "keyword");
    assert_eq!(record["message_id"], "wamid.STOP");

    // Meta's retry of the same delivery changes nothing more.
    let retry = ingress
        .deliver(&text_message("  Stop ", "wamid.STOP", now - 60))
        .await;
    assert_eq!(retry.status, 200);
    assert_eq!(events(&ingress.stack, NUMBER, "opted_out").await.len(), 1);

    // An older START delivered late does not undo the newer STOP.
    ingress
        .deliver(&text_message("START", "wamid.OLD", now - 3600))
        .await;
    assert_eq!(
        of_scope(&consents(&ingress.stack, NUMBER).await, LINE)["all"],
        "opted_out"
    );

    ingress
        .deliver(&text_message("start", "wamid.START", now))
        .await;
    assert_eq!(
        of_scope(&consents(&ingress.stack, NUMBER).await, LINE)["all"],
        "opted_in"
    );
    // A sentence that contains the word is not the keyword.
    ingress
        .deliver(&text_message(
            "please stop calling me",
            "wamid.SENTENCE",
            now + 1,
        ))
        .await;
    assert_eq!(
        of_scope(&consents(&ingress.stack, NUMBER).await, LINE)["all"],
        "opted_in"
    );
}

#[tokio::test]
async fn b81_a_quick_reply_payload_and_configured_words_count_as_keywords() {
    let ingress = Ingress::new(200).await;
    let now = Utc::now().timestamp();
    ingress
        .deliver(&button_message("STOP", "wamid.TAP", now))
        .await;
    assert_eq!(
        of_scope(&consents(&ingress.stack, NUMBER).await, LINE)["all"],
        "opted_out"
    );

    let admin = |body: Value| {
        ApiRequest::new("PUT", &format!("/v1/settings/{LINE}"))
            .bearer(&token("ops", &["blocklist:admin"]))
            .json(body)
    };
    let api = Api::on(&ingress.stack);
    let set = api
        .send(admin(
            json!({"opt_in_keywords": ["START", "ALTA"], "opt_out_keywords": ["BAJA"]}),
        ))
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    ingress
        .deliver(&text_message("alta", "wamid.ALTA", now + 1))
        .await;
    assert_eq!(
        of_scope(&consents(&ingress.stack, NUMBER).await, LINE)["all"],
        "opted_in"
    );
    ingress
        .deliver(&text_message("STOP", "wamid.STOP2", now + 2))
        .await;
    assert_eq!(
        of_scope(&consents(&ingress.stack, NUMBER).await, LINE)["all"],
        "opted_in",
        "STOP is no longer in this number's list"
    );
    ingress
        .deliver(&text_message("Baja", "wamid.BAJA", now + 3))
        .await;
    assert_eq!(
        of_scope(&consents(&ingress.stack, NUMBER).await, LINE)["all"],
        "opted_out"
    );

    for (body, field) in [
        (json!({"opt_out_keywords": [""]}), "opt_out_keywords"),
        (json!({"opt_out_keywords": ["   "]}), "opt_out_keywords"),
        (
            json!({"opt_in_keywords": ["x".repeat(65)]}),
            "opt_in_keywords",
        ),
        (
            json!({"opt_out_keywords": ["STOP"], "opt_in_keywords": ["stop"]}),
            "opt_in_keywords",
        ),
        // Duplicated with the list this number already has.
        (json!({"opt_in_keywords": ["baja"]}), "opt_in_keywords"),
    ] {
        let refused = api.send(admin(body.clone())).await;
        assert_eq!(refused.status, 422, "{body}: {}", refused.body);
        assert_eq!(
            refused.body["error"]["field"], field,
            "{body}: {}",
            refused.body
        );
    }
}

#[tokio::test]
async fn b82_meta_user_preferences_and_131050_set_marketing_consent() {
    let ingress = Ingress::new(200).await;
    let stop = ingress
        .deliver(&fixture("user-preferences-stop.json"))
        .await;
    assert_eq!(stop.status, 200, "{}", stop.body);
    let stored = consents(&ingress.stack, NUMBER).await;
    let record = of_scope(&stored, LINE);
    assert_eq!(record["marketing"], "opted_out");
    assert_eq!(record["all"], "opted_in", "only marketing");
    assert_eq!(record["source"], "user_preferences");

    let resume = fixture("user-preferences-stop.json")
        .replace("\"value\":\"stop\"", "\"value\":\"resume\"")
        .replace("1749418100", "1749418200");
    ingress.deliver(&resume).await;
    assert_eq!(
        of_scope(&consents(&ingress.stack, NUMBER).await, LINE)["marketing"],
        "opted_in"
    );

    let failed = fixture("status-failed-131026.json")
        .replace("131026", "131050")
        .replace(
            "\"timestamp\":\"1751142888\"",
            &format!("\"timestamp\":\"{}\"", Utc::now().timestamp()),
        );
    let answer = ingress.deliver(&failed).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let record = of_scope(&consents(&ingress.stack, NUMBER).await, LINE).clone();
    assert_eq!(record["marketing"], "opted_out");
    assert_eq!(record["source"], "delivery_failure");
    let subject = Api::on(&ingress.stack)
        .call("GET", &format!("/v1/blocks/{NUMBER}"), None)
        .await;
    assert_eq!(subject.body["blocks"], json!([]), "131050 never blocks");
}

fn template_send(name: &str) -> String {
    json!({"messaging_product": "whatsapp", "to": NUMBER, "type": "template",
           "template": {"name": name, "language": {"code": "en_US"}}})
    .to_string()
}

#[tokio::test]
async fn b83_the_proxy_refuses_by_what_the_customer_stopped_and_looks_up_template_categories_once()
{
    let proxy = Proxy::new().await;
    let api = proxy.api();
    let set = api
        .call(
            "PUT",
            &format!("/v1/consents/{NUMBER}"),
            Some(json!({"phone_number_id": LINE_A, "marketing": "opted_out"})),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);

    let marketing = proxy
        .send_message(LINE_A, &template_send("spring_sale"))
        .await;
    assert_eq!(marketing.status, 403, "{:?}", marketing.json());
    assert_eq!(
        marketing.json()["error"]["error_data"]["reason"],
        "recipient_opted_out"
    );
    let utility = proxy
        .send_message(LINE_A, &template_send("order_update"))
        .await;
    assert_eq!(utility.status, 200, "{:?}", utility.json());
    let again = proxy
        .send_message(LINE_A, &template_send("spring_sale"))
        .await;
    assert_eq!(again.status, 403);
    assert_eq!(
        proxy.template_lookups().await,
        2,
        "each template looked up once, then cached"
    );
    let refusals = proxy.refusals(NUMBER).await;
    assert_eq!(refusals.len(), 2, "each refusal recorded");
    assert_eq!(refusals[0]["reason"], "recipient_opted_out");

    api.call(
        "PUT",
        &format!("/v1/consents/{NUMBER}"),
        Some(json!({"all": "opted_out"})),
    )
    .await;
    let text = proxy
        .send_message(LINE_A, &crate::send_proxy::text_send_to(NUMBER))
        .await;
    assert_eq!(text.status, 403, "opted out of everything");
}

#[tokio::test]
async fn b83_recipients_check_takes_a_purpose() {
    let proxy = Proxy::new().await;
    proxy
        .api()
        .call(
            "PUT",
            &format!("/v1/consents/{NUMBER}"),
            Some(json!({"marketing": "opted_out"})),
        )
        .await;
    let check = |purpose: Option<&str>| {
        let mut body = json!({"numbers": [NUMBER, "+16505557777"]});
        if let Some(purpose) = purpose {
            body["purpose"] = json!(purpose);
        }
        body
    };
    for (purpose, refused) in [
        (Some("marketing"), true),
        (Some("utility"), false),
        (Some("any"), true),
        (None, true),
    ] {
        let answer = proxy.check_body(LINE_A, check(purpose)).await;
        assert_eq!(answer.status, 200, "{:?}", answer.json());
        let body = answer.json();
        let names: Vec<&str> = body["refused"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["reason"] == "recipient_opted_out")
            .map(|r| r["number"].as_str().unwrap())
            .collect();
        assert_eq!(names == [NUMBER], refused, "{purpose:?}: {body}");
        assert!(
            body["allowed"]
                .as_array()
                .unwrap()
                .contains(&json!("+16505557777"))
        );
    }
    let unknown = proxy.check_body(LINE_A, check(Some("promo"))).await;
    assert_eq!(unknown.status, 422, "{:?}", unknown.json());
}

/// A block and an opt-out are apart: an unblock leaves the opt-out, an
/// opt-in leaves the block.
#[tokio::test]
async fn b80_an_unblock_keeps_the_opt_out_and_an_opt_in_keeps_the_block() {
    let proxy = Proxy::new().await;
    let api = proxy.api();
    proxy.block(NUMBER, "all").await;
    api.call(
        "PUT",
        &format!("/v1/consents/{NUMBER}"),
        Some(json!({"all": "opted_out"})),
    )
    .await;
    let unblocked = api
        .call(
            "DELETE",
            &format!("/v1/blocks/{NUMBER}?scope=all"),
            Some(json!({"reason": "sorted out"})),
        )
        .await;
    assert_eq!(unblocked.status, 200);
    let send = proxy
        .send_message(LINE_A, &crate::send_proxy::text_send_to(NUMBER))
        .await;
    assert_eq!(
        send.json()["error"]["error_data"]["reason"],
        "recipient_opted_out"
    );

    let other = "+16505557777";
    proxy.block(other, "all").await;
    api.call(
        "PUT",
        &format!("/v1/consents/{other}"),
        Some(json!({"all": "opted_in"})),
    )
    .await;
    let send = proxy
        .send_message(LINE_A, &crate::send_proxy::text_send_to(other))
        .await;
    assert_eq!(
        send.json()["error"]["error_data"]["reason"],
        "recipient_blocked"
    );
}

/// B61: a person known by number and BSUID who writes STOP under one is
/// opted out under both: a send to the other is refused too.
#[tokio::test]
async fn b80_b61_an_opt_out_holds_for_every_linked_identity() {
    let ingress = Ingress::new(200).await;
    let linked = ingress.deliver(&fixture("inbound-bsuid-linked.json")).await;
    assert_eq!(linked.status, 200, "{}", linked.body);
    let bsuid = "US.13491208655302741918";
    let only_bsuid: Value = {
        let mut body: Value = serde_json::from_str(&fixture("inbound-bsuid-only.json")).unwrap();
        let message = &mut body["entry"][0]["changes"][0]["value"]["messages"][0];
        message["text"]["body"] = json!("STOP");
        message["id"] = json!("wamid.BSUIDSTOP");
        message["timestamp"] = json!(Utc::now().timestamp().to_string());
        body
    };
    let stop = ingress.deliver(&only_bsuid.to_string()).await;
    assert_eq!(stop.status, 200, "{}", stop.body);
    for subject in [bsuid, NUMBER] {
        let stored = consents(&ingress.stack, subject).await;
        assert_eq!(
            of_scope(&stored, LINE)["all"],
            "opted_out",
            "{subject}: {stored:?}"
        );
    }

    // Meta's preference names both identities.
    let other = Ingress::new(200).await;
    other.deliver(&fixture("user-preferences-stop.json")).await;
    for subject in [bsuid, NUMBER] {
        let stored = consents(&other.stack, subject).await;
        assert_eq!(
            of_scope(&stored, LINE)["marketing"],
            "opted_out",
            "{subject}"
        );
    }
}

/// The API's opt-in and the customer's STOP in the same second: the STOP
/// wins (Meta's times are whole seconds).
#[tokio::test]
async fn b80_an_api_opt_in_in_the_same_second_does_not_undo_a_stop() {
    let ingress = Ingress::new(200).await;
    let opt_in = put_consent(
        &ingress.stack,
        NUMBER,
        json!({"phone_number_id": LINE, "all": "opted_in"}),
    )
    .await;
    assert_eq!(opt_in.status, 200);
    let at = chrono::DateTime::parse_from_rfc3339(opt_in.body["all_at"].as_str().unwrap())
        .unwrap()
        .timestamp();
    ingress
        .deliver(&text_message("STOP", "wamid.TIE", at))
        .await;
    assert_eq!(
        of_scope(&consents(&ingress.stack, NUMBER).await, LINE)["all"],
        "opted_out"
    );
}

#[tokio::test]
async fn b80_b61_an_opt_out_holds_under_an_identity_linked_after_it() {
    use crate::identity::{BSUID, World, fixture as meta_fixture};
    let world = World::new().await;
    let set = put_consent(world.stack(), NUMBER, json!({"all": "opted_out"})).await;
    assert_eq!(set.status, 200, "{}", set.body);
    // Meta shows the number with its BSUID only afterwards (B61).
    world
        .deliver(&meta_fixture("inbound-bsuid-linked.json"))
        .await;
    let by_bsuid = world
        .send(&meta_fixture("graph-send-bsuid.request.json"))
        .await;
    crate::send_proxy::assert_graph_error(&by_bsuid, 403, "recipient_opted_out");
    let check = world.check(&json!({"numbers": [BSUID]}).to_string()).await;
    assert_eq!(
        check.json()["refused"],
        json!([{"number": BSUID, "reason": "recipient_opted_out"}]),
        "{:?}",
        check.json()
    );
}

/// The bodies Graph received for `/{LINE}/messages`.
async fn graph_sends(graph: &wiremock::MockServer) -> Vec<Value> {
    graph
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == format!("/v25.0/{LINE}/messages"))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test]
async fn b81_a_keyword_is_confirmed_once_when_the_business_number_sets_a_reply() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"messaging_product": "whatsapp", "messages": [{"id": "wamid.REPLY"}]}),
        ))
        .mount(&graph)
        .await;
    let ingress = Ingress::new(200).await.with_graph(&graph.uri());
    let now = Utc::now().timestamp();

    // Off by default: the opt-out is recorded and nothing is sent.
    ingress
        .deliver(&text_message("STOP", "wamid.QUIET", now - 30))
        .await;
    assert_eq!(
        of_scope(&consents(&ingress.stack, NUMBER).await, LINE)["all"],
        "opted_out"
    );
    assert!(graph_sends(&graph).await.is_empty(), "no reply by default");

    let admin = ApiRequest::new("PUT", &format!("/v1/settings/{LINE}"))
        .bearer(&token("ops", &["blocklist:admin"]))
        .json(
            json!({"opt_out_reply": "You will get no more messages. Reply START to undo.",
                     "opt_in_reply": "Welcome back."}),
        );
    let set = Api::on(&ingress.stack).send(admin).await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.body["opt_in_reply"], "Welcome back.");

    ingress
        .deliver(&text_message("start", "wamid.START", now - 20))
        .await;
    // Meta's retry of the same delivery confirms nothing again.
    ingress
        .deliver(&text_message("start", "wamid.START", now - 20))
        .await;
    // STOP again: confirmed with the opt-out text.
    ingress
        .deliver(&text_message("stop", "wamid.STOP", now - 10))
        .await;
    // A STOP of someone already opted out changes nothing: no reply.
    ingress
        .deliver(&text_message("STOP", "wamid.STOP_AGAIN", now))
        .await;
    let sends = graph_sends(&graph).await;
    assert_eq!(sends.len(), 2, "{sends:?}");
    assert_eq!(sends[0]["to"], NUMBER);
    assert_eq!(sends[0]["type"], "text");
    assert_eq!(sends[0]["text"]["body"], "Welcome back.");
    assert_eq!(
        sends[1]["text"]["body"],
        "You will get no more messages. Reply START to undo."
    );
    assert_eq!(
        ingress.forwarded_message_ids().await.len(),
        4,
        "every keyword message still reaches the CRM"
    );

    // A blocked person's keyword is recorded, never answered.
    Api::on(&ingress.stack)
        .block(NUMBER, json!({"reason": "spam"}))
        .await;
    ingress
        .deliver(&text_message("START", "wamid.BLOCKED", now + 10))
        .await;
    assert_eq!(
        of_scope(&consents(&ingress.stack, NUMBER).await, LINE)["all"],
        "opted_in"
    );
    assert_eq!(
        graph_sends(&graph).await.len(),
        2,
        "nothing sent to a blocked person"
    );

    let too_long = ApiRequest::new("PUT", &format!("/v1/settings/{LINE}"))
        .bearer(&token("ops", &["blocklist:admin"]))
        .json(json!({"opt_out_reply": "x".repeat(1025)}));
    let refused = Api::on(&ingress.stack).send(too_long).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.body["error"]["field"], "opt_out_reply");
}

#[tokio::test]
async fn b80_b62_an_opt_out_follows_the_person_to_a_changed_number() {
    use crate::identity::{World, fixture as meta_fixture};
    let world = World::new().await;
    let set = put_consent(
        world.stack(),
        NUMBER,
        json!({"phone_number_id": LINE, "marketing": "opted_out", "all": "opted_out"}),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.body);
    // Not blocked: blocks have nothing to carry, the customer's say still
    // goes with them. Twice, as Meta retries: carried once.
    for _ in 0..2 {
        world
            .deliver(&meta_fixture("system-user-changed-number.json"))
            .await;
    }
    let moved = "+16505559876";
    let record = of_scope(&consents(world.stack(), moved).await, LINE).clone();
    assert_eq!(record["all"], "opted_out", "{record}");
    assert_eq!(record["marketing"], "opted_out", "{record}");
    assert_eq!(record["source"], "api", "kept from the record it came from");
    assert_eq!(events(world.stack(), moved, "opted_out").await.len(), 2);
    let refused = world.send(&crate::send_proxy::text_send_to(moved)).await;
    crate::send_proxy::assert_graph_error(&refused, 403, "recipient_opted_out");
}
