//! What a filter may make the host spend: memory (all its linear memories together), table
//! slots, instances, the bytes and records it hands over in one `handle` call, and CPU time
//! before it yields or traps.
//!
//! wasmtime's `StoreLimits` caps each linear memory on its own, so a component that declares
//! k memories would get k times the limit; [`SandboxLimiter`] counts them together. What a
//! filter hands the host through `put-records` is copied into host memory, outside its
//! linear memory: wasmtime's hostcall fuel bounds one call to the memory limit, and
//! [`OutputBudget`] bounds all the calls of one batch, so a filter that calls `put-records`
//! in a loop on one buffer cannot make the host hold more than its own limit again.

use wasmtime::{ResourceLimiter, UpdateDeadline};

/// Core instances a filter may create. A Rust filter has 3 or 4 (its module, the WASI
/// adapter, the shims); componentize-py and ComponentizeJS components have a dozen or so.
pub const MAX_INSTANCES: usize = 64;
/// Linear memories a filter may declare (together bounded by the memory limit).
pub const MAX_MEMORIES: usize = 16;
/// Tables a filter may declare.
pub const MAX_TABLES: usize = 64;
/// Table slots over all tables together. An interpreter's function table (CPython in
/// componentize-py) holds tens of thousands; each slot costs the host 8 to 16 bytes, so this
/// bounds tables at about 16 MiB.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Records one `handle` call may put, whatever their size: a record costs the host about
/// 80 bytes before its data, so this bounds that overhead at about 8 MiB.
pub const MAX_RECORDS_PER_BATCH: usize = 100_000;

/// The store's resource limiter: every memory and table of the filter counted together.
#[derive(Debug)]
pub struct SandboxLimiter {
    memory_limit: usize,
    memory_total: usize,
    table_elements: usize,
    /// The size a refused memory growth asked for, so that the trap that follows (a Rust
    /// guest aborts when it cannot allocate) is reported as what it is.
    pub refused_memory: Option<usize>,
}

impl SandboxLimiter {
    /// A limiter of `memory_limit` bytes over all linear memories.
    pub fn new(memory_limit: usize) -> Self {
        Self {
            memory_limit,
            memory_total: 0,
            table_elements: 0,
            refused_memory: None,
        }
    }

    /// The memory limit in bytes.
    pub fn memory_limit(&self) -> usize {
        self.memory_limit
    }
}

/// Moves `total` (over every memory, or every table) by one of them growing from `current`
/// to `desired`, unless the new total would pass `cap`: then the total it would have been.
fn grow_total(total: &mut usize, current: usize, desired: usize, cap: usize) -> Result<(), usize> {
    let grown = total.saturating_sub(current).saturating_add(desired);
    if grown > cap {
        return Err(grown);
    }
    *total = grown;
    Ok(())
}

impl ResourceLimiter for SandboxLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grown = grow_total(&mut self.memory_total, current, desired, self.memory_limit);
        if let Err(total) = grown {
            self.refused_memory = Some(total);
        }
        Ok(grown.is_ok())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(grow_total(
            &mut self.table_elements,
            current,
            desired,
            MAX_TABLE_ELEMENTS,
        )
        .is_ok())
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// What one `handle` call may hand the host: at most the filter's memory limit in bytes
/// (the SDK holds a batch's records in the filter's memory before it puts them, so a filter
/// that keeps to its memory keeps to this) and [`MAX_RECORDS_PER_BATCH`] records.
#[derive(Debug)]
pub struct OutputBudget {
    max_bytes: usize,
    bytes: usize,
    records: usize,
}

/// A `put-records` call past the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "it put more than a batch may ({records} records, {bytes} bytes so far; at most \
     {max_records} records and {max_bytes} bytes, the memory limit)"
)]
pub struct OverBudget {
    /// Records put in this call, counting the refused ones.
    pub records: usize,
    /// Bytes put in this call, counting the refused ones.
    pub bytes: usize,
    /// The most records a batch may put.
    pub max_records: usize,
    /// The most bytes a batch may put.
    pub max_bytes: usize,
}

impl OutputBudget {
    /// A budget of `max_bytes` per batch.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            bytes: 0,
            records: 0,
        }
    }

    /// A new batch starts with the whole budget.
    pub fn renew(&mut self) {
        self.bytes = 0;
        self.records = 0;
    }

    /// Takes `records` records of `bytes` bytes from the budget, or says by how much they
    /// exceed it.
    pub fn spend(&mut self, records: usize, bytes: usize) -> Result<(), OverBudget> {
        self.records = self.records.saturating_add(records);
        self.bytes = self.bytes.saturating_add(bytes);
        if self.records > MAX_RECORDS_PER_BATCH || self.bytes > self.max_bytes {
            return Err(OverBudget {
                records: self.records,
                bytes: self.bytes,
                max_records: MAX_RECORDS_PER_BATCH,
                max_bytes: self.max_bytes,
            });
        }
        Ok(())
    }
}

/// A call's CPU budget in epoch ticks, spent one tick at a time: at each tick the filter
/// yields to the async runtime (so a busy filter never holds a worker thread for more than a
/// tick, and `/health` and other pipelines keep answering), and once the budget is spent the
/// call traps.
#[derive(Debug)]
pub struct CpuBudget {
    ticks: u64,
    left: u64,
}

impl CpuBudget {
    /// A budget of `ticks` epoch ticks per call.
    pub fn new(ticks: u64) -> Self {
        Self {
            ticks: ticks.max(1),
            left: ticks.max(1),
        }
    }

    /// A new call starts with the whole budget.
    pub fn renew(&mut self) {
        self.left = self.ticks;
    }

