//! B84: prefix rules block every number of a range on every path, with no
//! block stored per number, against DynamoDB Local and fakes on real
//! sockets.

use blocklist::model::{
    MAX_RULES, Prefix, Reason, Rule, RuleAction, RuleEntry, RuleId, RuleSet, Scope,
};
use blocklist::store::{RuleChange, StoredRules};
use integration_tests::{ApiRequest, ApiResponse, token};
use serde_json::{Value, json};

use crate::identity::{
    ADMIN, BSUID, LINE_A, LINE_B, NUMBER, OTHER_NUMBER, World, assert_blocked, bsuid_only, contact,
    delivery, delivery_on, fixture, shown_then_hidden, text_message,
};
use crate::send_proxy::text_send_to;

/// Matches NUMBER (+16505551234), not OTHER_NUMBER (+16505557777).
const PREFIX: &str = "+1650555123";

impl World {
    /// A block-API call as an operator with `blocklist:admin`.
    async fn as_admin(&self, method: &str, uri: &str, body: Option<Value>) -> ApiResponse {
        let mut request = ApiRequest::new(method, uri).bearer(&token("operator", ADMIN));
        if let Some(body) = body {
            request = request.json(body);
        }
        self.api.send(request).await
    }

    async fn put_rule(&self, id: &str, body: Value) -> ApiResponse {
        self.as_admin("PUT", &format!("/v1/rules/{id}"), Some(body))
            .await
    }

    /// The audit feed's events with `action`.
    async fn feed(&self, action: &str) -> Vec<Value> {
        let answer = self
            .api
            .call("GET", &format!("/v1/audit?action={action}"), None)
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body["items"].as_array().cloned().unwrap_or_default()
    }
}

/// A text from `wa_id` (digits) on `line`.
fn text_from(wa_id: &str, id: &str, line: &str) -> String {
    delivery_on(
        line,
        vec![contact(Some(wa_id), None)],
        vec![text_message(Some(wa_id), None, id)],
        vec![],
    )
}

fn wave(prefix: &str) -> Value {
    json!({"prefix": prefix, "scope": "all", "reason": "spam wave", "action": "block"})
}

#[tokio::test]
async fn b84_a_prefix_rule_blocks_every_path_without_a_block_per_number() {
    let world = World::new().await;
    let made = world.put_rule("wave", wave(PREFIX)).await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.body["id"], "wave");
    assert_eq!(made.body["prefix"], PREFIX);
    assert_eq!(made.body["scope"], "all");
    assert_eq!(made.body["action"], "block");
    assert_eq!(made.body["actor"], "operator");
    assert!(made.body["created_at"].is_string(), "{}", made.body);

    // Inbound: the matching number is suppressed, the other forwarded.
    let answer = world
        .deliver(&text_from("16505551234", "wamid.IN1", LINE_A))
        .await;
    assert_eq!(answer.body["suppressed"], 1, "{}", answer.body);
    world
        .deliver(&text_from("16505557777", "wamid.IN2", LINE_A))
        .await;
    assert_eq!(world.forwarded_message_ids().await, ["wamid.IN2"]);
    let suppressed = world.events(NUMBER, "inbound_suppressed").await;
    assert_eq!(suppressed.len(), 1);
    assert_eq!(suppressed[0]["details"]["rule"], "wave");

    // Outbound: refused, naming the rule; the other number goes out.
    let refused = world.send(&text_send_to(NUMBER)).await;
    assert_eq!(assert_blocked(&refused)["rule"], "wave");
    let sent = world.send(&text_send_to(OTHER_NUMBER)).await;
    assert_eq!(sent.status, 200, "{:?}", sent.json());
    let check = world
        .check(&json!({"numbers": [NUMBER, OTHER_NUMBER]}).to_string())
        .await;
    assert_eq!(check.status, 200);
    assert_eq!(
        check.json()["refused"],
        json!([{"number": NUMBER, "reason": "recipient_blocked", "rule": "wave"}])
    );
    assert_eq!(check.json()["allowed"], json!([OTHER_NUMBER]));

    // Shown with the number, and no block was stored for it.
    let view = world.view(NUMBER).await;
    assert_eq!(view["rules"], json!([made.body]), "{view}");
    assert_eq!(view["blocks"], json!([]));
    assert_eq!(world.view(OTHER_NUMBER).await["rules"], json!([]));
    let listing = world.api.call("GET", "/v1/blocks", None).await;
    assert_eq!(listing.body["items"], json!([]), "{}", listing.body);

    // Removed: the range is free at once.
    let removed = world
        .as_admin(
            "DELETE",
            "/v1/rules/wave",
            Some(json!({"reason": "wave over"})),
        )
        .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(removed.body["id"], "wave");
    world
        .deliver(&text_from("16505551234", "wamid.IN3", LINE_A))
        .await;
    assert_eq!(
        world.forwarded_message_ids().await,
        ["wamid.IN2", "wamid.IN3"]
    );
    assert_eq!(world.send(&text_send_to(NUMBER)).await.status, 200);
    assert_eq!(world.view(NUMBER).await["rules"], json!([]));
    let gone = world.api.call("GET", "/v1/rules/wave", None).await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.body["error"]["code"], "rule_not_found");
    let again = world.as_admin("DELETE", "/v1/rules/wave", None).await;
    assert_eq!(again.status, 404, "{}", again.body);

    // Audited like blocks.
    let added = world.feed("rule_added").await;
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(added[0]["details"]["after"], made.body);
    assert_eq!(added[0]["actor"], "operator");
    assert_eq!(added[0]["scope"], "all");
    let removal = world.feed("rule_removed").await;
    assert_eq!(removal.len(), 1, "{removal:?}");
    assert_eq!(removal[0]["reason"], "wave over");
    assert_eq!(removal[0]["details"]["before"], made.body);
}

