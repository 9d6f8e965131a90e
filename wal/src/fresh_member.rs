//! The WAL + `.snap` a freshly restored member starts from (what `etcdutl snapshot restore`
//! 3.5 / `etcdctl snapshot restore` 3.4 write), derived from the new cluster's membership.
//! See docs/wal.md §Fresh member.

use std::path::{Path, PathBuf};

use prost::Message;

use crate::encoder::{Encoder, WalWriter, WriterOptions};
use crate::error::WalError;
use crate::member::Cluster;
use crate::proto::{
    ConfChange, ConfChangeType, Entry, EntryType, HardState, Metadata, Snapshot, SnapshotMetadata,
    WalSnapshot,
};
use crate::record::RecordType;
use crate::snap::write_snap;
use crate::storage::Fs;
use crate::v2store::restore_store_json;

/// Which etcd's restore output to reproduce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RestoreFlavor {
    /// `etcdctl snapshot restore` 3.4: the final WAL snapshot record has no conf_state.
    V3_4,
    /// `etcdutl snapshot restore` 3.5 (and 3.6 for one member).
    #[default]
    V3_5,
}

/// Everything a fresh member's WAL and `.snap` carry, derived from the cluster.
#[derive(Clone, Debug)]
pub struct FreshMember {
    pub metadata: Metadata,
    pub entries: Vec<Entry>,
    pub hard_state: HardState,
    pub wal_snapshot: WalSnapshot,
    pub snapshot: Snapshot,
}

impl FreshMember {
    /// The restore content for the member named `local_name`.
    pub fn new(
        cluster: &Cluster,
        local_name: &str,
        flavor: RestoreFlavor,
    ) -> Result<FreshMember, WalError> {
        let local = cluster.member_by_name(local_name).ok_or_else(|| {
            WalError::Membership(format!("member {local_name:?} is not in the cluster"))
        })?;
        let entries: Vec<Entry> = cluster
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let cc = ConfChange {
                    id: 0,
                    r#type: ConfChangeType::ConfChangeAddNode as i32,
                    node_id: m.id,
                    context: Some(m.to_json().into_bytes()),
                };
                Entry {
                    r#type: EntryType::EntryConfChange as i32,
                    term: 1,
                    index: i as u64 + 1,
                    data: Some(cc.encode_to_vec()),
                }
            })
            .collect();
        let n = entries.len() as u64;
        let conf_state = cluster.conf_state();
        let hard_state = HardState {
            term: 1,
            vote: cluster.members.first().map(|m| m.id).unwrap_or_default(),
            commit: n,
        };
        let wal_snapshot = WalSnapshot {
            index: n,
            term: 1,
            conf_state: match flavor {
                RestoreFlavor::V3_4 => None,
                RestoreFlavor::V3_5 => Some(conf_state.clone()),
            },
        };
        let snapshot = Snapshot {
            data: Some(restore_store_json(&cluster.members).into_bytes()),
            metadata: SnapshotMetadata {
                conf_state,
                index: n,
                term: 1,
            },
        };
        Ok(FreshMember {
            metadata: Metadata {
                node_id: local.id,
                cluster_id: cluster.id,
            },
            entries,
            hard_state,
            wal_snapshot,
            snapshot,
        })
    }

    /// The used part of the WAL segment (before preallocated zeros), in write order.
    pub fn wal_bytes(&self) -> Vec<u8> {
        let mut enc = Encoder::new(0);
        enc.append(RecordType::Crc, None);
        enc.append(RecordType::Metadata, Some(&self.metadata.encode_to_vec()));
        enc.append_snapshot(&WalSnapshot::default());
        for e in &self.entries {
            enc.append_entry(e);
        }
        enc.append_state(&self.hard_state);
        enc.append_snapshot(&self.wal_snapshot);
        enc.take()
    }

    /// Writes `<wal_dir>/0000000000000000-0000000000000000.wal` (through
    /// `<wal_dir>.tmp`, preallocated to 64,000,000 bytes unless `opts` says otherwise)
    /// and `<snap_dir>/<term>-<index>.snap` in etcd's order, with fsyncs of files and
    /// directories. Returns the `.snap` path.
    pub fn write(
        &self,
        fs: &dyn Fs,
        wal_dir: &Path,
        snap_dir: &Path,
        opts: WriterOptions,
    ) -> Result<PathBuf, WalError> {
        fs.create_dir_all(snap_dir, crate::encoder::DIR_MODE)
            .map_err(|e| WalError::io(snap_dir, e))?;
        if let Some(parent) = snap_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs.sync_dir(parent).map_err(|e| WalError::io(parent, e))?;
        }
        let mut w = WalWriter::create(fs, wal_dir, &self.metadata.encode_to_vec(), opts)?;
        w.save(&self.hard_state, &self.entries)?;
        let snap_path = write_snap(fs, snap_dir, &self.snapshot)?;
        w.save_snapshot(&self.wal_snapshot)?;
        w.close()?;
        Ok(snap_path)
    }
}
