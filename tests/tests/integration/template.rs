//! `template.yaml` proven without an AWS account: permissions (B53 and least
//! privilege), runtime and build, tables, alarms, secrets and the stream
//! that feeds `wa-blocked`. CloudFormation's short forms (`!Ref`,
//! `!GetAtt`, `!Sub`, `!If`) arrive as tagged YAML values and their long
//! forms (`Fn::GetAtt: ...`) as one-key mappings; both are read alike.
//! The grants are checked against the DynamoDB calls the code makes,
//! recorded against DynamoDB Local (`calls`).

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::{Mapping, Value};

mod calls;

/// The functions, by the binary each is built from.
const BINARIES: [&str; 8] = [
    "block-api",
    "block-import",
    "webhook-ingress",
    "send-proxy",
    "wa-blocked",
    "block-expiry",
    "change-events",
    "platform-block",
];

/// Functions whose code calls no table: the event source mapping reads
/// their stream, and they talk to the world outside.
const CALL_NO_TABLE: &[&str] = &["change-events"];

fn workspace_path(name: &str) -> String {
    format!("{}/../{name}", env!("CARGO_MANIFEST_DIR"))
}

fn template() -> Value {
    let path = workspace_path("template.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("template.yaml is not YAML: {e}"))
}

fn resources(t: &Value) -> &Mapping {
    t["Resources"]
        .as_mapping()
        .expect("template.yaml has Resources")
}

/// Logical id → resource, for every resource of `kind`.
fn of_type<'a>(t: &'a Value, kind: &str) -> BTreeMap<String, &'a Value> {
    resources(t)
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(id, r)| (id.as_str().expect("logical id").to_owned(), r))
        .collect()
}

/// Binary (`BuildProperties.Binary`) → logical id of its function.
fn functions(t: &Value) -> BTreeMap<String, String> {
    of_type(t, "AWS::Serverless::Function")
        .into_iter()
        .map(|(id, f)| {
            let binary = f["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap_or_else(|| panic!("{id} has no Metadata.BuildProperties.Binary"));
            (binary.to_owned(), id)
        })
        .collect()
}

fn function<'a>(t: &'a Value, binary: &str) -> &'a Value {
    let id = functions(t)
        .remove(binary)
        .unwrap_or_else(|| panic!("no function is built from the {binary} binary"));
    &resources(t)[id.as_str()]
}

/// A function property, or the `Globals.Function` one it inherits.
fn effective<'a>(t: &'a Value, function: &'a Value, property: &str) -> &'a Value {
    match &function["Properties"][property] {
        Value::Null => &t["Globals"]["Function"][property],
        own => own,
    }
}

/// An intrinsic function: its name without `!`/`Fn::` and its argument.
fn intrinsic(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(tagged) => Some((
            tagged.tag.to_string().trim_start_matches('!').to_owned(),
            &tagged.value,
        )),
        Value::Mapping(m) if m.len() == 1 => {
            let (key, argument) = m.iter().next()?;
            let key = key.as_str()?;
            if key == "Ref" {
                Some(("Ref".to_owned(), argument))
            } else {
                key.strip_prefix("Fn::")
                    .map(|name| (name.to_owned(), argument))
            }
        }
        _ => None,
    }
}

/// The logical ids (resources and parameters) an expression refers to.
fn references(v: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    collect_references(v, &mut out);
    out
}

fn collect_references(v: &Value, out: &mut BTreeSet<String>) {
    if let Some((name, argument)) = intrinsic(v) {
        match (name.as_str(), argument) {
            ("Ref", Value::String(id)) if !id.starts_with("AWS::") => {
                out.insert(id.clone());
            }
            ("GetAtt", Value::String(path)) => {
                out.insert(path.split('.').next().unwrap_or_default().to_owned());
            }
            ("GetAtt", Value::Sequence(parts)) => {
                if let Some(id) = parts.first().and_then(Value::as_str) {
                    out.insert(id.to_owned());
                }
            }
            ("Sub", Value::String(text)) => sub_references(text, &BTreeSet::new(), out),
            ("Sub", Value::Sequence(parts)) => {
                let variables: BTreeSet<String> = parts
                    .get(1)
                    .and_then(Value::as_mapping)
                    .map(|m| {
                        m.keys()
                            .filter_map(|k| k.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some(text) = parts.first().and_then(Value::as_str) {
                    sub_references(text, &variables, out);
                }
                if let Some(values) = parts.get(1) {
                    collect_references(values, out);
                }
            }
            (_, argument) => collect_references(argument, out),
        }
        return;
    }
    match v {
        Value::Sequence(items) => items.iter().for_each(|i| collect_references(i, out)),
        Value::Mapping(m) => m.values().for_each(|i| collect_references(i, out)),
        Value::Tagged(tagged) => collect_references(&tagged.value, out),
        _ => {}
    }
}

/// `${Id}` and `${Id.Attribute}` of a `!Sub` string.
fn sub_references(text: &str, variables: &BTreeSet<String>, out: &mut BTreeSet<String>) {
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let name = &after[..end];
        if !name.starts_with('!') && !name.starts_with("AWS::") && !variables.contains(name) {
            out.insert(name.split('.').next().unwrap_or_default().to_owned());
        }
        rest = &after[end + 1..];
    }
}

/// A resource expression as one string: `!GetAtt T.Arn` → `T.Arn`,
/// `!Sub "${T.Arn}/index/gsi1"` → `T.Arn/index/gsi1`, a literal as is.
fn resource_key(v: &Value) -> String {
    match intrinsic(v) {
        Some((name, Value::String(s))) if name == "GetAtt" || name == "Ref" => s.clone(),
        Some((name, Value::Sequence(parts))) if name == "GetAtt" => parts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("."),
        Some((name, Value::String(s))) if name == "Sub" => s.replace("${", "").replace('}', ""),
        _ => match v {
            Value::String(s) => s.clone(),
            other => format!("{other:?}"),
        },
    }
}

/// A string or a list of them (as `Action` and `Resource` may be).
fn list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Null => Vec::new(),
        Value::Sequence(items) => items.iter().collect(),
        other => vec![other],
    }
}

/// One IAM statement and who holds it (a function's logical id, or the
/// IAM resource it is declared in).
struct Statement<'a> {
    owner: String,
    body: &'a Value,
}

impl Statement<'_> {
    fn allows(&self) -> bool {
        self.body["Effect"].as_str() == Some("Allow")
    }

    /// Lower case: IAM action names are case-insensitive.
    fn actions(&self) -> Vec<String> {
        list(&self.body["Action"])
            .into_iter()
            .map(|a| a.as_str().unwrap_or("<not a string>").to_lowercase())
            .collect()
    }

    fn resources(&self) -> Vec<&Value> {
        list(&self.body["Resource"])
    }
}

/// Every inline statement of the template: functions' `Policies`
/// documents and any IAM role or policy resource. Whatever grants cannot
/// be read from the template (managed policies, SAM policy templates, a
/// role from elsewhere) goes to `opaque`.
fn statements(t: &Value) -> (Vec<Statement<'_>>, Vec<String>) {
    fn document<'a>(owner: &str, doc: &'a Value, found: &mut Vec<Statement<'a>>) {
        for body in list(&doc["Statement"]) {
            found.push(Statement {
                owner: owner.to_owned(),
                body,
            });
        }
    }
    let mut found = Vec::new();
    let mut opaque = Vec::new();
    let iam_ids: BTreeSet<String> = [
        "AWS::IAM::Role",
        "AWS::IAM::Policy",
        "AWS::IAM::ManagedPolicy",
    ]
    .iter()
    .flat_map(|kind| of_type(t, kind).into_keys())
    .collect();
    for (id, f) in of_type(t, "AWS::Serverless::Function") {
        for policy in list(&f["Properties"]["Policies"]) {
            if policy["Statement"].is_null() {
                opaque.push(format!("{id}: policy {policy:?} is not an inline document"));
            } else {
                document(&id, policy, &mut found);
            }
        }
        let role = &f["Properties"]["Role"];
        if !role.is_null() && references(role).is_disjoint(&iam_ids) {
            opaque.push(format!(
                "{id}: Role {role:?} is not a role of this template"
            ));
        }
    }
    for (id, role) in of_type(t, "AWS::IAM::Role") {
        for policy in list(&role["Properties"]["Policies"]) {
            document(&id, &policy["PolicyDocument"], &mut found);
        }
        if !role["Properties"]["ManagedPolicyArns"].is_null() {
            opaque.push(format!("{id}: ManagedPolicyArns"));
        }
    }
    for kind in ["AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"] {
        for (id, policy) in of_type(t, kind) {
            document(&id, &policy["Properties"]["PolicyDocument"], &mut found);
        }
    }
    (found, opaque)
}

