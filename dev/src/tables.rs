//! DynamoDB tables from `template.yaml`, so code, tests and the local stack
//! use exactly the keys and indexes that production gets.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use blocklist::store::Tables;

/// The template at the root of the workspace.
pub fn template_text() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The `AWS::DynamoDB::Table` resources of a template: logical id and
/// `Properties`.
pub fn table_resources(template: &str) -> Result<Vec<(String, serde_yaml::Value)>, String> {
    let template: serde_yaml::Value =
        serde_yaml::from_str(template).map_err(|e| format!("template.yaml: {e}"))?;
    let resources = template["Resources"]
        .as_mapping()
        .ok_or("template.yaml has no Resources")?;
    Ok(resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::DynamoDB::Table"))
        .map(|(id, r)| {
            (
                id.as_str().unwrap_or_default().to_owned(),
                r["Properties"].clone(),
            )
        })
        .collect())
}

/// The table name of each logical id, e.g. `BlocklistTable` → `Blocklist`
/// with an empty prefix, `<prefix>-BlocklistTable` otherwise.
pub fn table_names(prefix: Option<&str>) -> Tables {
    let name = |logical: &str, plain: &str| match prefix {
        Some(prefix) => format!("{prefix}-{logical}"),
        None => plain.to_owned(),
    };
    Tables {
        blocklist: name("BlocklistTable", "Blocklist"),
        audit: name("AuditTable", "Audit"),
        chats: name("ChatsTable", "Chats"),
        failures: name("FailuresTable", "Failures"),
        imports: name("ImportsTable", "Imports"),
        messages: name("MessagesTable", "Messages"),
    }
}

/// Creates the template's tables under the names in `tables`; tables that
/// already exist are left as they are (data kept between runs).
pub async fn create_tables(client: &Client, template: &str, tables: &Tables) -> Result<(), String> {
    let names: HashMap<&str, &str> = [
        ("BlocklistTable", tables.blocklist.as_str()),
        ("AuditTable", tables.audit.as_str()),
        ("ChatsTable", tables.chats.as_str()),
        ("FailuresTable", tables.failures.as_str()),
        ("ImportsTable", tables.imports.as_str()),
        ("MessagesTable", tables.messages.as_str()),
    ]
    .into_iter()
    .collect();
    for (logical_id, properties) in table_resources(template)? {
        let Some(name) = names.get(logical_id.as_str()) else {
            return Err(format!(
                "template table {logical_id} has no configured name"
            ));
        };
        let mut request = client
            .create_table()
            .table_name(*name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_key_schema(Some(key_schema(&properties["KeySchema"])?));
        for attribute in properties["AttributeDefinitions"]
            .as_sequence()
            .ok_or("no AttributeDefinitions")?
        {
            request = request.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attribute["AttributeName"].as_str().ok_or("AttributeName")?)
                    .attribute_type(ScalarAttributeType::from(
                        attribute["AttributeType"].as_str().ok_or("AttributeType")?,
                    ))
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        for index in properties["GlobalSecondaryIndexes"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            request = request.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(index["IndexName"].as_str().ok_or("IndexName")?)
                    .set_key_schema(Some(key_schema(&index["KeySchema"])?))
                    .projection(projection(&index["Projection"])?)
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        if let Some(view) = properties["StreamSpecification"]["StreamViewType"].as_str() {
            request = request.stream_specification(
                aws_sdk_dynamodb::types::StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::from(view))
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        match request.send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => {
                return Err(format!(
                    "create table {name}: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(e)
                ));
            }
        }
    }
    Ok(())
}

/// An index's `Projection`: its type and any `NonKeyAttributes`.
fn projection(value: &serde_yaml::Value) -> Result<Projection, String> {
    let kind = value["ProjectionType"]
        .as_str()
        .ok_or("Projection needs a ProjectionType")?;
    let attributes = value["NonKeyAttributes"].as_sequence().map(|names| {
        names
            .iter()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect()
    });
    Ok(Projection::builder()
        .projection_type(ProjectionType::from(kind))
        .set_non_key_attributes(attributes)
        .build())
}

fn key_schema(value: &serde_yaml::Value) -> Result<Vec<KeySchemaElement>, String> {
    value
        .as_sequence()
        .ok_or("KeySchema")?
        .iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(k["AttributeName"].as_str().ok_or("AttributeName")?)
                .key_type(KeyType::from(k["KeyType"].as_str().ok_or("KeyType")?))
                .build()
                .map_err(|e| e.to_string())
        })
        .collect()
}