    /// What to do when the filter reaches its next tick: yield through
    /// `tokio::task::yield_now`, which lets the worker poll the I/O driver before the filter
    /// runs again. (wasmtime's plain `Yield` wakes the task at once: with every worker busy
    /// with spinning filters, Tokio would then poll for I/O only every 61 polls, 0.6 s of
    /// 10 ms ticks, and `/health` measured a p50 of 324 ms.)
    pub fn tick(&mut self) -> wasmtime::Result<UpdateDeadline> {
        self.left = self.left.saturating_sub(1);
        if self.left == 0 {
            return Err(wasmtime::Trap::Interrupt.into());
        }
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(tokio::task::yield_now()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn memories_are_counted_together_against_one_limit() {
        let mut limiter = SandboxLimiter::new(64 * MIB);
        for _ in 0..3 {
            assert!(limiter.memory_growing(0, 20 * MIB, None).unwrap());
        }
        assert!(
            !limiter.memory_growing(0, 20 * MIB, None).unwrap(),
            "a fourth memory of 20 MiB would make 80 MiB"
        );
        assert_eq!(limiter.refused_memory, Some(80 * MIB));
        assert!(limiter.memory_growing(20 * MIB, 24 * MIB, None).unwrap());
        assert!(!limiter.memory_growing(24 * MIB, 25 * MIB, None).unwrap());
    }

    /// A component whose one core module declares four memories of one page and grows each
    /// by `pages` when called, returning how many growths succeeded.
    const FOUR_MEMORIES: &str = r#"
        (component
          (core module $m
            (memory $a 1) (memory $b 1) (memory $c 1) (memory $d 1)
            (func (export "grow") (param $n i32) (result i32) (local $ok i32)
              (if (i32.ne (memory.grow $a (local.get $n)) (i32.const -1))
                (then (local.set $ok (i32.add (local.get $ok) (i32.const 1)))))
              (if (i32.ne (memory.grow $b (local.get $n)) (i32.const -1))
                (then (local.set $ok (i32.add (local.get $ok) (i32.const 1)))))
              (if (i32.ne (memory.grow $c (local.get $n)) (i32.const -1))
                (then (local.set $ok (i32.add (local.get $ok) (i32.const 1)))))
              (if (i32.ne (memory.grow $d (local.get $n)) (i32.const -1))
                (then (local.set $ok (i32.add (local.get $ok) (i32.const 1)))))
              (local.get $ok)))
          (core instance $i (instantiate $m))
          (func (export "grow") (param "pages" u32) (result u32)
            (canon lift (core func $i "grow"))))
    "#;

    #[test]
    fn a_component_with_four_memories_gets_no_more_than_the_limit_in_total() {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let engine = wasmtime::Engine::new(&config).unwrap();
        let bytes = wat::parse_str(FOUR_MEMORIES).unwrap();
        let component = wasmtime::component::Component::new(&engine, &bytes).unwrap();
        let mut store = wasmtime::Store::new(&engine, SandboxLimiter::new(64 * MIB));
        store.limiter(|limiter| limiter);
        let instance = wasmtime::component::Linker::new(&engine)
            .instantiate(&mut store, &component)
            .unwrap();
        let grow = instance
            .get_typed_func::<(u32,), (u32,)>(&mut store, "grow")
            .unwrap();
        // 400 pages are 25 MiB: each memory alone is within 64 MiB, three together are not.
        let (grown,) = grow.call(&mut store, (400,)).unwrap();
        assert_eq!(grown, 2, "two memories of 25 MiB fit in 64 MiB, not three");
        assert!(store.data().memory_total <= 64 * MIB);
        assert!(store.data().refused_memory.is_some());
    }

    #[test]
    fn table_slots_are_counted_together() {
        let mut limiter = SandboxLimiter::new(64 * MIB);
        assert!(
            limiter
                .table_growing(0, MAX_TABLE_ELEMENTS / 2, None)
                .unwrap()
        );
        assert!(
            limiter
                .table_growing(0, MAX_TABLE_ELEMENTS / 2, None)
                .unwrap()
        );
        assert!(!limiter.table_growing(0, 1, None).unwrap());
    }

    #[test]
    fn a_batch_may_put_up_to_the_memory_limit_and_no_more() {
        let mut budget = OutputBudget::new(64 * MIB);
        for _ in 0..7 {
            budget.spend(1, 8 * MIB).unwrap();
        }
        budget.spend(1, MIB).unwrap();
        let over = budget.spend(1, 8 * MIB).unwrap_err();
        assert_eq!((over.records, over.bytes), (9, 65 * MIB));
        budget.renew();
        budget.spend(1, 8 * MIB).unwrap();
    }

    #[test]
    fn a_batch_may_put_a_bounded_number_of_records() {
        let mut budget = OutputBudget::new(usize::MAX);
        budget.spend(MAX_RECORDS_PER_BATCH, 0).unwrap();
        assert!(budget.spend(1, 0).is_err());
    }

    #[test]
    fn a_call_yields_at_each_tick_and_traps_when_its_budget_is_spent() {
        let mut budget = CpuBudget::new(3);
        for _ in 0..2 {
            assert!(matches!(
                budget.tick().unwrap(),
                UpdateDeadline::YieldCustom(1, _)
            ));
        }
        let Err(trap) = budget.tick() else {
            panic!("the third tick of a three-tick budget must trap");
        };
        assert_eq!(
            trap.downcast_ref::<wasmtime::Trap>(),
            Some(&wasmtime::Trap::Interrupt)
        );
        budget.renew();
        assert!(budget.tick().is_ok());
    }
}
