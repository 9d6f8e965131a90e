//! Member bootstrap in a running multi-member cluster, as etcd-backup-restore v0.43 does it
//! (`pkg/member/member_control.go`, `pkg/initializer/initializer.go`, the promotion in
//! `pkg/leaderelection/leaderelection.go` + `pkg/server/backuprestoreserver.go`):
//!
//! * scale-up — the cluster runs and does not list this member: remove the data directory and
//!   add the member as a learner (`AddLearnerWithRetry`, 6 attempts); nothing is restored;
//! * re-join — the data directory is unusable but the cluster runs: remove the member (by
//!   name), remove the data directory, add it back as a learner (`restoreInMultiNode`); the
//!   data comes from the leader, never from the backups;
//! * promotion — every re-election period, when this member's etcd says it is a learner,
//!   `MemberPromote` (etcd refuses until the learner has caught up; the next period retries).
//!
//! Member name and peer URLs come from the etcd config file and `$POD_NAME`, read at each use
//! like etcdbrctl does. Membership calls go to `--service-endpoints`, else every member's
//! advertised client URL from the config (`UseServiceEndpoints(true)`); the learner check for
//! promotion goes to the first `--endpoints` (this member's etcd).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::etcdclient::{CONNECTION_TIMEOUT, Client, ClientError, ETCD_TIMEOUT};
use crate::metrics::Registry;

use super::config::{self, ClusterView, ConfigError, MemberConfig};

/// etcdbrctl's `member.RetryPeriod` and `RetrySteps` (doubling back-off).
const RETRY_PERIOD: Duration = Duration::from_secs(2);
const RETRY_STEPS: u32 = 4;
/// `addLearnerAttempts`.
const ADD_LEARNER_ATTEMPTS: u32 = 6;

#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error("etcd config: {0}")]
    Config(#[from] ConfigError),
    #[error("etcd: {0}")]
    Etcd(#[from] ClientError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Whether the running cluster lists this member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Presence {
    Listed,
    NotListed,
    /// etcd could not be asked (no quorum yet: a fresh bootstrap, or a network problem).
    Unknown(String),
}

/// How this member joins.
pub struct MemberControl {
    etcd_conf: PathBuf,
    pod_name: Option<String>,
    /// `--endpoints`: this member's etcd.
    local: Client,
    /// `--service-endpoints`, when given.
    service: Option<Client>,
    metrics: Arc<Registry>,
}

impl std::fmt::Debug for MemberControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberControl")
            .field("etcd_conf", &self.etcd_conf)
            .field("pod_name", &self.pod_name)
            .field("endpoints", &self.local.endpoints())
            .field(
                "service_endpoints",
                &self.service.as_ref().map(Client::endpoints),
            )
            .finish()
    }
}

fn succeeded(ok: bool) -> &'static str {
    if ok { "true" } else { "false" }
}

impl MemberControl {
    pub fn new(
        etcd_conf: PathBuf,
        pod_name: Option<String>,
        local: Client,
        service: Option<Client>,
        metrics: Arc<Registry>,
    ) -> MemberControl {
        MemberControl {
            etcd_conf,
            pod_name,
            local,
            service,
            metrics,
        }
    }

    fn me(&self) -> Result<MemberConfig, ConfigError> {
        config::load_member(&self.etcd_conf, self.pod_name.as_deref())
    }

    /// etcdbrctl's `IsMultiNode`: `initial-cluster` in the config names more than one member
    /// (an unreadable config means no).
    pub fn is_multi_node(&self) -> bool {
        match self.me() {
            Ok(m) => {
                self.metrics.set(
                    "etcdbr_cluster_size",
                    "Current Etcd cluster size.",
                    &[],
                    m.cluster_size as f64,
                );
                m.cluster_size > 1
            }
            Err(e) => {
                tracing::debug!(error = %e, "not a multi-member cluster: cannot read this member from the etcd config");
                false
            }
        }
    }

    fn service(&self, me: &MemberConfig) -> Client {
        match &self.service {
            Some(c) => c.clone(),
            None if !me.all_client_urls.is_empty() => {
                self.local.with_endpoints(me.all_client_urls.clone())
            }
            None => self.local.clone(),
        }
    }

