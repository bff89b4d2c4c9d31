//! [`Kv`] on a real etcd v3 cluster with `etcd-client`.
//!
//! Endpoint failover: etcd-client balances over all endpoints and, with one member down, fails a
//! quarter to a third of requests at once (measured; upstream etcd-client#39). So this client
//! keeps one connection per endpoint and tries them in turn: an idempotent call that fails with a
//! transport-level error moves on to the next endpoint, and the endpoint that answered becomes
//! the preferred one. Requests require a leader, so a partitioned member never serves stale data.
//!
//! With user/password auth, etcd-client authenticates inside `Client::connect`, so one
//! unreachable endpoint would fail the whole connect (and the daemon's start). So each endpoint
//! connects without credentials (lazily) and authenticates on its first use; an unreachable one
//! is then just `Unavailable` and the next endpoint is tried.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{
    Client, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, SortOrder, SortTarget,
    WatchOptions,
};
use tokio::sync::mpsc;

use super::kv::*;
use crate::config::EtcdSettings;

/// Connection settings beyond the endpoints.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// Time to establish a connection.
    pub dial_timeout: Duration,
    /// Time for one request.
    pub request_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            dial_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// The production [`Kv`].
#[derive(Clone)]
pub struct EtcdKv {
    clients: Arc<Vec<(String, Client)>>,
    preferred: Arc<AtomicUsize>,
    /// User and password, when auth is configured (never printed: see the `Debug` impl).
    creds: Option<(String, String)>,
    /// Per endpoint: authenticated already (the token lives in that endpoint's `Client`).
    authed: Arc<Vec<AtomicBool>>,
}

impl std::fmt::Debug for EtcdKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let eps: Vec<&str> = self.clients.iter().map(|(e, _)| e.as_str()).collect();
        f.debug_struct("EtcdKv").field("endpoints", &eps).finish()
    }
}

/// Maps etcd-client errors onto the protocol's error kinds.
fn map_err(e: etcd_client::Error) -> KvError {
    use etcd_client::Error as E;
    // etcd reports a missing lease with different codes on different calls (and through the
    // keep-alive stream); the message is stable.
    if e.to_string().contains("lease not found") {
        return KvError::LeaseNotFound(0);
    }
    match e {
        E::GRpcStatus(s) => {
            let msg = s.message().to_string();
            match s.code() {
                tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Cancelled
                | tonic::Code::Aborted => KvError::Unavailable(msg),
                tonic::Code::NotFound if msg.contains("lease not found") => {
                    KvError::LeaseNotFound(0)
                }
                tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
                    KvError::Denied(msg)
                }
                tonic::Code::OutOfRange if msg.contains("compacted") => KvError::Compacted(0),
                // etcd 3.4 reports a wrong password and missing credentials as InvalidArgument.
                tonic::Code::InvalidArgument
                    if msg.contains("authentication failed")
                        || msg.contains("user name is empty") =>
                {
                    KvError::Denied(msg)
                }
                _ if msg.contains("no leader") => KvError::Unavailable(msg),
                _ => KvError::Other(format!("{:?}: {msg}", s.code())),
            }
        }
        E::TransportError(t) => KvError::Unavailable(t.to_string()),
        E::IoError(io) => KvError::Unavailable(io.to_string()),
        E::LeaseKeepAliveError(m) => KvError::Unavailable(m),
        other => KvError::Other(other.to_string()),
    }
}

fn convert(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: kv.lease(),
    }
}

fn cmp_op(op: CmpOp) -> CompareOp {
    match op {
        CmpOp::Equal => CompareOp::Equal,
        CmpOp::Greater => CompareOp::Greater,
        CmpOp::Less => CompareOp::Less,
    }
}

fn txn_op(op: TxnOp) -> etcd_client::TxnOp {
    match op {
        TxnOp::Put { key, value, lease } => {
            let opts = (lease != 0).then(|| PutOptions::new().with_lease(lease));
            etcd_client::TxnOp::put(key, value, opts)
        }
        TxnOp::Delete(key) => etcd_client::TxnOp::delete(key, None),
        TxnOp::Get(key) => etcd_client::TxnOp::get(key, None),
    }
}

