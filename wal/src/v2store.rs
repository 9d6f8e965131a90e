//! The v2 store JSON that `snapshot restore` (3.4 and 3.5) puts into the `.snap` file:
//! a fresh store with namespaces `/0` and `/1` into which each member's
//! `/0/members/<hex id>/raftAttributes` was created, in ascending ID order. etcd 3.4/3.5
//! recover membership from it (3.5.1 panics "member unknown" without it).
//! Layout: etcd `v2store` `store`, `node`, `watcherHub`, `EventHistory`, `Stats` as
//! serialised by Go's `encoding/json` (struct field order, map keys sorted).

use crate::gojson::quote_into;
use crate::member::Member;

/// etcd's `newWatchHub(1000)` event-history capacity.
const EVENT_CAPACITY: usize = 1000;
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn node_head(out: &mut String, path: &str, index: u64) {
    out.push_str("{\"Path\":");
    quote_into(out, path);
    out.push_str(&format!(
        ",\"CreatedIndex\":{index},\"ModifiedIndex\":{index},\"ExpireTime\":\"{ZERO_TIME}\",\"Value\":"
    ));
}

/// The JSON for `members` (sorted by ID, as `Cluster` keeps them).
pub fn restore_store_json(members: &[Member]) -> String {
    let n = members.len() as u64;
    // Each member's raftAttributes is created at store index i (1-based, ID order).
    let indexed: Vec<(u64, &Member, String)> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (i as u64 + 1, m, m.raft_attributes_json()))
        .collect();
    // Go sorts map keys as strings; the hex IDs are not zero-padded, so this order can
    // differ from the numeric one.
    let mut by_key: Vec<&(u64, &Member, String)> = indexed.iter().collect();
    by_key.sort_by_key(|(_, m, _)| format!("{:x}", m.id));

    let mut s = String::new();
    s.push_str("{\"Root\":");
    node_head(&mut s, "/", 0);
    s.push_str("\"\",\"Children\":{\"0\":");
    node_head(&mut s, "/0", 0);
    s.push_str("\"\",\"Children\":{");
    if !members.is_empty() {
        s.push_str("\"members\":");
        // The members directory is created together with the first member.
        node_head(&mut s, "/0/members", 1);
        s.push_str("\"\",\"Children\":{");
        for (k, (i, m, ra)) in by_key.iter().enumerate() {
            if k > 0 {
                s.push(',');
            }
            let hex = format!("{:x}", m.id);
            let dir = format!("/0/members/{hex}");
            quote_into(&mut s, &hex);
            s.push(':');
            node_head(&mut s, &dir, *i);
            s.push_str("\"\",\"Children\":{\"raftAttributes\":");
            node_head(&mut s, &format!("{dir}/raftAttributes"), *i);
            quote_into(&mut s, ra);
            s.push_str(",\"Children\":null}}}");
        }
        s.push_str("}}");
    }
    s.push_str("}},\"1\":");
    node_head(&mut s, "/1", 0);
    s.push_str("\"\",\"Children\":{}}}},");

    // Event history: a ring of EVENT_CAPACITY slots.
    let mut slots: Vec<Option<String>> = vec![None; EVENT_CAPACITY];
    for (i, m, ra) in &indexed {
        let mut e = String::from("{\"action\":\"create\",\"node\":{\"key\":");
        quote_into(&mut e, &format!("/0/members/{:x}/raftAttributes", m.id));
        e.push_str(",\"value\":");
        quote_into(&mut e, ra);
        e.push_str(&format!(",\"modifiedIndex\":{i},\"createdIndex\":{i}}}}}"));
        let slot = ((*i - 1) as usize) % EVENT_CAPACITY;
        if let Some(x) = slots.get_mut(slot) {
            *x = Some(e);
        }
    }
    let size = members.len().min(EVENT_CAPACITY);
    let back = members.len() % EVENT_CAPACITY;
    let front = if members.len() > EVENT_CAPACITY {
        back
    } else {
        0
    };
    let start_index = if members.is_empty() {
        0
    } else {
        n.saturating_sub(EVENT_CAPACITY as u64) + 1
    };
    s.push_str("\"WatcherHub\":{\"EventHistory\":{\"Queue\":{\"Events\":[");
    for (k, slot) in slots.iter().enumerate() {
        if k > 0 {
            s.push(',');
        }
        s.push_str(slot.as_deref().unwrap_or("null"));
    }
    s.push_str(&format!(
        "],\"Size\":{size},\"Front\":{front},\"Back\":{back},\"Capacity\":{EVENT_CAPACITY}}},\"StartIndex\":{start_index},\"LastIndex\":{n}}}}},"
    ));
    s.push_str(&format!("\"CurrentIndex\":{n},"));
    s.push_str(&format!(
        "\"Stats\":{{\"getsSuccess\":0,\"getsFail\":0,\"setsSuccess\":0,\"setsFail\":0,\"deleteSuccess\":0,\"deleteFail\":0,\"updateSuccess\":0,\"updateFail\":0,\"createSuccess\":{n},\"createFail\":0,\"compareAndSwapSuccess\":0,\"compareAndSwapFail\":0,\"compareAndDeleteSuccess\":0,\"compareAndDeleteFail\":0,\"expireCount\":0,\"watchers\":0}},"
    ));
    s.push_str("\"CurrentVersion\":2}");
    s
}