#[tokio::test]
async fn b84_a_rule_stops_a_person_writing_under_a_bsuid_linked_to_a_matching_number() {
    let world = World::new().await;
    // Meta shows the number and the BSUID together once (B61).
    world.deliver(&fixture("inbound-bsuid-linked.json")).await;
    let made = world.put_rule("wave", wave(PREFIX)).await;
    assert_eq!(made.status, 201, "{}", made.body);

    let hidden = world.deliver(&bsuid_only("wamid.HIDDEN")).await;
    assert_eq!(hidden.body["suppressed"], 1, "{}", hidden.body);
    assert!(
        !world
            .forwarded_message_ids()
            .await
            .contains(&"wamid.HIDDEN".to_owned())
    );
    let refused = world.send(&fixture("graph-send-bsuid.request.json")).await;
    assert_eq!(assert_blocked(&refused)["rule"], "wave");
    assert_eq!(world.view(BSUID).await["rules"][0]["id"], "wave");

    // A BSUID never linked to a matching number is not held.
    let stranger = delivery(
        vec![contact(None, Some("US.77711112222333344445"))],
        vec![text_message(
            None,
            Some("US.77711112222333344445"),
            "wamid.FREE",
        )],
        vec![],
    );
    assert_eq!(world.deliver(&stranger).await.body["forwarded"], 1);
}

