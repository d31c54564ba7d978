//! `roll`: brings new settings into running brokers one at a time, without taking a partition
//! below `min.insync.replicas`.
//!
//! 1. [`plan`]: each live pod against the pod its template gives it now; node id changes refused.
//! 2. Preconditions over the Kafka protocol (`probe`'s client): every broker registered, nothing
//!    under-replicated or offline, no topic that one restart takes below `min.insync.replicas`
//!    (unless accepted).
//! 3. One broker at a time: delete its pod; wait until the StatefulSet has recreated it with the
//!    new settings and it is Ready, until the broker is back in the metadata at its expected
//!    endpoint and answers there as itself, and until nothing is under-replicated. Before the
//!    next broker, wait out `--settle` from the moment the pod turned Ready: its peers reach it
//!    by its headless DNS name, and their resolvers may still hold the old pod's address.
//! 4. The first broker that does not come back within the timeout stops the roll; the rest are
//!    untouched, and a second run resumes (pods already current are skipped).

pub mod plan;
mod pods;

use std::io::Write;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use serde::Serialize;

use self::plan::{controller_last, Plan, Step};
use self::pods::{describe_pod, ready, recreated_as_planned};
use crate::inject::settings::Defaults;
use crate::probe::{at_risk, ClusterState};

/// A validated `roll` invocation.
#[derive(Debug)]
pub struct Config {
    pub statefulset: String,
    pub namespace: String,
    pub defaults: Defaults,
    /// The listener clients use: the endpoint checked after each restart.
    pub listener: String,
    pub node_id_offset: i64,
    /// How to reach the brokers (`--bootstrap`, TLS, SASL), as `probe`.
    pub kafka: crate::probe::Config,
    pub dry_run: bool,
    /// How long one broker may take to come back.
    pub timeout: Duration,
    /// How long after a recreated pod turned Ready the next broker may go: the time the other
    /// brokers' DNS caches need to forget the old pod's address.
    pub settle: Duration,
    /// Topics whose unavailability during a restart the user accepts.
    pub accept_unavailable: Vec<String>,
    pub json: bool,
}

/// How a roll ended.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Every broker is on the current settings (some may have been recreated).
    Done,
    /// `--dry-run`: the plan only.
    Planned,
    /// Nothing was touched: a precondition does not hold.
    Refused,
    /// A broker did not come back in time: the roll stopped there.
    Stopped,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    outcome: &'a Outcome,
    plan: &'a Plan,
    rolled: &'a [String],
    /// Why the roll was refused or stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

/// Runs the roll; progress goes to `out` as lines (or one JSON report at the end).
pub async fn run(config: &Config, out: &mut impl Write) -> anyhow::Result<Outcome> {
    let client = Client::try_default().await.map_err(|error| {
        anyhow::anyhow!("no Kubernetes API: {error} (KUBECONFIG, or the current context)")
    })?;
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &config.namespace);
    let pods: Api<Pod> = Api::namespaced(client, &config.namespace);
    let statefulset = statefulsets
        .get_opt(&config.statefulset)
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "statefulset/{} not found in namespace {}",
                config.statefulset,
                config.namespace
            )
        })?;
    let live = live_pods(&pods, &statefulset).await?;
    let mut plan = plan::plan(
        &statefulset,
        &live,
        &config.namespace,
        &config.defaults,
        &config.listener,
        config.node_id_offset,
    )?;
    let mut roll = Roll {
        config,
        pods,
        out,
        rolled: Vec::new(),
    };
    roll.say_plan(&plan)?;
    if !plan.refused.is_empty() {
        let reason = "node ids would change: the roll touches nothing".to_owned();
        return roll.finish(&plan, Outcome::Refused, Some(reason));
    }
    if config.dry_run {
        return roll.finish(&plan, Outcome::Planned, None);
    }
    if plan.steps.is_empty() {
        return roll.finish(&plan, Outcome::Done, None);
    }
    let state = roll.cluster().await?;
    if let Some(reason) = preconditions(&state, &plan, config, &mut roll).await? {
        return roll.finish(&plan, Outcome::Refused, Some(reason));
    }
    order_steps(&mut plan.steps, &state);
    for (index, step) in plan.steps.iter().enumerate() {
        let last = index + 1 == plan.steps.len();
        if let Err(reason) = roll.restart(step, &live, last).await? {
            return roll.finish(&plan, Outcome::Stopped, Some(reason));
        }
    }
    roll.finish(&plan, Outcome::Done, None)
}

