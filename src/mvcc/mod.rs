//! Etcd MVCC records: revision keys, mvccpb.KeyValue, applying events, HashKV, compaction.
