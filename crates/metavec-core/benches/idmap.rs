//! Where the id -> location map of sealed documents lives (issue #17, item 3): three stores of the
//! same N ids measured side by side, each in a process of its own so that one's heap does not
//! count against another's.
//!
//! - `hashmap`: `HashMap<String, (u64, u32)>` on the heap (what the collection kept before);
//! - `sled`: a sled tree id -> (segment, ordinal) on disk, sled's defaults;
//! - `mapped`: the ids archived with rkyv in id order in a file, mapped, found by binary search
//!   (the layout of a segment's `ids`, which is what the collection uses now).
//!
//! Per store: the build time (for `mapped`, the reader's part: open, map and validate the written
//! file), the anonymous memory it adds (RssAnon), the bytes on disk, and the median time of a
//! lookup of a present and of an absent id (page cache warm).
//!
//! `cargo bench --bench idmap` (N = 1,000,000; `IDMAP_N` to change it).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

fn rss_anon_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("RssAnon:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Ids as a client might send them: 16 hex digits of a hash, not in order.
fn id(i: u64) -> String {
    format!(
        "{:016x}",
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
    )
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Median nanoseconds of `f` over `probes`.
fn median_ns(probes: &[String], mut f: impl FnMut(&str) -> bool) -> (f64, usize) {
    let mut times = Vec::with_capacity(probes.len());
    let mut found = 0;
    for p in probes {
        let t = Instant::now();
        found += usize::from(black_box(f(black_box(p))));
        times.push(t.elapsed().as_nanos() as f64);
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], found)
}

fn run(store: &str, n: u64) {
    let present: Vec<String> = (0..20_000u64)
        .map(|i| id(i * (n / 20_000).max(1)))
        .collect();
    let absent: Vec<String> = (0..20_000u64).map(|i| id(n + i)).collect();
    let dir = tempfile::tempdir().unwrap();
    let before = rss_anon_kb();
    let t = Instant::now();
    let (build, anon_kb, disk, hit, miss) = match store {
        "hashmap" => {
            let mut m: HashMap<String, (u64, u32)> = HashMap::new();
            for i in 0..n {
                m.insert(id(i), (i / 100_000, i as u32));
            }
            let build = t.elapsed();
            let after = rss_anon_kb();
            let hit = median_ns(&present, |k| m.contains_key(k));
            let miss = median_ns(&absent, |k| m.contains_key(k));
            (build, after.saturating_sub(before), 0, hit, miss)
        }
        "sled" => {
            let db = sled::Config::new().path(dir.path()).open().unwrap();
            let tree = db.open_tree("ids").unwrap();
            let mut batch = sled::Batch::default();
            for i in 0..n {
                let mut v = [0u8; 12];
                v[..8].copy_from_slice(&(i / 100_000).to_le_bytes());
                v[8..].copy_from_slice(&(i as u32).to_le_bytes());
                batch.insert(id(i).as_bytes(), &v);
                if i % 10_000 == 9_999 {
                    tree.apply_batch(std::mem::take(&mut batch)).unwrap();
                }
            }
            tree.apply_batch(batch).unwrap();
            db.flush().unwrap();
            let build = t.elapsed();
            let after = rss_anon_kb();
            let hit = median_ns(&present, |k| tree.get(k).unwrap().is_some());
            let miss = median_ns(&absent, |k| tree.get(k).unwrap().is_some());
            (
                build,
                after.saturating_sub(before),
                dir_bytes(dir.path()),
                hit,
                miss,
            )
        }
        "mapped" => {
            let mut ids: Vec<String> = (0..n).map(id).collect();
            ids.sort_unstable();
            let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&ids).unwrap();
            drop(ids);
            let path = dir.path().join("ids");
            std::fs::write(&path, &bytes).unwrap();
            drop(bytes);
            // What a reader pays: open, map and validate (writing the file is the flush's job,
            // and its transient heap is not what the store keeps).
            let before = rss_anon_kb();
            let t = Instant::now();
            let file = std::fs::File::open(&path).unwrap();
            #[allow(unsafe_code)]
            // SAFETY: the file is private to this process and not modified while mapped.
            let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
            let archived =
                rkyv::access::<rkyv::Archived<Vec<String>>, rkyv::rancor::Error>(&map).unwrap();
            let build = t.elapsed();
            let after = rss_anon_kb();
            let find = |k: &str| archived.binary_search_by(|s| s.as_str().cmp(k)).is_ok();
            let hit = median_ns(&present, find);
            let miss = median_ns(&absent, find);
            (
                build,
                after.saturating_sub(before),
                map.len() as u64,
                hit,
                miss,
            )
        }
        other => panic!("unknown store {other}"),
    };
    report(store, n, build, anon_kb, disk, hit, miss);
}

fn report(
    store: &str,
    n: u64,
    build: std::time::Duration,
    anon_kb: u64,
    disk: u64,
    hit: (f64, usize),
    miss: (f64, usize),
) {
    assert_eq!(hit.1, 20_000, "{store}: every present id is found");
    assert_eq!(miss.1, 0, "{store}: no absent id is found");
    println!(
        "{store:>8} {n:>9} {:>9.2} {:>11.1} {:>11.1} {:>9.0} {:>9.0}",
        build.as_secs_f64(),
        anon_kb as f64 * 1024.0 / n as f64,
        disk as f64 / n as f64,
        hit.0,
        miss.0
    );
}

fn main() {
    let n: u64 = std::env::var("IDMAP_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--store") {
        run(&args[i + 1], n);
        return;
    }
    println!("id -> location stores, {n} ids of 16 bytes, each in its own process");
    println!(
        "{:>8} {:>9} {:>9} {:>11} {:>11} {:>9} {:>9}",
        "store", "ids", "build s", "anon B/id", "disk B/id", "hit ns", "miss ns"
    );
    let exe = std::env::current_exe().unwrap();
    for store in ["hashmap", "sled", "mapped"] {
        let status = std::process::Command::new(&exe)
            .args(["--store", store])
            .status()
            .unwrap();
        assert!(status.success(), "{store} failed");
    }
}