/// Action → resources, per owner, of every `Allow` statement.
fn grants(t: &Value) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for statement in statements(t).0.iter().filter(|s| s.allows()) {
        for resource in statement.resources() {
            out.entry(statement.owner.clone())
                .or_default()
                .entry(resource_key(resource))
                .or_default()
                .extend(statement.actions());
        }
    }
    out
}

#[test]
fn b53_no_function_can_update_or_delete_audit_items() {
    check_b53_no_function_can_update_or_delete_audit_items(&template());
}

fn check_b53_no_function_can_update_or_delete_audit_items(t: &Value) {
    // Appending, reading, and reading the table's stream (B14), which
    // cannot change an item.
    let allowed: BTreeSet<&str> = [
        "dynamodb:putitem",
        "dynamodb:getitem",
        "dynamodb:query",
        "dynamodb:describestream",
        "dynamodb:getrecords",
        "dynamodb:getsharditerator",
        "dynamodb:liststreams",
    ]
    .into();
    let mut problems = Vec::new();
    let mut appenders = BTreeSet::new();
    let (statements, opaque) = statements(t);
    for statement in statements.iter().filter(|s| s.allows()) {
        let owner = &statement.owner;
        if !statement.body["NotAction"].is_null() || !statement.body["NotResource"].is_null() {
            problems.push(format!(
                "{owner}: NotAction/NotResource may cover the audit table"
            ));
            continue;
        }
        // A literal ARN (not a reference to a table of this template) may
        // name the audit table, or every table.
        let on_audit = statement.resources().iter().any(|r| {
            references(r).contains("AuditTable")
                || (intrinsic(r).is_none()
                    && r.as_str()
                        .is_none_or(|s| s.contains('*') || s.contains(":dynamodb:")))
        });
        if !on_audit {
            continue;
        }
        for action in statement.actions() {
            if !allowed.contains(action.as_str()) {
                problems.push(format!("{owner}: {action} on the audit table"));
            }
            if action == "dynamodb:putitem" {
                appenders.insert(owner.clone());
            }
        }
    }
    problems.extend(opaque);
    assert!(problems.is_empty(), "B53: {problems:#?}");
    // Every function whose code writes audit events (as recorded, see
    // `calls`) holds PutItem on the audit table, and no other: this is
    // what the check above looked at.
    let by_binary = functions(t);
    let all: BTreeSet<String> = calls::recorded()
        .iter()
        .filter(|(_, needs)| {
            needs
                .get("AuditTable.Arn")
                .is_some_and(|a| a.contains("dynamodb:putitem"))
        })
        .map(|(binary, _)| by_binary[binary].clone())
        .collect();
    assert_eq!(appenders, all, "functions appending to the audit table");
}

#[test]
fn least_privilege_no_wildcard_actions_or_resources() {
    check_least_privilege_no_wildcard_actions_or_resources(&template());
}

fn check_least_privilege_no_wildcard_actions_or_resources(t: &Value) {
    let resource_ids: BTreeSet<String> = resources(t)
        .keys()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    let (statements, opaque) = statements(t);
    let mut problems = opaque;
    for statement in statements.iter().filter(|s| s.allows()) {
        let owner = &statement.owner;
        for not in ["NotAction", "NotResource"] {
            if !statement.body[not].is_null() {
                problems.push(format!("{owner}: {not}"));
            }
        }
        let actions = statement.actions();
        if actions.is_empty() {
            problems.push(format!("{owner}: a statement without Action"));
        }
        for action in actions.iter().filter(|a| a.contains('*')) {
            problems.push(format!("{owner}: wildcard action {action}"));
        }
        let resources = statement.resources();
        if resources.is_empty() {
            problems.push(format!("{owner}: a statement without Resource"));
        }
        for resource in resources {
            let key = resource_key(resource);
            if intrinsic(resource).is_none() {
                problems.push(format!("{owner}: literal resource {key}"));
            } else if references(resource).is_disjoint(&resource_ids) {
                problems.push(format!("{owner}: {key} is no resource of this template"));
            }
            // The only wildcard: ListStreams names the streams of one table.
            if key.contains('*')
                && !(key.ends_with(".Arn/stream/*") && key.matches('*').count() == 1)
            {
                problems.push(format!("{owner}: wildcard resource {key}"));
            }
        }
    }
    assert!(problems.is_empty(), "least privilege: {problems:#?}");
    let granted = grants(t);
    for (binary, id) in functions(t) {
        assert!(
            granted.contains_key(&id),
            "{binary} ({id}) has no statements"
        );
    }
}

/// Table grants no recorded path uses, each with why it stays for now.
/// Any other unused grant fails the check below.
const UNUSED_GRANTS: &[(&str, &str, &str, &str)] = &[
    (
        "webhook-ingress",
        "BlocklistTable.Arn",
        "dynamodb:deleteitem",
        "blocks carried to a changed identity (B62) are a change like any other: it deletes the search index items of blocks it replaces (a temporary block there that expired and was not swept yet); the recorded carries replace none",
    ),
    (
        "webhook-ingress",
        "BlocklistTable.Arn",
        "dynamodb:conditioncheckitem",
        "a change too large for one transaction (a person blocked on about 100 business numbers) writes its rest under a ConditionCheck on the version it committed; block-api's recorded paths make one",
    ),
    (
        "wa-blocked",
        "BlocklistTable.Arn",
        "dynamodb:conditioncheckitem",
        "a change too large for one transaction (a person blocked on about 100 business numbers) writes its rest under a ConditionCheck on the version it committed; block-api's recorded paths make one",
    ),
    (
        "block-import",
        "BlocklistTable.Arn",
        "dynamodb:conditioncheckitem",
        "a change too large for one transaction (a person blocked on about 100 business numbers) writes its rest under a ConditionCheck on the version it committed; block-api's recorded paths make one",
    ),
    (
        "block-expiry",
        "BlocklistTable.Arn",
        "dynamodb:conditioncheckitem",
        "a change too large for one transaction (a person blocked on about 100 business numbers) writes its rest under a ConditionCheck on the version it committed; block-api's recorded paths make one",
    ),
];

