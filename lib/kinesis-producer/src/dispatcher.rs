//! The background task: batches accepted records per stream, keeps up to `max_in_flight`
//! PutRecords requests going, retries what failed, and settles every record exactly once.
//!
//! It owns all queues, so nothing on the hot path takes a lock except a ticket's (once per
//! run of records from the same `submit` call).

use std::cmp::Ordering as CmpOrdering;
use std::collections::hash_map::{Entry as MapEntry, RandomState};
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::put_records::{PutRecordsError, PutRecordsOutput};
use aws_smithy_types::body::SdkBody;
use rand::Rng;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

use crate::aggregate::{self, Limits, Wire};
use crate::body::{WireRecord, put_records_body};
use crate::record::{DeadLetter, Entry, TicketShared};
use crate::shards::{ShardMap, list_open_shards};
use crate::{CloseReport, ProducerStats};

/// State shared by the producer handles and the background task.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) stats: ProducerStats,
    /// Signalled whenever buffer space is released (and on close).
    pub(crate) space: Notify,
    pub(crate) closed: AtomicBool,
    /// Set by [`Producer::drain_by`](crate::Producer::drain_by): after this, no record is
    /// accepted and a call waiting for space gives up.
    pub(crate) drain_deadline: std::sync::Mutex<Option<Instant>>,
    /// Records a `submit` refused because of a close or a passed drain deadline: they
    /// belong in the close report's `undelivered` too.
    pub(crate) refused: std::sync::Mutex<Vec<DeadLetter>>,
}

impl Shared {
    /// The drain deadline, if a drain was requested.
    pub(crate) fn drain_deadline(&self) -> Option<Instant> {
        *self
            .drain_deadline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub(crate) enum Command {
    /// Records admitted into the buffer (their space is already counted).
    Enqueue(Vec<Entry>),
    /// Flush without lingering but keep accepting; at `deadline`, give up on what is left
    /// and on anything enqueued later.
    Drain { deadline: Instant },
    /// Flush everything; give up on what is left when `until` says so.
    Close {
        until: GiveUp,
        reply: oneshot::Sender<CloseReport>,
    },
}

/// When a close gives up on the records it could not deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GiveUp {
    /// At a fixed instant (a stop on a signal: bounded whatever the stream does).
    At(Instant),
    /// Once no record was settled (acknowledged or dead-lettered) for this long: a drain
    /// that goes on as long as the stream takes records, however slowly.
    AfterStall(Duration),
}

/// The parts of the configuration the task needs.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) default_stream: String,
    pub(crate) max_records_per_request: usize,
    pub(crate) max_request_bytes: usize,
    pub(crate) linger: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) ordered: bool,
    pub(crate) retry_base: Duration,
    pub(crate) retry_cap: Duration,
    pub(crate) record_deadline: Duration,
    /// Pack user records into KPL aggregated records (`aggregate.rs`).
    pub(crate) aggregate: bool,
    /// The record limit, which bounds an aggregated record too.
    pub(crate) max_record_bytes: usize,
}

/// Kinesis bills PUT payload units of 25 KiB, at least one per record.
const PAYLOAD_UNIT_BYTES: usize = 25 * 1024;

/// A stream's shard map, for aggregation (`shards.rs`).
#[derive(Debug)]
enum ShardMapState {
    /// Not aggregating: every record goes plain.
    Off,
    /// ListShards is being read and no map is known: the stream's records wait for it.
    Reading,
    Known(Arc<ShardMap>),
    /// ListShards failed `failures` times in a row; another read is scheduled, and
    /// meanwhile records go plain.
    Plain {
        failures: u32,
    },
}

type ShardLookup = (usize, Result<ShardMap, String>);

type PutResult = Result<
    PutRecordsOutput,
    SdkError<PutRecordsError, aws_sdk_kinesis::config::http::HttpResponse>,
>;

struct StreamState {
    /// Name or ARN, as given.
    target: String,
    /// Records that may be sent now (in ordered mode: only the first open record of each key).
    ready: VecDeque<Entry>,
    ready_bytes: usize,
    /// When the oldest record in `ready` has lingered long enough.
    due: Option<Instant>,
    /// Requests to send as they are, before anything in `ready`: the halves of a rejected
    /// request.
    isolated: VecDeque<Vec<Entry>>,
    /// Ordered mode: for every key with a record outstanding (ready, in flight or waiting to
    /// be retried), the later records of that key, held back until it settles. Keyed by a
    /// 64-bit hash of the key (no copy of the key, one hash per lookup): two keys with the
    /// same hash would share a chain, which keeps both in order and only slows them down.
    chains: HashMap<u64, VecDeque<Entry>, BuildHasherDefault<PreHashed>>,
    shard_map: ShardMapState,
}

struct InFlight {
    stream: usize,
    entries: Vec<Entry>,
    /// How `entries` were packed into Kinesis records, when they were aggregated.
    wires: Option<Vec<Wire>>,
    /// When the request was handed to the client (its latency starts there).
    sent_at: Instant,
}

