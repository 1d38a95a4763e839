//! dynalite, a real implementation of the DynamoDB API (npm, pinned in tests/dynalite), on
//! 127.0.0.1 for the checkpoint-store tests.

use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus,
};

use super::node_server::NodeServer;

/// A running dynalite (see [`NodeServer`]).
pub struct Dynalite {
    server: NodeServer,
}

impl Dynalite {
    /// Starts dynalite on a free port of 127.0.0.1.
    pub fn start() -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/dynalite");
        Self {
            server: NodeServer::start(&dir, "dynalite"),
        }
    }

    /// Its endpoint URL.
    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    /// A client with the dummy credentials the tests give the binary too.
    pub fn client(&self) -> Client {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("local", "local", None, None, "tests"))
            .build();
        Client::from_conf(config)
    }

    /// Creates the checkpoint table `name` (string partition key `pipeline`) and waits
    /// until it is active.
    pub async fn create_checkpoint_table(&self, name: &str) {
        let client = self.client();
        client
            .create_table()
            .table_name(name)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pipeline")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pipeline")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .unwrap();
        for _ in 0..500 {
            let table = client
                .describe_table()
                .table_name(name)
                .send()
                .await
                .unwrap();
            if table.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the table {name} never became active");
    }

    /// The checkpoint item of `pipeline` in `table`, attribute by attribute (strings and
    /// numbers as text).
    pub async fn item(&self, table: &str, pipeline: &str) -> Option<Vec<(String, String)>> {
        let output = self
            .client()
            .get_item()
            .table_name(table)
            .key("pipeline", AttributeValue::S(pipeline.to_string()))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        output.item.map(|item| {
            let mut fields: Vec<(String, String)> = item
                .into_iter()
                .map(|(name, value)| {
                    let text = match value {
                        AttributeValue::S(s) | AttributeValue::N(s) => s,
                        other => format!("{other:?}"),
                    };
                    (name, text)
                })
                .collect();
            fields.sort();
            fields
        })
    }
}

/// One attribute of an item read by [`Dynalite::item`].
pub fn field<'a>(item: &'a [(String, String)], name: &str) -> Option<&'a str> {
    item.iter()
        .find(|(n, _)| n == name)
        .map(|(_, value)| value.as_str())
}