/// B84, B61: a rule of a number shown beside a BSUID in one change of a
/// delivery holds for the BSUID's message in another change of it, where
/// the number is hidden, before the link is stored.
#[tokio::test]
async fn b84_b61_a_rule_holds_for_a_bsuid_the_same_delivery_shows_with_a_matching_number() {
    let world = World::new().await;
    let made = world
        .put_rule(
            "line-b-wave",
            json!({"prefix": PREFIX, "scope": LINE_B, "reason": "spam wave on B"}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let body = shown_then_hidden("wamid.B84SHOWN", "wamid.B84HIDDEN");
    let answer = world.deliver(&body).await;
    assert_eq!(answer.body["suppressed"], 1, "{}", answer.body);
    assert_eq!(world.forwarded_message_ids().await, ["wamid.B84SHOWN"]);
}

#[tokio::test]
async fn b84_a_rule_in_one_business_number_holds_there_only() {
    let world = World::new().await;
    let made = world
        .put_rule(
            "line-b-wave",
            json!({"prefix": "+1650", "scope": LINE_B, "reason": "spam wave on B"}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.body["action"], "block", "the default action");
    world
        .deliver(&text_from("16505551234", "wamid.ON_A", LINE_A))
        .await;
    let on_b = world
        .deliver(&text_from("16505551234", "wamid.ON_B", LINE_B))
        .await;
    assert_eq!(on_b.body["suppressed"], 1, "{}", on_b.body);
    assert_eq!(world.forwarded_message_ids().await, ["wamid.ON_A"]);
    assert_eq!(world.send(&text_send_to(NUMBER)).await.status, 200);
    let refused = world.send_on(LINE_B, &text_send_to(NUMBER)).await;
    assert_eq!(assert_blocked(&refused)["scope"], LINE_B);
}

/// B84, B63: a prefix is written the way a CRM stores numbers (`+5411`,
/// Buenos Aires as dialled), while numbers are stored the way WhatsApp
/// writes them (`+54 9 11 …`): the rule holds the stored form, so that
/// the wave it names is stopped.
#[tokio::test]
async fn b84_b63_a_prefix_in_a_form_numbers_are_folded_from_holds_their_stored_form() {
    let world = World::new().await;
    for (id, written, stored) in [
        ("ar", "+5411", "+54911"),
        ("ar-trunk", "+54 0351", "+549351"),
        ("mx", "+52155", "+5255"),
        ("bj", "+22997", "+2290197"),
        ("ga", "+24107", "+24177"),
        ("br", "+55118", "+551198"),
    ] {
        let written = written.replace(' ', "");
        let made = world.put_rule(id, wave(&written)).await;
        assert_eq!(made.status, 201, "{written}: {}", made.body);
        assert_eq!(made.body["prefix"], stored, "{written}");
    }
    for (from, id) in [
        ("5491123456789", "wamid.AR"),
        ("5493511234567", "wamid.AR_CORDOBA"),
        ("525512345678", "wamid.MX"),
        ("2290197123456", "wamid.BJ"),
        ("24177123456", "wamid.GA"),
        ("551187654321", "wamid.BR_OLD"),
        ("5511987654321", "wamid.BR"),
    ] {
        let answer = world.deliver(&text_from(from, id, LINE_A)).await;
        assert_eq!(answer.body["suppressed"], 1, "{from}: {}", answer.body);
    }
    assert!(world.forwarded_message_ids().await.is_empty());
    let refused = world.send(&text_send_to("+54 11 15 2345 6789")).await;
    assert_eq!(assert_blocked(&refused)["rule"], "ar");
    // Starts no fold rewrites, that two forms share (`+55119` starts new
    // and old forms of area 11 alike) or that the digits do not decide
    // (`+540`; Viet Nam's old codes also start shorter numbers in use)
    // are kept as written.
    for kept in [
        "+55119", "+1650", "+549", "+2290", "+241", "+540", "+84162", "+2293",
    ] {
        let made = world
            .put_rule(&format!("kept{}", &kept[1..]), wave(kept))
            .await;
        assert_eq!(made.body["prefix"], kept, "{}", made.body);
    }
}

#[tokio::test]
async fn b84_bad_rules_are_refused_with_clear_errors_and_change_nothing() {
    let world = World::new().await;
    for (id, body, status, code) in [
        (
            "r",
            json!({"prefix": "+", "reason": "x"}),
            422,
            "prefix_too_broad",
        ),
        (
            "r",
            json!({"prefix": "", "reason": "x"}),
            422,
            "invalid_prefix",
        ),
        (
            "r",
            json!({"prefix": "234", "reason": "x"}),
            422,
            "invalid_prefix",
        ),
        (
            "r",
            json!({"prefix": "+0803", "reason": "x"}),
            422,
            "invalid_prefix",
        ),
        (
            "r",
            json!({"prefix": "+23a", "reason": "x"}),
            422,
            "invalid_prefix",
        ),
        (
            "r",
            json!({"prefix": "+123456789012345", "reason": "x"}),
            422,
            "invalid_prefix",
        ),
        ("r", json!({"reason": "x"}), 422, "missing_field"),
        ("r", json!({"prefix": "+234"}), 422, "missing_field"),
        (
            "r",
            json!({"prefix": "+234", "reason": ""}),
            422,
            "invalid_reason",
        ),
        (
            "r",
            json!({"prefix": "+234", "reason": "x", "scope": "line-a"}),
            422,
            "invalid_scope",
        ),
        (
            "r",
            json!({"prefix": "+234", "reason": "x", "action": "allow"}),
            422,
            "invalid_action",
        ),
        (
            "r",
            json!({"prefix": "+234", "reason": "x", "colour": "red"}),
            422,
            "invalid_field",
        ),
        (
            "r",
            json!({"prefix": 234, "reason": "x"}),
            422,
            "invalid_field",
        ),
        (
            "r",
            json!({"id": "other", "prefix": "+234", "reason": "x"}),
            422,
            "invalid_rule_id",
        ),
        (
            "a%20b",
            json!({"prefix": "+234", "reason": "x"}),
            422,
            "invalid_rule_id",
        ),
        (
            &"x".repeat(33),
            json!({"prefix": "+234", "reason": "x"}),
            422,
            "invalid_rule_id",
        ),
    ] {
        let answer = world.put_rule(id, body.clone()).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.body);
        assert_eq!(
            answer.body["error"]["code"], code,
            "{body}: {}",
            answer.body
        );
    }
    let not_json = world
        .api
        .send(
            ApiRequest::new("PUT", "/v1/rules/r")
                .bearer(&token("operator", ADMIN))
                .raw_body("{not json"),
        )
        .await;
    assert_eq!(not_json.status, 400, "{}", not_json.body);

    // Changing rules needs blocklist:admin; reading them blocklist:read.
    let writer = world
        .api
        .call("PUT", "/v1/rules/r", Some(wave("+234")))
        .await;
    assert_eq!(writer.status, 403, "{}", writer.body);
    let listing = world
        .api
        .send(ApiRequest::new("GET", "/v1/rules").bearer(&token("reader", &["blocklist:read"])))
        .await;
    assert_eq!(listing.status, 200, "{}", listing.body);
    assert_eq!(listing.body["items"], json!([]), "nothing was stored");
    assert!(world.feed("rule_added").await.is_empty());

    // One rule per prefix and scope.
    assert_eq!(world.put_rule("ng", wave("+234")).await.status, 201);
    let twin = world.put_rule("ng-again", wave("+234")).await;
    assert_eq!(twin.status, 409, "{}", twin.body);
    assert_eq!(twin.body["error"]["code"], "duplicate_rule");
    assert!(
        twin.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ng"),
        "{}",
        twin.body
    );
    let bad_removal = world
        .as_admin("DELETE", "/v1/rules/ng", Some(json!({"reason": 5})))
        .await;
    assert_eq!(bad_removal.status, 422, "{}", bad_removal.body);
    assert_eq!(
        world.api.call("GET", "/v1/rules/ng", None).await.status,
        200
    );
}

#[tokio::test]
async fn b84_rules_list_by_id_in_pages_and_each_change_is_audited_once() {
    let world = World::new().await;
    for (id, prefix) in [("c", "+44"), ("a", "+234"), ("b", "+91")] {
        assert_eq!(world.put_rule(id, wave(prefix)).await.status, 201);
    }
    let first = world.api.call("GET", "/v1/rules?limit=2", None).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&first.body), ["a", "b"]);
    let cursor = first.body["next_cursor"].as_str().expect("a next page");
    let second = world
        .api
        .call("GET", &format!("/v1/rules?limit=2&cursor={cursor}"), None)
        .await;
    assert_eq!(ids(&second.body), ["c"]);
    assert_eq!(second.body["next_cursor"], Value::Null);

    // The same rule again changes nothing; a changed one is one event.
    let before = world.api.call("GET", "/v1/rules/a", None).await.body;
    let same = world.put_rule("a", wave("+234")).await;
    assert_eq!(same.status, 200);
    assert_eq!(same.body, before);
    let changed = world
        .put_rule(
            "a",
            json!({"prefix": "+2348", "reason": "narrower", "scope": "all"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(changed.body["created_at"], before["created_at"], "kept");
    assert_eq!(world.feed("rule_added").await.len(), 3);
    let edits = world.feed("rule_changed").await;
    assert_eq!(edits.len(), 1, "{edits:?}");
    assert_eq!(edits[0]["details"]["before"], before);
    assert_eq!(edits[0]["details"]["after"], changed.body);
    // The narrower prefix holds at once; the wider one no longer does.
    let wide = world
        .deliver(&text_from("2347031234567", "wamid.NG7", LINE_A))
        .await;
    assert_eq!(wide.body["forwarded"], 1, "{}", wide.body);
    let narrow = world
        .deliver(&text_from("2348031234567", "wamid.NG8", LINE_A))
        .await;
    assert_eq!(narrow.body["suppressed"], 1, "{}", narrow.body);
}

#[tokio::test]
async fn b84_concurrent_rule_changes_all_land_and_all_hold() {
    let world = World::new().await;
    let prefixes = [
        "+234803", "+234805", "+234703", "+234706", "+234813", "+234903",
    ];
    let ids: Vec<String> = (0..prefixes.len()).map(|i| format!("r{i}")).collect();
    let puts = ids
        .iter()
        .zip(prefixes)
        .map(|(id, prefix)| world.put_rule(id, wave(prefix)));
    for answer in futures::future::join_all(puts).await {
        assert_eq!(answer.status, 201, "{}", answer.body);
    }
    let listing = world.api.call("GET", "/v1/rules", None).await;
    assert_eq!(
        listing.body["items"].as_array().unwrap().len(),
        prefixes.len()
    );
    // Every copy of the set holds every rule: each delivery reads one.
    for (i, prefix) in prefixes.iter().enumerate() {
        for turn in 0..3 {
            let wa_id = format!("{}12300{turn}{i}", &prefix[1..]);
            let id = format!("wamid.R{i}T{turn}");
            let answer = world.deliver(&text_from(&wa_id, &id, LINE_A)).await;
            assert_eq!(answer.body["suppressed"], 1, "{wa_id}: {}", answer.body);
        }
    }
    assert_eq!(world.feed("rule_added").await.len(), prefixes.len());
    // Every copy holds the same set at the same version, read by key.
    let copies = world.stack().store.rule_set_copies().await.unwrap();
    assert_eq!(copies.len(), blocklist::store::RULE_COPIES as usize);
    let first = copies[0].clone().expect("copy 00");
    assert_eq!(first.set.entries.len(), prefixes.len());
    assert_eq!(
        first.version,
        prefixes.len() as u64,
        "one version per change"
    );
    for (i, copy) in copies.iter().enumerate() {
        assert_eq!(copy.as_ref(), Some(&first), "copy {i}");
    }
}

/// The longest rule: a 14-digit prefix, a 32-digit scope, a 32-character id.
fn longest_rule(i: usize) -> Rule {
    Rule {
        id: RuleId::parse(&format!("{i:0>32}")).unwrap(),
        prefix: Prefix::parse(&format!("+9{i:0>13}")).unwrap(),
        scope: Scope::parse(&"7".repeat(32)).unwrap(),
        reason: Reason::parse(&"r".repeat(500)).unwrap(),
        action: RuleAction::Block,
        actor: "seed".to_owned(),
        created_at: chrono::Utc::now(),
    }
}

#[tokio::test]
async fn b84_a_thousand_of_the_longest_rules_fit_and_still_hold_on_every_delivery() {
    let world = World::new().await;
    let store = &world.stack().store;
    // 999 rules of the largest size, seeded in one change: what the set,
    // its copies and their transaction hold at the limit.
    let set = RuleSet {
        entries: (0..MAX_RULES - 1)
            .map(|i| RuleEntry::from(&longest_rule(i)))
            .collect(),
    };
    let last = longest_rule(MAX_RULES - 1);
    let seeded = StoredRules { set, version: 0 };
    store
        .change_rule(
            &RuleChange {
                current: &seeded,
                id: &last.id,
                before: None,
                after: Some(&last),
                reason: None,
            },
            &blocklist::model::Actor::system("seed"),
            chrono::Utc::now(),
        )
        .await
        .expect("1,000 of the longest rules are one transaction");
    assert_eq!(store.rules().await.unwrap().set.entries.len(), MAX_RULES);

    let full = world.put_rule("one-more", wave(PREFIX)).await;
    assert_eq!(full.status, 422, "{}", full.body);
    assert_eq!(full.body["error"]["code"], "too_many_rules");
    // A rule held can still change.
    let changed = world
        .put_rule(
            last.id.as_str(),
            json!({"prefix": PREFIX, "reason": "narrowed to the wave", "scope": "all"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    let answer = world
        .deliver(&text_from("16505551234", "wamid.FULL", LINE_A))
        .await;
    assert_eq!(answer.body["suppressed"], 1, "{}", answer.body);
    let other = world
        .deliver(&text_from("16505557777", "wamid.FREE", LINE_A))
        .await;
    assert_eq!(other.body["forwarded"], 1, "{}", other.body);
}

#[tokio::test]
async fn b84_a_rule_holds_when_a_check_spans_several_batched_reads() {
    let world = World::new().await;
    assert_eq!(world.put_rule("wave", wave(PREFIX)).await.status, 201);
    // 40 numbers are 160 keys: the rule set's key is read in a later batch
    // than most numbers'.
    let mut numbers: Vec<String> = (0..39).map(|i| format!("+4477009001{i:02}")).collect();
    numbers.push(NUMBER.to_owned());
    let check = world
        .check(&json!({ "numbers": numbers }).to_string())
        .await;
    assert_eq!(check.status, 200, "{:?}", check.json());
    assert_eq!(
        check.json()["refused"],
        json!([{"number": NUMBER, "reason": "recipient_blocked", "rule": "wave"}])
    );
    assert_eq!(check.json()["allowed"].as_array().unwrap().len(), 39);
}

#[tokio::test]
async fn b84_b63_a_number_unknown_to_the_metadata_is_shown_once_a_rule_matches_it() {
    let world = World::new().await;
    let unknown = world.api.call("GET", "/v1/blocks/+9991234567", None).await;
    assert_eq!(unknown.status, 422, "never seen: {}", unknown.body);
    assert_eq!(world.put_rule("nine", wave("+999")).await.status, 201);
    let view = world.view("+9991234567").await;
    assert_eq!(view["rules"][0]["id"], "nine", "{view}");
    let removal = world.api.call("DELETE", "/v1/rules/nine", None).await;
    assert_eq!(removal.status, 403, "removing a rule needs blocklist:admin");
}