/// What is granted for Lambda's event source mappings, which run with
/// their function's role, rather than for calls of the code: reading the
/// Failures stream (wa-blocked) and the Audit stream (change-events,
/// platform-block), and
/// sending what fails for good to a dead-letter queue. Nothing else may be granted on a resource that is not a table
/// or an index.
const EVENT_SOURCE_GRANTS: &[(&str, &str, &[&str])] = &[
    (
        "wa-blocked",
        "FailuresTable.StreamArn",
        &[
            "dynamodb:describestream",
            "dynamodb:getrecords",
            "dynamodb:getsharditerator",
        ],
    ),
    (
        "wa-blocked",
        "FailuresTable.Arn/stream/*",
        &["dynamodb:liststreams"],
    ),
    (
        "wa-blocked",
        "WaBlockedDeadLetterQueue.Arn",
        &["sqs:sendmessage"],
    ),
    (
        "change-events",
        "AuditTable.StreamArn",
        &[
            "dynamodb:describestream",
            "dynamodb:getrecords",
            "dynamodb:getsharditerator",
        ],
    ),
    (
        "change-events",
        "AuditTable.Arn/stream/*",
        &["dynamodb:liststreams"],
    ),
    (
        "change-events",
        "ChangeEventsDeadLetterQueue.Arn",
        &["sqs:sendmessage"],
    ),
    (
        "platform-block",
        "AuditTable.StreamArn",
        &[
            "dynamodb:describestream",
            "dynamodb:getrecords",
            "dynamodb:getsharditerator",
        ],
    ),
    (
        "platform-block",
        "AuditTable.Arn/stream/*",
        &["dynamodb:liststreams"],
    ),
    (
        "platform-block",
        "PlatformBlockDeadLetterQueue.Arn",
        &["sqs:sendmessage"],
    ),
    (
        "block-import",
        "ImportsTable.StreamArn",
        &[
            "dynamodb:describestream",
            "dynamodb:getrecords",
            "dynamodb:getsharditerator",
        ],
    ),
    (
        "block-import",
        "ImportsTable.Arn/stream/*",
        &["dynamodb:liststreams"],
    ),
    (
        "block-import",
        "BlockImportDeadLetterQueue.Arn",
        &["sqs:sendmessage"],
    ),
];

/// A DynamoDB table or index resource (`<Table>.Arn`,
/// `<Table>.Arn/index/<name>`), which the code's calls use; the others
/// are the event source mapping's.
fn is_table_resource(t: &Value, key: &str) -> bool {
    let tables = of_type(t, "AWS::DynamoDB::Table");
    key.split_once('.').is_some_and(|(id, rest)| {
        tables.contains_key(id) && (rest == "Arn" || rest.starts_with("Arn/index/"))
    })
}

#[test]
fn least_privilege_each_function_is_granted_exactly_the_calls_its_code_makes() {
    check_least_privilege_each_function_is_granted_exactly_the_calls_its_code_makes(&template());
}

/// The calls come from the code, recorded (see `calls`): each function's
/// handler run through representative paths with its store behind a relay
/// that notes every DynamoDB call as the IAM action it needs on which
/// table or index. Every recorded call must be granted to that function;
/// every table grant must be used by some path (or be in
/// [`UNUSED_GRANTS`]).
fn check_least_privilege_each_function_is_granted_exactly_the_calls_its_code_makes(t: &Value) {
    let ids = functions(t);
    let granted = grants(t);
    let recorded = calls::recorded();
    let mut ungranted = Vec::new();
    let mut unused = Vec::new();
    for binary in BINARIES {
        let id = ids
            .get(binary)
            .unwrap_or_else(|| panic!("no {binary} function"));
        let needs = recorded.get(binary).cloned().unwrap_or_default();
        assert_eq!(
            needs.is_empty(),
            CALL_NO_TABLE.contains(&binary),
            "calls of {binary} recorded: {needs:?}"
        );
        let theirs = granted.get(id).cloned().unwrap_or_default();
        for (resource, actions) in &needs {
            for action in actions {
                if !theirs.get(resource).is_some_and(|a| a.contains(action)) {
                    ungranted.push(format!("{binary} calls {action} on {resource}"));
                }
            }
        }
        for (resource, actions) in theirs.iter().filter(|(r, _)| is_table_resource(t, r)) {
            for action in actions {
                if needs.get(resource).is_some_and(|a| a.contains(action)) {
                    continue;
                }
                let known = UNUSED_GRANTS
                    .iter()
                    .any(|(b, r, a, _)| *b == binary && r == resource && a == action);
                eprintln!(
                    "{binary} is granted {action} on {resource}, which no recorded path calls{}",
                    if known {
                        " (listed in UNUSED_GRANTS)"
                    } else {
                        ""
                    }
                );
                if !known {
                    unused.push(format!("{binary} is granted {action} on {resource}"));
                }
            }
        }
    }
    assert!(
        ungranted.is_empty(),
        "calls the template does not grant: {ungranted:#?}\nrecorded: {recorded:#?}"
    );
    assert!(
        unused.is_empty(),
        "grants no recorded path uses (least privilege): {unused:#?}\nrecorded: {recorded:#?}"
    );

    let mut others: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (owner, resources) in &granted {
        for (resource, actions) in resources.iter().filter(|(r, _)| !is_table_resource(t, r)) {
            others
                .entry(owner.clone())
                .or_default()
                .insert(resource.clone(), actions.clone());
        }
    }
    let mut expected: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (binary, resource, actions) in EVENT_SOURCE_GRANTS {
        let id = ids
            .get(*binary)
            .unwrap_or_else(|| panic!("no {binary} function"));
        expected.entry(id.clone()).or_default().insert(
            (*resource).to_owned(),
            actions.iter().map(|a| a.to_lowercase()).collect(),
        );
    }
    assert_eq!(
        others, expected,
        "grants on resources other than tables and indexes"
    );
}

#[test]
fn every_function_is_arm64_provided_al2023_built_with_cargo_lambda() {
    check_every_function_is_arm64_provided_al2023_built_with_cargo_lambda(&template());
}

fn check_every_function_is_arm64_provided_al2023_built_with_cargo_lambda(t: &Value) {
    let all = of_type(t, "AWS::Serverless::Function");
    let binaries: BTreeSet<String> = functions(t).into_keys().collect();
    assert_eq!(
        binaries,
        BINARIES.iter().map(|b| (*b).to_owned()).collect(),
        "one function per binary"
    );
    assert_eq!(all.len(), BINARIES.len(), "one function per binary");
    for (id, f) in all {
        assert_eq!(
            effective(t, f, "Runtime").as_str(),
            Some("provided.al2023"),
            "{id} Runtime"
        );
        assert_eq!(
            effective(t, f, "Architectures"),
            &Value::Sequence(vec![Value::String("arm64".into())]),
            "{id} Architectures"
        );
        assert_eq!(
            effective(t, f, "Handler").as_str(),
            Some("bootstrap"),
            "{id} Handler"
        );
        assert_eq!(
            f["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{id} BuildMethod"
        );
        let binary = f["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .expect("Binary");
        let manifest =
            std::fs::read_to_string(workspace_path(&format!("functions/{binary}/Cargo.toml")))
                .unwrap_or_else(|e| panic!("{id}: functions/{binary}/Cargo.toml: {e}"));
        assert!(
            manifest.contains(&format!("name = \"{binary}\"")),
            "{id}: functions/{binary} is not the {binary} package"
        );
        assert!(
            std::path::Path::new(&workspace_path(&format!("functions/{binary}/src/main.rs")))
                .exists(),
            "{id}: {binary} has no main.rs"
        );
        // cargo lambda builds the binary from the workspace at CodeUri.
        let code_uri = effective(t, f, "CodeUri").as_str().expect("CodeUri");
        let workspace = std::fs::read_to_string(workspace_path(&format!("{code_uri}/Cargo.toml")))
            .unwrap_or_else(|e| panic!("{id}: CodeUri {code_uri} has no Cargo.toml: {e}"));
        assert!(
            workspace.contains(&format!("\"functions/{binary}\"")),
            "{id}: CodeUri {code_uri} is not the workspace holding {binary}"
        );
    }
}

#[test]
fn tables_have_pitr_deletion_protection_retain_and_encryption() {
    check_tables_have_pitr_deletion_protection_retain_and_encryption(&template());
}

fn check_tables_have_pitr_deletion_protection_retain_and_encryption(t: &Value) {
    let tables = of_type(t, "AWS::DynamoDB::Table");
    let ids: BTreeSet<&str> = tables.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        [
            "AuditTable",
            "BlocklistTable",
            "ChatsTable",
            "FailuresTable",
            "ImportsTable",
            "MessagesTable"
        ]
        .into(),
        "the six tables"
    );
    let yes = Value::Bool(true);
    for (id, table) in &tables {
        let p = &table["Properties"];
        assert_eq!(table["DeletionPolicy"].as_str(), Some("Retain"), "{id}");
        assert_eq!(
            table["UpdateReplacePolicy"].as_str(),
            Some("Retain"),
            "{id}"
        );
        assert_eq!(
            p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], yes,
            "{id} point-in-time recovery"
        );
        assert_eq!(
            p["DeletionProtectionEnabled"], yes,
            "{id} deletion protection"
        );
        assert_eq!(p["SSESpecification"]["SSEEnabled"], yes, "{id} encryption");
    }
    for (id, what) in [
        ("MessagesTable", "claims and records of sends"),
        (
            "BlocklistTable",
            "claims and records of sends from earlier releases",
        ),
        ("FailuresTable", "failures"),
        ("ImportsTable", "imports and their results"),
    ] {
        let p = &tables[id]["Properties"];
        assert_eq!(
            p["TimeToLiveSpecification"]["AttributeName"].as_str(),
            Some("ttl"),
            "{what} expire by ttl"
        );
        assert_eq!(p["TimeToLiveSpecification"]["Enabled"], yes, "{id} ttl");
    }
}

