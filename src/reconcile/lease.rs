//! Leader election: of the replicas that share a `coordination.k8s.io` Lease, one writes.
//!
//! The lease manager takes and renews the Lease. On its own it keeps saying "leading" while the
//! API server is unreachable, although the Lease runs out and a standby takes it: two writers
//! once the API server is back. So a replica leads only while the manager says so **and** it has
//! read the Lease as its own, renewed recently enough that it cannot have run out: it stops
//! [`RENEW_MARGIN`] before the Lease it last saw would expire, before any standby may take it.
//! A replica that stops leading stands by and leads again when it can; it never exits for that.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease as LeaseObject;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

/// Leader election through a `coordination.k8s.io` Lease.
#[derive(Debug)]
pub struct Lease {
    pub name: String,
    pub namespace: String,
    pub identity: String,
}

/// How long a Lease lasts without renewal.
const DURATION_SECONDS: u16 = 15;
/// How long before it runs out its holder renews it.
const GRACE_SECONDS: u16 = 5;
/// A leader stops writing this long before the Lease it last saw renewed runs out.
const RENEW_MARGIN: Duration = Duration::from_secs(3);
/// How often the leader reads the Lease back.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// The longest a read of the Lease may take.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The task that renews the Lease while its channel is open and releases it when it closes.
type ManagerTask =
    tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>;

/// This replica's leadership: `true` while it may write.
pub(super) struct Leadership {
    leading: watch::Receiver<bool>,
    watchdog: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Starts competing for the Lease.
    pub(super) async fn start(client: &Client, lease: &Lease) -> anyhow::Result<Self> {
        let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &lease.name)
            .with_namespace(&lease.namespace)
            .with_identity(&lease.identity)
            .with_duration(DURATION_SECONDS.into())
            .with_grace(GRACE_SECONDS.into())
            .build()
            .await?;
        let (held, manager) = manager.watch().await;
        let (sender, leading) = watch::channel(false);
        let api = Api::<LeaseObject>::namespaced(client.clone(), &lease.namespace);
        let watchdog = tokio::spawn(watchdog(
            api,
            lease.name.clone(),
            lease.identity.clone(),
            held,
            manager,
            sender,
        ));
        info!(lease = %lease.name, identity = %lease.identity, "waiting for leadership");
        Ok(Self { leading, watchdog })
    }

    /// Waits until this replica leads: `Ok(false)` when `shutdown` comes first.
    pub(super) async fn acquired(
        &mut self,
        shutdown: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> anyhow::Result<bool> {
        while !*self.leading.borrow_and_update() {
            tokio::select! {
                changed = self.leading.changed() => {
                    changed.map_err(|_| anyhow::anyhow!("the lease manager stopped"))?;
                }
                () = shutdown.as_mut() => return Ok(false),
            }
        }
        info!("leading");
        Ok(true)
    }

    /// Resolves once this replica no longer leads.
    pub(super) async fn lost(&mut self) {
        while *self.leading.borrow_and_update() {
            if self.leading.changed().await.is_err() {
                return;
            }
        }
    }

    /// Releases the Lease, so that a standby leads at once rather than after it runs out.
    pub(super) async fn release(self) {
        drop(self.leading);
        if tokio::time::timeout(Duration::from_secs(6), self.watchdog)
            .await
            .is_err()
        {
            warn!("the lease was not released within 6 s");
        }
    }
}

