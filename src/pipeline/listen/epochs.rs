//! When open Listen streams look again: one task per pipeline watches the
//! policy table's epoch, the catalog index's generation and the grants'
//! generation and tells every stream at once through a `watch` channel when
//! one changes, so an idle stream has no clock of its own besides its
//! caller's token and grant expiry (10,000 quiet streams: no wakeups).

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::watch;

use crate::pipeline::Pipeline;

/// How often the one watcher task looks at the policy epoch (an atomic
/// load): a reload reaches every stream within this, plus its re-judging.
const EPOCH_POLL: Duration = Duration::from_millis(250);

/// The pipeline's policy-epoch broadcast, started with the first stream.
#[derive(Default)]
pub(in crate::pipeline) struct Epochs {
    rx: OnceLock<watch::Receiver<crate::policy::Changes>>,
}

impl Epochs {
    /// A receiver of the policy epoch; its `changed()` fires on a reload.
    pub(super) fn subscribe(pipeline: &Arc<Pipeline>) -> watch::Receiver<crate::policy::Changes> {
        pipeline
            .listen_epochs
            .rx
            .get_or_init(|| {
                let (tx, rx) = watch::channel(pipeline.policy.changes());
                tokio::spawn(watch_epoch(Arc::downgrade(pipeline), tx));
                rx
            })
            .clone()
    }
}

/// Until the pipeline is gone: publish each new epoch.
async fn watch_epoch(pipeline: Weak<Pipeline>, tx: watch::Sender<crate::policy::Changes>) {
    let mut tick = tokio::time::interval(EPOCH_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let Some(epoch) = pipeline.upgrade().map(|p| p.policy.changes()) else {
            return;
        };
        tx.send_if_modified(|seen| {
            let changed = *seen != epoch;
            *seen = epoch;
            changed
        });
    }
}