    /// Runs `f` up to `steps` times, sleeping [`RETRY_PERIOD`], doubled each time, in between.
    async fn retry<T, F, Fut>(&self, steps: u32, what: &str, mut f: F) -> Result<T, MemberError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, MemberError>>,
    {
        let mut wait = RETRY_PERIOD;
        let mut attempt = 1;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if attempt >= steps => return Err(e),
                Err(e) => {
                    tracing::info!(attempt, error = %e, "{what} failed; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(120));
                    attempt += 1;
                }
            }
        }
    }

    /// etcdbrctl's `IsMemberInCluster`: probe (a quorum read), then look for this member's
    /// name in `MemberList`.
    pub async fn presence(&self) -> Presence {
        let me = match self.me() {
            Ok(m) => m,
            Err(e) => return Presence::Unknown(e.to_string()),
        };
        let cli = self.service(&me);
        let listed = async {
            self.retry(RETRY_STEPS, "probing etcd", || async {
                cli.probe().await.map_err(MemberError::from)
            })
            .await?;
            let members = self
                .retry(RETRY_STEPS, "listing etcd members", || async {
                    cli.member_list(ETCD_TIMEOUT)
                        .await
                        .map_err(MemberError::from)
                })
                .await?;
            Ok::<_, MemberError>(members.iter().any(|m| m.name == me.name))
        };
        match listed.await {
            Ok(true) => Presence::Listed,
            Ok(false) => Presence::NotListed,
            Err(e) => Presence::Unknown(e.to_string()),
        }
    }

    /// etcdbrctl's `AddMemberAsLearner`: an "already a member" answer is success.
    async fn add_as_learner(&self, me: &MemberConfig) -> Result<(), MemberError> {
        let t0 = Instant::now();
        let r = self.service(me).member_add_learner(&me.peer_urls).await;
        match &r {
            Err(e) if e.is_member_exists() => {
                tracing::info!(member = %me.name, peer_urls = ?me.peer_urls, "already a member of the cluster");
                return Ok(());
            }
            Err(e) if e.is_too_many_learners() => {}
            _ => {
                self.metrics.observe(
                    "etcdbr_add_learner_duration_seconds",
                    "Total latency to add the etcd member as a learner to the cluster.",
                    &[("succeeded", succeeded(r.is_ok()))],
                    t0.elapsed().as_secs_f64(),
                );
                self.metrics.inc(
                    "etcdbr_is_learner_count_total",
                    "Total count when etcd member added as a learner.",
                    &[("succeeded", succeeded(r.is_ok()))],
                );
            }
        }
        let added = r?;
        self.set_is_learner(true);
        tracing::info!(member = %me.name, id = format!("{:x}", added.id), peer_urls = ?me.peer_urls, "added to the cluster as a learner");
        Ok(())
    }

    fn set_is_learner(&self, yes: bool) {
        self.metrics.set(
            "etcdbr_is_learner",
            "Whether or not this member is a learner. 1 if is, 0 otherwise",
            &[],
            if yes { 1.0 } else { 0.0 },
        );
    }

    /// Scale-up (`AddLearnerWithRetry`): remove the data directory, then add this member as a
    /// learner; waits `ETCD_TIMEOUT` more while another learner is still being promoted.
    pub async fn join_as_learner(&self, data_dir: &Path) -> Result<(), MemberError> {
        let me = self.me()?;
        self.retry(ADD_LEARNER_ATTEMPTS, "adding a learner", || async {
            remove_dir(data_dir)?;
            let r = self.add_as_learner(&me).await;
            if let Err(MemberError::Etcd(e)) = &r
                && e.is_too_many_learners()
            {
                tokio::time::sleep(ETCD_TIMEOUT).await;
            }
            r
        })
        .await
    }

    /// `restoreInMultiNode`: remove this member from the cluster (when listed), remove the
    /// data directory, add the member back as a learner.
    pub async fn rejoin(&self, data_dir: &Path) -> Result<(), MemberError> {
        let me = self.me()?;
        let cli = self.service(&me);
        self.retry(RETRY_STEPS, "removing the member", || async {
            let members = cli.member_list(CONNECTION_TIMEOUT).await?;
            let Some(m) = members.iter().find(|m| m.name == me.name) else {
                return Ok(());
            };
            let t0 = Instant::now();
            let r = cli.member_remove(m.id).await;
            self.metrics.observe(
                "etcdbr_member_remove_duration_seconds",
                "Total latency to remove the etcd member from the cluster.",
                &[("succeeded", succeeded(r.is_ok()))],
                t0.elapsed().as_secs_f64(),
            );
            match r {
                Err(e) if !e.is_member_not_found() => Err(e.into()),
                _ => {
                    tracing::info!(member = %me.name, id = format!("{:x}", m.id), "removed from the cluster");
                    Ok(())
                }
            }
        })
        .await?;
        remove_dir(data_dir)?;
        self.retry(RETRY_STEPS, "adding a learner", || async {
            remove_dir(data_dir)?;
            self.add_as_learner(&me).await
        })
        .await
    }

    /// What `/config` needs: the running members and whether one is a learner (etcdbrctl's
    /// `getInitialCluster` lists twice, 2 s apart, before giving up).
    pub async fn cluster_view(&self) -> ClusterView {
        let Ok(me) = self.me() else {
            return ClusterView::default();
        };
        if me.cluster_size <= 1 {
            return ClusterView::default();
        }
        let cli = self.service(&me);
        let list = self
            .retry(2, "listing etcd members", || async {
                cli.member_list(ETCD_TIMEOUT)
                    .await
                    .map_err(MemberError::from)
            })
            .await;
        match list {
            Ok(members) => ClusterView {
                learner_present: members.iter().any(|m| m.is_learner),
                members: Some(members.into_iter().map(|m| m.name).collect()),
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the etcd members; serving initial-cluster untrimmed and state new");
                ClusterView::default()
            }
        }
    }

    /// One round of the promotion check: when this member's etcd is a learner, promote it.
    /// Returns whether a promotion succeeded now.
    pub async fn promote_if_learner(&self) -> Result<bool, MemberError> {
        let status = self.local.status(ETCD_TIMEOUT).await?;
        if !status.is_learner {
            return Ok(false);
        }
        self.set_is_learner(true);
        let me = self.me()?;
        let cli = self.service(&me);
        let members = cli.member_list(CONNECTION_TIMEOUT).await?;
        let Some(m) = members.iter().find(|m| m.name == me.name) else {
            return Err(ClientError::Config(format!(
                "member {:?} is missing from the member list",
                me.name
            ))
            .into());
        };
        let t0 = Instant::now();
        match cli.member_promote(m.id).await {
            Ok(()) => {
                self.observe_promote(true, t0);
                self.set_is_learner(false);
                tracing::info!(member = %me.name, id = format!("{:x}", m.id), "promoted the learner to a voting member");
                Ok(true)
            }
            Err(e) if e.is_not_learner() => {
                self.set_is_learner(false);
                Ok(false)
            }
            Err(e) => {
                self.observe_promote(false, t0);
                Err(e.into())
            }
        }
    }

    fn observe_promote(&self, ok: bool, t0: Instant) {
        self.metrics.observe(
            "etcdbr_member_promote_duration_seconds",
            "Total latency to promote the learner to the voting member.",
            &[("succeeded", succeeded(ok))],
            t0.elapsed().as_secs_f64(),
        );
    }

    /// The server loop's promotion: every `period`, [`MemberControl::promote_if_learner`]
    /// in a multi-member cluster. Never returns.
    pub async fn promote_loop(self: Arc<Self>, period: Duration) {
        loop {
            tokio::time::sleep(period).await;
            if !self.is_multi_node() {
                continue;
            }
            match self.promote_if_learner().await {
                Ok(_) => {}
                Err(MemberError::Etcd(e)) if e.is_learner_not_ready() => {
                    tracing::info!(
                        "the learner has not caught up with the leader yet; promoting at the next period"
                    );
                }
                Err(e) => tracing::debug!(error = %e, "promotion check"),
            }
        }
    }
}

/// Removes `dir` if it exists (etcdbrctl's `miscellaneous.RemoveDir`), atomically.
fn remove_dir(dir: &Path) -> Result<(), MemberError> {
    crate::datadir::remove_dir_atomically(dir)
        .map_err(|(path, source)| MemberError::Io { path, source })
}
