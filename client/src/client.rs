//! [`Client`]: the commands, routed by key to the key's owner, with
//! failover down its replica list.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mcstore_protocol::request::Stats;
use mcstore_protocol::scan::{Scan, ScanItem, ScanReply, MAX_SCAN_LIMIT};
use mcstore_protocol::ClusterCommand;
use mcstore_protocol::{
    Arithmetic, Delete, FlushAll, Get, MetaArithmetic, MetaDelete, MetaGet, MetaReply, MetaRequest,
    MetaSet, Reply, Request, Store, StoreMode, Touch, MAX_KEY_LENGTH,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::conn::{Expect, Response};
use crate::error::{Error, Result};
use crate::pool::NodePool;
use crate::topology::{ServerConfig, Topology};

/// Which replica answers a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReadFrom {
    /// The key's owner, or the next live replica when it is down: a client
    /// reads its own writes.
    #[default]
    Owner,
    /// Any live replica, in turn: spreads reads over the replica set
    /// (eventually consistent: a replica may not have the latest write yet;
    /// the nodes must run with `--replica-reads` to answer from their copy).
    AnyReplica,
}

/// How a [`Client`] behaves. [`Config::default`] gives the defaults listed
/// on each field.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// How long a request waits for its reply (default 2 s).
    pub timeout: Duration,
    /// How long opening a connection may take (default 1 s).
    pub connect_timeout: Duration,
    /// Pipelined connections per server (default 2).
    pub connections_per_node: usize,
    /// How often a cluster topology is read again (default 2 s); it is also
    /// read again at once after a node fails to answer.
    pub refresh_interval: Duration,
    /// How long a server that failed to answer is passed over while its
    /// replicas can serve (default 1 s).
    pub failure_backoff: Duration,
    /// Which replica answers reads (default [`ReadFrom::Owner`]).
    pub read_from: ReadFrom,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            connections_per_node: 2,
            refresh_interval: Duration::from_secs(2),
            failure_backoff: Duration::from_secs(1),
            read_from: ReadFrom::Owner,
        }
    }
}

impl Config {
    /// Sets [`Config::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`Config::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`Config::connections_per_node`].
    pub fn connections_per_node(mut self, connections: usize) -> Self {
        self.connections_per_node = connections.max(1);
        self
    }

    /// Sets [`Config::refresh_interval`].
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// Sets [`Config::failure_backoff`].
    pub fn failure_backoff(mut self, backoff: Duration) -> Self {
        self.failure_backoff = backoff;
        self
    }

    /// Sets [`Config::read_from`].
    pub fn read_from(mut self, read_from: ReadFrom) -> Self {
        self.read_from = read_from;
        self
    }
}

/// An item read from a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The data.
    pub value: Bytes,
    /// The client flags.
    pub flags: u32,
    /// The cas unique (`gets`, `gats`; `None` for `get`, `gat`).
    pub cas: Option<u64>,
}

/// One page of a node's items ([`Client::scan_node`]).
#[derive(Debug, Clone, Default)]
pub struct ScanPage {
    /// The items, in key order.
    pub items: Vec<ScanItem>,
    /// Where the next page starts; `None` when the node has no more.
    pub next: Option<Bytes>,
}

/// What a request does, for failover: a read or an idempotent write may be
/// sent to the next replica after any failure to answer; a write that is
/// not idempotent (`incr`, `append`, ...) only when it was never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    WriteOnce,
}

