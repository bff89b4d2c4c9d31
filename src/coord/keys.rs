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
        // The namespace is always prepended, as in Go, even if the lock key repeats it.
        assert_eq!(
            Keys::new("/prod", "/prod/lock").slot_prefix(),
            "/prod/prod/lock/"
        );
    }
}