/// Turns the manager's view into [`Leadership`]'s: leading while the manager holds the Lease and
/// a read of it, no older than its remaining time less [`RENEW_MARGIN`], says so.
async fn watchdog(
    api: Api<LeaseObject>,
    name: String,
    identity: String,
    mut held: watch::Receiver<bool>,
    manager: ManagerTask,
    sender: watch::Sender<bool>,
) {
    let mut confirmed_until: Option<Instant> = None;
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = sender.closed() => break,
            _ = tick.tick() => {}
            changed = held.changed() => if changed.is_err() {
                // The manager stopped: nobody renews the Lease any more.
                warn!("the lease manager stopped");
                return;
            },
        }
        if *held.borrow() {
            match tokio::time::timeout(READ_TIMEOUT, api.get_opt(&name)).await {
                Ok(Ok(lease)) => {
                    confirmed_until = lease
                        .and_then(|lease| time_left(&lease, &identity, Timestamp::now()))
                        .map(|left| Instant::now() + left);
                }
                // Unreachable or slow: the last confirmation holds until it runs out.
                Ok(Err(error)) => warn!(%error, "could not read the lease back"),
                Err(_) => warn!("reading the lease back took over 2 s"),
            }
        } else {
            confirmed_until = None;
        }
        let leading = *held.borrow() && confirmed_until.is_some_and(|until| Instant::now() < until);
        sender.send_if_modified(|current| {
            if *current == leading {
                return false;
            }
            if !leading {
                warn!(
                    "leadership lost: the lease is another's, or was not seen renewed in time; \
                     standing by"
                );
            }
            *current = leading;
            true
        });
    }
    // Closing the manager's channel makes it release the Lease.
    drop(held);
    match tokio::time::timeout(Duration::from_secs(5), manager).await {
        Ok(Ok(Ok(_))) => info!("lease released"),
        Ok(Ok(Err(error))) => warn!(%error, "could not release the lease"),
        Ok(Err(error)) => warn!(%error, "the lease task failed"),
        Err(_) => warn!("the lease was not released within 5 s"),
    }
}

/// How long `identity` may still act on `lease` at `now`: until [`RENEW_MARGIN`] before it runs
/// out, or `None` when it is another's, never renewed, or (nearly) run out.
fn time_left(lease: &LeaseObject, identity: &str, now: Timestamp) -> Option<Duration> {
    let spec = lease.spec.as_ref()?;
    if spec.holder_identity.as_deref() != Some(identity) {
        return None;
    }
    let renewed = spec.renew_time.as_ref()?.0.as_millisecond();
    let duration = i64::from(spec.lease_duration_seconds?) * 1000;
    let margin = i64::try_from(RENEW_MARGIN.as_millis()).unwrap_or(i64::MAX);
    let left = renewed
        .saturating_add(duration)
        .saturating_sub(margin)
        .saturating_sub(now.as_millisecond());
    u64::try_from(left)
        .ok()
        .filter(|left| *left > 0)
        .map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    use super::*;

    fn lease(holder: &str, renewed_ms_ago: i64, duration_seconds: i32) -> (LeaseObject, Timestamp) {
        let now = Timestamp::from_millisecond(1_800_000_000_000).unwrap();
        let renewed = Timestamp::from_millisecond(now.as_millisecond() - renewed_ms_ago).unwrap();
        let lease = LeaseObject {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(renewed)),
                lease_duration_seconds: Some(duration_seconds),
                ..LeaseSpec::default()
            }),
            ..LeaseObject::default()
        };
        (lease, now)
    }

    #[test]
    fn a_leader_stops_before_a_standby_may_take_the_lease() {
        // Renewed 2 s ago, lasting 15 s: it runs out in 13 s, and the leader stops 3 s before.
        let (renewed, now) = lease("a", 2_000, 15);
        assert_eq!(time_left(&renewed, "a", now), Some(Duration::from_secs(10)));
        // Not seen renewed for 12.5 s: 2.5 s left before it runs out, less than the margin.
        let (stale, now) = lease("a", 12_500, 15);
        assert_eq!(time_left(&stale, "a", now), None);
        let (expired, now) = lease("a", 60_000, 15);
        assert_eq!(time_left(&expired, "a", now), None);
    }

    #[test]
    fn a_lease_held_by_another_or_never_renewed_gives_no_time() {
        let (theirs, now) = lease("b", 0, 15);
        assert_eq!(time_left(&theirs, "a", now), None);
        let (mut unrenewed, now) = lease("a", 0, 15);
        unrenewed.spec.as_mut().unwrap().renew_time = None;
        assert_eq!(time_left(&unrenewed, "a", now), None);
        assert_eq!(time_left(&LeaseObject::default(), "a", now), None);
    }
}
