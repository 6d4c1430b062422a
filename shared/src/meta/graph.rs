//! The Graph API calls the product makes: the messages endpoint
//! (`POST /{version}/{phone_number_id}/messages`) for the send proxy, and
//! the Block Users API (`POST`/`DELETE /{version}/{phone_number_id}/block_users`)
//! for the platform block (B15).

use std::time::Duration;

use crate::model::PhoneNumberId;

/// A client of one Graph API version with one access token; build once at
/// init. It follows no redirects: a send goes to Graph's endpoint or
/// nowhere.
#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    base_url: String,
    version: String,
    access_token: String,
}

impl std::fmt::Debug for GraphClient {
    // The access token never reaches logs (B52).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("base_url", &crate::redact::url(&self.base_url))
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Graph's answer, as it came: the proxy passes it on (B30).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    /// Empty when the body could not be read.
    pub body: Vec<u8>,
}

/// Why there is no answer. Neither is retried: the send may have gone out.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("the Graph API did not answer in time")]
    Timeout,
    /// The message leaves out the URL.
    #[error("the Graph API could not be reached: {0}")]
    Unreachable(String),
}

impl GraphClient {
    /// `base_url` without a trailing slash; `timeout` covers the whole
    /// exchange, body included.
    pub fn new(
        base_url: &str,
        version: &str,
        access_token: &str,
        timeout: Duration,
    ) -> Result<GraphClient, reqwest::Error> {
        let http = crate::config::https_post_client(timeout)?;
        Ok(GraphClient {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            version: version.to_owned(),
            access_token: access_token.to_owned(),
        })
    }

    /// Sends `body` (a Graph messages body, unchanged) from `business`.
    pub async fn send_message(
        &self,
        business: &PhoneNumberId,
        body: Vec<u8>,
    ) -> Result<GraphAnswer, GraphError> {
        self.call(reqwest::Method::POST, business, "messages", body)
            .await
    }

    /// A Block Users request (B15): `block` is `POST` (block the users of
    /// `body`), otherwise `DELETE` (unblock them).
    pub async fn block_users(
        &self,
        business: &PhoneNumberId,
        block: bool,
        body: &serde_json::Value,
    ) -> Result<GraphAnswer, GraphError> {
        let method = if block {
            reqwest::Method::POST
        } else {
            reqwest::Method::DELETE
        };
        let body = serde_json::to_vec(body).unwrap_or_default();
        self.call(method, business, "block_users", body).await
    }

    /// B83: the category (`MARKETING`, `UTILITY`, `AUTHENTICATION`) of the
    /// message template `name` in `language` of the WhatsApp Business
    /// Account `account` (`GET /{account}/message_templates?name=`);
    /// `None` when the account has no such template.
    pub async fn template_category(
        &self,
        account: &str,
        name: &str,
        language: &str,
    ) -> Result<Option<String>, GraphError> {
        let encoded =
            percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
        let url = format!(
            "{}/{}/{}/message_templates?name={encoded}&fields=name,language,category",
            self.base_url, self.version, account
        );
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.access_token)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.map_err(transport_error)?;
        if !(200..300).contains(&status) {
            return Err(GraphError::Unreachable(format!(
                "the template lookup answered {status}"
            )));
        }
        let templates = body["data"].as_array().cloned().unwrap_or_default();
        let named: Vec<&serde_json::Value> =
            templates.iter().filter(|t| t["name"] == name).collect();
        // Another language's category is not this one's.
        let chosen = named.iter().find(|t| t["language"] == language);
        Ok(chosen
            .and_then(|t| t["category"].as_str())
            .map(str::to_uppercase))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        business: &PhoneNumberId,
        edge: &str,
        body: Vec<u8>,
    ) -> Result<GraphAnswer, GraphError> {
        let url = format!("{}/{}/{}/{edge}", self.base_url, self.version, business);
        let response = self
            .http
            .request(method, &url)
            .bearer_auth(&self.access_token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = match response.bytes().await {
            Ok(bytes) => bytes.to_vec(),
            Err(error) if error.is_timeout() => return Err(GraphError::Timeout),
            Err(_) => Vec::new(),
        };
        Ok(GraphAnswer {
            status,
            content_type,
            body,
        })
    }
}

/// A request that got no answer. reqwest's message names the URL: left
/// out.
fn transport_error(error: reqwest::Error) -> GraphError {
    if error.is_timeout() {
        GraphError::Timeout
    } else {
        GraphError::Unreachable(crate::redact::error(&error.without_url()))
    }
}
