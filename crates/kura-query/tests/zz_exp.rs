use std::time::Instant;
#[test]
fn exp() {
    let snap = "/tmp/kbench/snap-1m.duckdb";
    let sql = kura_query::bench::QUERIES[4].1;
    let cfg = || duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly).unwrap().threads(2).unwrap().max_memory("2048MiB").unwrap();
    let warm = duckdb::Connection::open_with_flags(snap, cfg()).unwrap();
    for i in 0..4 {
        let t = Instant::now();
        let n: usize = warm.prepare(sql).unwrap().query_arrow([]).unwrap().map(|b| b.num_rows()).sum();
        println!("warm {i}: {:?} {n}", t.elapsed());
        let t = Instant::now();
        let c = duckdb::Connection::open_with_flags(snap, cfg()).unwrap();
        let n: usize = c.prepare(sql).unwrap().query_arrow([]).unwrap().map(|b| b.num_rows()).sum();
        println!("fresh db: {:?} {n}", t.elapsed());
        drop(c);
    }
}