/// The StatefulSet's pods, by its selector.
async fn live_pods(pods: &Api<Pod>, statefulset: &StatefulSet) -> anyhow::Result<Vec<Pod>> {
    let labels = statefulset
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .filter(|l| !l.is_empty())
        .ok_or_else(|| anyhow::anyhow!("the StatefulSet's spec.selector has no matchLabels"))?;
    let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Ok(pods
        .list(&ListParams::default().labels(&selector.join(",")))
        .await?
        .items)
}

/// Why the roll may not start, or `None` when it may.
async fn preconditions(
    state: &ClusterState,
    plan: &Plan,
    config: &Config,
    roll: &mut Roll<'_, impl Write>,
) -> anyhow::Result<Option<String>> {
    // Brokers of the plan that are down already (a roll stopped at one that could not start
    // with bad settings, since mended): recreating them takes nothing away, so they neither
    // block the roll nor do the partitions that lack only them; they go first.
    let down = down_brokers(state, plan);
    let unhealthy = unhealthy_beyond(state, &down);
    if !unhealthy.is_empty() {
        return Ok(Some(format!(
            "{} partitions are under-replicated or offline ({}): wait until they are in sync",
            unhealthy.len(),
            unhealthy
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut topics: Vec<String> = state.partitions.iter().map(|p| p.topic.clone()).collect();
    topics.dedup();
    let min_insync = roll.min_insync(&topics).await?;
    let restarting: Vec<i32> = plan.steps.iter().map(|step| step.node_id).collect();
    let risky: Vec<String> = at_risk(state, &min_insync, &restarting)
        .into_iter()
        .filter(|t| !config.accept_unavailable.contains(t))
        .collect();
    if !risky.is_empty() {
        return Ok(Some(format!(
            "one restart would take these topics below min.insync.replicas (replication factor 1, or min.insync.replicas >= replication factor): {}; raise their replication, or pass --accept-unavailable for each",
            risky.join(", ")
        )));
    }
    roll.say(&format!(
        "preconditions: {} brokers registered, {} partitions in sync, no topic at risk",
        state.brokers.len(),
        state.partitions.len() - state.unhealthy().count()
    ))?;
    let down: Vec<String> = plan
        .steps
        .iter()
        .filter(|step| down.contains(&step.node_id))
        .map(|step| {
            format!(
                "{}/{} (broker {})",
                config.namespace, step.pod, step.node_id
            )
        })
        .collect();
    if !down.is_empty() {
        roll.say(&format!(
            "not in the metadata, so down already: {}; recreated first",
            down.join(", ")
        ))?;
    }
    Ok(None)
}

/// The order brokers go in: those down already first, the controller's broker last, the rest
/// highest ordinal first, as planned.
fn order_steps(steps: &mut [plan::Step], state: &ClusterState) {
    controller_last(steps, state.controller);
    let down: Vec<i32> = steps
        .iter()
        .map(|step| step.node_id)
        .filter(|id| !state.brokers.iter().any(|b| b.0 == *id))
        .collect();
    steps.sort_by_key(|step| !down.contains(&step.node_id));
}

/// The partitions not in sync for another reason than the `down` brokers, as `topic-N`.
fn unhealthy_beyond(state: &ClusterState, down: &[i32]) -> Vec<String> {
    state
        .unhealthy()
        .filter(|p| {
            !p.replicas
                .iter()
                .all(|r| p.isr.contains(r) || down.contains(r))
        })
        .map(|p| format!("{}-{}", p.topic, p.partition))
        .collect()
}

/// The node ids of the plan's brokers that the metadata does not list: not serving now.
fn down_brokers(state: &ClusterState, plan: &Plan) -> Vec<i32> {
    plan.steps
        .iter()
        .map(|step| step.node_id)
        .filter(|id| !state.brokers.iter().any(|b| b.0 == *id))
        .collect()
}

/// A roll in progress.
struct Roll<'a, W: Write> {
    config: &'a Config,
    pods: Api<Pod>,
    out: &'a mut W,
    rolled: Vec<String>,
}

/// How often a restarting broker is looked at.
const POLL: Duration = Duration::from_secs(2);

/// How long after `--settle` the partitions may take to be in sync again.
const SETTLED_CHECK: Duration = Duration::from_secs(30);

impl<W: Write> Roll<'_, W> {
    fn say(&mut self, line: &str) -> std::io::Result<()> {
        if !self.config.json {
            writeln!(self.out, "{line}")?;
            self.out.flush()?;
        }
        Ok(())
    }

    fn say_plan(&mut self, plan: &Plan) -> std::io::Result<()> {
        let sts = format!("{}/{}", self.config.namespace, self.config.statefulset);
        for refused in &plan.refused {
            self.say(&format!("refused: {refused}"))?;
        }
        for current in &plan.current {
            self.say(&format!("{current}: current, skipped"))?;
        }
        for step in &plan.steps {
            self.say(&format!(
                "{}/{} (broker {}): to recreate: {}",
                self.config.namespace,
                step.pod,
                step.node_id,
                step.why.join("; ")
            ))?;
        }
        if plan.steps.is_empty() && plan.refused.is_empty() {
            self.say(&format!("{sts}: every broker is on the current settings"))?;
        }
        Ok(())
    }

    fn finish(
        &mut self,
        plan: &Plan,
        outcome: Outcome,
        reason: Option<String>,
    ) -> anyhow::Result<Outcome> {
        if self.config.json {
            let report = Report {
                outcome: &outcome,
                plan,
                rolled: &self.rolled,
                reason: reason.as_deref(),
            };
            serde_json::to_writer_pretty(&mut *self.out, &report)?;
            writeln!(self.out)?;
        } else {
            let line = match (&outcome, &reason) {
                (Outcome::Done, _) if self.rolled.is_empty() => "done: nothing to recreate".into(),
                (Outcome::Done, _) => format!("done: {} brokers recreated", self.rolled.len()),
                (Outcome::Planned, _) => "dry run: nothing touched".to_owned(),
                (Outcome::Refused, Some(reason)) => format!("refused: {reason}"),
                (Outcome::Stopped, Some(reason)) => format!(
                    "stopped: {reason}; the brokers after it are untouched, and a second run resumes"
                ),
                (_, None) => format!("{outcome:?}"),
            };
            self.say(&line)?;
        }
        Ok(outcome)
    }

    /// The cluster's metadata, from a fresh bootstrap (the broker first connected to may be the
    /// one restarting).
    async fn cluster(&self) -> anyhow::Result<ClusterState> {
        let mut connection = crate::probe::bootstrap(&self.config.kafka).await?;
        Ok(connection.cluster_state().await?)
    }

    async fn min_insync(&self, topics: &[String]) -> anyhow::Result<Vec<(String, i32)>> {
        let mut connection = crate::probe::bootstrap(&self.config.kafka).await?;
        Ok(connection.min_insync_replicas(topics).await?)
    }

    /// Recreates one broker and waits for it (and, unless it is the `last`, for its peers to be
    /// able to find it): `Ok(Err(reason))` when it did not come back.
    async fn restart(
        &mut self,
        step: &Step,
        live: &[Pod],
        last: bool,
    ) -> anyhow::Result<Result<(), String>> {
        let id = format!(
            "{}/{} (broker {})",
            self.config.namespace, step.pod, step.node_id
        );
        let old_uid = live
            .iter()
            .find(|p| p.name_any() == step.pod)
            .and_then(|p| p.uid());
        // Only the pod planned: a pod recreated since (another roll, an eviction) is left alone.
        let params = DeleteParams {
            preconditions: old_uid.clone().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.pods.delete(&step.pod, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(response)) if response.code == 409 || response.code == 404 => {
                self.say(&format!("{id}: already recreated since the plan"))?;
            }
            Err(error) => return Err(error.into()),
        }
        self.say(&format!(
            "{id}: deleted; waiting for it to advertise {}",
            step.endpoint
        ))?;
        let started = Instant::now();
        let mut deadline = started + self.config.timeout;
        let mut stage = Stage::Recreated;
        let mut saw = String::new();
        // When the new pod was first seen Ready: its address is in the cluster DNS from then on.
        let mut settled_at = deadline;
        while Instant::now() < deadline {
            let look = match stage {
                Stage::Settled if Instant::now() < settled_at => Look::Waiting(format!(
                    "{} s of --settle left",
                    settled_at
                        .saturating_duration_since(Instant::now())
                        .as_secs()
                )),
                _ => self.look(stage, step, old_uid.as_deref()).await,
            };
            match look {
                Look::Waiting(what) => saw = what,
                Look::Reached(what) => {
                    self.say(&format!(
                        "{id}: {what} after {} s",
                        started.elapsed().as_secs()
                    ))?;
                    if stage == Stage::Recreated {
                        settled_at = Instant::now() + self.config.settle;
                    }
                    if let Some(next) = stage.next(last, self.config.settle) {
                        if next == Stage::Settled {
                            // --timeout bounds the broker's return, not this wait.
                            deadline = deadline.max(settled_at + SETTLED_CHECK);
                            self.say(&format!(
                                "{id}: the next broker goes {} after this pod turned Ready (--settle): until then the other brokers may still resolve its name to the old pod's address",
                                humantime::format_duration(self.config.settle)
                            ))?;
                        }
                        stage = next;
                        continue;
                    }
                    self.rolled.push(step.pod.clone());
                    return Ok(Ok(()));
                }
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(Err(format!(
            "{id} did not come back within {}: waiting for {}; last seen: {saw}",
            humantime::format_duration(self.config.timeout),
            stage.waits_for(step)
        )))
    }

    /// One look at whether the restarting broker has reached `stage`.
    async fn look(&self, stage: Stage, step: &Step, old_uid: Option<&str>) -> Look {
        match stage {
            Stage::Recreated => match self.pods.get_opt(&step.pod).await {
                Ok(Some(pod))
                    if pod.uid().as_deref() != old_uid
                        && recreated_as_planned(&pod, step)
                        && ready(&pod) =>
                {
                    Look::Reached(format!(
                        "pod recreated with settings {} and Ready",
                        step.settings_after
                    ))
                }
                Ok(Some(pod)) => Look::Waiting(describe_pod(&pod)),
                Ok(None) => Look::Waiting("no pod yet".into()),
                Err(error) => Look::Waiting(format!("the API server: {error}")),
            },
            Stage::Registered => {
                let state = match self.cluster().await {
                    Ok(state) => state,
                    Err(error) => return Look::Waiting(format!("the metadata: {error:#}")),
                };
                let Some((_, host, port)) = state.brokers.iter().find(|b| b.0 == step.node_id)
                else {
                    return Look::Waiting("it is not registered".into());
                };
                if !crate::probe::advertises(&step.endpoint, host, *port) {
                    return Look::Waiting(format!("it advertises {host}:{port}"));
                }
                let (report, _) =
                    crate::probe::check_broker(&self.config.kafka, step.node_id, host, *port).await;
                if report.faults.is_empty() {
                    Look::Reached(format!(
                        "back in the metadata at {} and answering as itself",
                        step.endpoint
                    ))
                } else {
                    Look::Waiting(report.faults.join("; "))
                }
            }
            Stage::InSync | Stage::Settled => match self.cluster().await {
                Ok(state) => {
                    let lagging: Vec<String> = state
                        .unhealthy()
                        .map(|p| format!("{}-{}", p.topic, p.partition))
                        .collect();
                    if lagging.is_empty() {
                        Look::Reached(match stage {
                            Stage::Settled => "settled, every partition still in sync".into(),
                            _ => "every partition in sync".into(),
                        })
                    } else {
                        Look::Waiting(format!(
                            "{} partitions under-replicated or offline ({})",
                            lagging.len(),
                            lagging
                                .iter()
                                .take(5)
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    }
                }
                Err(error) => Look::Waiting(format!("the metadata: {error:#}")),
            },
        }
    }
}

/// What a restarting broker is waited for, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Its pod recreated by the StatefulSet with the planned settings, and Ready.
    Recreated,
    /// The broker back in the metadata at its planned endpoint, answering there as itself.
    Registered,
    /// No partition under-replicated or offline.
    InSync,
    /// `--settle` after it turned Ready, and still nothing under-replicated: the other brokers'
    /// resolvers have had the time to learn the new pod's address. Skipped after the last
    /// broker.
    Settled,
}

impl Stage {
    /// The stage after this one: the settle wait only between brokers, and only when asked for.
    fn next(self, last: bool, settle: Duration) -> Option<Self> {
        match self {
            Self::Recreated => Some(Self::Registered),
            Self::Registered => Some(Self::InSync),
            Self::InSync if last || settle.is_zero() => None,
            Self::InSync => Some(Self::Settled),
            Self::Settled => None,
        }
    }

    fn waits_for(self, step: &Step) -> String {
        match self {
            Self::Recreated => "its pod to be recreated with the new settings and Ready".into(),
            Self::Registered => format!(
                "broker {} in the metadata at {}, answering as itself",
                step.node_id, step.endpoint
            ),
            Self::InSync => "no under-replicated partition".into(),
            Self::Settled => "--settle to pass, with no under-replicated partition".into(),
        }
    }
}

/// What one look saw.
enum Look {
    Reached(String),
    Waiting(String),
}

#[cfg(test)]
mod tests;