/// (namespace, metric name, dimensions) of every metric an alarm watches.
fn alarm_metrics(alarm: &Value) -> Vec<(String, String, BTreeMap<String, &Value>)> {
    let p = &alarm["Properties"];
    fn metric(m: &Value) -> (String, String, BTreeMap<String, &Value>) {
        let dimensions = list(&m["Dimensions"])
            .into_iter()
            .map(|d| {
                (
                    d["Name"].as_str().unwrap_or_default().to_owned(),
                    &d["Value"],
                )
            })
            .collect();
        (
            m["Namespace"].as_str().unwrap_or_default().to_owned(),
            m["MetricName"].as_str().unwrap_or_default().to_owned(),
            dimensions,
        )
    }
    let mut out = Vec::new();
    if !p["MetricName"].is_null() {
        out.push(metric(p));
    }
    for query in list(&p["Metrics"]) {
        if !query["MetricStat"].is_null() {
            out.push(metric(&query["MetricStat"]["Metric"]));
        }
    }
    out
}

/// Alarms on `namespace`/`metric` whose `dimension` refers to `target`.
fn alarms_on<'a>(
    t: &'a Value,
    namespace: &str,
    metric: &str,
    dimension: &str,
    target: &str,
) -> Vec<(String, &'a Value)> {
    of_type(t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|(_, alarm)| {
            alarm_metrics(alarm).iter().any(|(ns, name, dims)| {
                ns == namespace
                    && name == metric
                    && dims
                        .get(dimension)
                        .is_some_and(|v| references(v).contains(target))
            })
        })
        .collect()
}

/// Fires on the first occurrence: `> 0` or `>= 1`.
fn fires_on_first(alarm: &Value) -> bool {
    let p = &alarm["Properties"];
    let threshold = p["Threshold"].as_f64();
    match p["ComparisonOperator"].as_str() {
        Some("GreaterThanThreshold") => threshold == Some(0.0),
        Some("GreaterThanOrEqualToThreshold") => threshold == Some(1.0),
        _ => false,
    }
}

#[test]
fn every_function_has_error_and_throttle_alarms() {
    check_every_function_has_error_and_throttle_alarms(&template());
}

fn check_every_function_has_error_and_throttle_alarms(t: &Value) {
    assert_eq!(
        t["Parameters"]["AlarmTopicArn"]["Default"].as_str(),
        Some(""),
        "alarm topic is optional"
    );
    for (binary, id) in functions(t) {
        for metric in ["Errors", "Throttles"] {
            let alarms = alarms_on(t, "AWS/Lambda", metric, "FunctionName", &id);
            assert!(
                alarms.iter().any(|(_, a)| fires_on_first(a)),
                "{binary}: no alarm on its first {metric} (found {:?})",
                alarms.iter().map(|(n, _)| n).collect::<Vec<_>>()
            );
        }
    }
    // Every alarm notifies the topic when one is given.
    for (id, alarm) in of_type(t, "AWS::CloudWatch::Alarm") {
        let actions = &alarm["Properties"]["AlarmActions"];
        assert!(
            references(actions).contains("AlarmTopicArn"),
            "{id}: AlarmActions do not name the AlarmTopicArn topic"
        );
    }
}

#[test]
fn alarms_watch_the_dead_letter_queue_and_api_5xx() {
    check_alarms_watch_the_dead_letter_queue_and_api_5xx(&template());
}

fn check_alarms_watch_the_dead_letter_queue_and_api_5xx(t: &Value) {
    let queues = of_type(t, "AWS::SQS::Queue");
    assert!(!queues.is_empty(), "no queue");
    for queue in queues.keys() {
        let alarms = alarms_on(
            t,
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            "QueueName",
            queue,
        );
        assert!(
            alarms.iter().any(|(_, a)| fires_on_first(a)),
            "{queue}: no alarm on its first message"
        );
    }
    let apis = of_type(t, "AWS::Serverless::HttpApi");
    assert_eq!(apis.len(), 1, "one HTTP API");
    for api in apis.keys() {
        assert!(
            !alarms_on(t, "AWS/ApiGateway", "5xx", "ApiId", api).is_empty(),
            "{api}: no 5xx alarm"
        );
    }
}

/// A `{{resolve:secretsmanager:<id>:SecretString:<key>}}` reference:
/// its JSON key.
fn secrets_manager_key(v: &Value) -> Option<String> {
    let text = match intrinsic(v) {
        Some((name, Value::String(s))) if name == "Sub" => s.as_str(),
        Some(_) => return None,
        None => v.as_str()?,
    };
    let inner = text
        .strip_prefix("{{resolve:secretsmanager:")?
        .strip_suffix("}}")?;
    let (secret, key) = inner.split_once(":SecretString:")?;
    (!secret.is_empty() && !key.is_empty() && !key.contains(':')).then(|| key.to_owned())
}

#[test]
fn secrets_come_from_secrets_manager_not_parameters() {
    check_secrets_come_from_secrets_manager_not_parameters(&template());
}

fn check_secrets_come_from_secrets_manager_not_parameters(t: &Value) {
    let parameters = t["Parameters"].as_mapping().expect("Parameters");
    for (name, parameter) in parameters {
        let name = name.as_str().expect("parameter name");
        let lower = name.to_lowercase();
        if ["secret", "token", "password", "apikey"]
            .iter()
            .any(|w| lower.contains(w))
        {
            // Naming a secret is fine, and so is the address of a token
            // endpoint; holding one is not.
            assert!(
                name.ends_with("Name") || name.ends_with("Arn") || name.ends_with("Url"),
                "parameter {name} looks like a secret value"
            );
            assert!(
                parameter["NoEcho"].is_null(),
                "{name} is NoEcho: a secret value?"
            );
        }
    }
    let expected = [
        ("webhook-ingress", "WHATSAPP_APP_SECRET", "app_secret"),
        ("webhook-ingress", "WHATSAPP_VERIFY_TOKEN", "verify_token"),
        ("webhook-ingress", "CRM_WEBHOOK_SECRET", "crm_secret"),
        ("send-proxy", "WHATSAPP_ACCESS_TOKEN", "access_token"),
    ];
    for (binary, variable, key) in expected {
        let f = function(t, binary);
        let value = &f["Properties"]["Environment"]["Variables"][variable];
        assert_eq!(
            secrets_manager_key(value).as_deref(),
            Some(key),
            "{binary} {variable} must be {{{{resolve:secretsmanager:…:SecretString:{key}}}}}, is {value:?}"
        );
    }
    // No other variable that looks secret holds a plain value, and the
    // local HS256 mode (LOCAL_JWT_SECRET) is never switched on in AWS.
    let mut environments = vec![("Globals".to_owned(), &t["Globals"]["Function"])];
    environments.extend(
        of_type(t, "AWS::Serverless::Function")
            .into_iter()
            .map(|(id, f)| (id, &f["Properties"])),
    );
    for (owner, holder) in environments {
        let Some(variables) = holder["Environment"]["Variables"].as_mapping() else {
            continue;
        };
        for (name, value) in variables {
            let name = name.as_str().expect("variable name");
            assert_ne!(name, "LOCAL_JWT_SECRET", "{owner} sets LOCAL_JWT_SECRET");
            // An endpoint's address (CONSOLE_OAUTH_TOKEN_URL) is no secret.
            let secret_like =
                name.contains("SECRET") || name.contains("TOKEN") || name.contains("PASSWORD");
            if secret_like && !name.ends_with("_URL") {
                assert!(
                    secrets_manager_key(value).is_some(),
                    "{owner} {name} is not a Secrets Manager reference: {value:?}"
                );
            }
        }
    }
}

