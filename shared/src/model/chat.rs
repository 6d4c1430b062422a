use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{PhoneNumberId, time_format};
use crate::identity::{Subject, subject_fields};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatStatus {
    Active,
    Blocked,
}

impl ChatStatus {
    pub const ALL: [ChatStatus; 2] = [ChatStatus::Active, ChatStatus::Blocked];

    pub fn as_str(self) -> &'static str {
        match self {
            ChatStatus::Active => "active",
            ChatStatus::Blocked => "blocked",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(ChatStatus::Active),
            "blocked" => Some(ChatStatus::Blocked),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Open,
    Closed,
    Cancelled,
}

/// One conversation: a business number and a customer number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chat {
    pub phone_number_id: PhoneNumberId,
    #[serde(flatten, with = "subject_fields")]
    pub subject: Subject,
    pub status: ChatStatus,
    pub session_status: Option<SessionStatus>,
    #[serde(with = "time_format::option", default)]
    pub last_inbound_at: Option<DateTime<Utc>>,
    #[serde(with = "time_format::option", default)]
    pub last_outbound_at: Option<DateTime<Utc>>,
    pub known_contact: bool,
}
