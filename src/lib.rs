//! etcd-restore: restore, compact and validate etcd data directories without running etcd.
