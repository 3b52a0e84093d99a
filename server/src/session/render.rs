//! Rendering: storage outcomes and items become the exact reply bytes
//! memcached sends, for the text and the meta protocol.

use bytes::{BufMut, Bytes};
use mcstore_protocol::meta::{base64_encoded, encode_meta_value_header, return_flags, ItemMeta};
use mcstore_protocol::{
    encode_value_header, item_size, ExptimeChange, MetaArithmetic, MetaDebug, MetaDebugInfo,
    MetaDelete, MetaFlag, MetaGet, MetaReply, MetaRequest, MetaSet, MetaStatus, Reply,
};
use mcstore_storage::ops::{FetchedItem, Outcome};
use mcstore_storage::record::{MARK_BINARY_KEY, MARK_STALE, MARK_TOKEN_SENT};
use mcstore_storage::{Expiry, Lookup, Record};

use super::{lower, ReplyKind, Session};

/// The expiry a meta request's `t` reports: the item's as it was, or the
/// `T`/`N` exptime when that flag came before `t`.
fn reported_expiry(change: ExptimeChange, before: Expiry, now: u64) -> Expiry {
    match change {
        ExptimeChange::Unchanged => before,
        ExptimeChange::Touch(exptime) | ExptimeChange::Vivify(exptime) => {
            lower::expiry(exptime, now)
        }
    }
}

impl Session {
    pub(super) fn encode_outcome(&mut self, kind: ReplyKind, outcome: Outcome) {
        let reply = match (kind, outcome) {
            (ReplyKind::Silent, _) => return,
            (_, Outcome::Failed(err)) => Reply::ServerError(err.to_string().into()),
            (ReplyKind::Meta(request), outcome) => {
                self.encode_meta(request, outcome);
                return;
            }
            (ReplyKind::GatValue { key, with_cas }, Outcome::Fetched(item)) => {
                self.encode_value(&key, &item.record, with_cas);
                return;
            }
            (ReplyKind::GatValue { .. }, _) => return,
            (ReplyKind::Touch { .. }, Outcome::Fetched(_)) => Reply::Touched,
            (ReplyKind::FlushAll, _) => Reply::Ok,
            (_, Outcome::Stored { .. }) => Reply::Stored,
            (_, Outcome::NotStored) => Reply::NotStored,
            (_, Outcome::Exists) => Reply::Exists,
            (_, Outcome::Deleted) => Reply::Deleted,
            (_, Outcome::Counter(result)) => Reply::Number(result.number),
            (_, Outcome::NonNumeric) => {
                Reply::client_error("cannot increment or decrement non-numeric value")
            }
            _ => Reply::NotFound,
        };
        reply.encode(&mut self.output);
    }

    pub(super) fn encode_value(&mut self, key: &[u8], record: &Record, with_cas: bool) {
        let cas = with_cas.then_some(record.cas);
        encode_value_header(&mut self.output, key, record.flags, record.value.len(), cas);
        self.output.put_slice(&record.value);
        self.output.put_slice(b"\r\n");
    }

    fn encode_meta(&mut self, request: MetaRequest, outcome: Outcome) {
        let (status, flags) = match (request, outcome) {
            (MetaRequest::Get(get), Outcome::Fetched(item)) => {
                self.meta_get_hit(&get, item);
                return;
            }
            (MetaRequest::Get(get), _) => {
                self.meta_get_miss(&get);
                return;
            }
            (MetaRequest::Set(set), outcome) => meta_set_reply(&set, outcome),
            (MetaRequest::Delete(delete), outcome) => meta_delete_reply(&delete, outcome),
            (MetaRequest::Arithmetic(arith), outcome) => {
                match meta_arithmetic_reply(&arith, outcome) {
                    Ok(reply) => reply,
                    Err(reply) => {
                        reply.encode(&mut self.output);
                        return;
                    }
                }
            }
            (MetaRequest::Noop | MetaRequest::Debug(_), _) => return,
        };
        if let Some(status) = status {
            MetaReply { status, flags }.encode(&mut self.output);
        }
    }

    pub(super) fn meta_get_hit(&mut self, get: &MetaGet, item: FetchedItem) {
        let record = &item.record;
        let now = item.now;
        let seen = self.shared.access.observe(
            &get.key,
            record.cas,
            record.version.timestamp.secs(),
            now,
            !get.no_bump,
        );
        let ttl_expiry = reported_expiry(get.exptime(item.created, true), item.expiry_before, now);
        let meta = ItemMeta {
            cas: record.cas,
            flags: record.flags,
            fetched: seen.fetched,
            last_access: now.saturating_sub(seen.last_access),
            size: record.value.len() as u64,
            ttl: ttl_expiry.ttl_remaining(now),
        };
        let mut flags = return_flags(
            &get.returns,
            &get.key,
            record.has(MARK_BINARY_KEY),
            get.opaque.as_ref(),
            Some(&meta),
        );
        if item.marks_before & MARK_TOKEN_SENT != 0 {
            flags.push(MetaFlag::TokenSent);
        }
        if record.has(MARK_STALE) {
            flags.push(MetaFlag::Stale);
        }
        if item.won {
            flags.push(MetaFlag::Won);
        }
        if get.value {
            encode_meta_value_header(&mut self.output, record.value.len(), &flags);
            self.output.put_slice(&record.value);
            self.output.put_slice(b"\r\n");
        } else {
            MetaReply {
                status: MetaStatus::Done,
                flags,
            }
            .encode(&mut self.output);
        }
    }