impl EtcdKv {
    /// Connects lazily to every endpoint (user/password and TLS from the settings). Fails only
    /// for malformed settings; unreachable endpoints show up as `Unavailable` on use, a wrong
    /// password as `Denied`.
    pub async fn connect(settings: &EtcdSettings, opts: &EtcdOptions) -> Result<EtcdKv, KvError> {
        let mut connect = ConnectOptions::new()
            .with_timeout(opts.request_timeout)
            .with_connect_timeout(opts.dial_timeout)
            .with_require_leader(true)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let mut creds = None;
        if let Some(auth) = &settings.auth {
            let password = std::fs::read_to_string(&auth.password_file).map_err(|e| {
                KvError::Other(format!(
                    "cannot read etcd_auth.password_file {}: {e}",
                    auth.password_file.display()
                ))
            })?;
            let password = password.lines().next().unwrap_or_default().to_string();
            // etcd auth tokens expire (simple: --auth-token-ttl without use, 300 s by default;
            // JWT: always); without the refresh every call fails with "invalid auth token" after.
            // The credentials themselves are set on first use (`with_failover`).
            connect = connect.with_auto_token_refresh(true);
            creds = Some((auth.username.clone(), password));
        }
        if let Some(tls) = &settings.tls {
            connect = connect.with_tls(tls_options(tls)?);
        }
        let mut clients = Vec::new();
        for ep in &settings.endpoints {
            let client = Client::connect([ep.as_str()], Some(connect.clone()))
                .await
                .map_err(|e| KvError::Other(format!("etcd endpoint {ep}: {e}")))?;
            clients.push((ep.clone(), client));
        }
        if clients.is_empty() {
            return Err(KvError::Other("no etcd endpoints configured".into()));
        }
        Ok(EtcdKv {
            authed: Arc::new(clients.iter().map(|_| AtomicBool::new(false)).collect()),
            clients: Arc::new(clients),
            preferred: Arc::new(AtomicUsize::new(0)),
            creds,
        })
    }

    /// Authenticates endpoint `idx` once, if auth is configured.
    async fn ensure_auth(&self, idx: usize) -> Result<(), KvError> {
        let Some(creds) = &self.creds else {
            return Ok(());
        };
        if self.authed[idx].load(Ordering::Acquire) {
            return Ok(());
        }
        let mut client = self.clients[idx].1.clone();
        client
            .update_user(Some(creds.clone()))
            .await
            .map_err(map_err)?;
        self.authed[idx].store(true, Ordering::Release);
        Ok(())
    }

    /// Runs `op` on the preferred endpoint, then on the others while it fails with
    /// `Unavailable` (for idempotent operations only).
    async fn with_failover<T, F, Fut>(&self, op: F) -> Result<T, KvError>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let n = self.clients.len();
        let start = self.preferred.load(Ordering::Relaxed) % n;
        let mut last = KvError::Unavailable("no endpoint tried".into());
        for i in 0..n {
            let idx = (start + i) % n;
            let (ep, client) = &self.clients[idx];
            let r = match self.ensure_auth(idx).await {
                Ok(()) => op(client.clone()).await.map_err(map_err),
                Err(e) => Err(e),
            };
            match r {
                Ok(v) => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(KvError::Unavailable(m)) => {
                    tracing::debug!(event = "etcd_endpoint_unavailable", endpoint = %ep, error = %m, "etcd endpoint unavailable; trying the next one");
                    last = KvError::Unavailable(format!("{ep}: {m}"));
                }
                Err(other) => return Err(other),
            }
        }
        Err(last)
    }
}

fn tls_options(tls: &crate::config::TlsSettings) -> Result<etcd_client::TlsOptions, KvError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| KvError::Other(format!("cannot read {}: {e}", p.display())))
    };
    let mut o = etcd_client::TlsOptions::new();
    if let Some(ca) = &tls.ca_file {
        o = o.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
    }
    if let Some((cert, key)) = &tls.client {
        o = o.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(o)
}

