use serde::{Deserialize, Serialize};

/// The per-day counters of B9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatCounter {
    Blocked,
    Unblocked,
    AutoBlocked,
    /// A temporary block reached its end (B13).
    Expired,
    InboundSuppressed,
    OutboundRefused,
    /// A customer opted out (B80).
    OptedOut,
    /// A customer opted back in (B80).
    OptedIn,
    /// A block was reviewed (B16), kept or unblocked.
    Reviewed,
}

impl StatCounter {
    pub fn attribute(self) -> &'static str {
        match self {
            StatCounter::Blocked => "blocked",
            StatCounter::Unblocked => "unblocked",
            StatCounter::AutoBlocked => "auto_blocked",
            StatCounter::Expired => "expired",
            StatCounter::InboundSuppressed => "inbound_suppressed",
            StatCounter::OutboundRefused => "outbound_refused",
            StatCounter::OptedOut => "opted_out",
            StatCounter::OptedIn => "opted_in",
            StatCounter::Reviewed => "reviewed",
        }
    }
}

/// Stored shards hold only the counters that were ever added to, so a
/// missing counter reads as 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DayStats {
    pub date: String,
    pub blocked: u64,
    pub unblocked: u64,
    pub auto_blocked: u64,
    pub expired: u64,
    pub inbound_suppressed: u64,
    pub outbound_refused: u64,
    pub opted_out: u64,
    pub opted_in: u64,
    pub reviewed: u64,
}

impl DayStats {
    pub fn add(&mut self, other: &DayStats) {
        self.blocked += other.blocked;
        self.unblocked += other.unblocked;
        self.auto_blocked += other.auto_blocked;
        self.expired += other.expired;
        self.inbound_suppressed += other.inbound_suppressed;
        self.outbound_refused += other.outbound_refused;
        self.opted_out += other.opted_out;
        self.opted_in += other.opted_in;
        self.reviewed += other.reviewed;
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub days: Vec<DayStats>,
    pub currently_blocked: u64,
}