/// Records of one failed request (or the failed part of it), to be sent again at `at`.
struct RetryGroup {
    at: Instant,
    seq: u64,
    stream: usize,
    entries: Vec<Entry>,
}

impl PartialEq for RetryGroup {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for RetryGroup {}
impl PartialOrd for RetryGroup {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for RetryGroup {
    /// Reversed, so that the max-heap pops the earliest group first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// What a whole-request failure means for its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Transient (5xx, timeout, connection, throttling): retry after a backoff.
    Retry { throttled: bool },
    /// ResourceNotFoundException: the stream does not exist (any more).
    NotFound,
    /// The request itself is unacceptable (validation error, 413): one of its records is, so
    /// split the request until the culprit is alone, and dead-letter it.
    Rejected,
}

pub(crate) struct Dispatcher {
    client: Client,
    shared: Arc<Shared>,
    settings: Settings,
    rx: mpsc::UnboundedReceiver<Command>,
    rx_open: bool,
    streams: Vec<StreamState>,
    stream_index: HashMap<String, usize>,
    next_stream: usize,
    requests: JoinSet<PutResult>,
    in_flight: HashMap<Id, InFlight>,
    /// ListShards reads under way (aggregation only).
    lookups: JoinSet<ShardLookup>,
    retries: BinaryHeap<RetryGroup>,
    retry_seq: u64,
    /// Records admitted and not yet settled.
    open_records: usize,
    closing: Option<(GiveUp, oneshot::Sender<CloseReport>)>,
    /// From [`Command::Drain`].
    drain_by: Option<Instant>,
    /// When a record was last settled (or the close began): a stall counts from here.
    last_progress: Instant,
    /// Set when a close gave up because nothing was settled for its stall bound.
    stalled: Option<Duration>,
    undelivered: Vec<DeadLetter>,
    /// Hashes partition keys for the ordered-mode chains (SipHash with random keys).
    key_hasher: RandomState,
}

impl Dispatcher {
    pub(crate) fn new(
        client: Client,
        shared: Arc<Shared>,
        settings: Settings,
        rx: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        let default = StreamState::new(settings.default_stream.clone(), settings.aggregate);
        Self {
            client,
            shared,
            settings,
            rx,
            rx_open: true,
            streams: vec![default],
            stream_index: HashMap::new(),
            next_stream: 0,
            requests: JoinSet::new(),
            in_flight: HashMap::new(),
            lookups: JoinSet::new(),
            retries: BinaryHeap::new(),
            retry_seq: 0,
            open_records: 0,
            closing: None,
            drain_by: None,
            last_progress: Instant::now(),
            stalled: None,
            undelivered: Vec::new(),
            key_hasher: RandomState::new(),
        }
    }

    /// Runs until closed (and flushed or timed out), or until every handle is dropped and
    /// everything accepted is settled.
    pub(crate) async fn run(mut self) {
        if self.settings.aggregate {
            self.read_shard_map(0, Duration::ZERO);
        }
        loop {
            let now = Instant::now();
            // Past the deadline nothing more is sent, not even what was enqueued just now.
            if self.give_up_at().is_some_and(|deadline| deadline <= now) {
                let why = self.why_give_up(now);
                self.abandon_everything(&why);
            } else {
                self.promote_due_retries(now);
                self.dispatch(now);
            }
            if self.finished() {
                break;
            }
            let wake = self.next_wakeup(now);
            tokio::select! {
                biased;
                Some(done) = self.requests.join_next_with_id() => self.on_response(done),
                Some(done) = self.lookups.join_next(), if !self.lookups.is_empty() => {
                    self.on_shard_map(done);
                }
                cmd = self.rx.recv(), if self.rx_open => {
                    self.on_command(cmd);
                    // Take whatever else is queued before sending, so that batches fill up.
                    for _ in 0..64 {
                        match self.rx.try_recv() {
                            Ok(cmd) => self.on_command(Some(cmd)),
                            Err(_) => break,
                        }
                    }
                }
                () = sleep_until_opt(wake) => {}
            }
        }
        if let Some((_, reply)) = self.closing.take() {
            let stats = &self.shared.stats;
            let report = CloseReport {
                records_acked: stats.records_acked(),
                dead_lettered: stats.dead_lettered(),
                undelivered: {
                    let mut undelivered = std::mem::take(&mut self.undelivered);
                    undelivered.append(
                        &mut self
                            .shared
                            .refused
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner),
                    );
                    undelivered
                },
                stalled: self.stalled,
            };
            // The closer may have given up waiting.
            let _ = reply.send(report);
        }
        debug!("Kinesis producer task finished");
    }

    /// Flush without lingering: when draining, after close, or once every handle is gone.
    fn flushing(&self) -> bool {
        self.shutting_down() || !self.rx_open
    }

    /// A drain or a close was requested: what fails from now on is left undelivered.
    fn shutting_down(&self) -> bool {
        self.closing.is_some() || self.drain_by.is_some()
    }