/// A cluster-aware memcache client. Cheap to clone (the clones share
/// connections and topology); every method may be called concurrently, and
/// concurrent requests share pipelined connections.
///
/// ```no_run
/// # async fn demo() -> mcstore_client::Result<()> {
/// use mcstore_client::{Client, Error};
///
/// let client = Client::connect_seeds(["127.0.0.1:11211", "127.0.0.1:11212"]).await?;
/// client.set("greeting", "hello", 0, 0).await?;
/// let item = client.get("greeting").await?.expect("just stored");
/// assert_eq!(item.value, "hello");
/// match client.add("greeting", "again", 0, 0).await {
///     Err(Error::NotStored) => {}
///     other => panic!("{other:?}"),
/// }
/// assert_eq!(client.incr("visits", 1).await.ok(), None); // not found
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    /// The seeds of a cluster (empty for a static server list).
    seeds: Vec<String>,
    topology: RwLock<Arc<Topology>>,
    pools: RwLock<HashMap<String, Arc<NodePool>>>,
    /// Servers that failed to answer, and when.
    failed: Mutex<HashMap<String, Instant>>,
    refresh_now: Arc<Notify>,
    spread: AtomicUsize,
    refresher: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.refresher.lock().expect("refresher lock").take() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("seeds", &self.inner.seeds)
            .field("topology", &self.topology())
            .finish()
    }
}

/// Whether the text protocol can carry `key` (the meta commands' base64
/// keys carry any).
pub fn is_text_key(key: &[u8]) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LENGTH
        && !key.iter().any(|&b| matches!(b, b' ' | b'\r' | b'\n' | 0))
}

fn text_key(key: &[u8]) -> Result<Bytes> {
    if is_text_key(key) {
        Ok(Bytes::copy_from_slice(key))
    } else {
        Err(Error::Client(format!(
            "the text protocol cannot carry this key ({} bytes; 1 to {MAX_KEY_LENGTH}, no space, CR, LF or NUL): use the meta commands with a base64 key",
            key.len()
        )))
    }
}

fn encode(request: &Request) -> Bytes {
    let mut out = BytesMut::with_capacity(64);
    request.encode(&mut out);
    out.freeze()
}

/// An error line as an error; any other reply as itself.
fn check(reply: Reply) -> Result<Reply> {
    match reply {
        Reply::Error => Err(Error::Client("ERROR".into())),
        Reply::ErrorMessage(message) => Err(Error::Client(format!("ERROR{message}"))),
        Reply::ClientError(message) => Err(Error::Client(message.into_owned())),
        Reply::ServerError(message) => Err(Error::Server(message.into_owned())),
        other => Ok(other),
    }
}

fn one(response: Response) -> Result<Reply> {
    match response {
        Response::Replies(mut replies) if replies.len() == 1 => check(replies.remove(0)),
        other => Err(unexpected(&other)),
    }
}

fn replies(response: Response) -> Result<Vec<Reply>> {
    match response {
        Response::Replies(mut replies) => {
            if let Some(last) = replies.pop() {
                check(last)?;
            }
            Ok(replies)
        }
        other => Err(unexpected(&other)),
    }
}

fn unexpected(what: &impl std::fmt::Debug) -> Error {
    Error::Server(format!("unexpected reply: {what:?}"))
}

fn stored(reply: Reply) -> Result<()> {
    match reply {
        Reply::Stored => Ok(()),
        Reply::NotStored => Err(Error::NotStored),
        Reply::Exists => Err(Error::Exists),
        Reply::NotFound => Err(Error::NotFound),
        other => Err(unexpected(&other)),
    }
}

fn meta_reply(reply: Reply) -> Result<MetaReply> {
    match reply {
        Reply::Meta(meta) => Ok(meta),
        other => Err(unexpected(&other)),
    }
}

