//! Runs the scheduled sweeps on a timer, as the template's schedules do in
//! AWS: `block-expiry` every minute (B13) and `platform-block`'s retry
//! sweep every 5 minutes (B15). `DEV_SWEEP_SECONDS` sets the period of
//! both (tests and demos use a shorter one).

use std::sync::Arc;
use std::time::Duration;

use blocklist::config::Env;
use tracing::Instrument;

use crate::server::Stack;

/// The template's schedule.
const DEFAULT_EVERY: Duration = Duration::from_secs(60);

/// The sweep period: `DEV_SWEEP_SECONDS` (1 to 3600), else a minute.
pub fn every(env: &Env) -> Result<Duration, String> {
    match env.optional("DEV_SWEEP_SECONDS") {
        None => Ok(DEFAULT_EVERY),
        Some(raw) => match raw.parse::<u64>() {
            Ok(seconds @ 1..=3600) => Ok(Duration::from_secs(seconds)),
            _ => Err(format!(
                "DEV_SWEEP_SECONDS must be a whole number of seconds from 1 to 3600, not {raw:?}"
            )),
        },
    }
}

/// Runs until the task is dropped. A failed sweep is logged; the next one
/// finds the same due blocks, as in AWS.
pub async fn run(stack: Arc<Stack>, every: Duration) {
    let mut timer = tokio::time::interval(every);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        timer.tick().await;
        let span = tracing::info_span!("invocation", function = "block-expiry");
        if let Err(error) = block_expiry::sweep(&stack.block_expiry)
            .instrument(span)
            .await
        {
            tracing::error!(error = %error, "expiry sweep failed");
        }
        let span = tracing::info_span!("invocation", function = "platform-block");
        if let Err(error) = platform_block::sweep(&stack.platform_block)
            .instrument(span)
            .await
        {
            tracing::error!(error = %error, "platform retry sweep failed");
        }
    }
}