#[test]
fn wa_blocked_stream_reports_batch_item_failures_with_dlq() {
    check_wa_blocked_stream_reports_batch_item_failures_with_dlq(&template());
}

fn check_wa_blocked_stream_reports_batch_item_failures_with_dlq(t: &Value) {
    check_stream_reader(
        t,
        "wa-blocked",
        "FailuresTable",
        serde_json::json!({"eventName": ["INSERT"], "dynamodb": {"Keys": {"pk": {"S": [{"prefix": "F#"}]}}}}),
    );
    check_stream_reader(
        t,
        "change-events",
        "AuditTable",
        serde_json::json!({"eventName": ["INSERT"]}),
    );
    // B15: the actions platform-block acts on, as its code names them.
    let actions: Vec<&str> = platform_block::STREAM_ACTIONS
        .iter()
        .map(|a| a.as_str())
        .collect();
    check_stream_reader(
        t,
        "platform-block",
        "AuditTable",
        serde_json::json!({"eventName": ["INSERT"], "dynamodb": {"NewImage": {"action": {"S": actions}}}}),
    );
    // B91: new import chunks, nothing else.
    check_stream_reader(
        t,
        "block-import",
        "ImportsTable",
        serde_json::json!({"eventName": ["INSERT"], "dynamodb": {"Keys": {"sk": {"S": ["CHUNK"]}}}}),
    );
    // No other table has one: a stream no function reads is a second copy
    // of every write a flood makes, for nobody.
    for (table, resource) in of_type(t, "AWS::DynamoDB::Table") {
        if !["FailuresTable", "AuditTable", "ImportsTable"].contains(&table.as_str()) {
            assert!(
                resource["Properties"]["StreamSpecification"].is_null(),
                "{table} has a stream that nothing reads"
            );
        }
    }
    // B14: a subject's events reach the CRM in order: one batch per shard
    // at a time.
    // B15: a block and its unblock reach Meta in order.
    for reader in ["change-events", "platform-block"] {
        let (_, events) = mapping_of(t, reader);
        let parallel = events["Properties"]["ParallelizationFactor"].as_i64();
        assert!(
            parallel.is_none_or(|p| p == 1),
            "{reader}: ParallelizationFactor 1, is {parallel:?}"
        );
    }
    // DynamoDB Streams serves two readers per shard without throttling.
    let audit_readers = of_type(t, "AWS::Lambda::EventSourceMapping")
        .into_iter()
        .filter(|(_, m)| resource_key(&m["Properties"]["EventSourceArn"]) == "AuditTable.StreamArn")
        .count();
    assert!(
        audit_readers <= 2,
        "{audit_readers} readers of the Audit stream"
    );
}

/// The one event source mapping that feeds `binary`.
fn mapping_of<'a>(t: &'a Value, binary: &str) -> (String, &'a Value) {
    let function = functions(t)
        .remove(binary)
        .unwrap_or_else(|| panic!("no {binary} function"));
    let mut mappings: Vec<(String, &Value)> = of_type(t, "AWS::Lambda::EventSourceMapping")
        .into_iter()
        .filter(|(_, m)| references(&m["Properties"]["FunctionName"]).contains(&function))
        .collect();
    assert_eq!(mappings.len(), 1, "one event source mapping feeds {binary}");
    mappings.remove(0)
}

/// `binary` reads `table`'s stream, filtered by `pattern`, reporting the
/// records that failed, bounded retries, then a dead-letter queue.
fn check_stream_reader(t: &Value, binary: &str, table: &str, pattern: serde_json::Value) {
    let function = functions(t)
        .remove(binary)
        .unwrap_or_else(|| panic!("no {binary} function"));
    let (id, mapping) = mapping_of(t, binary);
    let p = &mapping["Properties"];
    assert_eq!(
        resource_key(&p["EventSourceArn"]),
        format!("{table}.StreamArn"),
        "{id}: the {table} stream"
    );
    assert!(
        !t["Resources"][table]["Properties"]["StreamSpecification"]["StreamViewType"].is_null(),
        "the {table} table has a stream"
    );
    // B43: one bad record fails alone...
    assert!(
        list(&p["FunctionResponseTypes"])
            .iter()
            .any(|v| v.as_str() == Some("ReportBatchItemFailures")),
        "{id}: ReportBatchItemFailures"
    );
    assert_eq!(
        p["BisectBatchOnFunctionError"],
        Value::Bool(true),
        "{id}: bisect"
    );
    // ...a bounded number of times, then goes to the dead-letter queue.
    let retries = p["MaximumRetryAttempts"].as_i64();
    assert!(
        retries.is_some_and(|r| (0..=10).contains(&r)),
        "{id}: MaximumRetryAttempts bounded, is {retries:?}"
    );
    let age = p["MaximumRecordAgeInSeconds"].as_i64();
    assert!(
        age.is_some_and(|a| (60..=86_400).contains(&a)),
        "{id}: MaximumRecordAgeInSeconds bounded, is {age:?}"
    );
    let destination = &p["DestinationConfig"]["OnFailure"]["Destination"];
    let queue = references(destination)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{id}: no on-failure destination"));
    assert_eq!(
        t["Resources"][queue.as_str()]["Type"].as_str(),
        Some("AWS::SQS::Queue"),
        "{id}: the on-failure destination is a queue"
    );
    let granted = grants(t);
    let sends = granted[&function]
        .get(&format!("{queue}.Arn"))
        .is_some_and(|a| a.contains("sqs:sendmessage"));
    assert!(sends, "{binary} may send to {queue}");
    let reads = &granted[&function][&format!("{table}.StreamArn")];
    for action in [
        "dynamodb:describestream",
        "dynamodb:getrecords",
        "dynamodb:getsharditerator",
    ] {
        assert!(reads.contains(action), "{binary} may {action} the stream");
    }
    // Batches as the local poller delivers them.
    let batch = p["BatchSize"].as_i64();
    assert!(
        batch.is_some_and(|b| (1..=100).contains(&b)),
        "{id}: BatchSize, is {batch:?}"
    );
    let filters = list(&p["FilterCriteria"]["Filters"]);
    assert_eq!(filters.len(), 1, "{id}: one filter");
    let found: serde_json::Value =
        serde_json::from_str(filters[0]["Pattern"].as_str().expect("Pattern"))
            .expect("the filter pattern is JSON");
    assert_eq!(found, pattern, "{id}: the filter");
}

/// `pub const CLAIM_LEASE_SECONDS: i64 = <n>;` of the webhook's store.
fn claim_lease_seconds() -> i64 {
    let path = workspace_path("shared/src/store/claim.rs");
    let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    source
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("pub const CLAIM_LEASE_SECONDS: i64 =")
        })
        .and_then(|rest| rest.trim().trim_end_matches(';').parse().ok())
        .expect("CLAIM_LEASE_SECONDS in shared/src/store/claim.rs")
}

fn milliseconds(f: &Value, variable: &str) -> i64 {
    f["Properties"]["Environment"]["Variables"][variable]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{variable} is set to a number of milliseconds"))
}

#[test]
fn b26_b34_timeouts_leave_room_for_dependencies_and_fit_api_gateway() {
    check_b26_b34_timeouts_leave_room_for_dependencies_and_fit_api_gateway(&template());
}