impl Client {
    /// Connects to a cluster: reads `stats cluster` from the first seed
    /// that answers and keeps the topology fresh from then on. Seeds are
    /// `host:port`, the addresses the nodes advertise.
    pub async fn connect_seeds<I, S>(seeds: I) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Client::connect_seeds_with(seeds, Config::default()).await
    }

    /// [`Client::connect_seeds`] with a configuration.
    pub async fn connect_seeds_with<I, S>(seeds: I, config: Config) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let seeds: Vec<String> = seeds.into_iter().map(Into::into).collect();
        if seeds.is_empty() {
            return Err(Error::NoNodeAvailable("no seed given".into()));
        }
        let topology = read_topology(&seeds, &config, &RwLock::default()).await?;
        let client = Client::new(seeds, topology, config);
        let weak = Arc::downgrade(&client.inner);
        let wake = client.inner.refresh_now.clone();
        let interval = client.inner.config.refresh_interval;
        let task = tokio::spawn(refresh_loop(weak, wake, interval));
        *client.inner.refresher.lock().expect("refresher lock") = Some(task);
        Ok(client)
    }

    /// A plain ketama client over a static server list, placing keys as
    /// libmemcached's `KETAMA_WEIGHTED` distribution does (the same key
    /// lands on the same server). Servers are `host:port`, `host:port:weight`
    /// or twemproxy's `host:port:weight name`. No topology is read and
    /// nothing fails over.
    ///
    /// ```no_run
    /// # async fn demo() -> mcstore_client::Result<()> {
    /// let client = mcstore_client::Client::connect_servers(["10.0.0.1:11211", "10.0.0.2:11211"])?;
    /// client.set("k", "v", 0, 60).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn connect_servers<I, S>(servers: I) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Client::connect_servers_with(servers, Config::default())
    }

    /// [`Client::connect_servers`] with a configuration.
    pub fn connect_servers_with<I, S>(servers: I, config: Config) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let servers = servers
            .into_iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<Vec<ServerConfig>>>()?;
        if servers.is_empty() {
            return Err(Error::NoNodeAvailable("no server given".into()));
        }
        Ok(Client::new(
            Vec::new(),
            Topology::from_servers(&servers)?,
            config,
        ))
    }

    fn new(seeds: Vec<String>, topology: Topology, config: Config) -> Client {
        Client {
            inner: Arc::new(Inner {
                config,
                seeds,
                topology: RwLock::new(Arc::new(topology)),
                pools: RwLock::default(),
                failed: Mutex::default(),
                refresh_now: Arc::new(Notify::new()),
                spread: AtomicUsize::new(0),
                refresher: Mutex::new(None),
            }),
        }
    }

    /// The current topology.
    pub fn topology(&self) -> Arc<Topology> {
        self.inner.topology.read().expect("topology lock").clone()
    }

    /// Reads the cluster's topology again now (a static list has nothing
    /// to read).
    pub async fn refresh(&self) -> Result<()> {
        self.inner.refresh().await
    }

    /// Requests sent to each server so far, by address.
    pub fn requests_per_node(&self) -> BTreeMap<String, u64> {
        self.inner
            .pools
            .read()
            .expect("pools lock")
            .iter()
            .map(|(addr, pool)| (addr.clone(), pool.requests.load(Ordering::Relaxed)))
            .collect()
    }

    /// The servers a request for `key` is tried on, in order.
    pub fn route(&self, key: &[u8], read: bool) -> Vec<String> {
        self.inner.candidates(key, read)
    }

    async fn keyed(
        &self,
        key: &[u8],
        bytes: Bytes,
        expect: Expect,
        kind: Kind,
    ) -> Result<Response> {
        let targets = self.inner.candidates(key, kind == Kind::Read);
        if targets.is_empty() {
            return Err(Error::NoNodeAvailable("no server holds this key".into()));
        }
        let mut last = None;
        for addr in targets {
            match self.inner.pool(&addr).call(bytes.clone(), expect).await {
                Ok(response) => {
                    self.inner.succeeded(&addr);
                    return Ok(response);
                }
                Err(err) if err.is_unavailable() => {
                    self.inner.failed(&addr);
                    let retry = kind != Kind::WriteOnce || err.was_unsent();
                    last = Some(err);
                    if !retry {
                        break;
                    }
                }
                Err(err) => return Err(err),
            }
        }
        Err(last.unwrap_or_else(|| Error::NoNodeAvailable("no replica answered".into())))
    }

    async fn keyed_one(&self, key: &[u8], request: &Request, kind: Kind) -> Result<Reply> {
        one(self.keyed(key, encode(request), Expect::One, kind).await?)
    }

    /// Reads one item (`get`); `None` on a miss.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Item>> {
        self.get_one(key.as_ref(), false, None).await
    }

    /// Reads one item with its cas unique (`gets`).
    pub async fn gets(&self, key: impl AsRef<[u8]>) -> Result<Option<Item>> {
        self.get_one(key.as_ref(), true, None).await
    }

    /// Reads one item and sets its exptime (`gat`).
    pub async fn gat(&self, key: impl AsRef<[u8]>, exptime: i32) -> Result<Option<Item>> {
        self.get_one(key.as_ref(), false, Some(exptime)).await
    }

    /// Reads one item with its cas unique and sets its exptime (`gats`).
    pub async fn gats(&self, key: impl AsRef<[u8]>, exptime: i32) -> Result<Option<Item>> {
        self.get_one(key.as_ref(), true, Some(exptime)).await
    }

    async fn get_one(
        &self,
        key: &[u8],
        with_cas: bool,
        touch: Option<i32>,
    ) -> Result<Option<Item>> {
        let key = text_key(key)?;
        let request = Request::Get(Get {
            keys: vec![key.clone()],
            with_cas,
            touch,
        });
        let kind = if touch.is_some() {
            Kind::Write
        } else {
            Kind::Read
        };
        let response = self
            .keyed(&key, encode(&request), Expect::UntilEnd, kind)
            .await?;
        let mut items = values(replies(response)?)?;
        Ok(items.remove(&key))
    }

    /// Reads many items (`get` to each owner, in parallel); the hits by key.
    pub async fn get_many<I, K>(&self, keys: I) -> Result<HashMap<Bytes, Item>>
    where
        I: IntoIterator<Item = K>,
        K: AsRef<[u8]>,
    {
        const KEYS_PER_GET: usize = 100;
        let mut groups: BTreeMap<String, Vec<Bytes>> = BTreeMap::new();
        for key in keys {
            let key = text_key(key.as_ref())?;
            let Some(first) = self.inner.candidates(&key, true).into_iter().next() else {
                return Err(Error::NoNodeAvailable("no server holds this key".into()));
            };
            groups.entry(first).or_default().push(key);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (addr, keys) in groups {
            for chunk in keys.chunks(KEYS_PER_GET) {
                let client = self.clone();
                let addr = addr.clone();
                let chunk = chunk.to_vec();
                tasks.spawn(async move { client.get_group(&addr, chunk).await });
            }
        }
        let mut found = HashMap::new();
        while let Some(joined) = tasks.join_next().await {
            let part = joined.map_err(|err| Error::Client(format!("get task failed: {err}")))??;
            found.extend(part);
        }
        Ok(found)
    }

    /// One `get` of keys that all go to `addr` first; if `addr` does not
    /// answer, each key is read on its own, with failover.
    async fn get_group(&self, addr: &str, keys: Vec<Bytes>) -> Result<HashMap<Bytes, Item>> {
        let request = Request::Get(Get {
            keys: keys.clone(),
            with_cas: false,
            touch: None,
        });
        match self
            .inner
            .pool(addr)
            .call(encode(&request), Expect::UntilEnd)
            .await
        {
            Ok(response) => {
                self.inner.succeeded(addr);
                values(replies(response)?)
            }
            Err(err) if err.is_unavailable() => {
                self.inner.failed(addr);
                let mut found = HashMap::new();
                for key in keys {
                    if let Some(item) = self.get(&key).await? {
                        found.insert(key, item);
                    }
                }
                Ok(found)
            }
            Err(err) => Err(err),
        }
    }

    async fn store(
        &self,
        mode: StoreMode,
        key: &[u8],
        value: Bytes,
        flags: u32,
        exptime: i32,
    ) -> Result<()> {
        let key = text_key(key)?;
        let kind = match mode {
            StoreMode::Set | StoreMode::Add | StoreMode::Replace => Kind::Write,
            StoreMode::Append | StoreMode::Prepend | StoreMode::Cas(_) => Kind::WriteOnce,
        };
        let request = Request::Store(Store {
            mode,
            key: key.clone(),
            flags,
            exptime,
            value,
            noreply: false,
        });
        stored(self.keyed_one(&key, &request, kind).await?)
    }

    /// Stores an item (`set`). `exptime`: 0 never expires, up to 30 days
    /// relative seconds, beyond that an absolute unix time, negative expired.
    pub async fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
        flags: u32,
        exptime: i32,
    ) -> Result<()> {
        self.store(StoreMode::Set, key.as_ref(), value.into(), flags, exptime)
            .await
    }

    /// Stores an item only if the key holds none (`add`); [`Error::NotStored`]
    /// otherwise.
    pub async fn add(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
        flags: u32,
        exptime: i32,
    ) -> Result<()> {
        self.store(StoreMode::Add, key.as_ref(), value.into(), flags, exptime)
            .await
    }

    /// Stores an item only if the key holds one (`replace`);
    /// [`Error::NotStored`] otherwise.
    pub async fn replace(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
        flags: u32,
        exptime: i32,
    ) -> Result<()> {
        self.store(
            StoreMode::Replace,
            key.as_ref(),
            value.into(),
            flags,
            exptime,
        )
        .await
    }

    /// Adds data after an item's data (`append`); [`Error::NotStored`]
    /// without an item.
    pub async fn append(&self, key: impl AsRef<[u8]>, value: impl Into<Bytes>) -> Result<()> {
        self.store(StoreMode::Append, key.as_ref(), value.into(), 0, 0)
            .await
    }

    /// Adds data before an item's data (`prepend`); [`Error::NotStored`]
    /// without an item.
    pub async fn prepend(&self, key: impl AsRef<[u8]>, value: impl Into<Bytes>) -> Result<()> {
        self.store(StoreMode::Prepend, key.as_ref(), value.into(), 0, 0)
            .await
    }

    /// Stores an item if its cas unique is still `cas` (`cas`);
    /// [`Error::Exists`] if it changed, [`Error::NotFound`] if it is gone.
    pub async fn cas(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
        flags: u32,
        exptime: i32,
        cas: u64,
    ) -> Result<()> {
        self.store(
            StoreMode::Cas(cas),
            key.as_ref(),
            value.into(),
            flags,
            exptime,
        )
        .await
    }

    /// Deletes an item (`delete`); [`Error::NotFound`] without one.
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<()> {
        let key = text_key(key.as_ref())?;
        let request = Request::Delete(Delete {
            key: key.clone(),
            noreply: false,
        });
        match self.keyed_one(&key, &request, Kind::Write).await? {
            Reply::Deleted => Ok(()),
            Reply::NotFound => Err(Error::NotFound),
            other => Err(unexpected(&other)),
        }
    }

    async fn arithmetic(&self, key: &[u8], increment: bool, delta: u64) -> Result<u64> {
        let key = text_key(key)?;
        let request = Request::Arithmetic(Arithmetic {
            key: key.clone(),
            increment,
            delta,
            noreply: false,
        });
        match self.keyed_one(&key, &request, Kind::WriteOnce).await? {
            Reply::Number(value) => Ok(value),
            Reply::NotFound => Err(Error::NotFound),
            other => Err(unexpected(&other)),
        }
    }

    /// Adds `delta` to a decimal value (`incr`, wrapping at 2^64); the new
    /// value, or [`Error::NotFound`].
    pub async fn incr(&self, key: impl AsRef<[u8]>, delta: u64) -> Result<u64> {
        self.arithmetic(key.as_ref(), true, delta).await
    }

    /// Subtracts `delta` from a decimal value (`decr`, stopping at 0).
    pub async fn decr(&self, key: impl AsRef<[u8]>, delta: u64) -> Result<u64> {
        self.arithmetic(key.as_ref(), false, delta).await
    }

    /// Sets an item's exptime (`touch`); [`Error::NotFound`] without one.
    pub async fn touch(&self, key: impl AsRef<[u8]>, exptime: i32) -> Result<()> {
        let key = text_key(key.as_ref())?;
        let request = Request::Touch(Touch {
            key: key.clone(),
            exptime,
            noreply: false,
        });
        match self.keyed_one(&key, &request, Kind::Write).await? {
            Reply::Touched => Ok(()),
            Reply::NotFound => Err(Error::NotFound),
            other => Err(unexpected(&other)),
        }
    }

    /// Invalidates every item (`flush_all`): in a cluster through one live
    /// node, which sends it to every other live member; over a static list
    /// on every server.
    pub async fn flush_all(&self) -> Result<()> {
        let request = encode(&Request::FlushAll(FlushAll {
            delay: 0,
            noreply: false,
        }));
        let topology = self.topology();
        let mut targets: Vec<String> = topology
            .ring_nodes()
            .filter(|n| n.is_live())
            .map(|n| n.addr.clone())
            .collect();
        let everywhere = !topology.is_cluster();
        if targets.is_empty() {
            return Err(Error::NoNodeAvailable("no live server".into()));
        }
        let mut last = None;
        for addr in targets.drain(..) {
            match self
                .inner
                .pool(&addr)
                .call(request.clone(), Expect::One)
                .await
            {
                Ok(response) => match one(response)? {
                    Reply::Ok if !everywhere => return Ok(()),
                    Reply::Ok => {}
                    other => return Err(unexpected(&other)),
                },
                Err(err) if err.is_unavailable() && !everywhere => last = Some(err),
                Err(err) => return Err(err),
            }
        }
        match last {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// `stats [group]` of one server, as name -> value.
    pub async fn stats_of(
        &self,
        addr: &str,
        group: Option<&str>,
    ) -> Result<BTreeMap<String, String>> {
        let stats = match group {
            None | Some("") => Stats::General,
            Some("settings") => Stats::Settings,
            Some(group) => Stats::Group(Bytes::copy_from_slice(group.as_bytes())),
        };
        let request = encode(&Request::Stats(stats));
        let response = self
            .inner
            .pool(addr)
            .call(request, Expect::UntilEnd)
            .await?;
        replies(response)?
            .into_iter()
            .map(|reply| match reply {
                Reply::Stat { name, value } => Ok((
                    String::from_utf8_lossy(&name).into_owned(),
                    String::from_utf8_lossy(&value).into_owned(),
                )),
                other => Err(unexpected(&other)),
            })
            .collect()
    }

    /// `stats [group]` of every server that has not left, by address (a
    /// server that does not answer has its error).
    pub async fn stats(
        &self,
        group: Option<&str>,
    ) -> Vec<(String, Result<BTreeMap<String, String>>)> {
        let topology = self.topology();
        let mut out = Vec::new();
        for node in topology.ring_nodes() {
            out.push((node.addr.clone(), self.stats_of(&node.addr, group).await));
        }
        out
    }

    /// Runs an `mcstore_cluster` command (leave, remove a dead member) on
    /// the node at `addr`; `Ok` once the node answered `OK`.
    pub async fn cluster_command(&self, addr: &str, command: ClusterCommand) -> Result<()> {
        let request = encode(&Request::Cluster(command));
        let response = self.inner.pool(addr).call(request, Expect::One).await?;
        match one(response)? {
            Reply::Ok => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// One page of the items stored on the server at `addr`
    /// (`mcstore_scan`): up to `limit` stored records after `after`
    /// examined (clamped to 1..=1000), expired and deleted ones left out.
    /// An mcstore node lists every item it stores, its replicas of other
    /// owners' keys included.
    pub async fn scan_node(
        &self,
        addr: &str,
        after: Option<Bytes>,
        limit: u32,
    ) -> Result<ScanPage> {
        let scan = Scan {
            limit: limit.clamp(1, MAX_SCAN_LIMIT),
            after,
        };
        let request = encode(&Request::Scan(scan));
        let response = self.inner.pool(addr).call(request, Expect::Scan).await?;
        let Response::Scan(lines) = response else {
            return Err(unexpected(&response));
        };
        let mut page = ScanPage::default();
        for line in lines {
            match line {
                ScanReply::Item(item) => page.items.push(item),
                ScanReply::Next(cursor) => page.next = Some(cursor),
                ScanReply::End => page.next = None,
                ScanReply::Other(reply) => {
                    check(reply.clone())?;
                    return Err(unexpected(&reply));
                }
            }
        }
        Ok(page)
    }

    async fn meta(&self, key: Bytes, request: MetaRequest, kind: Kind) -> Result<MetaReply> {
        let bytes = encode(&Request::Meta(request));
        meta_reply(one(self.keyed(&key, bytes, Expect::One, kind).await?)?)
    }

    /// Sends an `mg` to the key's owner; the reply as the server sent it
    /// (`VA`, `HD`, `EN`, with their flags). Build requests with
    /// [`crate::meta::get`]. `q` must not be set.
    pub async fn meta_get(&self, request: MetaGet) -> Result<MetaReply> {
        let kind = if MetaRequest::Get(request.clone()).is_write() {
            Kind::WriteOnce
        } else {
            Kind::Read
        };
        self.meta(request.key.clone(), MetaRequest::Get(request), kind)
            .await
    }

    /// Sends an `ms`; the reply (`HD`, `NS`, `EX`, `NF`). Build requests
    /// with [`crate::meta::set`]. `q` must not be set.
    pub async fn meta_set(&self, request: MetaSet) -> Result<MetaReply> {
        let kind = if request.compare_cas.is_none()
            && matches!(
                request.mode,
                mcstore_protocol::MetaSetMode::Set | mcstore_protocol::MetaSetMode::Add
            ) {
            Kind::Write
        } else {
            Kind::WriteOnce
        };
        self.meta(request.key.clone(), MetaRequest::Set(request), kind)
            .await
    }

    /// Sends an `md`; the reply (`HD`, `NF`, `EX`). Build requests with
    /// [`crate::meta::delete`]. `q` must not be set.
    pub async fn meta_delete(&self, request: MetaDelete) -> Result<MetaReply> {
        let kind = if request.invalidate || request.compare_cas.is_some() {
            Kind::WriteOnce
        } else {
            Kind::Write
        };
        self.meta(request.key.clone(), MetaRequest::Delete(request), kind)
            .await
    }

    /// Sends an `ma`; the reply (`HD` or `VA`, `NF`, `EX`). Build requests
    /// with [`crate::meta::arithmetic`]. `q` must not be set.
    pub async fn meta_arithmetic(&self, request: MetaArithmetic) -> Result<MetaReply> {
        self.meta(
            request.key.clone(),
            MetaRequest::Arithmetic(request),
            Kind::WriteOnce,
        )
        .await
    }
}

/// The `VALUE` replies of a get answer by key.
fn values(replies: Vec<Reply>) -> Result<HashMap<Bytes, Item>> {
    replies
        .into_iter()
        .map(|reply| match reply {
            Reply::Value(value) => Ok((
                value.key,
                Item {
                    value: value.data,
                    flags: value.flags,
                    cas: value.cas,
                },
            )),
            other => Err(unexpected(&other)),
        })
        .collect()
}

impl Inner {
    fn topology(&self) -> Arc<Topology> {
        self.topology.read().expect("topology lock").clone()
    }

    fn pool(&self, addr: &str) -> Arc<NodePool> {
        if let Some(pool) = self.pools.read().expect("pools lock").get(addr) {
            return pool.clone();
        }
        self.pools
            .write()
            .expect("pools lock")
            .entry(addr.to_owned())
            .or_insert_with(|| {
                Arc::new(NodePool::new(
                    addr,
                    self.config.connections_per_node,
                    self.config.timeout,
                    self.config.connect_timeout,
                ))
            })
            .clone()
    }

    fn recently_failed(&self, addr: &str) -> bool {
        let failed = self.failed.lock().expect("failed lock");
        failed
            .get(addr)
            .is_some_and(|at| at.elapsed() < self.config.failure_backoff)
    }

    fn failed(&self, addr: &str) {
        self.failed
            .lock()
            .expect("failed lock")
            .insert(addr.to_owned(), Instant::now());
        if !self.seeds.is_empty() {
            self.refresh_now.notify_one();
        }
    }

    fn succeeded(&self, addr: &str) {
        let mut failed = self.failed.lock().expect("failed lock");
        if !failed.is_empty() {
            failed.remove(addr);
        }
    }

    /// The servers to try for `key`, best first: its live replicas (owner
    /// first, or spread for [`ReadFrom::AnyReplica`] reads) that have not
    /// just failed; when there are none, every replica.
    fn candidates(&self, key: &[u8], read: bool) -> Vec<String> {
        let topology = self.topology();
        let replicas = topology.replicas(key);
        let mut live: Vec<String> = replicas
            .iter()
            .filter(|n| n.is_live() && !self.recently_failed(&n.addr))
            .map(|n| n.addr.clone())
            .collect();
        if live.is_empty() {
            return replicas.iter().map(|n| n.addr.clone()).collect();
        }
        if read && self.config.read_from == ReadFrom::AnyReplica && live.len() > 1 {
            let turn = self.spread.fetch_add(1, Ordering::Relaxed) % live.len();
            live.rotate_left(turn);
        }
        live
    }

    async fn refresh(&self) -> Result<()> {
        if self.seeds.is_empty() {
            return Ok(());
        }
        let mut addrs: Vec<String> = self
            .topology()
            .nodes()
            .iter()
            .filter(|n| n.is_live() && !self.recently_failed(&n.addr))
            .map(|n| n.addr.clone())
            .collect();
        for seed in &self.seeds {
            if !addrs.contains(seed) {
                addrs.push(seed.clone());
            }
        }
        let topology = read_topology(&addrs, &self.config, &self.pools).await?;
        *self.topology.write().expect("topology lock") = Arc::new(topology);
        Ok(())
    }
}

/// Reads `stats cluster` from the first of `addrs` that answers.
async fn read_topology(
    addrs: &[String],
    config: &Config,
    pools: &RwLock<HashMap<String, Arc<NodePool>>>,
) -> Result<Topology> {
    let mut errors = Vec::new();
    for addr in addrs {
        let pool = pools.read().expect("pools lock").get(addr).cloned();
        let pool = pool.unwrap_or_else(|| {
            Arc::new(NodePool::new(
                addr,
                1,
                config.timeout,
                config.connect_timeout,
            ))
        });
        let request = encode(&Request::Stats(Stats::Group(Bytes::from_static(
            b"cluster",
        ))));
        let stats = match pool.call(request, Expect::UntilEnd).await.and_then(replies) {
            Ok(stats) => stats,
            Err(err) => {
                errors.push(format!("{addr}: {err}"));
                continue;
            }
        };
        let pairs: Vec<(String, String)> = stats
            .into_iter()
            .filter_map(|reply| match reply {
                Reply::Stat { name, value } => Some((
                    String::from_utf8_lossy(&name).into_owned(),
                    String::from_utf8_lossy(&value).into_owned(),
                )),
                _ => None,
            })
            .collect();
        match Topology::from_cluster_stats(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))) {
            Ok(topology) => return Ok(topology),
            Err(err) => errors.push(format!("{addr}: {err}")),
        }
    }
    Err(Error::NoNodeAvailable(format!(
        "no seed answered stats cluster ({})",
        errors.join("; ")
    )))
}

/// Reads the topology every refresh interval, and soon after a failure
/// (failures within 100 ms make one refresh), until the client is dropped.
async fn refresh_loop(inner: Weak<Inner>, wake: Arc<Notify>, interval: Duration) {
    const COALESCE: Duration = Duration::from_millis(100);
    loop {
        let woken = tokio::select! {
            _ = wake.notified() => true,
            _ = tokio::time::sleep(interval) => false,
        };
        if woken {
            tokio::time::sleep(COALESCE).await;
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if let Err(err) = inner.refresh().await {
            tracing::debug!(cause = %err, "topology refresh failed");
        }
    }
}