    pub(super) fn meta_get_miss(&mut self, get: &MetaGet) {
        if get.quiet {
            return;
        }
        let flags = return_flags(
            &get.returns,
            &get.key,
            get.base64_key,
            get.opaque.as_ref(),
            None,
        );
        MetaReply {
            status: MetaStatus::Miss,
            flags,
        }
        .encode(&mut self.output);
    }

    pub(super) fn meta_debug(&mut self, debug: &MetaDebug) {
        let lookup = match self.store.get(&debug.key) {
            Ok(lookup) => lookup,
            Err(err) => {
                Reply::ServerError(err.to_string().into()).encode(&mut self.output);
                return;
            }
        };
        self.watch_lookup(&debug.key, &lookup);
        let Lookup::Hit(record) = lookup else {
            MetaReply::bare(MetaStatus::Miss).encode(&mut self.output);
            return;
        };
        let now = self.store.now_secs();
        let seen = self.shared.access.observe(
            &debug.key,
            record.cas,
            record.version.timestamp.secs(),
            now,
            false,
        );
        let key = if record.has(MARK_BINARY_KEY) {
            base64_encoded(&debug.key)
        } else {
            debug.key.clone()
        };
        let info = MetaDebugInfo {
            key,
            exp: match record.expiry {
                Expiry::Never => -1,
                Expiry::At(at) => now as i64 - at as i64,
            },
            la: now.saturating_sub(seen.last_access),
            cas: record.cas,
            fetch: seen.fetched,
            cls: 1,
            size: item_size(debug.key.len(), record.flags, record.value.len()),
        };
        Reply::MetaDebug(info).encode(&mut self.output);
    }
}

/// The `ms` reply: `HD` (hidden by `q`), `NS`, `EX`, `NF`, with `O`, `k`
/// and `c` (the new cas, 0 when nothing was stored).
fn meta_set_reply(set: &MetaSet, outcome: Outcome) -> (Option<MetaStatus>, Vec<MetaFlag>) {
    // `s` (newer than 1.6.18) reports the stored size, or the request's data
    // length when nothing was stored, as memcached's _finalize_mset does.
    let unstored = set.value.len() as u64;
    let (status, cas, size) = match outcome {
        Outcome::Stored { cas, size } => ((!set.quiet).then_some(MetaStatus::Done), cas, size),
        Outcome::NotStored => (Some(MetaStatus::NotStored), 0, unstored),
        Outcome::Exists => (Some(MetaStatus::Exists), 0, unstored),
        _ => (Some(MetaStatus::NotFound), 0, unstored),
    };
    let item = ItemMeta {
        cas,
        size,
        ..ItemMeta::default()
    };
    let flags = return_flags(
        &set.returns,
        &set.key,
        set.base64_key,
        set.opaque.as_ref(),
        Some(&item),
    );
    (status, flags)
}

/// The `md` reply: `HD` (hidden by `q`), `NF`, `EX`, with `O` and `k`.
fn meta_delete_reply(delete: &MetaDelete, outcome: Outcome) -> (Option<MetaStatus>, Vec<MetaFlag>) {
    let status = match outcome {
        Outcome::Deleted | Outcome::Invalidated { .. } => {
            (!delete.quiet).then_some(MetaStatus::Done)
        }
        Outcome::Exists => Some(MetaStatus::Exists),
        _ => Some(MetaStatus::NotFound),
    };
    let flags = return_flags(
        &delete.returns,
        &delete.key,
        delete.base64_key,
        delete.opaque.as_ref(),
        None,
    );
    (status, flags)
}

/// The `ma` reply: `HD` or `VA` with the number (hidden by `q` unless the
/// item was just created), `NF`, `EX`; or an error reply.
fn meta_arithmetic_reply(
    arith: &MetaArithmetic,
    outcome: Outcome,
) -> Result<(Option<MetaStatus>, Vec<MetaFlag>), Reply> {
    let flags = |item: Option<&ItemMeta>| {
        return_flags(
            &arith.returns,
            &arith.key,
            arith.base64_key,
            arith.opaque.as_ref(),
            item,
        )
    };
    Ok(match outcome {
        Outcome::Counter(result) => {
            let now = result.now;
            let ttl = reported_expiry(
                arith.exptime(result.created, true),
                result.expiry_before,
                now,
            );
            let item = ItemMeta {
                cas: result.record.cas,
                ttl: ttl.ttl_remaining(now),
                ..ItemMeta::default()
            };
            let status = if arith.quiet && !result.created {
                None
            } else if arith.value {
                Some(MetaStatus::Value(Bytes::from(result.number.to_string())))
            } else {
                Some(MetaStatus::Done)
            };
            (status, flags(Some(&item)))
        }
        Outcome::NonNumeric => {
            return Err(Reply::client_error(
                "cannot increment or decrement non-numeric value",
            ))
        }
        Outcome::Exists => (Some(MetaStatus::Exists), flags(None)),
        _ => (Some(MetaStatus::NotFound), flags(None)),
    })
}