fn check_b26_b34_timeouts_leave_room_for_dependencies_and_fit_api_gateway(t: &Value) {
    for (binary, id) in functions(t) {
        let f = &t["Resources"][id.as_str()];
        let timeout = effective(t, f, "Timeout").as_i64().expect("Timeout");
        let memory = effective(t, f, "MemorySize").as_i64().expect("MemorySize");
        assert!(
            (128..=10_240).contains(&memory),
            "{binary} MemorySize {memory}"
        );
        let behind_api = f["Properties"]["Events"]
            .as_mapping()
            .is_some_and(|e| e.values().any(|e| e["Type"].as_str() == Some("HttpApi")));
        if behind_api {
            // HTTP APIs wait 30 s at most for their integration.
            assert!(
                timeout < 30,
                "{binary}: Timeout {timeout} s behind an HTTP API"
            );
        }
    }
    let webhook = function(t, "webhook-ingress");
    let timeout = effective(t, webhook, "Timeout").as_i64().expect("Timeout") * 1000;
    assert!(
        milliseconds(webhook, "CRM_TIMEOUT_MS") < timeout,
        "the CRM call fits in webhook-ingress"
    );
    assert!(
        timeout < claim_lease_seconds() * 1000,
        "webhook-ingress ends before its idempotency claims' lease"
    );
    let proxy = function(t, "send-proxy");
    let timeout = effective(t, proxy, "Timeout").as_i64().expect("Timeout") * 1000;
    assert!(
        milliseconds(proxy, "GRAPH_TIMEOUT_MS") + 1000 <= timeout,
        "a slow Graph gets a 504 from send-proxy, not a function timeout"
    );
}

#[test]
fn b13_block_expiry_sweeps_every_minute_through_a_sparse_expiry_index() {
    check_b13_block_expiry_sweeps_every_minute_through_a_sparse_expiry_index(&template());
}