    /// When whatever is left is given up: the earlier of the drain deadline and the
    /// close's bound (a deadline, or the last progress plus the stall bound).
    fn give_up_at(&self) -> Option<Instant> {
        let close = self.closing.as_ref().map(|(until, _)| match *until {
            GiveUp::At(deadline) => deadline,
            GiveUp::AfterStall(stall) => self.last_progress + stall,
        });
        match (close, self.drain_by) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Why the records left are given up at `now` (the start of their dead letters' reason);
    /// records a stall.
    fn why_give_up(&mut self, now: Instant) -> String {
        let deadline_passed = self.drain_by.is_some_and(|d| d <= now)
            || matches!(self.closing, Some((GiveUp::At(d), _)) if d <= now);
        match self.closing {
            Some((GiveUp::AfterStall(stall), _)) if !deadline_passed => {
                let open_records = self.open_records;
                warn!(
                    open_records,
                    stall_ms = stall.as_millis() as u64,
                    "the drain stalled: no record was acknowledged for the stall bound; dead-lettering what is left"
                );
                self.stalled = Some(stall);
                format!(
                    "the drain stalled (no record acknowledged for {} ms)",
                    stall.as_millis()
                )
            }
            _ => "shutdown timeout passed".to_owned(),
        }
    }

    /// A drain alone does not end the task: handles may still submit (and be refused).
    fn finished(&self) -> bool {
        (self.closing.is_some() || !self.rx_open)
            && self.open_records == 0
            && self.requests.is_empty()
    }

    fn on_command(&mut self, cmd: Option<Command>) {
        match cmd {
            Some(Command::Enqueue(entries)) => {
                self.open_records += entries.len();
                for e in entries {
                    let s = self.stream_of(e.stream());
                    if self.settings.ordered {
                        let h = self.key_hasher.hash_one(e.key.as_str());
                        match self.streams[s].chains.entry(h) {
                            MapEntry::Occupied(mut waiting) => {
                                waiting.get_mut().push_back(e);
                                continue;
                            }
                            MapEntry::Vacant(v) => {
                                v.insert(VecDeque::new());
                            }
                        }
                    }
                    self.push_ready(s, e);
                }
            }
            Some(Command::Drain { deadline }) => {
                debug!(
                    open_records = self.open_records,
                    "draining the Kinesis producer"
                );
                self.drain_by = Some(self.drain_by.map_or(deadline, |d| d.min(deadline)));
            }
            Some(Command::Close { until, reply }) => {
                debug!(
                    open_records = self.open_records,
                    ?until,
                    "closing the Kinesis producer"
                );
                // A stall counts from the close, not from whenever a record last settled.
                self.last_progress = Instant::now();
                self.closing = Some((until, reply));
            }
            None => {
                debug!(
                    open_records = self.open_records,
                    "every producer handle dropped; delivering what is left"
                );
                self.rx_open = false;
            }
        }
    }

    fn stream_of(&mut self, stream: Option<&str>) -> usize {
        let Some(name) = stream else { return 0 };
        if name == self.settings.default_stream {
            return 0;
        }
        if let Some(&i) = self.stream_index.get(name) {
            return i;
        }
        self.streams
            .push(StreamState::new(name.to_owned(), self.settings.aggregate));
        let i = self.streams.len() - 1;
        self.stream_index.insert(name.to_owned(), i);
        if self.settings.aggregate {
            self.read_shard_map(i, Duration::ZERO);
        }
        i
    }

    fn push_ready(&mut self, s: usize, e: Entry) {
        // Due `linger` after acceptance, i.e. `record_deadline - linger` before the deadline.
        let due = match self
            .settings
            .record_deadline
            .checked_sub(self.settings.linger)
        {
            Some(d) => e.deadline.checked_sub(d).unwrap_or(e.deadline),
            None => e.deadline + (self.settings.linger - self.settings.record_deadline),
        };
        let st = &mut self.streams[s];
        st.ready_bytes += e.size;
        st.ready.push_back(e);
        st.due = Some(st.due.map_or(due, |d| d.min(due)));
    }

    /// Puts records that must go next (retries, halves of a rejected request) at the head of
    /// the queue, keeping their order, due at once.
    fn push_front_now(&mut self, s: usize, entries: Vec<Entry>, now: Instant) {
        let st = &mut self.streams[s];
        for e in entries.into_iter().rev() {
            st.ready_bytes += e.size;
            st.ready.push_front(e);
        }
        st.due = Some(now);
    }

    fn promote_due_retries(&mut self, now: Instant) {
        while self.retries.peek().is_some_and(|g| g.at <= now) {
            if let Some(g) = self.retries.pop() {
                self.push_front_now(g.stream, g.entries, now);
            }
        }
    }

    fn is_due(&self, s: usize, now: Instant) -> bool {
        let st = &self.streams[s];
        if !st.isolated.is_empty() {
            return true;
        }
        // Aggregated, many user records share a Kinesis record: only bytes fill a request.
        let (wait, counted) = match st.shard_map {
            ShardMapState::Reading => (true, false),
            ShardMapState::Known(_) => (false, false),
            ShardMapState::Off | ShardMapState::Plain { .. } => (false, true),
        };
        !wait
            && !st.ready.is_empty()
            && ((counted && st.ready.len() >= self.settings.max_records_per_request)
                || st.ready_bytes > self.settings.max_request_bytes
                || self.flushing()
                || st.due.is_some_and(|d| d <= now))
    }

    /// Sends due batches while request slots are free, taking streams in turn.
    fn dispatch(&mut self, now: Instant) {
        while self.requests.len() < self.settings.max_in_flight {
            let n = self.streams.len();
            let Some(s) = (0..n)
                .map(|i| (self.next_stream + i) % n)
                .find(|&s| self.is_due(s, now))
            else {
                break;
            };
            self.next_stream = (s + 1) % n;
            self.send(s, now);
        }
    }

    fn drop_expired(&mut self, s: usize, batch: Vec<Entry>, now: Instant) -> Vec<Entry> {
        let (live, expired): (Vec<Entry>, Vec<Entry>) =
            batch.into_iter().partition(|e| e.deadline > now);
        for e in expired {
            let reason = format!("deadline passed {}", e.history());
            self.dead_letter(s, e, reason);
        }
        live
    }

    fn take_batch(&mut self, s: usize, now: Instant) -> Vec<Entry> {
        let max_records = self.settings.max_records_per_request;
        let max_bytes = self.settings.max_request_bytes;
        let mut batch = Vec::with_capacity(max_records.min(self.streams[s].ready.len()));
        let mut bytes = 0;
        let mut expired = Vec::new();
        let st = &mut self.streams[s];
        while batch.len() < max_records {
            let Some(front) = st.ready.front() else { break };
            if !batch.is_empty() && bytes + front.size > max_bytes {
                break;
            }
            let Some(e) = st.ready.pop_front() else { break };
            st.ready_bytes -= e.size;
            if e.deadline <= now {
                expired.push(e);
                continue;
            }
            bytes += e.size;
            batch.push(e);
        }
        st.due = if st.ready.is_empty() {
            None
        } else {
            // What is left waited behind a full batch: it goes as soon as a slot frees.
            Some(now)
        };
        for e in expired {
            let reason = format!("deadline passed {}", e.history());
            self.dead_letter(s, e, reason);
        }
        batch
    }

    /// Takes the next request's records aggregated by predicted shard (`aggregate.rs`).
    fn take_packed(&mut self, s: usize, map: &ShardMap, now: Instant) -> (Vec<Entry>, Vec<Wire>) {
        let limits = Limits {
            records: self.settings.max_records_per_request,
            request_bytes: self.settings.max_request_bytes,
            record_bytes: self.settings.max_record_bytes,
        };
        let st = &mut self.streams[s];
        let (packed, expired) =
            aggregate::pack(&mut st.ready, &mut st.ready_bytes, map, limits, now);
        // What is left waited behind a full request: it goes as soon as a slot frees.
        st.due = (!st.ready.is_empty()).then_some(now);
        for e in expired {
            let reason = format!("deadline passed {}", e.history());
            self.dead_letter(s, e, reason);
        }
        (packed.entries, packed.wires)
    }

    fn send(&mut self, s: usize, now: Instant) {
        let known = match &self.streams[s].shard_map {
            ShardMapState::Known(map) => Some(Arc::clone(map)),
            _ => None,
        };
        // The halves of a rejected request go plain, so that the split finds the user
        // record at fault.
        let (mut batch, mut wires) = match (self.streams[s].isolated.pop_front(), known) {
            (Some(batch), _) => (self.drop_expired(s, batch, now), None),
            (None, Some(map)) => {
                let (batch, wires) = self.take_packed(s, &map, now);
                (batch, Some(wires))
            }
            (None, None) => (self.take_batch(s, now), None),
        };
        if batch.is_empty() {
            return;
        }
        for e in &mut batch {
            e.attempts += 1;
        }
        let stats = &self.shared.stats;
        ProducerStats::add(&stats.requests, 1);
        ProducerStats::add(&stats.in_flight_requests, 1);
        ProducerStats::add(&stats.in_flight_records, batch.len() as u64);
        let target = &self.streams[s].target;
        let body = match &mut wires {
            Some(wires) => {
                let mut records = Vec::with_capacity(wires.len());
                let mut at = 0;
                for w in wires.iter() {
                    let first = &batch[at];
                    records.push(match &w.aggregate {
                        Some(data) => WireRecord {
                            data,
                            ..WireRecord::from(first)
                        },
                        None => WireRecord::from(first),
                    });
                    at += w.records;
                }
                let body = put_records_body(records.iter().copied(), target);
                // The body holds the aggregated bytes now; the entries are kept for retries.
                for w in wires.iter_mut() {
                    w.aggregate = None;
                }
                body
            }
            None => put_records_body(batch.iter().map(WireRecord::from), target),
        };
        // The SDK serialises an input without records (a few bytes); the body written
        // above replaces it before signing, so SigV4 signs what is sent.
        let call = self.client.put_records();
        let call = if target.starts_with("arn:") {
            call.stream_arn(target.clone())
        } else {
            call.stream_name(target.clone())
        };
        let call = call.customize().mutate_request(move |request| {
            request
                .headers_mut()
                .insert("content-length", body.len().to_string());
            *request.body_mut() = SdkBody::from(body.clone());
        });
        let handle = self.requests.spawn(call.send());
        self.in_flight.insert(
            handle.id(),
            InFlight {
                stream: s,
                entries: batch,
                wires,
                sent_at: now,
            },
        );
    }

    fn on_response(&mut self, done: Result<(Id, PutResult), JoinError>) {
        let (id, result) = match done {
            Ok((id, r)) => (id, Ok(r)),
            Err(e) => (e.id(), Err(e)),
        };
        let Some(InFlight {
            stream,
            entries,
            wires,
            sent_at,
        }) = self.in_flight.remove(&id)
        else {
            return;
        };
        let stats = &self.shared.stats;
        ProducerStats::sub(&stats.in_flight_requests, 1);
        ProducerStats::sub(&stats.in_flight_records, entries.len() as u64);
        let now = Instant::now();
        stats
            .request_latency
            .observe(now.saturating_duration_since(sent_at));
        match result {
            Ok(Ok(output)) => match wires {
                Some(wires) => self.on_packed_output(stream, entries, &wires, &output, now),
                None => self.on_output(stream, entries, &output, now),
            },
            Ok(Err(err)) => {
                let (verdict, message) = classify(&err);
                self.on_request_failure(stream, entries, verdict, message, now);
            }
            Err(join) => {
                let message = format!("the request task failed: {join}");
                self.on_request_failure(
                    stream,
                    entries,
                    Verdict::Retry { throttled: false },
                    message,
                    now,
                );
            }
        }
    }

    fn on_output(&mut self, s: usize, entries: Vec<Entry>, out: &PutRecordsOutput, now: Instant) {
        let results = out.records();
        if results.len() != entries.len() {
            let message = format!(
                "malformed PutRecords response: {} results for {} records",
                results.len(),
                entries.len()
            );
            let verdict = Verdict::Retry { throttled: false };
            return self.on_request_failure(s, entries, verdict, message, now);
        }
        if out.failed_record_count() == Some(0) {
            let units = entries.iter().map(|e| payload_units(e.size)).sum();
            ProducerStats::add(&self.shared.stats.payload_units, units);
            return self.ack(s, entries);
        }
        let units = entries
            .iter()
            .zip(results)
            .filter(|(_, r)| r.error_code().is_none())
            .map(|(e, _)| payload_units(e.size))
            .sum();
        ProducerStats::add(&self.shared.stats.payload_units, units);
        let mut acked = Vec::with_capacity(entries.len());
        let mut failed = Vec::new();
        let mut throttled = 0u64;
        for (mut e, r) in entries.into_iter().zip(results) {
            match r.error_code() {
                None => acked.push(e),
                Some(code) => {
                    if code == "ProvisionedThroughputExceededException" {
                        throttled += 1;
                    }
                    let message = match r.error_message() {
                        Some(m) => format!("{code}: {m}"),
                        None => code.to_owned(),
                    };
                    e.set_last_error(message.into());
                    failed.push(e);
                }
            }
        }
        ProducerStats::add(&self.shared.stats.throttled_records, throttled);
        debug!(
            stream = %self.streams[s].target,
            acked = acked.len(),
            failed = failed.len(),
            throttled,
            "PutRecords partially failed; retrying the failed records"
        );
        self.ack(s, acked);
        self.retry_later(s, failed, now);
    }

    /// The answer to a request of aggregated records: each result settles every user
    /// record of its Kinesis record alike.
    fn on_packed_output(
        &mut self,
        s: usize,
        entries: Vec<Entry>,
        wires: &[Wire],
        out: &PutRecordsOutput,
        now: Instant,
    ) {
        let results = out.records();
        if results.len() != wires.len() {
            let message = format!(
                "malformed PutRecords response: {} results for {} records",
                results.len(),
                wires.len()
            );
            let verdict = Verdict::Retry { throttled: false };
            return self.on_request_failure(s, entries, verdict, message, now);
        }
        let mut acked = Vec::with_capacity(entries.len());
        let mut failed = Vec::new();
        let (mut throttled, mut units, mut aggregates, mut aggregated) = (0u64, 0u64, 0u64, 0u64);
        let mut moved: Option<(Arc<str>, String)> = None;
        let mut entries = entries.into_iter();
        for (w, r) in wires.iter().zip(results) {
            let group = entries.by_ref().take(w.records);
            match r.error_code() {
                None => {
                    units += payload_units(w.size);
                    if w.records > 1 {
                        aggregates += 1;
                        aggregated += w.records as u64;
                    }
                    if let (Some(predicted), Some(actual)) = (&w.shard, r.shard_id())
                        && **predicted != *actual
                    {
                        moved = Some((Arc::clone(predicted), actual.to_owned()));
                    }
                    acked.extend(group);
                }
                Some(code) => {
                    if code == "ProvisionedThroughputExceededException" {
                        throttled += w.records as u64;
                    }
                    let message: Arc<str> = match r.error_message() {
                        Some(m) => format!("{code}: {m}").into(),
                        None => code.into(),
                    };
                    for mut e in group {
                        e.set_last_error(Arc::clone(&message));
                        failed.push(e);
                    }
                }
            }
        }
        let stats = &self.shared.stats;
        ProducerStats::add(&stats.throttled_records, throttled);
        ProducerStats::add(&stats.payload_units, units);
        ProducerStats::add(&stats.aggregated_records, aggregates);
        ProducerStats::add(&stats.aggregated_user_records, aggregated);
        if !failed.is_empty() {
            debug!(
                stream = %self.streams[s].target,
                acked = acked.len(),
                failed = failed.len(),
                throttled,
                "PutRecords partially failed; retrying the failed records"
            );
        }
        if let Some((predicted, actual)) = moved
            && matches!(self.streams[s].shard_map, ShardMapState::Known(_))
        {
            info!(
                stream = %self.streams[s].target,
                %predicted,
                %actual,
                "a record landed on another shard than the shard map predicted (the stream was resharded); reading the shard map again"
            );
            self.streams[s].shard_map = ShardMapState::Reading;
            self.read_shard_map(s, Duration::ZERO);
        }
        self.ack(s, acked);
        self.retry_later(s, failed, now);
    }

    /// Starts a ListShards read of stream `s`'s shard map after `delay`.
    fn read_shard_map(&mut self, s: usize, delay: Duration) {
        ProducerStats::add(&self.shared.stats.shard_map_reads, 1);
        let client = self.client.clone();
        let target = self.streams[s].target.clone();
        self.lookups.spawn(async move {
            tokio::time::sleep(delay).await;
            (s, list_open_shards(&client, &target).await)
        });
    }

    fn on_shard_map(&mut self, done: Result<ShardLookup, JoinError>) {
        let Ok((s, result)) = done else {
            return; // aborted: the producer is finishing
        };
        let stream = self.streams[s].target.clone();
        match result {
            Ok(map) => {
                info!(%stream, shards = map.len(), "read the stream's shard map; aggregating records per shard");
                self.streams[s].shard_map = ShardMapState::Known(Arc::new(map));
            }
            Err(error) => {
                ProducerStats::add(&self.shared.stats.shard_map_failures, 1);
                let failures = match self.streams[s].shard_map {
                    ShardMapState::Plain { failures } => failures + 1,
                    _ => 1,
                };
                let retry = backoff(Duration::from_secs(1), Duration::from_secs(60), failures);
                warn!(
                    %stream,
                    %error,
                    failures,
                    retry_ms = retry.as_millis() as u64,
                    "ListShards failed: sending records without aggregation until the shard map is read"
                );
                self.streams[s].shard_map = ShardMapState::Plain { failures };
                self.read_shard_map(s, retry);
            }
        }
    }

    fn on_request_failure(
        &mut self,
        s: usize,
        mut entries: Vec<Entry>,
        verdict: Verdict,
        message: String,
        now: Instant,
    ) {
        ProducerStats::add(&self.shared.stats.failed_requests, 1);
        let stream = self.streams[s].target.clone();
        match verdict {
            Verdict::Retry { throttled } => {
                if throttled {
                    ProducerStats::add(&self.shared.stats.throttled_records, entries.len() as u64);
                    debug!(%stream, records = entries.len(), error = %message, "PutRecords throttled; retrying");
                } else {
                    warn!(%stream, records = entries.len(), error = %message, "PutRecords failed; retrying");
                }
                let error: Arc<str> = message.into();
                for e in &mut entries {
                    e.set_last_error(Arc::clone(&error));
                }
                self.retry_later(s, entries, now);
            }
            Verdict::NotFound => {
                warn!(%stream, records = entries.len(), error = %message, "stream not found; dead-lettering the request's records");
                for e in entries {
                    self.dead_letter(s, e, format!("stream not found: {message}"));
                }
            }
            Verdict::Rejected if entries.len() > 1 => {
                debug!(%stream, records = entries.len(), error = %message, "PutRecords rejected; splitting the request to find the record at fault");
                // Both halves go next, in order, each as a request of its own, so the split
                // converges on the record at fault instead of mixing in new records.
                let second = entries.split_off(entries.len() / 2);
                let st = &mut self.streams[s];
                st.isolated.push_back(entries);
                st.isolated.push_back(second);
            }
            Verdict::Rejected => {
                for e in entries {
                    let reason = format!("rejected by Kinesis: {message}");
                    warn!(%stream, reason, "dead-lettering a record");
                    self.dead_letter(s, e, reason);
                }
            }
        }
    }

    /// Schedules failed records for another attempt after a jittered exponential backoff,
    /// or dead-letters those whose deadline would pass before it.
    fn retry_later(&mut self, s: usize, entries: Vec<Entry>, now: Instant) {
        if entries.is_empty() {
            return;
        }
        let attempts = entries.iter().map(|e| e.attempts).max().unwrap_or(1);
        let at = now + backoff(self.settings.retry_base, self.settings.retry_cap, attempts);
        let mut keep = Vec::with_capacity(entries.len());
        for e in entries {
            if e.deadline <= at {
                let reason = format!("deadline passed {}", e.history());
                self.dead_letter(s, e, reason);
            } else {
                keep.push(e);
            }
        }
        if keep.is_empty() {
            return;
        }
        ProducerStats::add(&self.shared.stats.retried_records, keep.len() as u64);
        self.retry_seq += 1;
        self.retries.push(RetryGroup {
            at,
            seq: self.retry_seq,
            stream: s,
            entries: keep,
        });
    }

    fn ack(&mut self, s: usize, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        // Counters first, so that whoever wakes on a ticket reads them up to date.
        let n = entries.len();
        let bytes = entries.iter().map(|e| e.size).sum();
        self.last_progress = Instant::now();
        ProducerStats::add(&self.shared.stats.records_acked, n as u64);
        self.release_space(n, bytes);
        // Records of one `submit` call are usually consecutive: one ticket update per run.
        // Iterated by reference so that the entries are dropped in place, not moved.
        let mut run: Option<(&Arc<TicketShared>, usize)> = None;
        for e in &entries {
            if self.settings.ordered {
                self.release_key(s, &e.key);
            }
            match &mut run {
                Some((t, count)) if Arc::ptr_eq(t, &e.ticket) => *count += 1,
                _ => {
                    if let Some((t, count)) = run.take() {
                        t.settle(count, Vec::new());
                    }
                    run = Some((&e.ticket, 1));
                }
            }
        }
        if let Some((t, count)) = run {
            t.settle(count, Vec::new());
        }
    }

    fn dead_letter(&mut self, s: usize, e: Entry, reason: String) {
        if self.settings.ordered {
            self.release_key(s, &e.key);
        }
        ProducerStats::add(&self.shared.stats.dead_lettered, 1);
        self.release_space(1, e.size);
        self.last_progress = Instant::now();
        let (ticket, dl) = e.into_dead_letter(reason);
        if self.shutting_down() {
            self.undelivered.push(dl.clone());
        }
        ticket.settle(0, vec![dl]);
    }

    /// Ordered mode: the record of `key` that was outstanding has settled; let the next one go.
    fn release_key(&mut self, s: usize, key: &str) {
        let h = self.key_hasher.hash_one(key);
        let MapEntry::Occupied(mut waiting) = self.streams[s].chains.entry(h) else {
            return;
        };
        match waiting.get_mut().pop_front() {
            Some(next) => self.push_ready(s, next),
            None => {
                waiting.remove();
            }
        }
    }

    fn release_space(&mut self, records: usize, bytes: usize) {
        self.open_records -= records;
        let stats = &self.shared.stats;
        ProducerStats::sub(&stats.buffered_records, records as u64);
        ProducerStats::sub(&stats.buffered_bytes, bytes as u64);
        self.shared.space.notify_one();
    }

    fn next_wakeup(&self, now: Instant) -> Option<Instant> {
        let mut wake = self.retries.peek().map(|g| g.at);
        let mut consider = |t: Instant| wake = Some(wake.map_or(t, |w| w.min(t)));
        if self.requests.len() < self.settings.max_in_flight {
            for st in &self.streams {
                // A stream whose shard map is being read waits for the answer, which wakes
                // the loop; waking for its due time (passed, maybe) would spin.
                if let Some(d) = st.due
                    && !st.ready.is_empty()
                    && !matches!(st.shard_map, ShardMapState::Reading)
                {
                    consider(d.max(now));
                }
            }
        }
        // A deadline already passed was acted on before this; waking for it again would spin.
        if let Some(deadline) = self.give_up_at().filter(|d| *d > now) {
            consider(deadline);
        }
        wake
    }

    /// The shutdown deadline (drain or close) passed, or the close's drain stalled: every
    /// record not yet acknowledged becomes a dead letter (those in flight may still have been
    /// written). `why` starts each reason.
    fn abandon_everything(&mut self, why: &str) {
        self.requests.abort_all();
        let in_flight: Vec<InFlight> = self.in_flight.drain().map(|(_, f)| f).collect();
        for f in in_flight {
            let stats = &self.shared.stats;
            ProducerStats::sub(&stats.in_flight_requests, 1);
            ProducerStats::sub(&stats.in_flight_records, f.entries.len() as u64);
            for e in f.entries {
                let reason = format!(
                    "{why} while the record was in flight (it may have been written) {}",
                    e.history()
                );
                self.dead_letter(f.stream, e, reason);
            }
        }
        let groups: Vec<RetryGroup> = std::mem::take(&mut self.retries).into_vec();
        for g in groups {
            for e in g.entries {
                let reason = format!("{why} before delivery {}", e.history());
                self.dead_letter(g.stream, e, reason);
            }
        }
        for s in 0..self.streams.len() {
            let isolated: Vec<Vec<Entry>> = self.streams[s].isolated.drain(..).collect();
            for e in isolated.into_iter().flatten() {
                let reason = format!("{why} before delivery {}", e.history());
                self.dead_letter(s, e, reason);
            }
            // Dead-lettering the outstanding record of a key (ordered mode) releases the next
            // one into `ready`, so this drains the chains too.
            while let Some(e) = self.streams[s].ready.pop_front() {
                self.streams[s].ready_bytes -= e.size;
                let reason = format!("{why} before delivery {}", e.history());
                self.dead_letter(s, e, reason);
            }
            // Every outstanding record was settled above, so no chain is left; this only
            // guards the invariant.
            let left: Vec<Entry> = self.streams[s]
                .chains
                .drain()
                .flat_map(|(_, q)| q)
                .collect();
            for e in left {
                let reason = format!("{why} before delivery {}", e.history());
                self.dead_letter(s, e, reason);
            }
        }
        // The detached tasks are aborted; forget them so that `finished` holds.
        self.requests.detach_all();
    }
}

impl StreamState {
    fn new(target: String, aggregate: bool) -> Self {
        Self {
            shard_map: if aggregate {
                ShardMapState::Reading
            } else {
                ShardMapState::Off
            },
            target,
            ready: VecDeque::new(),
            ready_bytes: 0,
            due: None,
            isolated: VecDeque::new(),
            chains: HashMap::default(),
        }
    }
}

/// PUT payload units of a Kinesis record of `bytes` bytes.
fn payload_units(bytes: usize) -> u64 {
    bytes.div_ceil(PAYLOAD_UNIT_BYTES).max(1) as u64
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sorts a whole-request failure, with a message naming the error.
fn classify(
    err: &SdkError<PutRecordsError, aws_sdk_kinesis::config::http::HttpResponse>,
) -> (Verdict, String) {
    match err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let e = ctx.err();
            let code = e.code();
            let message = match (code, e.message()) {
                (Some(c), Some(m)) => format!("{c}: {m} (HTTP {status})"),
                (Some(c), None) => format!("{c} (HTTP {status})"),
                (None, _) => format!("HTTP {status} without an error code"),
            };
            let verdict = match code {
                _ if status == 413 => Verdict::Rejected,
                Some("ResourceNotFoundException") => Verdict::NotFound,
                Some(
                    "ValidationException" | "InvalidArgumentException" | "SerializationException",
                ) => Verdict::Rejected,
                Some(
                    "ProvisionedThroughputExceededException"
                    | "LimitExceededException"
                    | "ThrottlingException"
                    | "KMSThrottlingException",
                ) => Verdict::Retry { throttled: true },
                _ => Verdict::Retry { throttled: false },
            };
            (verdict, message)
        }
        SdkError::TimeoutError(_) => (
            Verdict::Retry { throttled: false },
            "the attempt timed out".to_owned(),
        ),
        other => (
            Verdict::Retry { throttled: false },
            DisplayErrorContext(other).to_string(),
        ),
    }
}

/// Half to all of `min(cap, base * 2^(attempts-1))`: never a tight loop under throttling,
/// and records (or clients) that failed together do not all retry at the same instant.
fn backoff(base: Duration, cap: Duration, attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(20);
    let full = base.saturating_mul(1u32 << exp).min(cap);
    let half = full / 2;
    let span = u64::try_from(full.saturating_sub(half).as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(rand::rng().random_range(0..=span))
}

/// The hasher of the chain map: its keys are hashes already.
#[derive(Debug, Default)]
pub(crate) struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed; this keeps the trait's contract for anything else.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap_with_jitter() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(5);
        for _ in 0..200 {
            let first = backoff(base, cap, 1);
            assert!(first >= base / 2 && first <= base, "{first:?}");
            let third = backoff(base, cap, 3);
            assert!(third >= 2 * base && third <= 4 * base, "{third:?}");
            let late = backoff(base, cap, 40);
            assert!(late >= cap / 2 && late <= cap, "{late:?}");
        }
    }

    #[test]
    fn retry_groups_pop_earliest_first() {
        let now = Instant::now();
        let mut heap = BinaryHeap::new();
        for (i, ms) in [30u64, 10, 20, 10].into_iter().enumerate() {
            heap.push(RetryGroup {
                at: now + Duration::from_millis(ms),
                seq: i as u64,
                stream: 0,
                entries: Vec::new(),
            });
        }
        let order: Vec<u64> = std::iter::from_fn(|| heap.pop().map(|g| g.seq)).collect();
        assert_eq!(order, vec![1, 3, 2, 0]);
    }
}
