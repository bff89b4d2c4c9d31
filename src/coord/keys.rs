//! Every etcd key the daemon uses, in one place (SPEC §7). Names and the namespace rule are the
//! Go daemon's, so both daemons see the same keys during a migration: a key is
//! `"/" + trim(namespace, "/") + "/" + trim_left(key, "/")`, or `"/" + trim_left(key, "/")`
//! without a namespace. All keys live under the namespace, so one etcd RBAC role can cover them.

/// Key builder for one namespace and lock key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    ns: String,
    lock: String,
}

impl Keys {
    /// `namespace` as configured (normalised or not), `lock_key` as configured.
    pub fn new(namespace: &str, lock_key: &str) -> Keys {
        let ns = namespace.trim_matches('/');
        let ns = if ns.is_empty() {
            String::new()
        } else {
            format!("/{ns}")
        };
        let lock = format!("{ns}/{}", lock_key.trim_start_matches('/'));
        Keys { ns, lock }
    }

    fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.ns)
    }

    /// The namespace prefix (`""` or `/prod`), for RBAC docs and `cluster status`.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// Prefix of the slot queue: `<ns><lock_key>/` (the etcd mutex prefix).
    pub fn slot_prefix(&self) -> String {
        format!("{}/", self.lock)
    }

    /// This session's queue entry: `<ns><lock_key>/<lease-id-hex>` (etcd mutex key format).
    pub fn slot_entry(&self, lease: i64) -> String {
        format!("{}/{lease:x}", self.lock)
    }

    /// Prefix of every group pool: `<ns>/reboot_group/`. Deliberately **not** under
    /// `<ns><lock_key>/`: Go's `concurrency.Mutex` (and [`super::slots::wait_for_slot`]) count every
    /// key under the lock prefix as a queue entry, so a group entry there would take a place in
    /// the cluster pool.
    pub fn group_root(&self) -> String {
        self.key("reboot_group/")
    }

    /// Prefix of one group's pool: `<ns>/reboot_group/<group>/`.
    pub fn group_prefix(&self, group: &str) -> String {
        self.key(&format!("reboot_group/{group}/"))
    }

    /// This session's entry in `group`'s pool: `<ns>/reboot_group/<group>/<lease-id-hex>`.
    pub fn group_entry(&self, group: &str, lease: i64) -> String {
        self.key(&format!("reboot_group/{group}/{lease:x}"))
    }

    /// The group a key under [`Keys::group_root`] belongs to (`None` for any other key, or a
    /// key with no entry part).
    pub fn group_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        let rest = key.strip_prefix(&self.group_root())?;
        let (group, entry) = rest.split_once('/')?;
        (!group.is_empty() && !entry.is_empty()).then_some(group)
    }

    /// Whether the cluster pool's prefix and the group root contain one another (a `lock_key`
    /// such as `/reboot_group/db`): the pools would then count each other's entries, so a
    /// configuration with a group refuses it.
    pub fn group_root_overlaps_lock(&self) -> bool {
        let (lock, groups) = (self.slot_prefix(), self.group_root());
        lock.starts_with(&groups) || groups.starts_with(&lock)
    }

    /// `<ns>/reboot_cooldown`.
    pub fn cooldown(&self) -> String {
        self.key("reboot_cooldown")
    }

    /// `<ns>/cluster_health/`.
    pub fn health_prefix(&self) -> String {
        self.key("cluster_health/")
    }

    /// `<ns>/cluster_health/<node>`.
    pub fn health(&self, node: &str) -> String {
        self.key(&format!("cluster_health/{node}"))
    }

    /// `<ns>/reboot_in_progress/`.
    pub fn in_progress_prefix(&self) -> String {
        self.key("reboot_in_progress/")
    }

    /// `<ns>/reboot_in_progress/<node>`.
    pub fn in_progress(&self, node: &str) -> String {
        self.key(&format!("reboot_in_progress/{node}"))
    }

    /// `<ns>/pause`.
    pub fn pause(&self) -> String {
        self.key("pause")
    }

    /// `<ns>/store_accepted`: an operator accepted this store as the cluster's (after a
    /// restore or a replacement); carries its cluster id.
    pub fn store_accepted(&self) -> String {
        self.key("store_accepted")
    }

    /// `<ns>/node_state/` (the fleet view, SPEC §7).
    pub fn node_state_prefix(&self) -> String {
        self.key("node_state/")
    }

    /// `<ns>/node_state/<node>`: the node's decision state, on its session lease.
    pub fn node_state(&self, node: &str) -> String {
        self.key(&format!("node_state/{node}"))
    }

    /// `<ns>/reboot_request/`.
    pub fn request_prefix(&self) -> String {
        self.key("reboot_request/")
    }

    /// `<ns>/reboot_request/<node>`.
    pub fn request(&self, node: &str) -> String {
        self.key(&format!("reboot_request/{node}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_compatible_names() {
        let k = Keys::new("", "/cluster/clusterrebootd/lock");
        assert_eq!(k.slot_prefix(), "/cluster/clusterrebootd/lock/");
        assert_eq!(
            k.slot_entry(0x694d77b8e4a3c40b),
            "/cluster/clusterrebootd/lock/694d77b8e4a3c40b"
        );
        assert_eq!(k.cooldown(), "/reboot_cooldown");
        assert_eq!(k.health("n1"), "/cluster_health/n1");
        let k = Keys::new("prod/", "cluster/lock");
        assert_eq!(k.slot_prefix(), "/prod/cluster/lock/");
        assert_eq!(k.cooldown(), "/prod/reboot_cooldown");
        assert_eq!(k.in_progress("n2"), "/prod/reboot_in_progress/n2");
        assert_eq!(k.pause(), "/prod/pause");
        assert_eq!(k.request("n3"), "/prod/reboot_request/n3");
        assert_eq!(k.node_state("n3"), "/prod/node_state/n3");
        assert_eq!(k.group_root(), "/prod/reboot_group/");
        assert_eq!(k.group_prefix("db"), "/prod/reboot_group/db/");
        assert_eq!(
            k.group_entry("db", 0x694d77b8e4a3c40b),
            "/prod/reboot_group/db/694d77b8e4a3c40b"
        );
        assert_eq!(k.group_of("/prod/reboot_group/db/1f"), Some("db"));
        assert_eq!(k.group_of("/prod/reboot_group/db/"), None);
        assert_eq!(k.group_of("/prod/cluster/lock/1f"), None);
        // Group entries never sit under the lock prefix (Go's mutex would count them).
        assert!(!k.group_entry("db", 1).starts_with(&k.slot_prefix()));
        assert!(!k.group_root_overlaps_lock());
        // A lock key at or under the group root (or above it) would mix the pools.
        for lock in ["/reboot_group", "/reboot_group/db", "reboot_group/db/x"] {
            assert!(Keys::new("", lock).group_root_overlaps_lock(), "{lock}");
        }
        assert!(!Keys::new("", "/reboot_groups").group_root_overlaps_lock());
        // The namespace is always prepended, as in Go, even if the lock key repeats it.
        assert_eq!(
            Keys::new("/prod", "/prod/lock").slot_prefix(),
            "/prod/prod/lock/"
        );
    }
}