/// B13: a block is gone within two minutes of its end, so the sweep runs
/// at least every minute, and finds due blocks through an index whose
/// sort key is the end (never a Scan).
fn check_b13_block_expiry_sweeps_every_minute_through_a_sparse_expiry_index(t: &Value) {
    check_schedule(t, "block-expiry", "rate(1 minute)");
    // B15: the retry sweep of platform-block (failed unblocks) reads the
    // same index, under its own partition keys.
    check_schedule(t, "platform-block", "rate(5 minutes)");
    let platform = functions(t)["platform-block"].clone();
    assert!(
        grants(t)[&platform]["BlocklistTable.Arn/index/gsi2"].contains("dynamodb:query"),
        "platform-block queries the retry index"
    );

    let table = &resources(t)["BlocklistTable"]["Properties"];
    let index = table["GlobalSecondaryIndexes"]
        .as_sequence()
        .and_then(|all| all.iter().find(|i| i["IndexName"] == "gsi2"))
        .expect("the expiry index gsi2 on the Blocklist table");
    let keys: Vec<(&str, &str)> = index["KeySchema"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().unwrap(),
                k["KeyType"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(keys, [("gsi2pk", "HASH"), ("gsi2sk", "RANGE")]);
    let grants = grants(t);
    let expiry = functions(t)["block-expiry"].clone();
    assert!(
        grants[&expiry]["BlocklistTable.Arn/index/gsi2"].contains("dynamodb:query"),
        "block-expiry queries the expiry index"
    );
}

/// `binary` runs on one enabled schedule, `rate`, not retried (the next
/// run finds what a failed one left).
fn check_schedule(t: &Value, binary: &str, rate: &str) {
    let sweep = function(t, binary);
    let events = sweep["Properties"]["Events"]
        .as_mapping()
        .unwrap_or_else(|| panic!("{binary} has events"));
    let schedules: Vec<&Value> = events
        .values()
        .filter(|e| e["Type"] == "Schedule" || e["Type"] == "ScheduleV2")
        .collect();
    let rates: Vec<&str> = schedules
        .iter()
        .filter_map(|e| {
            e["Properties"]["Schedule"]
                .as_str()
                .or_else(|| e["Properties"]["ScheduleExpression"].as_str())
        })
        .collect();
    assert_eq!(rates, [rate], "{binary}'s schedule");
    for schedule in schedules {
        let p = &schedule["Properties"];
        assert!(
            p["Enabled"] != false && p["State"] != "DISABLED",
            "{binary}'s schedule is enabled"
        );
        assert_eq!(
            p["RetryPolicy"]["MaximumRetryAttempts"].as_i64(),
            Some(0),
            "{binary}'s schedule is not retried"
        );
    }
}

#[test]
fn b52_functions_log_structured_json() {
    check_b52_functions_log_structured_json(&template());
}

fn check_b52_functions_log_structured_json(t: &Value) {
    for (binary, id) in functions(t) {
        let f = &t["Resources"][id.as_str()];
        let logging = effective(t, f, "LoggingConfig");
        assert_eq!(logging["LogFormat"].as_str(), Some("JSON"), "{binary}");
        assert_eq!(
            logging["ApplicationLogLevel"].as_str(),
            Some("INFO"),
            "{binary}"
        );
        assert_eq!(logging["SystemLogLevel"].as_str(), Some("WARN"), "{binary}");
    }
}

// Each check above fails when the template regresses: the regressions
// below are applied to the parsed template (the file is not touched) and
// every one of them must make its check fail.

type Check = fn(&Value);

/// A change to the template. Paths name mapping keys and list positions;
/// in a list of policy statements, a name is a statement's `Sid`.
enum Edit {
    Set(&'static str, &'static str),
    Remove(&'static str),
    Push(&'static str, &'static str),
}
use Edit::{Push, Remove, Set};

const B53: Check = check_b53_no_function_can_update_or_delete_audit_items;
const WILDCARDS: Check = check_least_privilege_no_wildcard_actions_or_resources;
const EXACT: Check =
    check_least_privilege_each_function_is_granted_exactly_the_calls_its_code_makes;
const BUILD: Check = check_every_function_is_arm64_provided_al2023_built_with_cargo_lambda;
const TABLES: Check = check_tables_have_pitr_deletion_protection_retain_and_encryption;
const ALARMS: Check = check_every_function_has_error_and_throttle_alarms;
const WATCH: Check = check_alarms_watch_the_dead_letter_queue_and_api_5xx;
const SECRETS: Check = check_secrets_come_from_secrets_manager_not_parameters;
const STREAM: Check = check_wa_blocked_stream_reports_batch_item_failures_with_dlq;
const TIMEOUTS: Check = check_b26_b34_timeouts_leave_room_for_dependencies_and_fit_api_gateway;
const LOGS: Check = check_b52_functions_log_structured_json;
const EXPIRY: Check = check_b13_block_expiry_sweeps_every_minute_through_a_sparse_expiry_index;

const BLOCK_API: &str = "Resources/BlockApiFunction/Properties/Policies/0/Statement";
const PROXY: &str = "Resources/SendProxyFunction/Properties/Policies/0/Statement";
const WA_BLOCKED: &str = "Resources/WaBlockedFunction/Properties/Policies/0/Statement";

const REGRESSIONS: &[(&str, Check, Edit)] = &[
    (
        "change events in parallel per shard",
        STREAM,
        Set(
            "Resources/ChangeEventsFromAudit/Properties/ParallelizationFactor",
            "4",
        ),
    ),
    (
        "change events retried without end",
        STREAM,
        Set(
            "Resources/ChangeEventsFromAudit/Properties/MaximumRetryAttempts",
            "-1",
        ),
    ),
    (
        "change events without a dead-letter queue",
        STREAM,
        Remove("Resources/ChangeEventsFromAudit/Properties/DestinationConfig"),
    ),
    (
        "change-events calls the Blocklist table",
        EXACT,
        Push(
            "Resources/ChangeEventsFunction/Properties/Policies/0/Statement",
            "{Effect: Allow, Action: dynamodb:GetItem, Resource: !GetAtt BlocklistTable.Arn}",
        ),
    ),
    (
        "the expiry sweep runs hourly",
        EXPIRY,
        Set(
            "Resources/BlockExpiryFunction/Properties/Events/EveryMinute/Properties/Schedule",
            "rate(1 hour)",
        ),
    ),
    (
        "the expiry sweep is disabled",
        EXPIRY,
        Set(
            "Resources/BlockExpiryFunction/Properties/Events/EveryMinute/Properties/Enabled",
            "false",
        ),
    ),
    (
        "the expiry sweep has no schedule",
        EXPIRY,
        Remove("Resources/BlockExpiryFunction/Properties/Events/EveryMinute"),
    ),
    (
        "the expiry index is gone",
        EXPIRY,
        Set(
            "Resources/BlocklistTable/Properties/GlobalSecondaryIndexes/1/IndexName",
            "gsi9",
        ),
    ),
    (
        "block-expiry has no alarm on its errors",
        ALARMS,
        Remove("Resources/BlockExpiryErrorsAlarm"),
    ),
    (
        "webhook-ingress may UpdateItem audit items",
        B53,
        Set(
            "Resources/WebhookIngressFunction/Properties/Policies/0/Statement/AuditAppend/Action",
            "[dynamodb:PutItem, dynamodb:UpdateItem]",
        ),
    ),
    (
        "block-api may deleteitem (lower case) on the audit index",
        B53,
        Set(
            "Resources/BlockApiFunction/Properties/Policies/0/Statement/AuditIndex/Action",
            "[dynamodb:Query, dynamodb:deleteitem]",
        ),
    ),
    (
        "send-proxy gets dynamodb:* on the audit table",
        B53,
        Push(
            PROXY,
            "{Effect: Allow, Action: 'dynamodb:*', Resource: !GetAtt AuditTable.Arn}",
        ),
    ),
    (
        "wa-blocked may BatchWriteItem on every table",
        B53,
        Push(
            WA_BLOCKED,
            "{Effect: Allow, Action: dynamodb:BatchWriteItem, Resource: 'arn:aws:dynamodb:*:*:table/*'}",
        ),
    ),
    (
        "wa-blocked may PartiQLDelete on the audit table",
        B53,
        Push(
            WA_BLOCKED,
            "{Effect: Allow, Action: dynamodb:PartiQLDelete, Resource: !Sub '${AuditTable.Arn}'}",
        ),
    ),
    (
        "webhook-ingress gets SAM's CRUD policy on the audit table",
        B53,
        Push(
            "Resources/WebhookIngressFunction/Properties/Policies",
            "{DynamoDBCrudPolicy: {TableName: !Ref AuditTable}}",
        ),
    ),
    (
        "block-api gets everything but PutItem on the audit table",
        B53,
        Push(
            BLOCK_API,
            "{Effect: Allow, NotAction: dynamodb:PutItem, Resource: !GetAtt AuditTable.Arn}",
        ),
    ),
    (
        "send-proxy may dynamodb:Get*",
        WILDCARDS,
        Set(
            "Resources/SendProxyFunction/Properties/Policies/0/Statement/Blocklist/Action",
            "dynamodb:Get*",
        ),
    ),
    (
        "send-proxy updates chats on Resource *",
        WILDCARDS,
        Set(
            "Resources/SendProxyFunction/Properties/Policies/0/Statement/Chats/Resource",
            "'*'",
        ),
    ),
    (
        "block-api queries every index",
        WILDCARDS,
        Set(
            "Resources/BlockApiFunction/Properties/Policies/0/Statement/BlocklistIndex/Resource",
            "!Sub '${BlocklistTable.Arn}/index/*'",
        ),
    ),
    (
        "block-api gets a managed policy",
        WILDCARDS,
        Push(
            "Resources/BlockApiFunction/Properties/Policies",
            "AmazonDynamoDBReadOnlyAccess",
        ),
    ),
    (
        "webhook-ingress names a table by literal ARN",
        WILDCARDS,
        Set(
            "Resources/WebhookIngressFunction/Properties/Policies/0/Statement/Chats/Resource",
            "arn:aws:dynamodb:us-east-1:123456789012:table/Chats",
        ),
    ),
    (
        "wa-blocked publishes to a parameter's topic",
        WILDCARDS,
        Push(
            WA_BLOCKED,
            "{Effect: Allow, Action: sns:Publish, Resource: !Ref AlarmTopicArn}",
        ),
    ),
    (
        "send-proxy gains GetItem it never calls",
        EXACT,
        Set(
            "Resources/SendProxyFunction/Properties/Policies/0/Statement/Blocklist/Action",
            "[dynamodb:BatchGetItem, dynamodb:GetItem, dynamodb:UpdateItem]",
        ),
    ),
    (
        "block-api loses DeleteItem, which unblocks need",
        EXACT,
        Set(
            "Resources/BlockApiFunction/Properties/Policies/0/Statement/Blocklist/Action",
            "[dynamodb:Query, dynamodb:GetItem, dynamodb:BatchGetItem, dynamodb:PutItem, dynamodb:UpdateItem]",
        ),
    ),
    (
        "webhook-ingress may query the audit index it never reads",
        EXACT,
        Push(
            "Resources/WebhookIngressFunction/Properties/Policies/0/Statement",
            "{Effect: Allow, Action: dynamodb:Query, Resource: !Sub '${AuditTable.Arn}/index/gsi1'}",
        ),
    ),
    (
        "send-proxy may send to the dead-letter queue",
        EXACT,
        Push(
            PROXY,
            "{Effect: Allow, Action: sqs:SendMessage, Resource: !GetAtt WaBlockedDeadLetterQueue.Arn}",
        ),
    ),
    (
        "wa-blocked loses Query on chats",
        EXACT,
        Set(
            "Resources/WaBlockedFunction/Properties/Policies/0/Statement/Chats/Action",
            "dynamodb:UpdateItem",
        ),
    ),
    (
        "webhook-ingress writes audit items on the index too",
        EXACT,
        Set(
            "Resources/WebhookIngressFunction/Properties/Policies/0/Statement/AuditAppend/Resource",
            "[!GetAtt AuditTable.Arn, !Sub '${AuditTable.Arn}/index/gsi1']",
        ),
    ),
    (
        "x86_64 everywhere",
        BUILD,
        Set("Globals/Function/Architectures", "[x86_64]"),
    ),
    (
        "send-proxy on provided.al2",
        BUILD,
        Set(
            "Resources/SendProxyFunction/Properties/Runtime",
            "provided.al2",
        ),
    ),
    (
        "wa-blocked built with make",
        BUILD,
        Set(
            "Resources/WaBlockedFunction/Metadata/BuildMethod",
            "makefile",
        ),
    ),
    (
        "block-api built from a binary that does not exist",
        BUILD,
        Set(
            "Resources/BlockApiFunction/Metadata/BuildProperties/Binary",
            "block-apis",
        ),
    ),
    (
        "handler is not bootstrap",
        BUILD,
        Set("Globals/Function/Handler", "main"),
    ),
    (
        "wa-blocked removed",
        BUILD,
        Remove("Resources/WaBlockedFunction"),
    ),
    (
        "chats without point-in-time recovery",
        TABLES,
        Set(
            "Resources/ChatsTable/Properties/PointInTimeRecoverySpecification/PointInTimeRecoveryEnabled",
            "false",
        ),
    ),
    (
        "audit deleted with the stack",
        TABLES,
        Set("Resources/AuditTable/DeletionPolicy", "Delete"),
    ),
    (
        "blocklist replaced on update",
        TABLES,
        Remove("Resources/BlocklistTable/UpdateReplacePolicy"),
    ),
    (
        "audit without encryption setting",
        TABLES,
        Remove("Resources/AuditTable/Properties/SSESpecification"),
    ),
    (
        "chats without deletion protection",
        TABLES,
        Set(
            "Resources/ChatsTable/Properties/DeletionProtectionEnabled",
            "false",
        ),
    ),
    (
        "blocklist TTL off",
        TABLES,
        Set(
            "Resources/BlocklistTable/Properties/TimeToLiveSpecification/Enabled",
            "false",
        ),
    ),
    (
        "no throttle alarm for wa-blocked",
        ALARMS,
        Remove("Resources/WaBlockedThrottlesAlarm"),
    ),
    (
        "block-api errors alarm only from 5 errors",
        ALARMS,
        Set("Resources/BlockApiErrorsAlarm/Properties/Threshold", "5"),
    ),
    (
        "send-proxy errors alarm watches block-api",
        ALARMS,
        Set(
            "Resources/SendProxyErrorsAlarm/Properties/Dimensions",
            "[{Name: FunctionName, Value: !Ref BlockApiFunction}]",
        ),
    ),
    (
        "webhook-ingress errors alarm notifies nobody",
        ALARMS,
        Remove("Resources/WebhookIngressErrorsAlarm/Properties/AlarmActions"),
    ),
    (
        "no dead-letter queue alarm",
        WATCH,
        Remove("Resources/WaBlockedDeadLetterQueueAlarm"),
    ),
    (
        "dead-letter alarm on messages sent",
        WATCH,
        Set(
            "Resources/WaBlockedDeadLetterQueueAlarm/Properties/MetricName",
            "NumberOfMessagesSent",
        ),
    ),
    ("no API 5xx alarm", WATCH, Remove("Resources/Api5xxAlarm")),
    (
        "the app secret as a parameter",
        SECRETS,
        Set(
            "Parameters/WhatsappAppSecret",
            "{Type: String, NoEcho: true}",
        ),
    ),
    (
        "the access token in plain text",
        SECRETS,
        Set(
            "Resources/SendProxyFunction/Properties/Environment/Variables/WHATSAPP_ACCESS_TOKEN",
            "EAAGplain",
        ),
    ),
    (
        "the verify token from a parameter",
        SECRETS,
        Set(
            "Resources/WebhookIngressFunction/Properties/Environment/Variables/WHATSAPP_VERIFY_TOKEN",
            "!Ref SecretsName",
        ),
    ),
    (
        "the CRM secret resolved from the wrong key",
        SECRETS,
        Set(
            "Resources/WebhookIngressFunction/Properties/Environment/Variables/CRM_WEBHOOK_SECRET",
            "!Sub '{{resolve:secretsmanager:${SecretsName}:SecretString:app_secret}}'",
        ),
    ),
    (
        "the app secret from SSM",
        SECRETS,
        Set(
            "Resources/WebhookIngressFunction/Properties/Environment/Variables/WHATSAPP_APP_SECRET",
            "'{{resolve:ssm:/wa/app_secret}}'",
        ),
    ),
    (
        "local HS256 tokens accepted on AWS",
        SECRETS,
        Set(
            "Globals/Function/Environment/Variables/LOCAL_JWT_SECRET",
            "x",
        ),
    ),
    (
        "whole batches fail",
        STREAM,
        Remove("Resources/WaBlockedDeliveryFailures/Properties/FunctionResponseTypes"),
    ),
    (
        "failing batches not bisected",
        STREAM,
        Set(
            "Resources/WaBlockedDeliveryFailures/Properties/BisectBatchOnFunctionError",
            "false",
        ),
    ),
    (
        "records retried forever",
        STREAM,
        Set(
            "Resources/WaBlockedDeliveryFailures/Properties/MaximumRetryAttempts",
            "-1",
        ),
    ),
    (
        "no dead-letter queue",
        STREAM,
        Remove("Resources/WaBlockedDeliveryFailures/Properties/DestinationConfig"),
    ),
    (
        "wa-blocked may not send to its dead-letter queue",
        STREAM,
        Set(
            "Resources/WaBlockedFunction/Properties/Policies/0/Statement/DeadLetterQueue/Action",
            "sqs:GetQueueUrl",
        ),
    ),
    (
        "every modified item invokes wa-blocked",
        STREAM,
        Set(
            "Resources/WaBlockedDeliveryFailures/Properties/FilterCriteria/Filters/0/Pattern",
            r#"'{"eventName": ["INSERT", "MODIFY"]}'"#,
        ),
    ),
    (
        "wa-blocked reads the chats stream",
        STREAM,
        Set(
            "Resources/WaBlockedDeliveryFailures/Properties/EventSourceArn",
            "!GetAtt ChatsTable.StreamArn",
        ),
    ),
    (
        "the Blocklist table keeps a stream nobody reads",
        STREAM,
        Set(
            "Resources/BlocklistTable/Properties/StreamSpecification",
            "{ StreamViewType: NEW_IMAGE }",
        ),
    ),
    (
        "failures expire no more",
        TABLES,
        Remove("Resources/FailuresTable/Properties/TimeToLiveSpecification"),
    ),
    (
        "nothing feeds wa-blocked",
        STREAM,
        Remove("Resources/WaBlockedDeliveryFailures"),
    ),
    (
        "webhook-ingress outlives its claims and the API",
        TIMEOUTS,
        Set("Resources/WebhookIngressFunction/Properties/Timeout", "60"),
    ),
    (
        "send-proxy times out before Graph",
        TIMEOUTS,
        Set("Resources/SendProxyFunction/Properties/Timeout", "8"),
    ),
    (
        "block-api outlives the API",
        TIMEOUTS,
        Set("Resources/BlockApiFunction/Properties/Timeout", "30"),
    ),
    (
        "the CRM may take longer than the function",
        TIMEOUTS,
        Set(
            "Resources/WebhookIngressFunction/Properties/Environment/Variables/CRM_TIMEOUT_MS",
            "'30000'",
        ),
    ),
    (
        "Graph timeout left to the default",
        TIMEOUTS,
        Remove("Resources/SendProxyFunction/Properties/Environment/Variables/GRAPH_TIMEOUT_MS"),
    ),
    (
        "text logs",
        LOGS,
        Set("Globals/Function/LoggingConfig/LogFormat", "Text"),
    ),
    (
        "debug logs",
        LOGS,
        Set(
            "Globals/Function/LoggingConfig/ApplicationLogLevel",
            "DEBUG",
        ),
    ),
    (
        "no logging config",
        LOGS,
        Remove("Globals/Function/LoggingConfig"),
    ),
];

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The value at `path`; a missing mapping key is created.
fn at<'a>(t: &'a mut Value, path: &str) -> &'a mut Value {
    path.split('/').fold(t, |v, key| {
        if let Ok(i) = key.parse::<usize>() {
            return &mut v[i];
        }
        match v {
            Value::Sequence(items) => items
                .iter_mut()
                .find(|s| s["Sid"].as_str() == Some(key))
                .unwrap_or_else(|| panic!("no statement {key} in {path}")),
            v => &mut v[key],
        }
    })
}

impl Edit {
    fn apply(&self, t: &mut Value) {
        match self {
            Set(path, value) => *at(t, path) = yaml(value),
            Remove(path) => {
                let (parent, key) = path.rsplit_once('/').expect("a path with a parent");
                at(t, parent)
                    .as_mapping_mut()
                    .unwrap_or_else(|| panic!("{parent} is not a mapping"))
                    .remove(key)
                    .unwrap_or_else(|| panic!("nothing at {path}"));
            }
            Push(path, item) => at(t, path)
                .as_sequence_mut()
                .unwrap_or_else(|| panic!("{path} is not a list"))
                .push(yaml(item)),
        }
    }
}

#[test]
fn every_check_fails_on_a_regressed_template() {
    let original = template();
    // Outside the catch: a recorded path that fails fails the test.
    calls::recorded();
    let mut missed = Vec::new();
    for (what, check, edit) in REGRESSIONS {
        let mut t = original.clone();
        // Outside the catch: an edit that no longer applies fails the test.
        edit.apply(&mut t);
        let caught = std::panic::catch_unwind(|| check(&t)).is_err();
        if !caught {
            missed.push(*what);
        }
    }
    assert!(
        missed.is_empty(),
        "regressions the checks let through: {missed:#?}"
    );
}
