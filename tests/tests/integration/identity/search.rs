//! B65: `GET /v1/blocks?q=` finds a number in any form a user types, and
//! a BSUID.

use super::{BSUID, World};

/// The subjects `GET /v1/blocks?q=<q>` lists; `q` is sent percent-encoded.
async fn search(world: &World, q: &str) -> Vec<String> {
    let encoded: String = q
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let response = world
        .api
        .call("GET", &format!("/v1/blocks?q={encoded}&limit=200"), None)
        .await;
    assert_eq!(response.status, 200, "q={q:?}: {:?}", response.body);
    let mut subjects: Vec<String> = response.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["subject"].as_str().unwrap().to_owned())
        .collect();
    subjects.sort();
    subjects.dedup();
    subjects
}

#[tokio::test]
async fn b65_search_finds_a_number_in_any_form_and_a_bsuid() {
    let world = World::new().await;
    for subject in [
        "+16505551234",
        "+5511987654321",
        "+447700900123",
        "+5491123456789",
        BSUID,
    ] {
        world.block(subject, "all").await;
    }
    let cases: &[(&str, &[&str])] = &[
        ("+16505551234", &["+16505551234"]),
        ("+1 650 555 1234", &["+16505551234"]),
        ("+1 (650) 555-1234", &["+16505551234"]),
        ("001 650 555 1234", &["+16505551234"]),
        ("0016505551234", &["+16505551234"]),
        ("16505551234", &["+16505551234"]),
        ("650 555 1234", &["+16505551234"]),
        // Brazil: the 12-digit WhatsApp form, and the 13-digit one spaced.
        ("551187654321", &["+5511987654321"]),
        ("+55 11 98765-4321", &["+5511987654321"]),
        ("0044 7700 900123", &["+447700900123"]),
        // Argentina as CRMs write it.
        ("+54 11 15 2345 6789", &["+5491123456789"]),
        // A suffix of at least four digits.
        ("51234", &["+16505551234"]),
        ("4321", &["+5511987654321"]),
        ("900123", &["+447700900123"]),
        // A BSUID, in any case, and its tail.
        (BSUID, &[BSUID]),
        ("us.13491208655302741918", &[BSUID]),
        ("55302741918", &[BSUID]),
    ];
    for (q, expected) in cases {
        let found = search(&world, q).await;
        let expected: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(found, expected, "q={q:?}");
    }
    assert!(search(&world, "+1 650 555 9999").await.is_empty());
    assert!(search(&world, "US.99999999999").await.is_empty());
}
