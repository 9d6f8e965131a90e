//! Reading etcd-backup-restore backups from an object store: names, listing, plan, fetch, decode.