impl Kv for EtcdKv {
    async fn range(&self, prefix: &str, opts: RangeOpts) -> Result<RangeResult, KvError> {
        self.with_failover(|mut c| {
            let mut o = GetOptions::new().with_prefix();
            if opts.by_create_revision {
                o = o.with_sort(SortTarget::Create, SortOrder::Ascend);
            }
            if opts.limit > 0 {
                o = o.with_limit(opts.limit);
            }
            if opts.keys_only {
                o = o.with_keys_only();
            }
            if opts.max_create_revision > 0 {
                o = o.with_max_create_revision(opts.max_create_revision);
            }
            let prefix = prefix.to_string();
            async move {
                let r = c.get(prefix, Some(o)).await?;
                Ok(RangeResult {
                    revision: r.header().map_or(0, |h| h.revision()),
                    kvs: r.kvs().iter().map(convert).collect(),
                })
            }
        })
        .await
    }

    async fn identity(&self, probe_key: &str) -> Result<StoreIdentity, KvError> {
        self.with_failover(|mut c| {
            let key = probe_key.to_string();
            async move {
                let r = c.get(key, None).await?;
                // Every etcd response carries a header; a missing one reads as cluster 0,
                // which never matches a pinned identity (fail closed).
                Ok(StoreIdentity {
                    cluster_id: r.header().map_or(0, |h| h.cluster_id()),
                    revision: r.header().map_or(0, |h| h.revision()),
                })
            }
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision), KvError> {
        self.with_failover(|mut c| {
            let key = key.to_string();
            async move {
                let r = c.get(key, None).await?;
                Ok((
                    r.kvs().first().map(convert),
                    r.header().map_or(0, |h| h.revision()),
                ))
            }
        })
        .await
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: LeaseId) -> Result<Revision, KvError> {
        self.with_failover(|mut c| {
            let (key, value) = (key.to_string(), value.clone());
            async move {
                let opts = (lease != 0).then(|| PutOptions::new().with_lease(lease));
                let r = c.put(key, value, opts).await?;
                Ok(r.header().map_or(0, |h| h.revision()))
            }
        })
        .await
        .map_err(|e| lease_err(e, lease))
    }

    async fn delete(&self, key: &str) -> Result<(Revision, bool), KvError> {
        self.with_failover(|mut c| {
            let key = key.to_string();
            async move {
                let r = c.delete(key, None).await?;
                Ok((r.header().map_or(0, |h| h.revision()), r.deleted() > 0))
            }
        })
        .await
    }

    async fn txn(
        &self,
        compares: Vec<Compare>,
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
    ) -> Result<TxnResult, KvError> {
        let lease = success
            .iter()
            .chain(&failure)
            .find_map(|o| match o {
                TxnOp::Put { lease, .. } if *lease != 0 => Some(*lease),
                _ => None,
            })
            .unwrap_or(0);
        self.with_failover(|mut c| {
            let cmps: Vec<etcd_client::Compare> = compares
                .iter()
                .map(|cmp| match cmp {
                    Compare::CreateRevision(k, op, v) => {
                        etcd_client::Compare::create_revision(k.clone(), cmp_op(*op), *v)
                    }
                    Compare::Version(k, op, v) => {
                        etcd_client::Compare::version(k.clone(), cmp_op(*op), *v)
                    }
                    Compare::Value(k, op, v) => {
                        etcd_client::Compare::value(k.clone(), cmp_op(*op), v.clone())
                    }
                })
                .collect();
            let ok: Vec<etcd_client::TxnOp> = success.iter().cloned().map(txn_op).collect();
            let ko: Vec<etcd_client::TxnOp> = failure.iter().cloned().map(txn_op).collect();
            async move {
                let txn = etcd_client::Txn::new().when(cmps).and_then(ok).or_else(ko);
                let r = c.txn(txn).await?;
                let gets = r
                    .op_responses()
                    .into_iter()
                    .filter_map(|o| match o {
                        etcd_client::TxnOpResponse::Get(g) => Some(g.kvs().first().map(convert)),
                        _ => None,
                    })
                    .collect();
                Ok(TxnResult {
                    succeeded: r.succeeded(),
                    revision: r.header().map_or(0, |h| h.revision()),
                    gets,
                })
            }
        })
        .await
        .map_err(|e| lease_err(e, lease))
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId, KvError> {
        let secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        self.with_failover(|mut c| async move { Ok(c.lease_grant(secs, None).await?.id()) })
            .await
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration, KvError> {
        let ttl = self
            .with_failover(|mut c| async move {
                let (mut keeper, mut stream) = c.lease_keep_alive(id).await?;
                keeper.keep_alive().await?;
                match stream.message().await? {
                    Some(r) => Ok(r.ttl()),
                    None => Ok(0),
                }
            })
            .await
            .map_err(|e| lease_err(e, id))?;
        if ttl <= 0 {
            return Err(KvError::LeaseNotFound(id));
        }
        Ok(Duration::from_secs(u64::try_from(ttl).unwrap_or(0)))
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<(), KvError> {
        match self
            .with_failover(|mut c| async move { c.lease_revoke(id).await.map(|_| ()) })
            .await
        {
            Err(KvError::LeaseNotFound(_)) => Ok(()),
            other => other,
        }
    }

    async fn lease_ttl(&self, id: LeaseId) -> Result<Option<Duration>, KvError> {
        let ttl = self
            .with_failover(|mut c| async move { Ok(c.lease_time_to_live(id, None).await?.ttl()) })
            .await;
        match ttl {
            Ok(t) if t > 0 => Ok(Some(Duration::from_secs(u64::try_from(t).unwrap_or(0)))),
            Ok(_) | Err(KvError::LeaseNotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<WatchStream, KvError> {
        self.watch_one(prefix, true, start_revision).await
    }

    async fn watch_keys(
        &self,
        keys: &[String],
        start_revision: Revision,
    ) -> Result<WatchStream, KvError> {
        if let [only] = keys {
            return self.watch_one(only, false, start_revision).await;
        }
        // One etcd watch per key, merged; the forwarding tasks end (and drop their watches,
        // which cancels them) when the merged stream is dropped.
        let (tx, rx) = mpsc::channel(keys.len().max(1) * 4);
        for key in keys {
            let mut one = self.watch_one(key, false, start_revision).await?;
            let tx = tx.clone();
            tokio::spawn(async move {
                loop {
                    let batch = tokio::select! {
                        b = one.recv() => b,
                        () = tx.closed() => return,
                    };
                    let end = !matches!(batch, Some(Ok(_)));
                    let item =
                        batch.unwrap_or_else(|| Err(KvError::Unavailable("watch ended".into())));
                    if tx.send(item).await.is_err() || end {
                        return;
                    }
                }
            });
        }
        Ok(rx)
    }
}

impl EtcdKv {
    /// One etcd watch of `key` (with `prefix`: of every key under it) from `start_revision`.
    async fn watch_one(
        &self,
        key: &str,
        prefix: bool,
        start_revision: Revision,
    ) -> Result<WatchStream, KvError> {
        let mut stream = self
            .with_failover(|mut c| {
                let key = key.to_string();
                async move {
                    let mut o = WatchOptions::new().with_start_revision(start_revision);
                    if prefix {
                        o = o.with_prefix();
                    }
                    c.watch(key, Some(o)).await
                }
            })
            .await?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            // The stream lives in this task: dropping it cancels the watch.
            loop {
                let msg = tokio::select! {
                    m = stream.message() => m,
                    () = tx.closed() => return,
                };
                match msg {
                    Ok(Some(resp)) => {
                        if resp.canceled() {
                            let err = if resp.compact_revision() > 0 {
                                KvError::Compacted(resp.compact_revision())
                            } else {
                                KvError::Unavailable(format!(
                                    "watch canceled: {}",
                                    resp.cancel_reason()
                                ))
                            };
                            let _ = tx.send(Err(err)).await;
                            return;
                        }
                        let events: Vec<WatchEvent> = resp
                            .events()
                            .iter()
                            .filter_map(|e| {
                                let kv = e.kv()?;
                                Some(match e.event_type() {
                                    EventType::Put => WatchEvent::Put(convert(kv)),
                                    EventType::Delete => WatchEvent::Delete {
                                        key: String::from_utf8_lossy(kv.key()).into_owned(),
                                        mod_revision: kv.mod_revision(),
                                    },
                                })
                            })
                            .collect();
                        if !events.is_empty() && tx.send(Ok(events)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => {
                        let _ = tx
                            .send(Err(KvError::Unavailable("watch stream ended".into())))
                            .await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(map_err(e))).await;
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}

/// Fills in the lease id of a `LeaseNotFound` (etcd does not say which lease).
fn lease_err(e: KvError, lease: LeaseId) -> KvError {
    match e {
        KvError::LeaseNotFound(0) => KvError::LeaseNotFound(lease),
        other => other,
    }
}
