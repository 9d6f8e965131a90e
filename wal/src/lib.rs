//! etcd WAL segments and `.snap` files: protobuf messages, framing with the rolling
//! CRC-32C, decoding with etcd's torn-write rules, repair, `.snap` selection, and the
//! WAL + `.snap` of a freshly restored member. Format notes: docs/wal.md.

pub mod decoder;
pub mod dump;
pub mod encoder;
pub mod error;
pub mod fresh_member;
pub mod gojson;
pub mod load;
pub mod member;
pub mod proto;
pub mod readall;
pub mod record;
pub mod repair;
pub mod segment;
pub mod segment_id;
pub mod snap;
pub mod storage;
pub mod v2store;
pub mod verify;
pub mod verify_report;

pub use decoder::{DecodeEnd, DecodedRecord, Tail, WalIter, WalRecord};
pub use encoder::{Encoder, WalWriter, WriterOptions};
pub use error::{Damage, DamageKind, DamageReason, SnapErrorKind, WalError};
pub use fresh_member::{FreshMember, RestoreFlavor};
pub use load::{MemberState, load_member};
pub use member::{Cluster, Member, cluster_id, member_id};
pub use readall::{WalContents, read_all, valid_snapshot_entries};
pub use repair::{RepairOutcome, repair};
pub use segment::{SEGMENT_SIZE_BYTES, list_segments};
pub use segment_id::SegmentId;
pub use snap::{load_newest_available, read_snap, write_snap};
pub use storage::{FaultFs, Faults, Fs, OsFs};
pub use verify::{VerifyReport, verify_data_dir, verify_wal_dir};
